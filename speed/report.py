"""Markdown tables and PNG plots of the rows written by ``speed/bench.py``.

Rows are dicts with at least ``impl, mode, T, N, median_ms, status`` (``status == 'ok'`` rows carry numbers).
Speed-up of ``a`` over a baseline ``b`` = ``t_b / t_a`` (> 1: ``a`` is faster), as in the survey's table.
"""
from __future__ import annotations

from pathlib import Path

from common.survey import IMPL_TO_SURVEY, SURVEY_LABEL, survey_ms
from speed import impls


def fmt(value, digits: int = 3) -> str:
    """Three significant digits (``-`` for missing values)."""
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def reported_ms(row: dict) -> float:
    """The row's time under its statistic (``mean_last_half_ms`` for ``survey``, else ``median_ms``): the time
    that speed-ups use."""
    return row["mean_last_half_ms"] if row.get("statistic") == "survey" else row["median_ms"]


def ok_rows(rows):
    return [r for r in rows if r["status"] == "ok"]


def index(rows) -> dict[tuple[str, str, int, int], dict]:
    return {(r["impl"], r["mode"], r["T"], r["N"]): r for r in ok_rows(rows)}


def configs(rows) -> list[tuple[str, int, int]]:
    """Distinct ``(mode, N, T)`` in run order."""
    return list(dict.fromkeys((r["mode"], r["N"], r["T"]) for r in rows))


def timed_impls(rows) -> list[str]:
    """Implementations with at least one timed row, in run order."""
    ok = {r["impl"] for r in ok_rows(rows)}
    return [n for n in dict.fromkeys(r["impl"] for r in rows) if n in ok]


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def value_table(rows, column: str, names: list[str], lead=None) -> list[str]:
    """One line per (mode, N, T), one column per implementation, cells = ``row[column]``."""
    idx = index(rows)
    lead = lead or (lambda mode, N, T: [])
    body = []
    for mode, N, T in configs(rows):
        cells = [fmt(idx[(n, mode, T, N)][column]) if (n, mode, T, N) in idx else "-" for n in names]
        if any(c != "-" for c in cells):
            body.append([mode, str(N), str(T), *lead(mode, N, T), *cells])
    return body


def speedup_table(rows, baseline: str, names: list[str]) -> list[str]:
    idx = index(rows)
    others = [n for n in names if n != baseline]

    def lead(mode, N, T):
        base = idx.get((baseline, mode, T, N))
        return [fmt(reported_ms(base)) if base else "-"]

    def ratio_rows():
        body = []
        for mode, N, T in configs(rows):
            base = idx.get((baseline, mode, T, N))
            if base is None:
                continue
            cells = [fmt(reported_ms(base) / reported_ms(idx[(n, mode, T, N)])) if (n, mode, T, N) in idx else "-"
                     for n in others]
            body.append([mode, str(N), str(T), *lead(mode, N, T), *cells])
        return body

    return _table(["mode", "N", "T", f"{baseline} (ms)", *others], ratio_rows())


def block_over_alif(rows) -> list[str]:
    """BlockALIF speed-up over the sequential ALIF of the same latency (the survey's ``B_L/ALIF`` columns)."""
    idx = index(rows)
    lats = sorted({impls.split_latency(n)[1] for n in timed_impls(rows) if n.startswith("blockalif-L")})
    body = []
    for mode, N, T in configs(rows):
        cells = []
        for lat in lats:
            a, b = idx.get((f"alif-L{lat}", mode, T, N)), idx.get((f"blockalif-L{lat}", mode, T, N))
            cells.append(fmt(reported_ms(a) / reported_ms(b)) if a and b else "-")
        if any(c != "-" for c in cells):
            body.append([mode, str(N), str(T), *cells])
    return _table(["mode", "N", "T", *[f"B{lat + 1}/ALIF (L={lat})" for lat in lats]], body) if lats else []


def floor_table(rows) -> list[str]:
    names = [n for n in timed_impls(rows) if impls.is_lif(n)]
    idx = index(rows)

    def lead(mode, N, T):
        row = next((idx[(n, mode, T, N)] for n in names if (n, mode, T, N) in idx), None)
        return [fmt(row["floor_ms"]) if row else "-"]

    return _table(["mode", "N", "T", "floor (ms)", *[f"{n} %" for n in names]],
                  value_table(rows, "pct_of_floor", names, lead))


def survey_table(rows, names: list[str]) -> list[str]:
    """Our speed-ups of ``names`` over our loop beside the survey's (GPU) speed-ups over its loop, where
    (mode, T, N) match."""
    idx = index(rows)
    names = [n for n in names if n in timed_impls(rows)]
    body = []
    for mode, N, T in configs(rows):
        base, survey_base = idx.get(("loop", mode, T, N)), survey_ms("loop", mode, T, N)
        if base is None or survey_base is None:
            continue
        cells = [fmt(reported_ms(base)), fmt(survey_base)]
        for n in names:
            ours, theirs = idx.get((n, mode, T, N)), survey_ms(n, mode, T, N)
            cells += [fmt(reported_ms(base) / reported_ms(ours)) if ours else "-",
                      fmt(survey_base / theirs) if theirs else "-"]
        body.append([mode, str(N), str(T), *cells])
    header = ["mode", "N", "T", "loop ms (ours)", "loop ms (survey GPU)"]
    for n in names:
        header += [f"{n} (ours)", f"{IMPL_TO_SURVEY[n]} (survey GPU)"]
    return _table(header, body) if body else ["(no configuration of this run is in the survey's grid)"]


