"""The table of record of the survey's experiments: every cell of its result tables (task, table, column, the
published value, the complete argument list of the run behind it, a note), and the command lines built from it.

Nothing else in the repository spells out a survey configuration: ``scripts/reproduce.py`` prints, runs and
schedules these commands, ``scripts/sweep_methods.sh`` reads its jobs from there, ``scripts/collect_results.py``
its published numbers and column rules, ``speed/throughput.py`` its per-column flags and ``speed/bench.py`` the
published kernel times (``speed_outs.csv``); ``docs/reproducing-table.md`` is generated from it.

    from common import survey
    cell = survey.find("cf10", "CLIF")          # a Cell (column name or run name; ValueError lists the choices)
    survey.command(cell, "accuracy")            # ["python", "cf10/train.py", ..., "--run-name", "clif"]

The cells live in :mod:`common.survey.record` (cf10, scf10, SHD, N-CARS pre-training and Gen1 (``SFOD/``),
COCO, kernel speed). A cell's ``task`` is the one its run records in ``args.json`` (``ncars``, ``sfod``), ``folder``
its directory when they differ (``SFOD``). This module imports no task code.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from common.survey.record import (
    CELLS,
    COCO_STATS,
    NOTES,
    SETTINGS,
    SOP_MODES,
    SPEED_BENCH_ARGS,
    TABLES,
    TASK_NAMES,
    THROUGHPUT_ARGS,
)

OUT_DIR = "runs"  # run directories: OUT_DIR/<task>/survey/<run>
OUTS_CSV = Path(__file__).with_name("speed_outs.csv")
TEACHER = "{teacher}"  # placeholder in a cell's args for the run directory of the cell it needs


@dataclass(frozen=True)
class Cell:
    """One survey run and the published numbers it stands behind.

    ``task``: the task folder (``TASK/train.py``; ``speed`` = ``speed/bench.py``); ``column``: the survey's column
    (see :data:`TASK_NAMES` / ``--list``); ``run``: the run directory name (unique per task); ``args``: the complete
    argument list of the survey's run (``{teacher}`` = the run directory of the ``teacher`` cell: a distillation
    teacher, or a Gen1 cell's N-CARS backbone run; ``RUN`` of the same task or ``TASK:RUN``); ``published``:
    table -> value (``None``: no number in the survey); ``stats``: the survey's 12 pycocotools stats of a
    detection run (:data:`COCO_STATS`); ``gpus``: GPUs of one run (``torchrun`` when > 1); ``entry``: the script
    in the task's folder."""

    task: str
    column: str
    run: str
    args: tuple[str, ...]
    published: Mapping[str, float | str | None] = field(default_factory=dict, hash=False, compare=False)
    note: str = ""
    teacher: str | None = None
    gpus: int = 1
    folder: str | None = None  # the task's folder when it differs from the task name (e.g. SFOD for sfod)
    entry: str = "train.py"
    stats: Mapping[str, float] = field(default_factory=dict, hash=False, compare=False)

    @property
    def script(self) -> str:
        return "speed/bench.py" if self.task == "speed" else f"{self.folder or self.task}/{self.entry}"

    def named(self, name: str) -> bool:
        """Whether ``name`` is this cell's column or run name (case-insensitive)."""
        return name.lower() in (self.column.lower(), self.run.lower())

    def quirks(self) -> list[str]:
        """The ``--survey-quirk`` names in ``args``."""
        return [self.args[i + 1] for i, a in enumerate(self.args[:-1]) if a == "--survey-quirk"]

    def flag(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name`` in ``args`` (the last one), else ``default``."""
        values = [self.args[i + 1] for i, a in enumerate(self.args[:-1]) if a == name]
        return values[-1] if values else default


@cache
def cells() -> tuple[Cell, ...]:
    """Every cell of :mod:`common.survey.record`."""
    return tuple(Cell(**c) for c in CELLS)


def kind(table: str) -> str:
    """What the command of a ``table`` cell does: ``train`` (trains the run), ``sop`` (counts the finished run),
    ``throughput`` (``speed/throughput.py``) or ``speed`` (``speed/bench.py``)."""
    return TABLES[table].get("command", "train")


def dependency(cell: Cell) -> Cell | None:
    """The cell whose finished run ``cell`` needs (its ``teacher``: ``RUN`` of its task or ``TASK:RUN``)."""
    if cell.teacher is None:
        return None
    task, _, run = cell.teacher.rpartition(":")
    return find(task or cell.task, run)


def tasks() -> list[str]:
    return list(dict.fromkeys(c.task for c in cells()))


def training_tasks() -> list[str]:
    """Tasks whose cells train runs (all but the kernel speed study)."""
    return [t for t in tasks() if t != "speed"]


def select(task: str | None = None, table: str | None = None) -> list[Cell]:
    """Cells of ``task`` (all if None) that publish a number in ``table`` (all if None)."""
    return [c for c in cells() if (task is None or c.task == task) and (table is None or table in c.published)]


def find(task: str, column: str) -> Cell:
    """The cell of ``task`` whose column or run name is ``column`` (case-insensitive); ``ValueError`` (one line,
    with the choices) when there is none or several."""
    of_task = select(task)
    if not of_task:
        raise ValueError(f"no survey cells for task '{task}'; tasks: {', '.join(tasks())}")
    key = column.lower()
    hits = [c for c in of_task if c.run.lower() == key] or [c for c in of_task if c.column.lower() == key]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ValueError(f"{task} {column}: {len(hits)} runs stand behind this column; name one: "
                         f"{', '.join(c.run for c in hits)}")
    columns = ", ".join(dict.fromkeys(c.column for c in of_task))
    raise ValueError(f"{task}: no column or run '{column}'; columns: {columns}; runs: "
                     f"{', '.join(c.run for c in of_task)}")


def run_dir(cell: Cell, out_dir: str = OUT_DIR, seed: int | None = None) -> str:
    return f"{out_dir}/{cell.task}/survey/{run_name(cell, seed)}"


def run_name(cell: Cell, seed: int | None = None) -> str:
    return cell.run if seed is None else f"{cell.run}_s{seed}"


def train_args(cell: Cell, out_dir: str = OUT_DIR, seed: int | None = None) -> list[str]:
    """The arguments of ``TASK/train.py`` for a fresh run: the cell's args (teacher resolved, ``--seed``) and the
    run directory ``out_dir/<task>/survey/<run>[_s<seed>]``."""
    needed = dependency(cell)
    teacher = run_dir(needed, out_dir, seed) if needed else None
    args = [teacher if a == TEACHER else a for a in cell.args]
    if seed is not None:
        args += ["--seed", str(seed)]
    return args + ["--out-dir", f"{out_dir}/{cell.task}/survey", "--run-name", run_name(cell, seed)]


def sop_args(cell: Cell, out_dir: str = OUT_DIR, seed: int | None = None) -> list[str]:
    """SOP counting of the finished run in the survey's convention of its task (the run's recorded configuration
    is taken over by ``--resume``)."""
    return ["--sop", "--sop-mode", SOP_MODES[cell.task], "--resume", run_dir(cell, out_dir, seed)]


def throughput_args(cell: Cell) -> list[str]:
    """``speed/throughput.py`` arguments timing this cell's configuration at the survey's batch and width."""
    return [*THROUGHPUT_ARGS, "--tasks", cell.task, "--methods", cell.run]


def command(cell: Cell, table: str = "accuracy", out_dir: str = OUT_DIR, seed: int | None = None) -> list[str]:
    """The command line (``python SCRIPT ...``) that produces ``cell``'s number in ``table``."""
    if cell.task == "speed":
        return ["python", cell.script, *cell.args]
    if kind(table) == "sop":
        return ["python", cell.script, *sop_args(cell, out_dir, seed)]
    if kind(table) == "throughput":
        return ["python", "speed/throughput.py", *throughput_args(cell)]
    return ["python", cell.script, *train_args(cell, out_dir, seed)]


