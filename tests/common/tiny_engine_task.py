"""A tiny classification task for engine tests (in-process, and under torchrun when run as a script)."""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from common import cli, engine


def tiny_args(out_dir, *extra: str):
    argv = ["--out-dir", str(out_dir), "--device", "cpu", "--workers", "0", "-b", "8", "--epochs", "2",
            "--lr", "0.05", "--opt", "sgd", *extra]
    return cli.parse(cli.base_parser("tiny"), argv)


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


def tiny_task(train_loss=None, **overrides) -> engine.Task:
    train_set, test_set = tiny_datasets()
    fields = dict(name="tiny", model=tiny_model(), train_set=train_set, test_set=test_set,
                  train_loss=train_loss or F.cross_entropy, test_loss=F.cross_entropy)
    fields.update(overrides)
    return engine.Task(**fields)


def main(out_dir: str) -> None:
    """Train under torchrun and print every rank's parameter checksum (DDP keeps the replicas identical)."""
    args = tiny_args(out_dir)
    env = engine.setup(args)
    task = tiny_task()
    engine.fit(args, task, env)
    checksum = sum(p.double().sum().item() for p in task.model.parameters())
    print(f"rank {env.dist.rank} world {env.dist.world_size} checksum {checksum:.12e}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
