"""Training / test throughput (samples/s) and peak memory of the cf10 / scf10 networks per method (survey §6.3).

For every method column of the survey's table the task's own parser builds the survey run's flags (the table of
record's cell, ``common/survey``, without its epochs / batch / precision: :data:`METHODS`), the task's own
``build_task`` builds the model (no dataset is loaded: the batches are synthetic ``torch.rand`` images with random
labels), and one training step is the engine's own ``common.training.train_step`` (gradient clipping, accumulation and
EMA as the flags say); a test step is ``model.eval(); no_grad; method.eval_step``. By default loading is excluded and
our fastest kernels run; ``--survey-timing`` times as the survey's per-epoch prints did: whole passes over a
``DataLoader`` (the task's collate, 4 workers; 0 for BlockALIF, as its runs used ``-j 0``) of ``--steps`` batches,
loader time included, and CLIF as the Python loop (``--backend torch``).
Distillation gets a randomly initialised ANN teacher. Times come from ``common.timing`` (median of repeated steps);
``samples/s = batch / median step time``; peak memory is that of one training step
(``common.timing.peak_memory_mb``: RSS high-water on CPU, allocator peak on CUDA; the survey's "GPU memory" is
nvidia-smi's whole-process figure and not directly comparable).

    python speed/throughput.py --device cpu                  # small CPU defaults: C = 32, batch 16, T = 4
    python speed/throughput.py --device cuda --channels 128 -b 128 --amp

Writes ``throughput.csv`` and ``throughput.md`` (ours beside the survey's GPU numbers) into ``--out`` (default: a new
folder under ``runs/throughput/``).
A method that cannot be built is listed with the reason.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

from common import checkpoint, cli, methods, survey, training
from common.batch import Batch
from common.distributed import DistInfo
from common.state import reset_net
from common.timing import peak_memory_mb, time_call
from speed.bench import default_out

# task -> survey column -> flags of the task's train.py (the table of record's cells with a published throughput)
METHODS = {task: {cell.column: survey.method_flags(cell) for cell in survey.select(task, "train_speed")}
           for task in ("cf10", "scf10")}
SURVEY_WORKERS = {"BlockALIF": 0}  # loader workers of the survey's runs (default 4)
SURVEY_BACKEND = {"CLIF": "torch"}  # the survey's CLIF was a Python loop
COLUMNS = ["task", "method", "train_samples_per_s", "test_samples_per_s", "peak_mem_mb", "train_step_ms",
           "test_step_ms", "survey_train_samples_per_s", "survey_test_samples_per_s", "survey_gpu_mem_mb",
           "status", "flags"]


def make_teacher(train_mod, args, folder: Path) -> Path:
    """A randomly initialised ANN teacher checkpoint (distillation speed does not depend on its weights)."""
    ann = train_mod.build_task(args).build_model("ann")
    path = folder / "teacher.pt"
    checkpoint.save_atomic({"model": ann.state_dict()}, path)
    return path


def synthetic_loader(task, args, steps: int, workers: int, train: bool) -> DataLoader:
    """``steps`` batches of synthetic images and labels through a ``DataLoader`` with the task's collate."""
    gen = torch.Generator().manual_seed(0)
    n = steps * args.batch_size
    data = TensorDataset(torch.rand(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen))
    collate = (task.train_collate if train else task.test_collate) or default_collate
    return DataLoader(data, batch_size=args.batch_size, num_workers=workers, collate_fn=collate, drop_last=True)


def build_step(train_mod, flags: list[str], common_flags: list[str], folder: Path, loader_steps: int = 0,
               workers: int = 4):
    """``(train_step, test_step, samples per call)`` closures for one method: the task's model (no dataset is
    loaded) and the engine's own :func:`common.training.train_step` / ``method.eval_step`` on one synthetic batch, or
    with ``loader_steps`` a whole pass over a loader of that many synthetic batches (loading included)."""
    argv = [*common_flags, *flags]
    args = cli.parse(train_mod.build_parser(), argv)
    if args.method.startswith("distill"):
        args = cli.parse(train_mod.build_parser(), [*argv, "--teacher", str(make_teacher(train_mod, args, folder))])
    device = torch.device(args.device)
    task = train_mod.build_task(args)
    env = training.Env(device, DistInfo())
    state = training.build_state(args, task, env, methods.get(args.method)(args, task), steps_per_epoch=1)
    if loader_steps:
        batches = {train: synthetic_loader(task, args, loader_steps, workers, train) for train in (True, False)}
    else:
        gen = torch.Generator().manual_seed(0)
        fixed = [Batch(torch.rand(args.batch_size, 3, 32, 32, generator=gen),
                       torch.randint(0, 10, (args.batch_size,), generator=gen), {}).to(device)]  # copied once, untimed
        batches = {True: fixed, False: fixed}

    def train_step():
        state.ddp.train()
        for item in batches[True]:
            training.train_step(state, Batch.of(item).to(device))

    @torch.no_grad()
    def test_step():
        state.ddp.eval()
        for item in batches[False]:
            reset_net(state.ddp)
            state.method.eval_step(state.ddp, Batch.of(item).to(device), state.ctx)
        reset_net(state.ddp)

    return train_step, test_step, args.batch_size * max(loader_steps, 1)


