"""The survey's sequential-CIFAR10 network (spec §3.2) on ``[T=32, N, 3, 32]``: one image column per time step,
each column a 1-D signal of 3 channels x 32 pixels (the height).

    2 x [3 x (Conv1d(k=3, pad=1, bias=False) -> norm -> neuron)] -> AvgPool1d(2) each  (length 32 -> 16 -> 8), then
    Flatten -> Linear(C*8 -> C*8/4) -> neuron -> Linear(-> 10)

No output neuron: the last Linear gives logits at every step. 513,418 parameters at C = 128 (LIF/IF neurons have
none).
"""
from __future__ import annotations

from torch import nn

from common.layers import MultiStep
from common.neuron import NeuronConfig, build_neuron
from common.norm import build_norm

HEIGHT = 32  # pixels per column = the length of each step's 1-D signal
WIDTH = 32  # columns = time steps


class SeqCIFAR10Net(nn.Sequential):
    """The topology above with neurons from ``cfg`` and norms ``norm`` (statistics over T*N*L for ``bn``).

    :meth:`activation_layers` lists the 7 neurons (6 conv + 1 fc) in order."""

    def __init__(self, cfg: NeuronConfig, norm: str, channels: int = 128, num_classes: int = 10):
        layers, acts = [], []
        c_in, length = 3, HEIGHT
        for _ in range(2):
            for _ in range(3):
                layers += [MultiStep(nn.Conv1d(c_in, channels, 3, padding=1, bias=False)),
                           build_norm(norm, channels, cfg.T, 1, cfg.quirks)]
                acts.append(len(layers))
                layers.append(build_neuron(cfg, (channels, length)))
                c_in = channels
            layers.append(MultiStep(nn.AvgPool1d(2)))
            length //= 2
        flat = channels * length
        layers += [MultiStep(nn.Flatten()), MultiStep(nn.Linear(flat, flat // 4))]
        acts.append(len(layers))
        layers += [build_neuron(cfg, (flat // 4,)), MultiStep(nn.Linear(flat // 4, num_classes))]
        super().__init__(*layers)
        self.act_indices = tuple(acts)

    def activation_layers(self) -> list[nn.Module]:
        return [self[i] for i in self.act_indices]
