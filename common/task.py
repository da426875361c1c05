"""What a task script hands to the engine: a :class:`Task` (model factory, data factory, loss, evaluator, ...).

    task = Task(name="cf10", build_model=partial(model.build, args), build_data=partial(load, args),
                train_loss=..., encode=..., decode=..., model_kind=method.model_kind)
    engine.fit(args, task)

The model and the data are built independently and only when first used (``task.model``, ``task.train_set``), so
tools that need only the network (throughput, SOP, parameter counts) never load a dataset.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn
from torch.utils.data import Dataset

from common.evaluators import Evaluator, Top1


def identity(x):
    return x


def repeat_over_time(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct encoding ``x_seq[t] = x``: ``[N, ...] -> [T, N, ...]`` (a read-only view: no copy per step)."""
    return x.unsqueeze(0).expand(T, *x.shape)


def keep_outputs(out_seq, extras: dict | None = None):
    """The default decoder: the model's output as it is."""
    return out_seq


def mean_over_time(out_seq: torch.Tensor, extras: dict | None = None) -> torch.Tensor:
    """Readout ``logits = mean_t out_seq[t]``."""
    return out_seq.mean(0)


@dataclass(eq=False)
class Task:
    """Everything task-specific that :func:`common.engine.fit` needs.

    ``build_model(kind) -> nn.Module`` builds a variant (``model_kind`` for training: ``"snn"``, ``"ann"``,
    ``"tandem"``; ``"ann"`` also for a distillation teacher); ``build_data() -> (train_set, test_set)``.
    ``encode(inputs) -> x_seq`` ``[T, N, ...]``; ``decode(out_seq, extras) -> outputs`` (logits ``[N, classes]``,
    or e.g. a tuple of detection maps); ``train_loss(outputs, targets)``; ``make_evaluator()`` scores the test
    outputs (and the training outputs when ``score_train``). ``param_groups(model)`` selects what the optimizer
    trains (dicts may override lr/weight_decay and carry a ``name``); ``make_scheduler(optimizer, args,
    steps_per_epoch) -> (scheduler, "epoch" | "step")`` replaces the ``--lr-schedule``. ``name_parts`` go into the
    run name (e.g. ``("T4", "c128")``). ``final_eval(run_dir, best_checkpoint, env) -> {column: value}`` runs once
    on every rank after the last epoch (e.g. COCO's pycocotools evaluation of ``checkpoint_best.pt``); the engine
    appends its metrics as a last ``metrics.csv`` row (only columns the epoch rows have) and stores them in
    ``summary.json`` under ``final_eval``.
    """

    name: str
    build_model: Callable[[str], nn.Module]
    train_loss: Callable
    build_data: Callable[[], tuple[Dataset, Dataset]] | None = None
    test_loss: Callable | None = None
    encode: Callable = identity
    decode: Callable = keep_outputs
    make_evaluator: Callable[[], Evaluator] = Top1
    score_train: bool = True
    train_collate: Callable | None = None
    test_collate: Callable | None = None
    drop_last: bool = True
    param_groups: Callable[[nn.Module], Iterable] | None = None
    make_scheduler: Callable | None = None
    model_kind: str = "snn"
    name_parts: tuple[str, ...] = field(default_factory=tuple)
    final_eval: Callable[..., dict] | None = None

    def __post_init__(self):
        if self.test_loss is None:
            self.test_loss = self.train_loss

    @cached_property
    def model(self) -> nn.Module:
        """The model that trains (built once, on first use)."""
        return self.build_model(self.model_kind)

    @cached_property
    def data(self) -> tuple[Dataset, Dataset]:
        """``(train_set, test_set)`` (loaded once, on first use)."""
        if self.build_data is None:
            raise RuntimeError(f"task {self.name} was built without data")
        return self.build_data()

    @property
    def train_set(self) -> Dataset:
        return self.data[0]

    @property
    def test_set(self) -> Dataset:
        return self.data[1]


__all__ = ["Task", "identity", "keep_outputs", "mean_over_time", "repeat_over_time"]
