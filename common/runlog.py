"""The run directory: ``args.json``, ``metrics.csv``, TensorBoard events and ``summary.json``.

Layout (checkpoints are written by the engine into the same folder)::

    <out-dir>/<run-name>/
        args.json              every flag + "task" + "argv" (+ "resumed_from" after --resume)
        metrics.csv            one row per finished epoch, columns METRIC_COLUMNS (accuracies are fractions)
        events.out.tfevents.*  the same scalars for TensorBoard
        checkpoint_latest.pt   after every epoch;  checkpoint_best.pt  when test_acc improved
        summary.json           {"finished": true, "best_test_acc", "best_epoch", "epochs", ...} after the last epoch
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

METRIC_COLUMNS = (
    "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
    "train_samples_per_s", "test_samples_per_s", "peak_mem_mb", "epoch_time_s",
)


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON via a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a ``metrics.csv`` with numbers parsed (``epoch`` as int, the rest as float)."""
    with open(path, newline="") as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]


class RunLog:
    """Appends per-epoch metrics to ``metrics.csv`` and TensorBoard; a no-op when ``enabled`` is false (rank > 0).

    ``start_epoch > 0`` (a resumed run) drops rows of epochs ``>= start_epoch`` left by an interrupted attempt and
    lets TensorBoard purge the events after that step.
    """

    def __init__(self, run_dir: str | Path, start_epoch: int = 0, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.csv_path = self.run_dir / "metrics.csv"
        self.writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.csv_path) if r["epoch"] < start_epoch] if self.csv_path.exists() else []
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir), purge_step=start_epoch)

    def write_args(self, args: dict) -> None:
        if self.enabled:
            write_json(self.run_dir / "args.json", args)

    def log_epoch(self, row: dict) -> None:
        """Append one row (keys = :data:`METRIC_COLUMNS`) and the matching TensorBoard scalars."""
        if not self.enabled:
            return
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_COLUMNS).writerow({k: row[k] for k in METRIC_COLUMNS})
        for key in METRIC_COLUMNS[1:]:
            self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def write_summary(self, summary: dict) -> None:
        if self.enabled:
            write_json(self.run_dir / "summary.json", summary)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
