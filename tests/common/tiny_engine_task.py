"""A tiny classification task for engine tests (in-process, and under torchrun when run as a script)."""
from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from common import cli, engine
from common.task import Task


def tiny_args(out_dir, *extra: str):
    argv = ["--out-dir", str(out_dir), "--device", "cpu", "--workers", "0", "-b", "8", "--epochs", "2",
            "--lr", "0.05", "--opt", "sgd", *extra]
    return cli.parse(cli.base_parser("tiny", task="tiny"), argv)


def tiny_datasets(seed: int = 0, n_train: int = 64, n_test: int = 20):
    """Two Gaussian blobs per class in 6-D, 3 classes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 6, generator=g) * 2

    def make(n):
        y = torch.randint(0, 3, (n,), generator=g)
        return TensorDataset(centres[y] + torch.randn(n, 6, generator=g), y)

    return make(n_train), make(n_test)


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def tiny_task(train_loss=None, **overrides) -> Task:
    fields = dict(name="tiny", build_model=lambda kind: tiny_model(), build_data=tiny_datasets,
                  train_loss=train_loss or F.cross_entropy, test_loss=F.cross_entropy)
    fields.update(overrides)
    return Task(**fields)


def main(out_dir: str) -> None:
    """Train under torchrun and print every rank's parameter checksum (DDP keeps the replicas identical)."""
    args = tiny_args(out_dir)
    env = engine.setup(args)
    task = tiny_task()
    engine.fit(args, task, env)
    checksum = sum(p.double().sum().item() for p in task.model.parameters())
    print(f"rank {env.dist.rank} world {env.dist.world_size} checksum {checksum:.12e}", flush=True)


def slow_loss(seconds: float):
    """Cross entropy that sleeps ``seconds`` per call, so a test can signal a run in the middle of an epoch."""
    def loss(logits, target):
        time.sleep(seconds)
        return F.cross_entropy(logits, target)
    return loss


def train_cli(argv: list[str]) -> None:
    """``python tiny_engine_task.py train FLAGS...``: the tiny task behind the CLI's error handling (exit codes,
    signals), as a task script runs; ``TINY_SLEEP`` seconds of sleep per training batch."""
    args = cli.parse(cli.base_parser("tiny", task="tiny"), argv)
    env = engine.setup(args)
    engine.fit(args, tiny_task(slow_loss(float(os.environ.get("TINY_SLEEP", "0")))), env)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        cli.main_guard(lambda: train_cli(sys.argv[2:]))
    else:
        main(sys.argv[1])
