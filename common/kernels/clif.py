"""CLIF kernels (kind ``clif``): ``torch`` (autograd loop, the reference), ``fused`` (torch ops, one autograd
node) and ``cupy``; registered in :mod:`common.kernels`.

Recurrence (``gamma = 1 - 1/tau``, ``leak = 1 - gamma``; nothing detached)::

    h[t] = gamma u[t-1] + x[t];   s[t] = H(h[t] - v_th)
    m[t] = m[t-1] sigmoid(leak h[t]) + s[t];   u[t] = h[t] - s[t] (v_th + sigmoid(m[t]))
    (sigmoid_carry: the carried state is sigmoid(m[t]) instead of m[t])

``fused`` and ``cupy`` save only ``h_seq`` (and the ``[N]`` initial ``m``); backward recomputes ``m[t]`` from it and
runs BPTT through ``u`` and ``m``: with ``b = sigmoid(m[t])``, ``a = sigmoid(leak h[t])``, ``m'`` the carried m[t-1],
``g_m`` / ``g_u`` the gradients arriving at the carried m[t] / u[t]::

    g_mraw = g_m - g_u s b (1 - b)        (sigmoid_carry: (g_m - g_u s) b (1 - b))
    g_s    = grad_s[t] + g_mraw - g_u (v_th + b)
    g_h    = g_u + g_s g'(h - v_th) + g_mraw m' a (1 - a) leak
    grad_x[t] = g_h;  g_u <- gamma g_h;  g_m <- a g_mraw
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from common.kernels import cupy_codegen as cg
from common.kernels import cupy_ops


@dataclass(frozen=True)
class ClifParams:
    gamma: float
    v_threshold: float
    sigmoid_carry: bool = False

    @classmethod
    def from_tau(cls, tau=2.0, v_threshold=1.0, sigmoid_carry=False) -> ClifParams:
        return cls(1.0 - 1.0 / tau, v_threshold, sigmoid_carry)

    @property
    def leak(self) -> float:
        return 1.0 - self.gamma


def clif_torch(x_seq, u_init, m_init, p: ClifParams, surrogate):
    """Autograd through every step (reference)."""
    u, m, spikes = u_init, m_init, []
    for x in x_seq.unbind(0):
        u = p.gamma * u + x
        s = surrogate(u - p.v_threshold)
        m = m * torch.sigmoid(p.leak * u) + s
        sig_m = torch.sigmoid(m)
        u = u - s * (p.v_threshold + sig_m)
        m = sig_m if p.sigmoid_carry else m
        spikes.append(s)
    return torch.stack(spikes), u, m


def _forward_loop(x_seq, u, m, p: ClifParams):
    h_seq = torch.empty_like(x_seq)
    for t, x in enumerate(x_seq.unbind(0)):
        h = p.gamma * u + x
        h_seq[t] = h
        s = (h >= p.v_threshold).to(h.dtype)
        m = m * torch.sigmoid(p.leak * h) + s
        sig_m = torch.sigmoid(m)
        u = h - s * (p.v_threshold + sig_m)
        m = sig_m if p.sigmoid_carry else m
    return (h_seq >= p.v_threshold).to(x_seq.dtype), h_seq, u, m


def _backward_loop(grad_spike_seq, grad_u, grad_m, h_seq, m_init, p: ClifParams, surrogate):
    m_raw, m = torch.empty_like(h_seq), m_init
    for t, h in enumerate(h_seq.unbind(0)):  # recompute m[t] before the carry
        m_raw[t] = m * torch.sigmoid(p.leak * h) + (h >= p.v_threshold).to(h.dtype)
        m = torch.sigmoid(m_raw[t]) if p.sigmoid_carry else m_raw[t]
    grad_x_seq = torch.empty_like(h_seq)
    for t in range(h_seq.shape[0] - 1, -1, -1):
        h, over = h_seq[t], h_seq[t] - p.v_threshold
        s, sg = (over >= 0).to(h.dtype), surrogate.derivative(over)
        a, b = torch.sigmoid(p.leak * h), torch.sigmoid(m_raw[t])
        m_prev = m_init if t == 0 else (torch.sigmoid(m_raw[t - 1]) if p.sigmoid_carry else m_raw[t - 1])
        grad_m_raw = (grad_m - grad_u * s) * b * (1 - b) if p.sigmoid_carry else grad_m - grad_u * s * b * (1 - b)
        grad_s = grad_spike_seq[t] + grad_m_raw - grad_u * (p.v_threshold + b)
        grad_h = grad_u + grad_s * sg + grad_m_raw * m_prev * a * (1 - a) * p.leak
        grad_x_seq[t] = grad_h
        grad_u, grad_m = grad_h * p.gamma, grad_m_raw * a
    return grad_x_seq, grad_u, grad_m


def _cupy_forward(x_seq, u_init, m_init, p: ClifParams, variant, store_h: bool):
    spike_seq, u_last, m_last = torch.empty_like(x_seq), torch.empty_like(u_init), torch.empty_like(m_init)
    h_seq = torch.empty_like(x_seq) if store_h else None
    cupy_ops.launch(variant, "fwd", x_seq.device, x_seq=x_seq, u_init=u_init, m_init=m_init,
                    spike_seq=spike_seq, h_seq=h_seq, u_last=u_last, m_last=m_last, gamma=p.gamma, leak=p.leak,
                    v_th=p.v_threshold, steps=x_seq.shape[0], n=u_init.numel())
    return spike_seq, h_seq, u_last, m_last


def _cupy_backward(grad_spike_seq, grad_u, grad_m, h_seq, m_init, p: ClifParams, variant):
    grad_x_seq, grad_u_init, grad_m_init = torch.empty_like(h_seq), torch.empty_like(grad_u), torch.empty_like(grad_m)
    cupy_ops.launch(variant, "bwd", h_seq.device, grad_spike_seq=grad_spike_seq, grad_u_last=grad_u,
                    grad_m_last=grad_m, h_seq=h_seq, m_init=m_init, grad_x_seq=grad_x_seq, grad_u_init=grad_u_init,
                    grad_m_init=grad_m_init, gamma=p.gamma, leak=p.leak, v_th=p.v_threshold, steps=h_seq.shape[0],
                    n=grad_u.numel())
    return grad_x_seq, grad_u_init, grad_m_init


class ClifFused(torch.autograd.Function):
    """One node for the sequence; ``variant`` None runs torch ops, else the generated CUDA kernels."""

    @staticmethod
    def forward(ctx, x_seq, u_init, m_init, p: ClifParams, surrogate, variant):
        if variant is None:
            spike_seq, h_seq, u_last, m_last = _forward_loop(x_seq, u_init, m_init, p)
        else:
            spike_seq, h_seq, u_last, m_last = _cupy_forward(x_seq, u_init, m_init, p, variant, store_h=True)
        ctx.set_materialize_grads(False)  # unused outputs: None gradients, no zero-filled tensors
        ctx.save_for_backward(h_seq, m_init)
        ctx.p, ctx.surrogate, ctx.variant = p, surrogate, variant
        return spike_seq, u_last, m_last

    @staticmethod
    def backward(ctx, grad_spike_seq, grad_u_last, grad_m_last):
        h_seq, m_init = ctx.saved_tensors
        zeros = torch.zeros_like(h_seq[0])
        grad_spike_seq = torch.zeros_like(h_seq) if grad_spike_seq is None else grad_spike_seq.contiguous()
        grad_u = zeros if grad_u_last is None else grad_u_last.contiguous()
        grad_m = zeros if grad_m_last is None else grad_m_last.contiguous()
        if ctx.variant is None:
            grads = _backward_loop(grad_spike_seq, grad_u, grad_m, h_seq, m_init, ctx.p, ctx.surrogate)
        else:
            grads = _cupy_backward(grad_spike_seq, grad_u, grad_m, h_seq, m_init, ctx.p, ctx.variant)
        return (*grads, None, None, None)


def _run(x_seq, u_init, m_init, p: ClifParams, surrogate, variant):
    x_seq = x_seq.contiguous()
    u_init, m_init = u_init.to(x_seq.dtype).contiguous(), m_init.to(x_seq.dtype).contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x_seq, u_init, m_init)):
        return ClifFused.apply(x_seq, u_init, m_init, p, surrogate, variant)
    with torch.no_grad():
        if variant is None:
            spike_seq, _, u_last, m_last = _forward_loop(x_seq, u_init, m_init, p)
        else:
            spike_seq, _, u_last, m_last = _cupy_forward(x_seq, u_init, m_init, p, variant, store_h=False)
    return spike_seq, u_last, m_last


def clif_fused(x_seq, u_init, m_init, p: ClifParams, surrogate):
    """Forward without a graph, closed-form BPTT backward in torch ops (any device); saves only ``h_seq``."""
    return _run(x_seq, u_init, m_init, p, surrogate, None)


def clif_cupy(x_seq, u_init, m_init, p: ClifParams, surrogate):
    """Generated CUDA kernels (one thread per neuron); saves only ``h_seq``."""
    variant = cg.Variant.make("clif", cupy_ops.variant_dtype(x_seq), surrogate, sigmoid_carry=p.sigmoid_carry)
    return _run(x_seq, u_init, m_init, p, surrogate, variant)
