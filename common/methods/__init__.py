"""Training rules: ``--method NAME`` -> a :class:`~common.methods.base.Method` subclass in ``METHODS``.

A new rule is one registered class; neither the engine nor the task scripts change::

    from common.methods import METHODS
    from common.methods.base import Method, StepOutput

    @METHODS.register("mine")
    class Mine(Method):
        name = "mine"
        def train_step(self, model, batch, ctx):   # batch: common.batch.Batch(inputs, targets, extras)
            ...  # forward(s) under ctx.autocast(), ctx.backward(loss) (once or per step)
            return StepOutput(loss.detach(), outputs.detach())
"""
from __future__ import annotations

from common.registry import Registry

METHODS = Registry("method")

from common.methods import bptt, distill, online, tandem  # noqa: E402,F401  (register the rules)
from common.methods.base import Method, StepContext, StepOutput  # noqa: E402


def get(name: str) -> type[Method]:
    return METHODS.get(name)


def names() -> list[str]:
    return METHODS.names()


__all__ = ["METHODS", "Method", "StepContext", "StepOutput", "get", "names"]
