r"""Adaptive LIF with an absolute refractory period: sequential ALIF and the block-parallel BlockALIF (Taylor, King &
Harper, "Addressing the speed-accuracy simulation trade-off for adaptive spiking neurons", NeurIPS 2023).

Both compute the same forward recurrence (refractory length ``R = latency``), per element, from ``v = 0``, ``a = 0``::

    I[t] = 0 if the neuron spiked within the previous R steps, else x[t]
    h[t] = beta * v[t-1] + I[t]                       (no input scaling)
    s[t] = H(h[t] - theta[t]),  theta[t] = v_th + b * a[t-1]
    v[t] = h[t] * (1 - sg(s[t]))                      (hard reset to 0)
    a[t] = p * a[t-1] + s[t]

with per-element (shape ``features``) learnable ``beta = clamp(beta_raw, 0.001, 0.999)``,
``p = clamp(|p_raw|, 0, 0.999)``, ``b = clamp(|b_raw|, 0.001, 1)``; inits ``beta_raw = p_raw = 0.99``,
``b_raw = b_init`` (default 0.999: just inside the clamp, so b starts at ~1 and trains; the survey/Blocks code used
1.8, which the clamp turns into a constant b = 1 with zero gradient -- ``--survey-quirk blockalif_frozen_b``
reproduces that; note that torch's clamp also has zero gradient exactly at the bound, so 1.0 freezes b too).
"""
from __future__ import annotations

import torch
from torch import nn

from common import quirks
from common.neuron.config import as_surrogate
from common.state import MemoryModule

SURVEY_B_INIT = 1.8  # the survey's (Blocks code's) b_raw init: outside the clamp, so b = 1 with zero gradient
quirks.register("blockalif_frozen_b", f"ALIF/BlockALIF b_raw starts at {SURVEY_B_INIT} (the authors' Blocks init), "
                "outside the clamp |b| <= 1: the adaptation strength is a constant b = 1 that never trains",
                ("cf10", "scf10", "shd", "ncars", "sfod", "coco"))


class _AdaptiveBase(MemoryModule):
    """Per-element parameters and the state ``(v, a, ref)``; ``ref`` = input steps still blocked (refractory)."""

    def __init__(self, features, latency=1, v_threshold=1.0, surrogate="atan", beta_init=0.99, p_init=0.99,
                 b_init=0.999):
        super().__init__()
        if latency < 0:
            raise ValueError(f"latency (refractory steps) must be >= 0, got {latency}")
        self.features, self.latency, self.v_threshold = tuple(features), int(latency), v_threshold
        self.surrogate = as_surrogate(surrogate)
        self.beta_raw = nn.Parameter(torch.full(self.features, float(beta_init)))
        self.p_raw = nn.Parameter(torch.full(self.features, float(p_init)))
        self.b_raw = nn.Parameter(torch.full(self.features, float(b_init)))
        for name in ("v", "a", "ref"):
            self.register_memory(name, 0.0)

    @property
    def beta(self) -> torch.Tensor:
        return self.beta_raw.clamp(0.001, 0.999)

    @property
    def p(self) -> torch.Tensor:
        return self.p_raw.abs().clamp(0.0, 0.999)

    @property
    def b(self) -> torch.Tensor:
        return self.b_raw.abs().clamp(0.001, 1.0)

    def _check(self, x_seq: torch.Tensor) -> None:
        if tuple(x_seq.shape[2:]) != self.features:
            raise ValueError(f"{type(self).__name__} built for features {self.features}, got {tuple(x_seq.shape[2:])}")

    def extra_repr(self) -> str:
        return (f"features={self.features}, latency={self.latency}, v_threshold={self.v_threshold}, "
                f"surrogate={self.surrogate.name}")


