import pytest
import torch
from torch import nn

from cf10 import model as cf10_model
from cf10 import train
from common.neuron import IFNode, LIFNode
from common.state import reset_net


def parse(*argv):
    return train.build_parser().parse_args(["--device", "cpu", *argv])


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_the_survey():
    args = parse("--channels", "128")
    assert n_params(cf10_model.build(args, "snn")) == 17_542_026
    assert n_params(cf10_model.build(args, "ann")) == 17_542_026


def test_snn_topology_and_shapes():
    args = parse("--channels", "8", "-T", "3", "--neuron", "if")
    net = cf10_model.build(args, "snn")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and all(c.bias is None for c in convs)
    assert [c.in_channels for c in convs] == [3, 8, 8, 8, 8, 8]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 64, 8 * 16), (8 * 16, 10)]
    acts = net.activation_layers()
    assert len(acts) == 7 and all(isinstance(a, IFNode) for a in acts)
    x = torch.randn(2, 3, 32, 32)
    x_seq = train.repeat_over_time(x, 3)
    assert x_seq.shape == (3, 2, 3, 32, 32) and torch.equal(x_seq[2], x)
    out = net(x_seq)
    assert out.shape == (3, 2, 10)
    assert torch.equal(train.mean_over_time(out), out.mean(0))
    reset_net(net)


def test_default_neuron_is_the_survey_lif():
    net = cf10_model.build(parse("--channels", "4"), "snn")
    lif = net.activation_layers()[0]
    assert isinstance(lif, LIFNode)
    assert (lif.tau, lif.v_threshold, lif.v_reset, lif.detach_reset, lif.surrogate.name) == (2.0, 1.0, 0.0, True,
                                                                                             "atan")


def test_ann_twin_exposes_relu_features():
    net = cf10_model.build(parse("--channels", "4"), "ann")
    acts = net.activation_layers()
    assert len(acts) == 7 and all(isinstance(a, nn.ReLU) for a in acts)
    features = []
    hooks = [a.register_forward_hook(lambda m, i, o: features.append(o)) for a in acts]
    out = net(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 10)
    assert [f.shape[1:] for f in features] == [(4, 32, 32)] * 3 + [(4, 16, 16)] * 3 + [(64,)]


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_unknown_kind_is_a_clear_error(kind):
    with pytest.raises(ValueError, match="valid model kinds: ann, snn, tandem"):
        cf10_model.build(parse(), kind + "x")


def test_tandem_kind_fuses_every_block():
    from common.methods.tandem import TandemLayer

    args = parse("--channels", "128", "--method", "tandem")
    net = cf10_model.build(args, "tandem")
    assert sum(isinstance(m, TandemLayer) for m in net) == 7
    assert n_params(net) == 17_542_026 + 2 * 2048  # + the BatchNorm1d after the hidden Linear
