import csv

import pytest

from common.runlog import read_metrics
from scripts import digits_sweep


def test_two_surrogates_one_epoch(tmp_path, capsys):
    argv = ["--sg", "atan", "--sg", "sigmoid", "--epochs", "1", "--channels", "8", "--jobs", "1",
            "--out", str(tmp_path)]
    rows = digits_sweep.main(argv)
    assert [r["surrogate"] for r in rows] == ["atan", "sigmoid"]
    assert all(0 < r["best_test_acc"] <= 1 and r["epochs"] == 1 for r in rows)
    with open(tmp_path / "digits_sweep.csv") as f:
        saved = list(csv.DictReader(f))
    assert [r["surrogate"] for r in saved] == ["atan", "sigmoid"] and float(saved[0]["alpha"]) == 2.0
    assert (tmp_path / "digits_sweep.png").stat().st_size > 0
    run_dirs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert run_dirs == ["digits_bptt_lif_bn_atan_T4_c8_e1_b64_adam_lr0.01_s0",
                        "digits_bptt_lif_bn_sigmoid_T4_c8_e1_b64_adam_lr0.01_s0"]
    for name in run_dirs:  # one epoch already learns something (10 classes: chance is 0.1)
        assert read_metrics(tmp_path / name / "metrics.csv")[0]["train_acc"] > 0.3
    assert "atan" in capsys.readouterr().out
    # a second sweep reuses the finished runs
    again = digits_sweep.main(argv)
    assert [r["best_test_acc"] for r in again] == [r["best_test_acc"] for r in rows]


def test_unknown_surrogate_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid surrogates: .*atan"):
        digits_sweep.main(["--sg", "nope", "--out", str(tmp_path)])
