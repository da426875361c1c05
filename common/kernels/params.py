"""Scalar parameters of the unified IF/LIF charge-fire-reset recurrence."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChargeParams:
    """``h = k_v * v + k_x * x + c``; fire at ``v_threshold``; reset to ``v_reset`` (``None``: subtract threshold)."""

    k_v: float
    k_x: float
    c: float
    v_threshold: float
    v_reset: float | None
    detach_reset: bool

    @classmethod
    def integrate_and_fire(cls, v_threshold=1.0, v_reset=0.0, detach_reset=False) -> ChargeParams:
        return cls(1.0, 1.0, 0.0, v_threshold, v_reset, detach_reset)

    @classmethod
    def leaky(cls, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False) -> ChargeParams:
        """LIF: ``h = v + (x - (v - v_r))/tau`` (decay_input) or ``h = v - (v - v_r)/tau + x`` (v_r = 0 if soft)."""
        if tau <= 1.0:
            raise ValueError(f"LIF needs tau > 1, got {tau}")
        v_rest = 0.0 if v_reset is None else v_reset
        k_x = 1.0 / tau if decay_input else 1.0
        return cls(1.0 - 1.0 / tau, k_x, v_rest / tau, v_threshold, v_reset, detach_reset)
