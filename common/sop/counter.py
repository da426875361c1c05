r"""Synaptic-operation (SOP) counting for any task model ``model(x_seq [T, N, ...]) -> out_seq``.

Every Conv1d/2d/3d and Linear is a synaptic layer l. Hooks record its input and output shape for one sample and one
step and how many (sample, step) slices it saw, and accumulate ``rate_l = sum(input) / numel(input)`` over the
evaluated set, the input being the layer's own or another module's (the mode's rate source, e.g. the norm before
it; :mod:`common.sop.modes`). With ``F_l`` the mode's operation count of layer l for one sample and one step and
``steps_l`` its steps per sample:

    SOP per sample  = sum_{spiking l} rate_l * F_l * steps_l      (= T * sum rate_l F_l for fixed T)
    SOP per step    = sum_{spiking l} rate_l * F_l                (the SHD, Gen1 and COCO convention)
    first-layer FLOP per sample = F_first * (1 if static_input else steps_first)
    real-input FLOP per step    = sum_{non-spiking l} F_l

A layer fed real values is counted as FLOPs, not SOPs: the first synaptic layer called (unless
``first_layer_sop``, e.g. for event-count inputs) and the layers inside ``float_layers`` (e.g. a detection head fed
membrane potentials). ``nominal_shape`` counts ``F_l`` at the shapes of one zero input of that shape (e.g. COCO's
640 x 640) while the rates come from the evaluated samples (e.g. rectangular batches).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from common.batch import Batch
from common.evaluators import Top1
from common.sop.modes import RATE_SOURCES, SOP_MODES, SYNAPTIC
from common.state import reset_net


@dataclass(frozen=True)
class SopOptions:
    """How to count: ``mode`` (:data:`SOP_MODES`), at most ``limit_batches`` batches, ``static_input`` (the same
    input at every step: the first layer is computed once per sample), ``first_layer_sop`` (count the first layer
    as SOPs too), ``float_layers`` (module names whose synaptic layers see real values: FLOPs), ``nominal_shape``
    (the shape of one sample as the loader yields it, without the batch dim, e.g. ``(3, 640, 640)``: ``F`` is
    counted for ``encode(zeros(1, *nominal_shape))``; default: at the evaluated shapes)."""

    mode: str = "corrected"
    limit_batches: int | None = None
    static_input: bool = False
    first_layer_sop: bool = False
    float_layers: tuple[str, ...] = ()
    nominal_shape: tuple[int, ...] | None = None


@dataclass
class _Rate:
    """Input sum and element count of one rate-source module, over all its calls."""

    in_sum: torch.Tensor | float = 0.0
    in_numel: int = 0

    def hook(self, module, inputs) -> None:
        self.in_sum = self.in_sum + inputs[0].detach().sum(dtype=torch.float64)
        self.in_numel += inputs[0].numel()

    @property
    def rate(self) -> float:
        return float(self.in_sum) / self.in_numel if self.in_numel else 0.0


@dataclass
class _Layer:
    """Shapes (one sample, one step), call order and number of (sample, step) slices of one synaptic layer."""

    name: str
    module: nn.Module
    in_shape: tuple[int, ...] | None = None
    out_shape: tuple[int, ...] = ()
    order: int = -1
    slices: int = 0

    def shape_hook(self, module, inputs, output) -> None:
        if self.in_shape is None:
            per_slice = slice(-1, None) if isinstance(module, nn.Linear) else slice(1, None)
            self.in_shape, self.out_shape = tuple(inputs[0].shape[per_slice]), tuple(output.shape[per_slice])

    def count_hook(self, calls: list[int]) -> Callable:
        def count(module, inputs, output):
            x = inputs[0]
            if self.order < 0:
                self.order, calls[0] = calls[0], calls[0] + 1
            self.slices += x.numel() // (x.shape[-1] if isinstance(module, nn.Linear) else math.prod(x.shape[1:]))

        return count


def _whole_sequence(model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    return model(x_seq)


@contextmanager
def _hooked(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode inside, the model's mode and fresh neuron states after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        reset_net(model)
        model.train(was_training)


@torch.no_grad()
def count_sops(model: nn.Module, loader, encode: Callable, decode: Callable, options: SopOptions = SopOptions(),
               device: torch.device | str = "cpu", forward: Callable = _whole_sequence, evaluator=None) -> dict:
    """Evaluate ``model`` (eval mode, fp32, ``reset_net`` before every batch) on ``loader`` and count operations.

    ``loader`` yields ``(inputs, targets[, extras])`` (see ``common.batch``); ``encode(inputs) -> x_seq [T, N, ...]``
    (cf10: repeat the image T times; scf10: columns as steps; shd: the padded frames), ``decode(out_seq, extras)``
    -> outputs scored by ``evaluator`` (default top-1 accuracy); ``forward(model, x_seq)`` runs the model (the
    method's ``run_sequence``, e.g. one step at a time for online models); ``options``: :class:`SopOptions`.
    Returns ``dict(mode, <evaluator metrics, e.g. acc>, n_samples, sop_m_per_sample, sop_m_per_step,
    first_layer_flop_m, first_layer, float_input_flop_m_per_step, float_layers, per_layer=[...], extras={...})``
    (M = 1e6).
    """
    mode = SOP_MODES.get(options.mode)
    modules = dict(model.named_modules())
    layers = [_Layer(name, m) for name, m in modules.items() if isinstance(m, SYNAPTIC)]
    sources = {layer.name: RATE_SOURCES.get(mode.rate_source)(modules, layer.name) for layer in layers}
    rates = {name: _Rate() for name in dict.fromkeys(sources.values())}
    device = torch.device(device)
    with _evaluating(model):
        if options.nominal_shape is not None:
            with _hooked([layer.module.register_forward_hook(layer.shape_hook) for layer in layers]):
                reset_net(model)
                forward(model, encode(torch.zeros(1, *options.nominal_shape, device=device)))
        calls = [0]
        handles = [layer.module.register_forward_hook(layer.count_hook(calls)) for layer in layers]
        handles += [layer.module.register_forward_hook(layer.shape_hook) for layer in layers]
        handles += [modules[name].register_forward_pre_hook(rate.hook) for name, rate in rates.items()]
        with _hooked(handles):
            metrics, n_samples = _evaluate(model, loader, encode, decode, options.limit_batches, device, forward,
                                           evaluator if evaluator is not None else Top1())
    called = sorted((layer for layer in layers if layer.order >= 0), key=lambda layer: layer.order)
    totals = _summarise(called, {name: rates[source].rate for name, source in sources.items()}, sources, options,
                        n_samples)
    extras = mode.extras(totals["per_layer"]) if mode.extras else {}
    return dict(mode=options.mode, **metrics, n_samples=n_samples, **totals, extras=extras)


def _evaluate(model, loader, encode, decode, limit_batches, device, forward, evaluator) -> tuple[dict, int]:
    """The evaluator's metrics over at most ``limit_batches`` batches, and the number of samples."""
    n_samples = 0
    for i, item in enumerate(loader):
        if limit_batches is not None and i >= limit_batches:
            break
        batch = Batch.of(item).to(device)
        reset_net(model)
        outputs = decode(forward(model, encode(batch.inputs)), batch.extras)
        evaluator.update(outputs, batch.targets, batch.extras)
        n_samples += batch.size
    if n_samples == 0:
        raise ValueError("count_sops saw no samples")
    return evaluator.compute(), n_samples


def _is_float(name: str, float_layers: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in float_layers)


def _summarise(layers: list[_Layer], rates: dict[str, float], sources: dict[str, str], options: SopOptions,
               n_samples: int) -> dict:
    """Per-layer operation counts and the totals (equations in the module docstring)."""
    ops_fn = SOP_MODES.get(options.mode).ops
    per_layer, sop, sop_step, float_step, first_flop = [], 0.0, 0.0, 0.0, 0.0
    for k, layer in enumerate(layers):
        ops, steps, rate = ops_fn(layer.module, layer.out_shape), layer.slices / n_samples, rates[layer.name]
        spiking = (k > 0 or options.first_layer_sop) and not _is_float(layer.name, options.float_layers)
        entry = dict(name=layer.name, type=type(layer.module).__name__, in_shape=list(layer.in_shape),
                     out_shape=list(layer.out_shape), ops_per_step=ops, rate=rate, steps_per_sample=steps,
                     rate_from=sources[layer.name], spiking=spiking)
        if spiking:
            sop += rate * ops * steps
            sop_step += rate * ops
            entry["sop_m_per_sample"] = rate * ops * steps / 1e6
        else:
            flop = ops * (1.0 if k == 0 and options.static_input else steps)
            float_step += ops
            if k == 0:
                first_flop = flop
            entry["flop_m_per_sample"] = flop / 1e6
        per_layer.append(entry)
    first = layers[0].name if layers and not per_layer[0]["spiking"] else None
    return dict(sop_m_per_sample=sop / 1e6, sop_m_per_step=sop_step / 1e6, first_layer_flop_m=first_flop / 1e6,
                first_layer=first, float_input_flop_m_per_step=float_step / 1e6,
                float_layers=[e["name"] for e in per_layer if not e["spiking"]], per_layer=per_layer)


def write_sop_json(run_dir: str | Path, result: dict, **info) -> Path:
    """Store ``result`` (plus ``info``, e.g. the checkpoint path) under the key ``result["mode"]`` of
    ``<run_dir>/sop.json``, keeping the entries of other modes; returns the path."""
    path = Path(run_dir) / "sop.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[result["mode"]] = {**result, **info}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
