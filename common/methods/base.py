"""The method interface: how one training step and one evaluation step run (see ``common.methods``)."""
from __future__ import annotations

import contextlib
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from common.batch import Batch


class StepOutput(NamedTuple):
    """What a step returns: ``loss`` (detached scalar, logged) and the decoded ``outputs`` (detached; logits
    ``[N, classes]`` for classification, whatever the task's decoder returns otherwise), scored by the task's
    evaluator."""

    loss: torch.Tensor
    outputs: object


class StepContext:
    """What the engine lends a method: the device, mixed precision and a DDP-aware, loss-scaled backward."""

    def __init__(self, device: torch.device, amp: bool, scaler: torch.amp.GradScaler | None = None,
                 model: nn.Module | None = None):
        self.device, self.amp, self.scaler, self.model = device, amp, scaler, model
        self.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    def autocast(self):
        """Mixed precision for forward + loss when ``--amp`` (fp16 on CUDA); a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` through the GradScaler (gradients accumulate until the engine's optimizer step)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def no_sync(self):
        """Skip the DDP gradient all-reduce for a backward that is not the last before the optimizer step."""
        sync = getattr(self.model, "no_sync", None)
        return sync() if sync is not None else contextlib.nullcontext()


class Method:
    """A training rule, selected with ``--method NAME`` from ``common.methods.METHODS``.

    Per training batch the engine (``common.training.train_step``) runs::

        reset_net(model)
        out = method.train_step(model, batch, ctx)     # forward(s) + ctx.backward(loss)(s)
        reset_net(model)
        [every --accumulate batches: unscale + clip; scaler.step(optimizer); scaler.update(); EMA; zero_grad]

    and per test batch, under ``torch.no_grad()`` and ``model.eval()``: ``method.eval_step(model, batch, ctx)``.
    ``batch`` is a :class:`common.batch.Batch` ``(inputs, targets, extras)``; ``model`` the (possibly DDP-wrapped)
    task model; ``self.task`` gives ``encode``, ``decode``, ``train_loss``, ``test_loss`` and ``build_model``;
    ``self.args`` the parsed flags.
    """

    name: ClassVar[str] = ""
    # Which variant of the task model this rule trains ("snn", "ann", ...); the task builds it with build_model(kind).
    model_kind: ClassVar[str] = "snn"

    def __init__(self, args, task):
        self.args, self.task = args, task

    @classmethod
    def add_args(cls, parser) -> None:
        """Add method-specific flags (called by ``common.cli.base_parser`` for every registered method)."""

    def name_parts(self) -> list[str]:
        """Extra parts of the run name (e.g. distillation weights)."""
        return []

    def setup(self, ctx: StepContext) -> None:
        """Called once after the model is on ``ctx.device`` and before the first step (e.g. load a teacher)."""

    @staticmethod
    def run_sequence(model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
        """How this rule drives the model over a whole sequence: ``out_seq = model(x_seq)`` (all T steps in one
        call); ``online`` overrides it with one call per step. Also used by the SOP counter (``common/sop.py``)."""
        return model(x_seq)

    def forward(self, model: nn.Module, batch: Batch) -> object:
        """``outputs = decode(run_sequence(model, encode(inputs)), extras)``."""
        return self.task.decode(self.run_sequence(model, self.task.encode(batch.inputs)), batch.extras)

    def train_step(self, model: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def eval_step(self, model: nn.Module, batch: Batch, ctx: StepContext) -> StepOutput:
        """Forward the whole sequence in fp32 and score it with the task's test loss."""
        outputs = self.forward(model, batch)
        return StepOutput(self.task.test_loss(outputs, batch.targets), outputs)
