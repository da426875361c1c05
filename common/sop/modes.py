r"""Counting conventions of :func:`common.sop.count_sops`: how many operations a synaptic layer (Conv1d/2d/3d,
Linear) performs per sample and time step, and whose input gives its firing rate.

``SOP_MODES`` maps a ``--sop-mode`` name to a :class:`SopMode`; ``RATE_SOURCES`` maps a rate-source name to
``source(modules, name) -> name`` (``modules = dict(model.named_modules())``): the module whose input is averaged
into the rate of the synaptic layer ``name``. A task registers its own conventions next to its model
(``SFOD/sop.py``: ``gen1_survey``; ``coco/sop.py``: ``coco_survey``); this package imports no task code.

Registered here (CIFAR10 / sequential CIFAR10 / SHD):

* ``corrected`` -- F = number of synapses used: conv ``k_h k_w C_in/groups * C_out * H_out W_out``, linear
  ``D_in * D_out`` (bias adds are not synaptic events); rate = the layer's own input.
* ``paper`` -- the survey's syops-counter numbers (spec §4): :func:`syops` over ``out_shape[2:]`` (the first
  spatial dim is lost, so Conv2d counts only W_out and Conv1d counts 1); a conv right after an AvgPool takes the
  rate of the pool's input (``pool_input``: numerically the same for non-overlapping pools, but it counts a pool
  twice if the pool is called twice per forward, as in the survey's tandem net).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from common.norm import NORMS
from common.registry import Registry

SOP_MODES = Registry("sop mode")
RATE_SOURCES = Registry("sop rate source")
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SYNAPTIC = (*CONVS, nn.Linear)
POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_TORCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class SopMode:
    """A counting convention. ``ops(module, out_shape) -> F``: operations of one synaptic layer per sample and
    step, ``out_shape`` being its output for one sample and step (``(C_out, *spatial)`` for a conv, ``(D_out,)``
    for a linear layer); ``rate_source``: a :data:`RATE_SOURCES` name; ``extras(per_layer) -> dict``: further
    outputs computed from the per-layer entries (stored under ``extras`` in the result)."""

    ops: Callable[[nn.Module, tuple[int, ...]], float]
    rate_source: str = "input"
    extras: Callable[[list[dict]], dict] | None = None


def synapses(module: nn.Module, out_shape: tuple[int, ...]) -> float:
    """Synapses used per sample per step (multiply-accumulates without bias)."""
    if isinstance(module, CONVS):
        fan = math.prod(module.kernel_size) * module.in_channels // module.groups * module.out_channels
        return float(fan * math.prod(out_shape[1:]))
    return float(module.in_features * module.out_features)


def syops(module: nn.Module, out_dims: tuple[int, ...]) -> float:
    """The survey's syops-counter count, a bias term included even without bias: conv ``(k_h k_w C_in C_out /
    groups + C_out) * prod(out_dims)``, linear ``D_in D_out + D_out``. Which output dims its counter multiplied
    by is where the survey's tasks differ (``paper``: ``out_shape[2:]``; SFOD: ``[1:]``; COCO: all)."""
    if isinstance(module, CONVS):
        fan = math.prod(module.kernel_size) * module.in_channels * module.out_channels // module.groups
        return float((fan + module.out_channels) * math.prod(out_dims))
    return float(module.in_features * module.out_features + module.out_features)


SOP_MODES.register("corrected", SopMode(synapses))
SOP_MODES.register("paper", SopMode(lambda module, out_shape: syops(module, out_shape[2:]), "pool_input"))


@RATE_SOURCES.register("input")
def own_input(modules: dict[str, nn.Module], name: str) -> str:
    """The layer's own input."""
    return name


@RATE_SOURCES.register("pool_input")
def pool_input(modules: dict[str, nn.Module], name: str) -> str:
    """A conv whose previous leaf module (in registration order) is an AvgPool: the pool's input; else its own."""
    leaves = [n for n, m in modules.items() if not list(m.children())]
    k = leaves.index(name)
    if k > 0 and isinstance(modules[name], CONVS) and isinstance(modules[leaves[k - 1]], POOLS):
        return leaves[k - 1]
    return name


@RATE_SOURCES.register("norm_input")
def norm_input(modules: dict[str, nn.Module], name: str) -> str:
    """The input of the norm just before the layer (pre-activation ``[pad ->] norm -> conv``: the norm sees the
    spikes, the conv their normalised values): the module registered just before it in its container, looking
    through the containers of which it is the first child; the layer's own input when that module is no norm."""
    before = _previous_sibling(modules, name)
    return before if before is not None and _is_norm(modules[before]) else name


def _previous_sibling(modules: dict[str, nn.Module], name: str) -> str | None:
    while name:
        parent = name.rpartition(".")[0]
        siblings = [f"{parent}.{child}" if parent else child for child, _ in modules[parent].named_children()]
        k = siblings.index(name)
        if k > 0:
            return siblings[k - 1]
        name = parent
    return None


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer (torch's, or a class of :data:`common.norm.NORMS`), possibly inside single-child
    wrappers such as ``MultiStep``."""
    classes = tuple(c for c in map(NORMS.get, NORMS.names()) if isinstance(c, type))
    while not isinstance(module, _TORCH_NORMS + classes) and len(children := list(module.children())) == 1:
        module = children[0]
    return isinstance(module, _TORCH_NORMS + classes)