def skipped_lines(rows, shown: int = 6) -> list[str]:
    """One line per (implementation, reason) with the configurations it concerns."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["status"] != "ok":
            groups.setdefault((r["impl"], r["status"]), []).append(f"{r['mode']} N={r['N']} T={r['T']}")
    lines = []
    survey_rule = [impl for impl, status in groups if status.startswith("skipped: latency + 1 >= T")]
    if survey_rule:
        lines.append(f"- {', '.join(f'`{n}`' for n in survey_rule)}: not run where latency + 1 >= T (survey rule)")
    for (impl, status), where in groups.items():
        if impl in survey_rule and status.startswith("skipped: latency + 1 >= T"):
            continue
        total = sum(1 for r in rows if r["impl"] == impl)
        scope = "all configurations" if len(where) == total else "; ".join(where[:shown]) + (
            f"; ... ({len(where)} in all)" if len(where) > shown else "")
        lines.append(f"- `{impl}`: {status} ({scope})")
    return lines


def markdown(rows, meta: dict) -> str:
    names = timed_impls(rows)
    out = ["# Neuron micro-benchmark", ""]
    out += [f"- {key}: {value}" for key, value in meta.items()]
    statistic = ("means of the last half of the timed calls (the survey's statistic)"
                 if any(r.get("statistic") == "survey" for r in ok_rows(rows)) else "medians over the timed calls")
    out += ["", f"Times are {statistic} (ms per call); speed-up of X over B = t_B / t_X.", ""]
    out += ["## Speed-up over the loop LIF (survey layout)", ""] + speedup_table(rows, "loop", names)
    if "spikingjelly" in names:
        out += ["", "## Speed-up over SpikingJelly", ""] + speedup_table(rows, "spikingjelly", names)
    block = block_over_alif(rows)
    if block:
        out += ["", "## BlockALIF over sequential ALIF of the same latency", ""] + block
    out += ["", "## LIF memory-bandwidth floor (% of the floor reached = 100 floor / time)", ""] + floor_table(rows)
    out += ["", f"## Ours ({meta.get('device', '?')}) beside the {SURVEY_LABEL}: speed-ups over each one's loop LIF",
            "", "The survey's numbers are **GPU** numbers (CUDA events, mean of 64 calls).", ""]
    out += survey_table(rows, ["psn", "spikingjelly-cupy"])
    blocks = [n for n in IMPL_TO_SURVEY if n.startswith("blockalif")]
    if any(n in timed_impls(rows) for n in blocks):
        out += ["", "BlockALIF (speed-up over the loop LIF, as the survey's B1/B2/B4/B8 columns):", ""]
        out += survey_table(rows, blocks)
    out += ["", "## Median time (ms)", ""]
    out += _table(["mode", "N", "T", *names], value_table(rows, "median_ms", names))
    out += ["", "## Inter-quartile range (ms)", ""]
    out += _table(["mode", "N", "T", *names], value_table(rows, "iqr_ms", names))
    out += ["", "## Peak memory per call (MiB above the call's start)", ""]
    out += _table(["mode", "N", "T", *names], value_table(rows, "peak_mem_mb", names))
    skipped = skipped_lines(rows)
    if skipped:
        out += ["", "## Not timed", ""] + skipped
    return "\n".join(out) + "\n"


def plot(rows, out_dir: Path, device: str) -> list[Path]:
    """``time_vs_T_<mode>.png``: median ms against T, one panel per N, one line per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = index(rows)
    names = timed_impls(rows)
    colours = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(names)}
    paths = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        Ns = sorted({N for m, N, _ in configs(rows) if m == mode})
        Ts = sorted({T for m, _, T in configs(rows) if m == mode})
        fig, axes = plt.subplots(1, len(Ns), figsize=(4.2 * len(Ns), 4.0), squeeze=False, sharey=True)
        for ax, N in zip(axes[0], Ns):
            for name in names:
                pts = sorted((T, idx[(name, mode, T, N)]["median_ms"]) for T in Ts if (name, mode, T, N) in idx)
                if pts:
                    style = "-" if impls.is_lif(name) else "--"
                    ax.plot(*zip(*pts), style, marker="o", ms=3, color=colours[name], label=name)
            ax.set(xscale="log", yscale="log", xlabel="T", title=f"{mode}, N = {N}")
            ax.set_xticks(Ts, [str(T) for T in Ts])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel(f"median time per call (ms, {device})")
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        path = out_dir / f"time_vs_T_{mode}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
