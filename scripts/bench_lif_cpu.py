"""LIF forward+backward on CPU: ``cpp`` vs ``fused`` vs ``torch`` vs SpikingJelly's LIFNode, and the bandwidth floor.

``--device cuda`` times ``cupy`` instead of ``cpp`` (host clock around synchronised calls; ``speed/bench.py`` is the
full benchmark with CUDA events).

One call = forward of ``x [T, N]`` (requires grad) + ``autograd.grad(spikes, x, grad_spikes)``; LIF tau=2, hard reset,
no detach, ATan(alpha=2) on every side; SpikingJelly ``LIFNode(step_mode='m')`` runs its default CPU path. Times are
medians (ms). Floor = bytes that must move (forward reads x, writes spike + h; backward reads grad_spike + h, writes
grad_x: 24 T N bytes in float32) / the bandwidth of a large ``copy_`` (read + write bytes / time). Backends are timed
round-robin (one call each per round) so that load from other processes hits them alike, after an untimed warm-up.

glibc returns every >= 32 MB block to the OS and page-faults it back in on the next allocation; run as
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 python scripts/bench_lif_cpu.py``
to time the kernels rather than the page faults (the script prints whether these are set).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import kernels, surrogate  # noqa: E402
from common.kernels.params import ChargeParams  # noqa: E402
from common.timing import Timing, time_call  # noqa: E402

MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def copy_bandwidth(device: str, nbytes: int = 512 * 2**20, repeats: int = 10) -> float:
    """Bytes per second of ``dst.copy_(src)``, counting the read and the write."""
    src = torch.rand(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    ms = time_call(lambda: dst.copy_(src), device=device, repeats=repeats, warmup=2).median_ms
    return 2 * nbytes / (ms * 1e-3)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def backend_step(name):
    p, sg = ChargeParams.leaky(2.0, True, 1.0, 0.0, False), surrogate.get("atan")
    v_init = {}  # zeros allocated once per shape: a tiny parallel fill costs milliseconds on a busy machine

    def step(x, grad):
        if x.shape not in v_init:
            v_init[x.shape] = torch.zeros_like(x[0])
        spike, _ = kernels.BACKENDS.get(name)(x, v_init[x.shape], p, sg)
        return torch.autograd.grad(spike, x, grad)

    return step


def spikingjelly_step():
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    node = neuron.LIFNode(tau=2.0, surrogate_function=sj_surrogate.ATan(alpha=2.0), step_mode="m")

    def step(x, grad):
        functional.reset_net(node)
        return torch.autograd.grad(node(x), x, grad)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--N", type=int, default=2**16)
    parser.add_argument("--repeats", type=int, default=15, help="timed round-robin rounds")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="untimed calls per backend: >= 2, up to 60 or this")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="default: cpp fused torch spikingjelly (cpu), cupy fused torch spikingjelly (cuda)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    fast = "cupy" if args.device == "cuda" else "cpp"
    args.backends = args.backends or [fast, "fused", "torch", "spikingjelly"]
    malloc = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in MALLOC_ENV)
    print(f"threads={torch.get_num_threads()} loadavg={os.getloadavg()[0]:.1f} malloc env: {malloc}")
    bandwidth = copy_bandwidth(args.device)
    print(f"copy bandwidth {bandwidth / 1e9:.2f} GB/s")
    steps = {name: spikingjelly_step() if name == "spikingjelly" else backend_step(name) for name in args.backends}
    header = ["T", "N", "floor_ms", *(f"{n}_ms" for n in steps), *(f"{fast}/{n}" for n in steps if n != fast),
              f"{fast}/floor"]
    print(",".join(header))
    for T in args.T:
        x = torch.randn(T, args.N, device=args.device).mul_(1.5).requires_grad_(True)
        grad = torch.randn(T, args.N, device=args.device)
        for step in steps.values():  # warm up until the heap layout settles (glibc keeps faulting in new pages
            start, calls = time.perf_counter(), 0  # for a few dozen calls of a fresh allocation pattern)
            while calls < 2 or (calls < 60 and time.perf_counter() - start < args.warmup_s):
                step(x, grad)
                calls += 1
        times = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                _sync(args.device)
                start = time.perf_counter()
                step(x, grad)
                _sync(args.device)
                times[name].append((time.perf_counter() - start) * 1e3)
        ms = {name: Timing.from_times(t).median_ms for name, t in times.items()}
        floor = 24 * T * args.N / bandwidth * 1e3
        row = [T, args.N, f"{floor:.3f}", *(f"{ms[n]:.3f}" for n in steps)]
        if fast in ms:
            row += [f"{ms[fast] / ms[n]:.3f}" for n in steps if n != fast] + [f"{ms[fast] / floor:.2f}"]
        print(",".join(map(str, row)))


if __name__ == "__main__":
    main()
