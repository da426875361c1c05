r"""N-CARS pre-training of the survey's spiking DenseNet-121 backbone: ``python SFOD/pretrain.py --data-dir ROOT``.

Recipe (spec §2.3, §2.6, ``classification.py`` of the survey): ``ROOT/{train,test}/{background,cars}/*.dat``, first
100 ms of each file, T = 5 x 20 ms, 4 channels, resized to 64 x 64; the classifier's output spike counts (summed over
space) averaged over time, ``rate = mean_t out[t]``, trained with ``MSE(rate, one_hot(label))``; batch 64, AdamW
lr 5e-3 (weight decay 0.01, AdamW's default), cosine over 30 epochs, AMP, gradient norm clipped at 1.0. The test
split doubles as the validation split: early stop once ``test_loss`` has not improved for 5 epochs, and the 3 best
epochs by ``test_acc`` are kept (``checkpoint_top_epochNNN.pt``; ``checkpoint_best.pt`` is the best, which
``SFOD/train.py --backbone-ckpt RUN_DIR`` loads).
"""
from __future__ import annotations

from functools import partial

from common import cli, engine
from common.errors import UsageError
from common.task import Task, mean_over_time
from SFOD import ncars, recipe
from SFOD.model import NCarsClassifier, rate_mse_loss

MIN_SIZE = 32  # the backbone halves the frame five times


def build_parser():
    p = cli.base_parser(
        "Pre-train the survey's spiking DenseNet-121 (growth 16) backbone on N-CARS (task ncars).", task="ncars",
        **recipe.DEFAULTS, epochs=30, batch_size=64, lr=5e-3, wd=0.01, early_stop_patience=5,
        early_stop_on="test_loss", keep_top=3, data_dir="./data/ncars")
    recipe.add_amp_switch(p)
    p.add_argument("--size", type=int, default=64, help=f"samples are resized to SIZE x SIZE (nearest), >= {MIN_SIZE}")
    return p


def build_model(args, kind: str = "snn") -> NCarsClassifier:
    return NCarsClassifier(recipe.neuron_config(args), args.norm, args.T, image_size=(args.size, args.size))


def load_data(args):
    params = ncars.NCarsParams(T=args.T, size=args.size)
    return tuple(ncars.NCarsDataset(args.data_dir, split, params) for split in ncars.SPLITS)


def build_task(args) -> Task:
    return Task(name="ncars", build_model=partial(build_model, args), build_data=partial(load_data, args),
                train_loss=rate_mse_loss, decode=mean_over_time, train_collate=ncars.collate,
                test_collate=ncars.collate, drop_last=False, name_parts=(f"T{args.T}", f"{args.size}px"))


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(build_parser(), argv)
    recipe.require_bptt(args)
    if args.size < MIN_SIZE:
        raise UsageError(f"--size {args.size}: must be >= {MIN_SIZE}")
    env = engine.setup(args)
    task = build_task(args)
    recipe.read_data_first(task)
    return engine.fit(args, task, env)


if __name__ == "__main__":
    cli.main_guard(main)
