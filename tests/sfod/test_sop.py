import pytest
import torch
import torch.nn.functional as F

from common.neuron import NeuronConfig
from common.state import reset_net
from SFOD import model as sfod_model
from SFOD.sop import count_sops


def test_sop_survey_convention_on_a_small_frame():
    torch.manual_seed(0)
    m = sfod_model.SpikingSSD(NeuronConfig(name="lif", T=2), "bn", 2, image_size=(64, 80))
    x = (torch.rand(2, 3, 4, 64, 80) < 0.3).float() * 2
    result = count_sops(m, [(x, None)])
    layers = {layer["name"]: layer for layer in result["per_layer"]}
    # one (norm, conv) pair per conv: stem, 2 per dense layer, 3 transitions, 6 extras, 12 head branches
    assert len(layers) == 1 + 2 * (6 + 12 + 24 + 16) + 3 + 6 + 12
    assert len(layers) == sum(isinstance(mod, torch.nn.Conv2d) for mod in m.modules())
    assert result["n_samples"] == 3 and m.training  # mode restored
    # stem: the norm sees the zero-padded event counts; conv 3x3 4->32 stride 2 -> 32x40, bias term counted
    stem = layers["backbone.stem_unit"]
    assert stem["rate"] == pytest.approx(F.pad(x, (1, 1, 1, 1)).mean().item(), rel=1e-6)
    assert stem["ops_per_step"] == (9 * 4 * 32 + 32) * 32 * 40
    # first classification head branch: the padded rate map of transition 1 (8x10), conv 3x3 64 -> 2 * 4
    m.eval()
    reset_net(m)
    with torch.no_grad():
        rate_map = m.feature_maps(x)[0]
    head = layers["cls_head.0"]
    assert head["rate"] == pytest.approx(F.pad(rate_map, (1, 1, 1, 1)).mean().item(), rel=1e-5)
    assert head["ops_per_step"] == (9 * 64 * 8 + 8) * 8 * 10
    total = sum(layer["rate"] * layer["ops_per_step"] for layer in layers.values()) / 1e6
    assert result["sop_m_per_step"] == pytest.approx(total)
