"""Survey quirks of the shared layers (issue 13 §2.1, §2.4, §2.7), each against a NumPy reference written from the
spec's equations, plus the one switch mechanism (``--survey-quirk``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common import cli, quirks
from common.errors import UsageError
from common.neuron import NeuronConfig, build_neuron
from common.norm import OSR, build_norm


# ------------------------------------------------------------------------------------------------- mechanism
def test_quirk_flag_is_checked_against_the_task():
    import cf10.train  # noqa: F401  (registers the cf10 quirks)

    args = cli.parse(cli.base_parser("t", task="cf10"), ["--survey-quirk", "clif_sigmoid_carry", "--device", "cpu"])
    assert quirks.on(args, "clif_sigmoid_carry") and not quirks.on(args, "ots_batch_eval")
    assert NeuronConfig.from_args(args).quirks == {"clif_sigmoid_carry"}
    with pytest.raises(UsageError, match="not a survey quirk of task cf10"):
        cli.parse(cli.base_parser("t", task="cf10"), ["--survey-quirk", "unmasked_padding"])
    with pytest.raises(UsageError, match="--survey-quirk nope"):
        cli.parse(cli.base_parser("t", task="cf10"), ["--survey-quirk", "nope"])


# -------------------------------------------------------------------------------------- §2.1 CLIF sigmoid carry
def np_clif(x: np.ndarray, tau: float, carry_sigmoid: bool) -> np.ndarray:
    """CLIF per step (spec §2.4): u = g u + x; s = H(u - 1); m = m sig((1-g) u) + s; u -= s (1 + sig(m)); with the
    survey's in-place sigmoid_ the carried m is sig(m)."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    g, u, m, out = 1 - 1 / tau, np.zeros_like(x[0]), np.zeros_like(x[0]), []
    for xt in x:
        u = g * u + xt
        s = (u >= 1.0).astype(x.dtype)
        m = m * sig((1 - g) * u) + s
        u = u - s * (1 + sig(m))
        if carry_sigmoid:
            m = sig(m)
        out.append(s)
    return np.stack(out)


@pytest.mark.parametrize("carry", [False, True])
def test_clif_quirk_against_numpy(carry):
    x = np.random.default_rng(0).uniform(0, 2.5, (12, 64))
    cfg = NeuronConfig(name="clif", T=12, quirks=frozenset({"clif_sigmoid_carry"} if carry else ()))
    with torch.no_grad():
        s = build_neuron(cfg, (64,)).double()(torch.from_numpy(x).reshape(12, 1, 64))
    np.testing.assert_array_equal(s.reshape(12, 64).numpy(), np_clif(x, 2.0, carry))
    assert (np_clif(x, 2.0, True) != np_clif(x, 2.0, False)).any()  # the quirk changes the spikes


# ---------------------------------------------------------------------------------------- §2.4 / §2.7 OSR
def np_osr_stats(batches: list[np.ndarray], divide_by: int | None, momentum: float):
    """Running mean/var after folding each ``[L, N, C]`` batch: per step mean and unbiased var over N; the batch's
    mean = sum mu / n, var = sum (var + mu^2) / n - mean^2 with n = steps (or the constant ``divide_by``)."""
    run_mean, run_var = np.zeros(batches[0].shape[-1]), np.ones(batches[0].shape[-1])
    for x in batches:
        mu, var = x.mean(1), x.var(1, ddof=1)
        n = divide_by or len(x)
        mean = mu.sum(0) / n
        v = (var + mu ** 2).sum(0) / n - mean ** 2
        run_mean = run_mean + (1 - momentum) * (mean - run_mean)
        run_var = run_var + (1 - momentum) * (v - run_var)
    return run_mean, run_var


def run_batches(osr: OSR, batches: list[np.ndarray]) -> None:
    osr.train()
    for x in batches:
        osr(torch.from_numpy(x))
        osr.reset()


@pytest.mark.parametrize("stats_over_T", [False, True])
def test_osr_divides_by_the_constant_T_under_the_quirk(stats_over_T):
    rng = np.random.default_rng(1)
    T, batches = 126, [rng.normal(1.0, 2.0, (L, 5, 3)) for L in (88, 100)]
    osr = build_norm("osr", 3, T, 0, frozenset({"osr_stats_over_T"} if stats_over_T else ())).double()
    run_batches(osr, batches)
    mean, var = np_osr_stats(batches, T if stats_over_T else None, 1 - 0.1 / T)
    np.testing.assert_allclose(osr.run_mean.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(osr.run_var.numpy(), var, rtol=1e-12)


def test_osr_fold_timing_quirk_leaves_the_last_training_batch_out_of_evaluation():
    rng = np.random.default_rng(2)
    T, batches = 4, [rng.normal(0.5, 1.5, (4, 6, 2)) for _ in range(3)]
    late = build_norm("osr", 2, T, 0, frozenset({"osr_fold_next_batch"})).double()
    early = build_norm("osr", 2, T, 0).double()
    for osr in (late, early):
        run_batches(osr, batches[:2])
    np.testing.assert_allclose(early.run_mean.numpy(), np_osr_stats(batches[:2], None, 1 - 0.1 / T)[0], rtol=1e-12)
    np.testing.assert_allclose(late.run_mean.numpy(), np_osr_stats(batches[:1], None, 1 - 0.1 / T)[0], rtol=1e-12)
    late.eval()
    late(torch.from_numpy(batches[2]))  # evaluation folds nothing
    late.reset()
    np.testing.assert_allclose(late.run_mean.numpy(), np_osr_stats(batches[:1], None, 1 - 0.1 / T)[0], rtol=1e-12)
    run_batches(late, batches[2:])  # the next training batch folds the pending one first
    np.testing.assert_allclose(late.run_mean.numpy(), np_osr_stats(batches[:2], None, 1 - 0.1 / T)[0], rtol=1e-12)
    np.testing.assert_allclose(late.run_var.numpy(), np_osr_stats(batches[:2], None, 1 - 0.1 / T)[1], rtol=1e-12)


def test_osr_fold_next_batch_uses_both_folded_statistics_on_the_next_batch():
    """The batch that folds the previous one's statistics normalises with the folded mean AND variance (NumPy)."""
    torch.manual_seed(0)
    osr = OSR(3, T=2, dim=1).train()
    osr.use_quirks(frozenset({"osr_fold_next_batch"}))
    x1, x2 = torch.randn(2, 5, 3) * 2 + 1, torch.randn(2, 5, 3)
    osr(x1)
    osr.reset()
    y2 = osr(x2).detach().numpy()
    a, b, eps, m = x1.numpy().astype(np.float64), x2.numpy().astype(np.float64), 1e-5, 1 - 0.1 / 2
    mu1, var1 = a.mean(1), a.var(1, ddof=1)  # per step [T, C]
    mean, var = mu1.mean(0), (var1 + mu1 ** 2).mean(0) - mu1.mean(0) ** 2
    run_mean, run_var = (1 - m) * mean, 1 + (1 - m) * (var - 1)
    mu2, std2 = b.mean(1, keepdims=True), np.sqrt(b.var(1, ddof=1, keepdims=True) + eps)
    r = np.clip(std2 / np.sqrt(run_var + eps), 1 / 5, 5)
    d = (mu2 - run_mean) * r / std2
    np.testing.assert_allclose(y2, (b - mu2) / std2 * r + d, rtol=1e-5, atol=1e-6)