class ALIFNode(_AdaptiveBase):
    """Sequential (step-by-step) ALIF with refractory period ``latency``; see the module docstring.
    Gradients flow through v (except the detached reset), through a and theta; state persists across calls."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self._check(x_seq)
        beta, p, b = self.beta, self.p, self.b
        v, a, ref = (self.state_like(name, x_seq[0]) for name in ("v", "a", "ref"))
        spikes = []
        for x in x_seq.unbind(0):
            h = beta * v + x * (ref <= 0)
            s = self.surrogate(h - (self.v_threshold + b * a))
            sd = s.detach()
            v = h * (1.0 - sd)
            a = p * a + s
            ref = torch.where(sd > 0, float(self.latency), (ref - 1).clamp(min=0))
            spikes.append(s)
        self.v, self.a, self.ref = v, a, ref
        return torch.stack(spikes).to(x_seq.dtype)


def _powers(base: torch.Tensor, n: int) -> torch.Tensor:
    """``[base^0, ..., base^(n-1)]`` stacked on a new leading dim (repeated products: no pow(0, 0) gradient NaN)."""
    out = [torch.ones_like(base)]
    for _ in range(n - 1):
        out.append(out[-1] * base)
    return torch.stack(out)


def _causal_sum(kernel, seq: torch.Tensor) -> torch.Tensor:
    """``out[j] = sum_{d <= j} kernel[d] * seq[j - d]`` over the leading (time) dim of a short block."""
    n = seq.shape[0]
    out = seq * kernel[0]
    for d in range(1, n):
        out = out + torch.cat([torch.zeros_like(seq[:d]), seq[:n - d] * kernel[d]])
    return out


class BlockALIFNode(_AdaptiveBase):
    r"""Block-parallel ALIF: the same forward spikes as :class:`ALIFNode` with refractory period ``R = latency``.

    Time is cut into blocks of ``L = R + 1`` steps (the last one may be shorter). A neuron fires at most once per
    block, so inside a block, with carried state ``(v, a, ref)``:

        I[j]  = x[j] * 1[j >= ref]                                    (refractory inputs of the previous block)
        V[j]  = sum_{i<=j} beta^(j-i) I[i] + beta^(j+1) v             (membrane without reset: a causal conv)
        F[j]  = H(V[j] - v_th - b a p^j)                              ("faulty" spikes, surrogate gradient)
        z[j]  = sum_{i<=j} (j-i+1) F[i];   S[j] = z[j] - sg(z[j] - 1[z[j] = 1])   (keep the first spike only)

    and the carried state after a block of length L' with (detached) spike at j0:
    ``v = V[L'-1] (1 - spiked)``, ``a = a p^L' + sum_j sg(S[j]) p^(L'-1-j)``,
    ``ref = R - (L'-1-j0)`` if spiked else ``max(ref - L', 0)``. This equals the Blocks construction
    (``a_at_spike * p^#(z>1)``, ``v_init = V_last (1 - spiked)``, inputs masked where ``z_prev < spiked``) and needs no
    zero padding, so state carries exactly across calls. Gradients: within a block through the beta-convolution and
    ``dS[j]/dF[i] = j - i + 1``; across blocks through ``v`` (spike mask detached) and ``a`` (via p, b).
    """

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self._check(x_seq)
        T, N = x_seq.shape[:2]
        x = x_seq.reshape(T, N, -1)
        beta, p, b = self.beta.reshape(-1), self.p.reshape(-1), self.b.reshape(-1)
        v, a, ref = (self.state_like(name, x_seq[0]).reshape(N, -1) for name in ("v", "a", "ref"))
        L = self.latency + 1
        beta_pow, p_pow = _powers(beta, L + 1), _powers(p, L + 1)  # [L + 1, F]
        spikes = []
        for start in range(0, T, L):
            xb = x[start:start + L]
            n = xb.shape[0]
            j = torch.arange(n, device=x.device, dtype=x.dtype).view(n, 1, 1)
            current = xb * (j >= ref)
            V = _causal_sum(beta_pow.unsqueeze(1), current) + beta_pow[1:n + 1].unsqueeze(1) * v
            faulty = self.surrogate(V - (self.v_threshold + b * p_pow[:n].unsqueeze(1) * a))
            z = _causal_sum(range(1, n + 1), faulty)
            S = z - (z - (z == 1).to(z.dtype)).detach()
            Sd = S.detach()
            spiked = Sd.sum(0)
            j0 = (Sd * j).sum(0)
            v = V[-1] * (1.0 - spiked)
            a = a * p_pow[n] + (Sd * p_pow[:n].flip(0).unsqueeze(1)).sum(0)
            ref = torch.where(spiked > 0, self.latency - (n - 1) + j0, (ref - n).clamp(min=0))
            spikes.append(S)
        self.v, self.a, self.ref = (state.reshape(x_seq.shape[1:]) for state in (v, a, ref))
        return torch.cat(spikes).reshape(x_seq.shape).to(x_seq.dtype)


def _b_init(cfg, options: dict) -> dict:
    """``options`` with ``b_init`` = :data:`SURVEY_B_INIT` under the survey quirk ``blockalif_frozen_b`` (else the
    constructor's default)."""
    return {**options, "b_init": SURVEY_B_INIT} if cfg.quirk("blockalif_frozen_b") else options


def build_alif(cfg, features, **options) -> ALIFNode:
    """``alif``: cfg.v_threshold, surrogate; options ``latency`` (refractory steps), ``beta_init``, ``p_init``;
    survey quirk ``blockalif_frozen_b`` (b_init = 1.8)."""
    return ALIFNode(features, v_threshold=cfg.v_threshold, surrogate=cfg.make_surrogate(), **_b_init(cfg, options))


def build_blockalif(cfg, features, **options) -> BlockALIFNode:
    """``blockalif``: same options as ``alif``; block length = latency + 1."""
    return BlockALIFNode(features, v_threshold=cfg.v_threshold, surrogate=cfg.make_surrogate(),
                         **_b_init(cfg, options))
