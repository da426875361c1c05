"""speed/bench.py writes to a new untracked folder by default; the committed speed/results change only via --out."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from speed import bench

ROOT = Path(__file__).resolve().parents[2]


def test_default_out_is_a_new_folder_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = bench.parse_args(["--device", "cpu"])
    assert args.out.parts[:2] == ("runs", "bench") and args.out.name.startswith("cpu-")
    assert not args.out.exists()
    args.out.mkdir(parents=True)  # a second run in the same second gets its own folder
    second = bench.default_out("cpu")
    assert second != args.out and not second.exists()


def test_small_default_run_leaves_the_committed_results_alone(tmp_path, monkeypatch):
    committed = ROOT / "speed" / "results" / "cpu" / "bench.csv"
    before = hashlib.sha256(committed.read_bytes()).hexdigest() if committed.exists() else None
    monkeypatch.chdir(tmp_path)
    bench.main(["--impl", "loop", "--T", "2", "--N", "16", "--mode", "infer", "--repeats", "2", "--no-plots",
                "--no-malloc-tuning", "--threads", "0"])
    (out,) = (tmp_path / "runs" / "bench").iterdir()
    assert (out / "bench.csv").exists()
    after = hashlib.sha256(committed.read_bytes()).hexdigest() if committed.exists() else None
    assert after == before


def test_unknown_impl_is_a_usage_error_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(["--impl", "loop,bogus", "--out", str(tmp_path / "b")])
    assert stop.value.code == 2 and "--impl: unknown bogus" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
