"""Neuron registry: ``--neuron NAME`` -> a :class:`NeuronSpec` whose ``build(cfg, features, **options)`` returns an
``nn.Module`` on ``[T, N, ...]``.

A spec declares the neuron's ``--neuron-opt`` options (key -> default; the default's type is the option's type) and
the kernel kind it runs through :mod:`common.kernels` (None: plain torch ops, which take only ``--backend auto``).
:func:`build_neuron` refuses unknown or inapplicable options and backends with one :class:`UsageError` line.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from common import kernels
from common.errors import UsageError
from common.neuron import alif, clif, online, psn
from common.neuron.config import NeuronConfig
from common.neuron.if_lif import BaseIFNode, IFNode, LIFNode
from common.registry import Registry

# Every module of these types returns exactly 0/1 spikes in the dtype of its input (common.memory relies on it to
# save a neuron's output for backward as bits; tests/common/test_memory*.py check it for every registered neuron).
SPIKING_TYPES = (BaseIFNode, clif.CLIFNode, psn.PSN, psn.MaskedPSN, psn.SlidingPSN, alif.ALIFNode, alif.BlockALIFNode,
                 online.OnlineLIFNode)


@dataclass(frozen=True)
class NeuronSpec:
    build: Callable[..., nn.Module]
    options: Mapping[str, object] = field(default_factory=dict)
    kernel: str | None = None


NEURONS = Registry("neuron")
_ADAPTIVE = {"latency": 1, "beta_init": 0.99, "p_init": 0.99}  # b_init: survey quirk blockalif_frozen_b

NEURONS.register("if", NeuronSpec(lambda cfg, features: IFNode(
    cfg.v_threshold, cfg.v_reset, cfg.detach_reset, cfg.make_surrogate(), cfg.backend), kernel="lif"))
NEURONS.register("lif", NeuronSpec(lambda cfg, features: LIFNode(
    cfg.tau, cfg.decay_input, cfg.v_threshold, cfg.v_reset, cfg.detach_reset, cfg.make_surrogate(), cfg.backend),
    kernel="lif"))
NEURONS.register("clif", NeuronSpec(clif.build_clif, kernel="clif"))
NEURONS.register("psn", NeuronSpec(psn.build_psn))
NEURONS.register("masked_psn", NeuronSpec(psn.build_masked_psn, {"k": 4, "psn_lambda": 1.0}))
NEURONS.register("sliding_psn", NeuronSpec(psn.build_sliding_psn, {"k": 4, "exp_init": True}))
NEURONS.register("alif", NeuronSpec(alif.build_alif, _ADAPTIVE))
NEURONS.register("blockalif", NeuronSpec(alif.build_blockalif, _ADAPTIVE))
NEURONS.register("online_lif", NeuronSpec(online.build_online_lif, {"ots": True}, kernel="online_lif"))


def _spec(cfg: NeuronConfig) -> NeuronSpec:
    if cfg.name not in NEURONS:
        raise UsageError(f"unknown --neuron '{cfg.name}'; valid: {', '.join(NEURONS.names())}")
    return NEURONS.get(cfg.name)


def check_config(cfg: NeuronConfig) -> dict:
    """The typed options of ``cfg``; :class:`UsageError` for an unknown neuron, option or value, or a backend that
    has no kernel for this neuron (neurons without kernels take only ``auto``)."""
    spec = _spec(cfg)
    if spec.kernel is not None:
        kernels.check(spec.kernel, cfg.backend)
    elif cfg.backend != "auto":
        raise UsageError(f"--backend {cfg.backend}: --neuron {cfg.name} runs plain torch ops and has no kernel "
                         "backends; use --backend auto")
    return cfg.options(spec.options)


def build_neuron(cfg: NeuronConfig, features: tuple[int, ...] = ()) -> nn.Module:
    """The neuron ``cfg.name`` for inputs ``[T, N, *features]`` (see :func:`check_config`)."""
    return _spec(cfg).build(cfg, tuple(features), **check_config(cfg))


def resolve_backend(cfg: NeuronConfig, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """The backend that the neuron of ``cfg`` runs on ``device`` / ``dtype`` (``auto`` resolved; ``torch`` for
    neurons without kernels); raises :class:`UsageError` (one line) if a named backend cannot run here."""
    spec = _spec(cfg)
    check_config(cfg)
    if spec.kernel is None:
        return "torch"
    return kernels.resolve(spec.kernel, cfg.backend, device, dtype, cfg.make_surrogate())


def names() -> list[str]:
    return NEURONS.names()


__all__ = ["NEURONS", "SPIKING_TYPES", "NeuronConfig", "NeuronSpec", "IFNode", "LIFNode", "build_neuron",
           "check_config", "names", "resolve_backend"]
