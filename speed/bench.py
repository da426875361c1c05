"""Micro-benchmark of multi-step neuron implementations (the survey's ``speed/cmp_speed2.py``, redone).

For every (mode, N, T) of the grid and every implementation of ``speed/impls.py`` (discovered at run time; missing
ones are listed as skipped): check that LIF implementations fire exactly like the loop LIF, then time ``run()``
(``common.timing``: warm-up, repeated calls, median / IQR in ms) and measure its peak memory (MiB). Outputs in
``--out`` (default: a new folder ``runs/bench/<device>-<date>-<time>``, so the committed ``speed/results`` change only
when ``--out`` names them): ``bench.csv`` (one row per impl, mode, T, N), ``bench.md``
(speed-ups over the loop LIF and over SpikingJelly, LIF bandwidth floor, the survey's GPU numbers beside ours) and
``time_vs_T_<mode>.png``.

    python speed/bench.py --device cpu                      # the full CPU grid (< 10 min on 2 cores)
    python speed/bench.py --impl loop,fused,cpp --T 4,16 --N 4096 --mode train --out /tmp/b
    python speed/bench.py --device cuda --impl survey --statistic survey   # the survey's impls and statistic

``--statistic survey`` times as the survey's ``cmp_speed2.py``: 128 calls (no early stop), reported as the mean
of the last 64 (``mean_last_half_ms``; the speed-ups then use it); ``median`` (default) is the median of up to
``--repeats`` calls. ``--impl survey`` adds the survey's own implementations (``speed/impls.py``).

Inputs are ``torch.rand`` as in the survey (note: with decay 0.5 and inputs below 1 the LIF membrane stays below
the threshold, so the timed LIF layers never fire); the spike check therefore uses ``2 * torch.rand`` inputs.
On CPU the script re-executes itself once with glibc malloc tuned (``MALLOC_MMAP_MAX_=0``,
``MALLOC_TRIM_THRESHOLD_=68719476736``, ``MALLOC_TOP_PAD_=1073741824``): by default glibc serves every allocation
of >= 32 MiB with a fresh ``mmap`` that page-faults on first touch, which would dominate large-N timings.
``--no-malloc-tuning`` keeps the default allocator. CPU runs use one thread by default (``--threads``): with
other processes on the cores, multi-threaded calls wait for preempted OpenMP siblings and their times scatter by
orders of magnitude; the copy bandwidth of the floor is measured with the same thread count.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import torch

from common.survey import survey_ms
from common.timing import Timing, call_ms, peak_memory_mb
from speed import floor, impls, report

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736", "MALLOC_TOP_PAD_": "1073741824"}
COLUMNS = ["impl", "mode", "T", "N", "median_ms", "iqr_ms", "min_ms", "mean_last_half_ms", "statistic", "calls",
           "peak_mem_mb", "speedup_vs_loop",
           "speedup_vs_spikingjelly", "floor_ms", "pct_of_floor", "spike_mismatch", "survey_gpu_ms", "status", "note"]
SURVEY_CALLS = 128  # cmp_speed2.py: 128 timed calls, the mean of the last 64 reported
STATISTICS = {"median": "median and IQR in ms",
              "survey": "the mean of the last half of the calls in ms (the survey's statistic; median and IQR beside)"}
MISMATCH_TOL = 1e-4  # fraction of spikes that may differ (float rounding at the threshold) before we refuse to time
CHECK_MAX_N = 8192


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--impl", default="all",
                   help="comma list: all, loop, psn, <backend name> (torch, fused, cpp, cupy, ...), backends, auto, "
                        "clif, alif, blockalif (or alif-L<l>, blockalif-L<l>), spikingjelly, snntorch")
    p.add_argument("--T", type=int_list, default=[2, 4, 8, 16, 32, 64])
    p.add_argument("--N", type=int_list, default=None,
                   help="exact neuron counts (default cpu: 512,8192,65536,131072; cuda: also 1048576)")
    p.add_argument("--mode", default="train,infer", help="train, infer or both (comma list)")
    p.add_argument("--latencies", type=int_list, default=[0, 1, 3, 7], help="ALIF/BlockALIF latencies")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per config (default cpu 15, cuda 64)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed calls before timing, at least 2: the second one measures peak memory")
    p.add_argument("--max-call-s", type=float, default=0.5,
                   help="skip a non-LIF implementation (psn, clif, alif, blockalif) at larger T once its fastest "
                        "call, extrapolated linearly in T, exceeds this many seconds")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (torch and OpenMP); 0 = torch's default. Default 1: on a shared machine "
                        "multi-threaded timings are dominated by OpenMP threads waiting for preempted siblings")
    p.add_argument("--max-seconds", type=float, default=0.3,
                   help="stop timing an implementation at a config once its timed calls exceed this many seconds "
                        "(after --min-repeats calls); 0 = never")
    p.add_argument("--min-repeats", type=int, default=5, help="timed calls always made (unless --repeats is less)")
    p.add_argument("--statistic", choices=list(STATISTICS), default="median",
                   help="median of the timed calls, or the survey's: mean of the last 64 of 128 calls (sets "
                        "--repeats 128 and --max-seconds 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: a new runs/bench/<device>-<date>-<time>; the committed results "
                        "are speed/results/<device>)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's default malloc on CPU")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.N is None:
        args.N = [512, 8192, 65536, 131072] if args.device == "cpu" else [512, 8192, 65536, 131072, 1048576]
    args.repeats = args.repeats or (15 if args.device == "cpu" else 64)
    if args.statistic == "survey":
        args.repeats, args.max_seconds = SURVEY_CALLS, 0.0
    args.mode = [m for m in args.mode.split(",") if m]
    if set(args.mode) - {"train", "infer"}:
        p.error(f"--mode must be train and/or infer, got {args.mode}")
    known = set(impls.expand(["all", "survey"], args.latencies)) | set(impls.GROUPS)
    unknown = [name for name in args.impl.split(",") if name and name not in known]
    if unknown:
        p.error(f"--impl: unknown {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    args.out = args.out or default_out(args.device)
    return args


def default_out(device: str, root: Path = Path("runs") / "bench") -> Path:
    """A folder under ``root`` that does not exist yet: ``<device>-<YYYYmmdd-HHMMSS>[-k]``."""
    stem = f"{device}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = root / stem, 1
    while path.exists():
        k += 1
        path = root / f"{stem}-{k}"
    return path


def malloc_tuned() -> bool:
    return all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())


def reexec_with_malloc_tuning() -> None:
    """Restart this process with :data:`MALLOC_ENV` (glibc reads it only at start-up)."""
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})


def spike_mismatch(name: str, T: int, N: int, device, seed: int) -> float | None:
    """Fraction of spikes of ``name`` that differ from the loop LIF on ``2 * rand(T, min(N, 8192))``."""
    gen = torch.Generator().manual_seed(seed + 1)
    x = (2.0 * torch.rand(T, min(N, CHECK_MAX_N), generator=gen)).to(device)
    case = impls.build(name, "infer", x)
    if case.spikes is None:
        return None
    return (case.spikes() != impls.loop_spikes(x)).float().mean().item()


def empty_row(name, mode, T, N, status, note="") -> dict:
    return {**dict.fromkeys(COLUMNS), "impl": name, "mode": mode, "T": T, "N": N, "status": status, "note": note}


def predicted_ms(name, mode, T, N, cache) -> float | None:
    """Fastest call of ``name`` at (T, N) extrapolated linearly in T from the largest smaller T measured at this N
    (the fastest call is the least disturbed by other processes)."""
    known = [(t, ms) for (n, m, nn, t), ms in cache["ms"].items() if (n, m, nn) == (name, mode, N) and t < T]
    if not known:
        return None
    t_prev, ms_prev = max(known)
    return ms_prev * T / t_prev


def prepare(name, mode, T, N, x, args, cache):
    """Build, check and warm up one implementation: ``(case, row)`` where ``row`` is the row so far
    (``status == 'ok'`` with the spike mismatch and peak memory filled in) or a finished "skipped" row (case None).
    Never raises: a broken implementation is reported in its row."""
    latency = impls.split_latency(name)[1]
    if name in cache["unavailable"]:
        return None, empty_row(name, mode, T, N, cache["unavailable"][name])
    if latency is not None and latency + 1 >= T:
        return None, empty_row(name, mode, T, N, "skipped: latency + 1 >= T (survey rule)")
    guess = predicted_ms(name, mode, T, N, cache)
    if not impls.is_lif(name) and guess is not None and guess > args.max_call_s * 1e3:
        cache["ms"][(name, mode, N, T)] = guess
        return None, empty_row(name, mode, T, N, "skipped: predicted time per call > --max-call-s",
                               f"predicted {guess / 1e3:.1f} s per call")
    try:
        case = impls.build(name, mode, x)
        mismatch = None
        if impls.is_lif(name) and name != "loop":
            key = (name, T, N)
            if key not in cache["mismatch"]:
                cache["mismatch"][key] = spike_mismatch(name, T, N, x.device, args.seed)
            mismatch = cache["mismatch"][key]
            if mismatch is not None and mismatch > MISMATCH_TOL:
                print(f"  SPIKE MISMATCH {name} T={T} N={N}: {mismatch:.2%} of spikes differ from the loop LIF; "
                      "not timed")
                return None, empty_row(name, mode, T, N, f"mismatch: {mismatch:.3%} of spikes differ", case.note)
        case.run()  # first warm-up: one-time costs (TorchScript profiling, kernel compilation, caches)
        peak = peak_memory_mb(case.run, args.device)  # second warm-up call, measured for memory only
        for _ in range(args.warmup - 2):
            case.run()
    except impls.Unavailable as error:
        cache["unavailable"][name] = f"skipped: {error}"
        print(f"  skip {name}: {error}")
        return None, empty_row(name, mode, T, N, f"skipped: {error}")
    except Exception as error:  # a broken implementation must not stop the others; it is reported
        print(f"  ERROR {name} {mode} T={T} N={N}: {type(error).__name__}: {error}")
        return None, empty_row(name, mode, T, N, f"error: {type(error).__name__}: {error}"[:200])
    row = empty_row(name, mode, T, N, "ok", case.note)
    row.update(peak_mem_mb=peak, spike_mismatch=mismatch, survey_gpu_ms=survey_ms(name, mode, T, N))
    return case, row


def time_interleaved(cases: dict, args) -> dict:
    """Round-robin timing: call r of every implementation before call r + 1 of any, so that load from other
    processes hits all implementations of a configuration alike. An implementation stops after ``--repeats``
    calls, or after ``--min-repeats`` once its calls add up to ``--max-seconds``. Returns ``{name: Timing}``."""
    times = {name: [] for name in cases}
    active = dict(cases)
    for r in range(args.repeats):
        for name, case in list(active.items()):
            try:
                times[name].append(call_ms(case.run, args.device))
            except Exception as error:  # reported by the caller through the missing timing
                print(f"  ERROR {name} while timing: {type(error).__name__}: {error}")
                del active[name]
                times[name] = []
                continue
            if args.max_seconds and r + 1 >= args.min_repeats and sum(times[name]) > args.max_seconds * 1e3:
                del active[name]
    return {name: Timing.from_times(t) for name, t in times.items() if t}


def bench_config(mode, T, N, x, names, args, cache) -> list[dict]:
    """All implementations at one (mode, T, N): prepare each, time them interleaved, one row each."""
    prepared = {name: prepare(name, mode, T, N, x, args, cache) for name in names}
    timings = time_interleaved({n: case for n, (case, _) in prepared.items() if case is not None}, args)
    rows = []
    for name, (case, row) in prepared.items():
        if case is not None and name not in timings:
            row["status"] = "error: failed while timing"
        elif case is not None:
            t = timings[name]
            cache["ms"][(name, mode, N, T)] = min(t.times_ms)
            row.update(median_ms=t.median_ms, iqr_ms=t.iqr_ms, min_ms=min(t.times_ms), calls=len(t.times_ms),
                       mean_last_half_ms=mean_last_half(t.times_ms), statistic=args.statistic)
            print(f"{mode:5s} N={N:<8d} T={T:<3d} {name:14s} {t.median_ms:10.3f} ms (IQR {t.iqr_ms:.3f}, "
                  f"{len(t.times_ms)} calls) peak {row['peak_mem_mb']:.1f} MiB", flush=True)
        rows.append(row)
    return rows


def mean_last_half(times_ms) -> float:
    """The survey's statistic: the mean of the last half of the timed calls (64 of 128)."""
    last = list(times_ms)[len(times_ms) // 2:]
    return sum(last) / len(last)


def add_derived(rows, bandwidth: float) -> None:
    """Speed-ups over the loop and SpikingJelly (t_base / t_impl, in the run's statistic) and the LIF bandwidth
    floor."""
    times = {(r["impl"], r["mode"], r["T"], r["N"]): report.reported_ms(r) for r in rows if r["status"] == "ok"}
    for r in rows:
        if r["status"] != "ok":
            continue
        for base, column in (("loop", "speedup_vs_loop"), ("spikingjelly", "speedup_vs_spikingjelly")):
            t_base = times.get((base, r["mode"], r["T"], r["N"]))
            r[column] = t_base / report.reported_ms(r) if t_base else None
        if impls.is_lif(r["impl"]):
            r["floor_ms"] = floor.floor_ms(floor.lif_bytes(r["mode"], r["T"], r["N"]), bandwidth)
            r["pct_of_floor"] = floor.percent_of_floor(r["floor_ms"], report.reported_ms(r))


def write_csv(rows, path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def environment(args, argv: list[str], bandwidth: float) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    threads = f"{cpu}, torch threads: {torch.get_num_threads()}"
    device = torch.cuda.get_device_name() if args.device == "cuda" else threads
    return {
        "command": " ".join(["python speed/bench.py", *argv]),
        "device": f"{args.device} ({device})",
        "torch": torch.__version__,
        "glibc malloc tuning": " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items()) if malloc_tuned() else "off",
        "copy bandwidth (GB/s, read + write)": f"{bandwidth / 1e9:.2f}",
        "timing": f"{max(args.warmup, 2)} warm-up calls (the 2nd measures peak memory), then up to {args.repeats} "
                  "timed calls interleaved across implementations (an implementation stops after >= "
                  f"{args.min_repeats} calls once they exceed {args.max_seconds} s); {STATISTICS[args.statistic]}; "
                  f"non-LIF implementations skipped at larger T once extrapolated beyond {args.max_call_s} s per call",
        "inputs": "x = torch.rand(T, N) (survey); spike check on 2 * torch.rand(T, min(N, 8192))",
    }


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.device == "cpu" and args.threads:  # before the cpp backend loads its OpenMP runtime (and re-exec)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    if args.device == "cpu" and not args.no_malloc_tuning and not malloc_tuned() and sys.platform == "linux":
        print("re-executing with glibc malloc tuning: " + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items()),
              flush=True)
        reexec_with_malloc_tuning()
    if args.device == "cpu" and malloc_tuned():
        print("glibc malloc tuning active: " + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items()))
    start, load0 = time.time(), os.getloadavg()
    device = torch.device(args.device)
    names = impls.expand([n for n in args.impl.split(",") if n], args.latencies)
    print(f"implementations: {', '.join(names)}")
    bandwidth = floor.copy_bandwidth(device)
    print(f"copy bandwidth: {bandwidth / 1e9:.2f} GB/s")
    rows, cache = [], {"unavailable": {}, "mismatch": {}, "ms": {}}
    for mode in args.mode:
        for N in args.N:
            for T in args.T:
                x = torch.rand(T, N, generator=torch.Generator().manual_seed(args.seed)).to(device)
                rows += bench_config(mode, T, N, x, names, args, cache)
    add_derived(rows, bandwidth)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "bench.csv")
    meta = environment(args, sys.argv[1:] if argv is None else argv, bandwidth)
    meta["wall time (s)"] = f"{time.time() - start:.0f}"
    meta["load average (1 min) at start / end"] = f"{load0[0]:.2f} / {os.getloadavg()[0]:.2f}"
    (args.out / "bench.md").write_text(report.markdown(rows, meta))
    if not args.no_plots:
        report.plot(rows, args.out, args.device)
    print(f"wrote {args.out}/bench.csv, bench.md{'' if args.no_plots else ', time_vs_T_*.png'} "
          f"in {time.time() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
