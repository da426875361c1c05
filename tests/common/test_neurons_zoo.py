"""Method-zoo neurons: hand/numpy references, gradients, state handling, SpikingJelly references, BlockALIF == ALIF."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.errors import UsageError
from common.neuron import NEURONS, NeuronConfig, build_neuron, check_config, resolve_backend
from common.neuron.alif import ALIFNode, BlockALIFNode
from common.neuron.clif import CLIFNode
from common.neuron.online import OnlineLIFNode
from common.neuron.psn import PSN, MaskedPSN, SlidingPSN
from common.state import reset_net

ZOO = ["clif", "psn", "masked_psn", "sliding_psn", "alif", "blockalif", "online_lif"]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------------------- shared contract
@pytest.mark.parametrize("name", ZOO)
def test_registered_contract_and_reset(name):
    torch.manual_seed(0)
    cfg = NeuronConfig(name=name, T=4, extra={"k": 2} if name.endswith("_psn") else {})
    node = build_neuron(cfg, (3, 2))
    x = torch.randn(4, 5, 3, 2) * 2
    first = node(x)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    reset_net(node)
    again = node(x)
    assert torch.equal(first, again)
    assert getattr(node, "needs_fixed_T", False) == (name in ("psn", "masked_psn"))


def test_registry_names():
    assert set(ZOO) <= set(NEURONS.names())


def test_extra_options_parse_cli_strings():
    cfg = NeuronConfig(name="online_lif", extra={"ots": "false"})
    node = build_neuron(cfg, (4,))
    assert node.ots is False and node.ots_batch_eval is False
    node = build_neuron(NeuronConfig(name="blockalif", extra={"latency": "3"}), (4,))
    assert node.latency == 3 and torch.all(node.b_raw == 0.999)
    with pytest.raises(UsageError, match="ots='maybe' is not a boolean"):
        build_neuron(NeuronConfig(name="online_lif", extra={"ots": "maybe"}), (4,))
    with pytest.raises(UsageError, match="latency='soon' is not an integer"):
        build_neuron(NeuronConfig(name="alif", extra={"latency": "soon"}), (4,))


@pytest.mark.parametrize("name,key", [("lif", "k"), ("clif", "ots"), ("sliding_psn", "latencyy"), ("psn", "k")])
def test_unknown_or_inapplicable_options_are_refused_with_the_valid_ones(name, key):
    cfg = NeuronConfig(name=name, extra={key: 1})
    valid = {"lif": "none", "clif": "none",
             "sliding_psn": "k (int, default 4), exp_init (bool, default True)", "psn": "none"}[name]
    with pytest.raises(UsageError, match=f"--neuron-opt {key}: not an option of --neuron {name}; valid: ") as err:
        check_config(cfg)
    assert str(err.value).endswith(f"valid: {valid}")


@pytest.mark.parametrize("name", ["psn", "masked_psn", "sliding_psn", "alif", "blockalif"])
def test_neurons_without_kernels_refuse_a_named_backend(name):
    assert build_neuron(NeuronConfig(name=name, T=4), (3,)) is not None
    assert resolve_backend(NeuronConfig(name=name, T=4), "cpu") == "torch"
    with pytest.raises(UsageError, match=f"--backend fused: --neuron {name} runs plain torch ops"):
        build_neuron(NeuronConfig(name=name, T=4, backend="fused"), (3,))


@pytest.mark.parametrize("name,kind", [("clif", "clif"), ("online_lif", "online_lif")])
def test_backend_without_the_neuron_kernel_is_refused(name, kind):
    """``cpp`` has only the IF/LIF kernel: naming it for CLIF / online LIF fails (it used to run ``auto``)."""
    with pytest.raises(UsageError, match=f"--backend cpp has no {kind} kernel; valid for {kind}: auto, cupy, fused, "
                                         "torch$"):
        build_neuron(NeuronConfig(name=name, backend="cpp"), (3,))
    assert build_neuron(NeuronConfig(name=name, backend="torch"), (3,)).backend == "torch"
    assert resolve_backend(NeuronConfig(name=name), "cpu") == "fused"
    assert resolve_backend(NeuronConfig(name=name, backend="torch"), "cpu") == "torch"


# ----------------------------------------------------------------------------------------- CLIF
def clif_reference(x, tau, v_th, sigmoid_carry):
    gamma = 1 - 1 / tau
    u = np.zeros_like(x[0])
    m = np.zeros_like(x[0])
    spikes = []
    for xt in x:
        u = gamma * u + xt
        s = (u >= v_th).astype(float)
        m = m * sigmoid((1 - gamma) * u) + s
        sm = sigmoid(m)
        u = u - s * (v_th + sm)
        m = sm if sigmoid_carry else m
        spikes.append(s)
    return np.stack(spikes), u, m


def test_clif_hand_values():
    # one neuron by hand: t0 u=1.5 fires, m=1, u=1.5-(1+sig(1))=-0.2310586; t1 u=0.4844707 silent.
    node = CLIFNode(tau=2.0)
    s = node(torch.tensor([[1.5], [0.6]], dtype=torch.float64))
    assert s[:, 0].tolist() == [1.0, 0.0]
    assert node.u.item() == pytest.approx(0.5 * (1.5 - 1 - sigmoid(1.0)) + 0.6)
    assert node.m.item() == pytest.approx(1.0 * sigmoid(0.5 * node.u.item()))


@pytest.mark.parametrize("carry", [False, True])
def test_clif_matches_numpy(carry):
    x = np.array([[1.5, 0.4, 2.0, 1.2], [0.6, 0.9, 2.0, 0.1], [0.9, 0.7, 2.0, 1.3]])[:, None, :]  # [T=3, N=1, 4]
    node = CLIFNode(tau=2.0, sigmoid_carry=carry)
    s = node(torch.tensor(x))
    ref_s, ref_u, ref_m = clif_reference(x, 2.0, 1.0, carry)
    np.testing.assert_array_equal(s.numpy(), ref_s)
    np.testing.assert_allclose(node.u.numpy(), ref_u, rtol=1e-12)
    np.testing.assert_allclose(node.m.numpy(), ref_m, rtol=1e-12)


@pytest.mark.parametrize("quirk,name,attr,on,off", [
    ("clif_sigmoid_carry", "clif", "sigmoid_carry", True, False),
    ("ots_batch_eval", "online_lif", "ots_batch_eval", True, False),
    ("blockalif_frozen_b", "blockalif", "b_raw", 1.8, 0.999),
    ("blockalif_frozen_b", "alif", "b_raw", 1.8, 0.999),
])
def test_survey_quirks_reach_the_neurons(quirk, name, attr, on, off):
    """``--survey-quirk`` (NeuronConfig.quirks) is the only way to the survey behaviours; the old --neuron-opt keys
    are gone."""
    def value(cfg):
        v = getattr(build_neuron(cfg, (4,)), attr)
        return v.flatten()[0].item() if isinstance(v, torch.Tensor) else v

    assert value(NeuronConfig(name=name, T=4, quirks=frozenset({quirk}))) == pytest.approx(on)
    assert value(NeuronConfig(name=name, T=4)) == pytest.approx(off)
    old = {"clif_sigmoid_carry": "clif_sigmoid_carry", "ots_batch_eval": "ots_batch_eval"}.get(quirk, "b_init")
    with pytest.raises(UsageError, match=f"--neuron-opt {old}: not an option"):
        build_neuron(NeuronConfig(name=name, T=4, extra={old: 1}), (4,))


def test_clif_sigmoid_carry_changes_the_dynamics():
    x = torch.tensor([[2.0], [2.0], [2.0]], dtype=torch.float64)
    a, b = CLIFNode(sigmoid_carry=False), CLIFNode(sigmoid_carry=True)
    a(x), b(x)
    assert a.u.item() != pytest.approx(b.u.item())


def test_clif_state_carries_across_calls_and_bptt_reaches_first_step():
    torch.manual_seed(1)
    x = torch.randn(5, 4, 3) + 1.0
    whole = CLIFNode()(x)
    node = CLIFNode()
    parts = torch.cat([node(x[:2]), node(x[2:])])
    assert torch.equal(whole, parts)
    x = x.clone().requires_grad_()
    CLIFNode()(x)[-1].sum().backward()
    assert x.grad[0].abs().sum() > 0  # nothing detached: gradient through the reset and m


# ----------------------------------------------------------------------------------------- PSN family
def _sj():
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import neuron, surrogate

    return type("SJ", (), {"neuron": neuron, "surrogate": surrogate})


def test_psn_hand_values():
    node = PSN(T=3).double()
    with torch.no_grad():
        node.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [-1.0, 1.0, 1.0]]))
    x = torch.tensor([[2.0, 0.5], [0.0, 1.6], [1.0, 0.2]], dtype=torch.float64)[:, None, :]
    # H = W X - 1: t0 (1, -0.5); t1 (0, 0.05); t2 (-2+0+1-1, -0.5+1.6+0.2-1) = (-2, 0.3)
    assert node(x)[:, 0].tolist() == [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def _copy_and_compare(ours, theirs, x):
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias.view_as(theirs.bias))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1, s2 = ours(x1), theirs(x2)
    assert torch.equal(s1, s2)
    g = torch.randn_like(s1)
    (s1 * g).sum().backward()
    (s2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad.view(-1), theirs.bias.grad.view(-1))
    assert ours.weight.grad.abs().sum() > 0 and ours.bias.grad.abs().sum() > 0


def test_psn_equals_spikingjelly():
    sj = _sj()
    torch.manual_seed(2)
    _copy_and_compare(PSN(T=5), sj.neuron.PSN(T=5, surrogate_function=sj.surrogate.ATan()), torch.randn(5, 6, 3))


@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_masked_psn_equals_spikingjelly(lam):
    sj = _sj()
    torch.manual_seed(3)
    theirs = sj.neuron.MaskedPSN(k=2, T=5, lambda_init=lam, surrogate_function=sj.surrogate.ATan(), step_mode="m")
    _copy_and_compare(MaskedPSN(T=5, k=2, lambda_=lam), theirs, torch.randn(5, 6, 3))


def test_masked_psn_is_causal_band_when_fully_masked():
    node = MaskedPSN(T=4, k=2)
    x = torch.randn(4, 3, 2, requires_grad=True)
    node(x)[3].sum().backward()
    assert node.weight.grad[3, :2].abs().sum() == 0 and node.weight.grad[:3].abs().sum() == 0
    assert x.grad[:2].abs().sum() == 0  # step 3 sees only steps 2, 3


def test_psn_rejects_other_T():
    with pytest.raises(ValueError):
        PSN(T=4)(torch.randn(3, 2, 2))


@pytest.mark.parametrize("k", [1, 3, 4])
def test_sliding_psn_equals_spikingjelly_and_chunks(k):
    sj = _sj()
    torch.manual_seed(4)
    theirs = sj.neuron.SlidingPSN(k=k, exp_init=True, surrogate_function=sj.surrogate.ATan(), step_mode="m")
    ours = SlidingPSN(k=k)
    assert torch.equal(ours.weight.detach(), theirs.weight.detach())
    x = torch.randn(7, 5, 3) + 0.5
    _copy_and_compare(ours, theirs, x)
    ours.reset()
    stepwise = torch.cat([ours(x[t:t + 1]) for t in range(7)])
    assert torch.equal(stepwise, theirs(x))


def test_sliding_psn_hand_values():
    node = SlidingPSN(k=2)  # w = (0.5, 1), b = -1
    x = torch.tensor([[0.8], [0.7], [0.4]])
    # H = (0.8 - 1, 0.4 + 0.7 - 1, 0.35 + 0.4 - 1) = (-0.2, 0.1, -0.25)
    assert node(x)[:, 0].tolist() == [0.0, 1.0, 0.0]


# ----------------------------------------------------------------------------------------- ALIF / BlockALIF
def alif_reference(x, beta, p, b, R, v_th=1.0):
    v = np.zeros_like(x[0])
    a = np.zeros_like(x[0])
    blocked = np.zeros_like(x[0])  # remaining refractory input steps
    spikes = []
    for xt in x:
        h = beta * v + np.where(blocked > 0, 0.0, xt)
        blocked = np.maximum(blocked - 1, 0)
        s = (h >= v_th + b * a).astype(float)
        v = h * (1 - s)
        a = p * a + s
        blocked = np.where(s > 0, R, blocked)
        spikes.append(s)
    return np.stack(spikes), v, a


def _set_params(node, beta, p, b):
    with torch.no_grad():
        node.beta_raw.copy_(torch.as_tensor(beta))
        node.p_raw.copy_(torch.as_tensor(p))
        node.b_raw.copy_(torch.as_tensor(b))


@pytest.mark.parametrize("cls", [ALIFNode, BlockALIFNode])
def test_alif_hand_values(cls):
    # one neuron, R = 1, beta = 0.5, p = 0.5, b = 1: t0 h=1.2 fires (theta 1) -> a=1; t1 input blocked, h=0;
    # theta = 1 + b a = 2, a = 0.5; t2 h=1.6 >= theta = 1.5 fires -> a = 0.25 + 1 = 1.25, v = 0.
    node = cls((1,), latency=1).double()
    _set_params(node, [0.5], [0.5], [1.0])
    s = node(torch.tensor([[[1.2]], [[9.0]], [[1.6]]], dtype=torch.float64))
    assert s.flatten().tolist() == [1.0, 0.0, 1.0]
    assert node.a.item() == pytest.approx(1.25) and node.v.item() == 0.0


@pytest.mark.parametrize("cls", [ALIFNode, BlockALIFNode])
@pytest.mark.parametrize("latency", [0, 1, 2])
def test_alif_matches_numpy(cls, latency):
    rng = np.random.default_rng(latency)
    beta, p, b = rng.uniform(0.5, 0.95, 4), rng.uniform(0.5, 0.95, 4), rng.uniform(0.2, 1.0, 4)
    x = rng.uniform(0, 2.5, (3, 2, 4))
    node = cls((4,), latency=latency).double()
    _set_params(node, beta, p, b)
    s = node(torch.tensor(x)).detach()
    ref_s, ref_v, ref_a = alif_reference(x, beta, p, b, latency)
    np.testing.assert_array_equal(s.numpy(), ref_s)
    np.testing.assert_allclose(node.v.detach().numpy(), ref_v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(node.a.detach().numpy(), ref_a, rtol=1e-12)


@pytest.mark.parametrize("latency", [0, 1, 3])
@pytest.mark.parametrize("T", [5, 7, 10])
def test_blockalif_forward_equals_sequential_alif(latency, T):
    torch.manual_seed(10 * latency + T)
    features = (3, 4)
    seq = ALIFNode(features, latency).double()
    with torch.no_grad():
        seq.beta_raw.uniform_(0.5, 1.0)
        seq.p_raw.uniform_(0.5, 1.0)
        seq.b_raw.uniform_(0.1, 1.0)
    block = BlockALIFNode(features, latency).double()
    block.load_state_dict(seq.state_dict())
    for steps in (T, 3):  # a second call continues from the carried state
        x = torch.rand(steps, 16, *features, dtype=torch.float64) * 2.5
        assert torch.equal(block(x), seq(x))
    for name in ("v", "a", "ref"):
        torch.testing.assert_close(getattr(block, name), getattr(seq, name))


@pytest.mark.parametrize("cls", [ALIFNode, BlockALIFNode])
def test_alif_gradients(cls):
    torch.manual_seed(5)
    node = cls((6,), latency=1)
    x = (torch.rand(8, 4, 6) * 2.5).requires_grad_()
    node(x).sum().backward()
    for name in ("beta_raw", "p_raw", "b_raw"):
        assert getattr(node, name).grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0
    frozen = cls((6,), latency=1, b_init=1.8)  # survey/Blocks init: clamp saturates, b = 1 never trains
    frozen(torch.rand(8, 4, 6) * 2.5).sum().backward()
    assert frozen.b_raw.grad.abs().sum() == 0 and torch.all(frozen.b == 1.0)


# ----------------------------------------------------------------------------------------- online LIF (OTS)
def online_reference(x, tau, v_th):
    v = np.zeros_like(x[0])
    spikes, thetas = [], []
    ratio = None
    for t, xt in enumerate(x):
        v = (1 - 1 / tau) * v + xt
        mu, sd = v.mean(), v.std(ddof=1)
        if t == 0:
            ratio = (v_th - mu) / sd
        theta = mu + sd * ratio
        s = (v >= theta).astype(float)
        v = v - s * theta
        spikes.append(s)
        thetas.append(theta)
    return np.stack(spikes), v, thetas


def test_online_lif_matches_numpy_and_stepwise():
    rng = np.random.default_rng(0)
    x = rng.normal(0.6, 0.8, (3, 4, 5))
    ref_s, ref_v, thetas = online_reference(x, 2.0, 1.0)
    assert thetas[0] == pytest.approx(1.0)
    node = OnlineLIFNode(T=3).double()
    np.testing.assert_array_equal(node(torch.tensor(x)).numpy(), ref_s)
    np.testing.assert_allclose(node.v.numpy(), ref_v, rtol=1e-12)
    node.reset()
    stepwise = torch.cat([node(torch.tensor(x[t:t + 1])) for t in range(3)])
    np.testing.assert_array_equal(stepwise.numpy(), ref_s)


def test_online_lif_has_no_temporal_gradient():
    torch.manual_seed(6)
    x = (torch.randn(4, 8, 5) + 0.8).requires_grad_()
    s = OnlineLIFNode(T=4)(x)
    s[3].sum().backward()
    assert x.grad[:3].abs().sum() == 0 and x.grad[3].abs().sum() > 0


def test_online_lif_eval_uses_running_threshold():
    torch.manual_seed(7)
    node = OnlineLIFNode(T=3)
    x = torch.randn(3, 64, 10) + 0.5
    node(x)
    trained_theta = node.run_th.clone()
    assert trained_theta[0] == pytest.approx(1.0) and not torch.equal(trained_theta, torch.ones(3))
    node.eval()
    node.reset()
    s = node(x[:, :1])  # one sample alone: batch statistics would be meaningless
    v = torch.zeros(10)
    for t in range(3):  # fixed per-step thresholds run_th[t]
        v = 0.5 * v + x[t, 0]
        ref = (v >= trained_theta[t]).float()
        assert torch.equal(s[t, 0], ref)
        v = v - ref * trained_theta[t]
    assert torch.equal(node.run_th, trained_theta)  # eval does not update


def test_online_lif_batch_eval_quirk_uses_test_batch_statistics():
    torch.manual_seed(8)
    x = torch.randn(3, 16, 10) + 0.5
    quirk = OnlineLIFNode(T=3, ots_batch_eval=True).double().eval()
    ref_s, _, _ = online_reference(x.double().numpy(), 2.0, 1.0)
    np.testing.assert_array_equal(quirk(x.double()).numpy(), ref_s)


def test_online_lif_without_ots_equals_spikingjelly_sltt():
    sj = _sj()
    torch.manual_seed(9)
    x1 = (torch.randn(4, 6, 5) + 0.7).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    ours = OnlineLIFNode(T=4, ots=False)
    theirs = sj.neuron.SLTTLIFNode(tau=2.0, decay_input=False, v_reset=None,
                                   surrogate_function=sj.surrogate.ATan(), detach_reset=True)
    s1 = ours(x1)
    s2 = torch.stack([theirs(x2[t]) for t in range(4)])
    assert torch.equal(s1, s2)
    s1.sum().backward()
    s2.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("flags,match", [
    (["--neuron", "lif", "--neuron-opt", "k=4"], "--neuron-opt k: not an option of --neuron lif; valid: none"),
    (["--neuron", "psn", "--backend", "cpp"], "--backend cpp: --neuron psn runs plain torch ops"),
    (["--neuron", "clif", "--backend", "cpp"], "--backend cpp has no clif kernel"),
    (["--neuron", "sliding_psn", "--neuron-opt", "k=two"], "--neuron-opt k='two' is not an integer"),
])
def test_command_line_refuses_inapplicable_options_and_backends(tmp_path, flags, match):
    from common import cli

    with pytest.raises(UsageError, match=match):
        cli.parse(cli.base_parser("test"), [*flags, "--out-dir", str(tmp_path)])
