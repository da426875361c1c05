"""CPU-only checks of the compiled backend ``cpp`` (threads, forked workers, every surrogate expression, the kernel
cache, compiler problems) and of the dispatch on CPU; the numerical comparison with ``torch`` shared with ``cupy``
is in ``test_kernels.py``."""
from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import subprocess
import warnings

import pytest
import torch

from common import kernels, surrogate
from common.errors import UsageError
from common.kernels import cpu_native
from common.kernels.cexpr import to_double
from tests.common.test_kernels import NEURONS, make_inputs, run_lif

pytestmark = pytest.mark.skipif(cpu_native.compiler() is None, reason="no C++ compiler")


def test_cpp_multithreaded_chunks(monkeypatch):
    """Force several OpenMP threads on a small problem: chunks split across threads give the same result."""
    monkeypatch.setattr(cpu_native, "GRAIN", 64)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    sg, p = surrogate.get("sigmoid"), NEURONS["lif"](None, False)
    x, v0, g = make_inputs(7, "cpu")
    out, ref = run_lif("cpp", x, v0, p, sg, g), run_lif("torch", x, v0, p, sg, g)
    assert torch.equal(out[0], ref[0])
    for a, b in zip(out[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _spike_count_cpp(threads: int | None = None) -> float:
    if threads is not None:
        torch.set_num_threads(threads)
    x, v0, _ = make_inputs(9, "cpu")
    return kernels.multistep("lif", "cpp", x, (v0,), NEURONS["if"](0.0, True), surrogate.get("atan"))[0].sum().item()


def test_cpp_in_forked_single_thread_worker(monkeypatch):
    """A forked DataLoader-style worker (torch.set_num_threads(1), as DataLoader does) runs the kernel serially even
    after the parent ran OpenMP regions (libgomp cannot start a team in such a child: torch's own ops hang too)."""
    with monkeypatch.context() as patch:
        patch.setattr(cpu_native, "GRAIN", 64)
        patch.setattr(torch, "get_num_threads", lambda: 2)
        expected = _spike_count_cpp()  # starts an OpenMP team in this process
    with multiprocessing.get_context("fork").Pool(1) as workers:
        assert workers.apply_async(_spike_count_cpp, (1,)).get(timeout=60) == expected


def test_every_surrogate_expression_compiles_float_and_double(tmp_path):
    """All ``cuda_expr`` strings, and their double rewrites, in one C++ file: values match ``derivative``."""
    names = surrogate.names()
    body = "#include <cmath>\n" + "".join(
        f'extern "C" float sg_f{i}(float x) {{ return {surrogate.get(n).cuda_expr("x")}; }}\n'
        f'extern "C" double sg_d{i}(double x) {{ return {to_double(surrogate.get(n).cuda_expr("x"))}; }}\n'
        for i, n in enumerate(names))
    (tmp_path / "sg.cpp").write_text(body)
    subprocess.run([cpu_native.compiler(), "-O1", "-shared", "-fPIC", str(tmp_path / "sg.cpp"), "-o",
                    str(tmp_path / "sg.so")], check=True, capture_output=True)
    lib = ctypes.CDLL(str(tmp_path / "sg.so"))
    points = [-2.5, -0.7, -0.1, 0.0, 0.05, 0.3, 0.9, 1.6]
    for i, name in enumerate(names):
        f, d = lib[f"sg_f{i}"], lib[f"sg_d{i}"]
        f.argtypes, f.restype = [ctypes.c_float], ctypes.c_float
        d.argtypes, d.restype = [ctypes.c_double], ctypes.c_double
        ref = surrogate.get(name).derivative(torch.tensor(points, dtype=torch.float64)).tolist()
        for x, r in zip(points, ref):
            assert math.isclose(d(x), r, rel_tol=1e-12, abs_tol=1e-12), (name, x, d(x), r)
            assert math.isclose(f(x), r, rel_tol=1e-5, abs_tol=1e-6), (name, x, f(x), r)


def test_library_cached_on_disk_in_a_private_folder(tmp_path, monkeypatch):
    cache = tmp_path / "new" / "cache"
    monkeypatch.setenv("SNN_KERNEL_CACHE", str(cache))
    source = cpu_native._source(surrogate.get("atan").cuda_expr("x"))
    path = cpu_native._compile(source, cpu_native.compiler())
    assert path.parent == cache and path.exists()
    assert cache.stat().st_mode & 0o777 == 0o700 and path.stat().st_mode & 0o077 == 0
    mtime = path.stat().st_mtime_ns
    assert cpu_native._compile(source, cpu_native.compiler()) == path and path.stat().st_mtime_ns == mtime
    monkeypatch.setattr(cpu_native, "FLAGS", (*cpu_native.FLAGS, "-DSNN_UNUSED"))
    assert cpu_native._compile(source, cpu_native.compiler()) != path  # flags are part of the key


def test_cache_folder_is_tightened_and_foreign_or_writable_libraries_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SNN_KERNEL_CACHE", str(tmp_path))
    tmp_path.chmod(0o777)
    source = cpu_native._source(surrogate.get("sigmoid").cuda_expr("x"))
    path = cpu_native._compile(source, cpu_native.compiler())
    assert tmp_path.stat().st_mode & 0o777 == 0o700
    path.chmod(0o766)  # writable by others: someone could have replaced it
    with pytest.raises(cpu_native.CompileError, match="cached kernel library .* writable by others"):
        cpu_native._compile(source, cpu_native.compiler())
    path.chmod(0o700)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(path).st_uid + 1)  # as another user
    with pytest.raises(cpu_native.CompileError, match="owned by another user"):
        cpu_native._compile(source, cpu_native.compiler())


def _fallback_env(monkeypatch, tmp_path, cxx: str):
    monkeypatch.setenv("SNN_CXX", cxx)
    monkeypatch.setenv("SNN_KERNEL_CACHE", str(tmp_path / "cache"))
    cpu_native.library.cache_clear()
    kernels.forget()


@pytest.fixture
def clean_dispatch():
    yield
    cpu_native.library.cache_clear()
    kernels.forget()


def test_missing_compiler_auto_warns_once_named_fails(tmp_path, monkeypatch, clean_dispatch):
    _fallback_env(monkeypatch, tmp_path, str(tmp_path / "no-such-g++"))
    sg, p = surrogate.get("atan"), NEURONS["lif"](0.0, True)
    with pytest.warns(RuntimeWarning, match="backend 'cpp' cannot run here \\(no C\\+\\+ compiler found"):
        assert kernels.resolve("lif", "auto", "cpu", torch.float32, sg) == "fused"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only, also for another surrogate
        assert kernels.resolve("lif", "auto", "cpu", torch.float32, surrogate.get("sigmoid")) == "fused"
        x, v0, g = make_inputs(4, "cpu")
        for a, b in zip(run_lif("auto", x, v0, p, sg, g), run_lif("fused", x, v0, p, sg, g)):
            assert torch.equal(a, b)
    with pytest.raises(UsageError, match="^--backend cpp cannot run the lif neuron: no C\\+\\+ compiler found"):
        run_lif("cpp", x, v0, p, sg, g)


def test_failing_build_is_recorded_per_surrogate_expression(tmp_path, monkeypatch, clean_dispatch):
    """A compiler that fails on one expression: that surrogate falls back (auto) or fails (named), the others
    still run compiled."""
    real = cpu_native.compiler()
    broken = tmp_path / "picky-g++"
    broken.write_text(f"#!/bin/sh\nfor a in \"$@\"; do case $a in *.cpp) grep -q 3.14159 \"$a\" && "
                      f"{{ echo 'boom' >&2; exit 1; }};; esac; done\nexec {real} \"$@\"\n")
    broken.chmod(0o755)
    _fallback_env(monkeypatch, tmp_path, str(broken))
    p = NEURONS["if"](None, False)
    x, v0, g = make_inputs(3, "cpu")
    atan, sigmoid = surrogate.get("atan"), surrogate.get("sigmoid")
    with pytest.warns(RuntimeWarning, match="boom"):
        assert kernels.resolve("lif", "auto", "cpu", torch.float32, atan) == "fused"
    with pytest.raises(UsageError, match="^--backend cpp cannot run the lif neuron: .*boom"):
        run_lif("cpp", x, v0, p, atan, g)
    assert kernels.resolve("lif", "auto", "cpu", torch.float32, sigmoid) == "cpp"
    for a, b in zip(run_lif("cpp", x, v0, p, sigmoid, g), run_lif("torch", x, v0, p, sigmoid, g)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_named_backend_refuses_what_it_cannot_run():
    sg, p = surrogate.get("atan"), NEURONS["lif"](0.0, False)
    x, v0, _ = make_inputs(2, "cpu", torch.bfloat16)
    with pytest.raises(UsageError, match="^--backend cpp cannot run the lif neuron: it runs torch.float32, "
                                         "torch.float64, got torch.bfloat16$"):
        kernels.multistep("lif", "cpp", x, (v0,), p, sg)
    assert kernels.resolve("lif", "auto", "cpu", torch.bfloat16, sg) == "fused"
    with pytest.raises(UsageError, match="^--backend cupy cannot run the lif neuron: it runs on cuda tensors, got "
                                         "cpu tensors$"):
        kernels.multistep("lif", "cupy", x.float(), (v0.float(),), p, sg)


def test_clif_and_online_modules_always_dispatch():
    """``auto`` and ``fused`` give the reference loop's results, state included, through the kernels' dispatch."""
    from common.neuron.clif import CLIFNode
    from common.neuron.online import OnlineLIFNode

    x = torch.randn(6, 4, 33, generator=torch.Generator().manual_seed(5)) + 0.5
    for make in (lambda b: CLIFNode(backend=b), lambda b: CLIFNode(sigmoid_carry=True, backend=b),
                 lambda b: OnlineLIFNode(backend=b)):
        outs = []
        for backend in ("torch", "auto", "fused"):
            node = make(backend)
            outs.append(torch.cat([node(x[:4]), node(x[4:])]))  # two calls: state carries over
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


class _NoCudaExpr(surrogate.Surrogate):
    """A user surrogate with only the torch derivative: compiled backends cannot inline it."""

    name = "test_no_cuda_expr"
    default_alpha = 1.0

    def derivative(self, x):
        return self.alpha / (1 + x.abs()).square()


def test_surrogate_without_cuda_expr_runs_fused_under_auto_only():
    sg, p = _NoCudaExpr(), NEURONS["lif"](0.0, False)
    x, v0, g = make_inputs(4, "cpu")
    assert kernels.resolve("lif", "auto", "cpu", torch.float32, sg) == "fused"
    for a, b in zip(run_lif("auto", x, v0, p, sg, g), run_lif("fused", x, v0, p, sg, g)):
        assert torch.equal(a, b)
    with pytest.raises(UsageError, match="the surrogate has no C expression"):
        run_lif("cpp", x, v0, p, sg, g)
