r"""Synaptic operations of the SFOD models in the survey's convention (spec §2.7, SFOD/energy.py).

Every conv ``l`` follows a normalisation (pre-activation order), so the spikes it consumes are the **norm's input**:
a forward pre-hook on that norm accumulates ``rate_l = sum(input) / numel(input)`` over the evaluated set (padded
zeros included where the zero padding precedes the norm, as in the survey), and a forward hook on the conv records
its output size. With the survey's per-slice (one sample, one step) operation count, which counts a bias term even
for bias-free convs::

    F_l = (k_h k_w C_in C_out / groups + C_out) H_out W_out
    SOP = sum_l rate_l F_l        (per sample per time step; all convs: stem, backbone, extras, SSD head)

The stem's input is event counts and the head's inputs are spike rates (multiples of 1/T): both are counted like
spikes, as the survey does. ``common.energy.count_sops`` hooks each layer's own input, which here is the norm's
output, hence this SFOD-specific counter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from common.state import reset_net
from SFOD.model import HeadBranch, NormConvSpike


@dataclass
class _Pair:
    name: str
    norm: nn.Module
    conv: nn.Conv2d
    in_sum: float = 0.0
    in_numel: int = 0
    out_spatial: tuple[int, int] = (0, 0)

    @property
    def rate(self) -> float:
        return self.in_sum / self.in_numel if self.in_numel else 0.0

    @property
    def ops(self) -> float:
        c = self.conv
        return float((math.prod(c.kernel_size) * c.in_channels * c.out_channels // c.groups + c.out_channels)
                     * math.prod(self.out_spatial))


def norm_conv_pairs(model: nn.Module) -> list[_Pair]:
    """Every (norm, conv) pair of the model: the units of the backbone, extras and classifier, and the SSD head's
    ``pad -> BatchNorm2d -> conv`` branches."""
    pairs = []
    for name, m in model.named_modules():
        if isinstance(m, NormConvSpike):
            pairs.append(_Pair(name, m.norm, m.conv[0]))
        elif isinstance(m, HeadBranch):
            pairs.append(_Pair(name, m[1], m[2]))
    return pairs


def _hooks(pair: _Pair) -> list:
    def pre(module, inputs):
        x = inputs[0].detach()
        pair.in_sum += float(x.sum(dtype=torch.float64))
        pair.in_numel += x.numel()

    def post(module, inputs, output):
        pair.out_spatial = tuple(output.shape[-2:])

    return [pair.norm.register_forward_pre_hook(pre), pair.conv.register_forward_hook(post)]


@torch.no_grad()
def count_sops(model: nn.Module, loader, device="cpu", limit_batches: int | None = None) -> dict:
    """Run ``model`` (eval mode, ``reset_net`` before every batch) on the inputs of ``loader`` (batches
    ``(inputs [T, N, ...], ...)``) and return ``dict(sop_m_per_step, n_samples, per_layer=[...])`` (M = 1e6)."""
    pairs = norm_conv_pairs(model)
    handles = [h for pair in pairs for h in _hooks(pair)]
    was_training = model.training
    model.eval()
    n_samples = 0
    try:
        for i, batch in enumerate(loader):
            if limit_batches is not None and i >= limit_batches:
                break
            reset_net(model)
            model(batch[0].to(device))
            n_samples += batch[0].shape[1]
    finally:
        for handle in handles:
            handle.remove()
        reset_net(model)
        model.train(was_training)
    layers = [dict(name=p.name, rate=p.rate, ops_per_step=p.ops, sop_m=p.rate * p.ops / 1e6) for p in pairs]
    return dict(sop_m_per_step=sum(layer["sop_m"] for layer in layers), n_samples=n_samples, per_layer=layers)
