"""SOP of the COCO model: per-layer counts by hand in both conventions, the survey's printed "flops", rates."""
from __future__ import annotations

import pytest
import torch

from coco import model as M
from coco import sop
from tests.coco.test_coco_model import CONVS, DETECT

# output side of every conv (module order) at 640: ConcatRes shortcuts run before their max-pool
SIDES = [320, 160, 160, 160, 80, 80, 160, 40, 40, 80, 20, 20, 40, 20, 20, 20, 20, 20, 20, 20, 20, 20, 40, 40, 40]
DETECT_SIDES = [40, 20]


@pytest.fixture(scope="module")
def model_and_shapes():
    model = M.build_model(M.neuron_config("lif", T=1), "bn", T=1, img_size=640)
    return model, sop.output_shapes(model, 640, T=1)


def test_shapes_and_float_input_layers(model_and_shapes):
    model, shapes = model_and_shapes
    names = [name for name, _ in sop.conv_layers(model)]
    assert len(names) == 27
    assert [shapes[n] for n in names] == [(co, s, s) for (_, _, co), s in zip(CONVS, SIDES)] + [
        (255, s, s) for s in DETECT_SIDES]
    assert sop.float_input_convs(model) == {names[0], names[-2], names[-1]}


def test_corrected_and_paper_counts_with_unit_rates(model_and_shapes):
    model, shapes = model_and_shapes
    rates = dict.fromkeys(shapes, 1.0)
    spiking = list(zip(CONVS, SIDES))[1:]
    corrected = sum(k * k * ci * co * s * s for (k, ci, co), s in spiking)
    inflated = sum((k * k * ci * co + co) * co * s * s for (k, ci, co), s in spiking)
    got = sop.sop_report(model, rates, shapes, "corrected", T=5)
    assert got["sop_m_per_step"] == pytest.approx(corrected / 1e6)
    assert got["sop_m_per_sample"] == pytest.approx(5 * corrected / 1e6)
    stem_and_head = 7 * 7 * 3 * 64 * 320 ** 2 + sum(ci * co * s * s for (ci, co), s in zip(DETECT, DETECT_SIDES))
    assert got["float_input_mac_m_per_step"] == pytest.approx(stem_and_head / 1e6)
    paper = sop.sop_report(model, rates, shapes, "paper", T=5)
    assert paper["sop_m_per_step"] == pytest.approx(inflated / 1e6)
    # spec §3.7: 40,370.176 M (L10 shortcut) + 26,738.28 M + 13,343.13 M (Detect), printed for every run
    assert paper["flops_m"] == pytest.approx(80_451.586, abs=1e-6)


def test_sop_scales_with_measured_rates(model_and_shapes):
    model, shapes = model_and_shapes
    names = [name for name, _ in sop.conv_layers(model)]
    rates = dict.fromkeys(names, 0.0)
    rates[names[-3]] = 0.25  # only the L10 shortcut conv spikes
    got = sop.sop_report(model, rates, shapes, "paper", T=5)
    assert got["sop_m_per_step"] == pytest.approx(0.25 * 40_370.176)


def test_input_rates_are_spike_fractions():
    torch.manual_seed(0)
    model = M.build_model(M.neuron_config("if", T=2), "bn", T=2, img_size=64)
    images = [torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 96)]  # rectangular batches too
    loader = [(x, None, None) for x in images]
    rates, n = sop.input_rates(model, loader, lambda x: M.repeat_over_time(x, 2), "cpu")
    assert n == 3
    names = [name for name, _ in sop.conv_layers(model)]
    pixels = torch.cat([x.flatten() for x in images])
    assert rates[names[0]] == pytest.approx(pixels.mean().item(), rel=1e-6)  # stem: the image itself
    spiking = [rates[n_] for n_ in names if n_ not in sop.float_input_convs(model)]
    assert all(0.0 <= r <= 1.0 for r in spiking)
