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
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from common import checkpoint, kernels, memory, methods, norm, optim, quirks, rundir, surrogate
from common import neuron as neurons
from common.errors import RunInterrupted, StorageError, Terminated, TrainingStopped, UsageError, interrupt_exit_code

# Flags that do not change the experiment: with --resume they may differ from the recorded run (dests).
RUNTIME_FLAGS = frozenset({
    "device", "workers", "data_dir", "print_freq", "stop_after", "resume", "test_only", "check_config", "sop",
    "sop_mode", "cache_dir", "no_cache", "teacher", "cifar10_unverified",
    "out_dir", "run_name",  # where a run lives: with --resume its directory is the --resume path
    "init_from",  # provenance of a run's first weights (args.json records the file and its hash); never reloaded
    "memopt",  # activation-memory level: the same gradients bit for bit (common.memory)
})
# Flags that only shape the data flow: they may also differ when a resumed run is only evaluated (--test-only, --sop).
EVALUATION_FLAGS = frozenset({"limit_batches", "batch_size"})
# Runtime flags that a resumed run does not take over from the recorded run (this invocation's value or default).
NOT_INHERITED = frozenset({"device", "stop_after", "resume", "test_only", "check_config", "sop", "sop_mode",
                           "init_from"})


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


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` that knows its ``task`` (checked against a resumed run's) and answers a bad command line
    with a short usage line and the error instead of the full usage."""

    def __init__(self, *args, task: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task
        # dest -> f(namespace): a default that depends on other flags, filled in where the flag parsed as None
        self.derived_defaults: dict[str, Callable[[argparse.Namespace], object]] = {}

    def parse_args(self, args=None, namespace=None):
        namespace = super().parse_args(args, namespace)
        for dest, derive in self.derived_defaults.items():
            if getattr(namespace, dest, None) is None:
                setattr(namespace, dest, derive(namespace))
        return namespace

    def error(self, message: str):
        self.exit(2, f"usage: {self.prog} [options]  (all options: {self.prog} --help)\n"
                     f"{self.prog}: error: {message}\n")


def _neuron_args(g) -> None:
    """The neuron model, its surrogate gradient, kernel backend and number of time steps."""
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


def _model_args(g) -> None:
    """Normalisation, training rule, SyncBN, activation memory."""
    g.add_argument("--norm", default="bn", help=f"normalisation: {_names(norm.names())}")
    g.add_argument("--method", default="bptt", help=f"training rule: {_names(methods.names())}")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across ranks under torchrun")
    g.add_argument("--memopt", type=int, choices=sorted(memory.LEVELS), default=memory.DEFAULT_LEVEL,
                   help="activation memory (same gradients): 0 plain, 1 spikes saved as bits + norm->neuron saved "
                        "once, 2 also recompute each conv->norm->neuron block in backward (docs/memory.md)")


def _optimisation_args(g) -> None:
    """Optimizer, schedule, regularisation, mixed precision and the recipe flags of ``common.optim``."""
    g.add_argument("-b", "--batch-size", type=_positive_int, default=128, help="batch size per process")
    g.add_argument("--epochs", type=_positive_int, default=256)
    g.add_argument("--lr", type=float, default=0.1, help="learning rate")
    g.add_argument("--opt", default="sgd", help=f"optimizer: {_names(optim.OPTIMIZERS.names())}")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    g.add_argument("--wd", type=float, default=0.0, help="weight decay")
    g.add_argument("--lr-schedule", default="cosine", help=f"per-epoch schedule: {_names(optim.SCHEDULES.names())}")
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradient norm to this value")
    g.add_argument("--amp", action="store_true", help="CUDA mixed precision: fp16 autocast + GradScaler (train only)")
    g.add_argument("--skip-nonfinite", action="store_true",
                   help="without AMP, skip an optimizer step whose gradient norm is inf/NaN, as AMP's GradScaler does")
    optim.add_args(g)


def _run_args(g) -> None:
    """Where the run lives, resume / init / evaluation, data location, device, seeds, workers."""
    g.add_argument("--out-dir", default="./logs", help="runs go to OUT_DIR/RUN_NAME/")
    g.add_argument("--run-name", default=None, help="run directory name; unset: derived from the flags")
    g.add_argument("--resume", default=None, metavar="PATH",
                   help="continue a run (its directory or one of its checkpoints) with its recorded configuration; "
                        "only flags that do not change the experiment may be given with it")
    g.add_argument("--check-config", action="store_true",
                   help="with --resume: exit 0 if the given command line (defaults included) requests exactly the "
                        "run's recorded configuration, else name the differing flags and exit 2")
    g.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start a NEW run from this checkpoint's model weights only (file or run directory: its "
                        "checkpoint_latest.pt); optimizer, schedule and epochs start afresh")
    g.add_argument("--stop-after", type=_positive_int, default=None, metavar="EPOCHS",
                   help="stop once this many epochs are done (the schedule still spans --epochs)")
    g.add_argument("--early-stop-patience", type=int, default=0, metavar="N",
                   help="stop once --early-stop-on has not improved for N epochs in a row (0: never)")
    g.add_argument("--early-stop-on", default="test_loss", metavar="COLUMN",
                   help="metrics.csv column watched by --early-stop-patience: lower is better for a *loss column, "
                        "higher for the others")
    g.add_argument("--keep-top", type=int, default=0, metavar="K",
                   help="also keep the K best epochs by the best test metric as checkpoint_top_epochNNN.pt (0: none)")
    g.add_argument("--test-only", action="store_true", help="evaluate the --resume checkpoint and exit")
    g.add_argument("--data-dir", default="./data", help="dataset root")
    g.add_argument("--device", default=default_device(), help="cuda, cuda:N or cpu")
    g.add_argument("--seed", type=int, default=2020)
    g.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    g.add_argument("-j", "--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="data loader worker processes (default: 4, or the number of CPUs if fewer)")
    g.add_argument("--limit-batches", type=_positive_int, default=None, metavar="K",
                   help="at most K train and K test batches per epoch (smoke runs)")
    g.add_argument("--print-freq", type=_positive_int, default=20,
                   help="update the progress bar (one host sync) every this many batches")


def base_parser(description: str, task: str | None = None, **defaults) -> Parser:
    """A parser with every shared flag; ``defaults`` (dest=value) override the shared defaults for this task.
    ``task`` (the engine task's name) lets ``--resume`` refuse a run of another task."""
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter, task=task)
    _neuron_args(p.add_argument_group("neuron"))
    _model_args(p.add_argument_group("model and training rule"))
    _optimisation_args(p.add_argument_group("optimisation"))
    _run_args(p.add_argument_group("run"))
    quirks.add_args(p.add_argument_group("survey compatibility"), task)
    for name in methods.names():
        methods.get(name).add_args(p)
    p.set_defaults(**defaults)
    return p


def _finite_at_least_0(v) -> bool:
    return math.isfinite(v) and v >= 0


def _finite_above_0(v) -> bool:
    return math.isfinite(v) and v > 0


# dest -> (check, what the value must be); a None value (flag unset) is not checked
VALUE_CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (_finite_at_least_0, "a finite number >= 0"),
    "wd": (_finite_at_least_0, "a finite number >= 0"),
    "momentum": (_finite_at_least_0, "a finite number >= 0"),
    "max_lr": (_finite_above_0, "a finite number > 0"),
    "clip_grad_norm": (_finite_above_0, "a finite number > 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "mixup_alpha": (_finite_at_least_0, "a finite number >= 0"),
    "cutmix_alpha": (_finite_at_least_0, "a finite number >= 0"),
    "random_erase": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "channels": (lambda v: v > 0, "> 0"),
    "hidden": (lambda v: v > 0, "> 0"),
    "workers": (lambda v: v >= 0, ">= 0"),
    "early_stop_patience": (lambda v: v >= 0, ">= 0"),
    "keep_top": (lambda v: v >= 0, ">= 0"),
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_values(args) -> None:
    """Numeric flags of :data:`VALUE_CHECKS` in range (NaN and inf refused); :class:`UsageError` otherwise."""
    for dest, (ok, wanted) in VALUE_CHECKS.items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            raise UsageError(f"{_flag(dest)} must be {wanted}, got {value}")


def _writable_folder(path: Path, flag: str) -> None:
    """``path`` is (or can be created as) a folder we may write into."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path} is not writable (no write permission in {existing})")


def check_locations(args) -> None:
    """``--run-name`` is one plain folder name; ``--out-dir`` (or the resumed run directory) is writable."""
    name = getattr(args, "run_name", None)
    if name is not None and (name in ("", ".", "..") or "/" in name or (os.altsep and os.altsep in name)
                             or "\0" in name):
        raise UsageError(f"--run-name {name!r} must be a plain folder name (no path separator, not '.' or '..'); "
                         "use --out-dir for the parent folder")
    if getattr(args, "resume", None):
        _writable_folder(resume_dir(args.resume), "--resume")
    elif getattr(args, "out_dir", None) is not None:
        _writable_folder(Path(args.out_dir), "--out-dir")


def validate(args) -> None:
    """Check every registry name in ``args``, the numeric ranges (:func:`check_values`) and the run location
    (:func:`check_locations`); raise :class:`UsageError` (one line, with the valid names) otherwise."""
    checks = {"neuron": neurons.NEURONS, "norm": norm.NORMS, "method": methods.METHODS,
              "opt": optim.OPTIMIZERS, "lr_schedule": optim.SCHEDULES}
    try:
        for dest, registry in checks.items():
            if hasattr(args, dest):
                registry.get(getattr(args, dest))
        if hasattr(args, "sg"):
            surrogate.get(args.sg, alpha=getattr(args, "sg_alpha", None))
        if hasattr(args, "neuron"):  # --neuron-opt keys and types, --backend for this neuron
            neurons.check_config(neurons.NeuronConfig.from_args(args))
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    check_values(args)
    check_locations(args)


def resume_dir(path: str | Path) -> Path:
    """The run directory of ``--resume PATH`` (a run directory, or a checkpoint file inside one)."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    raise UsageError(f"--resume: no run directory or checkpoint at {path}")


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests that ``argv`` sets explicitly: ``argv`` parsed again with every default suppressed."""
    saved = [(action, action.default) for action in parser._actions]
    saved_defaults = parser._defaults
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        parser._defaults = {}
        namespace, _ = parser.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
        parser._defaults = saved_defaults
    return set(vars(namespace))


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> its longest option string (``method`` -> ``--method``, not ``--ann``)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in names:
            names[action.dest] = max(action.option_strings, key=len)
    return names


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def _shown(value) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    return "none" if value is None else str(value)


def _conflicts(parser, args, recorded: dict, dests, allowed=RUNTIME_FLAGS) -> list[str]:
    names = _flag_names(parser)
    found = []
    for dest in sorted(dests):
        if dest in allowed or dest not in recorded or not hasattr(args, dest):
            continue
        if _jsonable(getattr(args, dest)) != recorded[dest]:
            found.append(f"{names.get(dest, _flag(dest))} {_shown(getattr(args, dest))} "
                         f"(recorded {_shown(recorded[dest])})")
    return found


def config_differences(parser: argparse.ArgumentParser, argv: list[str], run_dir: str | Path) -> list[str]:
    """The flags of the full request ``argv`` (defaults included) that differ from ``run_dir``'s recorded
    configuration, as ``"--flag value (recorded value)"``; :data:`RUNTIME_FLAGS` do not count. Empty when a finished
    run may stand for the request."""
    args = parser.parse_args(argv)
    if isinstance(getattr(args, "neuron_extra", None), list):
        args.neuron_extra = dict(args.neuron_extra)
    return _conflicts(parser, args, rundir.read_args(run_dir), set(vars(args)))


def apply_recorded(parser: argparse.ArgumentParser, args, argv: list[str]) -> Path:
    """``--resume``: take the run's recorded configuration (``args.json``) into ``args``; returns the run directory.

    Flags given on the command line must equal the recorded values, except :data:`RUNTIME_FLAGS` (and
    :data:`EVALUATION_FLAGS` with ``--test-only`` / ``--sop``); with
    ``--check-config`` every flag (defaults included) must. Raises
    :class:`UsageError` listing the conflicting flags with their recorded values, or naming the recorded task when
    the run belongs to another task."""
    run_dir = resume_dir(args.resume)
    if not (getattr(args, "test_only", False) or getattr(args, "sop", False)):  # reading a live run is fine
        rundir.refuse_if_in_use(run_dir)
    recorded = rundir.read_args(run_dir)
    task = getattr(parser, "task", None)
    if task and recorded.get("task") not in (None, task):
        raise UsageError(f"--resume {args.resume}: that is a run of task '{recorded['task']}', not '{task}'; "
                         f"resume it with the {recorded['task']} script")
    explicit = explicit_dests(parser, argv)
    if "init_from" in explicit:
        raise UsageError("--init-from starts a new run from a checkpoint's weights; it cannot be combined with "
                         "--resume")
    evaluating = getattr(args, "test_only", False) or getattr(args, "sop", False)
    allowed = RUNTIME_FLAGS | EVALUATION_FLAGS if evaluating else RUNTIME_FLAGS
    conflicts = _conflicts(parser, args, recorded, set(vars(args)) if args.check_config else explicit, allowed)
    if conflicts:
        raise UsageError(f"--resume {run_dir}: flags differ from the run's recorded configuration: "
                         f"{'; '.join(conflicts)}. Resume without them, or start a new run (--init-from {run_dir} "
                         "takes its weights)")
    for dest in vars(args):
        if dest in recorded and dest not in explicit and dest not in NOT_INHERITED:
            setattr(args, dest, recorded[dest])
    return run_dir


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``), rebuild a ``--resume``d run's recorded configuration
    (:func:`apply_recorded`) and :func:`validate` it, all before anything expensive happens.

    ``--check-config`` (with ``--resume``) prints the verdict and exits 0 here when the configurations match."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if isinstance(getattr(args, "neuron_extra", None), list):
        args.neuron_extra = dict(args.neuron_extra)
    if getattr(args, "check_config", False) and not getattr(args, "resume", None):
        raise UsageError("--check-config compares with a recorded run: give --resume RUN_DIR")
    run_dir = apply_recorded(parser, args, argv) if getattr(args, "resume", None) else None
    evaluates_or_compares = any(getattr(args, flag, False) for flag in ("test_only", "sop", "check_config"))
    if run_dir is not None and not evaluates_or_compares:  # a damaged checkpoint is refused before data loads
        checkpoint.verify(checkpoint.find(args.resume, checkpoint.LATEST, "--resume"))
    if getattr(args, "init_from", None):
        args.init_from = str(checkpoint.find(args.init_from, checkpoint.LATEST, "--init-from"))
        checkpoint.verify(args.init_from)
    validate(args)
    quirks.check(args, getattr(parser, "task", None))
    if getattr(args, "check_config", False):
        print(f"{run_dir}: the command line requests its recorded configuration")
        raise SystemExit(0)
    return args


def _sigterm_handler(main_pid: int):
    def handler(signum, frame):
        if os.getpid() != main_pid:  # a forked worker: its parent decides when it ends
            return
        raise Terminated()

    return handler


def _fail(prog: str, message: str, code: int):
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def main_guard(main: Callable[[], object]) -> None:
    """Run ``main()`` with SIGTERM raising :class:`Terminated` (handled like Ctrl-C); report the known errors as one
    line on stderr with the exit code of ``common.errors.EXIT_CODES``: :class:`RunInterrupted` (its message names
    the resume command; 130/143), other interrupts (130/143), :class:`UsageError` (2; ``DataError`` and
    ``CheckpointError`` 3), :class:`TrainingStopped` (4), :class:`StorageError` (5); ``ValueError`` and
    ``FileNotFoundError`` from input checks exit 2. Anything else is a bug: traceback, exit 1.
    Set ``SNN_TRACEBACK=1`` to see the traceback of the known errors too."""
    prog = os.path.basename(sys.argv[0])
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm_handler(os.getpid()))
    except ValueError:  # not the main thread
        pass
    try:
        main()
    except RunInterrupted as e:
        _fail(prog, str(e), e.exit_code)
    except KeyboardInterrupt as e:
        code = interrupt_exit_code(e)
        _fail(prog, "terminated (SIGTERM)" if code == 143 else "interrupted", code)
    except (UsageError, TrainingStopped, StorageError, ValueError, FileNotFoundError) as e:
        if os.environ.get("SNN_TRACEBACK"):
            raise
        _fail(prog, f"error: {e}", getattr(e, "exit_code", 2))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
