"""Bytes that autograd keeps for backward, counted with saved-tensor hooks (deterministic for fixed shapes).

:func:`count_saved` installs hooks that count every tensor saved while it is active; inside a spike scope
(:mod:`common.memory.spikes`, whose hooks take precedence) the scope reports what it stores instead, packed or not.
A storage saved several times (a tensor and its views, a weight used by two ops) counts once, with its full size:
that is what the saved tensors keep alive. Tensors that a checkpointed block recomputes in backward are never stored
and do not count.
"""
from __future__ import annotations

import contextlib

import torch

from common.memory.spikes import ACTIVE_METER, Packed, installed


class SavedBytes:
    """``total``: bytes kept for backward (packed spikes count their packed size); ``count``: objects saved."""

    def __init__(self):
        self.total = 0
        self.count = 0
        self._storages: set[tuple[str, int]] = set()

    def add(self, saved) -> None:
        self.count += 1
        if isinstance(saved, Packed):
            self.total += saved.nbytes
            return
        storage = saved.untyped_storage()
        key = (str(saved.device), storage.data_ptr())
        if key not in self._storages:
            self._storages.add(key)
            self.total += storage.nbytes()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        self.add(t)
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


@contextlib.contextmanager
def count_saved():
    """``with count_saved() as meter: loss = model(x)...`` -> ``meter.total`` bytes saved for backward."""
    with installed(ACTIVE_METER, SavedBytes()) as meter:
        yield meter
