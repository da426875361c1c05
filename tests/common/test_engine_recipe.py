"""Recipe features of the engine (accumulation, warm-up, EMA, parameter groups), structured batches and evaluators,
each checked against hand-computed values, and exact resume with all of them on."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from common import checkpoint, engine, methods, optim, training
from common.distributed import DistInfo
from common.ema import ModelEMA
from common.errors import UsageError
from common.runlog import read_metrics
from common.task import Task
from tests.common.tiny_engine_task import tiny_args, tiny_task


def run_dir_of(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def test_warmup_interpolates_lr_momentum_and_accumulation_by_hand():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(optim.decay_groups(model, 5e-4), lr=0.01, momentum=0.937)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    warm = optim.Warmup(iters=4, bias_lr=0.1, momentum_start=0.8, momentum=0.937, accumulate=4)
    groups = {g["name"]: g for g in opt.param_groups}
    warm.apply(opt, sched, 0)
    assert groups["bias"]["lr"] == pytest.approx(0.1) and groups["decay"]["lr"] == 0.0
    assert groups["decay"]["momentum"] == pytest.approx(0.8)
    warm.apply(opt, sched, 2)  # half way: (0.1 + 0.01) / 2, 0.01 / 2, (0.8 + 0.937) / 2
    assert groups["bias"]["lr"] == pytest.approx(0.055) and groups["decay"]["lr"] == pytest.approx(0.005)
    assert groups["decay"]["momentum"] == pytest.approx(0.8685)
    assert [warm.accumulation(i) for i in range(6)] == [1, 2, 2, 3, 4, 4]  # round(1 + 3 i / 4), numpy rounding
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["bias"]["weight_decay"] == 0.0


def test_decay_groups_split_weights_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 2, bias=False))
    groups = {g["name"]: g["params"] for g in optim.decay_groups(model, 0.1)}
    assert [p.shape for p in groups["decay"]] == [(2, 1, 3, 3), (2, 2)]
    assert [p.shape for p in groups["bias"]] == [(2,), (2,)]  # conv bias, BN bias
    assert [p.shape for p in groups["no_decay"]] == [(2,)]  # BN weight


def test_ema_follows_the_hand_computed_average():
    model = nn.BatchNorm1d(1)
    ema = ModelEMA(model, decay=0.9, ramp=2.0)
    expected = 1.0  # BN weight starts at 1
    for step, value in enumerate([3.0, -1.0, 2.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
            model.num_batches_tracked.fill_(step)
        ema.update(model)
        d = 0.9 * (1 - math.exp(-step / 2.0))
        expected = d * expected + (1 - d) * value
        assert ema.module.weight.item() == pytest.approx(expected)
    assert ema.module.num_batches_tracked.item() == 3  # integer buffers are copied, not averaged


def test_accumulation_steps_the_optimizer_every_k_batches(tmp_path):
    args = tiny_args(tmp_path, "--epochs", "1", "--accumulate", "3", "--limit-batches", "7")
    batches = []

    def counting_loss(logits, target):
        batches.append(1)
        return F.cross_entropy(logits, target)

    task = tiny_task(counting_loss)
    env = engine.setup(args)
    state = training.build_state(args, task, env, methods.get("bptt")(args, task), steps_per_epoch=7)
    steps = []
    state.optimizer.register_step_post_hook(lambda *a: steps.append(len(batches)))
    loader, _ = engine.make_loaders(args, task, env)
    training.train_one_epoch(state, loader, 7)
    assert steps == [3, 6, 7]  # after batches 3 and 6, and the remainder at the end of the epoch
    assert state.iteration == 7 and state.last_step == 6


def test_accumulated_gradient_equals_the_sum_over_the_batches():
    """Two accumulated batches step once with the gradient of both (SGD without momentum: w -= lr (g1 + g2))."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    w0 = model.weight.detach().clone()
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    grads = torch.autograd.grad(F.cross_entropy(model(x[:4]), y[:4]) + F.cross_entropy(model(x[4:]), y[4:]),
                                model.weight)[0]
    args = tiny_args("unused", "--accumulate", "2", "--momentum", "0", "--lr", "0.1")
    task = Task(name="lin", build_model=lambda kind: model, train_loss=F.cross_entropy, score_train=False)
    env = training.Env(torch.device("cpu"), DistInfo())
    state = training.build_state(args, task, env, methods.get("bptt")(args, task), steps_per_epoch=2)
    training.train_one_epoch(state, [(x[:4], y[:4]), (x[4:], y[4:])], 2)
    torch.testing.assert_close(model.weight.detach(), w0 - 0.1 * grads)


