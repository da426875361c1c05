r"""EMS-ResNet10 spiking YOLO (the survey's ``models/resnet10.yaml``) on time-first ``[T, N, 3, H, W]`` input.

Blocks (``sn`` = spiking neuron, ``conv``/``norm`` applied to every step; the block output is the sum of two
normalised, non-spiking branches -- the "membrane shortcut"; norm scales initialised to 0.5, or 0.1 after a block's
second conv; BN eps 1e-3, momentum 0.03)::

    Conv1(c1, c2, k, s)         norm(conv_k,s(x))                                            (no neuron: image in)
    BasicBlock(c1, c2, k, s, m) R(x) + S(x), R = norm.1(conv_k(sn(norm.5(conv_k,s(sn(x))))))  with hidden width m
                                S = norm.5(conv_1x1(sn(maxpool_s(x))))  if s != 1 or c1 != c2, else x
    ConcatRes(c1, c2, s)        R(x) + maxpool_s(cat[norm.5(conv_1x1: c1 -> c2-c1 (sn(x))), x])

Layers (output size at 640): 0 Conv1 3->64 7x7/2 (320) · 1 BasicBlock 64->64 /2 (160) · 2-4 ConcatRes 64->128->256->512,
each /2 (80, 40 = P4 source, 20) · 5 BasicBlock 512->256, hidden 1024 · 6 BasicBlock 256->512 (P5) ·
7 BasicBlock 256->128 1x1 (from 5) · 8 nearest up x2 · 9 cat(8, 3) = 384 ch · 10 BasicBlock 384->256 (P4) ·
Detect on (10, 6): a 1x1 conv with bias per level to ``3 x (nc + 5)`` channels, strides 16 and 32, YOLOv3-tiny
anchors. Output: per level ``[T, N, 3, H, W, nc + 5]`` raw logits; :func:`mean_over_time` averages them over T.
17,561,662 parameters with BN and parameter-free neurons (nc = 80).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from common.layers import MultiStep
from common.neuron import NeuronConfig, build_neuron
from common.norm import OSR, build_norm

ANCHORS = (((10, 14), (23, 27), (37, 58)), ((81, 82), (135, 169), (344, 319)))  # pixels, P4/16 then P5/32
STRIDES = (16, 32)
HIDDEN_L5 = 1024
BN_EPS, BN_MOMENTUM = 1e-3, 0.03  # yolov5 initialize_weights
BIAS_IMG_SIZE = 640  # the objectness prior assumes 8 objects per 640x640 image (as YOLOv5 hard-codes)

NeuronFactory = Callable[[tuple[int, ...]], nn.Module]  # features (C, H, W) -> neuron on [T, N, C, H, W]
NormFactory = Callable[[int, float], nn.Module]  # (channels, scale init) -> norm on [T, N, C, H, W]


def init_norm_scale(norm: nn.Module, scale: float) -> nn.Module:
    """Set the scale (BN weight / OSR gamma) of every normalisation inside ``norm`` to ``scale`` and BN eps/momentum
    to YOLOv5's values; fails for a norm type it does not know (so a new ``--norm`` is not silently left at 1)."""
    found = False
    for m in norm.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.fill_(scale)
            m.eps, m.momentum = BN_EPS, BN_MOMENTUM
            found = True
        elif isinstance(m, OSR):
            m.gamma.data.fill_(scale)
            found = True
    if not found:
        raise ValueError(f"cannot initialise the scale of norm {type(norm).__name__}")
    return norm


