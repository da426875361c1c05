#!/usr/bin/env python
"""Rebuild the survey's result tables from run directories: ours beside the survey's number and the difference.

    python scripts/collect_results.py PATH [PATH ...] [--out DIR] [--survey FILE]

Each PATH is a run directory, a folder searched recursively, or a CSV file. Recognised inputs:

* run directories of ``common/engine.py`` (``args.json``, ``metrics.csv``, ``summary.json``, ``sop.json``);
* speed CSVs of ``speed/bench.py`` (columns ``impl, mode, T, N, median_ms, ...``);
* the surrogate sweep CSV of ``scripts/digits_sweep.py``.

Written to ``--out`` (default ``results``): for every table of the table of record ``common/survey`` (accuracy, SOP,
train/test speed, memory, ...) ``<table>.md``, ``<table>.csv`` and, when we have numbers, ``<table>.png``;
``surrogates.{md,csv,png}`` (best accuracy per surrogate and alpha), ``speed.{md,csv,png}``, ``runs.csv`` (every run,
its survey column and status) and ``tables.md`` (everything in one file).

A cell of a survey table = the *finished* runs of one (task, survey column) trained with the survey's surrogate
(``survey_settings``); a run's column is the first cell of its task whose ``--neuron/--norm/--method`` it has
(``common.survey.cell_of``). Runs that differ only in bookkeeping flags (``--seed``, paths, devices) form one
configuration and are averaged: mean ± sample std (ddof 1) over n runs. If several configurations map to one cell,
the one with the best mean accuracy is shown (all tables use that same configuration). Unfinished runs (no
``summary.json`` or fewer epochs than ``args.epochs``) never enter a mean: they are listed apart. A seed counts once:
run directories found twice (overlapping PATHs) or two runs of one configuration and seed give one value (the
finished one with most epochs; runs.csv marks the others "duplicate"). Runs whose T, width or epochs differ from
the survey's setting of their cell, or whose ``--survey-quirk`` list differs from the cell's, are marked ``*`` in
the cell and listed in runs.csv's ``differs`` column.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from common import cli, rundir
from common import survey as record
from common.runlog import read_metrics

# Flags that never change what is trained: runs differing only in these are seeds of one configuration.
BOOKKEEPING = frozenset({
    "seed", "out_dir", "run_name", "resume", "resumed_from", "device", "data_dir", "workers", "argv", "deterministic",
    "local_rank", "world_size", "dist_url", "print_freq", "teacher", "stop_after", "test_only",
    "backbone_ckpt", "backbone_init", "cache_dir",  # Gen1: the N-CARS run of the same seed, and where it was
})
ARG_DEFAULTS = {**record.DEFAULTS, "sg": "atan", "sg_alpha": None}


# ---------------------------------------------------------------------------------------------------- reading
@dataclass
class Run:
    """One run directory as written by the engine."""

    path: Path
    args: dict
    metrics: list[dict]
    summary: dict | None
    sop: dict | None

    @classmethod
    def read(cls, path: Path) -> Run:
        def load(name):
            f = path / name
            return json.loads(f.read_text()) if f.exists() else None

        try:
            metrics = read_metrics(path / "metrics.csv") if (path / "metrics.csv").exists() else []
        except (ValueError, TypeError, KeyError) as e:  # a row being written by a live run
            print(f"collect_results: {path / 'metrics.csv'}: {e}; its epochs are not counted", file=sys.stderr)
            metrics = []
        return cls(path, rundir.read_args(path), metrics, load("summary.json"), load("sop.json"))

    def arg(self, key: str):
        return self.args.get(key, ARG_DEFAULTS.get(key))

    @property
    def task(self) -> str:
        return self.args.get("task", "?")

    @property
    def epochs_done(self) -> int:
        return len({row["epoch"] for row in self.metrics})

    @property
    def epochs_planned(self) -> int:
        return int(self.args.get("epochs", self.epochs_done))

    @property
    def finished(self) -> bool:
        """``summary.json`` says finished, and every planned epoch ran (or early stopping ended the run)."""
        done = self.epochs_done >= self.epochs_planned or bool(self.summary and self.summary.get("stopped_early"))
        return bool(self.summary and self.summary.get("finished")) and done

    @property
    def cell(self) -> record.Cell | None:
        return record.cell_of(self.task, self.args)

    @property
    def column(self) -> str | None:
        cell = self.cell
        return cell.column if cell else None

    @property
    def config_key(self) -> str:
        return json.dumps({k: v for k, v in self.args.items() if k not in BOOKKEEPING}, sort_keys=True, default=str)


# args.json keys compared with the survey's setting of a cell (common.survey SETTINGS); width is "channels" (cf10,
# scf10) or "hidden" (shd), the input size "img_size" (coco) or "size" (ncars)
DEVIATION_KEYS = ("T", "channels", "hidden", "img_size", "size", "epochs")
FLAG_DESTS = {"-b": "batch_size"}  # cell flags whose args.json key is not the flag's name
NOT_COMPARED = {"--survey-quirk", "--neuron-opt"}  # compared as lists / dicts, or not at all


def cell_flags(cell: record.Cell) -> dict[str, str | bool]:
    """``{args.json key: value}`` of the flags a cell's args spell out (``True`` for a switch)."""
    out: dict[str, str | bool] = {}
    args = list(cell.args)
    for i, flag in enumerate(args):
        if not flag.startswith("-") or flag in NOT_COMPARED or _is_number(flag):
            continue
        value = args[i + 1] if i + 1 < len(args) else None
        switch = value is None or (value.startswith("-") and not _is_number(value))
        out[FLAG_DESTS.get(flag, flag.lstrip("-").replace("-", "_"))] = True if switch else value
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _same(recorded, wanted: str | bool) -> bool:
    if isinstance(wanted, bool) or isinstance(recorded, bool):
        return recorded == wanted
    if isinstance(recorded, (int, float)) and _is_number(wanted):
        return float(recorded) == float(wanted)
    return str(recorded) == wanted


