"""Neuron registry: ``--neuron NAME`` -> ``factory(cfg: NeuronConfig, features) -> nn.Module`` on ``[T, N, ...]``."""
from __future__ import annotations

from torch import nn

from common.neuron import alif, clif, online, psn
from common.neuron.base import MemoryModule, detach_net, reset_net
from common.neuron.config import NeuronConfig
from common.neuron.if_lif import IFNode, LIFNode
from common.registry import Registry

NEURONS = Registry("neuron")

NEURONS.register("if", lambda cfg, features: IFNode(
    cfg.v_threshold, cfg.v_reset, cfg.detach_reset, cfg.make_surrogate(), cfg.backend))
NEURONS.register("lif", lambda cfg, features: LIFNode(
    cfg.tau, cfg.decay_input, cfg.v_threshold, cfg.v_reset, cfg.detach_reset, cfg.make_surrogate(), cfg.backend))
NEURONS.register("clif", clif.build_clif)
NEURONS.register("psn", psn.build_psn)
NEURONS.register("masked_psn", psn.build_masked_psn)
NEURONS.register("sliding_psn", psn.build_sliding_psn)
NEURONS.register("alif", alif.build_alif)
NEURONS.register("blockalif", alif.build_blockalif)
NEURONS.register("online_lif", online.build_online_lif)


def build_neuron(cfg: NeuronConfig, features: tuple[int, ...] = ()) -> nn.Module:
    """The neuron ``cfg.name`` for inputs ``[T, N, *features]``."""
    return NEURONS.get(cfg.name)(cfg, tuple(features))


def names() -> list[str]:
    return NEURONS.names()


__all__ = ["NEURONS", "NeuronConfig", "MemoryModule", "IFNode", "LIFNode", "build_neuron", "detach_net", "names",
           "reset_net"]
