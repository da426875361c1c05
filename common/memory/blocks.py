"""Recomputed blocks: consecutive children of an ``nn.Sequential`` run under non-reentrant
:func:`torch.utils.checkpoint.checkpoint`, which saves only the block's input and recomputes everything inside the
block in backward, running the same kernels on the same values (so the gradients are bit-identical).

Blocks are found from the model structure (:func:`find_blocks`), by the role of each child:

* ``norm -> neuron`` (``save_once``): the norm's input is kept and the neuron's (membrane / charge) is recomputed,
  instead of keeping both;
* ``neuron | pool/flatten... -> layer`` (``pooled``): the pooled spikes are not kept as floats; the block keeps the
  neuron's spikes (as bits) and recomputes the pooling;
* ``[neuron | pool/flatten...] -> layer -> [norm ->] neuron`` (``recompute``): only the block input is kept; when a
  neuron feeds it, that input is a spike tensor and is kept as bits (:mod:`common.memory.spikes`).

State: the recomputation must see the state the forward pass saw and must leave no trace (neuron membranes, OSR
sums, BatchNorm running statistics, the online threshold buffer). On entering the block the forward pass records
every state variable (:class:`~common.state.MemoryModule` memories by reference, buffers by copy); the recomputation
swaps that record in and puts the state that was current back when it ends. The forward pass runs under
:func:`~common.kernels.compiled.saved_tensors_discarded`, so the compiled neuron kernels do not even write the
membrane that checkpointing would drop.
"""
from __future__ import annotations

import contextlib
import functools
import re

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from common.kernels.compiled import saved_tensors_discarded
from common.neuron import SPIKING_TYPES
from common.norm import NORM_TYPES
from common.state import MemoryModule

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL_TYPES = (nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
              nn.modules.pooling._AdaptiveMaxPoolNd, nn.Flatten)
ROLES = (("n", SPIKING_TYPES), ("b", NORM_TYPES), ("l", LAYER_TYPES), ("p", POOL_TYPES))
# Blocks as regular expressions over the children's role letters (n neuron, b norm, l conv/linear, p pooling or
# flatten, x anything else); pooling joins a block only right after a neuron, whose spikes are then the block input.
PATTERNS = {"recompute": r"(?<=n)p+lb?n|lb?n", "pooled": r"(?<=n)p+l", "save_once": r"bn"}


def role(module: nn.Module) -> str:
    """The role letter of ``module`` (see :data:`PATTERNS`); a wrapper with one child and no parameters or buffers
    of its own (``MultiStep``, SHD's ``ChannelNorm`` / ``PadToLength``) has the role of its child. SyncBatchNorm is
    never recomputed (its forward all-reduces statistics; a replay in backward would add collectives there)."""
    if isinstance(module, nn.SyncBatchNorm):
        return "x"
    for letter, types in ROLES:
        if isinstance(module, types):
            return letter
    children = list(module.children())
    own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return role(children[0]) if len(children) == 1 and not own else "x"


def find_blocks(seq: nn.Sequential, pattern: str) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` index ranges of the children of ``seq`` that match ``pattern`` (leftmost, no overlap)."""
    roles = "".join(role(m) for m in seq)
    return tuple(match.span() for match in re.finditer(pattern, roles))


def _state(modules) -> list[tuple]:
    """Every state variable under ``modules``: ``(module, name, value, is_buffer)`` (buffers copied)."""
    record = []
    for module in {id(m): m for top in modules for m in top.modules()}.values():
        if isinstance(module, MemoryModule):
            record += [(module, name, getattr(module, name), False) for name in module.memory_names()]
        record += [(module, name, buf.clone(), True) for name, buf in module.named_buffers(recurse=False)
                   if buf is not None]
    return record


def _restore(record) -> None:
    for module, name, value, is_buffer in record:
        if is_buffer:
            getattr(module, name).copy_(value)
        else:
            setattr(module, name, value)


def _state_contexts(modules):
    """``(forward, recompute)`` context managers for checkpoint's ``context_fn`` (see the module docstring)."""
    seen = {}

    @contextlib.contextmanager
    def forward():
        seen["state"] = _state(modules)
        with saved_tensors_discarded():
            yield

    @contextlib.contextmanager
    def recompute():
        current = _state(modules)
        _restore(seen["state"])
        try:
            yield
        finally:
            _restore(current)

    return forward(), recompute()


def _run(modules, x):
    for module in modules:
        x = module(x)
    return x


def run_block(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``modules`` applied in turn to ``x``, recomputed in backward (a plain call when no graph is recorded)."""
    if not torch.is_grad_enabled():
        return _run(modules, x)
    return checkpoint(functools.partial(_run, modules), x, use_reentrant=False,
                      context_fn=functools.partial(_state_contexts, modules))


def run_sequential(seq: nn.Sequential, blocks: tuple[tuple[int, int], ...], x):
    """``seq(x)`` with the children of each ``blocks`` range run as one :func:`run_block`."""
    modules = list(seq)
    starts = dict(blocks)
    i = 0
    while i < len(modules):
        stop = starts.get(i, i + 1)
        x = run_block(modules[i:stop], x) if stop - i > 1 else modules[i](x)
        i = stop
    return x