def deviations(run: Run, settings: dict) -> list[str]:
    """``"key=ours (survey theirs)"`` for every :data:`DEVIATION_KEYS` entry where the run differs from the survey,
    and for every flag of its cell's command that the run recorded otherwise (a run that lacks the run its cell
    needs, e.g. a Gen1 run without its N-CARS backbone: ``backbone_ckpt=none``); ``"quirks=... (survey ...)"``
    when its ``--survey-quirk`` list differs from its cell's."""
    found = {}
    for key in DEVIATION_KEYS:
        ours = run.epochs_planned if key == "epochs" else run.args.get(key)
        if key in settings and ours is not None and ours != settings[key]:
            found[key] = f"{key}={ours} (survey {settings[key]})"
    cell = run.cell
    if cell is None:
        return list(found.values())
    for key, wanted in cell_flags(cell).items():
        ours = run.args.get(key)
        if wanted == record.TEACHER:
            if not ours:
                found[key] = f"{key}=none (survey: the run of {cell.teacher})"
        elif key not in found and key in run.args and not _same(ours, wanted):
            found[key] = f"{key}={ours} (survey {wanted})"
    quirks = sorted(run.args.get("survey_quirks") or [])
    if quirks != sorted(cell.quirks()):
        found["quirks"] = f"quirks={','.join(quirks) or 'none'} (survey {','.join(sorted(cell.quirks())) or 'none'})"
    return list(found.values())


