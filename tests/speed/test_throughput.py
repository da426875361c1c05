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
