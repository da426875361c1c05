"""Exponential moving average of a model's weights and buffers (``--ema-decay``, ``--ema-ramp``), as YOLOv5 keeps it.

After the u-th optimizer step, for every floating-point parameter and buffer (BN running statistics included):

    d_u = decay * (1 - exp(-u / ramp))          (small at first, so the average forgets the random init quickly)
    ema <- d_u * ema + (1 - d_u) * model

Integer buffers (``num_batches_tracked``) are copied. The average is evaluated and checkpointed instead of the
raw weights when enabled. (``torch.optim.swa_utils.AveragedModel`` would average the integer buffers too.)
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, ramp: float = 2000.0):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, 0

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model`` (the unwrapped, non-DDP model)."""
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
