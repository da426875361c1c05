"""Online training (OTTT/SLTT/OSR style): the model runs one time step at a time, with a loss and a backward per step.

For t = 0..T-1: ``out_t = model(x_seq[t:t+1])``, ``l_t = train_loss(decode(out_t), target) / T``, backward of
``l_t``; the gradients of all T steps accumulate and the engine makes one optimizer step per batch. After each step
every neuron/norm state is detached, so no gradient flows through time: ``dL/dW = sum_t d l_t / dW`` with the
state entering step t as a constant. Prediction ``decode(out_0..out_{T-1})`` (the mean of the step logits), logged
loss ``sum_t l_t``. Evaluation and SOP counting also drive the model one step at a time (``run_sequence``).
Unlike the survey's ``online.py`` without AMP (which back-propagated only ``l_{T-1}``), every step is
back-propagated, with or without ``--amp``.
"""
from __future__ import annotations

import contextlib

import torch

from common.errors import UsageError
from common.methods import METHODS
from common.methods.base import Method, StepOutput
from common.state import detach_net


def stepwise_forward(model: torch.nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Drive ``model`` one step at a time (``x_seq[t:t+1]``), as online-trained models run; returns ``[T, N, ...]``."""
    return torch.cat([model(x_seq[t:t + 1]) for t in range(x_seq.shape[0])])


def stepwise_blockers(model: torch.nn.Module) -> list[str]:
    """Modules that need all T steps in one call (``needs_fixed_T``, e.g. PSN, masked PSN, TEBN)."""
    return sorted({type(m).__name__ for m in model.modules() if getattr(m, "needs_fixed_T", False)})


@METHODS.register("online")
class Online(Method):
    """Per-step forward, loss and backward; one optimizer step per batch (see the module docstring)."""

    name = "online"

    def __init__(self, args, task):
        super().__init__(args, task)
        blockers = stepwise_blockers(task.model)
        if blockers:
            raise UsageError(f"--method online runs the model one time step at a time, but {', '.join(blockers)} "
                             "needs all T steps in one call (non-causal or per-step parameters); use a causal "
                             "neuron (e.g. online_lif, lif, sliding_psn) and --norm bn or osr")

    @staticmethod
    def run_sequence(model, x_seq: torch.Tensor) -> torch.Tensor:
        """Drive the model one step at a time (``x_seq[t:t+1]``); ``[T, N, ...]`` outputs."""
        return stepwise_forward(model, x_seq)

    def train_step(self, model, batch, ctx) -> StepOutput:
        x_seq = self.task.encode(batch.inputs)
        T = x_seq.shape[0]
        outs, losses = [], []
        for t in range(T):
            with ctx.no_sync() if t < T - 1 else contextlib.nullcontext():
                with ctx.autocast():
                    out = model(x_seq[t:t + 1])
                    loss = self.task.train_loss(self.task.decode(out, batch.extras), batch.targets) / T
                ctx.backward(loss)
            detach_net(model)
            outs.append(out.detach())
            losses.append(loss.detach())
        return StepOutput(torch.stack(losses).sum(), self.task.decode(torch.cat(outs), batch.extras))
