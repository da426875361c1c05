"""``--early-stop-patience`` / ``--early-stop-on`` and ``--keep-top``, against hand-worked sequences of scripted
metric values, and their exact resume."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common import checkpoint, engine
from common.errors import TrainingStopped, UsageError
from common.runlog import read_metrics
from tests.common.tiny_engine_task import tiny_args, tiny_task

N_TEST_BATCHES = 3  # tiny test set: 20 samples at -b 8


def run_dir_of(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


class Scripted:
    """Evaluator whose ``acc`` at the k-th evaluation of the process is ``values[k]``."""

    best_metric = "acc"
    calls = 0

    def __init__(self, values):
        self.values = values

    def update(self, outputs, targets, extras=None):
        pass

    def compute(self):
        Scripted.calls += 1
        return {"acc": self.values[Scripted.calls - 1]}


def scripted_loss(values):
    """Test loss equal to ``values[e]`` for every batch of the e-th evaluation (counted from the first call)."""
    calls = {"n": 0}

    def loss(logits, target):
        calls["n"] += 1
        return F.cross_entropy(logits, target) * 0 + values[(calls["n"] - 1) // N_TEST_BATCHES]

    return loss


def fit(out, *flags, test_loss=None, evaluator=None, first_call=0):
    args = tiny_args(out, *flags)
    Scripted.calls = first_call
    overrides = {"score_train": False}
    if test_loss is not None:
        overrides["test_loss"] = test_loss
    if evaluator is not None:
        overrides["make_evaluator"] = evaluator
    return engine.fit(args, tiny_task(**overrides), engine.setup(args))


LOSSES = [5.0, 4.0, 4.5, 4.2, 4.1, 3.9, 3.0, 2.0]


def test_early_stop_after_patience_epochs_without_improvement(tmp_path):
    # best 5 -> 4 (epoch 1), then 4.5, 4.2, 4.1 do not improve: the third of them (epoch 4) stops the run
    summary = fit(tmp_path, "--epochs", "8", "--early-stop-patience", "3", test_loss=scripted_loss(LOSSES))
    rows = read_metrics(run_dir_of(tmp_path) / "metrics.csv")
    assert [r["test_loss"] for r in rows] == pytest.approx(LOSSES[:5])
    assert summary["finished"] and summary["stopped_early"] and summary["epochs_done"] == 5
    assert json.loads((run_dir_of(tmp_path) / "summary.json").read_text())["stopped_early"]


def test_early_stop_on_a_higher_is_better_column(tmp_path):
    accs = [0.5, 0.6, 0.6, 0.55, 0.7]  # equal is no improvement: stop after epoch 3 with patience 2
    fit(tmp_path, "--epochs", "5", "--early-stop-patience", "2", "--early-stop-on", "test_acc",
        evaluator=lambda: Scripted(accs))
    assert len(read_metrics(run_dir_of(tmp_path) / "metrics.csv")) == 4


def test_early_stop_state_resumes_exactly(tmp_path):
    fit(tmp_path / "a", "--epochs", "8", "--early-stop-patience", "3", "--stop-after", "3",
        test_loss=scripted_loss(LOSSES))
    run_dir = run_dir_of(tmp_path / "a")
    assert checkpoint.load(run_dir / checkpoint.LATEST)["early_stop"] == [4.0, 1]
    summary = fit(tmp_path / "a", "--epochs", "8", "--early-stop-patience", "3", "--resume", str(run_dir),
                  test_loss=scripted_loss(LOSSES[3:]))
    assert summary["stopped_early"] and len(read_metrics(run_dir / "metrics.csv")) == 5


def test_unknown_early_stop_column_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="--early-stop-on test_nope: not a metrics.csv column.*test_acc"):
        fit(tmp_path, "--epochs", "2", "--early-stop-patience", "1", "--early-stop-on", "test_nope")


def test_keep_top_k_by_the_best_metric(tmp_path):
    accs = [0.5, 0.7, 0.6, 0.8, 0.65, 0.6]
    summary = fit(tmp_path, "--epochs", "6", "--keep-top", "3", evaluator=lambda: Scripted(accs))
    run_dir = run_dir_of(tmp_path)
    # {0,1,2} -> 0.8 drops epoch 0 -> 0.65 drops epoch 2 (0.6) -> 0.6 is not better than the worst (0.65)
    names = sorted(p.name for p in run_dir.glob("checkpoint_top_*.pt"))
    assert names == ["checkpoint_top_epoch001.pt", "checkpoint_top_epoch003.pt", "checkpoint_top_epoch004.pt"]
    for name in names:
        assert checkpoint.load(run_dir / name)["epoch"] == int(name[-6:-3])
    assert summary["top_checkpoints"] == {"checkpoint_top_epoch001.pt": 0.7, "checkpoint_top_epoch003.pt": 0.8,
                                          "checkpoint_top_epoch004.pt": 0.65}
    torch.testing.assert_close(checkpoint.load(run_dir / "checkpoint_top_epoch003.pt")["model"],
                               checkpoint.load(run_dir / checkpoint.BEST)["model"])


def nan_gradient_loss(logits, target):
    """Cross entropy plus ``sqrt(|z - z|) = 0``, whose gradient is NaN (inf * 0): a finite loss, NaN gradients."""
    return F.cross_entropy(logits, target) + (logits - logits.detach()).abs().sum().sqrt()


@pytest.mark.parametrize("skip", [True, False])
def test_skip_nonfinite_keeps_the_weights(tmp_path, capsys, skip):
    args = tiny_args(tmp_path, "--epochs", "1", "-b", "64", *(["--skip-nonfinite"] if skip else []))
    env = engine.setup(args)
    task = tiny_task(nan_gradient_loss)
    before = {k: v.clone() for k, v in task.model.named_parameters()}
    if not skip:  # the NaN gradient reaches the weights, and the test loss
        with pytest.raises(TrainingStopped, match="test loss became NaN"):
            engine.fit(args, task, env)
        return
    engine.fit(args, task, env)
    for key, value in task.model.named_parameters():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert "1 optimizer step(s) skipped" in capsys.readouterr().err
