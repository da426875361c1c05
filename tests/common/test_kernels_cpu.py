"""Compiled CPU backend ``cpp`` against the autograd reference ``torch`` (spikes bitwise, gradients 1e-5)."""
from __future__ import annotations

import ctypes
import itertools
import math
import multiprocessing
import subprocess
import warnings

import pytest
import torch

from common import kernels, surrogate
from common.kernels import cpu_native
from common.kernels.cexpr import to_double
from common.kernels.params import ChargeParams

pytestmark = pytest.mark.skipif(cpu_native.compiler() is None, reason="no C++ compiler")

N = 1037  # not a multiple of the 512-neuron chunk nor of any SIMD width
NEURONS = {
    "if": lambda v_reset, detach: ChargeParams.integrate_and_fire(1.0, v_reset, detach),
    "lif": lambda v_reset, detach: ChargeParams.leaky(1.7, True, 1.0, v_reset, detach),
    "lif_nodecay": lambda v_reset, detach: ChargeParams.leaky(3.0, False, 0.8, v_reset, detach),
}


def _run(backend, x, v0, p, sg, grad_spike):
    x, v0 = x.clone().requires_grad_(True), v0.clone().requires_grad_(True)
    spike, v_last = kernels.BACKENDS.get(backend)(x, v0, p, sg)
    (spike * grad_spike).sum().add(v_last.square().sum()).backward()
    return spike.detach(), v_last.detach(), x.grad, v0.grad


def _inputs(T, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, generator=gen, dtype=dtype) * 1.2 + 0.4
    v0 = torch.rand(N, generator=gen, dtype=dtype) * 0.5
    return x, v0, torch.randn(T, N, generator=gen, dtype=dtype)


@pytest.mark.parametrize("sg_name", ["atan", "sigmoid", "piecewise_quadratic", "super_spike"])
@pytest.mark.parametrize("neuron", sorted(NEURONS))
def test_cpp_matches_torch(neuron, sg_name):
    sg = surrogate.get(sg_name)
    for T, v_reset, detach in itertools.product((1, 4, 32), (0.0, -0.2, None), (False, True)):
        p = NEURONS[neuron](v_reset, detach)
        x, v0, g = _inputs(T)
        ref = _run("torch", x, v0, p, sg, g)
        out = _run("cpp", x, v0, p, sg, g)
        case = f"T={T} v_reset={v_reset} detach={detach}"
        assert torch.equal(out[0], ref[0]), f"spikes differ: {case}"
        assert out[0].sum() > 0, case
        for a, b, what in zip(out[1:], ref[1:], ("v_last", "grad_x", "grad_v_init")):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, w=f"{what} {case}": f"{w}: {m}")


def test_cpp_float64_matches_torch_tightly():
    sg = surrogate.get("sigmoid")
    for v_reset, detach in itertools.product((0.0, None), (False, True)):
        p = NEURONS["lif"](v_reset, detach)
        x, v0, g = _inputs(16, torch.float64)
        for a, b in zip(_run("cpp", x, v0, p, sg, g), _run("torch", x, v0, p, sg, g)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_cpp_gradcheck_float64(v_reset):
    """With a detached reset ``v_last`` is piecewise linear in (x, v_init): its true gradient is the BPTT one."""
    p = ChargeParams.leaky(1.7, True, 1.0, v_reset, detach_reset=True)
    x, v0, _ = _inputs(5, torch.float64)
    x, v0 = x[:, :64].clone().requires_grad_(True), v0[:64].clone().requires_grad_(True)
    fn = lambda x, v0: kernels.BACKENDS.get("cpp")(x, v0, p, surrogate.get("atan"))[1]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, v0), eps=1e-6, atol=1e-8)


def test_cpp_partial_grads_and_inference():
    sg, p = surrogate.get("atan"), NEURONS["lif"](0.0, False)
    x, v0, _ = _inputs(6)
    with torch.no_grad():
        spike, v_last = kernels.multistep("cpp", x, v0, p, sg)
    ref_spike, ref_v = kernels.multistep("torch", x, v0, p, sg)
    assert torch.equal(spike, ref_spike) and torch.equal(v_last, ref_v.detach())
    for pick in (0, 1):  # loss through spikes only, then through v_last only (the other grad is None)
        grads = []
        for backend in ("cpp", "torch"):
            xr = x.clone().requires_grad_(True)
            out = kernels.multistep(backend, xr, v0, p, sg)[pick]
            grads.append(torch.autograd.grad(out.sum(), xr)[0])
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)