def conv(c1: int, c2: int, k: int = 1, s: int = 1, bias: bool = False) -> nn.Module:
    return MultiStep(nn.Conv2d(c1, c2, k, s, k // 2, bias=bias))


def _pool(s: int) -> nn.Module:
    return MultiStep(nn.MaxPool2d(s, s)) if s > 1 else nn.Identity()


class Conv1(nn.Sequential):
    def __init__(self, c1: int, c2: int, k: int, s: int, norm: NormFactory):
        super().__init__(conv(c1, c2, k, s), norm(c2, 0.5))


class Residual(nn.Sequential):
    """``norm.1(conv_k(sn(norm.5(conv_k,s(sn(x))))))`` with the hidden width ``mid``; ``hw`` = input (H, W)."""

    def __init__(self, c1: int, mid: int, c2: int, k: int, s: int, hw: tuple[int, int], neuron: NeuronFactory,
                 norm: NormFactory):
        out_hw = (hw[0] // s, hw[1] // s)
        super().__init__(neuron((c1, *hw)), conv(c1, mid, k, s), norm(mid, 0.5),
                         neuron((mid, *out_hw)), conv(mid, c2, k), norm(c2, 0.1))


class BasicBlock(nn.Module):
    """The survey's ``BasicBlock_2`` (``mid = c2``) and ``BasicBlock_1`` (``mid = 1024``, k = 3)."""

    def __init__(self, c1: int, c2: int, k: int, s: int, hw: tuple[int, int], neuron: NeuronFactory,
                 norm: NormFactory, mid: int | None = None):
        super().__init__()
        self.residual = Residual(c1, mid or c2, c2, k, s, hw, neuron, norm)
        if s != 1 or c1 != c2:
            pooled = (hw[0] // s, hw[1] // s)
            self.shortcut = nn.Sequential(_pool(s), neuron((c1, *pooled)), conv(c1, c2), norm(c2, 0.5))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class ConcatRes(nn.Module):
    """The survey's ``Concat_res2``: the shortcut widens by concatenating new channels before the input."""

    def __init__(self, c1: int, c2: int, s: int, hw: tuple[int, int], neuron: NeuronFactory, norm: NormFactory):
        super().__init__()
        self.residual = Residual(c1, c2, c2, 3, s, hw, neuron, norm)
        self.shortcut = nn.Sequential(neuron((c1, *hw)), conv(c1, c2 - c1), norm(c2 - c1, 0.5))
        self.pool = _pool(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.pool(torch.cat([self.shortcut(x), x], 2))


class Detect(nn.Module):
    """Per level i: ``conv_1x1(x_i) -> [T, N, na, H, W, nc + 5]``; biases start at objectness
    ``log(8 / (640 / stride)^2)`` and classes ``log(0.6 / (nc - 0.999999))`` on top of PyTorch's default init.
    ``anchors`` (pixels) and ``strides`` are buffers."""

    def __init__(self, nc: int, channels: Sequence[int], anchors=ANCHORS, strides=STRIDES):
        super().__init__()
        self.nc, self.no, self.na = nc, nc + 5, len(anchors[0])
        self.m = nn.ModuleList(conv(c, self.na * self.no, bias=True) for c in channels)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.float32))
        with torch.no_grad():
            for layer, s in zip(self.m, strides):
                b = layer[0].bias.view(self.na, self.no)
                b[:, 4] += math.log(8 / (BIAS_IMG_SIZE / s) ** 2)
                b[:, 5:] += math.log(0.6 / (nc - 0.999999))

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for layer, x in zip(self.m, xs):
            y = layer(x)
            T, N, _, H, W = y.shape
            out.append(y.view(T, N, self.na, self.no, H, W).permute(0, 1, 2, 4, 5, 3).contiguous())
        return out


class EMSResNet10(nn.Module):
    """The layer list of the module docstring; ``img_size`` only fixes the feature shapes handed to the neuron
    factory (per-neuron parameters, e.g. BlockALIF, are built for it)."""

    def __init__(self, neuron: NeuronFactory, norm: NormFactory, nc: int = 80, img_size: int = 640):
        super().__init__()
        s = img_size

        def hw(div: int) -> tuple[int, int]:
            return s // div, s // div

        self.stem = Conv1(3, 64, 7, 2, norm)
        self.layer1 = BasicBlock(64, 64, 3, 2, hw(2), neuron, norm)
        self.layer2 = ConcatRes(64, 128, 2, hw(4), neuron, norm)
        self.layer3 = ConcatRes(128, 256, 2, hw(8), neuron, norm)
        self.layer4 = ConcatRes(256, 512, 2, hw(16), neuron, norm)
        self.layer5 = BasicBlock(512, 256, 3, 1, hw(32), neuron, norm, mid=HIDDEN_L5)
        self.layer6 = BasicBlock(256, 512, 3, 1, hw(32), neuron, norm)
        self.layer7 = BasicBlock(256, 128, 1, 1, hw(32), neuron, norm)
        self.up = MultiStep(nn.Upsample(scale_factor=2, mode="nearest"))
        self.layer10 = BasicBlock(384, 256, 3, 1, hw(16), neuron, norm)
        self.detect = Detect(nc, (256, 512))

    def forward(self, x_seq: torch.Tensor) -> list[torch.Tensor]:
        p4_src = self.layer3(self.layer2(self.layer1(self.stem(x_seq))))
        x5 = self.layer5(self.layer4(p4_src))
        p5 = self.layer6(x5)
        p4 = self.layer10(torch.cat([self.up(self.layer7(x5)), p4_src], 2))
        return self.detect([p4, p5])


# Neuron options of the survey's COCO runs that differ from the registry defaults ("spsn3" = Sliding PSN, k = 3).
SURVEY_NEURON_OPTIONS = {"sliding_psn": {"k": 3}}


def neuron_config(name: str, T: int = 5, **overrides) -> NeuronConfig:
    """The survey's COCO neuron parameters: tau 2 (input decayed), threshold 1, hard reset to 0 with the reset
    detached, ATan surrogate with alpha 2, plus :data:`SURVEY_NEURON_OPTIONS` (``overrides`` win)."""
    values = dict(name=name, tau=2.0, v_threshold=1.0, v_reset=0.0, detach_reset=True, decay_input=True,
                  surrogate="atan", sg_alpha=2.0, T=T, extra=dict(SURVEY_NEURON_OPTIONS.get(name, {})))
    values.update(overrides)
    return NeuronConfig(**values)


def build_model(cfg: NeuronConfig, norm: str, T: int = 5, nc: int = 80, img_size: int = 640) -> EMSResNet10:
    """The spiking model with neurons ``build_neuron(cfg, (C, H, W))`` and norms ``build_norm(norm, C, T)``."""
    return EMSResNet10(lambda features: build_neuron(cfg, features),
                       lambda c, scale: init_norm_scale(build_norm(norm, c, T, 2), scale), nc, img_size)


def mean_over_time(out_seq: Sequence[torch.Tensor], extras: dict | None = None) -> list[torch.Tensor]:
    """The task's decoder: per level ``[T, N, na, H, W, no] -> [N, na, H, W, no]`` (mean over the time steps)."""
    return [y.mean(0) for y in out_seq]
