"""Sequential CIFAR10 with the survey's Conv1d SNN: ``python scf10/train.py --neuron if``.

Each image column is one time step (T = 32, fixed): ``x_seq[t] = image[:, :, :, t]`` (3 channels x 32 pixels), so
the horizontal flip of the augmentation reverses time. The prediction is the mean of the 32 per-step logits.
Recipe defaults as cf10 (survey §3.1): batch 128, SGD lr 0.1 momentum 0.9, 256 epochs, cosine, label smoothing 0.1,
C = 128, LIF tau = 2 with detach_reset, ATan; HFlip + TrivialAugmentWide + RandomErasing(0.1) + MixUp/CutMix.
``--sop --resume CKPT`` counts SOPs instead of training.
"""
from __future__ import annotations

from functools import partial

import torch.nn.functional as F

from common import cifar10, cli, engine, methods, sop
from common.data import add_augment_args, mix_collate
from common.errors import UsageError
from common.neuron import NeuronConfig
from common.task import Task, mean_over_time
from scf10.model import WIDTH, SeqCIFAR10Net


def build_parser():
    p = cli.base_parser("Train the survey's sequential-CIFAR10 SNN (image columns as time steps, T = 32).",
                        task="scf10", T=WIDTH)
    p.add_argument("--channels", type=int, default=128, help="conv width C (C*8 -> C*2 fc)")
    add_augment_args(p)
    cifar10.add_args(p)
    sop.add_args(p)
    return p


def columns_as_steps(x):
    """``[N, 3, H, W] -> [W, N, 3, H]``: column t of every image is step t."""
    return x.permute(3, 0, 1, 2)


def build_model(args, kind: str = "snn") -> SeqCIFAR10Net:
    if kind != "snn":
        raise UsageError(f"scf10 has only the SNN, no '{kind}' variant (--method {args.method}); the survey ran "
                         "no ANN, distillation or tandem on sequential CIFAR10")
    return SeqCIFAR10Net(NeuronConfig.from_args(args), args.norm, args.channels)


def build_task(args) -> Task:
    if args.T != WIDTH:
        raise UsageError(f"scf10 feeds one image column per step, so T is the image width {WIDTH}, got -T {args.T}")
    return Task(
        name="scf10",
        build_model=partial(build_model, args),
        build_data=partial(cifar10.datasets_from_args, args),
        model_kind=methods.get(args.method).model_kind,
        train_loss=partial(F.cross_entropy, label_smoothing=args.label_smoothing),
        test_loss=F.cross_entropy,
        encode=columns_as_steps,
        decode=mean_over_time,
        train_collate=mix_collate(args, cifar10.NUM_CLASSES),
        name_parts=(f"c{args.channels}",),
    )


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(build_parser(), argv)
    sop.check_args(args)
    env = engine.setup(args)
    task = build_task(args)
    return sop.run(args, task, env) if args.sop else engine.fit(args, task, env)


if __name__ == "__main__":
    cli.main_guard(main)
