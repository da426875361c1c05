r"""Synaptic-operation (SOP) counting for any task model ``model(x_seq [T, N, ...]) -> out_seq``.

Forward hooks on every Conv1d/2d/3d and Linear record the per-sample, per-step input shape, the output shape and the
sum and element count of the layer input over the evaluated set. With ``F_l`` the operation count of layer l for one
sample and one time step (``mode``, below), ``rate_l = sum(input) / numel(input)`` (spikes per input unit per step;
the mean value for non-binary inputs such as avg-pooled spikes) and ``steps_l`` the number of steps per sample:

    SOP per sample  = sum_{l != first} rate_l * F_l * steps_l      (= T * sum rate_l F_l for fixed T)
    SOP per step    = sum_{l != first} rate_l * F_l                (the SHD convention)
    first-layer FLOP per sample = F_first * (1 if static_input else steps_first)

The first synaptic layer called receives real-valued input and is reported as FLOPs, not SOPs
(``first_layer_sop=True`` counts it as SOP like the rest, e.g. for event-count inputs).

Modes (``SOP_MODES``; register more for other papers' conventions):
* ``corrected`` -- F = number of synapses used: conv ``k_h k_w C_in/groups * C_out * H_out W_out``, linear
  ``D_in * D_out`` (bias adds are not synaptic events and are not counted).
* ``paper`` -- the survey's syops-counter numbers (spec §4): conv ``(k_h k_w C_in C_out/groups + C_out) *
  prod(out_spatial[1:])`` (the first spatial dim is lost, so Conv2d counts only W_out and Conv1d counts 1), linear
  ``D_in D_out + D_out``; a conv right after an AvgPool takes the rate of the pool's input (numerically the same for
  non-overlapping pools, but counts a pool twice if it is called twice per forward, as in the survey's tandem net).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from common.batch import Batch
from common.evaluators import Top1
from common.registry import Registry
from common.state import reset_net

SOP_MODES = Registry("sop mode")
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


@SOP_MODES.register("corrected")
def corrected_ops(module: nn.Module, out_spatial: tuple[int, ...]) -> float:
    """Synapses used per sample per step (multiply-accumulates without bias)."""
    if isinstance(module, _CONVS):
        fan = math.prod(module.kernel_size) * module.in_channels // module.groups * module.out_channels
        return float(fan * math.prod(out_spatial))
    return float(module.in_features * module.out_features)


@SOP_MODES.register("paper")
def paper_ops(module: nn.Module, out_spatial: tuple[int, ...]) -> float:
    """The survey's syops-counter value (bias counted even without bias, first spatial dim dropped)."""
    if isinstance(module, _CONVS):
        fan = math.prod(module.kernel_size) * module.in_channels * module.out_channels // module.groups
        return float((fan + module.out_channels) * math.prod(out_spatial[1:]))
    return float(module.in_features * module.out_features + module.out_features)


@dataclass
class _Record:
    """Input statistics of one hooked module, accumulated over all calls."""

    name: str
    module: nn.Module
    in_sum: torch.Tensor | float = 0.0
    in_numel: int = 0
    slices: int = 0  # number of (sample, step) slices seen
    in_shape: tuple[int, ...] = ()
    out_spatial: tuple[int, ...] = ()
    first_call: int = -1

    def hook(self, counter: list[int]) -> Callable:
        def record(module, inputs, output):
            x = inputs[0].detach()
            per_slice = x.shape[-1] if isinstance(module, nn.Linear) else math.prod(x.shape[1:])
            if self.first_call < 0:
                self.first_call, counter[0] = counter[0], counter[0] + 1
                self.in_shape = (x.shape[-1],) if isinstance(module, nn.Linear) else tuple(x.shape[1:])
                self.out_spatial = tuple(output.shape[2:]) if isinstance(module, _CONVS) else ()
            self.in_sum = self.in_sum + x.sum(dtype=torch.float64)
            self.in_numel += x.numel()
            self.slices += x.numel() // per_slice

        return record

    @property
    def rate(self) -> float:
        return float(self.in_sum) / self.in_numel if self.in_numel else 0.0


@dataclass(frozen=True)
class SopOptions:
    """How to count: ``mode`` (:data:`SOP_MODES`), at most ``limit_batches`` batches, ``static_input`` (the same
    input at every step: the first layer is computed once per sample), ``first_layer_sop`` (count the first layer
    as SOPs too, e.g. for event-count inputs)."""

    mode: str = "corrected"
    limit_batches: int | None = None
    static_input: bool = False
    first_layer_sop: bool = False


