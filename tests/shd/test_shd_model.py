"""SHD network: shapes for every registered neuron/norm, padding invariance, readout, dropout, loss, param groups."""
import pytest
import torch
import torch.nn.functional as F

from common import neuron as neurons
from common import norm as norms
from common.neuron import NeuronConfig
from common.state import reset_net
from shd import model as shd_model

T_FIXED = 12


def survey_neuron(name="lif"):
    return NeuronConfig(name=name, tau=1.005, decay_input=False, sg_alpha=5.0)


def build(name="lif", norm="bn", **kwargs):
    torch.manual_seed(0)
    return shd_model.SHDNet(survey_neuron(name), norm, T=T_FIXED, **kwargs)


def forward(net, x):
    reset_net(net)
    return net(x)


@pytest.mark.parametrize("norm", norms.names())
@pytest.mark.parametrize("name", neurons.names())
def test_every_neuron_and_norm_builds_and_trains(name, norm):
    net = build(name, norm)
    x = torch.rand(7, 3, 140) * 3  # shorter than T_FIXED: modules with per-step parameters pad inside
    x[5:, 1] = 0
    out = forward(net, x)
    assert out.shape == (7, 3, 20)
    torch.testing.assert_close(out.sum(-1), torch.ones(7, 3))
    m = shd_model.decode(out, {"lengths": torch.tensor([7, 5, 7])})
    torch.testing.assert_close(m.sum(-1), torch.tensor([7.0, 5.0, 7.0]))
    shd_model.sum_softmax_loss(m, torch.tensor([1, 2, 3])).backward()
    assert net.features[0].weight.grad.abs().sum() > 0


def test_pad_to_length_runs_the_module_on_T_steps_and_crops():
    seen = []

    def module(x):
        seen.append(x.clone())
        return x.cumsum(0)  # any map whose step t depends on steps <= t

    wrapped = shd_model.PadToLength(module, 6)
    x = torch.randn(4, 2, 3)
    out = wrapped(x)
    assert seen[0].shape == (6, 2, 3) and torch.equal(seen[0][:4], x) and not seen[0][4:].any()
    torch.testing.assert_close(out, x.cumsum(0))
    with pytest.raises(ValueError, match="more than the fixed length -T 6"):
        wrapped(torch.randn(7, 2, 3))


@pytest.mark.skipif("tebn" not in norms.names(), reason="tebn not registered")
def test_tebn_sees_the_padded_sequence_neurons_do_not():
    """The survey's AutoPadding(126, TEBN): TEBN's batch statistics include the zero steps up to T, the neurons
    run on the batch length only."""
    net = build("lif", "tebn")
    norm_wrapper = net.features[1]
    assert isinstance(norm_wrapper, shd_model.PadToLength) and norm_wrapper.T == T_FIXED
    assert not isinstance(net.features[2], shd_model.PadToLength)
    x = torch.rand(5, 4, 140)
    reset_net(net)
    z = net.features[0](x)
    padded = torch.cat([z, z.new_zeros(T_FIXED - 5, 4, 256)])
    reset_net(net)
    expected = norm_wrapper.module(padded)[:5]
    reset_net(net)
    torch.testing.assert_close(norm_wrapper(z), expected)


def test_padding_does_not_change_a_sample_in_eval():
    net = build().eval()
    torch.manual_seed(1)
    long, short = torch.rand(10, 1, 140) * 4, torch.rand(6, 1, 140) * 4
    batch = torch.zeros(10, 2, 140)
    batch[:, 0], batch[:6, 1] = long[:, 0], short[:, 0]
    lengths = {"lengths": torch.tensor([10, 6])}
    with torch.no_grad():
        m_batch = shd_model.decode(forward(net, batch), lengths)
        m_short = shd_model.decode(forward(net, short), {"lengths": torch.tensor([6])})
        m_long = shd_model.decode(forward(net, long), {"lengths": torch.tensor([10])})
        unmasked = shd_model.decode(forward(net, batch), lengths, mask_padding=False)
    torch.testing.assert_close(m_batch[1], m_short[0])
    torch.testing.assert_close(m_batch[0], m_long[0])
    torch.testing.assert_close(m_short.sum(), torch.tensor(6.0))
    assert not torch.allclose(unmasked[1], m_short[0])  # padding would matter without the mask


def test_leaky_readout_closed_form():
    x = torch.randn(9, 2, 20)
    k = 1 - 1 / 1.005
    ref = torch.stack([sum(k ** (t - s) * x[s] for s in range(t + 1)) for t in range(9)])
    torch.testing.assert_close(shd_model.LeakyReadout(1.005)(x), ref)


def test_sequence_dropout_one_mask_per_sequence():
    drop = shd_model.SequenceDropout(0.4)
    torch.manual_seed(0)
    y = drop(torch.ones(5, 64, 256))
    assert torch.equal(y, y[:1].expand_as(y))
    torch.testing.assert_close(y.unique(), torch.tensor([0.0, 1 / 0.6]))
    assert abs((y[0] == 0).float().mean().item() - 0.4) < 0.03
    torch.testing.assert_close(drop(torch.ones(2, 64, 256)), y[:2])  # step-by-step calls reuse the mask
    drop.reset()
    assert not torch.equal(drop(torch.ones(5, 64, 256)), y)
    assert torch.equal(drop.eval()(y), y)


def test_loss_matches_survey_one_hot_cross_entropy():
    out, y = torch.randn(8, 4, 20), torch.tensor([0, 3, 19, 7])
    m = torch.softmax(out, dim=2).sum(0)
    expected = torch.nn.CrossEntropyLoss()(m, F.one_hot(y, 20).float())
    torch.testing.assert_close(shd_model.sum_softmax_loss(shd_model.decode(torch.softmax(out, 2)), y), expected)


def test_param_groups_default_and_survey_quirk():
    net = build()
    linear, rest = shd_model.param_groups(net, 1e-5)
    assert linear["weight_decay"] == 1e-5 and rest["weight_decay"] == 0.0
    assert sum(p.numel() for p in linear["params"]) == 140 * 256 + 256 * 256 + 256 * 20 == 106_496
    assert sum(p.numel() for g in (linear, rest) for p in g["params"]) == sum(p.numel() for p in net.parameters())
    net.features[2].extra_param = torch.nn.Parameter(torch.ones(3))  # stands for a learnable neuron parameter
    quirk = shd_model.param_groups(net, 1e-5, survey_quirk=True)
    assert sum(p.numel() for g in quirk for p in g["params"]) == 107_520  # survey's analytic count (LIF+BN)
    assert all(p is not net.features[2].extra_param for g in quirk for p in g["params"])
    assert any(p is net.features[2].extra_param for p in shd_model.param_groups(net, 1e-5)[1]["params"])


@pytest.mark.skipif("tebn" not in norms.names(), reason="tebn not registered")
def test_survey_quirk_leaves_tebn_untrained():
    net = build("if", "tebn")
    linear, rest = shd_model.param_groups(net, 1e-5, survey_quirk=True)
    assert rest["params"] == [] and len(linear["params"]) == 3
    assert len(shd_model.param_groups(net, 1e-5)[1]["params"]) > 0


def test_needs_fixed_T_flag():
    net = build()
    assert not shd_model.needs_fixed_T(net)
    net.features[2].needs_fixed_T = True
    assert shd_model.needs_fixed_T(net)
