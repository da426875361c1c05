"""The run directory: ``args.json``, ``metrics.csv``, TensorBoard events and ``summary.json``.

Layout (checkpoints, lock and resume log are written by the engine through ``common.checkpoint`` and
``common.rundir``; ``docs/run-directories.md`` has the full description)::

    <out-dir>/<run-name>/
        args.json              every flag + "task" + "argv", written once when the run starts, never rewritten
        resume_log.jsonl       one JSON line per --resume: time, host, pid, command line
        .lock                  flock held by the live run (holds its pid)
        metrics.csv            one row per finished epoch: epoch (0-based), train_loss, train_<metric>..., test_loss,
                               test_<metric>..., lr, samples/s, peak memory, time (METRIC_COLUMNS for top-1 tasks)
        events.out.tfevents.*  the same scalars for TensorBoard
        checkpoint_latest.pt   after every epoch (content-hashed); checkpoint_previous.pt = the latest before it;
        checkpoint_best.pt     when the best test metric improved
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
        self.columns: list[str] | None = None  # from the first row (the task's evaluator decides the metrics)
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                self.columns = csv.DictReader(f).fieldnames
            kept = [r for r in read_metrics(self.csv_path) if r["epoch"] < start_epoch]
            self._rewrite(kept)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir), purge_step=start_epoch)

    def _rewrite(self, rows: list[dict]) -> None:
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def log_epoch(self, row: dict) -> None:
        """Append one row (its keys become the columns of a new file) and the matching TensorBoard scalars."""
        if not self.enabled:
            return
        if self.columns is None:
            self.columns = list(row)
            self._rewrite([])
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: row[k] for k in self.columns})
        for key in self.columns[1:]:
            self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def write_summary(self, summary: dict) -> None:
        if self.enabled:
            write_json(self.run_dir / "summary.json", summary)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
