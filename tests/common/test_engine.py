import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common import checkpoint, engine
from common.errors import TrainingStopped, UsageError
from common.evaluators import Top1
from common.runlog import read_metrics
from tests.common.tiny_engine_task import tiny_args, tiny_task

ROOT = Path(__file__).resolve().parents[2]


def only_run_dir(out_dir: Path) -> Path:
    (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
    return run_dir


def test_top1_counts_hard_and_soft_targets():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    hard = Top1()
    hard.update(logits, torch.tensor([0, 1, 1]), {})
    assert hard.compute() == {"acc": 2 / 3}
    soft = Top1()
    soft.update(logits, torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]]), {})
    soft.update(logits[:1], torch.tensor([1]), {})  # sums over batches: 2 of 3, then 0 of 1
    assert soft.compute() == {"acc": 2 / 4}


def test_save_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_latest.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pt"]


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    import random

    import numpy as np

    checkpoint.save_atomic({"rng": checkpoint.rng_state()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_fit_writes_the_run_directory(tmp_path):
    args = tiny_args(tmp_path)
    summary = engine.fit(args, tiny_task(), engine.setup(args))
    run_dir = only_run_dir(tmp_path)
    assert run_dir.name == "tiny_bptt_lif_bn_atan_e2_b8_sgd_lr0.05_s2020"
    assert {p.name for p in run_dir.iterdir()} >= {"args.json", "metrics.csv", "checkpoint_latest.pt",
                                                   "checkpoint_best.pt", "summary.json"}
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[0]["lr"] == pytest.approx(0.05) and rows[1]["lr"] == pytest.approx(0.025)  # cosine over 2 epochs
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["finished"] and saved["epochs"] == 2
    assert saved["best_test_acc"] == max(r["test_acc"] for r in rows) == summary["best_test_acc"]
    args_json = json.loads((run_dir / "args.json").read_text())
    assert args_json["task"] == "tiny" and args_json["lr"] == 0.05 and "argv" in args_json
    ckpt = checkpoint.load(run_dir / "checkpoint_latest.pt")
    assert ckpt["epoch"] == 1 and set(ckpt) >= {"model", "optimizer", "scheduler", "scaler", "rng"}


def test_refuses_to_overwrite_a_run_with_checkpoints(tmp_path):
    args = tiny_args(tmp_path, "--epochs", "1")
    engine.fit(args, tiny_task(), engine.setup(args))
    run_dir = only_run_dir(tmp_path)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(UsageError, match="--resume"):
        engine.fit(args, tiny_task(), engine.setup(args))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    # --resume of a finished run is accepted and leaves the results as they were
    args = tiny_args(tmp_path, "--epochs", "1", "--resume", str(run_dir))
    engine.fit(args, tiny_task(), engine.setup(args))
    assert read_metrics(run_dir / "metrics.csv") == read_metrics_from_bytes(before["metrics.csv"], tmp_path)


def read_metrics_from_bytes(data: bytes, tmp_path: Path) -> list[dict]:
    path = tmp_path / "copy.csv"
    path.write_bytes(data)
    return read_metrics(path)


def test_resume_continues_exactly(tmp_path):
    full = tiny_args(tmp_path / "a", "--epochs", "3")
    engine.fit(full, tiny_task(), engine.setup(full))
    first = tiny_args(tmp_path / "b", "--epochs", "3", "--stop-after", "1")
    assert not engine.fit(first, tiny_task(), engine.setup(first))["finished"]
    run_b = only_run_dir(tmp_path / "b")
    assert not (run_b / "summary.json").exists()
    rest = tiny_args(tmp_path / "b", "--epochs", "3", "--resume", str(run_b / "checkpoint_latest.pt"))
    engine.fit(rest, tiny_task(), engine.setup(rest))
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    rows_a = read_metrics(only_run_dir(tmp_path / "a") / "metrics.csv")
    rows_b = read_metrics(run_b / "metrics.csv")
    assert [[r[k] for k in keys] for r in rows_b] == [[r[k] for k in keys] for r in rows_a]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def loss_that_breaks(logits, target):
        calls["n"] += 1
        loss = F.cross_entropy(logits, target)
        return loss * float("nan") if calls["n"] > 8 else loss  # 8 batches per epoch: epoch 1 breaks

    args = tiny_args(tmp_path, "--epochs", "3", "--print-freq", "3")
    with pytest.raises(TrainingStopped, match="NaN/inf at epoch 2.*checkpoint_latest.pt \\(epoch 1\\)"):
        engine.fit(args, tiny_task(train_loss=loss_that_breaks), engine.setup(args))
    run_dir = only_run_dir(tmp_path)
    ckpt = checkpoint.load(run_dir / "checkpoint_latest.pt")
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.csv")] == [0]
    assert not (run_dir / "summary.json").exists()


def test_task_param_groups_and_per_step_scheduler(tmp_path):
    """SHD-style override: Adam on Linear weights only, OneCycle stepped every batch."""

    def groups(model):
        return [{"params": [m.weight for m in model if isinstance(m, torch.nn.Linear)], "weight_decay": 1e-5}]

    def one_cycle(optimizer, args, steps_per_epoch):
        total = args.epochs * steps_per_epoch
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=total), "step"

    args = tiny_args(tmp_path, "--opt", "adam", "--epochs", "2", "--limit-batches", "3")
    task = tiny_task(param_groups=groups, make_scheduler=one_cycle)
    bias_before = task.model[0].bias.detach().clone()
    engine.fit(args, task, engine.setup(args))
    assert torch.equal(task.model[0].bias, bias_before)  # not in the optimizer
    rows = read_metrics(only_run_dir(tmp_path) / "metrics.csv")
    assert rows[0]["lr"] == pytest.approx(5e-3 / 25)  # OneCycle's start
    ckpt = checkpoint.load(only_run_dir(tmp_path) / "checkpoint_latest.pt")
    assert ckpt["scheduler"]["last_epoch"] == 6  # 2 epochs x 3 batches


def test_ddp_two_processes_gloo(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "common" / "tiny_engine_task.py"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checksums = sorted(line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("rank "))
    assert len(checksums) == 2 and checksums[0] == checksums[1]  # replicas identical
    run_dir = only_run_dir(tmp_path)
    assert json.loads((run_dir / "args.json").read_text())["world_size"] == 2
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [0, 1]
    # the sharded test metrics equal a single-process evaluation of the saved model over the whole test set
    model = tiny_task().model
    model.load_state_dict(checkpoint.load(run_dir / "checkpoint_latest.pt")["model"])
    model.eval()
    x, y = tiny_task().test_set.tensors
    with torch.no_grad():
        logits = model(x)
    assert rows[-1]["test_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert rows[-1]["test_acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
