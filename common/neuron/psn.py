"""Parallel spiking neurons (Fang et al., NeurIPS 2023): PSN, masked PSN, sliding PSN.

No membrane recurrence and no reset: the charge is a learnable linear map over time, ``H = W X + b``, and
``S = H(H)`` (Heaviside with the configured surrogate); the bias plays the role of ``-v_threshold``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from common.neuron.config import as_surrogate
from common.state import MemoryModule


def _fire(weight: torch.Tensor, bias: torch.Tensor, x_seq: torch.Tensor, surrogate) -> torch.Tensor:
    """``S = H(W @ X + b)`` with ``X = x_seq`` reshaped to ``[T, N*...]``; spikes in the dtype of ``x_seq``."""
    h = torch.addmm(bias, weight, x_seq.flatten(1).to(weight.dtype))
    return surrogate(h).view(x_seq.shape).to(x_seq.dtype)


def _check_T(x_seq: torch.Tensor, T: int, name: str) -> None:
    if x_seq.shape[0] != T:
        raise ValueError(f"{name} was built for T={T} steps but got {x_seq.shape[0]}; pad sequences to T")


class PSN(nn.Module):
    r"""Full PSN: ``H = W X + b``, ``W`` in R^{T x T} (kaiming_uniform, a=sqrt(5), i.e. U(-1/sqrt(T), 1/sqrt(T))),
    ``b`` in R^T initialised to ``-v_threshold``; ``S = H(H)``. Non-causal (step t sees all T inputs); stateless."""

    needs_fixed_T = True

    def __init__(self, T: int, v_threshold=1.0, surrogate="atan"):
        super().__init__()
        self.T = T
        self.surrogate = as_surrogate(surrogate)
        self.weight = nn.Parameter(torch.empty(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -float(v_threshold)))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        _check_T(x_seq, self.T, "PSN")
        return _fire(self.weight, self.bias, x_seq, self.surrogate)

    def extra_repr(self) -> str:
        return f"T={self.T}, surrogate={self.surrogate.name}"


class MaskedPSN(nn.Module):
    r"""Masked PSN of order k: ``H = (W * M_k(lambda)) X + b`` with the banded causal mask
    ``M_k[i, j] = 1 if j <= i <= j + k - 1`` and ``M_k(lambda) = lambda M_k + (1 - lambda) 1`` (progressive masking;
    ``lambda = 1`` is the pure order-k neuron, a training schedule may raise ``lambda_`` from 0 to 1).
    ``W`` in R^{T x T} (kaiming_uniform, a=sqrt(5)), ``b`` in R^T init ``-v_threshold``; ``S = H(H)``."""

    needs_fixed_T = True

    def __init__(self, T: int, k: int, v_threshold=1.0, surrogate="atan", lambda_=1.0):
        super().__init__()
        if not 1 <= k <= T:
            raise ValueError(f"masked PSN order k must be in [1, T={T}], got {k}")
        self.T, self.k = T, k
        self.surrogate = as_surrogate(surrogate)
        self.weight = nn.Parameter(torch.empty(T, T))
        self.bias = nn.Parameter(torch.full((T, 1), -float(v_threshold)))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        ones = torch.ones(T, T)
        self.register_buffer("mask", torch.tril(ones) - torch.tril(ones, -k))
        self.register_buffer("lambda_", torch.tensor(float(lambda_)))

    def masked_weight(self) -> torch.Tensor:
        return self.weight * (self.lambda_ * self.mask + (1.0 - self.lambda_))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        _check_T(x_seq, self.T, "MaskedPSN")
        return _fire(self.masked_weight(), self.bias, x_seq, self.surrogate)

    def extra_repr(self) -> str:
        return f"T={self.T}, k={self.k}, lambda_={float(self.lambda_)}, surrogate={self.surrogate.name}"


class SlidingPSN(MemoryModule):
    r"""Sliding PSN of order k (causal, any T): ``H[t] = sum_{i=0}^{k-1} w[k-1-i] X[t-i] + b``, ``S = H(H)``.

    One weight vector ``w`` in R^k and one scalar bias per layer (shared by all neurons). ``exp_init``:
    ``w = (..., 1/4, 1/2, 1)`` (``w[k-1]`` weighs the current input), else kaiming_uniform; ``b = -v_threshold``.
    The last ``k - 1`` inputs are kept across calls (zeros after :meth:`reset`), so feeding a sequence in chunks
    (e.g. one step at a time) gives the same spikes as one call.
    """

    needs_fixed_T = False

    def __init__(self, k: int, v_threshold=1.0, surrogate="atan", exp_init=True):
        super().__init__()
        if k < 1:
            raise ValueError(f"sliding PSN order k must be >= 1, got {k}")
        self.k = k
        self.surrogate = as_surrogate(surrogate)
        if exp_init:
            weight = 0.5 ** torch.arange(k - 1, -1, -1, dtype=torch.float32)
        else:
            weight = torch.empty(1, k)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            weight = weight[0]
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.tensor(-float(v_threshold)))
        self.register_memory("x_hist", None)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        hist = self.x_hist
        if hist is None:
            hist = x_seq.new_zeros(self.k - 1, *x_seq.shape[1:])
        padded = torch.cat([hist, x_seq])
        self.x_hist = padded[padded.shape[0] - (self.k - 1):]
        T = x_seq.shape[0]
        h = sum(self.weight[i] * padded[i:i + T] for i in range(self.k)) + self.bias
        return self.surrogate(h).to(x_seq.dtype)

    def extra_repr(self) -> str:
        return f"k={self.k}, surrogate={self.surrogate.name}"


def build_psn(cfg, features) -> PSN:
    """``psn``: full T x T PSN for cfg.T steps."""
    return PSN(cfg.T, cfg.v_threshold, cfg.make_surrogate())


def build_masked_psn(cfg, features, k: int, psn_lambda: float) -> MaskedPSN:
    """``masked_psn``: options ``k`` (order), ``psn_lambda`` (mask mix, 1.0 = fully masked)."""
    return MaskedPSN(cfg.T, k, cfg.v_threshold, cfg.make_surrogate(), psn_lambda)


def build_sliding_psn(cfg, features, k: int, exp_init: bool) -> SlidingPSN:
    """``sliding_psn``: options ``k`` (order), ``exp_init``."""
    return SlidingPSN(k, cfg.v_threshold, cfg.make_surrogate(), exp_init)