def method_flags(cell: Cell) -> list[str]:
    """The cell's args without its epochs, batch, T, precision and teacher (``speed/throughput.py`` sets its own
    batch, width and precision, and a random teacher)."""
    drop = {"--epochs": 1, "-b": 1, "--amp": 0, "--T": 1, "--teacher": 1}
    out, skip = [], 0
    for a in cell.args:
        if skip:
            skip -= 1
        elif a in drop:
            skip = drop[a]
        else:
            out.append(a)
    return out


@cache
def speed_times() -> dict[tuple[str, int, int], dict[str, float]]:
    """The survey's kernel times (``speed_outs.csv``, from its ``speed/outs.csv``): ``{(mode, T, N): {column: ms}}``;
    columns ``loop``, ``psn``, ``spikingjelly_cupy``, ``blockalif-L<l>``, ``alif-L<l>`` (missing = not run)."""
    table = {}
    with OUTS_CSV.open() as f:
        for row in csv.DictReader(f):
            key = (row["mode"], int(row["T"]), int(row["N"]))
            table[key] = {k: float(v) for k, v in row.items() if k not in ("mode", "power", "N", "T") and v}
    return table


SURVEY_LABEL = "survey (GPU, cmp_speed2.py)"
# speed/bench.py implementation -> column of speed_outs.csv (the survey's implementations of its speed study)
IMPL_TO_SURVEY = {"loop": "loop", "psn": "psn", "spikingjelly-cupy": "spikingjelly_cupy",
                  **{f"{kind}-survey-L{lat}": f"{kind}-L{lat}" for kind in ("blockalif", "alif")
                     for lat in (0, 1, 3, 7)}}


