"""Offline demo on real data: a small convolutional SNN (LIF, T = 4) trained on scikit-learn's bundled 8x8 digits
with every registered surrogate gradient (or those named by --sg), on CPU, through the shared engine.

    python scripts/digits_sweep.py                      # all surrogates, ~3 min on 2 cores
    python scripts/digits_sweep.py --sg atan --sg sigmoid --epochs 5

Writes one engine run directory per surrogate under --out (a finished one is reused and an unfinished one resumed,
each said on its line, only if its recorded configuration is the requested one), plus ``digits_sweep.csv`` and
``digits_sweep.png`` (best test accuracy per surrogate), and prints the table. The CSV is merged: rows of other
surrogates or settings already there are kept; the plot shows the rows of this invocation's settings. ``seconds`` is
always the training + evaluation time summed over the run's epochs (``metrics.csv`` ``epoch_time_s``), whether the
run was trained now, resumed or reused.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from common import cli, engine, surrogate
from common.errors import UsageError
from common.layers import MultiStep
from common.neuron import NeuronConfig, build_neuron
from common.norm import build_norm
from common.runlog import read_metrics
from common.task import Task, mean_over_time, repeat_over_time

SETTINGS = ("epochs", "T", "channels", "lr", "batch_size", "seed", "backend")  # with the surrogate: one CSV row
COLUMNS = ("surrogate", "alpha", "best_test_acc", "best_epoch", "epochs", "seconds", *SETTINGS[1:])


def digits_datasets(seed: int = 0, test_fraction: float = 0.25) -> tuple[TensorDataset, TensorDataset]:
    """The 1797 8x8 digits (pixel values 0..16 scaled to [0, 1]) split stratified into train and test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
    return TensorDataset(x[idx_train], y[idx_train]), TensorDataset(x[idx_test], y[idx_test])


def digits_snn(args, channels: int = 16) -> nn.Sequential:
    """[Conv3x3 -> BN -> LIF -> AvgPool2] x 2 -> Flatten -> Linear(2C*2*2 -> 10), multi-step on [T, N, 1, 8, 8]."""
    cfg = NeuronConfig.from_args(args)
    layers, c_in, size = [], 1, 8
    for c_out in (channels, 2 * channels):
        layers += [MultiStep(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)), build_norm(args.norm, c_out, args.T),
                   build_neuron(cfg, (c_out, size, size)), MultiStep(nn.AvgPool2d(2))]
        c_in, size = c_out, size // 2
    layers += [MultiStep(nn.Flatten()), MultiStep(nn.Linear(c_in * size * size, 10))]
    return nn.Sequential(*layers)


def engine_parser():
    return cli.base_parser("digits", task="digits")


def engine_argv(opts, sg: str) -> list[str]:
    """The engine's flags for one surrogate's run."""
    return ["--sg", sg, "--T", str(opts.T), "--epochs", str(opts.epochs), "-b", str(opts.batch_size),
            "--lr", str(opts.lr), "--opt", "adam", "--label-smoothing", "0", "--out-dir", str(opts.out),
            "--device", "cpu", "--workers", "0", "--seed", str(opts.seed), "--backend", opts.backend]


def engine_args(opts, sg: str, resume: Path | None = None):
    """The engine's parsed flags for one surrogate's run (``resume``: continue that run directory)."""
    argv = engine_argv(opts, sg) + (["--resume", str(resume)] if resume else [])
    return cli.parse(engine_parser(), argv)


def check_reusable(opts, sg: str, run_dir: Path) -> None:
    """A run directory of the same name must record this request's configuration; else one-line UsageError."""
    if (run_dir / "args.json").exists():
        differ = cli.config_differences(engine_parser(), engine_argv(opts, sg), run_dir)
        if differ:
            raise UsageError(f"{run_dir} was trained with other settings: {'; '.join(differ)}; use another --out")


def train_one(opts, sg: str) -> dict:
    """Train (or reuse / resume) the run of surrogate ``sg``; returns its table row."""
    args = engine_args(opts, sg)
    env = engine.setup(args)
    task = Task(name="digits", build_model=lambda kind: digits_snn(args, opts.channels),
                build_data=partial(digits_datasets, opts.seed), train_loss=F.cross_entropy,
                encode=partial(repeat_over_time, T=args.T), decode=mean_over_time, drop_last=False,
                name_parts=(f"T{args.T}", f"c{opts.channels}"))
    run_dir = Path(args.out_dir) / engine.run_name(args, task)
    check_reusable(opts, sg, run_dir)
    if (run_dir / "summary.json").exists():
        how = f"reused the finished run {run_dir}"
        summary = json.loads((run_dir / "summary.json").read_text())
    else:
        how = "trained"
        if (run_dir / "checkpoint_latest.pt").exists():
            how = f"resumed {run_dir}"
            args = engine_args(opts, sg, resume=run_dir)
        with contextlib.redirect_stdout(io.StringIO()):  # one line per surrogate instead of one per epoch
            summary = engine.fit(args, task, env)
    seconds = sum(r.get("epoch_time_s", 0.0) for r in read_metrics(run_dir / "metrics.csv"))
    alpha = surrogate.get(sg, alpha=None).alpha
    print(f"{sg}: best test accuracy {summary['best_test_acc']:.2%} ({how}; {seconds:.1f} s of training)",
          flush=True)
    return {"surrogate": sg, "alpha": alpha, "best_test_acc": summary["best_test_acc"],
            "best_epoch": summary["best_epoch"], "epochs": summary["epochs"], "seconds": round(seconds, 1),
            **{key: getattr(opts, key) for key in SETTINGS[1:]}}


