"""SOP of the COCO model (``coco/sop.py`` conventions on ``common.sop``): per-layer counts by hand in both modes at
the nominal 640 shapes, the survey's printed "flops", and the measured rates."""
from __future__ import annotations

import pytest
import torch

from coco import model as M
from coco import sop as coco_sop
from coco import train as coco_train
from common.errors import UsageError
from common.sop import SopOptions, count_sops
from common.task import keep_outputs, repeat_over_time
from tests.coco.test_coco_model import CONVS, DETECT
from tests.sfod.test_sop import NoScore

# output side of every conv (module order) at 640: ConcatRes shortcuts run before their max-pool
SIDES = [320, 160, 160, 160, 80, 80, 160, 40, 40, 80, 20, 20, 40, 20, 20, 20, 20, 20, 20, 20, 20, 20, 40, 40, 40]
DETECT_SIDES = [40, 20]


def _count(model, mode: str, images, T: int, img_size: int) -> dict:
    loader = [(x, [{}] * len(x), {}) for x in images]
    return count_sops(model, loader, lambda x: repeat_over_time(x, T), keep_outputs,
                      SopOptions(mode, **coco_sop.options(img_size)), evaluator=NoScore())


@pytest.fixture(scope="module")
def at_640():
    """Both modes of a T = 1 model, rates from a small image, operation counts at 640 x 640."""
    torch.manual_seed(0)
    model = M.build_model(M.neuron_config("lif", T=1), "bn", T=1, img_size=640)
    images = [torch.rand(1, 3, 64, 64)]
    return {mode: _count(model, mode, images, 1, 640) for mode in coco_sop.MODES}


def test_shapes_and_float_input_layers(at_640):
    result = at_640["corrected"]
    names = [layer["name"] for layer in result["per_layer"]]
    assert len(names) == 27
    assert [tuple(layer["out_shape"]) for layer in result["per_layer"]] == [
        (co, s, s) for (_, _, co), s in zip(CONVS, SIDES)] + [(255, s, s) for s in DETECT_SIDES]
    assert names[0] == "stem.0.0" and names[-2:] == ["detect.m.0.0", "detect.m.1.0"]
    assert result["float_layers"] == [names[0], names[-2], names[-1]] and result["first_layer"] == names[0]


def test_corrected_and_survey_counts(at_640):
    spiking = list(zip(CONVS, SIDES))[1:]
    corrected = [k * k * ci * co * s * s for (k, ci, co), s in spiking]
    inflated = [(k * k * ci * co + co) * co * s * s for (k, ci, co), s in spiking]
    for mode, expected in (("corrected", corrected), ("coco_survey", inflated)):
        result = at_640[mode]
        layers = [layer for layer in result["per_layer"] if layer["spiking"]]
        assert [layer["ops_per_step"] for layer in layers] == expected
        per_step = sum(layer["rate"] * f for layer, f in zip(layers, expected))
        assert result["sop_m_per_step"] == pytest.approx(per_step / 1e6)
        assert result["sop_m_per_sample"] == pytest.approx(per_step / 1e6)  # T = 1
    stem_and_head = 7 * 7 * 3 * 64 * 320 ** 2 + sum(ci * co * s * s for (ci, co), s in zip(DETECT, DETECT_SIDES))
    assert at_640["corrected"]["float_input_flop_m_per_step"] == pytest.approx(stem_and_head / 1e6)
    assert at_640["corrected"]["first_layer_flop_m"] == pytest.approx(7 * 7 * 3 * 64 * 320 ** 2 / 1e6)
    survey = at_640["coco_survey"]
    # spec §3.7: 40,370.176 M (L10 shortcut) + 26,738.28 M + 13,343.13 M (Detect), printed for every run
    assert [layer["ops_per_step"] / 1e6 for layer in survey["per_layer"][-3:]] == pytest.approx(
        [40_370.176, 26_738.28, 13_343.13], abs=1e-9)
    assert survey["extras"]["flops_m"] == pytest.approx(80_451.586, abs=1e-6)
    assert at_640["corrected"]["extras"] == {}


def test_rates_are_spike_fractions_over_rectangular_batches():
    torch.manual_seed(0)
    model = M.build_model(M.neuron_config("if", T=2), "bn", T=2, img_size=64)
    images = [torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 96)]  # rectangular batches too
    result = _count(model, "corrected", images, 2, 64)
    assert result["n_samples"] == 3
    layers = result["per_layer"]
    pixels = torch.cat([x.flatten() for x in images])
    assert layers[0]["rate"] == pytest.approx(pixels.mean().item(), rel=1e-6)  # stem: the image itself
    assert layers[0]["out_shape"] == [64, 32, 32]  # counted at the nominal 64 x 64, not the 64 x 96 batch
    assert all(0.0 <= layer["rate"] <= 1.0 for layer in layers if layer["spiking"])
    assert all(layer["steps_per_sample"] == 2 for layer in layers)
    assert result["sop_m_per_sample"] == pytest.approx(2 * result["sop_m_per_step"])


def test_the_sop_modes_of_the_task():
    """``paper`` is the CIFAR/SHD convention: the COCO script offers ``corrected`` and ``coco_survey`` only."""
    parser = coco_train.build_parser()
    assert parser.parse_args([]).sop_mode == "corrected"
    assert parser.parse_args(["--sop-mode", "coco_survey"]).sop_mode == "coco_survey"
    with pytest.raises(UsageError, match="valid: corrected, coco_survey"):
        parser.parse_args(["--sop-mode", "paper"])
