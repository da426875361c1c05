"""Stateful modules (neurons, OSR norm, SHD readout) and whole-model state reset / detach."""
from __future__ import annotations

import copy

import torch
from torch import nn


class MemoryModule(nn.Module):
    """A module with state (e.g. membrane potential) that persists across calls until :meth:`reset`.

    ``register_memory(name, value)`` declares a state variable and its reset value; ``reset()`` restores every
    declared variable to a copy of that value.
    """

    def __init__(self):
        super().__init__()
        self._memories: dict[str, object] = {}

    def register_memory(self, name: str, value: object) -> None:
        self._memories[name] = value
        setattr(self, name, copy.deepcopy(value))

    def memory_names(self) -> list[str]:
        """The declared state variables."""
        return list(self._memories)

    def reset(self) -> None:
        for name, value in self._memories.items():
            setattr(self, name, copy.deepcopy(value))

    def detach(self) -> None:
        """Cut the autograd graph through the state (keep its values): truncates BPTT at this point."""
        for name in self._memories:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.detach())

    def state_like(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The state ``name`` as a tensor shaped like ``x`` (broadcasting a scalar reset value)."""
        value = getattr(self, name)
        if isinstance(value, torch.Tensor) and value.shape == x.shape:
            return value
        return torch.full_like(x, float(value))


def detach_net(model: nn.Module) -> None:
    """Detach the state of every :class:`MemoryModule` in ``model`` (no gradient through earlier steps)."""
    for module in model.modules():
        if isinstance(module, MemoryModule):
            module.detach()


def reset_net(model: nn.Module) -> None:
    """Reset the state of every :class:`MemoryModule` in ``model`` (call between independent batches)."""
    for module in model.modules():
        if isinstance(module, MemoryModule):
            module.reset()
