"""Online LIF with the Online Threshold Stabilizer (OTS) of Zhu et al., "Online Stabilization of Spiking Neural
Networks", ICLR 2024, as used by the survey's online (SLTT-like) training."""
from __future__ import annotations

import torch

from common import kernels, quirks
from common.kernels.online import OnlineParams
from common.neuron.config import as_surrogate
from common.state import MemoryModule

quirks.register("ots_batch_eval", "the online LIF's OTS threshold is recomputed from the statistics of the "
                "evaluation batch at test time (the survey's self.train() typo) instead of the running thresholds",
                ("cf10", "scf10", "shd", "ncars", "sfod", "coco"))
RUN_TH_MOMENTUM = 0.9  # run_th[t] <- 0.9 run_th[t] + 0.1 theta[t], once per training batch


class OnlineLIFNode(MemoryModule):
    r"""LIF without temporal gradient and with a dynamic threshold; per step t (counted from :meth:`reset`)::

        v[t]     = (1 - 1/tau) sg(v[t-1]) + x[t]                  (input not scaled, v[-1] = 0)
        mu, sd   = mean(v[t]), std(v[t])  over the whole tensor (batch and neurons, unbiased), no gradient
        r        = (v_th - mu) / sd   frozen at t = 0, so theta[0] = v_th
        theta[t] = mu + sd r                                      (OTS; theta = v_th when ots=False)
        s[t]     = H(v[t] - theta[t])
        v[t]     = v[t] - sg(s[t]) theta[t]                        (soft reset, detached)

    ``d s[t] / d x[t']`` is zero for ``t' != t``. The state (v, r, step counter) persists across calls, so the neuron
    can be driven one step at a time with ``[1, N, ...]`` inputs. In training mode every theta[t] also updates a
    running threshold ``run_th[t]`` (EMA, rate 0.1 per batch; ``run_th`` has ``T`` entries, later steps use the last),
    and eval mode fires against ``run_th[t]`` -- a per-sample, batch-independent threshold. ``ots_batch_eval=True``
    reproduces the survey/OTS code, which (through a ``self.train()`` typo) recomputes theta from the statistics of
    the current evaluation batch. ``backend``: a backend of kernel kind ``online_lif`` (:mod:`common.kernels.online`;
    ``torch`` is the reference loop, ``fused``/``cupy`` one autograd node per call, saving ``h`` and theta).
    """

    def __init__(self, tau=2.0, v_threshold=1.0, surrogate="atan", T=4, ots=True, ots_batch_eval=False,
                 backend="auto"):
        super().__init__()
        if tau <= 1.0:
            raise ValueError(f"online LIF needs tau > 1, got {tau}")
        self.tau, self.v_threshold, self.ots, self.ots_batch_eval = tau, v_threshold, ots, ots_batch_eval
        self.surrogate = as_surrogate(surrogate)
        self.backend = kernels.check("online_lif", backend)
        self.register_buffer("run_th", torch.full((T,), float(v_threshold)))
        self.register_memory("v", 0.0)
        self.register_memory("ratio", None)
        self.register_memory("t", 0)

    @torch.no_grad()
    def threshold(self, v: torch.Tensor) -> torch.Tensor | float:
        """theta[t] for the membrane ``v`` of the current step (updates ``ratio`` and ``run_th``)."""
        t = min(self.t, self.run_th.numel() - 1)
        if not self.ots:
            return self.v_threshold
        if not self.training and not self.ots_batch_eval:
            return self.run_th[t]
        vf = v.to(torch.promote_types(v.dtype, torch.float32))
        mu, sd = vf.mean(), vf.std().clamp_min(1e-12)
        if self.t == 0:
            self.ratio = (self.v_threshold - mu) / sd
            theta = torch.full_like(mu, self.v_threshold)
        else:
            theta = mu + sd * self.ratio
        if self.training and self.t < self.run_th.numel():
            self.run_th[t] += (1.0 - RUN_TH_MOMENTUM) * (theta - self.run_th[t])
        return theta

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v = self.state_like("v", x_seq[0])
        p = OnlineParams(1.0 - 1.0 / self.tau, self._step_threshold)
        spike_seq, self.v = kernels.multistep("online_lif", self.backend, x_seq, (v,), p, self.surrogate)
        return spike_seq

    def _step_threshold(self, v: torch.Tensor) -> torch.Tensor | float:
        theta = self.threshold(v)
        self.t += 1
        return theta

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, ots={self.ots}, "
                f"ots_batch_eval={self.ots_batch_eval}, surrogate={self.surrogate.name}, backend={self.backend}")


def build_online_lif(cfg, features, ots: bool) -> OnlineLIFNode:
    """``online_lif``: cfg.tau, cfg.v_threshold (= theta[0]), cfg.T (run_th length), backend; option ``ots``;
    survey quirk ``ots_batch_eval``."""
    return OnlineLIFNode(cfg.tau, cfg.v_threshold, cfg.make_surrogate(), cfg.T, ots, cfg.quirk("ots_batch_eval"),
                         cfg.backend)
