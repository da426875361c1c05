import math
import time

import pytest
import torch

from common import timing


class FakeClock:
    """A clock (seconds) that the timed function advances by a scripted amount per call."""

    def __init__(self, durations_s):
        self.now = 100.0
        self.durations = list(durations_s)
        self.calls = 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.durations[self.calls]
        self.calls += 1


def test_median_and_iqr_hand_computed():
    # sorted: 1 2 3 4 10 -> median 3; q25 = 2, q75 = 4 (linear interpolation at positions 1 and 3) -> IQR 2
    t = timing.Timing.from_times([4.0, 1.0, 10.0, 3.0, 2.0])
    assert t.median_ms == 3.0 and t.iqr_ms == 2.0
    # four values 1 2 3 5: median 2.5; q25 at position 0.75 -> 1.75; q75 at 2.25 -> 3.5; IQR 1.75
    t = timing.Timing.from_times([5.0, 1.0, 3.0, 2.0])
    assert t.median_ms == 2.5 and t.iqr_ms == pytest.approx(1.75)


def test_warmup_not_timed_and_seconds_become_ms():
    # warm-up call takes 9 s and must not appear; timed calls take 1, 2, 3 ms
    clock = FakeClock([9.0, 0.001, 0.002, 0.003])
    t = timing.time_call(clock.work, "cpu", repeats=3, warmup=1, clock=clock)
    assert clock.calls == 4
    assert t.times_ms == pytest.approx((1.0, 2.0, 3.0))
    assert t.median_ms == pytest.approx(2.0) and t.iqr_ms == pytest.approx(1.0)


def test_max_seconds_stops_after_min_repeats():
    clock = FakeClock([0.0] + [0.5] * 10)
    t = timing.time_call(clock.work, "cpu", repeats=10, warmup=1, max_seconds=1.2, min_repeats=2, clock=clock)
    assert len(t.times_ms) == 3  # 0.5 + 0.5 = 1.0 s <= 1.2 s, the third call crosses it


def test_sleep_measured_in_milliseconds():
    t = timing.time_call(lambda: time.sleep(0.02), "cpu", repeats=5, warmup=1)
    assert 19.0 <= t.median_ms < 40.0
    assert t.iqr_ms >= 0.0


@pytest.mark.skipif(not timing.cpu_rss_supported(), reason="needs /proc/self/clear_refs")
def test_cpu_peak_memory_in_mib():
    nbytes = 64 * 2**20  # a 64 MiB tensor, written so every page is resident

    def alloc():
        x = torch.ones(nbytes // 4)
        return float(x[-1])

    peak = timing.peak_memory_mb(alloc, "cpu")
    if math.isnan(peak):
        pytest.skip("clear_refs not writable here")
    assert 60.0 <= peak <= 72.0
    assert timing.peak_memory_mb(lambda: None, "cpu") < 8.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_units():
    x = torch.ones(2**22, device="cuda")  # 16 MiB
    t = timing.time_call(lambda: x.mul(2.0), "cuda", repeats=5)
    assert 0.0 < t.median_ms < 100.0
    assert timing.peak_memory_mb(lambda: x.mul(2.0), "cuda") == pytest.approx(16.0, abs=0.5)
