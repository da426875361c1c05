"""CLIF: complementary leaky integrate-and-fire neuron (Huang et al., ICML 2024)."""
from __future__ import annotations

import torch

from common import kernels, quirks
from common.kernels.clif import ClifParams
from common.neuron.config import as_surrogate
from common.state import MemoryModule

quirks.register("clif_sigmoid_carry", "CLIF carries sigmoid(m) as its state instead of m (the in-place "
                "torch.sigmoid_(m) of the survey's CLIFSpike; the spikes differ from step 2 on)",
                ("cf10", "scf10", "shd", "ncars", "sfod", "coco"))


class CLIFNode(MemoryModule):
    r"""Complementary LIF with ``gamma = 1 - 1/tau`` and states ``u = 0``, ``m = 0``; per step

        u[t] = gamma u[t-1] + x[t]                      (input NOT scaled by 1/tau)
        s[t] = H(u[t] - v_th)
        m[t] = m[t-1] sigmoid((1 - gamma) u[t]) + s[t]  (pre-reset u)
        u[t] = u[t] - s[t] (v_th + sigmoid(m[t]))

    Nothing is detached: BPTT runs through the reset and through ``m``. ``sigmoid_carry=True`` reproduces the
    survey/CLIF multi-step code, whose in-place ``sigmoid_(m)`` makes the carried state ``sigmoid(m[t])`` instead of
    ``m[t]`` (the reset amount at step t is the same in both). State persists across calls until :meth:`reset`.
    ``backend``: a backend of kernel kind ``clif`` (:mod:`common.kernels.clif`; ``torch`` is the reference loop).
    """

    def __init__(self, tau=2.0, v_threshold=1.0, surrogate="atan", sigmoid_carry=False, backend="auto"):
        super().__init__()
        if tau <= 1.0:
            raise ValueError(f"CLIF needs tau > 1, got {tau}")
        self.tau, self.v_threshold, self.sigmoid_carry = tau, v_threshold, sigmoid_carry
        self.surrogate = as_surrogate(surrogate)
        self.backend = kernels.check("clif", backend)
        self.register_memory("u", 0.0)
        self.register_memory("m", 0.0)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        u, m = self.state_like("u", x_seq[0]), self.state_like("m", x_seq[0])
        p = ClifParams.from_tau(self.tau, self.v_threshold, self.sigmoid_carry)
        spike_seq, self.u, self.m = kernels.multistep("clif", self.backend, x_seq, (u, m), p, self.surrogate)
        return spike_seq

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, sigmoid_carry={self.sigmoid_carry}, "
                f"surrogate={self.surrogate.name}, backend={self.backend}")


def build_clif(cfg, features) -> CLIFNode:
    """``clif``: cfg.tau, cfg.v_threshold, surrogate, backend; survey quirk ``clif_sigmoid_carry``."""
    return CLIFNode(cfg.tau, cfg.v_threshold, cfg.make_surrogate(), cfg.quirk("clif_sigmoid_carry"), cfg.backend)
