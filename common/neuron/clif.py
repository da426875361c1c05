"""CLIF: complementary leaky integrate-and-fire neuron (Huang et al., ICML 2024)."""
from __future__ import annotations

import torch

from common.kernels.clif import CLIF_BACKENDS, ClifParams, clif_multistep
from common.neuron.base import MemoryModule
from common.neuron.if_lif import _as_surrogate


class CLIFNode(MemoryModule):
    r"""Complementary LIF with ``gamma = 1 - 1/tau`` and states ``u = 0``, ``m = 0``; per step

        u[t] = gamma u[t-1] + x[t]                      (input NOT scaled by 1/tau)
        s[t] = H(u[t] - v_th)
        m[t] = m[t-1] sigmoid((1 - gamma) u[t]) + s[t]  (pre-reset u)
        u[t] = u[t] - s[t] (v_th + sigmoid(m[t]))

    Nothing is detached: BPTT runs through the reset and through ``m``. ``sigmoid_carry=True`` reproduces the
    survey/CLIF multi-step code, whose in-place ``sigmoid_(m)`` makes the carried state ``sigmoid(m[t])`` instead of
    ``m[t]`` (the reset amount at step t is the same in both). State persists across calls until :meth:`reset`.
    ``backend``: ``torch`` runs the loop below; ``fused``/``cupy``/``auto`` run ``common.kernels.clif``.
    """

    def __init__(self, tau=2.0, v_threshold=1.0, surrogate="atan", sigmoid_carry=False, backend="auto"):
        super().__init__()
        if tau <= 1.0:
            raise ValueError(f"CLIF needs tau > 1, got {tau}")
        self.tau, self.v_threshold, self.sigmoid_carry = tau, v_threshold, sigmoid_carry
        self.surrogate = _as_surrogate(surrogate)
        self.backend = backend
        if backend != "auto":
            CLIF_BACKENDS.get(backend)
        self.register_memory("u", 0.0)
        self.register_memory("m", 0.0)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        gamma = 1.0 - 1.0 / self.tau
        u, m = self.state_like("u", x_seq[0]), self.state_like("m", x_seq[0])
        if self.backend != "torch":
            p = ClifParams.from_tau(self.tau, self.v_threshold, self.sigmoid_carry)
            spike_seq, self.u, self.m = clif_multistep(self.backend, x_seq, u, m, p, self.surrogate)
            return spike_seq
        spikes = []
        for x in x_seq.unbind(0):
            u = gamma * u + x
            s = self.surrogate(u - self.v_threshold)
            m = m * torch.sigmoid((1.0 - gamma) * u) + s
            sig_m = torch.sigmoid(m)
            u = u - s * (self.v_threshold + sig_m)
            if self.sigmoid_carry:
                m = sig_m
            spikes.append(s)
        self.u, self.m = u, m
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, sigmoid_carry={self.sigmoid_carry}, "
                f"surrogate={self.surrogate.name}, backend={self.backend}")


def build_clif(cfg, features) -> CLIFNode:
    """``clif``: cfg.tau, cfg.v_threshold, surrogate; extra ``clif_sigmoid_carry`` (bool, default False)."""
    backend = cfg.backend if cfg.backend in CLIF_BACKENDS else "auto"  # LIF-only kernels (cpp) -> best CLIF path
    return CLIFNode(cfg.tau, cfg.v_threshold, cfg.make_surrogate(), cfg.option("clif_sigmoid_carry", False), backend)
