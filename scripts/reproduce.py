#!/usr/bin/env python
"""Reproduce a cell of the survey's tables: list the cells, print or run the command behind one, or write a Slurm
job array for a selection (the table of record: ``common/survey``).

    python scripts/reproduce.py --list [--task TASK] [--table TABLE]
    python scripts/reproduce.py --print TASK COLUMN [--table sop] [--seed S]     # one line: python TASK/train.py ...
    python scripts/reproduce.py TASK COLUMN [--table TABLE] [--seed S]           # run it (resumes an unfinished run)
    python scripts/reproduce.py --slurm jobs.sbatch [--task cf10,shd] [--columns IF,LIF] [--seeds 0,1,2]

TASK: ``cf10``, ``scf10``, ``shd``, ``ncars`` (N-CARS pre-training of the Gen1 backbone, ``SFOD/pretrain.py``),
``sfod`` (Gen1, ``SFOD/train.py``), ``coco``, ``speed``. COLUMN is the survey's column (``IF``, ``LIF``, ``CLIF``,
``PSN``, ``TEBN``, ``TEBN-IF``, ``OSR``, ``BlockALIF``, ``Tandem``, ``KD-response``, ``KD-feature``; ``ANN`` = the
distillation teacher; ``--list`` shows every spelling) or a run name (``psn_k3``; SHD's PSN column stands on three
runs). Runs live in ``OUT_DIR/TASK/survey/RUN[_sSEED]``. A finished run (``summary.json``) is not started again; an
unfinished one (``checkpoint_latest.pt``) continues with ``--resume RUN_DIR`` alone (its recorded configuration). A
cell that needs another run (a distillation teacher, a Gen1 cell's N-CARS backbone) is refused until that run has
finished.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from common import survey
from common.survey import Cell

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cell", nargs="*", metavar="TASK COLUMN", help="run the command of this cell")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list the cells (with --task / --table: some of them)")
    what.add_argument("--print", dest="print_cell", nargs=2, metavar=("TASK", "COLUMN"),
                      help="print the command line of one cell")
    what.add_argument("--slurm", type=Path, metavar="FILE", help="write a Slurm job-array script for a selection")
    what.add_argument("--sweep-jobs", metavar="TASK", help=argparse.SUPPRESS)  # for scripts/sweep_methods.sh
    p.add_argument("--task", default=None, help="comma list of tasks (--list, --slurm)")
    p.add_argument("--table", default=None, help=f"table: {', '.join(survey.TABLES)} (default: accuracy)")
    p.add_argument("--columns", default=None, help="comma list of columns or run names (--slurm)")
    p.add_argument("--seed", type=int, default=None, help="append --seed S (run directory RUN_sS)")
    p.add_argument("--seeds", default=None, help="comma list of seeds (--slurm: one array task per cell and seed)")
    p.add_argument("--out-dir", default=survey.OUT_DIR, help="root of the run directories")
    p.add_argument("--dry-run", action="store_true", help="with TASK COLUMN: print what would run")
    g = p.add_argument_group("Slurm (--slurm)")
    g.add_argument("--partition", default=None)
    g.add_argument("--time", default="2-00:00:00", help="time limit per array task (a requeued task resumes)")
    g.add_argument("--cpus", type=int, default=8, help="CPUs per array task")
    g.add_argument("--python", default="python", help="interpreter inside the job")
    return p


def fail(message: str) -> None:
    print(f"reproduce.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _find(task: str, column: str) -> Cell:
    try:
        return survey.find(task, column)
    except ValueError as e:
        fail(str(e))


def _value(cell: Cell, table: str) -> str:
    value = cell.published.get(table)
    return "–" if value is None else str(value).replace(" ", "")  # exactly as published


def list_cells(tasks: list[str] | None, table: str | None) -> list[str]:
    """One line per (cell, table): task, table, column, run, published value (at full precision, the column as
    wide as the longest), note; with ``tasks``, their cells and the cells whose runs they need."""
    rows = [("task", "table", "column", "run", "published", "note")]
    needed = {survey.dependency(c) for c in survey.cells() if tasks and c.task in tasks and c.teacher}
    for cell in survey.cells():
        if tasks and cell.task not in tasks and cell not in needed:  # with the runs they need (N-CARS backbones)
            continue
        note = cell.note
        for name in cell.published or {"(teacher)": None}:
            if table is None or name == table:
                rows.append((cell.task, name, cell.column, cell.run, _value(cell, name), note))
                note = ""
    width = max(len(row[4]) for row in rows)
    return [f"{task:6s} {name:17s} {column:13s} {run:20s} {value:>{width}s}  {note}".rstrip()
            for task, name, column, run, value, note in rows]


def table_of(cell: Cell, table: str | None) -> str:
    if table is None:  # the cell's first table, whose command trains its run (or times the kernels)
        return next((t for t in cell.published if survey.kind(t) in ("train", "speed")), "accuracy")
    if table not in survey.TABLES:
        fail(f"--table {table}: valid: {', '.join(survey.TABLES)}")
    if table not in cell.published and (cell.published or table != "accuracy"):  # the teacher only trains
        fail(f"{cell.task} {cell.column} has no number in table '{table}'; its tables: {', '.join(cell.published)}")
    return table


def run_state(run_dir: Path) -> str:
    """``finished`` (summary.json), ``resume`` (checkpoint_latest.pt) or ``start``."""
    if (run_dir / "summary.json").is_file():
        return "finished"
    return "resume" if (run_dir / "checkpoint_latest.pt").is_file() else "start"


def check_dependency(cell: Cell, args) -> None:
    """Refuse (one line) to train ``cell`` before the run it needs has finished."""
    needed = survey.dependency(cell)
    if needed is None:
        return
    needed_dir = survey.run_dir(needed, args.out_dir, args.seed)
    if run_state(ROOT / needed_dir) != "finished":
        seed = [] if args.seed is None else ["--seed", str(args.seed)]
        fail(f"{cell.task} {cell.column} needs the finished run {needed_dir} (no summary.json); run it first: "
             f"python scripts/reproduce.py {shlex.join([needed.task, needed.run, *seed])}")


def run_cell(cell: Cell, table: str, args) -> int:
    argv = survey.command(cell, table, args.out_dir, args.seed)
    if survey.kind(table) == "train" and cell.task != "speed":
        run_dir = survey.run_dir(cell, args.out_dir, args.seed)
        state = run_state(ROOT / run_dir)
        if state == "finished":
            print(f"reproduce.py: {ROOT / run_dir} is finished (summary.json); nothing to do")
            return 0
        if state == "resume":
            argv = ["python", cell.script, "--resume", run_dir]
        else:
            check_dependency(cell, args)
    argv = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    print("+ " + shlex.join(argv), flush=True)
    return 0 if args.dry_run else subprocess.call(argv, cwd=ROOT)


def split(text: str | None) -> list[str]:
    return [t for t in (text or "").split(",") if t]


def selection(args) -> list[Cell]:
    """The training cells of ``--task`` / ``--columns`` (column or run names), the runs they need first."""
    tasks = split(args.task) or survey.training_tasks()
    unknown = [t for t in tasks if t not in survey.training_tasks()]
    if unknown:
        fail(f"unknown task '{unknown[0]}'; the survey's method tables cover: {', '.join(survey.training_tasks())}")
    names = split(args.columns)
    for name in names:
        if not any(c.named(name) for t in tasks for c in survey.select(t)):
            runs = " ".join(c.run for t in tasks for c in survey.select(t))
            fail(f"unknown column '{name}' for {','.join(tasks)}; columns and runs: {runs}")
    chosen: list[Cell] = []
    for task in tasks:
        cells = [c for c in survey.select(task) if not names or any(c.named(n) for n in names)]
        chosen += [survey.dependency(c) for c in cells if c.teacher] + cells
    return list(dict.fromkeys(chosen))


def sweep_jobs(task: str, args) -> list[str]:
    """``column<TAB>run<TAB>needed run or -<TAB>SOP mode or -<TAB>script<TAB>args`` per selected cell of ``task``,
    the runs they need (teacher, N-CARS backbone) first (scripts/sweep_methods.sh; the SOP mode of the task's
    convention when the cell has a published SOP)."""
    args.task = task
    jobs = []
    for c in selection(args):
        needed = survey.dependency(c)
        sop = survey.SOP_MODES[c.task] if any(survey.kind(t) == "sop" for t in c.published) else "-"
        jobs.append(f"{c.column}\t{c.run}\t{needed.run if needed else '-'}\t{sop}\t{c.script}\t{' '.join(c.args)}")
    return jobs


SLURM_BODY = r'''
set -euo pipefail
cd {root}
PYTHON=${{PYTHON:-{python}}}
case ${{SLURM_ARRAY_TASK_ID:?run me with sbatch}} in
{cases}
    *) echo "no survey cell for array index $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;
esac
if [[ -f $RUN_DIR/summary.json ]]; then
    echo "$TASK $RUN_DIR: finished (summary.json); nothing to do"
    exit 0
fi
if [[ -n $TEACHER && ! -f $TEACHER/summary.json ]]; then
    echo "$TASK $RUN_DIR: the run it needs (teacher / backbone) $TEACHER has not finished;" \
         "resubmit this index (--array=$SLURM_ARRAY_TASK_ID) after it" >&2
    exit 1
fi
if [[ -f $RUN_DIR/checkpoint_latest.pt ]]; then
    ARGS=(--resume "$RUN_DIR")  # continue with the run's recorded configuration
fi
if (( GPUS > 1 )); then
    LAUNCH=(torchrun --standalone --nproc_per_node="$GPUS")
else
    LAUNCH=("$PYTHON")
fi
echo "+ ${{LAUNCH[*]}} $SCRIPT ${{ARGS[*]}}"
exec "${{LAUNCH[@]}}" "$SCRIPT" "${{ARGS[@]}}"
'''


def slurm_log_dir(out_dir: str) -> Path:
    """Absolute folder of the array tasks' logs (Slurm opens it before the job starts and does not create it)."""
    return ROOT / out_dir / "slurm"  # an absolute out_dir replaces ROOT


