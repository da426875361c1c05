"""Flags shared by every task script, their validation, and the one-line error guard of the entry points.

    parser = cli.base_parser("CIFAR10 ...", epochs=256)      # task defaults override the shared ones
    parser.add_argument("--channels", type=int, default=128)  # task flags
    args = cli.parse(parser, argv)                            # unknown registry names -> UsageError (one line)

Names offered by ``--sg``, ``--neuron``, ``--norm``, ``--method``, ``--backend``, ``--opt`` and ``--lr-schedule``
come from their registries, so a newly registered object is usable without touching this file.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Callable

import torch

from common import kernels, methods, norm, surrogate
from common import neuron as neurons
from common.errors import TrainingStopped, UsageError


def _alpha(text: str) -> float | None:
    """A float, or ``default`` for the surrogate's own default (overrides a task's default alpha)."""
    return None if text == "default" else float(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _v_reset(text: str) -> float | None:
    """``--v-reset none`` selects the soft reset (subtract the threshold)."""
    return None if text.lower() == "none" else float(text)


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _names(registry_names: list[str]) -> str:
    return ", ".join(registry_names)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def base_parser(description: str, **defaults) -> argparse.ArgumentParser:
    """A parser with every shared flag; ``defaults`` (dest=value) override the shared defaults for this task."""
    from common import engine

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("neuron")
    g.add_argument("--neuron", default="lif", help=f"neuron model: {_names(neurons.names())}")
    g.add_argument("--tau", type=float, default=2.0, help="membrane time constant (LIF-like neurons)")
    g.add_argument("--v-threshold", type=float, default=1.0, help="firing threshold")
    g.add_argument("--v-reset", type=_v_reset, default=0.0, help="reset potential; 'none' = soft reset")
    g.add_argument("--detach-reset", action=argparse.BooleanOptionalAction, default=True,
                   help="no gradient through the reset")
    g.add_argument("--decay-input", action=argparse.BooleanOptionalAction, default=True,
                   help="LIF charge h = v + (x - (v - v_reset)) / tau (else h = v - (v - v_reset) / tau + x)")
    g.add_argument("--sg", default="atan", help=f"surrogate gradient: {_names(surrogate.names())}")
    g.add_argument("--sg-alpha", type=_alpha, default=None,
                   help="surrogate parameter alpha; 'default' (or unset): the surrogate's own")
    g.add_argument("--backend", default="auto", help=f"neuron kernel: auto, {_names(kernels.BACKENDS.names())}")
    g.add_argument("-T", "--T", dest="T", type=_positive_int, default=4, help="number of time steps")
    g.add_argument("--neuron-opt", dest="neuron_extra", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="neuron-specific option (repeatable), e.g. k=4")

    g = p.add_argument_group("model and training rule")
    g.add_argument("--norm", default="bn", help=f"normalisation: {_names(norm.names())}")
    g.add_argument("--method", default="bptt", help=f"training rule: {_names(methods.names())}")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across ranks under torchrun")

    g = p.add_argument_group("optimisation")
    g.add_argument("-b", "--batch-size", type=_positive_int, default=128, help="batch size per process")
    g.add_argument("--epochs", type=_positive_int, default=256)
    g.add_argument("--lr", type=float, default=0.1, help="learning rate")
    g.add_argument("--opt", default="sgd", help=f"optimizer: {_names(engine.OPTIMIZERS.names())}")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--wd", type=float, default=0.0, help="weight decay")
    g.add_argument("--lr-schedule", default="cosine", help=f"per-epoch schedule: {_names(engine.SCHEDULES.names())}")
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradient norm to this value")
    g.add_argument("--amp", action="store_true", help="CUDA mixed precision: fp16 autocast + GradScaler (train only)")

    g = p.add_argument_group("run")
    g.add_argument("--out-dir", default="./logs", help="runs go to OUT_DIR/RUN_NAME/")
    g.add_argument("--run-name", default=None, help="run directory name; unset: derived from the flags")
    g.add_argument("--resume", default=None, metavar="PATH", help="continue from a checkpoint or run directory")
    g.add_argument("--stop-after", type=_positive_int, default=None, metavar="EPOCHS",
                   help="stop once this many epochs are done (the schedule still spans --epochs)")
    g.add_argument("--test-only", action="store_true", help="evaluate the --resume checkpoint and exit")
    g.add_argument("--data-dir", default="./data", help="dataset root")
    g.add_argument("--device", default=default_device(), help="cuda, cuda:N or cpu")
    g.add_argument("--seed", type=int, default=2020)
    g.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    g.add_argument("-j", "--workers", type=int, default=4, help="data loader worker processes")
    g.add_argument("--limit-batches", type=_positive_int, default=None, metavar="K",
                   help="at most K train and K test batches per epoch (smoke runs)")
    g.add_argument("--print-freq", type=_positive_int, default=20,
                   help="update the progress bar (one host sync) every this many batches")

    for name in methods.names():
        methods.get(name).add_args(p)
    p.set_defaults(**defaults)
    return p


def validate(args) -> None:
    """Check every registry name in ``args``; raise :class:`UsageError` with the valid names otherwise."""
    from common import engine

    checks = {"neuron": neurons.NEURONS, "norm": norm.NORMS, "method": methods.METHODS,
              "opt": engine.OPTIMIZERS, "lr_schedule": engine.SCHEDULES}
    try:
        for dest, registry in checks.items():
            if hasattr(args, dest):
                registry.get(getattr(args, dest))
        if hasattr(args, "backend") and args.backend != "auto":
            kernels.BACKENDS.get(args.backend)
        if hasattr(args, "sg"):
            surrogate.get(args.sg, alpha=getattr(args, "sg_alpha", None))
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) and :func:`validate` it."""
    args = parser.parse_args(argv)
    if isinstance(getattr(args, "neuron_extra", None), list):
        args.neuron_extra = dict(args.neuron_extra)
    validate(args)
    return args


def main_guard(main: Callable[[], object]) -> None:
    """Run ``main()``; bad input (:class:`UsageError`, ``ValueError``, ``FileNotFoundError``) exits 2 and a
    stopped training (:class:`TrainingStopped`) exits 1, each with one line on stderr and no traceback.
    Set ``SNN_TRACEBACK=1`` to see the traceback instead."""
    prog = os.path.basename(sys.argv[0])
    try:
        main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (continue with --resume RUN_DIR)", file=sys.stderr)
        sys.exit(130)
    except (UsageError, ValueError, FileNotFoundError, TrainingStopped) as e:
        if os.environ.get("SNN_TRACEBACK"):
            raise
        message = " ".join(str(e).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(1 if isinstance(e, TrainingStopped) else 2)