def _key(row: dict) -> tuple[str, ...]:
    return tuple(str(row.get(k, "")) for k in ("surrogate", *SETTINGS))


def merge_rows(path: Path, rows: list[dict]) -> list[dict]:
    """The rows of the CSV at ``path`` (if any) with ``rows`` replacing those of the same surrogate and settings
    and the others appended."""
    merged: dict[tuple, dict] = {}
    if path.exists():
        with open(path, newline="") as f:
            merged = {_key(r): r for r in csv.DictReader(f)}
    merged.update({_key(r): r for r in rows})
    return list(merged.values())


def write_outputs(rows: list[dict], out: Path, threshold: float) -> None:
    """Merge ``rows`` into ``digits_sweep.csv`` (:func:`merge_rows`) and plot the merged rows of their settings."""
    path = out / "digits_sweep.csv"
    merged = merge_rows(path, rows)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(merged)
    os.replace(tmp, path)
    settings = _key(rows[0])[1:]
    plot(sorted((r for r in merged if _key(r)[1:] == settings), key=lambda r: r["surrogate"]), out, threshold,
         dict(zip(SETTINGS, settings)))


def plot(rows: list[dict], out: Path, threshold: float, settings: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows)), 4.0))
    accs = [100 * float(r["best_test_acc"]) for r in rows]
    ax.bar([r["surrogate"] for r in rows], accs, color=["C0" if a >= 100 * threshold else "C3" for a in accs])
    ax.axhline(100 * threshold, color="k", lw=0.8, ls="--")
    ax.set_ylim(min(90.0, min(accs) - 2), 100)
    ax.set_ylabel("best test accuracy (%)")
    ax.set_title(f"8x8 digits, conv SNN (LIF, T={settings['T']}, C={settings['channels']}, {settings['epochs']} "
                 "epochs), one surrogate per bar")
    plt.setp(ax.get_xticklabels(), rotation=60, ha="right", rotation_mode="anchor")
    fig.tight_layout()
    fig.savefig(out / "digits_sweep.png", dpi=120)
    plt.close(fig)


def format_table(rows: list[dict]) -> str:
    lines = [f"{'surrogate':<24}{'alpha':>8}{'best acc %':>12}{'epochs':>8}{'seconds':>9}  (training + evaluation)"]
    lines += [f"{r['surrogate']:<24}{r['alpha']:>8g}{100 * r['best_test_acc']:>12.2f}{r['epochs']:>8}"
              f"{r['seconds']:>9.1f}" for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sg", action="append", default=None, help="surrogate to run (repeatable; default: all)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("-b", "--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (cosine schedule)")
    p.add_argument("-T", "--T", dest="T", type=int, default=4)
    p.add_argument("--channels", type=int, default=32, help="width of the first conv (the second has twice as many)")
    p.add_argument("--backend", default="auto", help="neuron kernel backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (tiny tensors: 1 is best)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="surrogates trained in parallel")
    p.add_argument("--threshold", type=float, default=0.95, help="accuracy marked as reached in the plot")
    p.add_argument("--out", type=Path, default=Path("runs/digits"), help="output folder")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    opts = build_parser().parse_args(argv)
    names = opts.sg or surrogate.names()
    for name in names:
        surrogate.SURROGATES.get(name)  # unknown name -> ValueError with the valid names
    opts.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if opts.jobs > 1:  # one surrogate per process; spawn, since forking after OpenMP started is unsafe
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(opts.jobs, mp_context=context, initializer=torch.set_num_threads,
                                 initargs=(opts.threads,)) as pool:
            rows = list(pool.map(partial(train_one, opts), names))
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(opts.threads)
        try:
            rows = [train_one(opts, name) for name in names]
        finally:
            torch.set_num_threads(threads)
    write_outputs(rows, opts.out, opts.threshold)
    print(format_table(rows))
    print(f"{len(rows)} surrogates in {time.perf_counter() - start:.0f} s of wall time; table and plot in {opts.out}")
    return rows


if __name__ == "__main__":
    cli.main_guard(main)