def slurm_script(cells: list[Cell], seeds: list[int | None], args) -> str:
    """A job-array script: one array index per (cell, seed); comment lines ``# cell INDEX TASK COLUMN RUN_DIR``."""
    jobs = [(cell, seed) for cell in cells for seed in seeds]
    gpus = max(cell.gpus for cell, _ in jobs)
    logs = slurm_log_dir(args.out_dir)
    head = ["#!/bin/bash", "#SBATCH --job-name=survey", f"#SBATCH --array=0-{len(jobs) - 1}",
            f"#SBATCH --gpus-per-node={gpus}", f"#SBATCH --cpus-per-task={args.cpus}", f"#SBATCH --time={args.time}",
            "#SBATCH --requeue", f"#SBATCH --output={logs}/%x_%A_%a.out"]
    head += [f"#SBATCH --partition={args.partition}"] if args.partition else []
    head += ["# generated by: python scripts/reproduce.py " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "",
             "# A re-submitted index continues its run (--resume RUN_DIR); a finished run is skipped.",
             "# Cells that need another run (distillation: its teacher ANN; Gen1: its N-CARS backbone) wait for it:",
             "# resubmit their indices once it has finished."]
    head += [f"# cell {i} {c.task} {c.column} {survey.run_dir(c, args.out_dir, s)}" for i, (c, s) in enumerate(jobs)]
    cases = []
    for i, (cell, seed) in enumerate(jobs):
        needed = survey.dependency(cell)
        teacher = survey.run_dir(needed, args.out_dir, seed) if needed else ""
        cases.append(f"    {i}) TASK={cell.task}; SCRIPT={cell.script}; "
                     f"RUN_DIR={shlex.quote(survey.run_dir(cell, args.out_dir, seed))}; "
                     f"GPUS={cell.gpus}; TEACHER={shlex.quote(teacher) if teacher else ''}\n"
                     f"       ARGS=({shlex.join(survey.train_args(cell, args.out_dir, seed))}) ;;")
    body = SLURM_BODY.format(root=shlex.quote(str(ROOT)), python=shlex.quote(args.python), cases="\n".join(cases))
    return "\n".join(line for line in head if line) + "\n" + body


