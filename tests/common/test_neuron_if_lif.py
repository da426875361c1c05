"""IF/LIF: the torch loop, the fused Function and SpikingJelly 2.0 agree on spikes and gradients."""
import itertools

import pytest
import torch

from common import kernels, surrogate
from common.errors import UsageError
from common.kernels import ChargeParams, cpu_native
from common.neuron import IFNode, LIFNode
from common.state import reset_net

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

SJ_SURROGATES = {"atan": sj_surrogate.ATan, "sigmoid": sj_surrogate.Sigmoid, "erf": sj_surrogate.Erf}
RESETS = [0.0, None, -0.2]  # hard to 0, soft, hard to a non-zero value


def make(kind, backend, v_reset, detach, decay_input, sg):
    common = dict(v_threshold=0.7, v_reset=v_reset, detach_reset=detach, surrogate=surrogate.get(sg), backend=backend)
    return IFNode(**common) if kind == "if" else LIFNode(tau=1.7, decay_input=decay_input, **common)


def make_sj(kind, v_reset, detach, decay_input, sg):
    common = dict(v_threshold=0.7, v_reset=v_reset, detach_reset=detach,
                  surrogate_function=SJ_SURROGATES[sg](), step_mode="m")
    return sj_neuron.IFNode(**common) if kind == "if" else sj_neuron.LIFNode(tau=1.7, decay_input=decay_input, **common)


def run(node, x_seq, weight):
    x = x_seq.clone().requires_grad_(True)
    spikes = node(x)
    (spikes * weight).sum().backward()
    return spikes.detach(), x.grad


CASES = list(itertools.product(["if", "lif"], RESETS, [True, False], [True, False], ["atan", "sigmoid", "erf"]))
CASES = [c for c in CASES if c[0] == "lif" or c[3]]  # decay_input only matters for LIF


@pytest.mark.parametrize("T", [1, 4, 32])
@pytest.mark.parametrize("kind,v_reset,detach,decay_input,sg", CASES)
def test_backends_match_spikingjelly(T, kind, v_reset, detach, decay_input, sg):
    gen = torch.Generator().manual_seed(T)
    x_seq = torch.rand(T, 3, 37, generator=gen, dtype=torch.float64) * 2.0 - 0.3
    weight = torch.randn(T, 3, 37, generator=gen, dtype=torch.float64)
    ref_spikes, ref_grad = run(make_sj(kind, v_reset, detach, decay_input, sg).double(), x_seq, weight)
    for backend in ("torch", "fused"):
        spikes, grad = run(make(kind, backend, v_reset, detach, decay_input, sg), x_seq, weight)
        assert torch.equal(spikes, ref_spikes), backend
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5, msg=backend)


class ZeroSlope(surrogate.Surrogate):
    """Heaviside with its true derivative (zero almost everywhere)."""

    name = "zero_slope"
    default_alpha = 1.0

    def derivative(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("v_reset", [0.0, None, 0.3])
@pytest.mark.parametrize("decay_input", [True, False])
def test_fused_gradcheck(v_reset, decay_input):
    """gradcheck compares with finite differences, which see the true (zero) derivative of the Heaviside: with a
    zero-slope surrogate the fused backward must equal the exact derivative of the piecewise-smooth dynamics
    (leak, input scaling, reset masks, initial state); the surrogate terms are checked against SpikingJelly above."""
    p = ChargeParams.leaky(tau=1.5, decay_input=decay_input, v_threshold=0.6, v_reset=v_reset, detach_reset=False)
    zero_slope = ZeroSlope()
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 5, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    v0 = (torch.rand(5, generator=gen, dtype=torch.float64) * 0.5).requires_grad_(True)
    fused = kernels.BACKENDS.get("fused").functions["lif"]
    spikes, _ = fused(x, v0, p, zero_slope)
    assert 0 < spikes.sum() < spikes.numel()  # the check covers both fired and silent steps
    assert torch.autograd.gradcheck(lambda a, b: fused(a, b, p, zero_slope), (x, v0))


@pytest.mark.parametrize("v_reset,detach", [(0.0, False), (None, False), (0.0, True), (0.3, False)])
def test_fused_initial_state_gradient_matches_loop(v_reset, detach):
    p = ChargeParams.leaky(tau=1.5, decay_input=True, v_threshold=0.6, v_reset=v_reset, detach_reset=detach)
    sg = surrogate.get("sigmoid")
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 4, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    v0 = (torch.rand(4, generator=gen, dtype=torch.float64) * 0.5).requires_grad_(True)
    outs = [kernels.multistep("lif", name, x, (v0,), p, sg) for name in ("fused", "torch")]
    grads = [torch.autograd.grad(s.sum() + 0.3 * v.sum(), (x, v0)) for s, v in outs]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_state_carries_across_calls_and_resets():
    x_seq = torch.rand(6, 2, 5) * 1.5
    whole = LIFNode(backend="fused")(x_seq)
    node = LIFNode(backend="fused")
    halves = torch.cat([node(x_seq[:3]), node(x_seq[3:])])
    assert torch.equal(whole, halves)
    model = torch.nn.Sequential(node)
    reset_net(model)
    assert torch.equal(node(x_seq), whole)


def test_hand_computed_lif_sequence():
    # tau = 2, v_th = 1, hard reset to 0: h = 0.5 v + 0.5 x
    node = LIFNode(tau=2.0, backend="fused")
    x = torch.tensor([[1.5], [1.5], [0.4], [3.0]])
    # h: 0.75 -> 0.375+0.75=1.125 (spike, v=0) -> 0.2 -> 0.1+1.5=1.6 (spike)
    assert node(x).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    torch.testing.assert_close(node.v, torch.tensor([0.0]))


def test_auto_backend_and_unknown_backend():
    expected = "cpp" if cpu_native.compiler() else "fused"
    assert kernels.resolve("lif", "auto", "cpu", torch.float32, surrogate.get("atan")) == expected
    with pytest.raises(UsageError, match="--backend nope is not a backend; none has a lif kernel; valid for lif: auto"):
        LIFNode(backend="nope")
    with pytest.raises(ValueError, match="tau > 1"):
        LIFNode(tau=1.0)
