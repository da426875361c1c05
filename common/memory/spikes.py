"""Spikes saved for backward as spikes: 1 bit (``bits``) or 1 byte (``bool``) per element instead of 2-8.

During a training forward (:func:`spike_scope`) every spiking neuron marks its output tensor (forward hook installed
by :func:`common.memory.apply`); a saved-tensor hook then stores any tensor that autograd saves for backward and that
*is* a marked output (or a view of one, e.g. the ``[T*N, ...]`` fold of :class:`~common.layers.MultiStep`) in
compressed form, and unpacks it to the same dtype, shape and values for backward. Which layers compress is thus
decided by data flow (a neuron feeds them), never by looking at values; a marked tensor changed in place after the
neuron returned it (its version counter moved) is saved as it is. The unpacked tensor equals the original exactly
(neurons emit exactly 0/1, see ``common.neuron.SPIKING_TYPES``), so gradients are bit-identical.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import torch
from torch.utils.weak import WeakIdKeyDictionary

from common.kernels.bitpack import pack_bits, unpack_bits

_SCOPE: contextvars.ContextVar[SpikeScope | None] = contextvars.ContextVar("spike_scope", default=None)
ACTIVE_METER: contextvars.ContextVar[object | None] = contextvars.ContextVar("saved_bytes_meter", default=None)


@dataclass(frozen=True)
class Packed:
    """A saved spike tensor in compressed form: ``data`` (bits: ``uint8 [ceil(n/8)]``; bool: ``bool [n]``) and what
    is needed to rebuild the tensor (``channels_last`` keeps the memory format that conv kernels pick from)."""

    data: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype
    channels_last: bool

    @classmethod
    def of(cls, t: torch.Tensor, mode: str) -> Packed:
        channels_last = t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
        # a channels_last tensor is packed in its memory order (NHWC), so neither pack nor unpack copies it
        flat = (t.permute(0, 2, 3, 1) if channels_last else t.contiguous()).reshape(-1)
        data = pack_bits(flat) if mode == "bits" else flat != 0
        return cls(data, t.shape, t.dtype, channels_last)

    def unpack(self) -> torch.Tensor:
        n = self.shape.numel()
        flat = unpack_bits(self.data, n, self.dtype) if self.data.dtype == torch.uint8 else self.data.to(self.dtype)
        if not self.channels_last:
            return flat.view(self.shape)
        N, C, H, W = self.shape
        return flat.view(N, H, W, C).permute(0, 3, 1, 2)

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()


class SpikeScope:
    """The marked spike tensors of one forward pass (weak references: a freed tensor drops out) and the pack /
    unpack hooks; ``mode`` is ``bits`` or ``bool``."""

    def __init__(self, mode: str):
        if mode not in ("bits", "bool"):
            raise ValueError(f"spike packing mode must be 'bits' or 'bool', got {mode!r}")
        self.mode = mode
        self.versions = WeakIdKeyDictionary()  # marked tensor -> its version counter when the neuron returned it

    def mark(self, spikes: torch.Tensor) -> None:
        self.versions[spikes] = spikes._version
        base = spikes._base
        if base is not None and base.numel() == spikes.numel():  # the whole base holds spikes (a reshape of it)
            self.versions[base] = base._version

    def is_spikes(self, t: torch.Tensor) -> bool:
        for candidate in (t, t._base):
            if candidate is not None and self.versions.get(candidate) == candidate._version:
                return True
        return False

    def pack(self, t: torch.Tensor):
        saved = Packed.of(t, self.mode) if t.dtype.is_floating_point and self.is_spikes(t) else t
        meter = ACTIVE_METER.get()
        if meter is not None:
            meter.add(saved)
        return saved

    @staticmethod
    def unpack(saved):
        return saved.unpack() if isinstance(saved, Packed) else saved


def mark_output(module, inputs, output) -> None:
    """Forward hook of a spiking neuron: mark its output in the current scope (no-op outside one)."""
    scope = _SCOPE.get()
    if scope is not None and isinstance(output, torch.Tensor):
        scope.mark(output)


@contextlib.contextmanager
def installed(var: contextvars.ContextVar, hooks):
    """Set ``var`` to ``hooks`` and install ``hooks.pack`` / ``hooks.unpack`` as saved-tensor hooks while active."""
    token = var.set(hooks)
    try:
        with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
            yield hooks
    finally:
        var.reset(token)


@contextlib.contextmanager
def spike_scope(mode: str):
    """Mark neuron outputs and save them for backward compressed (``mode``: ``bits`` / ``bool``) in this block.
    Nested scopes reuse the outer one."""
    if _SCOPE.get() is not None:
        yield _SCOPE.get()
        return
    with installed(_SCOPE, SpikeScope(mode)) as scope:
        yield scope
