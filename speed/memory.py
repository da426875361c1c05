"""Activation memory and step time of training: ours per ``--memopt`` level against SpikingJelly 2.0 (docs/memory.md).

For every task network (cf10, scf10, SHD) the benchmark builds ours at each ``--memopt`` level (0 = plain autograd,
1 = the default, 2 = recomputation) and, for cf10 and scf10, the same topology from SpikingJelly 2.0 layers
(``layer.Conv*/BatchNorm*/AvgPool*/Flatten/Linear`` + ``neuron.LIFNode``, step mode ``m``, the same LIF: tau 2,
decay_input, v_th 1, hard reset to 0, detached reset, ATan(2)). One training step = reset the neurons, forward on a
fixed synthetic batch (``torch.rand`` inputs, random labels), cross-entropy of the time-averaged output (SHD: of the
time-summed softmax), backward, drop the gradients. Measured per network:

* ``saved_MiB``: bytes autograd keeps for backward in one step (:func:`common.memory.count_saved`: saved-tensor
  hooks, each storage once, packed spikes at their packed size), deterministic;
* ``peak_MiB``: the step's peak memory (:func:`common.timing.peak_memory_mb`: RSS high-water on CPU,
  ``torch.cuda.max_memory_allocated`` on CUDA), one untimed step;
* ``step_ms``: the median of ``--rounds`` timed steps; the variants of a task take turns step by step (interleaved),
  so a change in machine load hits them all alike; ``cpu_ms``: the median process CPU time of the same steps (all
  threads; less sensitive than wall time to other processes on a shared machine).

Ratios are against SpikingJelly on the same task. A sweep over T (cf10, ``--sweep-batch``) records saved bytes and
peak memory for the plot ``memory_vs_T.png``.

    python speed/memory.py --out speed/results/cpu               # CPU, 2 threads: a few minutes
    python speed/memory.py --device cuda --channels 128 -b 128 --tasks cf10 --sweep-T "" --out speed/results/cuda

Writes ``memory.csv``, ``memory_sweep.csv``, ``memory.md`` and ``memory_vs_T.png`` into ``--out`` (printed only
without ``--out``).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from pathlib import Path

import torch

from common import memory
from common.timing import Timing, call_ms, peak_memory_mb
from speed import memory_nets
from speed.memory_report import write_outputs

MIB = 2**20


def measure_once(case: memory_nets.Case) -> float:
    """Bytes saved for backward in one training step of ``case``."""
    with memory.count_saved() as meter:
        loss = case.loss()
    loss.backward()
    case.clear()
    return meter.total


def _step(case: memory_nets.Case):
    def run():
        case.loss().backward()
        case.clear()
    return run


def _memory_row(task: str, case: memory_nets.Case, batch: int, device: torch.device) -> dict:
    """Saved bytes and peak memory of one training step of ``case``."""
    saved = measure_once(case)
    peak = peak_memory_mb(_step(case), device)
    return {"task": task, "variant": case.variant, "T": case.T, "batch": batch, "channels": case.channels,
            "saved_MiB": saved / MIB, "peak_MiB": peak}


def measure_task(task: str, args, device: torch.device) -> list[dict]:
    """Saved bytes, peak memory and interleaved median step time of every variant of ``task``."""
    cases = memory_nets.build_cases(task, args, device, args.T)
    rows = [_memory_row(task, case, args.batch_size, device) for case in cases]
    times, cpu_times = [[] for _ in cases], [[] for _ in cases]
    for _ in range(args.rounds):
        for i, case in enumerate(cases):
            start = time.process_time()
            times[i].append(call_ms(_step(case), device))
            cpu_times[i].append((time.process_time() - start) * 1e3)
    for row, per_case, per_case_cpu in zip(rows, times, cpu_times):
        timing = Timing.from_times(per_case)
        row.update(step_ms=timing.median_ms, iqr_ms=timing.iqr_ms, cpu_ms=Timing.from_times(per_case_cpu).median_ms)
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict]) -> None:
    ref = next((r for r in rows if r["variant"] == memory_nets.SJ), None)
    for row in rows:
        row["saved_vs_sj"] = row["saved_MiB"] / ref["saved_MiB"] if ref else float("nan")
        row["time_vs_sj"] = row["step_ms"] / ref["step_ms"] if ref else float("nan")
        row["cpu_vs_sj"] = row["cpu_ms"] / ref["cpu_ms"] if ref else float("nan")


def sweep(args, device: torch.device) -> list[dict]:
    """cf10 saved bytes and peak memory per variant for each T of ``--sweep-T`` at ``--sweep-batch``."""
    rows = []
    sub = argparse.Namespace(**{**vars(args), "batch_size": args.sweep_batch})
    for T in args.sweep_T:
        rows += [_memory_row("cf10", case, sub.batch_size, device)
                 for case in memory_nets.build_cases("cf10", sub, device, T)]
    return rows


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="cf10,scf10,shd", help="comma-separated subset of cf10, scf10, shd")
    p.add_argument("--channels", type=int, default=32, help="conv channels of cf10 / scf10")
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("-T", "--T", dest="T", type=int, default=4, help="time steps of cf10 (scf10: 32, SHD: --shd-T)")
    p.add_argument("--shd-T", type=int, default=100, help="time steps of the SHD network")
    p.add_argument("--rounds", type=int, default=7, help="timed steps per variant (interleaved)")
    p.add_argument("--sweep-T", type=_ints, default=_ints("2,4,8,16,32"), help="T values of the cf10 sweep")
    p.add_argument("--sweep-batch", type=int, default=16, help="batch size of the sweep")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for memory.csv / memory_sweep.csv / memory.md / png")
    args = p.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(args.tasks) - set(memory_nets.TASKS))
    if unknown:
        p.error(f"--tasks: unknown {', '.join(unknown)}; valid: {', '.join(memory_nets.TASKS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    rows = [row for task in args.tasks for row in measure_task(task, args, device)]
    sweep_rows = sweep(args, device) if args.sweep_T else []
    meta = {"command": "python speed/memory.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "device": str(device), "threads": args.threads, "torch": torch.__version__,
            "spikingjelly": importlib.metadata.version("spikingjelly")}
    text = write_outputs(rows, sweep_rows, meta, Path(args.out) if args.out else None)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
