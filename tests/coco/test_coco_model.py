"""EMS-ResNet10 spiking YOLO: exact size, initialisation, shapes for every variant, state reset."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from coco import model as M
from common.norm import OSR
from common.state import reset_net
from common.task import repeat_over_time

# (kernel, C_in, C_out) of every conv in module order, written from the survey's resnet10.yaml by hand
CONVS = [
    (7, 3, 64),                                        # 0 Conv_1
    (3, 64, 64), (3, 64, 64), (1, 64, 64),             # 1 BasicBlock_2 s2 (shortcut 1x1)
    (3, 64, 128), (3, 128, 128), (1, 64, 64),          # 2 Concat_res2 (shortcut to c2 - c1 = 64)
    (3, 128, 256), (3, 256, 256), (1, 128, 128),       # 3
    (3, 256, 512), (3, 512, 512), (1, 256, 256),       # 4
    (3, 512, 1024), (3, 1024, 256), (1, 512, 256),     # 5 BasicBlock_1 (hidden 1024)
    (3, 256, 512), (3, 512, 512), (1, 256, 512),       # 6
    (1, 256, 128), (1, 128, 128), (1, 256, 128),       # 7 (1x1 kernels)
    (3, 384, 256), (3, 256, 256), (1, 384, 256),       # 10
]
DETECT = [(256, 255), (512, 255)]


def _model(neuron="lif", norm="bn", T=2, img_size=64, **kw):
    return M.build_model(M.neuron_config(neuron, T=T, **kw), norm, T=T, img_size=img_size)


def test_parameter_count_is_exact():
    convs = sum(k * k * ci * co for k, ci, co in CONVS)
    norms = sum(2 * co for _, _, co in CONVS)  # weight + bias after every conv
    detect = sum(ci * co + co for ci, co in DETECT)
    assert (convs, norms, detect) == (17_351_872, 13_440, 196_350)  # spec: 17.35 M, 13.4 k, 0.196 M
    model = _model(img_size=640, T=5)
    assert sum(p.numel() for p in model.parameters()) == convs + norms + detect == 17_561_662
    got = [(m.kernel_size[0], m.in_channels, m.out_channels) for n, m in model.named_modules()
           if isinstance(m, nn.Conv2d) and not n.startswith("detect")]
    assert got == CONVS


def test_norm_inits_and_detect_bias():
    model = _model()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == len(CONVS)
    assert all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)
    second = {id(block.residual[5][0]) for block in model.modules() if isinstance(block, (M.BasicBlock, M.ConcatRes))}
    for m in bns:
        assert torch.all(m.weight == (0.1 if id(m) in second else 0.5)) and torch.all(m.bias == 0)
    assert len(second) == 8
    for conv, stride in zip(model.detect.m, (16, 32)):
        bias = conv[0].bias.view(3, 85)
        bound = 1 / math.sqrt(conv[0].in_channels)  # PyTorch's default bias init is U(-bound, bound)
        obj = math.log(8 / (640 / stride) ** 2)
        cls = math.log(0.6 / (80 - 0.999999))
        assert (bias[:, 4] - obj).abs().max() <= bound and (bias[:, 5:] - cls).abs().max() <= bound
    assert model.detect.anchors.tolist() == [[[10, 14], [23, 27], [37, 58]], [[81, 82], [135, 169], [344, 319]]]


def test_osr_gamma_gets_the_scale_init():
    model = _model("online_lif", "osr")
    osr = [m for m in model.modules() if isinstance(m, OSR)]
    assert len(osr) == len(CONVS) and {round(float(m.gamma.detach()[0]), 6) for m in osr} == {0.5, 0.1}


@pytest.mark.parametrize("neuron, norm", [("if", "bn"), ("lif", "tebn"), ("clif", "bn"), ("sliding_psn", "bn"),
                                          ("online_lif", "osr"), ("if", "osr")])
def test_variants_run_on_rectangular_inputs_and_backpropagate(neuron, norm):
    torch.manual_seed(0)
    T, model = 2, _model(neuron, norm)
    x = torch.rand(2, 3, 64, 96)
    out = M.mean_over_time(model(repeat_over_time(x, T)))
    assert [tuple(o.shape) for o in out] == [(2, 3, 4, 6, 85), (2, 3, 2, 3, 85)]
    sum(o.float().square().mean() for o in out).backward()
    assert model.stem[0][0].weight.grad.abs().sum() > 0
    reset_net(model)


def test_sliding_psn_uses_k3():
    model = _model("sliding_psn")
    psn = next(m for m in model.modules() if type(m).__name__ == "SlidingPSN")
    assert psn.k == 3


def test_state_is_reset_between_batches():
    torch.manual_seed(0)
    model = _model("if", T=3)  # training mode: BN on batch statistics, so only the neuron state differs
    x = repeat_over_time(torch.rand(1, 3, 64, 64), 3)
    with torch.no_grad():
        a = model(x)[0]
        b = model(x)[0]  # continues from the previous membrane
        reset_net(model)
        c = model(x)[0]
    torch.testing.assert_close(a, c)
    assert not torch.equal(a, b)


def test_blockalif_needs_the_build_size():
    model = _model("blockalif", img_size=64)
    x = torch.rand(1, 3, 64, 64)
    assert model(repeat_over_time(x, 2))[0].shape == (2, 1, 3, 4, 4, 85)
    reset_net(model)
    with pytest.raises(ValueError, match="built for features"):
        model(repeat_over_time(torch.rand(1, 3, 64, 96), 2))


@pytest.mark.parametrize("neuron, norm, unoptimised_suffixes", [
    ("lif", "bn", set()), ("lif", "tebn", {"p"}), ("blockalif", "bn", {"beta_raw", "p_raw", "b_raw"}),
    ("sliding_psn", "bn", set()), ("online_lif", "osr", set())])
def test_survey_param_groups(neuron, norm, unoptimised_suffixes):
    from coco.param_groups import survey_param_groups, unoptimised

    model = _model(neuron, norm)
    groups = {g["name"]: g for g in survey_param_groups(model, 5e-4)}
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["bias"]["weight_decay"] == 0
    n_norm, n_psn = len(CONVS), 24 if neuron == "sliding_psn" else 0  # 24 neurons: one before every spiking conv
    assert len(groups["no_decay"]["params"]) == n_norm  # BN weights or OSR gammas
    assert len(groups["decay"]["params"]) == len(CONVS) + 2 + n_psn  # convs, Detect, PSN taps
    assert len(groups["bias"]["params"]) == n_norm + 2 + n_psn
    assert {name.rsplit(".", 1)[-1] for name in unoptimised(model, list(groups.values()))} == unoptimised_suffixes