def _whole_sequence(model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    return model(x_seq)


@torch.no_grad()
def count_sops(model: nn.Module, loader, encode: Callable, decode: Callable, options: SopOptions = SopOptions(),
               device: torch.device | str = "cpu", forward: Callable = _whole_sequence, evaluator=None) -> dict:
    """Evaluate ``model`` (eval mode, fp32, ``reset_net`` before every batch) on ``loader`` and count operations.

    ``loader`` yields ``(inputs, targets[, extras])`` (see ``common.batch``); ``encode(inputs) -> x_seq [T, N, ...]``
    (cf10: repeat the image T times; scf10: columns as steps; shd: the padded frames), ``decode(out_seq, extras)``
    -> outputs scored by ``evaluator`` (default top-1 accuracy); ``forward(model, x_seq)`` runs the model (the
    method's ``run_sequence``, e.g. one step at a time for online models); ``options``: :class:`SopOptions`.
    Returns ``dict(mode, <evaluator metrics, e.g. acc>, n_samples, sop_m_per_sample, sop_m_per_step,
    first_layer_flop_m, first_layer, per_layer=[...])`` (M = 1e6).
    """
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    records = {id(m): _Record(name, m) for name, m in leaves if isinstance(m, (*_CONVS, nn.Linear, *_POOLS))}
    counter = [0]
    handles = [rec.module.register_forward_hook(rec.hook(counter)) for rec in records.values()]
    evaluator = evaluator if evaluator is not None else Top1()
    was_training = model.training
    model.eval()
    n_samples = 0
    try:
        for i, item in enumerate(loader):
            if options.limit_batches is not None and i >= options.limit_batches:
                break
            batch = Batch.of(item).to(torch.device(device))
            reset_net(model)
            outputs = decode(forward(model, encode(batch.inputs)), batch.extras)
            evaluator.update(outputs, batch.targets, batch.extras)
            n_samples += batch.size
    finally:
        for handle in handles:
            handle.remove()
        reset_net(model)
        model.train(was_training)
    if n_samples == 0:
        raise ValueError("count_sops saw no samples")
    previous = {id(m): leaves[k - 1][1] for k, (_, m) in enumerate(leaves) if k > 0}
    totals = _summarise(records, previous, options, n_samples)
    return dict(mode=options.mode, **evaluator.compute(), n_samples=n_samples, **totals)


def _summarise(records: dict, previous: dict, options: SopOptions, n_samples: int) -> dict:
    """Per-layer operation counts and the totals (equations in the module docstring)."""
    ops_fn, mode = SOP_MODES.get(options.mode), options.mode
    static_input, first_layer_sop = options.static_input, options.first_layer_sop
    synaptic = sorted((r for r in records.values() if not isinstance(r.module, _POOLS) and r.first_call >= 0),
                      key=lambda r: r.first_call)
    per_layer, sop, sop_step, first_flop = [], 0.0, 0.0, 0.0
    for k, rec in enumerate(synaptic):
        ops = ops_fn(rec.module, rec.out_spatial)
        steps = rec.slices / n_samples
        source = rec
        prev = previous.get(id(rec.module))
        if mode == "paper" and isinstance(rec.module, _CONVS) and isinstance(prev, _POOLS):
            source = records[id(prev)]
        entry = dict(name=rec.name, type=type(rec.module).__name__, in_shape=list(rec.in_shape),
                     out_spatial=list(rec.out_spatial), ops_per_step=ops, rate=source.rate, steps_per_sample=steps,
                     rate_from=source.name)
        if k == 0 and not first_layer_sop:
            first_flop = ops * (1.0 if static_input else steps)
            entry.update(first_layer=True, flop_m_per_sample=first_flop / 1e6)
        else:
            sop += source.rate * ops * steps
            sop_step += source.rate * ops
            entry.update(first_layer=False, sop_m_per_sample=source.rate * ops * steps / 1e6)
        per_layer.append(entry)
    return dict(sop_m_per_sample=sop / 1e6, sop_m_per_step=sop_step / 1e6, first_layer_flop_m=first_flop / 1e6,
                first_layer=None if first_layer_sop or not synaptic else synaptic[0].name, per_layer=per_layer)


def write_sop_json(run_dir: str | Path, result: dict, **info) -> Path:
    """Store ``result`` (plus ``info``, e.g. the checkpoint path) under the key ``result["mode"]`` of
    ``<run_dir>/sop.json``, keeping the entries of other modes; returns the path."""
    path = Path(run_dir) / "sop.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[result["mode"]] = {**result, **info}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
