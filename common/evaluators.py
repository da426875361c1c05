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
        self.correct: torch.Tensor | None = None  # summed on the device: no host synchronisation per batch
        self.total = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, extras: dict | None = None) -> None:
        labels = targets.argmax(-1) if targets.ndim > 1 else targets
        correct = (outputs.argmax(-1) == labels).sum(dtype=torch.float64)
        self.correct = correct if self.correct is None else self.correct + correct
        self.total += targets.shape[0]

    def compute(self) -> dict[str, float]:
        device = self.correct.device if self.correct is not None else distributed.reduction_device()
        correct = self.correct if self.correct is not None else torch.zeros((), dtype=torch.float64, device=device)
        totals = torch.stack([correct, torch.tensor(float(self.total), dtype=torch.float64, device=device)])
        correct, total = distributed.all_reduce(totals).tolist()
        return {"acc": correct / max(total, 1.0)}
