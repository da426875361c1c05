"""Data helpers shared by tasks: batch-level MixUp/CutMix and the image-augmentation flags."""
from __future__ import annotations

import argparse

import torch
from torch.utils.data import default_collate
from torchvision.transforms import v2


def add_augment_args(parser: argparse.ArgumentParser, **defaults) -> None:
    """``--auto-augment``, ``--random-erase``, ``--mixup-alpha``, ``--cutmix-alpha`` (survey recipe by default)."""
    g = parser.add_argument_group("augmentation")
    g.add_argument("--auto-augment", choices=("ta_wide", "none"), default="ta_wide",
                   help="TrivialAugmentWide after the horizontal flip")
    g.add_argument("--random-erase", type=float, default=0.1, help="RandomErasing probability")
    g.add_argument("--mixup-alpha", type=float, default=0.2, help="MixUp Beta(alpha, alpha); 0 disables")
    g.add_argument("--cutmix-alpha", type=float, default=1.0, help="CutMix Beta(alpha, alpha); 0 disables")
    parser.set_defaults(**defaults)


class MixCollate:
    """Collate a batch, then apply MixUp or CutMix, one picked uniformly at random per batch.

    MixUp: ``x = lam x + (1 - lam) x.roll(1)``, ``y = lam onehot(y) + (1 - lam) onehot(y.roll(1))``,
    ``lam ~ Beta(a, a)``; CutMix pastes a box of area ``(1 - lam) H W`` from ``x.roll(1)`` and mixes labels with the
    box's real area. Targets become soft one-hot ``[N, num_classes]``.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0):
        choices = []
        if mixup_alpha > 0:
            choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if not choices:
            raise ValueError("MixCollate needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mix = v2.RandomChoice(choices)

    def __call__(self, batch: list) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix(*default_collate(batch))


def mix_collate(args, num_classes: int) -> MixCollate | None:
    """The train collate of ``--mixup-alpha`` / ``--cutmix-alpha`` (``None`` when both are 0)."""
    if args.mixup_alpha <= 0 and args.cutmix_alpha <= 0:
        return None
    return MixCollate(num_classes, args.mixup_alpha, args.cutmix_alpha)
