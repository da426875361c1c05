import json
import subprocess
import sys
from pathlib import Path

import pytest

from cf10 import train
from common import checkpoint
from common.errors import UsageError
from common.runlog import read_metrics
from tests.fakedata import skip_cifar10_md5, write_fake_cifar10

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path / "data", n_train=64, n_test=24)
    skip_cifar10_md5(monkeypatch)
    return tmp_path / "data"


def small(data_dir, out_dir, *extra):
    return ["--data-dir", str(data_dir), "--out-dir", str(out_dir), "--device", "cpu", "--workers", "0",
            "--channels", "4", "-T", "2", "-b", "16", "--epochs", "2", "--limit-batches", "3", *extra]


def test_two_epochs_then_resume_reproduces_the_uninterrupted_run(data_dir, tmp_path):
    summary = train.main(small(data_dir, tmp_path / "a"))
    run_a = Path(summary["run_dir"])
    assert run_a.name == "cf10_bptt_lif_bn_atan_T2_c4_e2_b16_sgd_lr0.1_s2020"
    rows_a = read_metrics(run_a / "metrics.csv")
    assert [r["epoch"] for r in rows_a] == [0, 1]
    assert json.loads((run_a / "summary.json").read_text())["finished"]
    assert json.loads((run_a / "args.json").read_text())["task"] == "cf10"
    assert checkpoint.load(run_a / "checkpoint_latest.pt")["epoch"] == 1

    first = train.main(small(data_dir, tmp_path / "b", "--stop-after", "1"))
    run_b = Path(first["run_dir"])
    assert not first["finished"] and [r["epoch"] for r in read_metrics(run_b / "metrics.csv")] == [0]
    train.main(small(data_dir, tmp_path / "b", "--resume", str(run_b)))
    rows_b = read_metrics(run_b / "metrics.csv")
    assert [[r[k] for k in RESULT_KEYS] for r in rows_b] == [[r[k] for k in RESULT_KEYS] for r in rows_a]


def test_ann_variant_trains_one_epoch(data_dir, tmp_path):
    summary = train.main(small(data_dir, tmp_path, "--ann", "--epochs", "1", "--limit-batches", "1"))
    assert Path(summary["run_dir"]).name == "cf10_ann_c4_e1_b16_sgd_lr0.1_s2020"


def test_existing_run_is_not_overwritten(data_dir, tmp_path):
    args = small(data_dir, tmp_path, "--epochs", "1", "--limit-batches", "1", "--auto-augment", "none")
    train.main(args)
    with pytest.raises(UsageError, match="already holds checkpoint"):
        train.main(args)


def test_unknown_surrogate_exits_with_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "cf10" / "train.py"), "--sg", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "unknown surrogate 'nope'" in lines[0] and "atan" in lines[0] and "sigmoid" in lines[0]


def test_tandem_and_sop_paths(data_dir, tmp_path):
    flags = ("--method", "tandem", "--epochs", "1", "--limit-batches", "1")
    run_dir = Path(train.main(small(data_dir, tmp_path, *flags))["run_dir"])
    assert run_dir.name == "cf10_tandem_T2_c4_e1_b16_sgd_lr0.1_s2020"
    result = train.main(small(data_dir, tmp_path, *flags, "--sop", "--resume", str(run_dir)))
    assert 0 <= result["acc"] <= 1 and (run_dir / "sop.json").exists()
