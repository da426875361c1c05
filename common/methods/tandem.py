r"""Tandem learning (Wu, Chua, Zhang, Li, Li & Tan, "A Tandem Learning Rule for Effective Training and Rapid
Inference of Deep SNNs", IEEE TNNLS 2021): the SNN computes the forward values, an ANN that shares its weights
computes the gradients, layer by layer through the spike counts.

Each ``synapse -> BN -> soft-reset IF`` block of the task's SNN becomes a :class:`TandemLayer`. With the incoming
spike train ``x[t]`` (``[T, N, ...]``) and its count ``c = sum_t x[t]`` (for the input layer ``c = T * image``):

    ANN path (gradient):  a = ReLU(BN(W c + b))                 (BN in train mode: batch statistics, updated)
    SNN path (value):     I[t] = k W x[t] + (k b + beta - k mu) / T     (BN folded with the running statistics:
                                 k = gamma / sqrt(run_var + eps), mu = run_mean; no gradient)
                          h[t] = v[t-1] + I[t],  s[t] = H(h[t] - v_th),  v[t] = h[t] - v_th s[t]   (IF, soft reset)
    output:               s[t] + (a - sg(a)) / T

so ``sum_t I[t]`` is the ANN's pre-activation (with running statistics), the layer's spike count ``sum_t s[t]`` is
what the next layer receives, and ``d count / d a = 1``: the gradient of the count is the gradient of
``ReLU(BN(W c + b))`` evaluated on the previous layer's spike count; no gradient flows through the spike trains.
Stateless layers between blocks (pooling, flatten, the output Linear) act on every step, i.e. linearly on the counts;
the task's readout ``mean_t out[t] = W_out (c / T) + b_out`` is the output layer on the rate.

Survey quirks (the run behind the survey's 89.68 %): ``tandem_count_readout`` -- logits ``W_out c + b_out`` on the
spike count (:class:`CountReadout`; the same forward after rescaling ``W_out`` by T, but the gradients of the lower
layers and the effective learning rate of ``W_out`` differ); ``tandem_authors_layers`` -- the authors' layers: BN
``gamma ~ N(0, 2^2)``, eps 1e-4, folded without eps (``k = gamma / sqrt(run_var)``), pooling run on the spike train
and on the count (:class:`TandemPool`; ``--sop-mode paper`` then counts the pool before a conv twice, as the
survey's hooks did); the task gives convs a bias.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common import quirks
from common.errors import UsageError
from common.layers import MultiStep, fold, unfold
from common.methods import METHODS
from common.methods.bptt import BPTT
from common.neuron.if_lif import IFNode

_SYNAPSES = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_POOLS = (nn.AvgPool1d, nn.AvgPool2d)
_HOW = "use --neuron if --v-reset none --norm bn"
AUTHORS_BN_EPS, AUTHORS_GAMMA_STD = 1e-4, 2.0
quirks.register("tandem_count_readout", "tandem's output layer reads the spike count, logits = W count + b (the "
                "survey's fc10(count)), instead of the rate W count / T + b", ("cf10",))
quirks.register("tandem_authors_layers", "tandem with the authors' lib/snn.py layers: BN gamma ~ N(0, 2^2), eps 1e-4, "
                "folded without eps, biased convs, pooling on spike train and count (--sop-mode paper then counts "
                "the pool before a conv twice, x 2T/(T+1) on that conv's rate)", ("cf10",))


class TandemLayer(nn.Module):
    """One ``synapse -> BN -> IF(soft reset)`` block trained by tandem learning (equations: module docstring)."""

    def __init__(self, synapse: nn.Module, bn: nn.Module, neuron: IFNode, fold_eps: bool = True):
        super().__init__()
        self.synapse, self.bn, self.neuron, self.fold_eps = synapse, bn, neuron, fold_eps

    def folded_bn(self, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, shift)`` of the eval-mode BN ``y = k z + shift``, shaped to broadcast over ``[C, *space]``
        (``k = gamma / sqrt(run_var + eps)``; without ``+ eps`` when not ``fold_eps``, as the authors folded)."""
        bn = self.bn
        k = bn.weight / torch.sqrt(bn.running_var + (bn.eps if self.fold_eps else 0.0))
        shift = bn.bias - bn.running_mean * k
        shape = (-1,) + (1,) * (dims - 1)
        return k.view(shape), shift.view(shape)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        T = x_seq.shape[0]
        ann = F.relu(self.bn(self.synapse(x_seq.sum(0)))) if self.training else None  # updates running stats
        with torch.no_grad():
            z = unfold(self.synapse(fold(x_seq)), T)
            k, shift = self.folded_bn(z.dim() - 2)
            bias = getattr(self.synapse, "bias", None)
            if bias is not None:  # the bias enters once per sample, spread over the T steps like the BN shift
                shift = shift + k * bias.view_as(shift)
                z = z - bias.view_as(k)
            spikes = self.neuron(k * z + shift / T)
        if ann is None:
            return spikes
        return spikes + ((ann - ann.detach()) / T).unsqueeze(0).to(spikes.dtype)


