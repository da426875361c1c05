"""Activation memory of training: what autograd saves for backward, and ``--memopt LEVEL`` to shrink it.

Three mechanisms, each exact (the gradients equal the plain autograd path's bit for bit; see docs/memory.md):

* **spikes as bits** (:mod:`common.memory.spikes`): a tensor that a spiking neuron emitted and that a later layer
  saves for backward (the input of the conv / linear / pooling after a neuron) is stored with 1 bit per element; a
  conv / linear fed by pooled spikes keeps the spikes (bits) and recomputes the pooling;
* **norm -> neuron saved once** (:mod:`common.memory.blocks`): a norm followed by a neuron keeps only the norm's
  input; the norm output and the neuron's membrane are recomputed in backward (BN + one neuron forward);
* **recomputation**: each ``conv/linear -> [norm ->] neuron`` block keeps only its input (bits when a neuron feeds
  it) and recomputes the conv, the norm and the neuron in backward.

Levels (:data:`LEVELS`, ``--memopt``; default :data:`DEFAULT_LEVEL`)::

    0  off: the plain autograd path (float spikes, every layer saves its own input)
    1  spikes as bits + norm -> neuron saved once                 (default)
    2  level 1 + every conv/linear -> norm -> neuron block recomputed from its input

:func:`apply` installs a plan on any model built from the suite's modules: blocks are consecutive children of an
``nn.Sequential`` (the suite's networks are Sequentials of ``MultiStep`` layers, registry norms and registry
neurons); spike packing follows data flow and also covers custom ``forward`` code. Nothing changes in eval / under
``torch.no_grad()``, and parameter / buffer names (checkpoints) are untouched.
"""
from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch
from torch import nn

from common.errors import UsageError
from common.memory.blocks import PATTERNS, find_blocks, run_sequential
from common.memory.meter import SavedBytes, count_saved
from common.memory.spikes import Packed, mark_output, spike_scope
from common.neuron import SPIKING_TYPES


@dataclass(frozen=True)
class MemoryPlan:
    """``pack``: ``bits`` / ``bool`` / None (spikes saved as floats); ``save_once``: recompute norm -> neuron;
    ``recompute``: recompute conv/linear -> [norm ->] neuron blocks."""

    pack: str | None = "bits"
    save_once: bool = True
    recompute: bool = False

    def pattern(self) -> str:
        """The block pattern (:data:`common.memory.blocks.PATTERNS`, longest first); empty: no blocks."""
        wanted = (("recompute", self.recompute), ("pooled", self.pack is not None), ("save_once", self.save_once))
        return "|".join(PATTERNS[name] for name, on in wanted if on)


LEVELS = {0: MemoryPlan(None, False, False), 1: MemoryPlan("bits", True, False), 2: MemoryPlan("bits", True, True)}
DEFAULT_LEVEL = 1
_ATTRS = ("forward", "_memopt_blocks", "_memopt_pack")


def plan_for(level: int | MemoryPlan) -> MemoryPlan:
    """The plan of ``--memopt level`` (a plan passes through); :class:`UsageError` for an unknown level."""
    if isinstance(level, MemoryPlan):
        return level
    if level not in LEVELS:
        raise UsageError(f"--memopt {level}: unknown level; valid: {', '.join(map(str, LEVELS))}")
    return LEVELS[level]


def _memopt_forward(self, *args, **kwargs):
    """Instance ``forward`` of a module with a plan: the class forward (or the block-wise Sequential forward) inside
    a spike scope when this is the model root and a graph is recorded."""
    mode = self.__dict__.get("_memopt_pack")
    scope = spike_scope(mode) if mode is not None and torch.is_grad_enabled() else contextlib.nullcontext()
    with scope:
        blocks = self.__dict__.get("_memopt_blocks")
        if blocks:
            return run_sequential(self, blocks, *args, **kwargs)
        return type(self).forward(self, *args, **kwargs)


def remove(model: nn.Module) -> nn.Module:
    """Undo :func:`apply` (the plain autograd path)."""
    for module in model.modules():
        for attr in _ATTRS:
            module.__dict__.pop(attr, None)
        for key in [k for k, hook in module._forward_hooks.items() if hook is mark_output]:
            del module._forward_hooks[key]
    return model


def apply(model: nn.Module, memopt: int | MemoryPlan = DEFAULT_LEVEL) -> nn.Module:
    """Install the plan of ``memopt`` (a level of :data:`LEVELS` or a :class:`MemoryPlan`) on ``model`` in place,
    replacing any earlier one; returns ``model``."""
    plan = plan_for(memopt)
    remove(model)
    pattern = plan.pattern()
    for module in model.modules():
        blocks = find_blocks(module, pattern) if isinstance(module, nn.Sequential) and pattern else ()
        if blocks:
            module._memopt_blocks = blocks
            module.forward = types.MethodType(_memopt_forward, module)
        if plan.pack is not None and isinstance(module, SPIKING_TYPES):
            module.register_forward_hook(mark_output)
    if plan.pack is not None:
        model._memopt_pack = plan.pack
        model.forward = types.MethodType(_memopt_forward, model)
    return model


__all__ = ["DEFAULT_LEVEL", "LEVELS", "MemoryPlan", "Packed", "SavedBytes", "apply", "count_saved", "plan_for",
           "remove"]
