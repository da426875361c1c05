"""Normalisation registry: ``--norm NAME`` -> ``factory(num_features, T, dim) -> nn.Module`` on ``[T, N, C, ...]``."""
from __future__ import annotations

import torch
from torch import nn

from common import quirks as survey_quirks
from common.layers import MultiStep
from common.registry import Registry
from common.state import MemoryModule

NORMS = Registry("norm")

_BATCH_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


def batch_norm(num_features: int, dim: int) -> nn.Module:
    if dim not in _BATCH_NORMS:
        raise ValueError(f"batch norm supports 1 or 2 spatial dims, got {dim}")
    return _BATCH_NORMS[dim](num_features)


@NORMS.register("bn")
def bn(num_features: int, T: int, dim: int = 2) -> nn.Module:
    """BN with statistics over T*N (and space): ``y = gamma (x - mean) / sqrt(var + eps) + beta``."""
    return MultiStep(batch_norm(num_features, dim))


def build_norm(name: str, num_features: int, T: int, dim: int = 2, quirks=frozenset()) -> nn.Module:
    """The norm ``name``; ``quirks`` (survey quirk names, ``--survey-quirk``) reach the modules that define
    ``use_quirks(quirks)`` (OSR)."""
    module = NORMS.get(name)(num_features, T, dim)
    for m in module.modules():
        if hasattr(m, "use_quirks"):
            m.use_quirks(frozenset(quirks))
    return module


def names() -> list[str]:
    return NORMS.names()


class TEBN(nn.Module):
    """Temporal effective BN (Duan et al., NeurIPS 2022): ``y[t] = p[t] * BN(x)[t]``, BN statistics over T*N (and
    space) with per-channel affine; ``p`` in R^T (init ones) is learnable. Needs exactly ``T`` steps."""

    needs_fixed_T = True

    def __init__(self, num_features: int, T: int, dim: int = 2):
        super().__init__()
        self.T = T
        self.bn = MultiStep(batch_norm(num_features, dim))
        self.p = nn.Parameter(torch.ones(T, *([1] * (dim + 2))))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.shape[0] != self.T:
            raise ValueError(f"TEBN was built for T={self.T} steps but got {x_seq.shape[0]}; pad sequences to T")
        y = self.bn(x_seq)
        return y * self.p.view(self.T, *([1] * (y.dim() - 1))).to(y.dtype)


NORMS.register("tebn", TEBN)


