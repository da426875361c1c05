"""The survey's CIFAR10 network, as an SNN on ``[T, N, 3, 32, 32]`` and as its ANN twin on ``[N, 3, 32, 32]``.

    2 x [3 x (Conv3x3(bias=False) -> norm -> act)] -> AvgPool2x2 each, then
    Flatten -> Linear(C*8*8 -> C*8*8/4) -> act -> Linear(-> 10)

with act = a spiking neuron (SNN) or ReLU (ANN). No output neuron: the last Linear gives logits at every step.
17,542,026 parameters at C = 128 (LIF/IF neurons have none).
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from common.layers import MultiStep
from common.neuron import NeuronConfig, build_neuron
from common.norm import build_norm
from common.registry import Registry

MODELS = Registry("model kind")


class CIFAR10Net(nn.Sequential):
    """The topology above; ``wrap`` makes a stateless layer time-aware (``MultiStep`` for the SNN),
    ``norm(C)`` and ``act(features)`` build the normalisation and the activation of each block, ``fc_norm(F)`` (if
    given) a normalisation between the hidden Linear and its activation (tandem's LinearBN); ``conv_bias`` gives the
    convs a bias (tandem's authors' layers).

    :meth:`activation_layers` lists the 7 activations (6 conv + 1 fc) in order: neurons in the SNN, ReLUs in the
    ANN, matched by index (hook them for feature distillation).
    """

    def __init__(self, channels: int = 128, num_classes: int = 10, *, wrap: Callable[[nn.Module], nn.Module],
                 norm: Callable[[int], nn.Module], act: Callable[[tuple[int, ...]], nn.Module],
                 fc_norm: Callable[[int], nn.Module] | None = None, conv_bias: bool = False):
        layers, acts = [], []
        c_in, size = 3, 32
        for _ in range(2):
            for _ in range(3):
                layers += [wrap(nn.Conv2d(c_in, channels, 3, padding=1, bias=conv_bias)), norm(channels)]
                acts.append(len(layers))
                layers.append(act((channels, size, size)))
                c_in = channels
            layers.append(wrap(nn.AvgPool2d(2, 2)))
            size //= 2
        flat = channels * size * size
        layers += [wrap(nn.Flatten()), wrap(nn.Linear(flat, flat // 4))]
        if fc_norm is not None:
            layers.append(fc_norm(flat // 4))
        acts.append(len(layers))
        layers += [act((flat // 4,)), wrap(nn.Linear(flat // 4, num_classes))]
        super().__init__(*layers)
        self.act_indices = tuple(acts)

    def activation_layers(self) -> list[nn.Module]:
        return [self[i] for i in self.act_indices]


@MODELS.register("snn")
def snn(args) -> CIFAR10Net:
    """Multi-step SNN: neurons from ``--neuron`` (and its flags), norms from ``--norm`` over ``[T, N, C, H, W]``."""
    cfg = NeuronConfig.from_args(args)
    return CIFAR10Net(args.channels, wrap=MultiStep, norm=lambda c: build_norm(args.norm, c, args.T, 2, cfg.quirks),
                      act=lambda features: build_neuron(cfg, features))


@MODELS.register("ann")
def ann(args) -> CIFAR10Net:
    """The same topology with plain modules, BatchNorm2d and ReLU, on a single image (no time axis)."""
    return CIFAR10Net(args.channels, wrap=lambda m: m, norm=nn.BatchNorm2d, act=lambda features: nn.ReLU())


@MODELS.register("tandem")
def tandem(args) -> nn.Sequential:
    """Tandem learning's network (``--method tandem``, survey §2.13): the SNN topology with soft-reset IF neurons and
    BN, whatever ``--neuron``/``--norm`` say, plus a BN after the hidden Linear (the authors' LinearBN1d_if); each
    Conv/Linear -> BN -> IF block is fused by ``common.methods.tandem.to_tandem`` (survey quirks
    ``tandem_authors_layers``, ``tandem_count_readout``: see there)."""
    from common.methods.tandem import to_tandem

    cfg = NeuronConfig.from_args(args, name="if", v_reset=None)
    authors = cfg.quirk("tandem_authors_layers")
    net = CIFAR10Net(args.channels, wrap=MultiStep, norm=lambda c: build_norm("bn", c, args.T, 2),
                     act=lambda features: build_neuron(cfg, features),
                     fc_norm=lambda f: build_norm("bn", f, args.T, 1), conv_bias=authors)
    return to_tandem(net, args.tandem_bn_momentum, authors, cfg.quirk("tandem_count_readout"))


def build(args, kind: str = "snn") -> nn.Module:
    return MODELS.get(kind)(args)
