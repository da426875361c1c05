"""A data-loader batch as the engine and the training rules see it: ``inputs``, ``targets`` and ``extras``.

A task's collate yields ``(inputs, targets)`` or ``(inputs, targets, extras)``:

* ``inputs`` -- a tensor (images ``[N, ...]``, or frames already time-first ``[T, N, ...]``; the task's ``encode``
  turns it into the model's ``x_seq``);
* ``targets`` -- class labels ``[N]``, soft labels ``[N, classes]``, or a list of per-sample dicts such as
  ``{"boxes": FloatTensor[n, 4], "labels": LongTensor[n]}`` for detection;
* ``extras`` -- a dict of whatever the decoder, the loss or the evaluator needs besides the targets (sample
  lengths, image ids, letterbox ratios); empty by default.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch


class Batch(NamedTuple):
    inputs: torch.Tensor
    targets: Any
    extras: dict

    @classmethod
    def of(cls, item) -> Batch:
        """A :class:`Batch` from a collate's ``(inputs, targets)`` or ``(inputs, targets, extras)``."""
        if isinstance(item, Batch):
            return item
        if len(item) == 2:
            return cls(item[0], item[1], {})
        inputs, targets, extras = item
        return cls(inputs, targets, dict(extras))

    def to(self, device: torch.device) -> Batch:
        """Every tensor (also inside lists, tuples and dicts) on ``device``; non-blocking from pinned memory."""
        return Batch(*(to_device(part, device) for part in self))

    @property
    def size(self) -> int:
        """Number of samples (the batch dimension of the targets)."""
        return len(self.targets)


def to_device(obj, device: torch.device):
    """``obj`` with every tensor moved to ``device`` (recursing into lists, tuples and dicts)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=device.type == "cuda")
    if isinstance(obj, dict):
        return {key: to_device(value, device) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(value, device) for value in obj)
    return obj
