"""The survey's implementations and statistic of its speed study as benchmark options (issue 13 §2.8), against a
NumPy sequential ALIF written from the spec and hand-computed statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speed import bench, impls
from speed.survey_impls import SurveyALIF, SurveyBlocks


def np_alif(x: np.ndarray, latency: int, beta=0.99, p=0.99, b=1.0) -> np.ndarray:
    """Sequential ALIF (spec §2.9) on ``x [N, T]``: input blocked for ``latency`` steps after a spike,
    v = beta v + I, s = H(v - theta) (FastSigmoid forward: v - theta > 0), hard reset, a = p a + s,
    theta = 1 + b a."""
    N, T = x.shape
    v, a, theta, blocked = np.zeros(N), np.zeros(N), np.ones(N), np.zeros(N, dtype=int)
    out = np.zeros((N, T))
    for t in range(T):
        v = beta * v + np.where(blocked == 0, x[:, t], 0.0)
        s = (v - theta > 0).astype(float)
        v = v * (1 - s)
        a = p * a + s
        theta = 1 + b * a
        blocked = np.where(s > 0, latency, np.maximum(blocked - 1, 0))
        out[:, t] = s
    return out


@pytest.mark.parametrize("latency", [0, 1, 3, 7])
@pytest.mark.parametrize("cls", [SurveyBlocks, SurveyALIF])
def test_authors_alif_and_blocks_fire_like_the_sequential_reference(cls, latency):
    x = np.random.default_rng(latency).uniform(0, 1.6, (200, 21))  # T not a multiple of the block length
    with torch.no_grad():
        s = cls(200, latency).double()(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_array_equal(s, np_alif(x, latency))
    assert 0.05 < s.mean() < 0.5


def test_blocks_train_through_beta_and_p():
    node = SurveyBlocks(50, 1)
    node(torch.rand(1, 50, 8) * 2).sum().backward()
    assert node.beta_raw.grad.abs().sum() > 0 and node.p_raw.grad.abs().sum() > 0
    assert node.b_raw.grad.abs().sum() == 0  # b_raw = 1.8: outside the clamp, b = 1 never trains


def test_survey_statistic_is_the_mean_of_the_last_64_of_128_calls():
    assert bench.mean_last_half(list(range(128))) == pytest.approx(sum(range(64, 128)) / 64)
    args = bench.parse_args(["--statistic", "survey", "--out", "/tmp/unused"])
    assert (args.repeats, args.max_seconds) == (128, 0.0)
    rows = [{"impl": "loop", "mode": "train", "T": 4, "N": 8, "status": "ok", "statistic": "survey",
             "median_ms": 1.0, "mean_last_half_ms": 4.0},
            {"impl": "psn", "mode": "train", "T": 4, "N": 8, "status": "ok", "statistic": "survey",
             "median_ms": 1.0, "mean_last_half_ms": 2.0}]
    bench.add_derived(rows, bandwidth=1e9)
    assert rows[1]["speedup_vs_loop"] == pytest.approx(2.0)  # 4 / 2 in the survey's statistic, not 1 / 1


def test_survey_impl_names_and_cpu_availability():
    names = impls.expand(["survey"], [0, 1, 3, 7])
    assert names[:3] == ["loop", "psn", "spikingjelly-cupy"] and "blockalif-survey-L3" in names
    assert "alif-survey-L7" in names and not impls.is_lif("alif-survey-L7")
    with pytest.raises(impls.Unavailable, match="CUDA"):
        impls.build("spikingjelly-cupy", "train", torch.rand(4, 8))
    impls.build("blockalif-survey-L1", "train", torch.rand(4, 8)).run()