DOC = Path("docs") / "reproducing-table.md"  # generated by scripts/gen_docs.py from markdown()


def _md(text: str) -> str:
    """``text`` safe in a Markdown table cell (``|`` splits cells, ``<`` starts HTML)."""
    return text.replace("|", "\\|").replace("<", "\\<")


def _md_value(cell: Cell, table: str) -> str:
    value = cell.published.get(table)
    return "" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _task_table(task: str) -> list[str]:
    cells = survey.select(task)
    tables = [t for t in survey.TABLES if any(t in c.published for c in cells)]
    lines = ["| column | run | " + " | ".join(tables) + " | command (`--print " + task + " RUN`) | note |",
             "|---" * (len(tables) + 4) + "|"]
    for c in cells:
        lines.append(f"| {c.column} | `{c.run}` | " + " | ".join(_md_value(c, t) for t in tables)
                     + f" | `{shlex.join(survey.command(c, table_of(c, None)))}` | {_md(c.note)} |")
    return lines


def _quirk_table() -> list[str]:
    import importlib

    from common import quirks

    for cell in survey.cells():  # a task registers its quirks when its code is imported
        if cell.task != "speed":
            importlib.import_module(cell.script.removesuffix(".py").replace("/", "."))
    lines = ["| `--survey-quirk` | tasks | survey behaviour it reproduces | cells |", "|---|---|---|---|"]
    for q in sorted(quirks.QUIRKS.values(), key=lambda q: q.name):
        if not set(q.tasks) & set(survey.training_tasks()):  # quirks of tasks whose cells are not here (yet)
            continue
        users = ", ".join(f"{c.task} {c.run}" for c in survey.cells() if q.name in c.quirks()) or "—"
        lines.append(f"| `{q.name}` | {', '.join(q.tasks)} | {_md(q.description)} | {users} |")
    return lines


