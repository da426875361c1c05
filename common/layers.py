"""Multi-step wrappers: apply stateless layers to time-first ``[T, N, ...]`` tensors by folding T into the batch."""
from __future__ import annotations

import torch
from torch import nn


def fold(x_seq: torch.Tensor) -> torch.Tensor:
    """``[T, N, ...] -> [T*N, ...]``."""
    return x_seq.flatten(0, 1)


def unfold(y: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*N, ...] -> [T, N, ...]``."""
    return y.view(T, y.shape[0] // T, *y.shape[1:])


class MultiStep(nn.Sequential):
    """One stateless module applied to every time step at once, ``y[t] = f(x[t])`` (T folded into the batch, so the
    statistics of a BatchNorm are taken over T*N). A Sequential of one module: parameters are named ``0.*``."""

    def __init__(self, module: nn.Module):
        super().__init__(module)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return unfold(super().forward(fold(x_seq)), x_seq.shape[0])
