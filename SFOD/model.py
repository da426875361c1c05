r"""The survey's SFOD network: a multi-step spiking DenseNet-121 (growth 16) backbone, three extra blocks and an SSD
head on spike rates (spec §2.4), plus the N-CARS classifier used to pre-train the backbone.

Every spiking unit is pre-activation, **norm -> conv -> neuron**, with bias-free convs (kaiming-normal init) and an
optional zero padding *before* the norm (so padded zeros are normalised too, as in the survey)::

    stem         pad 1 -> norm(4) -> conv3x3/2 (-> 32) -> neuron -> maxpool 3/2/1
    dense layer  norm -> conv1x1 (-> 4*16) -> neuron -> norm -> conv3x3 p1 (-> 16) -> neuron;  out = cat(in, new)
    transition   norm -> conv1x1 (-> C/2) -> neuron -> maxpool 2/2
    blocks       6, 12, 24, 16 layers: 32 -> 128 -> 64 -> 256 -> 128 -> 512 -> 256 -> 512 channels
    extras       [norm -> conv1x1 (512->256, 640->160, 320->160) -> neuron, pad 1 -> norm -> conv3x3/2 -> neuron]
                 -> 640, 320, 320 channels
    maps         trans1 (64ch, 30x38), trans2 (128ch, 15x19), block4 (512ch, 7x9), extras (4x5, 2x3, 1x2)
                 at 240x304, each as its spike rate sum_t s[t] / T, [N, C, H, W]
    head         per map and per branch: pad 1 -> BatchNorm2d -> conv3x3 (K*A or 4*A outputs); A = [4,6,6,6,4,4]

Anchors: torchvision ``DefaultBoxGenerator`` (aspect ratios [[2],[2,3],[2,3],[2,3],[2],[2]], scales 0.05..0.8),
6,800 at 240x304. Neurons come from ``common.neuron.build_neuron`` (with the feature shape ``(C, H, W)``, which
BlockALIF needs), norms from ``common.norm.build_norm``, so every registered variant works.
Parameters at 240x304 with BN and parameter-free neurons: backbone 1,757,096 + extras 2,684,928 + head 574,720 =
5,016,744 (the survey's module also carried an unused 2,048-parameter classifier: 5,018,792).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from common.layers import MultiStep
from common.neuron import NeuronConfig, build_neuron
from common.norm import build_norm

ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
EXTRAS = (640, 320, 320)
# The survey's SFOD neuron settings that differ from the NeuronConfig defaults (tau 2, ATan alpha 2, hard reset to
# 0, detach_reset, decay_input): keys of NeuronConfig.extra and, for BlockALIF, its FastSigmoid(10) surrogate. What
# the survey's code did differently from the papers (CLIF's sigmoid carry, the online LIF's batch thresholds in eval,
# BlockALIF's frozen b, OSR's statistics) are survey quirks, ``--survey-quirk NAME`` (see common/survey/record.py).
SURVEY_NEURON_EXTRA = {"sliding_psn": {"k": 3}, "blockalif": {"latency": 1}}
SURVEY_SURROGATE = {"blockalif": ("fast_sigmoid", 10.0)}


def survey_neuron_config(cfg: NeuronConfig) -> NeuronConfig:
    """``cfg`` with the survey's SFOD settings for its neuron filled in where ``cfg.extra`` does not set them, and
    BlockALIF's FastSigmoid(10) surrogate when ``cfg`` still has the default ATan without an alpha."""
    extra = {**SURVEY_NEURON_EXTRA.get(cfg.name, {}), **cfg.extra}
    cfg = replace(cfg, extra=extra)
    if cfg.name in SURVEY_SURROGATE and cfg.surrogate == "atan" and cfg.sg_alpha is None:
        name, alpha = SURVEY_SURROGATE[cfg.name]
        cfg = replace(cfg, surrogate=name, sg_alpha=alpha)
    return cfg


class Parts:
    """Factories of one model: ``norm(C)`` (time-aware), ``neuron((C, H, W))``."""

    def __init__(self, cfg: NeuronConfig, norm: str, T: int):
        self.norm = lambda c: build_norm(norm, c, T, 2, cfg.quirks)
        self.neuron = lambda features: build_neuron(cfg, tuple(features))


