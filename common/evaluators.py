"""Evaluators: what a task scores its outputs with (top-1 accuracy here; COCO mAP in ``common.coco_eval``).

The engine, per evaluation (all ranks, no grad, fp32)::

    evaluator = task.make_evaluator()
    for batch in loader: evaluator.update(outputs, batch.targets, batch.extras)
    metrics = evaluator.compute()          # every rank; reduces across ranks itself

and logs ``test_<key>`` for every key of ``metrics``; ``metrics[evaluator.best_metric]`` (higher is better) selects
``checkpoint_best.pt``. A new metric is one class with these three members.
"""
from __future__ import annotations

from typing import Protocol

import torch

from common import distributed


class Evaluator(Protocol):
    best_metric: str

    def update(self, outputs, targets, extras: dict) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Top1:
    """``acc = #{n : argmax_c outputs[n, c] = label_n} / N`` over every sample seen on every rank. Soft targets
    (MixUp/CutMix) count their argmax as the label."""

    best_metric = "acc"

    def __init__(self):
        self.correct = self.total = None

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, extras: dict | None = None) -> None:
        labels = targets.argmax(-1) if targets.ndim > 1 else targets
        correct = (outputs.argmax(-1) == labels).sum().to(torch.float64)
        total = torch.tensor(float(targets.shape[0]), dtype=torch.float64, device=correct.device)
        # summed on the device: no host synchronisation per batch
        self.correct = correct if self.correct is None else self.correct + correct
        self.total = total if self.total is None else self.total + total

    def compute(self) -> dict[str, float]:
        if self.correct is None:
            local = torch.zeros(2, dtype=torch.float64)
            local = local.cuda() if distributed.active() and torch.cuda.is_available() else local
        else:
            local = torch.stack([self.correct, self.total])
        correct, total = distributed.all_reduce(local).tolist()
        return {"acc": correct / max(total, 1.0)}
