r"""The survey's own neuron implementations of its speed study (``speed/blockalif_module.py``), rewritten from the
spec's description (survey-cf10-scf10-speed.md §2.9, §5.3) for ``speed/bench.py --impl survey``: the conv-based
block-parallel ``Blocks`` (BlockALIF) and the step-by-step ``ALIF``, on the authors' ``[B, N, T]`` layout (time
last), per-neuron ``beta``, ``p``, ``b`` (inits 0.99, 0.99, 1.8; ``b = clamp(|b_raw|, 0.001, 1)`` is 1),
FastSigmoid surrogate (forward ``H(x)``, backward ``1 / (10 |x| + 1)^2``), refractory length ``R = latency``.

Sequential ALIF, per step: ``I = 0`` within ``R`` steps after a spike, else ``x[t]``; ``v = beta v + I``;
``s = H(v - theta)``; ``v = v (1 - sg(s))``; ``a = p a + s``; ``theta = 1 + b a``.

Blocks (block length ``L = R + 1``, time zero-padded to a multiple of L), per block: inputs before the previous
block's spike position masked (refractory), ``I[0] += beta v_init``; ``V = conv1d(I, (beta^{L-1} .. beta^0))``
(grouped, one kernel per neuron); ``S_f = surrogate(V - theta)`` with ``theta[j] = 1 + b a p^{j+1}``;
``z = conv1d(S_f, (L .. 1))``; spikes ``z - sg(z - 1[z = 1])`` (the first spike of the block); carry
``v_init = V[L-1] (1 - spiked)`` and ``a = spiked ? (sum_j a p^{j+1} sg(S[j]) + 1/p) p^{L-1-t0} : a p^L``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common import surrogate

INIT_BETA, INIT_P, INIT_B = 0.99, 0.99, 1.8


class _AuthorsParams(nn.Module):
    """Per-neuron ``beta``, ``p``, ``b`` (``[N]``) with the authors' clamps and inits."""

    def __init__(self, n: int, latency: int):
        super().__init__()
        self.latency = latency
        self.beta_raw = nn.Parameter(torch.full((n,), INIT_BETA))
        self.p_raw = nn.Parameter(torch.full((n,), INIT_P))
        self.b_raw = nn.Parameter(torch.full((n,), INIT_B))
        self.spike = surrogate.get("fast_sigmoid", alpha=10.0)

    def values(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.beta_raw.clamp(0.001, 0.999), self.p_raw.abs().clamp(0.0, 0.999),
                self.b_raw.abs().clamp(0.001, 1.0))


class SurveyALIF(_AuthorsParams):
    """The authors' step-by-step ALIF on ``x [B, N, T]`` -> spikes ``[B, N, T]`` (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, p, b = self.values()
        v = a = blocked = torch.zeros_like(x[..., 0])
        theta, out = torch.ones_like(v), []
        for t in range(x.shape[-1]):
            v = beta * v + x[..., t] * (blocked == 0)
            s = self.spike(v - theta)
            v = v * (1.0 - s.detach())
            a = p * a + s
            theta = 1.0 + b * a
            blocked = torch.where(s.detach() > 0, torch.full_like(blocked, self.latency), (blocked - 1).clamp(min=0))
            out.append(s)
        return torch.stack(out, -1)


class SurveyBlocks(_AuthorsParams):
    """The authors' conv-based block-parallel ALIF on ``x [B, N, T]`` -> spikes ``[B, N, T]`` (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, T = x.shape
        L = self.latency + 1
        x = F.pad(x, (0, -T % L))
        beta, p, b = self.values()
        j = torch.arange(L, device=x.device, dtype=x.dtype)
        beta_kernel = beta[:, None].pow(L - 1 - j).unsqueeze(1)  # [N, 1, L]: beta^{L-1} .. beta^0
        count_kernel = (L - j).view(1, 1, L)  # (L .. 1)
        p_pow = p[:, None].pow(j + 1)  # [N, L]
        v_init = a = spiked = torch.zeros(B, N, device=x.device, dtype=x.dtype)
        t0 = torch.zeros(B, N, device=x.device, dtype=torch.long)
        first = F.pad(torch.ones(1, device=x.device, dtype=x.dtype), (0, L - 1))  # (1, 0, .., 0)
        out = []
        for k in range(x.shape[-1] // L):
            refractory = (spiked[..., None] > 0) & (j < t0[..., None])
            inp = x[..., k * L:(k + 1) * L].masked_fill(refractory, 0.0) + (beta * v_init)[..., None] * first
            V = F.conv1d(F.pad(inp, (L - 1, 0)), beta_kernel, groups=N)
            A = a[..., None] * p_pow
            S_f = self.spike(V - (1.0 + b[:, None] * A))
            z = F.conv1d(F.pad(S_f.reshape(B * N, 1, L), (L - 1, 0)), count_kernel).view(B, N, L)
            S = z - (z - (z == 1).to(z.dtype)).detach()
            Sd = S.detach()
            spiked, t0 = Sd.sum(-1), (Sd * j).sum(-1).long()
            v_init = V[..., -1] * (1.0 - spiked)
            new_a = ((A * Sd).sum(-1) + 1.0 / p) * p.pow(L - 1 - t0)
            a = torch.where(spiked > 0, new_a, A[..., -1])
            out.append(S)
        return torch.cat(out, -1)[..., :T]
