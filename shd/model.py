"""SHD network of the survey: 140 -> 256 -> 256 -> 20 on time-first ``[T, N, 140]`` frames.

Hidden block: ``Linear(no bias) -> norm -> neuron -> SequenceDropout(0.4)``; readout ``Linear(256 -> 20, no bias)``
into a non-spiking leaky integrator with membrane sequence ``v [T, N, 20]``. The model outputs the per-step class
probabilities ``p[t] = softmax(v[t])`` for ``t < length`` and 0 at padded steps; :func:`decode` sums them over time,
``m = sum_t p[t]``; the loss is ``CE(m, y)`` (log-softmax applied to ``m``, as in the survey) and the prediction
``argmax m``. So padding does not change a sample's result (in eval; in training BN batch statistics still see it).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from common.layers import MultiStep
from common.neuron import NeuronConfig, build_neuron
from common.norm import build_norm
from common.state import MemoryModule


class SequenceDropout(MemoryModule):
    """``y[t] = x[t] * mask / (1 - p)`` with ``mask ~ Bernoulli(1 - p)`` of shape ``[N, ...]`` drawn once per
    sequence and shared by every step (kept across step-by-step calls until ``reset()``); identity in eval."""

    def __init__(self, p: float = 0.4):
        super().__init__()
        self.p = p
        self.register_memory("mask", None)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x_seq
        if self.mask is None or self.mask.shape != x_seq.shape[1:]:
            self.mask = torch.empty_like(x_seq[0]).bernoulli_(1 - self.p) / (1 - self.p)
        return x_seq * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LeakyReadout(MemoryModule):
    """Non-spiking leaky integrator (LIF without input decay that never fires):
    ``v[t] = (1 - 1/tau) v[t-1] + x[t]``, ``v[-1] = 0``; returns ``v[0..T-1]``."""

    def __init__(self, tau: float = 1.005):
        super().__init__()
        self.tau = tau
        self.register_memory("v", 0.0)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        decay, v, out = 1.0 - 1.0 / self.tau, self.v, []
        for x in x_seq:
            v = decay * v + x
            out.append(v)
        self.v = v
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class ChannelNorm(nn.Module):
    """Apply a registry norm built for one spatial dim to ``[T, N, C]`` as ``[T, N, C, 1]`` (as the survey did)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.norm(x_seq.unsqueeze(-1)).squeeze(-1)


class PadToLength(nn.Module):
    """The survey's ``AutoPadding(T, m)``: zero-pad the time axis of ``x_seq [L, N, ...]`` to ``T`` steps, run
    ``m`` (a module with per-step parameters, e.g. TEBN or PSN) and return the first ``L`` output steps, so the
    layers around it run on the batch's own length."""

    def __init__(self, module: nn.Module, T: int):
        super().__init__()
        self.module, self.T = module, T

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        length = x_seq.shape[0]
        if length > self.T:
            raise ValueError(f"a batch has {length} steps, more than the fixed length -T {self.T}")
        padded = F.pad(x_seq, (0, 0) * (x_seq.dim() - 1) + (0, self.T - length))
        return self.module(padded)[:length]


def fixed_length(module: nn.Module, T: int) -> nn.Module:
    """``module`` wrapped in :class:`PadToLength` when its parameters are tied to the sequence length."""
    return PadToLength(module, T) if needs_fixed_T(module) else module


class SHDNet(nn.Module):
    """``model(x_seq [L, N, in]) -> p_seq [L, N, classes]`` (per-step softmax of the readout membrane) for any
    batch length ``L <= T``; neurons and norms whose parameters depend on the length see ``T`` steps
    (:class:`PadToLength`)."""

    def __init__(self, neuron: NeuronConfig, norm: str = "bn", T: int = 126, in_features: int = 140,
                 hidden: int = 256, layers: int = 2, classes: int = 20, dropout: float = 0.4,
                 readout_tau: float = 1.005):
        super().__init__()
        neuron = dataclasses.replace(neuron, T=T)
        blocks, width = [], in_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden, bias=False),
                       fixed_length(ChannelNorm(build_norm(norm, hidden, T, 1, neuron.quirks)), T),
                       fixed_length(build_neuron(neuron, (hidden,)), T), SequenceDropout(dropout)]
            width = hidden
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(width, classes, bias=False)
        self.readout = LeakyReadout(readout_tau)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")

    def membranes(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Readout membrane sequence ``v [T, N, classes]``."""
        return self.readout(self.classifier(self.features(x_seq)))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``p[t] = softmax(v[t])`` (fp32)."""
        return self.membranes(x_seq).float().softmax(dim=-1)


def valid_steps(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """``mask [T, N]``: 1 where ``t < lengths[n]``."""
    return torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]


def decode(p_seq: torch.Tensor, extras: dict | None = None, mask_padding: bool = True) -> torch.Tensor:
    """``m = sum_{t < length} p[t]`` -> ``[N, classes]`` (the survey's time-summed softmax); the sample lengths
    come from the batch's ``extras["lengths"]``. ``mask_padding=False`` sums the padded steps too, as the survey
    did."""
    if mask_padding and extras and "lengths" in extras:
        p_seq = p_seq * valid_steps(extras["lengths"], p_seq.shape[0])[..., None]
    return p_seq.sum(0)


def sum_softmax_loss(m: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Survey loss on the time-summed softmax ``m``: ``CE(m, y) = -log softmax(m)[y]`` (mean over the batch)."""
    return F.cross_entropy(m, y, label_smoothing=label_smoothing)


def needs_fixed_T(model: nn.Module) -> bool:
    """True when a module has parameters tied to the sequence length (class attribute ``needs_fixed_T = True``,
    e.g. PSN, TEBN): such modules must see every batch padded to the same ``T``."""
    return any(getattr(m, "needs_fixed_T", False) for m in model.modules())


def is_plain_batchnorm(m: nn.Module) -> bool:
    """The ``bn`` norm: a multi-step wrapper around a bare BatchNorm (TEBN/OSR are other classes)."""
    return isinstance(m, MultiStep) and len(m) == 1 and isinstance(m[0], (nn.BatchNorm1d, nn.BatchNorm2d))


def param_groups(model: SHDNet, weight_decay: float, survey_quirk: bool = False) -> list[dict]:
    """Adam groups: Linear weights with ``weight_decay``; everything else without. With ``survey_quirk`` the second
    group holds only the affine of plain-BN norm layers, as in the survey's optimiser, which left neuron, TEBN
    (including its inner BN) and OSR parameters at their initial values."""
    linear = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    if survey_quirk:
        rest = [p for m in model.modules() if isinstance(m, ChannelNorm) and is_plain_batchnorm(m.norm)
                for p in m.norm.parameters()]
    else:
        taken = {id(p) for p in linear}
        rest = [p for p in model.parameters() if id(p) not in taken]
    return [{"params": linear, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
