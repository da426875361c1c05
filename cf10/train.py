"""CIFAR10 with the survey's SNN (or its ANN twin): ``python cf10/train.py --sg atan``.

Recipe defaults (survey §1): batch 128, SGD lr 0.1 momentum 0.9, 256 epochs, cosine, label smoothing 0.1, T = 4,
C = 128, LIF tau = 2 with detach_reset, ATan; HFlip + TrivialAugmentWide + RandomErasing(0.1) + MixUp/CutMix.
Direct encoding: the image is repeated over T steps; the prediction is the mean of the per-step logits.
``--sop --resume CKPT`` counts SOPs instead of training (the first conv sees the same image at every step).
"""
from __future__ import annotations

import argparse
from functools import partial

import torch.nn.functional as F

from cf10 import model as cf10_model
from common import cifar10, cli, engine, methods, sop
from common.data import add_augment_args, mix_collate
from common.task import Task, identity, keep_outputs, mean_over_time, repeat_over_time


def build_parser():
    p = cli.base_parser("Train the survey's CIFAR10 SNN (or its ANN twin with --ann).", task="cf10")
    p.add_argument("--channels", type=int, default=128, help="conv width C (C*64 -> C*16 fc)")
    p.add_argument("--ann", dest="method", action="store_const", const="ann", default=argparse.SUPPRESS,
                   help="train the ANN twin (ReLU, no time axis); same as --method ann")
    add_augment_args(p)
    cifar10.add_args(p)
    sop.add_args(p)
    return p


def build_task(args) -> Task:
    kind = methods.get(args.method).model_kind
    spiking = kind != "ann"
    return Task(
        name="cf10",
        build_model=partial(cf10_model.build, args),
        build_data=partial(cifar10.datasets_from_args, args),
        model_kind=kind,
        train_loss=partial(F.cross_entropy, label_smoothing=args.label_smoothing),
        test_loss=F.cross_entropy,
        encode=partial(repeat_over_time, T=args.T) if spiking else identity,
        decode=mean_over_time if spiking else keep_outputs,
        train_collate=mix_collate(args, cifar10.NUM_CLASSES),
        name_parts=((f"T{args.T}",) if spiking else ()) + (f"c{args.channels}",),
    )


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(build_parser(), argv)
    sop.check_args(args)
    env = engine.setup(args)
    task = build_task(args)
    return sop.run(args, task, env, static_input=True) if args.sop else engine.fit(args, task, env)


if __name__ == "__main__":
    cli.main_guard(main)
