"""TEBN and OSR normalisations: numpy references, one-step-at-a-time OSR, running statistics, eval mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.norm import NORMS, OSR, TEBN, build_norm
from common.state import reset_net

EPS = 1e-5


def test_registered():
    assert {"bn", "tebn", "osr"} <= set(NORMS.names())
    assert isinstance(build_norm("tebn", 3, T=2, dim=1), TEBN)
    assert isinstance(build_norm("osr", 3, T=2, dim=2), OSR)


# ----------------------------------------------------------------------------------------- TEBN
def test_tebn_hand_values_and_gradients():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, (2, 4, 3, 5))  # [T, N, C, L]
    norm = TEBN(3, T=2, dim=1).double()
    with torch.no_grad():
        norm.p.copy_(torch.tensor([0.5, 2.0]).view(2, 1, 1, 1))
    xt = torch.tensor(x, requires_grad=True)
    y = norm(xt)
    mean = x.mean(axis=(0, 1, 3), keepdims=True)  # statistics over T*N and length
    var = x.var(axis=(0, 1, 3), keepdims=True)  # biased, as BatchNorm normalises
    ref = (x - mean) / np.sqrt(var + EPS) * np.array([0.5, 2.0]).reshape(2, 1, 1, 1)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    (y * torch.randn_like(y)).sum().backward()
    for param in (norm.p, norm.bn[0].weight, norm.bn[0].bias):
        assert param.grad.abs().sum() > 0
    assert norm.p.shape == (2, 1, 1, 1)


def test_tebn_shapes_and_T_check():
    norm = TEBN(4, T=3, dim=2)
    assert norm.p.shape == (3, 1, 1, 1, 1)
    assert norm(torch.randn(3, 2, 4, 5, 5)).shape == (3, 2, 4, 5, 5)
    with pytest.raises(ValueError):
        norm(torch.randn(2, 2, 4, 5, 5))


# ----------------------------------------------------------------------------------------- OSR
def osr_reference_step(x, run_mean, run_var, gamma, beta):
    """Documented formula for one training step on x [N, C, ...] (numpy)."""
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu, var = x.mean(axis=axes), x.var(axis=axes, ddof=1)
    sd = np.sqrt(var + EPS)
    r = np.clip(sd / np.sqrt(run_var + EPS), 0.2, 5.0)
    d = (mu - run_mean) * r / sd
    xhat = (x - mu.reshape(shape)) / sd.reshape(shape)
    y = gamma.reshape(shape) * (r.reshape(shape) * xhat + d.reshape(shape)) + beta.reshape(shape)
    return y, mu, var


def test_osr_training_step_and_running_stats():
    rng = np.random.default_rng(1)
    T, C = 3, 2
    x = rng.normal(0.5, 3.0, (T, 4, C, 3, 3))
    run_mean, run_var = np.array([0.2, -0.1]), np.array([0.5, 40.0])  # second channel exercises the clip
    gamma, beta = np.array([1.5, 0.7]), np.array([0.1, -0.2])
    norm = OSR(C, T=T).double()
    with torch.no_grad():
        norm.run_mean.copy_(torch.tensor(run_mean))
        norm.run_var.copy_(torch.tensor(run_var))
        norm.gamma.copy_(torch.tensor(gamma))
        norm.beta.copy_(torch.tensor(beta))
    y = norm(torch.tensor(x))
    mus, vars_ = [], []
    for t in range(T):
        ref, mu, var = osr_reference_step(x[t], run_mean, run_var, gamma, beta)
        np.testing.assert_allclose(y[t].detach().numpy(), ref, rtol=1e-10, atol=1e-10)
        mus.append(mu)
        vars_.append(var)
    # running stats untouched until the sequence ends; reset() folds in the sequence statistics at rate 0.1/T
    np.testing.assert_array_equal(norm.run_mean.numpy(), run_mean)
    reset_net(norm)
    mean = np.mean(mus, axis=0)
    var = np.mean(np.array(vars_) + np.array(mus) ** 2, axis=0) - mean**2
    rate = 0.1 / T
    np.testing.assert_allclose(norm.run_mean.numpy(), run_mean + rate * (mean - run_mean), rtol=1e-12)
    np.testing.assert_allclose(norm.run_var.numpy(), run_var + rate * (var - run_var), rtol=1e-12)
    reset_net(norm)  # nothing accumulated: no second update
    np.testing.assert_allclose(norm.run_mean.numpy(), run_mean + rate * (mean - run_mean), rtol=1e-12)


def test_osr_one_step_at_a_time_equals_whole_sequence():
    torch.manual_seed(2)
    x = torch.randn(4, 8, 3, 6) * 2 + 1  # [T, N, C, L]
    whole, steps = OSR(3, T=4, dim=1).double(), OSR(3, T=4, dim=1).double()
    x = x.double()
    y_whole = whole(x)
    y_steps = torch.cat([steps(x[t:t + 1]) for t in range(4)])
    torch.testing.assert_close(y_whole, y_steps, rtol=0, atol=1e-12)
    reset_net(whole)
    reset_net(steps)
    torch.testing.assert_close(whole.run_mean, steps.run_mean)
    torch.testing.assert_close(whole.run_var, steps.run_var)


def test_osr_gradient_goes_through_batch_statistics():
    torch.manual_seed(3)
    x = (torch.randn(1, 16, 2) * 3 + 1).double().requires_grad_()
    norm = OSR(2, T=1, dim=0).double()
    g = torch.randn(1, 16, 2, dtype=torch.float64)
    (norm(x) * g).sum().backward()
    # reference: r and d are constants; xhat = (x - mu_B) / sigma_B carries the gradient
    x2 = x.detach().clone().requires_grad_()
    mu, var = x2.mean(1, keepdim=True), x2.var(1, keepdim=True)
    sd = (var + EPS).sqrt()
    r = (sd / (1 + EPS) ** 0.5).clamp(0.2, 5).detach()
    (((x2 - mu) / sd * r) * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    assert norm.gamma.grad.abs().sum() > 0 and norm.beta.grad.abs().sum() > 0


def test_osr_eval_uses_running_statistics():
    norm = OSR(2, T=4, dim=1).double()
    with torch.no_grad():
        norm.run_mean.copy_(torch.tensor([1.0, -2.0]))
        norm.run_var.copy_(torch.tensor([4.0, 0.25]))
        norm.gamma.copy_(torch.tensor([2.0, 1.0]))
        norm.beta.copy_(torch.tensor([0.0, 0.5]))
    norm.eval()
    x = torch.tensor([[[[3.0], [-1.0]]]], dtype=torch.float64)  # [T=1, N=1, C=2, L=1]
    y = norm(x).flatten()
    assert y[0].item() == pytest.approx(2.0 * (3.0 - 1.0) / np.sqrt(4.0 + EPS))
    assert y[1].item() == pytest.approx((-1.0 + 2.0) / np.sqrt(0.25 + EPS) + 0.5)
    reset_net(norm)  # eval calls accumulate nothing
    assert norm.run_mean.tolist() == [1.0, -2.0]
