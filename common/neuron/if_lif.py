"""Multi-step integrate-and-fire (IF) and leaky integrate-and-fire (LIF) neurons."""
from __future__ import annotations

import torch

from common import kernels
from common.kernels.params import ChargeParams
from common.neuron.config import as_surrogate
from common.state import MemoryModule


class BaseIFNode(MemoryModule):
    """Charge ``h[t] = f(v[t-1], x[t])``, fire ``s[t] = H(h[t] - v_th)``, reset hard or soft.

    Input ``x_seq`` is time-first ``[T, N, ...]``; the membrane after the last step is kept in ``self.v`` so a
    following call continues from it, until :meth:`reset`.
    """

    def __init__(self, v_threshold=1.0, v_reset=0.0, detach_reset=False, surrogate="atan", backend="auto"):
        super().__init__()
        self.v_threshold, self.v_reset, self.detach_reset = v_threshold, v_reset, detach_reset
        self.surrogate = as_surrogate(surrogate)
        self.backend = kernels.check("lif", backend)
        self.register_memory("v", 0.0 if v_reset is None else v_reset)

    def charge_params(self) -> ChargeParams:
        raise NotImplementedError

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v_init = self.state_like("v", x_seq[0])
        spike_seq, self.v = kernels.multistep("lif", self.backend, x_seq, (v_init,),
                                              self.charge_params(), self.surrogate)
        return spike_seq

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
                f"surrogate={self.surrogate.name}, backend={self.backend}")


class IFNode(BaseIFNode):
    """IF: ``h[t] = v[t-1] + x[t]``; ``s[t] = H(h[t] - v_th)``; ``v[t] = h[t](1 - s[t]) + v_reset s[t]``
    (hard) or ``v[t] = h[t] - v_th s[t]`` (soft, ``v_reset=None``)."""

    def charge_params(self) -> ChargeParams:
        return ChargeParams.integrate_and_fire(self.v_threshold, self.v_reset, self.detach_reset)


class LIFNode(BaseIFNode):
    """LIF: ``h[t] = v[t-1] + (x[t] - (v[t-1] - v_reset)) / tau`` (``decay_input``) or
    ``h[t] = v[t-1] - (v[t-1] - v_reset) / tau + x[t]``; fire and reset as :class:`IFNode`
    (``v_reset=None`` uses 0 as the resting potential)."""

    def __init__(self, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
                 surrogate="atan", backend="auto"):
        super().__init__(v_threshold, v_reset, detach_reset, surrogate, backend)
        self.tau, self.decay_input = tau, decay_input
        self.charge_params()  # validates tau

    def charge_params(self) -> ChargeParams:
        return ChargeParams.leaky(self.tau, self.decay_input, self.v_threshold, self.v_reset, self.detach_reset)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()
