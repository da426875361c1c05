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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UsageError
from common.layers import MultiStep, fold, unfold
from common.methods import METHODS
from common.methods.bptt import BPTT
from common.neuron.if_lif import IFNode

_SYNAPSES = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_HOW = "use --neuron if --v-reset none --norm bn"


class TandemLayer(nn.Module):
    """One ``synapse -> BN -> IF(soft reset)`` block trained by tandem learning (equations: module docstring)."""

    def __init__(self, synapse: nn.Module, bn: nn.Module, neuron: IFNode):
        super().__init__()
        self.synapse, self.bn, self.neuron = synapse, bn, neuron

    def folded_bn(self, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, shift)`` of the eval-mode BN ``y = k z + shift``, shaped to broadcast over ``[C, *space]``."""
        bn = self.bn
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
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


def _inner(module: nn.Module) -> nn.Module:
    return module[0] if isinstance(module, MultiStep) and len(module) == 1 else module


def _fuse(synapse: nn.Module, norm: nn.Module, neuron: nn.Module, bn_momentum: float | None) -> TandemLayer:
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
    return TandemLayer(synapse, norm, neuron)


def to_tandem(model: nn.Sequential, bn_momentum: float | None = None) -> nn.Sequential:
    """The task's SNN (an ``nn.Sequential`` with ``activation_layers()``) with every ``synapse -> norm -> neuron``
    block replaced by a :class:`TandemLayer` (same parameter objects; BN momentum set to ``bn_momentum``); the
    other layers are kept. Raises :class:`UsageError` (one line) for neurons other than soft-reset IF or norms other
    than BN."""
    acts = {id(m) for m in model.activation_layers()}
    layers, out, i = list(model), [], 0
    while i < len(layers):
        if i + 2 < len(layers) and id(layers[i + 2]) in acts:
            out.append(_fuse(*layers[i:i + 3], bn_momentum))
            i += 3
        elif id(layers[i]) in acts:
            raise UsageError("--method tandem needs a synapse and a norm before every neuron")
        else:
            out.append(layers[i])
            i += 1
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