def conv_out(size: tuple[int, int], k: int, stride: int = 1, pad: int = 0) -> tuple[int, int]:
    return tuple((s + 2 * pad - k) // stride + 1 for s in size)


class NormConvSpike(nn.Module):
    """``neuron(conv(norm(pad(x))))`` on ``[T, N, C, H, W]``; ``pre_pad`` zero-pads before the norm, ``padding``
    is the conv's own. ``out_size`` is the output's (H, W) for an input of ``in_size``."""

    def __init__(self, parts: Parts, c_in: int, c_out: int, k: int, in_size, stride=1, padding=0, pre_pad=0):
        super().__init__()
        self.pad = MultiStep(nn.ZeroPad2d(pre_pad)) if pre_pad else nn.Identity()
        self.norm = parts.norm(c_in)
        self.conv = MultiStep(nn.Conv2d(c_in, c_out, k, stride, padding, bias=False))
        self.out_size = conv_out(conv_out(in_size, 1, 1, pre_pad), k, stride, padding)
        self.act = parts.neuron((c_out, *self.out_size))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.norm(self.pad(x_seq))))


class DenseLayer(nn.Module):
    def __init__(self, parts: Parts, c_in: int, size, growth: int, bn_size: int):
        super().__init__()
        self.bottleneck = NormConvSpike(parts, c_in, bn_size * growth, 1, size)
        self.grow = NormConvSpike(parts, bn_size * growth, growth, 3, size, padding=1)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.cat([x_seq, self.grow(self.bottleneck(x_seq))], dim=2)


def _pool(k: int, stride: int, pad: int, size) -> tuple[nn.Module, tuple[int, int]]:
    return MultiStep(nn.MaxPool2d(k, stride, pad)), conv_out(size, k, stride, pad)


