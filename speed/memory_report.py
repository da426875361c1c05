"""Outputs of ``speed/memory.py``: CSV files, a markdown report and the memory-vs-T plot."""
from __future__ import annotations

import csv
import math
from pathlib import Path

FIELDS = ("task", "variant", "T", "batch", "channels", "saved_MiB", "saved_vs_sj", "peak_MiB", "step_ms", "iqr_ms",
          "time_vs_sj", "cpu_ms", "cpu_vs_sj")
SWEEP_FIELDS = ("task", "variant", "T", "batch", "channels", "saved_MiB", "peak_MiB")


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown(rows: list[dict], sweep_rows: list[dict], meta: dict) -> str:
    lines = ["# Activation memory per training step (speed/memory.py)", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    lines += ["- saved = bytes autograd keeps for backward (saved-tensor hooks, each storage once); peak = RSS "
              "high-water on CPU / max_memory_allocated on CUDA; step = median wall time of interleaved steps, "
              "CPU = median process CPU time of the same steps", ""]
    head = ("task", "variant", "T", "batch", "C", "saved MiB", "saved / SJ", "peak MiB", "step ms", "step / SJ",
            "CPU ms", "CPU / SJ")
    keys = ("task", "variant", "T", "batch", "channels", "saved_MiB", "saved_vs_sj", "peak_MiB", "step_ms",
            "time_vs_sj", "cpu_ms", "cpu_vs_sj")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(row[k]) for k in keys) + " |" for row in rows]
    if sweep_rows:
        variants = sorted({r["variant"] for r in sweep_rows})
        Ts = sorted({r["T"] for r in sweep_rows})
        lines += ["", f"## cf10 saved MiB vs T (batch {sweep_rows[0]['batch']})", "",
                  "| variant | " + " | ".join(f"T={T}" for T in Ts) + " |", "|" + "---|" * (len(Ts) + 1)]
        table = {(r["variant"], r["T"]): r["saved_MiB"] for r in sweep_rows}
        lines += [f"| {v} | " + " | ".join(_fmt(table.get((v, T), float("nan"))) for T in Ts) + " |"
                  for v in variants]
    return "\n".join(lines) + "\n"


def _csv(path: Path, rows: list[dict], fields) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot(sweep_rows: list[dict], path: Path) -> None:
    """Saved bytes and peak memory vs T, one line per variant (log-log)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in zip(axes, ("saved_MiB", "peak_MiB"), ("saved for backward", "peak memory of a step")):
        for variant in sorted({r["variant"] for r in sweep_rows}):
            points = sorted((r["T"], r[key]) for r in sweep_rows if r["variant"] == variant)
            ax.plot(*zip(*points), marker="o", label=variant)
        ax.set(xscale="log", yscale="log", xlabel="T", ylabel="MiB", title=f"cf10 {title}")
        Ts = sorted({r["T"] for r in sweep_rows})
        ax.set_xticks(Ts, [str(T) for T in Ts])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(rows: list[dict], sweep_rows: list[dict], meta: dict, out: Path | None) -> str:
    """Write the files into ``out`` (if given); return the markdown."""
    text = markdown(rows, sweep_rows, meta)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _csv(out / "memory.csv", rows, FIELDS)
        (out / "memory.md").write_text(text)
        if sweep_rows:
            _csv(out / "memory_sweep.csv", sweep_rows, SWEEP_FIELDS)
            plot(sweep_rows, out / "memory_vs_T.png")
    return text
