import csv
from pathlib import Path

import pytest

from speed import throughput

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_task_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        throughput.main(["--tasks", "nosuchtask", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "nosuchtask" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cf10_lif_smoke(tmp_path):
    rows = throughput.main(["--tasks", "cf10", "--methods", "LIF", "--channels", "4", "-b", "2", "-T", "2",
                            "--steps", "1", "--out", str(tmp_path), "--threads", "0"])
    assert rows[0]["status"] == "ok", rows[0]["status"]
    assert rows[0]["train_samples_per_s"] > 0 and rows[0]["test_samples_per_s"] > 0
    with (tmp_path / "throughput.csv").open() as f:
        table = list(csv.DictReader(f))
    assert table[0]["method"] == "LIF" and float(table[0]["survey_train_samples_per_s"]) == pytest.approx(1659.5532)


def test_methods_are_the_table_of_record_cells():
    """The throughput rows time the survey runs' own configurations (quirks and options included)."""
    cf10, scf10 = throughput.METHODS["cf10"], throughput.METHODS["scf10"]
    assert list(cf10) == ["IF", "LIF", "CLIF", "PSN", "TEBN", "OSR", "BlockALIF", "Tandem", "KD-response",
                          "KD-feature"]
    assert list(scf10) == ["IF", "LIF", "CLIF", "PSN", "TEBN", "OSR", "BlockALIF"]
    assert "clif_sigmoid_carry" in cf10["CLIF"] and "clif_sigmoid_carry" in scf10["CLIF"]
    assert "latency=1" in cf10["BlockALIF"] and "latency=3" in scf10["BlockALIF"]
    assert "blockalif_frozen_b" in cf10["BlockALIF"] and "ots_batch_eval" in cf10["OSR"]
    assert "--teacher" not in cf10["KD-response"] and "--epochs" not in cf10["LIF"]


def test_survey_timing_times_a_loader_pass_with_the_python_loop_clif(tmp_path):
    rows = throughput.main(["--tasks", "cf10", "--methods", "clif", "--channels", "2", "-b", "2", "-T", "2",
                            "--steps", "2", "--out", str(tmp_path), "--survey-timing"])
    assert rows[0]["status"] == "ok", rows[0]["status"]
    assert rows[0]["flags"].endswith("--backend torch") and rows[0]["method"] == "CLIF"
    with pytest.raises(SystemExit):
        throughput.parse_args(["--tasks", "scf10", "--methods", "Tandem"])
