"""Fused backend: forward without an autograd graph, closed-form BPTT backward (works on any device)."""
from __future__ import annotations

import torch

from common.kernels.params import ChargeParams


def forward_loop(x_seq, v_init, p: ChargeParams):
    """Return ``h_seq`` (membrane before firing), ``spike_seq`` and the membrane after the last step."""
    h_seq = torch.empty_like(x_seq)
    v = v_init
    for t, x in enumerate(x_seq.unbind(0)):
        h = torch.add(x * p.k_x, v, alpha=p.k_v) if p.k_v != 1.0 else x * p.k_x + v
        if p.c != 0.0:
            h = h + p.c
        h_seq[t] = h
        fired = h >= p.v_threshold
        v = torch.where(fired, h - p.v_threshold, h) if p.v_reset is None else torch.where(fired, p.v_reset, h)
    spike_seq = (h_seq >= p.v_threshold).to(x_seq.dtype)
    return h_seq, spike_seq, v


def backward_loop(grad_spike_seq, grad_v_last, h_seq, p: ChargeParams, surrogate):
    """Closed-form BPTT, one time step at a time (each step's tensors stay in cache); returns
    ``(grad_x_seq, grad_v_init)``. With ``sg = g'(h - v_th)`` and ``s = H(h - v_th)``::

        dv/dh = 1 - s + (v_reset - h) sg     (hard reset; the last term only without detach_reset)
        dv/dh = 1 - v_th sg                  (soft reset; 1 with detach_reset)
        grad_h[t] = grad_s[t] sg + grad_v[t] dv/dh,   grad_x[t] = k_x grad_h[t],   grad_v[t-1] = k_v grad_h[t]
    """
    grad_x_seq = torch.empty_like(h_seq)
    grad_v = grad_v_last
    for t in range(h_seq.shape[0] - 1, -1, -1):
        h = h_seq[t]
        over = h - p.v_threshold
        sg = surrogate.derivative(over)
        grad_h = grad_spike_seq[t] * sg
        if p.v_reset is None:
            grad_h += grad_v if p.detach_reset else grad_v * (1.0 - p.v_threshold * sg)
        else:
            through = torch.where(over < 0, grad_v, 0.0)
            if not p.detach_reset:
                through = torch.addcmul(through, grad_v * sg, p.v_reset - h)
            grad_h += through
        torch.mul(grad_h, p.k_x, out=grad_x_seq[t])
        grad_v = grad_h * p.k_v
    return grad_x_seq, grad_v


class FusedMultiStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v_init, p: ChargeParams, surrogate):
        with torch.no_grad():
            h_seq, spike_seq, v_last = forward_loop(x_seq, v_init, p)
        ctx.save_for_backward(h_seq)
        ctx.p, ctx.surrogate = p, surrogate
        return spike_seq, v_last

    @staticmethod
    def backward(ctx, grad_spike_seq, grad_v_last):
        (h_seq,) = ctx.saved_tensors  # an unused output's gradient arrives zero-filled (materialize_grads default)
        grad_x_seq, grad_v_init = backward_loop(grad_spike_seq, grad_v_last, h_seq, ctx.p, ctx.surrogate)
        return grad_x_seq, grad_v_init, None, None


def fused_multistep(x_seq: torch.Tensor, v_init: torch.Tensor, p: ChargeParams, surrogate):
    """One autograd node for the whole sequence; saves only ``h_seq``."""
    return FusedMultiStep.apply(x_seq, v_init, p, surrogate)
