import csv
from pathlib import Path

import pytest

from speed import throughput

ROOT = Path(__file__).resolve().parents[2]


def test_missing_task_is_skipped(tmp_path):
    rows = throughput.main(["--tasks", "nosuchtask", "--out", str(tmp_path), "--threads", "0"])
    assert rows[0]["status"].startswith("skipped: nosuchtask/train.py does not exist")
    assert "Not measured" in (tmp_path / "throughput.md").read_text()


@pytest.mark.skipif(not (ROOT / "cf10" / "train.py").exists(), reason="cf10 not written yet")
def test_cf10_lif_smoke(tmp_path):
    rows = throughput.main(["--tasks", "cf10", "--methods", "LIF", "--channels", "4", "-b", "2", "-T", "2",
                            "--steps", "1", "--out", str(tmp_path), "--threads", "0"])
    assert rows[0]["status"] == "ok", rows[0]["status"]
    assert rows[0]["train_samples_per_s"] > 0 and rows[0]["test_samples_per_s"] > 0
    with (tmp_path / "throughput.csv").open() as f:
        table = list(csv.DictReader(f))
    assert table[0]["method"] == "LIF" and float(table[0]["survey_train_samples_per_s"]) == pytest.approx(1659.5532)
