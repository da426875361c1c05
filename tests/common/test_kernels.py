"""The compiled backends against the autograd reference ``torch``, one body per check for both devices: ``cpp`` (CPU,
skipped without a C++ compiler) and ``cupy`` (CUDA, skipped without a GPU). Spikes bitwise identical; gradients
within 1e-5 (float32) and 1e-12 / 1e-10 (float64, CPU / CUDA). CLIF and online LIF run ``fused`` on CPU (``cpp``
has only the IF/LIF kernel) and ``cupy`` on CUDA.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from common import kernels, surrogate
from common.kernels import cpu_native
from common.kernels.clif import ClifParams
from common.kernels.online import OnlineParams
from common.kernels.params import ChargeParams
from common.neuron.online import OnlineLIFNode

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(cpu_native.compiler() is None, reason="no C++ compiler")),
    pytest.param("cuda", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
]
FAST = {"cpu": {"lif": "cpp", "clif": "fused", "online_lif": "fused"},
        "cuda": {"lif": "cupy", "clif": "cupy", "online_lif": "cupy"}}
FLOAT64_TOL = {"cpu": 1e-12, "cuda": 1e-10}
N = 1037  # not a multiple of the 512-neuron chunk, the 256-thread block, nor of any SIMD width
NEURONS = {
    "if": lambda v_reset, detach: ChargeParams.integrate_and_fire(1.0, v_reset, detach),
    "lif": lambda v_reset, detach: ChargeParams.leaky(1.7, True, 1.0, v_reset, detach),
    "lif_nodecay": lambda v_reset, detach: ChargeParams.leaky(3.0, False, 0.8, v_reset, detach),
}


def make_inputs(T, device, dtype=torch.float32, seed=0, n=N):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, n, generator=gen, dtype=torch.float64) * 1.2 + 0.4
    v0 = torch.rand(n, generator=gen, dtype=torch.float64) * 0.5
    g = torch.randn(T, n, generator=gen, dtype=torch.float64)
    return (t.to(device, dtype) for t in (x, v0, g))


def run_lif(backend, x, v0, p, sg, g):
    """Spikes, v_last and the gradients of ``<spikes, g> + |v_last|^2`` w.r.t. x and v_init."""
    x, v0 = x.clone().requires_grad_(True), v0.clone().requires_grad_(True)
    spike, v_last = kernels.multistep("lif", backend, x, (v0,), p, sg)
    grads = torch.autograd.grad((spike * g).sum() + v_last.square().sum(), (x, v0))
    return spike.detach(), v_last.detach(), *grads


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sg_name", ["atan", "sigmoid", "piecewise_quadratic", "super_spike", "erf"])
@pytest.mark.parametrize("neuron", sorted(NEURONS))
def test_lif_matches_torch_float32(device, neuron, sg_name):
    sg, fast = surrogate.get(sg_name), FAST[device]["lif"]
    for T, v_reset, detach in itertools.product((1, 4, 32), (0.0, -0.2, None), (False, True)):
        p = NEURONS[neuron](v_reset, detach)
        x, v0, g = make_inputs(T, device)
        out, ref = run_lif(fast, x, v0, p, sg, g), run_lif("torch", x, v0, p, sg, g)
        case = f"T={T} v_reset={v_reset} detach={detach}"
        assert torch.equal(out[0], ref[0]), f"spikes differ: {case}"
        assert out[0].sum() > 0, case
        for a, b, what in zip(out[1:], ref[1:], ("v_last", "grad_x", "grad_v_init")):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, w=f"{what} {case}": f"{w}: {m}")


@pytest.mark.parametrize("device", DEVICES)
def test_surrogates_float64(device):
    tol = FLOAT64_TOL[device]
    names = surrogate.names() if device == "cuda" else ["sigmoid", "atan"]  # cpp: one ~1 s build per surrogate
    for name, (v_reset, detach) in itertools.product(names, ((0.0, False), (None, True))):
        sg, p = surrogate.get(name), NEURONS["lif"](v_reset, detach)
        x, v0, g = make_inputs(8, device, torch.float64)
        for a, b in zip(run_lif(FAST[device]["lif"], x, v0, p, sg, g), run_lif("torch", x, v0, p, sg, g)):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_gradcheck_float64(device, v_reset):
    """With a detached reset ``v_last`` is piecewise linear in (x, v_init): its true gradient is the BPTT one."""
    p = ChargeParams.leaky(1.7, True, 1.0, v_reset, detach_reset=True)
    x, v0, _ = make_inputs(5, device, torch.float64, n=64)
    x, v0 = x.requires_grad_(True), v0.requires_grad_(True)
    fn = lambda x, v0: kernels.multistep("lif", FAST[device]["lif"], x, (v0,), p, surrogate.get("atan"))[1]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, v0), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
def test_partial_grads_and_inference(device):
    sg, p, fast = surrogate.get("atan"), NEURONS["lif"](0.0, False), FAST[device]["lif"]
    x, v0, _ = make_inputs(6, device)
    with torch.no_grad():
        spike, v_last = kernels.multistep("lif", fast, x, (v0,), p, sg)
    ref_spike, ref_v = kernels.multistep("lif", "torch", x, (v0,), p, sg)
    assert torch.equal(spike, ref_spike) and torch.equal(v_last, ref_v.detach())
    for pick in (0, 1):  # loss through spikes only, then through v_last only (the other grad is None)
        grads = []
        for backend in (fast, "torch"):
            xr = x.clone().requires_grad_(True)
            out = kernels.multistep("lif", backend, xr, (v0,), p, sg)[pick]
            grads.append(torch.autograd.grad(out.sum(), xr)[0])
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "per_step", "none"])
def test_broadcast_spike_gradients_are_read_in_place(device, reduce, monkeypatch):
    """Gradients that are one value per step for all neurons (the loss is a sum) reach the kernel unmaterialised
    (strides 0); the result equals the torch backend's."""
    from common.kernels import compiled

    seen = []
    original = compiled.CompiledMultiStep.backward

    def spy(ctx, grad_spike_seq, grad_v_last):
        seen.append(None if grad_spike_seq is None else grad_spike_seq.stride())
        return original(ctx, grad_spike_seq, grad_v_last)

    monkeypatch.setattr(compiled.CompiledMultiStep, "backward", staticmethod(spy))
    sg, p = surrogate.get("atan"), ChargeParams.leaky(2.0, True, 1.0, 0.0, False)
    step_weight = torch.linspace(0.5, 2.0, 6, device=device)
    losses = {"sum": lambda s, v: s.sum(),
              "per_step": lambda s, v: (s.sum(dim=(1, 2)) * step_weight).sum(),
              "none": lambda s, v: v.sum()}
    grads = []
    for backend in (FAST[device]["lif"], "torch"):
        x = (torch.rand(6, 3, 50, generator=torch.Generator().manual_seed(1)) * 2).to(device).requires_grad_(True)
        spikes, v_last = kernels.multistep("lif", backend, x, (torch.zeros(3, 50, device=device),), p, sg)
        losses[reduce](spikes, v_last).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
    assert seen == [{"sum": (0, 0, 0), "per_step": (1, 0, 0), "none": None}[reduce]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("carry", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clif_matches_torch_loop(device, carry, dtype):
    tol = 1e-5 if dtype == torch.float32 else FLOAT64_TOL[device]
    sg, p = surrogate.get("atan"), ClifParams.from_tau(2.0, 1.0, carry)
    for T in (1, 4, 32):
        x, u0, g = make_inputs(T, device, dtype, seed=T)
        m0 = u0.flip(0)
        outs = []
        for backend in (FAST[device]["clif"], "torch"):
            xr, ur, mr = (t.clone().requires_grad_(True) for t in (x, u0, m0))
            spike, u, m = kernels.multistep("clif", backend, xr, (ur, mr), p, sg)
            loss = (spike * g).sum() + u.square().sum() + (m * u0).sum()
            outs.append((spike.detach(), u.detach(), m.detach(), *torch.autograd.grad(loss, (xr, ur, mr))))
        assert torch.equal(outs[0][0], outs[1][0]) and outs[0][0].sum() > 0, f"T={T}: spikes differ"
        for a, b in zip(outs[0][1:], outs[1][1:]):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_online_matches_torch_loop(device, dtype):
    """The same OTS thresholds (two nodes driven alike) through the fast kernel and the reference loop."""
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(6, 4, 51, generator=gen, dtype=torch.float64) + 0.4).to(device, dtype)
    g = torch.randn(6, 4, 51, generator=gen, dtype=torch.float64).to(device, dtype)
    results, nodes = [], []
    for backend in (FAST[device]["online_lif"], "torch"):
        node = OnlineLIFNode(tau=2.0).to(device)
        nodes.append(node)

        def threshold(h, node=node):
            theta = node.threshold(h)
            node.t += 1
            return theta

        xr = x.clone().requires_grad_(True)
        spike, v = kernels.multistep("online_lif", backend, xr, (torch.zeros_like(x[0]),), OnlineParams(0.5, threshold),
                                     node.surrogate)
        results.append((spike.detach(), v.detach(), *torch.autograd.grad((spike * g).sum() + v.sum(), xr)))
    assert torch.equal(results[0][0], results[1][0]) and results[0][0].sum() > 0
    tol = 1e-5 if dtype == torch.float32 else FLOAT64_TOL[device]
    for a, b in zip(results[0][1:], results[1][1:]):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert torch.equal(nodes[0].run_th, nodes[1].run_th)