def measure(task: str, name: str, flags: list[str], common_flags: list[str], args, train_mod) -> dict:
    published = survey.find(task, name).published
    if args.survey_timing:
        flags = [*flags, *(["--backend", SURVEY_BACKEND[name]] if name in SURVEY_BACKEND else [])]
    row = {**dict.fromkeys(COLUMNS), "task": task, "method": name, "flags": " ".join(flags),
           "survey_train_samples_per_s": published.get("train_speed"),
           "survey_test_samples_per_s": published.get("test_speed"), "survey_gpu_mem_mb": published.get("memory")}
    loader = (args.steps, SURVEY_WORKERS.get(name, 4)) if args.survey_timing else (0, 0)
    try:
        with tempfile.TemporaryDirectory() as folder:
            train_step, test_step, batch = build_step(train_mod, flags, common_flags, Path(folder), *loader)
            train_step()  # warm-up
            peak = peak_memory_mb(train_step, args.device)
            repeats = 1 if args.survey_timing else args.steps  # one pass over the loader of --steps batches
            t_train = time_call(train_step, args.device, repeats=repeats, warmup=0)
            t_test = time_call(test_step, args.device, repeats=repeats, warmup=1)
    except Exception as error:  # one method failing must not hide the others; it is reported
        row["status"] = f"skipped: {type(error).__name__}: {error}"[:200]
        return row
    row.update(train_samples_per_s=batch / (t_train.median_ms * 1e-3), test_samples_per_s=batch / (
        t_test.median_ms * 1e-3), peak_mem_mb=peak, train_step_ms=t_train.median_ms, test_step_ms=t_test.median_ms,
        status="ok")
    return row


def fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(rows, meta: dict) -> str:
    out = ["# Throughput per method (synthetic batches)", ""] + [f"- {k}: {v}" for k, v in meta.items()] + [""]
    header = ["task", "method", "train samples/s", "test samples/s", "peak MiB", "survey GPU train samples/s",
              "survey GPU test samples/s", "survey GPU memory (MB)"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = ["task", "method", "train_samples_per_s", "test_samples_per_s", "peak_mem_mb", "survey_train_samples_per_s",
            "survey_test_samples_per_s", "survey_gpu_mem_mb"]
    for r in rows:
        out.append("| " + " | ".join(fmt(r[k]) for k in keys) + " |")
    skipped = [f"- {r['task']} {r['method']}: {r['status']}" for r in rows if r["status"] != "ok"]
    return "\n".join(out + (["", "## Not measured", ""] + skipped if skipped else [])) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--tasks", default="cf10,scf10")
    p.add_argument("--methods", default=None,
                   help="comma list of survey columns or run names (default: all of the task's)")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("-b", "--batch-size", type=int, default=16)
    p.add_argument("-T", "--T", type=int, default=None, help="time steps (default: the task's)")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--steps", type=int, default=3, help="timed steps per method and phase (--survey-timing: "
                   "batches per timed pass over the loader)")
    p.add_argument("--survey-timing", action="store_true",
                   help="time as the survey's per-epoch prints: loader included (4 workers, BlockALIF 0), "
                        "Python-loop CLIF")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads; 0 = torch's default (default 1, as in speed/bench.py)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: a new runs/throughput/<device>-<date>-<time>; the committed "
                        "speed/results/<device> change only when named here)")
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [t for t in args.tasks.split(",") if t and t not in METHODS]
    if unknown:
        parser.error(f"--tasks: unknown task(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    for task in [t for t in args.tasks.split(",") if t]:
        for name in (args.methods or "").split(","):
            if name and not any(c.named(name) for c in survey.select(task, "train_speed")):
                parser.error(f"--methods {name}: not a survey column of {task}; valid: {', '.join(METHODS[task])}")
    args.out = args.out or default_out(torch.device(args.device).type, Path("runs") / "throughput")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if torch.device(args.device).type == "cpu" and args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    start = time.time()
    common_flags = ["--device", args.device, "--channels", str(args.channels), "-b", str(args.batch_size),
                    *(["-T", str(args.T)] if args.T else []), *(["--amp"] if args.amp else [])]
    rows = []
    for task in [t for t in args.tasks.split(",") if t]:
        train_mod = importlib.import_module(f"{task}.train")
        wanted = args.methods.split(",") if args.methods else list(METHODS[task])
        for name in [survey.find(task, n).column for n in wanted]:
            row = measure(task, name, METHODS[task][name], common_flags, args, train_mod)
            rows.append(row)
            print(f"{task:6s} {name:22s} train {fmt(row['train_samples_per_s']):>8s}/s  test "
                  f"{fmt(row['test_samples_per_s']):>8s}/s  peak {fmt(row['peak_mem_mb'])} MiB  {row['status']}",
                  flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "throughput.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    meta = {"command": " ".join(["python speed/throughput.py", *(sys.argv[1:] if argv is None else argv)]),
            "flags given to every method": " ".join(common_flags), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "wall time (s)": f"{time.time() - start:.0f}",
            "note": "survey numbers: GPU, batch 128, C = 128, AMP training, data loading included"}
    (args.out / "throughput.md").write_text(markdown(rows, meta))
    print(f"wrote {args.out}/throughput.csv, throughput.md in {time.time() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