def test_cpp_multithreaded_chunks(monkeypatch):
    """Force several OpenMP threads on a small problem: chunks split across threads give the same result."""
    monkeypatch.setattr(cpu_native, "GRAIN", 64)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    sg, p = surrogate.get("sigmoid"), NEURONS["lif"](None, False)
    x, v0, g = _inputs(7)
    out, ref = _run("cpp", x, v0, p, sg, g), _run("torch", x, v0, p, sg, g)
    assert torch.equal(out[0], ref[0])
    for a, b in zip(out[1:], ref[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _spike_count_cpp(threads: int | None = None) -> float:
    if threads is not None:
        torch.set_num_threads(threads)
    x, v0, _ = _inputs(9)
    return kernels.BACKENDS.get("cpp")(x, v0, NEURONS["if"](0.0, True), surrogate.get("atan"))[0].sum().item()


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


def test_library_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SNN_KERNEL_CACHE", str(tmp_path))
    source = cpu_native._source(surrogate.get("atan").cuda_expr("x"))
    path = cpu_native._compile(source, cpu_native.compiler())
    assert path.parent == tmp_path and path.exists()
    mtime = path.stat().st_mtime_ns
    assert cpu_native._compile(source, cpu_native.compiler()) == path and path.stat().st_mtime_ns == mtime
    monkeypatch.setattr(cpu_native, "FLAGS", (*cpu_native.FLAGS, "-DSNN_UNUSED"))
    assert cpu_native._compile(source, cpu_native.compiler()) != path  # flags are part of the key


def _fallback_env(monkeypatch, tmp_path, cxx: str):
    monkeypatch.setenv("SNN_CXX", cxx)
    monkeypatch.setenv("SNN_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu_native, "_failed", {})
    cpu_native._library.cache_clear()


def test_missing_compiler_falls_back_to_fused(tmp_path, monkeypatch):
    _fallback_env(monkeypatch, tmp_path, str(tmp_path / "no-such-g++"))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert not cpu_native.is_available(torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        assert kernels.resolve_backend("auto", "cpu") == "fused"
        sg, p = surrogate.get("atan"), NEURONS["lif"](0.0, True)
        x, v0, g = _inputs(4)
        for a, b in zip(_run("cpp", x, v0, p, sg, g), _run("fused", x, v0, p, sg, g)):
            assert torch.equal(a, b)
    cpu_native._library.cache_clear()


def test_failing_compiler_warns_once_and_falls_back(tmp_path, monkeypatch):
    broken = tmp_path / "broken-g++"
    broken.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'broken 1.0' && exit 0\necho 'boom' >&2\nexit 1\n")
    broken.chmod(0o755)
    _fallback_env(monkeypatch, tmp_path, str(broken))
    assert cpu_native.is_available(torch.device("cpu"))  # the compiler exists ...
    sg, p = surrogate.get("atan"), NEURONS["if"](None, False)
    x, v0, g = _inputs(3)
    with pytest.warns(RuntimeWarning, match="boom"):  # ... but the first compile fails
        out = _run("cpp", x, v0, p, sg, g)
    for a, b in zip(out, _run("fused", x, v0, p, sg, g)):
        assert torch.equal(a, b)
    assert kernels.resolve_backend("auto", "cpu") == "fused"
    cpu_native._library.cache_clear()


# ---------------------------------------------------------------- CLIF and online LIF fused CPU paths
@pytest.mark.parametrize("carry", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clif_fused_matches_torch_loop_and_module(carry, dtype):
    from common.kernels.clif import CLIF_BACKENDS, ClifParams, clif_multistep
    from common.neuron.clif import CLIFNode

    tol = 1e-5 if dtype == torch.float32 else 1e-12
    sg, p = surrogate.get("atan"), ClifParams.from_tau(2.0, 1.0, carry)
    for T in (1, 4, 32):
        x, v0, g = _inputs(T, dtype, seed=T)
        m0 = v0.flip(0)
        outs = []
        for backend in ("fused", "torch"):
            xr, ur, mr = (t.clone().requires_grad_(True) for t in (x, v0, m0))
            spike, u, m = CLIF_BACKENDS.get(backend)(xr, ur, mr, p, sg)
            loss = (spike * g).sum() + u.square().sum() + (m * v0).sum()
            outs.append((spike.detach(), u.detach(), m.detach(), *torch.autograd.grad(loss, (xr, ur, mr))))
        assert torch.equal(outs[0][0], outs[1][0]) and outs[0][0].sum() > 0
        for a, b in zip(outs[0][1:], outs[1][1:]):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        node = CLIFNode(tau=2.0, v_threshold=1.0, surrogate=sg, sigmoid_carry=carry, backend="torch")
        xr = x.clone().requires_grad_(True)
        spike_ref = node(xr)
        (grad_ref,) = torch.autograd.grad((spike_ref * g).sum() + node.u.square().sum(), xr)
        xr = x.clone().requires_grad_(True)
        spike, u, _ = clif_multistep("auto", xr, torch.zeros_like(v0), torch.zeros_like(v0), p, sg)
        (grad,) = torch.autograd.grad((spike * g).sum() + u.square().sum(), xr)
        assert torch.equal(spike, spike_ref)
        torch.testing.assert_close(grad, grad_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_online_fused_matches_module(dtype):
    from common.kernels.online import online_lif_multistep
    from common.neuron.online import OnlineLIFNode

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, 67, generator=gen, dtype=dtype) + 0.4
    g = torch.randn(5, 3, 67, generator=gen, dtype=dtype)
    ref_node, node = OnlineLIFNode(tau=2.0, backend="torch"), OnlineLIFNode(tau=2.0, backend="torch")

    def threshold(h):
        theta = node.threshold(h)
        node.t += 1
        return theta

    results = []
    for run in (lambda x: (ref_node(x), ref_node.v),
                lambda x: online_lif_multistep("auto", x, torch.zeros_like(x[0]), 0.5, threshold, node.surrogate)):
        xr = x.clone().requires_grad_(True)
        spike, v = run(xr)
        results.append((spike.detach(), v.detach(), *torch.autograd.grad((spike * g).sum() + v.sum(), xr)))
    assert torch.equal(results[0][0], results[1][0]) and results[0][0].sum() > 0
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(results[0][1:], results[1][1:]):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert torch.equal(node.run_th, ref_node.run_th)


def test_clif_and_online_modules_dispatch_to_fused_paths():
    """``backend='auto'`` (default) and ``'fused'`` give the module's own loop results, state included."""
    from common.neuron import NeuronConfig, build_neuron
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
    for name in ("clif", "online_lif"):
        assert build_neuron(NeuronConfig(name=name, backend="cpp"), (33,)).backend == "auto"
        assert build_neuron(NeuronConfig(name=name, backend="torch"), (33,)).backend == "torch"


class _NoCudaExpr(surrogate.Surrogate):
    """A user surrogate with only the torch derivative: compiled backends cannot inline it."""

    name = "test_no_cuda_expr"
    default_alpha = 1.0

    def derivative(self, x):
        return self.alpha / (1 + x.abs()).square()


def test_surrogate_without_cuda_expr_runs_fused():
    sg, p = _NoCudaExpr(), NEURONS["lif"](0.0, False)
    x, v0, g = _inputs(4)
    for a, b in zip(_run("cpp", x, v0, p, sg, g), _run("fused", x, v0, p, sg, g)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("reduce", ["sum", "per_step", "none"])
def test_broadcast_spike_gradients_are_read_in_place(reduce):
    """Gradients that are one value per step for all neurons (the loss is a sum) skip materialisation; the result
    equals the torch backend's."""
    sg, p = surrogate.get("atan"), ChargeParams.leaky(2.0, True, 1.0, 0.0, False)
    step_weight = torch.linspace(0.5, 2.0, 6)
    losses = {"sum": lambda s, v: s.sum(),
              "per_step": lambda s, v: (s.sum(dim=(1, 2)) * step_weight).sum(),
              "none": lambda s, v: v.sum()}
    grads = []
    for backend in ("cpp", "torch"):
        x = (torch.rand(6, 3, 50, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_(True)
        spikes, v_last = kernels.BACKENDS.get(backend)(x, torch.zeros(3, 50), p, sg)
        losses[reduce](spikes, v_last).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
