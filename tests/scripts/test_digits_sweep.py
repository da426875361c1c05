import csv
import json

import pytest

from common.errors import UsageError
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


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_merge_reuse_message_and_one_meaning_of_seconds(tmp_path, capsys):
    base = ["--epochs", "1", "--channels", "4", "--jobs", "1", "--out", str(tmp_path)]
    first = digits_sweep.main(["--sg", "atan", *base])
    digits_sweep.main(["--sg", "sigmoid", *base])  # another surrogate: added, atan's row kept
    assert [r["surrogate"] for r in _csv(tmp_path / "digits_sweep.csv")] == ["atan", "sigmoid"]
    capsys.readouterr()
    again = digits_sweep.main(["--sg", "atan", *base])
    out = capsys.readouterr().out
    assert "atan: best test accuracy" in out and "reused the finished run" in out
    assert again[0]["seconds"] == first[0]["seconds"] > 0  # training time of the run, not the time to reuse it
    digits_sweep.main(["--sg", "atan", *base[:-2], "--T", "2", "--out", str(tmp_path)])  # other settings: new row
    rows = _csv(tmp_path / "digits_sweep.csv")
    assert [(r["surrogate"], r["T"]) for r in rows] == [("atan", "4"), ("sigmoid", "4"), ("atan", "2")]
    digits_sweep.main(["--sg", "atan", *base, "--backend", "torch"])  # another backend: its own row too
    rows = _csv(tmp_path / "digits_sweep.csv")
    assert [(r["surrogate"], r["T"], r["backend"]) for r in rows][-1] == ("atan", "4", "torch") and len(rows) == 4


def test_a_run_recorded_with_other_settings_is_not_reused(tmp_path):
    base = ["--sg", "atan", "--epochs", "1", "--channels", "4", "--jobs", "1", "--out", str(tmp_path)]
    digits_sweep.main(base)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    recorded = json.loads((run_dir / "args.json").read_text())
    (run_dir / "args.json").write_text(json.dumps({**recorded, "label_smoothing": 0.1}))
    with pytest.raises(UsageError, match=r"trained with other settings: --label-smoothing 0.0 \(recorded 0.1\)"):
        digits_sweep.main(base)