class OSR(MemoryModule):
    r"""Online spiking renormalisation (Zhu et al., ICLR 2024), applied to every time step on its own, so it can be
    called one step at a time (``[1, N, C, ...]``) or on a whole ``[T, N, C, ...]`` sequence with the same result.

    Training, per step t, with batch statistics over N and space (``var`` unbiased):
    ``sigma_B = sqrt(var_B + eps)``, ``xhat = (x - mu_B) / sigma_B`` (gradient through mu_B, sigma_B) and, without
    gradient, ``r = clip(sigma_B / sqrt(run_var + eps), 1/5, 5)``, ``d = (mu_B - run_mean) r / sigma_B``;
    output ``y = gamma (r xhat + d) + beta`` (forward = running statistics, backward = batch statistics).
    ``sum_t mu_B`` and ``sum_t (var_B + mu_B^2)`` are accumulated; at the next :meth:`reset` (the start of the next
    batch) the sequence statistics ``mean = sum mu / n``, ``var = sum (var + mu^2) / n - mean^2`` (n = steps seen)
    update ``run <- run + (1 - m)(stat - run)`` with ``m = 1 - 0.1/T``, i.e. an EMA rate of 0.1/T per batch.
    Eval: ``y = gamma (x - run_mean) / sqrt(run_var + eps) + beta``.

    Survey quirks (:meth:`use_quirks`): ``osr_stats_over_T`` divides the sums by the constant ``T`` instead of the
    steps seen (``n = T``; differs for batches shorter than T, e.g. SHD); ``osr_fold_next_batch`` folds a batch's
    statistics only at the first training step of the next batch, so the last training batch before an evaluation
    is not in the running statistics used by that evaluation.
    """

    needs_fixed_T = False
    stats_over_T = False
    fold_next_batch = False

    def __init__(self, num_features: int, T: int, dim: int = 2, eps: float = 1e-5, bound: float = 5.0):
        super().__init__()
        self.num_features, self.eps, self.bound = num_features, eps, bound
        self.T, self.momentum = T, 1.0 - 0.1 / T
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("run_mean", torch.zeros(num_features))
        self.register_buffer("run_var", torch.ones(num_features))
        self.register_memory("sum_mean", 0.0)
        self.register_memory("sum_sq", 0.0)
        self.register_memory("steps", 0)
        # (sum_mean, sum_sq, steps) awaiting the next training step (osr_fold_next_batch); kept across reset(). A
        # memory so that a recomputed block (common.memory) replays the fold its forward pass did.
        self.register_memory("pending", None)

    def use_quirks(self, quirks: frozenset) -> None:
        self.stats_over_T = "osr_stats_over_T" in quirks
        self.fold_next_batch = "osr_fold_next_batch" in quirks

    @torch.no_grad()
    def update_running_stats(self, sums=None) -> None:
        """Fold the accumulated statistics ``sums = (sum_mean, sum_sq, steps)`` (default: of the last sequence) into
        ``run_mean``/``run_var`` (no-op if none)."""
        sum_mean, sum_sq, steps = sums or (self.sum_mean, self.sum_sq, self.steps)
        if steps == 0:
            return
        n = self.T if self.stats_over_T else steps
        mean = sum_mean / n
        var = sum_sq / n - mean.square()
        self.run_mean += (1.0 - self.momentum) * (mean - self.run_mean)
        self.run_var += (1.0 - self.momentum) * (var - self.run_var)

    def reset(self) -> None:
        pending = self.pending
        if not self.fold_next_batch:
            self.update_running_stats()
        elif self.steps:
            pending = (self.sum_mean, self.sum_sq, self.steps)
        super().reset()
        self.pending = pending

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        shape = (1, 1, self.num_features) + (1,) * (x_seq.dim() - 3)
        x = x_seq.to(torch.promote_types(x_seq.dtype, torch.float32))
        gamma, beta = self.gamma.view(shape), self.beta.view(shape)
        if self.training and self.pending is not None:  # osr_fold_next_batch: the previous batch, folded only now
            self.update_running_stats(self.pending)  # before both running statistics are read
            self.pending = None
        run_mean, run_std = self.run_mean.view(shape), (self.run_var.view(shape) + self.eps).sqrt()
        if not self.training:
            return (gamma * (x - run_mean) / run_std + beta).to(x_seq.dtype)
        dims = [1, *range(3, x.dim())]
        mean, var = x.mean(dims, keepdim=True), x.var(dims, keepdim=True)
        std = (var + self.eps).sqrt()
        xhat = (x - mean) / std
        with torch.no_grad():
            r = (std / run_std).clamp(1.0 / self.bound, self.bound)
            d = (mean - run_mean) * r / std
            self.sum_mean = self.sum_mean + mean.sum(0).flatten()
            self.sum_sq = self.sum_sq + (var + mean.square()).sum(0).flatten()
            self.steps += x.shape[0]
        return (gamma * (xhat * r + d) + beta).to(x_seq.dtype)


NORMS.register("osr", OSR)
survey_quirks.register("osr_stats_over_T", "OSR divides its accumulated per-batch statistics by the constant T "
                       "(-T) instead of the steps seen (x T/T_batch on the running statistics of shorter batches)",
                       ("cf10", "scf10", "shd", "ncars", "sfod", "coco"))
survey_quirks.register("osr_fold_next_batch", "OSR folds a training batch's statistics into its running statistics "
                       "only at the next training batch, so the last batch before an evaluation is missing there",
                       ("cf10", "scf10", "shd", "ncars", "sfod", "coco"))

# The modules that registry norms are made of (``bn`` is a MultiStep around a BatchNorm): common.memory recomputes a
# norm together with the neuron after it instead of saving both their inputs.
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, TEBN, OSR)