class DenseNetBackbone(nn.Module):
    """Returns the spike sequences after transition 1, transition 2 and dense block 4 (``[T, N, C, H, W]``)."""

    def __init__(self, parts: Parts, image_size=(240, 304), in_channels=4, growth=16, blocks=(6, 12, 24, 16),
                 bn_size=4):
        super().__init__()
        self.stem_unit = NormConvSpike(parts, in_channels, 2 * growth, 3, image_size, stride=2, pre_pad=1)
        self.stem_pool, size = _pool(3, 2, 1, self.stem_unit.out_size)
        c = 2 * growth
        self.stages = nn.ModuleList()
        self.out_channels, self.out_sizes = [], []
        for i, n in enumerate(blocks):
            stage = nn.Sequential()
            for j in range(n):
                stage.add_module(f"dense{j + 1}", DenseLayer(parts, c + j * growth, size, growth, bn_size))
            c += n * growth
            if i < len(blocks) - 1:
                stage.add_module("transition", NormConvSpike(parts, c, c // 2, 1, size))
                pool, size = _pool(2, 2, 0, size)
                stage.add_module("pool", pool)
                c //= 2
            self.stages.append(stage)
            self.out_channels.append(c)
            self.out_sizes.append(size)

    def forward(self, x_seq: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem_pool(self.stem_unit(x_seq))
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return [outs[0], outs[1], outs[3]]

    @property
    def map_channels(self) -> list[int]:
        return [self.out_channels[i] for i in (0, 1, 3)]

    @property
    def map_sizes(self) -> list[tuple[int, int]]:
        return [self.out_sizes[i] for i in (0, 1, 3)]


def init_weights(model: nn.Module) -> None:
    """kaiming-normal conv weights, BN weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class HeadBranch(nn.Sequential):
    """pad 1 -> BatchNorm2d (always plain BN) -> conv3x3 without bias, on a rate map ``[N, C, H, W]``."""

    def __init__(self, channels: int, outputs: int):
        super().__init__(nn.ZeroPad2d(1), nn.BatchNorm2d(channels), nn.Conv2d(channels, outputs, 3, bias=False))


def _flatten_head(y: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """``[N, A*K, H, W] -> [N, H*W*A, K]`` (location-major, as the anchors)."""
    n, _, h, w = y.shape
    return y.view(n, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, per_anchor)


def make_anchors(image_size, map_sizes, aspect_ratios=ASPECT_RATIOS, min_ratio=0.05, max_ratio=0.8) -> torch.Tensor:
    """``[A, 4]`` xyxy anchors in pixels from torchvision's ``DefaultBoxGenerator`` for maps of ``map_sizes``."""
    generator = DefaultBoxGenerator([list(a) for a in aspect_ratios], min_ratio, max_ratio)
    images = ImageList(torch.zeros(1, 1, *image_size), [tuple(image_size)])
    return generator(images, [torch.zeros(1, 1, *s) for s in map_sizes])[0]


class SpikingSSD(nn.Module):
    """``x_seq [T, N, 4, H, W]`` -> ``(cls_logits [N, A, K], bbox_regression [N, A, 4])``; ``anchors`` (buffer, not
    saved) are the matching ``[A, 4]`` xyxy boxes."""

    def __init__(self, cfg: NeuronConfig, norm: str, T: int, image_size=(240, 304), num_classes: int = 2,
                 in_channels: int = 4, extras=EXTRAS, aspect_ratios=ASPECT_RATIOS):
        super().__init__()
        parts = Parts(cfg, norm, T)
        self.image_size, self.num_classes = tuple(image_size), num_classes
        self.backbone = DenseNetBackbone(parts, image_size, in_channels)
        channels, sizes = self.backbone.map_channels, self.backbone.map_sizes
        self.extras = nn.ModuleList()
        c, size = channels[-1], sizes[-1]
        for c_out, c_mid in zip(extras, (c // 2, extras[0] // 4, extras[1] // 2)):
            first = NormConvSpike(parts, c, c_mid, 1, size)
            second = NormConvSpike(parts, c_mid, c_out, 3, size, stride=2, pre_pad=1)
            self.extras.append(nn.Sequential(first, second))
            c, size = c_out, second.out_size
            channels, sizes = channels + [c], sizes + [size]
        per_location = [2 + 2 * len(a) for a in aspect_ratios]
        self.cls_head = nn.ModuleList(HeadBranch(ch, num_classes * a) for ch, a in zip(channels, per_location))
        self.reg_head = nn.ModuleList(HeadBranch(ch, 4 * a) for ch, a in zip(channels, per_location))
        self.map_channels, self.map_sizes = channels, sizes
        self.register_buffer("anchors", make_anchors(image_size, sizes, aspect_ratios), persistent=False)
        init_weights(self)

    def feature_maps(self, x_seq: torch.Tensor) -> list[torch.Tensor]:
        """The six rate maps ``sum_t s[t] / T``, ``[N, C, H, W]``."""
        if tuple(x_seq.shape[-2:]) != self.image_size:
            raise ValueError(f"SpikingSSD was built for {self.image_size} inputs, got {tuple(x_seq.shape[-2:])}")
        seqs = self.backbone(x_seq)
        x = seqs[-1]
        for block in self.extras:
            x = block(x)
            seqs.append(x)
        return [s.mean(0) for s in seqs]

    def forward(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.feature_maps(x_seq)
        cls = torch.cat([_flatten_head(h(m), self.num_classes) for h, m in zip(self.cls_head, maps)], dim=1)
        reg = torch.cat([_flatten_head(h(m), 4) for h, m in zip(self.reg_head, maps)], dim=1)
        return cls, reg


class NCarsClassifier(nn.Module):
    """``x_seq [T, N, 4, 64, 64]`` -> spike counts ``[T, N, classes]``: the backbone, then norm -> conv1x1 -> neuron
    on the dense-block-4 output, summed over space (the survey's classifier; rate = ``out.mean(0)``)."""

    def __init__(self, cfg: NeuronConfig, norm: str, T: int, image_size=(64, 64), num_classes: int = 2,
                 in_channels: int = 4):
        super().__init__()
        parts = Parts(cfg, norm, T)
        self.backbone = DenseNetBackbone(parts, image_size, in_channels)
        self.classifier = NormConvSpike(parts, self.backbone.out_channels[-1], num_classes, 1,
                                        self.backbone.out_sizes[-1])
        init_weights(self)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x_seq)[-1]).flatten(3).sum(-1)


def rate_mse_loss(rate: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The pre-training loss ``MSE(rate, one_hot(label))`` on the decoded ``rate = mean_t out[t]`` ``[N, K]``
    (``out`` = spike counts summed over space; the task decodes with ``common.task.mean_over_time``)."""
    target = nn.functional.one_hot(labels, rate.shape[-1]).to(rate.dtype)
    return nn.functional.mse_loss(rate, target)


def backbone_state(state_dict: dict, model: nn.Module, prefix: str = "backbone.") -> tuple[dict, list[str]]:
    """The ``prefix`` entries of a pre-training ``state_dict`` that fit ``model`` (for ``load_state_dict(...,
    strict=False)``), and the names of those dropped for a different shape -- BlockALIF's per-neuron parameters,
    which depend on the input size, so they start fresh as in the survey."""
    own = model.state_dict()
    keep, dropped = {}, []
    for key, value in state_dict.items():
        if key.startswith(prefix) and key in own:
            if own[key].shape == value.shape:
                keep[key] = value
            else:
                dropped.append(key)
    return keep, dropped
