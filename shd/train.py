"""SHD with the survey's 2x256 feed-forward SNN: ``python shd/train.py --data-dir data/SHD [--neuron if]``.

Recipe defaults (survey §1): 10 ms frames, 700 -> 140 channels, batch 256, 150 epochs, Adam (weight decay 1e-5 on
Linear weights) with OneCycle (max lr 5e-3 = peak, start 2e-4, stepped per epoch), LIF tau = 1.005 without input
decay, ATan alpha = 5, dropout 0.4, loss CE of the time-summed softmax. SHD has no validation split: the test set is
evaluated every epoch and the best test accuracy is reported. ``--sop --resume CKPT`` counts SOPs instead.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch

from common import cli, engine, methods, quirks, sop
from common.errors import UsageError
from common.neuron import NeuronConfig
from common.task import Task
from shd import data
from shd import model as shd_model

SURVEY_T = 126  # the longest SHD sample at 10 ms frames; the survey's AutoPadding length
quirks.register("untrained_variant_params", "the SHD optimiser holds only Linear weights and plain-BN affines: "
                "neuron (PSN, BlockALIF), TEBN (p and its BN affine) and OSR parameters stay at their initial values",
                ("shd",))
quirks.register("unmasked_padding", "padded time steps enter the SHD loss and accuracy (the time-summed softmax "
                "also sums the zero-padded steps of shorter samples)", ("shd",))


def build_parser() -> argparse.ArgumentParser:
    p = cli.base_parser(
        "Train the survey's SHD SNN (140-256-256-20). -T is the length that neurons/norms with per-step parameters "
        "(TEBN, PSN) pad each batch to, as the survey's AutoPadding(126); the other layers run on the batch's "
        "own length.",
        epochs=150, batch_size=256, opt="adam", lr=1e-3, wd=1e-5, label_smoothing=0.0, seed=0, T=SURVEY_T,
        tau=1.005, decay_input=False, sg_alpha=5.0, data_dir="./data/SHD", task="shd")
    g = p.add_argument_group("SHD")
    g.add_argument("--dt-ms", type=float, default=10.0, help="frame duration (ms)")
    g.add_argument("--n-bins", type=int, default=5, help="sum groups of this many of the 700 channels")
    g.add_argument("--cache-dir", default=None, help="preprocessed-frame cache (default: DATA_DIR/cache)")
    g.add_argument("--no-cache", action="store_true", help="preprocess in memory, write no cache")
    g.add_argument("--hidden", type=int, default=256, help="hidden width")
    g.add_argument("--dropout", type=float, default=0.4, help="dropout (one mask per sequence)")
    g.add_argument("--max-lr", type=float, default=5e-3, help="OneCycle peak lr (the start lr is max-lr/25)")
    g.add_argument("--one-cycle", action=argparse.BooleanOptionalAction, default=True,
                   help="OneCycle per epoch (overrides --lr); --no-one-cycle uses --lr with --lr-schedule")
    sop.add_args(p)
    return p


def one_cycle(optimizer, args, steps_per_epoch: int):
    """``OneCycleLR(max_lr, total_steps=epochs)`` stepped once per epoch (PyTorch defaults otherwise)."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.max_lr, total_steps=args.epochs), "epoch"


def build_model(args, in_features: int, kind: str = "snn") -> shd_model.SHDNet:
    if kind != "snn":
        raise UsageError(f"--method {args.method} trains a non-spiking variant, which SHD does not have")
    return shd_model.SHDNet(NeuronConfig.from_args(args), args.norm, args.T, in_features=in_features,
                            hidden=args.hidden, dropout=args.dropout, readout_tau=args.tau)


def load_data(args):
    """``(train_set, test_set)``; a sample longer than ``-T`` is refused before training."""
    cache = None if args.no_cache else (args.cache_dir or Path(args.data_dir) / "cache")
    train_set, test_set = (data.load_split(args.data_dir, s, args.dt_ms, args.n_bins, cache) for s in data.SPLITS)
    if quirks.on(args, "shd_folder_test_order"):
        train_set, test_set = data.as_folder_dataset(train_set, False), data.as_folder_dataset(test_set, True)
    longest = max(train_set.max_len, test_set.max_len)
    if args.T < longest:
        raise UsageError(f"-T {args.T} is shorter than the longest sample ({longest} frames)")
    return train_set, test_set


def build_task(args) -> Task:
    parts = [f"dt{args.dt_ms:g}", f"nb{args.n_bins}"] + ([] if args.T == SURVEY_T else [f"T{args.T}"])
    survey_params, mask = quirks.on(args, "untrained_variant_params"), not quirks.on(args, "unmasked_padding")
    parts += (["surveyparams"] if survey_params else []) + ([] if mask else ["nomask"])
    return Task(
        name="shd", build_model=partial(build_model, args, data.N_UNITS // args.n_bins),
        build_data=partial(load_data, args), model_kind=methods.get(args.method).model_kind,
        train_loss=partial(shd_model.sum_softmax_loss, label_smoothing=args.label_smoothing),
        test_loss=shd_model.sum_softmax_loss, decode=partial(shd_model.decode, mask_padding=mask),
        train_collate=data.pad_collate_batch, test_collate=data.pad_collate_batch, drop_last=False,
        param_groups=partial(shd_model.param_groups, weight_decay=args.wd, survey_quirk=survey_params),
        make_scheduler=one_cycle if args.one_cycle else None, name_parts=tuple(parts))


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(build_parser(), argv)
    sop.check_args(args)
    env = engine.setup(args)
    task = build_task(args)
    if args.sop:  # every Linear counted, the first one too, as in the survey; padded steps count (-b 1: no padding)
        return sop.run(args, task, env, first_layer_sop=True)
    return engine.fit(args, task, env)


if __name__ == "__main__":
    cli.main_guard(main)
