"""speed/memory.py end to end on tiny shapes: files, columns, deterministic saved bytes (no wall-clock checks)."""
from __future__ import annotations

import csv

import pytest
import torch

from speed import memory as bench
from speed import memory_nets

pytest.importorskip("spikingjelly")


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_benchmark_writes_tables_and_plot(tmp_path):
    argv = ["--tasks", "cf10,scf10,shd", "--channels", "4", "-b", "2", "--shd-T", "6", "--rounds", "1",
            "--sweep-T", "2,4", "--sweep-batch", "2", "--threads", "1", "--out", str(tmp_path)]
    threads = torch.get_num_threads()
    try:
        assert bench.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    rows = _rows(tmp_path / "memory.csv")
    variants = {"ours-m0", "ours-m1", "ours-m2", memory_nets.SJ}
    assert {r["variant"] for r in rows if r["task"] == "cf10"} == variants
    assert {r["variant"] for r in rows if r["task"] == "shd"} == variants - {memory_nets.SJ}
    for task in ("cf10", "scf10"):
        saved = {r["variant"]: float(r["saved_MiB"]) for r in rows if r["task"] == task}
        assert saved["ours-m2"] < saved["ours-m1"] < saved["ours-m0"] < saved[memory_nets.SJ]
        sj = next(r for r in rows if r["task"] == task and r["variant"] == memory_nets.SJ)
        assert float(sj["saved_vs_sj"]) == 1.0 and float(sj["time_vs_sj"]) == 1.0
    sweep = _rows(tmp_path / "memory_sweep.csv")
    assert {(r["variant"], r["T"]) for r in sweep} == {(v, T) for v in variants for T in ("2", "4")}
    for variant in variants:  # saved bytes grow with T
        by_T = {r["T"]: float(r["saved_MiB"]) for r in sweep if r["variant"] == variant}
        assert by_T["4"] > by_T["2"]
    assert (tmp_path / "memory_vs_T.png").stat().st_size > 0
    assert "| cf10 | ours-m1 |" in (tmp_path / "memory.md").read_text()


@pytest.mark.parametrize("task", ["cf10", "scf10"])
def test_spikingjelly_twin_has_our_topology(task):
    """Same parameter shapes in the same order, and the same spikes and loss from the same weights."""
    args = type("Args", (), {"channels": 4, "batch_size": 2, "shd_T": 6})()
    cases = {c.variant: c for c in memory_nets.build_cases(task, args, torch.device("cpu"), 2)}
    ours, sj = cases["ours-m0"], cases[memory_nets.SJ]
    assert [p.shape for p in ours.model.parameters()] == [p.shape for p in sj.model.parameters()]
    with torch.no_grad():
        for a, b in zip(sj.model.parameters(), ours.model.parameters()):
            a.copy_(b)
    torch.testing.assert_close(sj.loss(), ours.loss(), rtol=1e-5, atol=1e-6)
