import math

import pytest
import torch

from common.neuron import NeuronConfig
from common.state import reset_net
from common.task import mean_over_time
from SFOD import model as sfod_model
from SFOD.detection import SSDLoss

LIF = NeuronConfig(name="lif", T=2)


def _hand_param_count(num_classes=2):
    """Backbone + extras + head parameters with BN (2C per norm) and parameter-free neurons, by the formulas."""
    total = 2 * 4 + 9 * 4 * 32  # stem: BN(4), conv3x3 4->32
    c = 32
    for i, n in enumerate((6, 12, 24, 16)):
        for j in range(n):  # dense layer: BN(c) + 1x1 c->64 + BN(64) + 3x3 64->16
            total += 2 * (c + 16 * j) + 64 * (c + 16 * j) + 2 * 64 + 9 * 64 * 16
        c += 16 * n
        if i < 3:  # transition: BN(c) + 1x1 c->c/2
            total += 2 * c + c * (c // 2)
            c //= 2
    backbone = total
    for c_in, c_mid, c_out in ((512, 256, 640), (640, 160, 320), (320, 160, 320)):
        total += 2 * c_in + c_in * c_mid + 2 * c_mid + 9 * c_mid * c_out
    extras = total - backbone
    for ch, a in zip((64, 128, 512, 640, 320, 320), (4, 6, 6, 6, 4, 4)):
        total += 2 * (2 * ch) + 9 * ch * a * (num_classes + 4)  # two BNs, cls and reg convs
    return backbone, extras, total


def test_parameter_count_and_anchors_full_size():
    m = sfod_model.SpikingSSD(NeuronConfig(name="lif", T=5), "bn", 5)
    backbone, extras, total = _hand_param_count()
    assert (backbone, extras, total) == (1_757_096, 2_684_928, 5_016_744)
    assert sum(p.numel() for p in m.backbone.parameters()) == backbone
    assert sum(p.numel() for p in m.extras.parameters()) == extras
    assert sum(p.numel() for p in m.parameters()) == total
    assert m.map_sizes == [(30, 38), (15, 19), (7, 9), (4, 5), (2, 3), (1, 2)]
    assert m.map_channels == [64, 128, 512, 640, 320, 320]
    n_anchors = 30 * 38 * 4 + 15 * 19 * 6 + 7 * 9 * 6 + 4 * 5 * 6 + 2 * 3 * 4 + 1 * 2 * 4
    assert m.anchors.shape == (n_anchors, 4) == (6800, 4)
    # first location of the 30x38 map: centre (0.5 / 38 * 304, 0.5 / 30 * 240) = (4, 4); scales 0.05, sqrt(.05 * .2),
    # then ratio 2: (0.05 sqrt 2, 0.05 / sqrt 2), (0.05 / sqrt 2, 0.05 sqrt 2); sizes relative to (304, 240)
    s, r = 0.05, math.sqrt(2)
    wh = [(s, s), (math.sqrt(s * 0.2),) * 2, (s * r, s / r), (s / r, s * r)]
    expected = [[4 - w * 152, 4 - h * 120, 4 + w * 152, 4 + h * 120] for w, h in wh]
    torch.testing.assert_close(m.anchors[:4], torch.tensor(expected), rtol=0, atol=1e-4)
    assert "anchors" not in m.state_dict()
    for conv in (mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)):
        assert conv.bias is None


def test_full_size_forward_batch1_T1():
    m = sfod_model.SpikingSSD(NeuronConfig(name="lif", T=1), "bn", 1).eval()
    with torch.no_grad():
        cls, reg = m(torch.rand(1, 1, 4, 240, 304).round())
    assert cls.shape == (1, 6800, 2) and reg.shape == (1, 6800, 4)


# the survey's seven Gen1 variants (IF, LIF, CLIF, Sliding PSN, TEBN, OSR, BlockALIF)
VARIANTS = [("if", "bn"), ("lif", "bn"), ("clif", "bn"), ("sliding_psn", "bn"), ("lif", "tebn"),
            ("online_lif", "osr"), ("blockalif", "bn")]


@pytest.mark.parametrize("neuron, norm", VARIANTS)
def test_every_variant_trains_on_a_small_frame(neuron, norm):
    torch.manual_seed(0)
    cfg = sfod_model.survey_neuron_config(NeuronConfig(name=neuron, T=2))
    m = sfod_model.SpikingSSD(cfg, norm, 2, image_size=(64, 80))
    assert m.map_sizes == [(8, 10), (4, 5), (2, 2), (1, 1), (1, 1), (1, 1)]
    x = (torch.rand(2, 2, 4, 64, 80) < 0.3).float()
    targets = [{"boxes": torch.tensor([[5.0, 5, 40, 30]]), "labels": torch.tensor([0])},
               {"boxes": torch.tensor([[30.0, 20, 70, 60]]), "labels": torch.tensor([1])}]
    loss = SSDLoss(m.anchors)(m(x), targets)
    loss.backward()
    assert torch.isfinite(loss)
    # near the loss the gradient is finite; deep in the backbone it can blow up at init on such a tiny frame
    # (dozens of pre-activation norms over silent channels), see docs/sfod.md
    assert all(torch.isfinite(p.grad).all() for p in m.cls_head.parameters())
    assert m.backbone.stem_unit.conv[0].weight.grad is not None
    unused = [n for n, p in m.named_parameters() if p.grad is None]
    assert not unused
    reset_net(m)


def test_survey_neuron_config():
    cfg = sfod_model.survey_neuron_config(NeuronConfig(name="blockalif"))
    assert (cfg.surrogate, cfg.sg_alpha, cfg.extra) == ("fast_sigmoid", 10.0, {"latency": 1})
    cfg = sfod_model.survey_neuron_config(NeuronConfig(name="sliding_psn", extra={"k": "2"}))
    assert cfg.extra == {"k": "2"}
    assert sfod_model.survey_neuron_config(NeuronConfig(name="sliding_psn")).extra == {"k": 3}
    assert sfod_model.survey_neuron_config(NeuronConfig(name="clif")).extra == {}


def test_ncars_classifier_and_rate_mse():
    m = sfod_model.NCarsClassifier(LIF, "bn", 2)
    out = m((torch.rand(2, 3, 4, 64, 64) < 0.3).float())
    assert out.shape == (2, 3, 2)
    counts = torch.tensor([[[0.0, 2.0]], [[1.0, 4.0]]])  # [T=2, N=1, 2] -> rate (0.5, 3.0)
    rate = mean_over_time(counts)
    assert sfod_model.rate_mse_loss(rate, torch.tensor([1])).item() == pytest.approx((0.5 ** 2 + 2.0 ** 2) / 2)


def test_backbone_transfer_drops_size_dependent_blockalif_parameters():
    cfg = sfod_model.survey_neuron_config(NeuronConfig(name="blockalif", T=2))
    pre = sfod_model.NCarsClassifier(cfg, "bn", 2)
    det = sfod_model.SpikingSSD(cfg, "bn", 2, image_size=(96, 96))
    keep, dropped = sfod_model.backbone_state(pre.state_dict(), det)
    assert dropped and all(k.split(".")[-1] in ("beta_raw", "p_raw", "b_raw") for k in dropped)
    assert "backbone.stem_unit.conv.0.weight" in keep and not any(k.startswith("classifier") for k in keep)
    missing, unexpected = det.load_state_dict(keep, strict=False)
    assert not unexpected and set(dropped) <= set(missing)
    torch.testing.assert_close(det.backbone.stem_unit.conv[0].weight, pre.backbone.stem_unit.conv[0].weight)