def test_resume_is_exact_with_warmup_accumulation_ema_and_clipping(tmp_path):
    recipe = ("--epochs", "3", "--warmup-epochs", "1.5", "--accumulate", "2", "--ema-decay", "0.99",
              "--ema-ramp", "4", "--clip-grad-norm", "1.0", "--nesterov", "--lr-schedule", "cosine")
    full = tiny_args(tmp_path / "a", *recipe)
    engine.fit(full, tiny_task(), engine.setup(full))
    first = tiny_args(tmp_path / "b", *recipe, "--stop-after", "1")
    engine.fit(first, tiny_task(), engine.setup(first))
    rest = tiny_args(tmp_path / "b", "--epochs", "3", "--resume", str(run_dir_of(tmp_path / "b")))
    engine.fit(rest, tiny_task(), engine.setup(rest))
    a, b = run_dir_of(tmp_path / "a"), run_dir_of(tmp_path / "b")
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    assert [[r[k] for k in keys] for r in read_metrics(b / "metrics.csv")] == \
        [[r[k] for k in keys] for r in read_metrics(a / "metrics.csv")]
    ckpt_a, ckpt_b = (checkpoint.load(d / "checkpoint_latest.pt") for d in (a, b))
    assert ckpt_a["ema"]["updates"] == ckpt_b["ema"]["updates"] > 0
    for name, value in ckpt_a["ema"]["model"].items():
        assert torch.equal(value, ckpt_b["ema"]["model"][name]), name


class Boxes(Dataset):
    """Samples whose target is a dict of boxes and labels and whose extras carry an id."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return torch.full((2,), float(i)), {"boxes": torch.tensor([[0.0, 0.0, i + 1.0, 1.0]]),
                                            "labels": torch.tensor([i % 2])}, i


def collate(items):
    xs, targets, ids = zip(*items)
    return torch.stack(xs), list(targets), {"ids": torch.tensor(ids)}


class CountingEvaluator:
    """Scores ``ids seen`` and a fake ``AP`` (best_metric) = 1 / (1 + mean |outputs|)."""

    best_metric = "AP"

    def __init__(self):
        self.ids, self.total, self.n = [], 0.0, 0

    def update(self, outputs, targets, extras):
        assert isinstance(targets, list) and set(targets[0]) == {"boxes", "labels"}
        self.ids += extras["ids"].tolist()
        self.total += outputs.abs().sum().item()
        self.n += outputs.numel()

    def compute(self):
        return {"AP": 1 / (1 + self.total / self.n), "images": float(len(self.ids))}


def test_structured_targets_extras_and_evaluator_columns(tmp_path):
    def box_loss(outputs, targets):
        widths = torch.stack([t["boxes"][0, 2] for t in targets])
        return ((outputs.squeeze(-1) - widths) ** 2).mean()

    task = Task(name="boxes", build_model=lambda kind: nn.Linear(2, 1), build_data=lambda: (Boxes(), Boxes()),
                train_loss=box_loss, make_evaluator=CountingEvaluator, score_train=False,
                train_collate=collate, test_collate=collate, drop_last=False)
    args = tiny_args(tmp_path, "-b", "4", "--epochs", "2", "--lr", "0.01")
    summary = engine.fit(args, task, engine.setup(args))
    rows = read_metrics(run_dir_of(tmp_path) / "metrics.csv")
    assert list(rows[0])[:5] == ["epoch", "train_loss", "test_loss", "test_AP", "test_images"]
    assert [r["test_images"] for r in rows] == [6, 6]
    assert summary["best_metric"] == "test_AP" and summary["best_test_AP"] == max(r["test_AP"] for r in rows)
    saved = json.loads((run_dir_of(tmp_path) / "summary.json").read_text())
    assert saved["best_test_AP"] == summary["best_test_AP"]


def test_a_batch_larger_than_the_training_set_is_refused(tmp_path):
    args = tiny_args(tmp_path, "-b", "100")
    with pytest.raises(UsageError, match="-b 100 is larger than the training set \\(64 samples"):
        engine.fit(args, tiny_task(), engine.setup(args))
    assert not any(tmp_path.iterdir())  # the run never started: its directory is not left behind


def test_init_from_starts_a_new_run_with_the_weights_and_records_them(tmp_path):
    args = tiny_args(tmp_path / "a", "--epochs", "1")
    source_task = tiny_task()
    engine.fit(args, source_task, engine.setup(args))
    source = run_dir_of(tmp_path / "a") / "checkpoint_latest.pt"
    args = tiny_args(tmp_path / "b", "--epochs", "1", "--lr", "0", "--init-from", str(source))
    task = tiny_task()
    engine.fit(args, task, engine.setup(args))
    for name, value in checkpoint.load(source)["model"].items():
        if name.endswith("weight"):  # lr 0: the weights are exactly the source's
            assert torch.equal(task.model.state_dict()[name], value), name
    recorded = json.loads((run_dir_of(tmp_path / "b") / "args.json").read_text())["init_from"]
    assert recorded["checkpoint"] == str(source.resolve()) and len(recorded["sha256"]) == 64


def test_a_damaged_checkpoint_is_refused_by_the_parser_before_any_data_loads(tmp_path):
    from common.errors import CheckpointError

    args = tiny_args(tmp_path, "--epochs", "2", "--stop-after", "1")
    engine.fit(args, tiny_task(), engine.setup(args))
    latest = run_dir_of(tmp_path) / "checkpoint_latest.pt"
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    latest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checkpoint_latest.pt"):
        tiny_args(tmp_path, "--resume", str(run_dir_of(tmp_path)))  # cli.parse: no task, no data built yet
