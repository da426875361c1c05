"""The networks of ``speed/memory.py``: each task's model (ours, per ``--memopt`` level) and its SpikingJelly 2.0
twin (cf10, scf10), with a fixed synthetic batch and the training loss, as :class:`Case` objects."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common import memory
from common.neuron import NeuronConfig
from common.state import reset_net

SJ = "spikingjelly"
TASKS = ("cf10", "scf10", "shd")
CLASSES = {"cf10": 10, "scf10": 10, "shd": 20}


@dataclass
class Case:
    """``loss()``: reset the neurons, forward the batch, return the training loss; ``clear()`` drops gradients."""

    variant: str
    T: int
    channels: int
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    reduce: Callable[[torch.Tensor], torch.Tensor]
    reset: Callable[[nn.Module], None]

    def loss(self) -> torch.Tensor:
        self.reset(self.model)
        return F.cross_entropy(self.reduce(self.model(self.x)), self.y)

    def clear(self) -> None:
        for p in self.model.parameters():
            p.grad = None


def _cfg(T: int) -> NeuronConfig:
    """Our default LIF (tau 2, decay_input, v_th 1, hard reset to 0, detached reset, ATan(2)), backend auto."""
    return NeuronConfig(name="lif", T=T)


def _ours(task: str, args, T: int) -> nn.Module:
    if task == "cf10":
        from cf10.model import CIFAR10Net
        from common.layers import MultiStep
        from common.neuron import build_neuron
        from common.norm import build_norm
        return CIFAR10Net(args.channels, wrap=MultiStep, norm=lambda c: build_norm("bn", c, T, 2),
                          act=lambda features: build_neuron(_cfg(T), features))
    if task == "scf10":
        from scf10.model import SeqCIFAR10Net
        return SeqCIFAR10Net(_cfg(T), "bn", args.channels)
    from shd.model import SHDNet
    return SHDNet(_cfg(T), "bn", T=T)


def _sj_net(dim: int, channels: int, size: int):
    """SpikingJelly twin of the cf10 (dim 2) / scf10 (dim 1) topology, step mode ``m``."""
    layer = importlib.import_module("spikingjelly.activation_based.layer")
    neuron = importlib.import_module("spikingjelly.activation_based.neuron")
    surrogate = importlib.import_module("spikingjelly.activation_based.surrogate")
    conv, bn, pool = ((layer.Conv2d, layer.BatchNorm2d, layer.AvgPool2d) if dim == 2 else
                      (layer.Conv1d, layer.BatchNorm1d, layer.AvgPool1d))

    def lif():
        return neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                              surrogate_function=surrogate.ATan(alpha=2.0), step_mode="m")

    layers, c_in = [], 3
    for _ in range(2):
        for _ in range(3):
            layers += [conv(c_in, channels, 3, padding=1, bias=False, step_mode="m"), bn(channels, step_mode="m"),
                       lif()]
            c_in = channels
        layers.append(pool(2, 2, step_mode="m"))
        size //= 2
    flat = channels * size**dim
    layers += [layer.Flatten(step_mode="m"), layer.Linear(flat, flat // 4, step_mode="m"), lif(),
               layer.Linear(flat // 4, 10, step_mode="m")]
    return nn.Sequential(*layers)


def _sj_reset(model: nn.Module) -> None:
    importlib.import_module("spikingjelly.activation_based.functional").reset_net(model)


def _batch(task: str, batch: int, T: int, device) -> torch.Tensor:
    shape = {"cf10": (T, batch, 3, 32, 32), "scf10": (T, batch, 3, 32), "shd": (T, batch, 140)}[task]
    return torch.rand(shape, device=device)


def build_cases(task: str, args, device: torch.device, T: int) -> list[Case]:
    """Ours at every ``--memopt`` level (same initial weights) and, for cf10 / scf10, SpikingJelly's twin."""
    T = {"cf10": T, "scf10": 32, "shd": getattr(args, "shd_T", 100)}[task]
    x = _batch(task, args.batch_size, T, device)
    y = torch.randint(0, CLASSES[task], (args.batch_size,), device=device)
    reduce = (lambda out: out.sum(0)) if task == "shd" else (lambda out: out.mean(0))
    base = _ours(task, args, T).to(device)
    channels = args.channels if task != "shd" else 256
    cases = []
    for level in sorted(memory.LEVELS):
        model = memory.apply(_ours(task, args, T).to(device), level)
        model.load_state_dict(base.state_dict())
        cases.append(Case(f"ours-m{level}", T, channels, model, x, y, reduce, reset_net))
    if task in ("cf10", "scf10"):
        dim, size = (2, 32) if task == "cf10" else (1, 32)
        cases.append(Case(SJ, T, channels, _sj_net(dim, args.channels, size).to(device), x, y, reduce, _sj_reset))
    return cases
