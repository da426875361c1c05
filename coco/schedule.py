r"""The survey's learning-rate schedule for COCO (YOLOv5 v6.0 ``train.py``): a cosine ``lf`` stepped once per epoch,
under the engine's warm-up (:class:`common.optim.Warmup`).

    lf(e) = 1 - (1 - lrf) (1 - cos(pi e / E)) / 2          (from 1 at e = 0 to lrf = --lrf at e = E = --epochs)

Default: epoch e trains at ``lr lf(e)``; during the warm-up the lrs move linearly towards ``lr lf(e)``.

Survey quirk ``lr_schedule_lag``: YOLOv5 v6.0 sets ``scheduler.last_epoch = start_epoch - 1`` after building the
``LambdaLR``, so its per-epoch step lags one epoch behind. Its warm-up still aims at ``lr lf(e)`` of the current
epoch; after the warm-up, epoch e trains at ``lr lf(e - 1)`` -- except the epoch in which the warm-up ends, which
keeps the warm-up's last value ``lr lf(e)`` (spec §3.6: epoch 3 at lf(3), epoch 4 at lf(3), ..., epoch 99 at lf(98)).
"""
from __future__ import annotations

import torch

from common import optim, quirks

quirks.register("lr_schedule_lag", "the per-epoch cosine lr lags one epoch behind its warm-up target "
                "(YOLOv5 v6.0 resets scheduler.last_epoch after building the LambdaLR)", tasks=("coco",))


class LaggedLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` whose step sets the lr of epoch e to ``base f(e - 1)`` (``base f(0)`` at e = 0), while
    :meth:`get_last_lr` gives the warm-up the un-lagged target ``base f(e)`` -- YOLOv5's warm-up computes
    ``lf(epoch)`` itself instead of reading the scheduler."""

    def get_lr(self) -> list[float]:
        e = max(self.last_epoch - 1, 0)
        return [base * f(e) for base, f in zip(self.base_lrs, self.lr_lambdas)]

    def get_last_lr(self) -> list[float]:
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas)]


def make_scheduler(optimizer: torch.optim.Optimizer, args, steps_per_epoch: int):
    """``(LambdaLR(lf), "epoch")`` (the task's ``make_scheduler``); lagged with ``--survey-quirk lr_schedule_lag``."""
    lf = optim.one_cycle_cosine(args.epochs, args.lrf)
    cls = LaggedLambdaLR if quirks.on(args, "lr_schedule_lag") else torch.optim.lr_scheduler.LambdaLR
    return cls(optimizer, lf), "epoch"
