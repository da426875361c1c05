"""Backpropagation through time (surrogate gradients) and its ANN counterpart."""
from __future__ import annotations

import torch

from common.methods import METHODS
from common.methods.base import Method, StepOutput


@METHODS.register("bptt")
class BPTT(Method):
    """``outputs = decode(model(encode(inputs)), extras)``, ``L = train_loss(outputs, targets)``, one backward
    through all T steps."""

    name = "bptt"

    def train_step(self, model, batch, ctx) -> StepOutput:
        with ctx.autocast():
            outputs = self.forward(model, batch)
            loss = self.task.train_loss(outputs, batch.targets)
        ctx.backward(loss)
        return StepOutput(loss.detach(), detach(outputs))


def detach(outputs):
    """``outputs`` (a tensor, or a tuple/list of tensors) without autograd history."""
    if isinstance(outputs, torch.Tensor):
        return outputs.detach()
    return type(outputs)(detach(o) for o in outputs)


@METHODS.register("ann")
class ANN(BPTT):
    """Plain backprop on the task's ANN variant (same topology, ReLU, no time axis; its encode/decode are
    identities), e.g. the distillation teacher."""

    name = "ann"
    model_kind = "ann"
