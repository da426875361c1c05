"""Gen1 SOP in the survey's convention (``--sop-mode gen1_survey``): the norm-input rates and counts by hand."""
import pytest
import torch
import torch.nn.functional as F

from common.errors import UsageError
from common.neuron import NeuronConfig
from common.sop import SopOptions, count_sops
from common.state import reset_net
from common.task import identity, keep_outputs
from SFOD import model as sfod_model
from SFOD import sop as gen1_sop
from SFOD import train as sfod_train


class NoScore:
    """An evaluator that scores nothing (the counts are under test)."""

    best_metric = "none"

    def update(self, outputs, targets, extras) -> None:
        pass

    def compute(self) -> dict:
        return {}


def test_sop_survey_convention_on_a_small_frame():
    torch.manual_seed(0)
    m = sfod_model.SpikingSSD(NeuronConfig(name="lif", T=2), "bn", 2, image_size=(64, 80))
    x = (torch.rand(2, 3, 4, 64, 80) < 0.3).float() * 2
    options = SopOptions(gen1_sop.MODE, **gen1_sop.OPTIONS)
    result = count_sops(m, [(x, [{}] * 3)], identity, keep_outputs, options, evaluator=NoScore())
    layers = {layer["name"]: layer for layer in result["per_layer"]}
    # one (norm, conv) pair per conv: stem, 2 per dense layer, 3 transitions, 6 extras, 12 head branches
    assert len(layers) == 1 + 2 * (6 + 12 + 24 + 16) + 3 + 6 + 12
    assert len(layers) == sum(isinstance(mod, torch.nn.Conv2d) for mod in m.modules())
    assert result["n_samples"] == 3 and m.training  # mode restored
    assert all(layer["spiking"] for layer in layers.values()) and result["first_layer_flop_m"] == 0
    # stem: the norm sees the zero-padded event counts; conv 3x3 4->32 stride 2 -> 32x40, bias term counted
    stem = layers["backbone.stem_unit.conv.0"]
    assert stem["rate_from"] == "backbone.stem_unit.norm"
    assert stem["rate"] == pytest.approx(F.pad(x, (1, 1, 1, 1)).mean().item(), rel=1e-6)
    assert stem["ops_per_step"] == (9 * 4 * 32 + 32) * 32 * 40
    # first classification head branch: the padded rate map of transition 1 (8x10), conv 3x3 64 -> 2 * 4
    m.eval()
    reset_net(m)
    with torch.no_grad():
        rate_map = m.feature_maps(x)[0]
    head = layers["cls_head.0.2"]
    assert head["rate_from"] == "cls_head.0.1" and head["steps_per_sample"] == 1  # once per sample, on the rates
    assert head["rate"] == pytest.approx(F.pad(rate_map, (1, 1, 1, 1)).mean().item(), rel=1e-5)
    assert head["ops_per_step"] == (9 * 64 * 8 + 8) * 8 * 10
    total = sum(layer["rate"] * layer["ops_per_step"] for layer in layers.values()) / 1e6
    assert result["sop_m_per_step"] == pytest.approx(total)
    assert all(layer["rate_from"].endswith(".norm") for name, layer in layers.items() if "_head." not in name)


@pytest.mark.parametrize("norm", ["tebn", "osr"])
def test_norm_input_rates_through_the_other_norms(norm):
    """TEBN and OSR are the norms too: every conv's rate is still its norm's input (the stem's: the counts)."""
    m = sfod_model.SpikingSSD(NeuronConfig(name="lif", T=2), norm, 2, image_size=(64, 80))
    x = (torch.rand(2, 1, 4, 64, 80) < 0.3).float()
    options = SopOptions(gen1_sop.MODE, **gen1_sop.OPTIONS)
    result = count_sops(m, [(x, [{}])], identity, keep_outputs, options, evaluator=NoScore())
    stem = result["per_layer"][0]
    assert stem["rate_from"] == "backbone.stem_unit.norm"
    assert stem["rate"] == pytest.approx(F.pad(x, (1, 1, 1, 1)).mean().item(), rel=1e-6)
    assert all(layer["rate_from"] != layer["name"] for layer in result["per_layer"])


def test_the_sop_mode_of_the_task():
    parser = sfod_train.build_parser()
    assert parser.parse_args([]).sop_mode == "gen1_survey"
    with pytest.raises(UsageError, match="valid: gen1_survey"):
        parser.parse_args(["--sop-mode", "corrected"])  # own-input rates of the convs are normalised values