def _how(task: str) -> list[str]:
    """How the SOP and throughput cells of ``task`` are made (those it has)."""
    cells = survey.select(task)
    kinds = {survey.kind(t) for c in cells for t in c.published}
    parts = []
    if "sop" in kinds:
        sop = survey.sop_args(cells[-1])
        parts.append(f"SOP cells: `python {cells[-1].script} {' '.join(sop[:3])} --resume RUN_DIR` on the finished "
                     "run")
    if "throughput" in kinds:
        parts.append(f"throughput cells: `python speed/throughput.py {' '.join(survey.THROUGHPUT_ARGS)} "
                     f"--tasks {task} --methods RUN`")
    return ["; ".join(parts) + ".", ""] if parts else []


def markdown() -> str:
    """``docs/reproducing-table.md``: every cell with its published numbers and command, and every survey quirk."""
    out = ["<!-- generated by scripts/gen_docs.py from common/survey (the table of record): do not edit -->",
           "# The survey's cells and their commands", "",
           "Generated from the table of record [`common/survey`](../common/survey/record.py). "
           "`python scripts/reproduce.py --list` lists the same cells, `--print TASK COLUMN` prints a command, "
           "`python scripts/reproduce.py TASK COLUMN` runs it (an unfinished run continues with `--resume`, a "
           "finished one is skipped) and `--slurm FILE [--task ...] [--columns ...] [--seeds 0,1,2]` writes a "
           "Slurm job array (one array task per cell and seed, resumable). Run directories: "
           f"`{survey.OUT_DIR}/TASK/survey/RUN[_sSEED]`.", ""]
    out += [f"- {_md(note)}" for note in survey.NOTES]
    for task in survey.tasks():
        out += ["", f"## {survey.TASK_NAMES.get(task, task)} (`{task}`)", ""]
        out += _how(task) + _task_table(task)
    out += ["", "## Survey-compatibility switches", ""] + _quirk_table()
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print("\n".join(list_cells(split(args.task) or None, args.table)))
        return 0
    if args.sweep_jobs:
        print("\n".join(sweep_jobs(args.sweep_jobs, args)))
        return 0
    if args.slurm:
        seeds = [int(s) for s in split(args.seeds)] or [None]
        cells = selection(args)
        args.slurm.parent.mkdir(parents=True, exist_ok=True)
        args.slurm.write_text(slurm_script(cells, seeds, args))
        slurm_log_dir(args.out_dir).mkdir(parents=True, exist_ok=True)
        print(f"wrote {args.slurm}: {len(cells) * len(seeds)} array tasks; submit with: sbatch {args.slurm}")
        return 0
    if args.print_cell:
        cell = _find(*args.print_cell)
        print(shlex.join(survey.command(cell, table_of(cell, args.table), args.out_dir, args.seed)))
        return 0
    if len(args.cell) != 2:
        fail("give TASK COLUMN (or --list, --print TASK COLUMN, --slurm FILE)")
    cell = _find(*args.cell)
    return run_cell(cell, table_of(cell, args.table), args)


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()  # here, not at exit: a reader that stopped early (`--list | head`) shows up now
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        code = 128 + signal.SIGPIPE  # as a tool killed by SIGPIPE
    sys.exit(code)
