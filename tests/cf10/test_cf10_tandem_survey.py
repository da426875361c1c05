"""Tandem as in the run behind the survey's 89.68 % (issue 13 §2.6): spike-count readout, the authors' layers, and
the survey's SOP count of pool4, each checked against hand/NumPy formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cf10 import model as cf10_model
from cf10 import train
from common.methods.tandem import CountReadout, TandemLayer, TandemPool
from common.sop import SopOptions, count_sops
from common.state import reset_net
from common.task import mean_over_time

T = 4


def tandem(*quirks, channels=4):
    torch.manual_seed(0)
    flags = [f for q in quirks for f in ("--survey-quirk", q)]
    args = train.build_parser().parse_args(["--device", "cpu", "-T", str(T), "--channels", str(channels),
                                            "--method", "tandem", *flags])
    return cf10_model.build(args, "tandem")


def images(n=3, seed=1):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2


def test_count_readout_is_w_count_plus_b_and_its_weight_gradient_is_g_count():
    net = tandem("tandem_count_readout").train()
    readout = net[-1]
    assert isinstance(readout, CountReadout)
    seen = {}
    readout.linear.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0].detach().numpy()))
    reset_net(net)
    logits = mean_over_time(net(train.repeat_over_time(images(), T)))
    count = seen["x"].sum(0)  # [N, F] spike counts entering the output layer
    W, b = readout.linear.weight.detach().numpy(), readout.linear.bias.detach().numpy()
    np.testing.assert_allclose(logits.detach().numpy(), count @ W.T + b, rtol=1e-5, atol=1e-5)
    g = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    (logits * g).sum().backward()
    np.testing.assert_allclose(readout.linear.weight.grad.numpy(), g.numpy().T @ count, rtol=1e-5, atol=1e-5)
    rate = tandem()  # default: the rate readout W c / T + b, whose weight gradient is g^T c / T
    assert not isinstance(rate[-1], CountReadout)


def test_authors_layers_init_eps_bias_and_fold_without_eps():
    net = tandem("tandem_authors_layers", channels=64)
    blocks = [m for m in net if isinstance(m, TandemLayer)]
    assert len(blocks) == 7 and all(b.bn.eps == 1e-4 and b.bn.momentum == 0.9 for b in blocks)
    assert all(b.synapse.bias is not None for b in blocks)
    gammas = torch.cat([b.bn.weight.detach() for b in blocks[:6]])
    assert abs(float(gammas.mean())) < 0.4 and float(gammas.std()) == pytest.approx(2.0, rel=0.12)
    assert sum(isinstance(m, TandemPool) for m in net) == 2
    # the SNN path of one block: I = k W x + (k b + beta - k mu) / T with k = gamma / sqrt(run_var) (no eps)
    block = blocks[1]
    with torch.no_grad():
        block.bn.running_mean.uniform_(-0.5, 0.5)
        block.bn.running_var.uniform_(0.01, 0.02)  # small variances: eps 1e-4 would change k by ~0.5 %
    seen = {}
    block.neuron.register_forward_pre_hook(lambda m, inp: seen.update(i=inp[0].detach().numpy()))
    x = (torch.rand(T, 2, 64, 32, 32, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    block.eval()
    reset_net(block)
    with torch.no_grad():
        block(x)
    gamma, beta = block.bn.weight.detach().numpy(), block.bn.bias.detach().numpy()
    k = gamma / np.sqrt(block.bn.running_var.numpy())
    conv = nn.functional.conv2d(x.flatten(0, 1), block.synapse.weight.detach(), padding=1).numpy()
    conv = conv.reshape(T, 2, 64, 32, 32)
    shift = k * block.synapse.bias.detach().numpy() + beta - k * block.bn.running_mean.numpy()
    expected = k[:, None, None] * conv + (shift / T)[:, None, None]
    np.testing.assert_allclose(seen["i"], expected, rtol=1e-4, atol=1e-5)


def test_paper_sop_counts_pool4_twice_only_with_the_authors_layers():
    """The survey's hooks see pool4 on the spike train and on the counts: conv5's paper-mode rate is
    (sum spikes + sum counts) / (T n + n) = 2T / (T + 1) times its spike rate (1.6 at T = 4)."""
    loader = [(images(4, 5), torch.zeros(4, dtype=torch.long))]
    encode = lambda x: train.repeat_over_time(x, T)  # noqa: E731

    def conv5(net, mode):
        result = count_sops(net, loader, encode, mean_over_time, SopOptions(mode, static_input=True))
        convs = [e for e in result["per_layer"] if e["type"] == "Conv2d"]
        return convs[3]["rate"]

    authors = tandem("tandem_authors_layers", channels=8)
    ratio = conv5(authors, "paper") / conv5(authors, "corrected")
    assert conv5(authors, "corrected") > 0
    assert ratio == pytest.approx(2 * T / (T + 1), rel=1e-9)
    plain = tandem(channels=8)
    assert conv5(plain, "paper") == pytest.approx(conv5(plain, "corrected"), rel=1e-9)