def unique_seeds(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """``(kept, duplicates)``: one run per (configuration, seed), preferring finished runs with more epochs."""
    best: dict[tuple, Run] = {}
    for run in runs:
        key = (run.config_key, str(run.args.get("seed", run.path)))
        rank = (run.finished, run.epochs_done)
        if key not in best or rank > (best[key].finished, best[key].epochs_done):
            best[key] = run
    kept = {id(run) for run in best.values()}
    return [r for r in runs if id(r) in kept], [r for r in runs if id(r) not in kept]


def _column_values(run: Run, key: str) -> list[float]:
    return [row[key] for row in run.metrics if key in row and row[key] == row[key]]


def _median_column(key: str):
    return lambda run, settings: statistics.median(_column_values(run, key)) if _column_values(run, key) else None


def best_acc_pct(run: Run) -> float | None:
    """Best test accuracy (%): ``summary.json`` of a finished run, else the best epoch so far."""
    if run.finished and run.summary.get("best_test_acc") is not None:
        return 100 * run.summary["best_test_acc"]
    accs = _column_values(run, "test_acc")
    return 100 * max(accs) if accs else None


def _sop(key: str | None):
    """``sop.json[sop_mode][key]`` (``common.sop.write_sop_json`` stores one entry per counting mode)."""
    def value(run: Run, settings: dict) -> float | None:
        entry = (run.sop or {}).get(settings.get("sop_mode", "paper"), {})
        return entry.get(key or settings.get("sop_key", "sop_m_per_sample"))

    return value


# metric name (common.survey TABLES) -> value(run, survey settings of its task and column);
# names not listed here are read from summary.json (see metric())
METRICS = {
    "best_test_acc_pct": lambda run, settings: best_acc_pct(run),
    "sop_m": _sop(None),
    "first_layer_flop_m": _sop("first_layer_flop_m"),
    "train_samples_per_s": _median_column("train_samples_per_s"),
    "test_samples_per_s": _median_column("test_samples_per_s"),
    "peak_mem_mb": lambda run, settings: max(_column_values(run, "peak_mem_mb"), default=None),
}


def settings_of(run: Run, survey: dict) -> dict:
    """The survey's settings for the run's task, with the overrides of its column."""
    task = survey["survey_settings"].get(run.task, {})
    return {**task, **task.get("columns", {}).get(run.column, {})}


def metric(run: Run, name: str, settings: dict) -> float | None:
    """:data:`METRICS` ``name``, else the ``summary.json`` entry ``name`` (``a.b``: key ``b`` of entry ``a``, e.g.
    COCO's ``final_eval.test_AP``)."""
    if name in METRICS:
        return METRICS[name](run, settings)
    value = run.summary
    for key in name.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


SPEED_HEADER = {"impl", "mode", "T", "N", "median_ms"}
DIGITS_HEADER = {"surrogate", "alpha", "best_test_acc"}  # scripts/digits_sweep.py


@dataclass
class Inputs:
    runs: list[Run] = field(default_factory=list)
    speed: list[tuple[Path, list[dict]]] = field(default_factory=list)
    digits: list[dict] = field(default_factory=list)


def _read_csv(path: Path) -> tuple[set[str], list[dict]]:
    """The header and rows of a CSV file."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return set(reader.fieldnames or ()), list(reader)


def gather(paths: list[Path]) -> Inputs:
    """Find run directories (holding ``args.json``), speed CSVs and digits-sweep CSVs under ``paths``."""
    found = Inputs()
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
            continue
        if not path.is_dir():
            print(f"collect_results: error: no such file or directory: {path}", file=sys.stderr)
            raise SystemExit(2)
        seen = {r.path.resolve() for r in found.runs}
        found.runs += [Run.read(a.parent) for a in sorted(path.rglob("args.json")) if a.parent.resolve() not in seen]
        files += [c for c in sorted(path.rglob("*.csv")) if not (c.parent / "args.json").exists()]
    for path in dict.fromkeys(f.resolve() for f in files):
        header, rows = _read_csv(path)
        if SPEED_HEADER <= header:
            found.speed.append((path, rows))
        elif DIGITS_HEADER <= header:
            found.digits += rows
    return found


# ---------------------------------------------------------------------------------------------------- cells
@dataclass
class Stat:
    """mean ± sample std over ``n`` values (std None for n = 1)."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        values = [v for v in values if v is not None]
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def best_group(runs: list[Run]) -> list[Run]:
    """The configuration (runs equal up to :data:`BOOKKEEPING`) with the best mean accuracy."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.config_key, []).append(run)

    def score(group):
        stat = Stat.of([best_acc_pct(r) for r in group])
        return (stat is not None, stat.mean if stat else 0.0, len(group))

    return max(groups.values(), key=score) if groups else []


@dataclass
class Cell:
    stat: Stat | None
    survey: float | None
    runs: list[Run]
    n_configs: int = 0
    n_incomplete: int = 0
    deviations: list[str] = field(default_factory=list)  # T, width or epochs differing from the survey's setting

    @property
    def diff(self) -> float | None:
        return None if self.stat is None or self.survey is None else self.stat.mean - self.survey


def default_alpha(name: str) -> float | None:
    """The registry's default alpha of surrogate ``name`` (None when the registry cannot be imported)."""
    try:
        from common.surrogate import SURROGATES
    except ImportError:
        return None
    return SURROGATES.get(name).default_alpha if name in SURROGATES else None


def run_alpha(run: Run, alpha_of=default_alpha) -> float | None:
    """The surrogate alpha a run used (``--sg-alpha``, else the registry's default for its ``--sg``)."""
    alpha = run.arg("sg_alpha")
    return alpha_of(run.arg("sg")) if alpha is None else float(alpha)


def matches_survey(run: Run, settings: dict, alpha_of=default_alpha) -> bool:
    """Same surrogate and alpha as the survey's runs of this task and column (the method tables' condition)."""
    if "sg" not in settings:
        return True
    alpha = run_alpha(run, alpha_of)
    return run.arg("sg") == settings["sg"] and (alpha is None or alpha == settings.get("sg_alpha", alpha))


def build_cells(runs: list[Run], survey: dict, alpha_of=default_alpha) -> dict[tuple[str, str], list[Run]]:
    """(task, column) -> the runs (finished or not) eligible for the method tables."""
    cells: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.column and matches_survey(run, settings_of(run, survey), alpha_of):
            cells.setdefault((run.task, run.column), []).append(run)
    return cells


def table_cells(spec: dict, cells: dict, survey: dict) -> dict[tuple[str, str], Cell]:
    """The cells of one survey table: its rows (datasets with survey numbers, plus ``extra_rows``) x columns."""
    out = {}
    for task in [*spec["rows"], *spec.get("extra_rows", [])]:
        for column in survey["columns"]:
            runs = cells.get((task, column), [])
            finished = unique_seeds([r for r in runs if r.finished])[0]
            chosen = best_group(finished)
            values = [metric(r, spec["metric"], settings_of(r, survey)) for r in chosen]
            cell = Cell(
                Stat.of(values), spec["rows"].get(task, {}).get(column), chosen,
                n_configs=len({r.config_key for r in finished}), n_incomplete=len(runs) - len(finished),
                deviations=sorted({d for r in chosen for d in deviations(r, settings_of(r, survey))}),
            )
            if cell.stat or cell.survey is not None or cell.n_incomplete:
                out[task, column] = cell
    return out


# ---------------------------------------------------------------------------------------------------- rendering
def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def cell_text(cell: Cell, fmt: str) -> str:
    survey = _num(cell.survey, fmt)
    if cell.stat is None:
        extra = f" [{cell.n_incomplete} incomplete]" if cell.n_incomplete else ""
        return f"—{extra} / {survey}"
    ours = _num(cell.stat.mean, fmt)
    if cell.stat.std is not None:
        ours += f" ± {_num(cell.stat.std, fmt)} (n={cell.stat.n})"
    ours += ("*" if cell.deviations else "") + ("†" if cell.n_configs > 1 else "")
    diff = f" ({format(cell.diff, '+' + fmt)})" if cell.diff is not None else ""
    return f"{ours} / {survey}{diff}"


LEGEND = ("Each cell: ours / survey (ours − survey). Ours = mean ± sample std over seeds (n runs) when several runs "
          "exist; * = T, width or epochs differ from the survey's (runs.csv: differs); "
          "† = the best of several configurations (runs.csv "
          "lists all runs); — = no finished run; [k incomplete] = only unfinished runs (see runs.csv).")


def _present(cells: dict, survey: dict) -> tuple[list[str], list[str]]:
    tasks = list(dict.fromkeys(task for task, _ in cells))
    columns = [c for c in survey["columns"] if any(col == c for _, col in cells)]
    return tasks, columns


def table_markdown(spec: dict, cells: dict, survey: dict) -> str:
    tasks, columns = _present(cells, survey)
    lines = [f"### {spec['title']}", "", "| Dataset | " + " | ".join(survey["columns"][c] for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for task in tasks:
        texts = [cell_text(cells[task, c], spec["fmt"]) if (task, c) in cells else "" for c in columns]
        lines.append(f"| {survey['datasets'].get(task, task)} | " + " | ".join(texts) + " |")
    notes = [*spec.get("notes", []), LEGEND]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


CSV_VALUES = ("ours", "ours_std", "n", "survey", "diff", "runs")


def table_csv(path: Path, cells: dict, survey: dict) -> None:
    """Survey layout: one row per (dataset, value kind), one column per survey column; ``runs`` lists the run
    directories behind each of our numbers."""
    tasks, columns = _present(cells, survey)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "value", *columns])
        for task in tasks:
            for kind in CSV_VALUES:
                row = []
                for column in columns:
                    cell = cells.get((task, column))
                    stat = cell.stat if cell else None
                    value = {"ours": stat and stat.mean, "ours_std": stat and stat.std, "n": stat.n if stat else 0,
                             "survey": cell and cell.survey, "diff": cell and cell.diff,
                             "runs": cell and ";".join(str(r.path) for r in cell.runs)}[kind]
                    row.append("" if value is None else value)
                writer.writerow([task, kind, *row])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def table_figure(path: Path, spec: dict, cells: dict, survey: dict) -> bool:
    """Grouped bars (ours with std error bars, survey) per dataset that has at least one number of ours."""
    tasks = [t for t in dict.fromkeys(t for t, _ in cells) if any(c.stat for (tt, _), c in cells.items() if tt == t)]
    if not tasks:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 3.2 * len(tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        columns = [c for c in survey["columns"] if (task, c) in cells]
        ours = [cells[task, c].stat for c in columns]
        xs = range(len(columns))
        ax.bar([x - 0.2 for x in xs], [s.mean if s else 0 for s in ours], 0.4, label="ours",
               yerr=[(s.std or 0) if s else 0 for s in ours], capsize=3)
        ax.bar([x + 0.2 for x in xs], [cells[task, c].survey or 0 for c in columns], 0.4, label="survey")
        ax.set_xticks(list(xs), [survey["columns"][c] for c in columns], rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{survey['datasets'].get(task, task)}: {spec['title']}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------------- surrogates
def _model_label(run: Run, survey: dict) -> str:
    """The run's survey column; for tasks without survey cells (digits) a BN + BPTT run is named by its neuron."""
    column = run.column
    if column:
        return survey["columns"][column]
    if run.task not in survey["survey_settings"] and (run.arg("norm"), run.arg("method")) == ("bn", "bptt"):
        return str(run.arg("neuron")).upper()
    return f"{run.arg('neuron')}+{run.arg('norm')}/{run.arg('method')}"


def surrogate_rows(runs: list[Run], digits: list[dict], survey: dict, alpha_of=default_alpha) -> list[dict]:
    """Best accuracy (%) per (task, model, surrogate, alpha): mean ± std over the seeds of the best configuration.

    ``digits`` = rows of ``digits_sweep.csv`` files (one per surrogate; several files = several seeds), used only
    when the digits sweep's run directories themselves were not found."""
    keyed: dict[tuple, list[Run]] = {}
    for run in unique_seeds([r for r in runs if r.finished])[0]:
        key = (run.task, _model_label(run, survey), run.arg("sg"), run_alpha(run, alpha_of))
        keyed.setdefault(key, []).append(run)
    rows = []
    for (task, model, sg, alpha), group in keyed.items():
        chosen = best_group(group)
        stat = Stat.of([best_acc_pct(r) for r in chosen])
        rows.append({"task": task, "model": model, "sg": sg, "alpha": alpha, "stat": stat,
                     "epochs": chosen[0].epochs_planned, "configs": len({r.config_key for r in group}),
                     "source": "runs"})
    if any(r.task == "digits" for r in runs):
        digits = []  # the sweep's own run directories are there: its CSV would count them twice
    by_digits: dict[tuple, list[dict]] = {}
    digits = list({_digits_key(r): r for r in digits}.values())  # one row per seed, however many CSV copies
    for row in digits:
        by_digits.setdefault((row["surrogate"], float(row["alpha"])), []).append(row)
    for (sg, alpha), group in by_digits.items():
        epochs = {int(r["epochs"]) for r in group}
        rows.append({"task": "digits", "model": "LIF", "sg": sg, "alpha": alpha,
                     "stat": Stat.of([100 * float(r["best_test_acc"]) for r in group]),
                     "epochs": epochs.pop() if len(epochs) == 1 else None, "configs": 1, "source": "digits_sweep.csv"})
    return sorted(rows, key=lambda r: (r["task"], r["model"], -(r["stat"].mean if r["stat"] else 0)))


def _digits_key(row: dict):
    """Surrogate and settings of a digits-sweep row; rows without a seed column (older CSVs) are all distinct."""
    if not row.get("seed"):
        return id(row)
    return tuple(row.get(k) for k in ("surrogate", "alpha", "seed", "T", "channels", "epochs", "lr", "batch_size"))


def surrogate_markdown(rows: list[dict]) -> str:
    lines = ["### Surrogate functions: best test accuracy (%) per surrogate and α", "",
             "| Task | Model | Surrogate | α | Best test acc (%) | n | Epochs | Configs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["stat"]
        acc = "—" if s is None else f"{s.mean:.2f}" + (f" ± {s.std:.2f}" if s.std is not None else "")
        alpha = "default" if r["alpha"] is None else f"{r['alpha']:g}"
        lines.append(f"| {r['task']} | {r['model']} | {r['sg']} | {alpha} | {acc} | {s.n if s else 0} | "
                     f"{r['epochs'] if r['epochs'] is not None else ''} | {r['configs']} |")
    notes = ["Mean ± sample std over the seeds (n) of the best configuration; Configs = how many configurations "
             "(runs differing in more than the seed) were compared. Rows sorted by accuracy within a task and model.",
             "The survey publishes no per-surrogate numbers for these tasks, so there is no survey column."]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def surrogate_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "model", "sg", "alpha", "acc_mean", "acc_std", "n", "epochs", "configs", "source"])
        for r in rows:
            s = r["stat"]
            writer.writerow([r["task"], r["model"], r["sg"], "" if r["alpha"] is None else r["alpha"],
                             s.mean if s else "", "" if s is None or s.std is None else s.std, s.n if s else 0,
                             "" if r["epochs"] is None else r["epochs"], r["configs"], r["source"]])


def surrogate_figure(path: Path, rows: list[dict]) -> bool:
    panels = list(dict.fromkeys((r["task"], r["model"]) for r in rows if r["stat"]))
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for ax, (task, model) in zip(axes[:, 0], panels):
        sel = [r for r in rows if (r["task"], r["model"]) == (task, model) and r["stat"]]
        ax.bar(range(len(sel)), [r["stat"].mean for r in sel], yerr=[r["stat"].std or 0 for r in sel], capsize=3)
        labels = [r["sg"] + ("" if r["alpha"] is None else f"\nα={r['alpha']:g}") for r in sel]
        ax.set_xticks(range(len(sel)), labels, rotation=45, ha="right", fontsize=7)
        low = min(r["stat"].mean for r in sel)
        ax.set_ylim(max(0.0, low - 5), 100)
        ax.set_ylabel("best test acc (%)")
        ax.set_title(f"{task} ({model})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------------- speed
SPEED_REFERENCE = "loop"  # speedups are relative to the loop LIF, as in the survey


def speed_rows(speed: list[tuple[Path, list[dict]]]) -> list[dict]:
    """One row per timed (CSV, mode, N, T, impl): median ms and speedup over the loop LIF, ours and the survey's
    (rows that ``speed/bench.py`` skipped or refused, ``status != ok``, are left out)."""
    rows = []
    for path, records in speed:
        ms = {(r["mode"], int(r["N"]), int(r["T"]), r["impl"]): float(r["median_ms"])
              for r in records if r.get("status", "ok") == "ok" and r["median_ms"]}
        for (mode, n, t, impl), ours in ms.items():
            theirs = record.survey_ms(impl, mode, t, n)
            ref_ours = ms.get((mode, n, t, SPEED_REFERENCE))
            ref_theirs = record.survey_ms(SPEED_REFERENCE, mode, t, n)
            rows.append({"csv": str(path), "mode": mode, "N": n, "T": t, "impl": impl, "ours_ms": ours,
                         "survey_ms": theirs, "ours_speedup": ref_ours / ours if ref_ours else None,
                         "survey_speedup": ref_theirs / theirs if ref_theirs and theirs else None})
    return rows


def speed_markdown(rows: list[dict]) -> str:
    """Per CSV and mode: ``ours ms / survey ms`` and ``×ours / ×survey`` speedup over the loop LIF."""
    lines = ["### Neuron kernel speed (median ms per call; speedup over the loop LIF)", ""]
    for path in dict.fromkeys(r["csv"] for r in rows):
        sel = [r for r in rows if r["csv"] == path]
        impls = list(dict.fromkeys(r["impl"] for r in sel))
        cell = {(r["mode"], r["N"], r["T"], r["impl"]): r for r in sel}
        lines += [f"`{path}`", "", "| mode | N | T | " + " | ".join(impls) + " |", "|---" * (3 + len(impls)) + "|"]
        for mode, n, t in dict.fromkeys((r["mode"], r["N"], r["T"]) for r in sel):
            texts = []
            for impl in impls:
                r = cell.get((mode, n, t, impl))
                if r is None:
                    texts.append("")
                    continue
                text = f"{r['ours_ms']:.4g}" + (f" / {r['survey_ms']:.4g}" if r["survey_ms"] is not None else "")
                if impl != SPEED_REFERENCE and r["ours_speedup"] is not None:
                    text += f" (×{r['ours_speedup']:.2f}" + (
                        f" / ×{r['survey_speedup']:.2f})" if r["survey_speedup"] is not None else ")")
                texts.append(text)
            lines.append(f"| {mode} | {n} | {t} | " + " | ".join(texts) + " |")
        lines.append("")
    lines.append("- Cells: ours / survey ms (`common/survey/speed_outs.csv`, GPU not stated), then (×ours / ×survey) = "
                 "speedup over the loop LIF on the same machine; only speedups are comparable across machines.")
    return "\n".join(lines) + "\n"


def speed_figure(path: Path, rows: list[dict]) -> bool:
    """Speedup over the loop LIF against T (largest N of each mode): ours solid, survey dashed."""
    panels = list(dict.fromkeys((r["csv"], r["mode"]) for r in rows if r["impl"] != SPEED_REFERENCE))
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (csv_path, mode) in zip(axes[0], panels):
        sel = [r for r in rows if (r["csv"], r["mode"]) == (csv_path, mode) and r["impl"] != SPEED_REFERENCE]
        n = max(r["N"] for r in sel)
        for i, impl in enumerate(dict.fromkeys(r["impl"] for r in sel)):
            mine = [r for r in sel if (r["impl"], r["N"]) == (impl, n)]
            pts = sorted((r["T"], r["ours_speedup"], r["survey_speedup"]) for r in mine)
            color = f"C{i % 10}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=impl)
            theirs = [(p[0], p[2]) for p in pts if p[2] is not None]
            if theirs:
                ax.plot(*zip(*theirs), "x--", color=color)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel("speedup over loop LIF")
        ax.set_title(f"{Path(csv_path).stem}: {mode}, N={n} (dashed: survey)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------------- main
def run_status(run: Run, duplicates: list[Run]) -> str:
    """finished / incomplete / duplicate (another run of the same configuration and seed is counted instead)."""
    if any(run is d for d in duplicates):
        return "duplicate"
    return "finished" if run.finished else "incomplete"


def runs_markdown(runs: list[Run], survey: dict) -> str:
    duplicates = unique_seeds(runs)[1]
    lines = ["### Runs", "", "| Run | Task | Column | Surrogate | Status | Epochs | Best test acc (%) | Differs |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        acc = best_acc_pct(run)
        status = run_status(run, duplicates)
        status = status if status == "finished" else f"**{status}**"
        differs = "; ".join(deviations(run, settings_of(run, survey)))
        lines.append(f"| `{run.path.name}` | {run.task} | {_model_label(run, survey)} | {run.arg('sg')} "
                     f"| {status} | {run.epochs_done}/{run.epochs_planned} | {'' if acc is None else f'{acc:.2f}'} "
                     f"| {differs} |")
    return "\n".join(lines) + "\n"


def runs_csv(path: Path, runs: list[Run], survey: dict) -> None:
    keys = ("neuron", "norm", "method", "sg", "sg_alpha", "seed")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "task", "column", *keys, "status", "epochs_done", "epochs", "differs", *METRICS])
        duplicates = unique_seeds(runs)[1]
        for run in runs:
            values = [metric(run, m, settings_of(run, survey)) for m in METRICS]
            writer.writerow([run.path, run.task, run.column or "", *(run.arg(k) for k in keys),
                             run_status(run, duplicates), run.epochs_done, run.epochs_planned,
                             "; ".join(deviations(run, settings_of(run, survey))),
                             *("" if v is None else v for v in values)])


def speed_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)


def write_part(out: Path, name: str, title: str, markdown: str, write_csv, draw) -> str:
    """``out/NAME.md``, ``NAME.csv`` (``write_csv(path)``) and ``NAME.png`` (``draw(path)``: whether there was
    anything to draw); returns the markdown with its figure linked (a part of ``tables.md``)."""
    (out / f"{name}.md").write_text(markdown)
    write_csv(out / f"{name}.csv")
    return markdown + (f"\n![{title}]({name}.png)\n" if draw(out / f"{name}.png") else "")


def collect(paths: list[Path], out: Path, alpha_of=default_alpha) -> Inputs:
    survey = record.collect_spec()
    found = gather(paths)
    out.mkdir(parents=True, exist_ok=True)
    cells = build_cells(found.runs, survey, alpha_of)
    parts = ["# Results vs the survey", ""]
    for name, spec in survey["tables"].items():
        tc = table_cells(spec, cells, survey)
        parts.append(write_part(out, name, spec["title"], table_markdown(spec, tc, survey),
                                partial(table_csv, cells=tc, survey=survey),
                                partial(table_figure, spec=spec, cells=tc, survey=survey)))
    rows = surrogate_rows(found.runs, found.digits, survey, alpha_of)
    parts.append(write_part(out, "surrogates", "surrogates", surrogate_markdown(rows),
                            partial(surrogate_csv, rows=rows), partial(surrogate_figure, rows=rows)))
    if found.speed:
        rows = speed_rows(found.speed)
        parts.append(write_part(out, "speed", "speed", speed_markdown(rows), partial(speed_csv, rows=rows),
                                partial(speed_figure, rows=rows)))
    runs_csv(out / "runs.csv", found.runs, survey)
    parts.append(runs_markdown(found.runs, survey))
    (out / "tables.md").write_text("\n".join(parts))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, folders of them, or CSV files")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    found = collect(args.paths, args.out)
    n_done = sum(r.finished for r in found.runs)
    unused = " (not used: the digits runs themselves were found)" if found.digits and any(
        r.task == "digits" for r in found.runs) else ""
    print(f"collect_results: {len(found.runs)} runs ({n_done} finished, {len(found.runs) - n_done} incomplete), "
          f"{len(found.speed)} speed CSVs, {len(found.digits)} digits-sweep CSV rows{unused} -> {args.out}/tables.md")
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
