r"""Synaptic operations of the COCO model, in the suite's corrected convention and in the survey's (``paper``).

Rates: forward hooks on every conv accumulate ``rate_l = sum(input) / numel(input)`` over the evaluated images (all
T steps; rectangular batches). Operation counts ``F_l`` use the layer shapes of one ``img_size x img_size`` image
(as the survey's counter does), per sample and time step. The stem conv (image input) and the two Detect convs
(membrane input) see real values: they are multiply-accumulates, not SOPs, and are reported separately.

* ``corrected``: ``F_l = k_h k_w C_in C_out / groups * H_out W_out`` (synapses used);
  ``SOP per step = sum_{spiking l} rate_l F_l``, per sample = T times that.
* ``paper`` (``coco/energy.py`` of the survey, spec §3.7): shapes recorded with T = N = 1 as 5-D ``[1, 1, C, H, W]``
  make the syops formula treat ``(C_out, H, W)`` as spatial, so ``F_l = (k_h k_w C_in C_out + C_out) C_out H W``
  (an extra factor C_out); ``SOP = sum_{spiking l} rate_l F_l``; and the printed "flops" is overwritten inside the
  loop, ending as ``F(last spiking conv) + F(Detect P4) + F(Detect P5)`` = 80,451.586 M at 640 for every run.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from common.registry import Registry
from common.state import reset_net

COCO_SOP_MODES = Registry("coco sop mode")


@COCO_SOP_MODES.register("corrected")
def corrected_ops(conv: nn.Conv2d, out_chw: tuple[int, int, int]) -> float:
    return float(math.prod(conv.kernel_size) * conv.in_channels // conv.groups * out_chw[0] * out_chw[1] * out_chw[2])


@COCO_SOP_MODES.register("paper")
def paper_ops(conv: nn.Conv2d, out_chw: tuple[int, int, int]) -> float:
    fan = math.prod(conv.kernel_size) * conv.in_channels * conv.out_channels // conv.groups
    return float((fan + conv.out_channels) * math.prod(out_chw))


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def float_input_convs(model: nn.Module) -> set[str]:
    """Names of the convs fed real values: the stem and the Detect convs of :class:`coco.model.EMSResNet10`."""
    return {name for name, m in conv_layers(model)
            if name.startswith("stem.") or name.startswith("detect.")}


@torch.no_grad()
def output_shapes(model: nn.Module, img_size: int, T: int) -> dict[str, tuple[int, int, int]]:
    """``(C_out, H_out, W_out)`` of every conv for one ``img_size`` square image (a zero-image forward)."""
    shapes, handles = {}, []

    def hook(name):
        def record(mod, inputs, out):
            shapes.setdefault(name, tuple(out.shape[1:]))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in conv_layers(model)]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        reset_net(model)
        model(torch.zeros(T, 1, 3, img_size, img_size, device=device))
    finally:
        for h in handles:
            h.remove()
        reset_net(model)
        model.train(was_training)
    return shapes


@torch.no_grad()
def input_rates(model: nn.Module, loader, encode: Callable, device, limit_batches: int | None = None
                ) -> tuple[dict[str, float], int]:
    """``rate_l`` of every conv over ``loader`` (batches ``(images, ...)``; eval mode, ``reset_net`` per batch) and
    the number of images."""
    sums = {name: torch.zeros((), dtype=torch.float64, device=device) for name, _ in conv_layers(model)}
    numel = dict.fromkeys(sums, 0)

    def hook(name):
        def record(mod, inputs, out):
            sums[name] += inputs[0].sum(dtype=torch.float64)
            numel[name] += inputs[0].numel()
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in conv_layers(model)]
    was_training = model.training
    model.eval()
    n_images = 0
    try:
        for i, batch in enumerate(loader):
            if limit_batches is not None and i >= limit_batches:
                break
            reset_net(model)
            model(encode(batch[0].to(device)))
            n_images += batch[0].shape[0]
    finally:
        for h in handles:
            h.remove()
        reset_net(model)
        model.train(was_training)
    return {name: float(sums[name]) / numel[name] if numel[name] else 0.0 for name in sums}, n_images


def sop_report(model: nn.Module, rates: dict[str, float], shapes: dict[str, tuple[int, int, int]], mode: str,
               T: int) -> dict:
    """Combine rates and shapes (module docstring); values in M (1e6) operations."""
    ops_fn = COCO_SOP_MODES.get(mode)
    floats = float_input_convs(model)
    per_layer, sop, mac, last_spiking = [], 0.0, 0.0, None
    for name, conv in conv_layers(model):
        ops = ops_fn(conv, shapes[name])
        spiking = name not in floats
        entry = dict(name=name, out_chw=list(shapes[name]), ops_m=ops / 1e6, rate=rates.get(name, 0.0),
                     spiking=spiking)
        if spiking:
            sop += entry["rate"] * ops
            last_spiking = ops
        else:
            mac += ops
        per_layer.append(entry)
    result = dict(mode=mode, T=T, sop_m_per_step=sop / 1e6, sop_m_per_sample=sop * T / 1e6,
                  float_input_mac_m_per_step=mac / 1e6, per_layer=per_layer)
    if mode == "paper":
        head = sum(ops_fn(conv, shapes[name]) for name, conv in conv_layers(model) if name.startswith("detect."))
        result["flops_m"] = (last_spiking + head) / 1e6
    return result


def count_sops(model: nn.Module, loader, encode: Callable, mode: str = "corrected", device="cpu",
               img_size: int = 640, T: int = 5, limit_batches: int | None = None) -> dict:
    """Rates over ``loader`` and operation counts at ``img_size``: :func:`sop_report` plus ``n_images``."""
    rates, n_images = input_rates(model, loader, encode, device, limit_batches)
    result = sop_report(model, rates, output_shapes(model, img_size, T), mode, T)
    result["n_images"] = n_images
    return result