def survey_ms(impl: str, mode: str, T: int, N: int) -> float | None:
    """The survey's time for ``speed/bench.py`` implementation ``impl``, or ``None`` when it did not run it."""
    column = IMPL_TO_SURVEY.get(impl)
    return speed_times().get((mode, T, N), {}).get(column) if column else None


def collect_spec() -> dict:
    """What ``scripts/collect_results.py`` compares against: columns, dataset names, per-task settings and, per
    table, title / metric / format / notes and rows ``{task: {column: published value}}`` (the kernel speed table
    is compared by ``speed_rows`` instead)."""
    tables = {}
    for name, spec in TABLES.items():
        if name == "speed":
            continue
        rows: dict[str, dict] = {}
        for cell in select(table=name):
            rows.setdefault(cell.task, {}).setdefault(cell.column, cell.published[name])
        tables[name] = {**spec, "rows": rows}
    columns = [c.column for c in cells() if c.task != "speed"]
    return {"columns": {c: c for c in dict.fromkeys(columns)}, "datasets": dict(TASK_NAMES),
            "survey_settings": dict(SETTINGS), "tables": tables}


def cell_of(task: str, args: Mapping) -> Cell | None:
    """The cell whose run a recorded configuration (``args.json``) belongs to: the first cell of ``task`` whose
    ``--neuron`` / ``--norm`` / ``--method`` (those its args name) equal the recorded ones."""
    for cell in select(task):
        rule = {dest: cell.flag(flag) for flag, dest in (("--neuron", "neuron"), ("--norm", "norm"),
                                                          ("--method", "method"))}
        if cell.task != "speed" and all(str(args.get(dest, DEFAULTS[dest])) == value
                                        for dest, value in rule.items() if value is not None):
            return cell
    return None


DEFAULTS = {"neuron": "lif", "norm": "bn", "method": "bptt"}


__all__ = ["COCO_STATS", "Cell", "NOTES", "SETTINGS", "SOP_MODES", "SPEED_BENCH_ARGS", "TABLES", "TASK_NAMES",
           "THROUGHPUT_ARGS", "cell_of", "cells", "collect_spec", "command", "dependency", "find", "kind",
           "method_flags", "select", "speed_times", "survey_ms", "tasks"]
