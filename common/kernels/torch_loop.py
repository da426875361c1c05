"""Reference backend: a plain autograd loop over time steps."""
from __future__ import annotations

import torch

from common.kernels.params import ChargeParams


def torch_multistep(x_seq: torch.Tensor, v_init: torch.Tensor, p: ChargeParams, surrogate):
    """Autograd through every step; iterates ``x_seq.unbind(0)`` (indexing ``x_seq[t]`` makes backward O(T^2))."""
    v = v_init
    spikes = []
    for x in x_seq.unbind(0):
        h = p.k_v * v + p.k_x * x + p.c
        spike = surrogate(h - p.v_threshold)
        s = spike.detach() if p.detach_reset else spike
        v = h - s * p.v_threshold if p.v_reset is None else h * (1.0 - s) + p.v_reset * s
        spikes.append(spike)
    return torch.stack(spikes), v
