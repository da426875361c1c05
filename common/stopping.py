"""When to stop and which checkpoints to keep besides latest/best: ``--early-stop-patience`` on
``--early-stop-on`` and ``--keep-top K`` (the rules of Lightning's ``EarlyStopping`` and
``ModelCheckpoint(save_top_k=K)``); their counters live in the :class:`~common.training.TrainState` and its
checkpoint, so resume is exact.
"""
from __future__ import annotations

import math
from pathlib import Path

from common import checkpoint
from common.errors import UsageError


def watch_early_stop(state, row: dict) -> None:
    """``--early-stop-patience``: count the epochs since ``--early-stop-on`` last improved (strictly: lower for a
    ``*loss`` column, higher otherwise), as Lightning's ``EarlyStopping``; ``state.stopped_early`` once the count
    reaches the patience."""
    args = state.args
    if not getattr(args, "early_stop_patience", 0):
        return
    key = args.early_stop_on
    if key not in row:
        raise UsageError(f"--early-stop-on {key}: not a metrics.csv column of this task; valid: "
                         f"{', '.join(k for k in row if k.startswith(('train_', 'test_')))}")
    value = row[key] if key.endswith("loss") else -row[key]
    if math.isnan(state.stop_best) or value < state.stop_best:
        state.stop_best, state.stop_wait = value, 0
    else:
        state.stop_wait += 1


def rank_top(state, value: float) -> tuple[bool, list[int]]:
    """``--keep-top K``: whether this epoch joins the K best by the best metric (once K are kept, only when strictly
    better than the worst, which is dropped; the oldest of equal worst ones first, as Lightning's
    ``ModelCheckpoint(save_top_k=K)``), and the epochs dropped."""
    k = getattr(state.args, "keep_top", 0)
    if not k:
        return False, []
    dropped = []
    if len(state.top) >= k:
        worst = min(state.top, key=lambda entry: entry[0])
        if not value > worst[0]:
            return False, []
        state.top.remove(worst)
        dropped.append(worst[1])
    state.top.append([value, state.epoch])
    return True, dropped


def top_checkpoint_name(epoch: int) -> str:
    """File name of a ``--keep-top`` checkpoint (0-based epoch, as in ``metrics.csv``)."""
    return f"checkpoint_top_epoch{epoch:03d}.pt"


def keep_top_files(run_dir: Path, latest: Path, kept: int | None, dropped: list[int]) -> None:
    if kept is not None:
        checkpoint.link_or_copy(latest, run_dir / top_checkpoint_name(kept))
    for epoch in dropped:
        (run_dir / top_checkpoint_name(epoch)).unlink(missing_ok=True)
