import csv

import pytest
import torch

from common import survey
from common.survey import survey_ms
from speed import bench, floor, impls, report


def test_lif_bytes_hand_computed():
    # T=4, N=1000, fp32: infer moves x and s -> 2*4*1000*4 = 32 000 B; train moves x, s, h, h, grad_s, grad_x
    assert floor.lif_bytes("infer", 4, 1000) == 32_000
    assert floor.lif_bytes("train", 4, 1000) == 96_000
    assert floor.lif_bytes("train", 64, 2**16, itemsize=2) == 6 * 64 * 65536 * 2


def test_floor_and_percentage_hand_computed():
    # 96 000 B at 1e9 B/s take 96 us = 0.096 ms; a 0.384 ms implementation reaches 25 % of the floor
    f = floor.floor_ms(96_000, 1e9)
    assert f == pytest.approx(0.096)
    assert floor.percent_of_floor(f, 0.384) == pytest.approx(25.0)


def test_copy_bandwidth_is_positive_and_plausible():
    bw = floor.copy_bandwidth("cpu", nbytes=8 * 2**20, repeats=3)
    assert 1e8 < bw < 1e13


def test_survey_numbers_match_the_spec():
    # spec table: train, power 16 (N = 131072), T = 64: lif 33.174, psn 1.530, cp 1.907 ms; sp_cp 17.40
    assert survey_ms("loop", "train", 64, 131072) == pytest.approx(33.174, abs=1e-3)
    assert survey_ms("psn", "train", 64, 131072) == pytest.approx(1.530, abs=1e-3)
    assert survey_ms("loop", "train", 64, 131072) / survey_ms("spikingjelly-cupy", "train", 64, 131072) == \
        pytest.approx(17.40, abs=0.01)
    assert survey_ms("blockalif-survey-L1", "train", 2, 512) is None  # skipped by the survey (latency + 1 >= T)
    # spec: train, N = 131072, T = 64: BlockALIF 129.53 / 75.94 / 46.71 / 37.90 ms (latency 0, 1, 3, 7)
    assert [round(survey_ms(f"blockalif-survey-L{lat}", "train", 64, 131072), 2) for lat in (0, 1, 3, 7)] == [
        129.53, 75.94, 46.71, 37.90]
    assert survey_ms("fused", "train", 64, 131072) is None
    assert survey_ms("loop", "train", 64, 65536) is None  # N = 2**16 is not in the survey's grid
    lif = survey.find("cf10", "LIF").published
    assert (lif["train_speed"], lif["test_speed"], lif["memory"]) == (1659.5532, 1466.3966, 5009)


def test_loop_lif_hand_computed():
    # one neuron: x = 1.2, 1.2, 0.2 -> h = 0.6 (no spike), 0.9 (no), 0.55 (no); x = 2, 2 -> h = 1 (spike), 1 (spike)
    x = torch.tensor([[1.2], [1.2], [0.2]])
    assert impls.loop_spikes(x).flatten().tolist() == [0.0, 0.0, 0.0]
    assert impls.loop_spikes(torch.full((2, 1), 2.0)).flatten().tolist() == [1.0, 1.0]


@pytest.mark.parametrize("name", ["torch", "fused", "spikingjelly", "snntorch"])
def test_lif_implementations_fire_like_the_loop(name):
    if name in impls.LIF_PEERS:
        pytest.importorskip(name)
    assert bench.spike_mismatch(name, 8, 256, torch.device("cpu"), seed=3) == 0.0


def test_snntorch_threshold_turns_strict_into_nonstrict():
    thr = torch.tensor(impls.snntorch_threshold())
    one = torch.tensor(1.0)
    assert bool(one > thr) and not bool(torch.nextafter(one, torch.tensor(0.0)) > thr)


def test_expand_names():
    names = impls.expand(["loop", "blockalif", "fused"], [0, 3])
    assert names == ["loop", "blockalif-L0", "blockalif-L3", "fused"]
    assert impls.split_latency("alif-L7") == ("alif", 7) and impls.split_latency("fused") == ("fused", None)


def test_bench_smoke_writes_csv_and_markdown(tmp_path, capsys):
    rows = bench.main(["--impl", "loop,fused,psn", "--T", "2,4", "--N", "64", "--mode", "train,infer",
                       "--repeats", "3", "--out", str(tmp_path), "--no-plots", "--no-malloc-tuning",
                       "--threads", "0"])
    with (tmp_path / "bench.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 3 * 2 * 2
    assert set(bench.COLUMNS) <= set(table[0])
    ok = [r for r in table if r["status"] == "ok"]
    assert {r["impl"] for r in ok} == {"loop", "fused", "psn"}
    assert all(float(r["median_ms"]) > 0 and float(r["peak_mem_mb"]) >= 0 for r in ok)
    fused = next(r for r in ok if r["impl"] == "fused" and r["mode"] == "train")
    assert float(fused["pct_of_floor"]) > 0 and fused["spike_mismatch"] == "0"
    md = (tmp_path / "bench.md").read_text()
    assert "Speed-up over the loop LIF" in md and "memory-bandwidth floor" in md


def test_report_speedup_table_layout():
    rows = [dict(impl=i, mode="train", T=4, N=512, median_ms=t, status="ok") for i, t in (("loop", 2.0), ("x", 0.5))]
    table = report.speedup_table(rows, "loop", ["loop", "x"])
    assert table[0] == "| mode | N | T | loop (ms) | x |"
    assert table[2] == "| train | 512 | 4 | 2 | 4 |"


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [dict(impl="loop", mode="infer", T=T, N=64, median_ms=0.1 * T, status="ok") for T in (2, 4)]
    paths = report.plot(rows, tmp_path, "cpu")
    assert [p.name for p in paths] == ["time_vs_T_infer.png"] and paths[0].stat().st_size > 1000
