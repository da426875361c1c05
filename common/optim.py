"""Optimizers, learning-rate schedules, parameter groups and the linear warm-up (``--opt``, ``--lr-schedule``,
``--warmup-*``).

Schedules are stepped once per epoch unless a task's ``make_scheduler`` says ``"step"`` (once per optimizer step).
The warm-up (YOLOv5's) runs on top of the schedule for the first ``n_w`` iterations ``i``: with the schedule's
value ``lr_g(e)`` of group g at epoch e,

    lr_g(i)       = interp(i, [0, n_w], [lr_start_g, lr_g(e)])     lr_start = --warmup-bias-lr for the "bias"
                                                                   group, 0 for the others
    momentum(i)   = interp(i, [0, n_w], [--warmup-momentum, --momentum])
    accumulate(i) = round(interp(i, [0, n_w], [1, --accumulate]))

after which the schedule alone sets the learning rate.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from common.registry import Registry

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("sgd", lambda params, args: torch.optim.SGD(
    params, lr=args.lr, momentum=args.momentum, weight_decay=args.wd, nesterov=args.nesterov))
OPTIMIZERS.register("adam", lambda params, args: torch.optim.Adam(params, lr=args.lr, weight_decay=args.wd))
OPTIMIZERS.register("adamw", lambda params, args: torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd))


def _cosine(opt, args):
    """``lr_e = lr_min + (lr - lr_min) (1 + cos(pi e / epochs)) / 2`` with ``lr_min = --lr-min``."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs, eta_min=args.lr_min)


SCHEDULES = Registry("lr schedule")
SCHEDULES.register("cosine", _cosine)
SCHEDULES.register("constant", lambda opt, args: torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0))


def add_args(group) -> None:
    """The recipe flags of detection-style training (all off by default): accumulation, warm-up, EMA, Nesterov."""
    group.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    group.add_argument("--lr-min", type=float, default=0.0, help="cosine schedule: final learning rate")
    group.add_argument("--accumulate", type=int, default=1, metavar="K",
                       help="optimizer step every K batches (gradients summed; ramped from 1 during warm-up)")
    group.add_argument("--warmup-epochs", type=float, default=0.0,
                       help="linear warm-up length in epochs (0: none); see --warmup-min-iters")
    group.add_argument("--warmup-min-iters", type=int, default=0, help="warm-up lasts at least this many batches")
    group.add_argument("--warmup-momentum", type=float, default=0.8, help="SGD momentum at the start of warm-up")
    group.add_argument("--warmup-bias-lr", type=float, default=0.1,
                       help="lr of the 'bias' parameter group at the start of warm-up (others start at 0)")
    group.add_argument("--ema-decay", type=float, default=0.0,
                       help="keep an EMA of the weights with this decay, evaluated and checkpointed (0: off)")
    group.add_argument("--ema-ramp", type=float, default=2000.0, help="EMA decay ramp d (1 - exp(-updates / ramp))")


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Three groups as YOLOv5 and most detection recipes use them: ``decay`` (weights with >= 2 dims: conv and
    linear kernels) with ``weight_decay``; ``no_decay`` (other 1-D parameters: norm scales, neuron parameters) and
    ``bias`` (parameters named ``*.bias``) without. The ``bias`` group gets its own warm-up start."""
    groups = {"no_decay": [], "decay": [], "bias": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.rsplit(".", 1)[-1] == "bias":
            groups["bias"].append(param)
        elif param.ndim >= 2:
            groups["decay"].append(param)
        else:
            groups["no_decay"].append(param)
    return [{"params": params, "weight_decay": weight_decay if name == "decay" else 0.0, "name": name}
            for name, params in groups.items() if params]


class Warmup:
    """Linear warm-up of lr, momentum and gradient accumulation over the first ``iters`` iterations (equations in
    the module docstring). Stateless: everything follows from the global iteration, so resume is exact."""

    def __init__(self, iters: int, bias_lr: float, momentum_start: float, momentum: float, accumulate: int):
        self.iters, self.bias_lr, self.accumulate = iters, bias_lr, accumulate
        self.momentum_start, self.momentum = momentum_start, momentum

    def active(self, iteration: int) -> bool:
        return iteration <= self.iters

    def accumulation(self, iteration: int) -> int:
        """Batches per optimizer step at this iteration (ramps from 1 to ``accumulate``)."""
        if not self.active(iteration):
            return self.accumulate
        return max(1, round(float(np.interp(iteration, [0, self.iters], [1, self.accumulate]))))

    def apply(self, optimizer: torch.optim.Optimizer, scheduler, iteration: int) -> None:
        """Set every group's lr (and momentum) for this iteration; ``scheduler`` gives the target ``lr_g(e)``."""
        if not self.active(iteration):
            return
        targets = scheduler.get_last_lr()
        for group, target in zip(optimizer.param_groups, targets):
            start = self.bias_lr if group.get("name") == "bias" else 0.0
            group["lr"] = float(np.interp(iteration, [0, self.iters], [start, target]))
            if "momentum" in group:  # SGD only, as in YOLOv5 (Adam's betas are left alone)
                group["momentum"] = float(np.interp(iteration, [0, self.iters], [self.momentum_start, self.momentum]))


def make_warmup(args, steps_per_epoch: int) -> Warmup | None:
    """The warm-up of ``--warmup-epochs`` / ``--warmup-min-iters`` (``max(round(E * steps), min_iters)``
    iterations), or ``None`` when both are 0."""
    if args.warmup_epochs <= 0 and args.warmup_min_iters <= 0:
        return None
    iters = max(round(args.warmup_epochs * steps_per_epoch), args.warmup_min_iters)
    return Warmup(iters, args.warmup_bias_lr, args.warmup_momentum, args.momentum, args.accumulate)


def one_cycle_cosine(epochs: int, final_fraction: float):
    """YOLOv5's ``lf(e) = ((1 - cos(pi e / epochs)) / 2) (lrf - 1) + 1``: a cosine from 1 to ``final_fraction``."""
    return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (final_fraction - 1) + 1


__all__ = ["OPTIMIZERS", "SCHEDULES", "Warmup", "add_args", "decay_groups", "make_warmup", "one_cycle_cosine"]
