"""scf10/train.py end to end on a tiny fake CIFAR10: one short epoch per survey column, rejected combinations,
and ``--sop`` on a checkpoint in both modes."""
import json
from pathlib import Path

import pytest

from common import survey
from common.errors import UsageError
from common.runlog import read_metrics
from scf10 import train
from tests.fakedata import smoke_args

C = 8
# survey column -> flags (README "sequential CIFAR10" table)
COLUMNS = {cell.column: survey.method_flags(cell) for cell in survey.select("scf10", "accuracy")}  # table of record


pytestmark = pytest.mark.usefixtures("cifar10_no_md5")


def small(data_dir, out_dir, *extra):
    return smoke_args(data_dir, out_dir, *extra, channels=C)


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_each_survey_column_trains_one_epoch(column, cifar10_dir, tmp_path):
    summary = train.main(small(cifar10_dir, tmp_path, *COLUMNS[column]))
    run_dir = Path(summary["run_dir"])
    assert run_dir.name.startswith("scf10_") and f"_c{C}_" in run_dir.name
    (row,) = read_metrics(run_dir / "metrics.csv")
    assert row["train_samples_per_s"] > 0 and 0.0 <= row["test_acc"] <= 1.0


@pytest.mark.parametrize("flags,match", [
    (["-T", "4"], "T is the image width 32"),
    (["--method", "online", "--neuron", "psn"], "one time step at a time"),
    (["--method", "tandem"], "no 'tandem' variant"),
    (["--method", "ann"], "no 'ann' variant"),
])
def test_impossible_combinations_are_rejected(flags, match, cifar10_dir, tmp_path):
    with pytest.raises(UsageError, match=match):
        train.main(small(cifar10_dir, tmp_path, *flags))


def test_sop_of_a_checkpoint_in_both_modes(cifar10_dir, tmp_path, capsys):
    run_dir = Path(train.main(small(cifar10_dir, tmp_path, "--limit-batches", "1"))["run_dir"])
    results = {mode: train.main(small(cifar10_dir, tmp_path, "--sop", "--resume", str(run_dir), "--sop-mode", mode))
               for mode in ("corrected", "paper")}
    assert "SOP" in capsys.readouterr().out
    stored = json.loads((run_dir / "sop.json").read_text())
    assert set(stored) == {"corrected", "paper"}
    paper, corrected = results["paper"], results["corrected"]
    # per step: conv1 (first layer) 3*3*C + C (paper) / 3*3*C*32 (corrected), conv2-6 3*C*C + C / 3*C*C*L
    assert [x["ops_per_step"] for x in paper["per_layer"]] == [9 * C + C] + [3 * C * C + C] * 5 + [
        8 * C * 2 * C + 2 * C, 2 * C * 10 + 10]
    assert [x["ops_per_step"] for x in corrected["per_layer"]][:4] == [9 * C * 32, 3 * C * C * 32,
                                                                       3 * C * C * 32, 3 * C * C * 16]
    assert paper["first_layer_flop_m"] == pytest.approx(32 * (9 * C + C) / 1e6)
    for res in results.values():
        expected = sum(x["rate"] * x["ops_per_step"] * 32 for x in res["per_layer"][1:]) / 1e6
        assert res["sop_m_per_sample"] == pytest.approx(expected)
        assert res["acc"] == pytest.approx(read_metrics(run_dir / "metrics.csv")[0]["test_acc"])


def test_sop_of_an_online_checkpoint_runs_step_by_step(cifar10_dir, tmp_path):
    flags = COLUMNS["OSR"] + ["--limit-batches", "1"]
    run_dir = Path(train.main(small(cifar10_dir, tmp_path, *flags))["run_dir"])
    res = train.main(small(cifar10_dir, tmp_path, *flags, "--sop", "--resume", str(run_dir)))
    assert all(x["steps_per_sample"] == 32 for x in res["per_layer"])
    assert res["acc"] == pytest.approx(read_metrics(run_dir / "metrics.csv")[0]["test_acc"])
