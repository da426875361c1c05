"""Backpropagation through time (surrogate gradients) and its ANN counterpart."""
from __future__ import annotations

from common.methods import METHODS
from common.methods.base import Method, StepOutput


@METHODS.register("bptt")
class BPTT(Method):
    """``logits = decode(model(encode(x)))``, ``L = train_loss(logits, target)``, one backward through all T steps."""

    name = "bptt"

    def train_step(self, model, x, target, ctx) -> StepOutput:
        with ctx.autocast():
            logits = self.forward(model, x)
            loss = self.task.train_loss(logits, target)
        ctx.backward(loss)
        return StepOutput(loss.detach(), logits.detach())


@METHODS.register("ann")
class ANN(BPTT):
    """Plain backprop on the task's ANN variant (same topology, ReLU, no time axis; its encode/decode are
    identities), e.g. the distillation teacher."""

    name = "ann"
    model_kind = "ann"