class TandemPool(nn.Module):
    """A pooling layer between tandem blocks as the authors' network runs it, on the spike train (the values) and
    on the spike count ``c = sum_t x[t]`` (the ANN path, which carries the gradient)::

        out[t] = sg(pool(x[t])) + (pool(c) - sg(pool(c))) / T

    The next block sums over time, so its count and gradient equal those of the plain per-step pool."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        T = x_seq.shape[0]
        spikes = unfold(self.pool(fold(x_seq)), T)
        count = self.pool(x_seq.sum(0))
        return spikes.detach() + ((count - count.detach()) / T).unsqueeze(0)


class CountReadout(nn.Module):
    """The output layer on the spike count, ``logits = W c + b`` with ``c = sum_t x[t]`` (the authors' readout),
    as one step ``[1, N, classes]``; computed as ``sum_t (W x[t] + b) - (T - 1) b`` so that the layer sees the
    spike trains (SOP counting)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        out = self.linear(x_seq).sum(0)
        if self.linear.bias is not None:
            out = out - (x_seq.shape[0] - 1) * self.linear.bias
        return out.unsqueeze(0)


def _inner(module: nn.Module) -> nn.Module:
    return module[0] if isinstance(module, MultiStep) and len(module) == 1 else module


def _fuse(synapse: nn.Module, norm: nn.Module, neuron: nn.Module, bn_momentum: float | None,
          authors: bool = False) -> TandemLayer:
    synapse, norm = _inner(synapse), _inner(norm)
    if not isinstance(neuron, IFNode) or neuron.v_reset is not None:
        raise UsageError(f"--method tandem approximates the spike count of soft-reset IF neurons by a ReLU, got "
                         f"{type(neuron).__name__}({neuron.extra_repr()}); {_HOW}")
    if not isinstance(norm, _BATCH_NORMS):
        raise UsageError(f"--method tandem folds BatchNorm into the weights, got {type(norm).__name__}; {_HOW}")
    if not isinstance(synapse, _SYNAPSES):
        raise UsageError(f"--method tandem needs Conv/Linear -> BN -> IF blocks, got {type(synapse).__name__}")
    if bn_momentum is not None:
        norm.momentum = bn_momentum
    if authors:
        norm.eps = AUTHORS_BN_EPS
        nn.init.normal_(norm.weight, 0.0, AUTHORS_GAMMA_STD)
    return TandemLayer(synapse, norm, neuron, fold_eps=not authors)


def _stateless(layer: nn.Module, authors: bool) -> nn.Module:
    """A layer between blocks; the authors' network pools the spike train and the count (:class:`TandemPool`)."""
    return TandemPool(_inner(layer)) if authors and isinstance(_inner(layer), _POOLS) else layer


def to_tandem(model: nn.Sequential, bn_momentum: float | None = None, authors: bool = False,
              count_readout: bool = False) -> nn.Sequential:
    """The task's SNN (an ``nn.Sequential`` with ``activation_layers()``) with every ``synapse -> norm -> neuron``
    block replaced by a :class:`TandemLayer` (same parameter objects; BN momentum set to ``bn_momentum``); the
    other layers are kept. ``authors``: the authors' layers (module docstring); ``count_readout``: the last Linear
    becomes a :class:`CountReadout`. Raises :class:`UsageError` (one line) for neurons other than soft-reset IF or
    norms other than BN."""
    acts = {id(m) for m in model.activation_layers()}
    layers, out, i = list(model), [], 0
    while i < len(layers):
        if i + 2 < len(layers) and id(layers[i + 2]) in acts:
            out.append(_fuse(*layers[i:i + 3], bn_momentum, authors))
            i += 3
        elif id(layers[i]) in acts:
            raise UsageError("--method tandem needs a synapse and a norm before every neuron")
        else:
            out.append(_stateless(layers[i], authors))
            i += 1
    if count_readout:
        if not isinstance(_inner(out[-1]), nn.Linear):
            raise UsageError("--survey-quirk tandem_count_readout needs a Linear output layer")
        out[-1] = CountReadout(_inner(out[-1]))
    return nn.Sequential(*out)


@METHODS.register("tandem")
class Tandem(BPTT):
    """One forward through the tandem network (:func:`to_tandem`; the task builds it as model kind ``tandem``),
    ``L = train_loss(decode(out), target)``, one backward through the ANN path."""

    name = "tandem"
    model_kind = "tandem"

    @classmethod
    def add_args(cls, parser) -> None:
        parser.add_argument("--tandem-bn-momentum", type=float, default=0.9,
                            help="tandem: BatchNorm running-statistics momentum (PyTorch convention; the "
                                 "authors' 0.9 keeps the folded SNN weights close to the batch statistics)")
