"""shd/train.py end to end on a synthetic SHD folder: one epoch (subprocess), SOP, fixed-T padding, OneCycle."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.errors import UsageError
from shd import model as shd_model
from shd import train
from tests.shd.fake_shd import write_fake_shd

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shd_data")
    write_fake_shd(root, n_train=24, n_test=12, seed=5)
    return root


def args_for(shd_dir, *extra):
    return ["--data-dir", str(shd_dir), "--device", "cpu", "-j", "0", "-b", "8", *extra]


def test_one_epoch_subprocess_then_sop(shd_dir, tmp_path):
    cmd = [sys.executable, str(ROOT / "shd" / "train.py"), *args_for(shd_dir, "--epochs", "1", "--limit-batches", "2",
                                                                    "--out-dir", str(tmp_path), "--run-name", "r")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and 0 <= summary["best_test_acc"] <= 1
    assert len((run / "metrics.csv").read_text().splitlines()) == 2
    assert json.loads((run / "args.json").read_text())["task"] == "shd"

    result = train.main(args_for(shd_dir, "--sop", "--resume", str(run)))
    lin = result["per_layer"]
    assert [layer["ops_per_step"] for layer in lin] == [140 * 256, 256 * 256, 256 * 20]
    expected = sum(layer["rate"] * layer["ops_per_step"] for layer in lin) / 1e6
    assert result["sop_m_per_step"] == pytest.approx(expected)
    assert "corrected" in json.loads((run / "sop.json").read_text())


def _task(shd_dir, *extra):
    return train.build_task(train.cli.parse(train.build_parser(), args_for(shd_dir, *extra)))


def test_batches_pad_to_their_longest_sample_and_carry_lengths(shd_dir):
    task = _task(shd_dir)
    batch = [task.train_set[i] for i in range(3)]
    x, y, extras = task.train_collate(batch)
    assert x.shape[0] == max(len(x) for x, _ in batch)
    assert extras["lengths"].tolist() == [len(x) for x, _ in batch]
    assert task.model.features[1].__class__.__name__ != "PadToLength"
    if "tebn" in train.cli.norm.names():
        assert isinstance(_task(shd_dir, "--norm", "tebn").model.features[1], shd_model.PadToLength)
    with pytest.raises(UsageError, match="shorter than the longest"):
        _task(shd_dir, "-T", "3").build_data()


def test_the_model_is_built_without_the_data(tmp_path):
    task = train.build_task(train.cli.parse(train.build_parser(), args_for(tmp_path / "missing")))
    assert sum(p.numel() for p in task.model.parameters()) > 0  # no dataset was needed


def test_one_cycle_schedule_as_survey(shd_dir):
    args = train.cli.parse(train.build_parser(), args_for(shd_dir))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=args.lr)
    scheduler, interval = train.one_cycle(opt, args, steps_per_epoch=32)
    lrs = []
    for _ in range(args.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert interval == "epoch" and args.epochs == 150
    assert lrs[0] == pytest.approx(2e-4) and max(lrs) == pytest.approx(5e-3) and lrs.index(max(lrs)) == 44
    assert lrs[-1] == pytest.approx(2e-8, rel=1e-3)
