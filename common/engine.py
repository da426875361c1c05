"""The training engine shared by every task: epochs, AMP, DDP, checkpoint/resume, CSV + TensorBoard logs, tqdm.

A task script reads like a recipe::

    args = cli.parse(parser, argv)              # flags (common.cli) + validation of registry names
    env = engine.setup(args)                    # torchrun process group, device, seeds, determinism
    task = engine.Task(name="cf10", model=..., train_set=..., test_set=..., train_loss=..., ...)
    engine.fit(args, task, env)                 # -> summary dict; writes <out-dir>/<run-name>/

Per epoch ``fit`` trains (``method.train_step`` per batch, then the optimizer/GradScaler step), evaluates on the
whole test set (fp32, no grad), steps the LR schedule, appends a row to ``metrics.csv`` + TensorBoard and writes
``checkpoint_latest.pt`` (and ``checkpoint_best.pt`` when ``test_acc`` improved) atomically. Only rank 0 writes.

The optimizer is ``--opt`` (:data:`OPTIMIZERS`) over ``task.param_groups(model)`` (default: all parameters); the
schedule is ``--lr-schedule`` (:data:`SCHEDULES`, stepped per epoch) unless ``task.make_scheduler`` returns its own
``(scheduler, "epoch" | "step")``.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from common import checkpoint, distributed, methods
from common.errors import TrainingStopped, UsageError
from common.methods.base import Method, StepContext
from common.neuron import reset_net
from common.registry import Registry
from common.runlog import RunLog

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("sgd", lambda params, args: torch.optim.SGD(
    params, lr=args.lr, momentum=args.momentum, weight_decay=args.wd))
OPTIMIZERS.register("adam", lambda params, args: torch.optim.Adam(params, lr=args.lr, weight_decay=args.wd))
OPTIMIZERS.register("adamw", lambda params, args: torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd))

# Per-epoch schedules: cosine ``lr_e = lr (1 + cos(pi e / epochs)) / 2``; constant ``lr_e = lr``.
SCHEDULES = Registry("lr schedule")
SCHEDULES.register("cosine", lambda opt, args: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs))
SCHEDULES.register("constant", lambda opt, args: torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0))


def identity(x):
    return x


def top1(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(number of samples whose argmax matches, batch size)``; soft targets (mixup) count their argmax."""
    labels = target.argmax(-1) if target.ndim > 1 else target
    return (logits.argmax(-1) == labels).sum(), target.shape[0]


@dataclass
class Task:
    """Everything task-specific that :func:`fit` needs.

    ``encode(x) -> x_seq`` ``[T, N, ...]`` and ``decode(out_seq) -> logits`` ``[N, classes]`` (identities for ANN
    models). ``accuracy(logits, target) -> (numerator, denominator)`` is summed over the epoch, so
    ``(correct, batch)`` gives a per-sample accuracy and ``(batch_acc, 1)`` a mean of batch accuracies.
    ``param_groups(model)`` selects what the optimizer trains (dicts may override lr/weight_decay per group);
    ``make_scheduler(optimizer, args, steps_per_epoch) -> (scheduler, "epoch" | "step")`` replaces the default
    schedule. ``build_model(kind)`` builds another variant (``"ann"`` for a distillation teacher).
    ``name_parts`` go into the run name (e.g. ``("T4", "c128")``).
    """

    name: str
    model: nn.Module
    train_set: Dataset
    test_set: Dataset
    train_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    test_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    encode: Callable[[torch.Tensor], torch.Tensor] = identity
    decode: Callable[[torch.Tensor], torch.Tensor] = identity
    accuracy: Callable[[torch.Tensor, torch.Tensor], tuple] = top1
    train_collate: Callable | None = None
    test_collate: Callable | None = None
    drop_last: bool = True
    param_groups: Callable[[nn.Module], Iterable] | None = None
    make_scheduler: Callable | None = None
    build_model: Callable[[str], nn.Module] | None = None
    name_parts: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.test_loss is None:
            self.test_loss = self.train_loss


@dataclass(frozen=True)
class Env:
    """The device this process trains on and its place in the (possibly single-process) job."""

    device: torch.device
    dist: distributed.DistInfo

    @property
    def is_main(self) -> bool:
        return self.dist.is_main


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(args) -> Env:
    """Join the torchrun job (if any), pick the device (``--amp`` is dropped off CUDA), seed every RNG with
    ``--seed`` (the same on all ranks, so models start identical) and configure cuDNN (deterministic as in the
    survey; ``--deterministic`` also turns on ``torch.use_deterministic_algorithms``). Call before building the
    model."""
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise UsageError(f"--device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device is available (use --device cpu)")
    if getattr(args, "amp", False) and device.type != "cuda":
        print("note: --amp needs CUDA; training in fp32", file=sys.stderr)
        args.amp = False
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if args.deterministic or torch.are_deterministic_algorithms_enabled():  # the call imports torch._dynamo (slow)
        torch.use_deterministic_algorithms(args.deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    info = distributed.init(device.type)
    if device.type == "cuda":
        if info.distributed:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    seed_everything(args.seed)
    return Env(device, info)


def run_name(args, task: Task, method: Method | None = None) -> str:
    """``--run-name``, else ``{task}_{method}[_{neuron}_{norm}_{sg}{alpha}]_{task parts}_e{E}_b{B}_{opt}_lr{lr}``
    ``[_amp]_s{seed}`` (neuron parts for SNN methods only)."""
    if getattr(args, "run_name", None):
        return args.run_name
    method = method or methods.get(args.method)(args, task)
    parts = [task.name, args.method]
    if method.model_kind == "snn":
        alpha = "" if args.sg_alpha is None else f"{args.sg_alpha:g}"
        parts += [args.neuron, args.norm, args.sg + alpha]
        if args.backend != "auto":
            parts.append(args.backend)
    parts += [*task.name_parts, *method.name_parts(), f"e{args.epochs}", f"b{args.batch_size}", args.opt,
              f"lr{args.lr:g}"]
    if args.amp:
        parts.append("amp")
    parts.append(f"s{args.seed}")
    return "_".join(parts)


def resolve_run_dir(args, name: str) -> tuple[Path, Path | None]:
    """``(run_dir, checkpoint to resume or None)``. ``--resume`` (a checkpoint or a run directory) continues in the
    checkpoint's folder; otherwise ``<out-dir>/<name>``, refused if it already holds checkpoints."""
    if args.resume:
        ckpt = checkpoint.find(args.resume, "checkpoint_latest.pt", "--resume")
        return ckpt.parent, ckpt
    run_dir = Path(args.out_dir) / name
    existing = sorted(run_dir.glob("checkpoint_*.pt"))
    if existing:
        raise UsageError(f"run directory {run_dir} already holds {existing[0].name}; continue it with "
                         f"--resume {run_dir}, or choose another --out-dir / --run-name")
    return run_dir, None


def make_loaders(args, task: Task, env: Env) -> tuple[DataLoader, DataLoader]:
    """Shuffled train loader (``DistributedSampler`` under torchrun) and a sharded, unpadded test loader.

    Both own a ``torch.Generator`` that :func:`_seed_epoch` re-seeds from ``(seed, epoch, rank)``, so the order and
    the worker augmentation seeds of an epoch do not depend on what ran before (exact resume)."""
    common = dict(batch_size=args.batch_size, num_workers=args.workers, pin_memory=env.device.type == "cuda")
    info = env.dist
    if info.distributed:
        sampler = DistributedSampler(task.train_set, info.world_size, info.rank, shuffle=True, seed=args.seed)
        train = DataLoader(task.train_set, sampler=sampler, drop_last=task.drop_last, collate_fn=task.train_collate,
                           generator=torch.Generator(), **common)
        test_sampler = distributed.ShardSampler(len(task.test_set), info.rank, info.world_size)
    else:
        train = DataLoader(task.train_set, shuffle=True, drop_last=task.drop_last, collate_fn=task.train_collate,
                           generator=torch.Generator(), **common)
        test_sampler = None
    test = DataLoader(task.test_set, sampler=test_sampler, collate_fn=task.test_collate,
                      generator=torch.Generator(), **common)
    return train, test


def _seed_epoch(loader: DataLoader, args, epoch: int, rank: int) -> None:
    seed = int(np.random.SeedSequence([args.seed, epoch, rank]).generate_state(1, np.uint64)[0] >> 1)
    loader.generator.manual_seed(seed)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)


def _limit(loader: DataLoader, limit: int | None) -> int:
    return len(loader) if not limit else min(len(loader), limit)


def _peak_mem_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated this epoch, or the process's peak resident set size on CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to(device, batch):
    x, target = batch
    non_blocking = device.type == "cuda"
    return x.to(device, non_blocking=non_blocking), target.to(device, non_blocking=non_blocking)


class _Meter:
    """Sums ``loss * n``, ``n``, accuracy numerator/denominator on the device (no host sync per batch)."""

    def __init__(self, device):
        self.totals = torch.zeros(4, dtype=torch.float64, device=device)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)

    def add(self, loss: torch.Tensor, n: int, acc: tuple) -> None:
        num, den = acc
        self.totals[0] += loss.double() * n
        self.totals[1] += n
        self.totals[2] += num
        self.totals[3] += den
        self.bad |= ~torch.isfinite(loss)

    def any_bad(self) -> bool:
        """Whether any rank saw a NaN/inf loss (one tiny all-reduce)."""
        return bool(distributed.all_reduce(self.bad.to(torch.int32), "max").item())

    def result(self) -> dict:
        loss_sum, n, num, den = distributed.all_reduce(self.totals.clone()).tolist()
        return {"loss": loss_sum / max(n, 1), "acc": num / max(den, 1), "samples": n}

    def postfix(self) -> dict:
        loss_sum, n, num, den = self.totals.tolist()
        return {"loss": f"{loss_sum / max(n, 1):.4f}", "acc": f"{num / max(den, 1):.2%}"}


def train_one_epoch(method: Method, model: nn.Module, loader, n_batches: int, optimizer, scaler, ctx: StepContext,
                    args, task: Task, scheduler=None, epoch: int = 0, on_bad: str = "") -> dict:
    """One pass over ``n_batches`` training batches; ``scheduler`` (if given) is stepped after every batch.

    Raises :class:`TrainingStopped` when a loss is NaN/inf (checked every ``--print-freq`` batches)."""
    model.train()
    meter = _Meter(ctx.device)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    bar = tqdm(total=n_batches, desc=f"epoch {epoch} train", leave=False, dynamic_ncols=True,
               disable=True if not distributed.is_main() else None)
    start = time.perf_counter()
    pending = 0
    for i, batch in enumerate(itertools.islice(loader, n_batches)):
        x, target = _to(ctx.device, batch)
        reset_net(model)
        optimizer.zero_grad(set_to_none=True)
        out = method.train_step(model, x, target, ctx)
        if args.clip_grad_norm:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, args.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        reset_net(model)
        if scheduler is not None:
            scheduler.step()
        meter.add(out.loss, target.shape[0], task.accuracy(out.logits, target))
        pending += 1
        if pending == args.print_freq or i + 1 == n_batches:
            if meter.any_bad():
                bar.close()
                raise TrainingStopped(f"the training loss became NaN/inf at epoch {epoch}, batch {i}; "
                                      f"stopping. {on_bad}")
            bar.set_postfix(meter.postfix(), refresh=False)
            bar.update(pending)
            pending = 0
    _sync(ctx.device)
    seconds = time.perf_counter() - start
    bar.close()
    return {**meter.result(), "seconds": seconds}


@torch.no_grad()
def evaluate(method: Method, model: nn.Module, loader, n_batches: int, ctx: StepContext, task: Task) -> dict:
    """Test loss and accuracy over ``n_batches`` batches (all ranks' shards together), fp32, ``model.eval()``."""
    model.eval()
    meter = _Meter(ctx.device)
    start = time.perf_counter()
    bar = tqdm(total=n_batches, desc="test", leave=False, dynamic_ncols=True,
               disable=True if not distributed.is_main() else None)
    for batch in itertools.islice(loader, n_batches):
        x, target = _to(ctx.device, batch)
        reset_net(model)
        out = method.eval_step(model, x, target, ctx)
        reset_net(model)
        meter.add(out.loss, target.shape[0], task.accuracy(out.logits, target))
        bar.update()
    _sync(ctx.device)
    seconds = time.perf_counter() - start
    bar.close()
    return {**meter.result(), "seconds": seconds}


def _json_args(args, task: Task) -> dict:
    return json.loads(json.dumps({**vars(args), "task": task.name, "argv": sys.argv}, default=str))


def _broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's BN running statistics, so all ranks evaluate (and rank 0 saves) the same model."""
    if distributed.active():
        for buf in model.buffers():
            torch.distributed.broadcast(buf, 0)


def fit(args, task: Task, env: Env | None = None) -> dict:
    """Train ``task.model`` with ``--method`` for ``--epochs`` (or until ``--stop-after``); returns the summary dict
    (also written to ``summary.json`` once the last epoch is done). Rank 0 writes the run directory.

    Raises :class:`UsageError` for a run directory that would be overwritten or a missing ``--resume`` checkpoint,
    and :class:`TrainingStopped` when the loss becomes NaN/inf (the last good checkpoint stays)."""
    env = env or setup(args)
    try:
        return _fit(args, task, env)
    finally:
        if env.dist.distributed:
            distributed.cleanup()


def _fit(args, task: Task, env: Env) -> dict:
    info, device = env.dist, env.device
    method = methods.get(args.method)(args, task)
    error = None
    if info.is_main:  # first of all: refuse to overwrite a run before anything costly happens
        try:
            run_dir, resume = resolve_run_dir(args, run_name(args, task, method))
        except UsageError as e:
            error, run_dir, resume = str(e), None, None
    run_dir, resume, error = distributed.broadcast_object(
        (run_dir, resume, error) if info.is_main else None)
    if error:
        raise UsageError(error)

    model = task.model.to(device)
    if args.sync_bn and info.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    params = task.param_groups(model) if task.param_groups is not None else model.parameters()
    optimizer = OPTIMIZERS.get(args.opt)(params, args)
    train_loader, test_loader = make_loaders(args, task, env)
    n_train, n_test = _limit(train_loader, args.limit_batches), _limit(test_loader, args.limit_batches)
    if task.make_scheduler is not None:
        scheduler, interval = task.make_scheduler(optimizer, args, n_train)
    else:
        scheduler, interval = SCHEDULES.get(args.lr_schedule)(optimizer, args), "epoch"
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp)
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if info.distributed else model
    ctx = StepContext(device, args.amp, scaler, ddp)
    method.setup(ctx)

    start_epoch, best_acc, best_epoch, rng_states = 0, -1.0, -1, None
    if resume is not None:
        ckpt = checkpoint.load(resume, map_location=device)
        model.load_state_dict(ckpt["model"])
        if args.test_only:
            result = evaluate(method, model, test_loader, n_test, ctx, task)
            if info.is_main:
                print(f"test loss {result['loss']:.4f}  test acc {result['acc']:.2%}  ({resume})", flush=True)
            return {"test_loss": result["loss"], "test_acc": result["acc"], "checkpoint": str(resume)}
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best_acc, best_epoch = ckpt["epoch"] + 1, ckpt["best_test_acc"], ckpt["best_epoch"]
        rng_states = ckpt["rng"]
    elif args.test_only:
        raise UsageError("--test-only needs --resume CHECKPOINT")

    log = RunLog(run_dir, start_epoch, enabled=info.is_main)
    log.write_args({**_json_args(args, task), "world_size": info.world_size, "device": str(device),
                    **({"resumed_from": str(resume)} if resume else {})})
    if rng_states is not None and len(rng_states) == info.world_size:
        checkpoint.set_rng_state(rng_states[info.rank])
    elif info.distributed:  # different augmentation streams per rank; same model init was seeded in setup()
        seed_everything(args.seed + info.rank + 1000 * start_epoch)

    stop = min(args.epochs, args.stop_after or args.epochs)
    last = {}
    try:
        for epoch in range(start_epoch, stop):
            last = _run_epoch(args, task, env, method, ddp, model, optimizer, scheduler, interval, scaler, ctx,
                              train_loader, test_loader, n_train, n_test, epoch, run_dir)
            improved = last["test_acc"] > best_acc
            if improved:
                best_acc, best_epoch = last["test_acc"], epoch
            log.log_epoch(last)
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                "best_test_acc": best_acc, "best_epoch": best_epoch,
                "rng": distributed.all_gather_object(checkpoint.rng_state()),
                "args": _json_args(args, task),
            }
            if info.is_main:
                checkpoint.save_atomic(state, run_dir / "checkpoint_latest.pt")
                if improved:
                    checkpoint.save_atomic(state, run_dir / "checkpoint_best.pt")
                print(_epoch_line(last, stop, best_acc, best_epoch), flush=True)
        summary_path = run_dir / "summary.json"
        if not last and summary_path.exists():  # resumed a finished run: nothing trained, keep its summary
            return json.loads(summary_path.read_text())
        summary = {"finished": stop >= args.epochs, "best_test_acc": best_acc, "best_epoch": best_epoch,
                   "epochs": args.epochs, "epochs_done": max(stop, start_epoch), "run_dir": str(run_dir)}
        if last:
            summary.update(final_test_acc=last["test_acc"], final_train_acc=last["train_acc"])
        if summary["finished"]:
            log.write_summary(summary)
        return summary
    finally:
        log.close()


def _run_epoch(args, task, env, method, ddp, model, optimizer, scheduler, interval, scaler, ctx,
               train_loader, test_loader, n_train, n_test, epoch, run_dir) -> dict:
    """Train + evaluate one epoch; returns the ``metrics.csv`` row."""
    if env.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(env.device)
    start = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    _seed_epoch(train_loader, args, epoch, env.dist.rank)
    _seed_epoch(test_loader, args, epoch, env.dist.rank)
    latest = run_dir / "checkpoint_latest.pt"
    on_bad = (f"The last good checkpoint is {latest} (epoch {epoch - 1})." if epoch > 0
              else "No checkpoint was written.")
    train = train_one_epoch(method, ddp, train_loader, n_train, optimizer, scaler, ctx, args, task,
                            scheduler if interval == "step" else None, epoch, on_bad)
    _broadcast_buffers(model)
    test = evaluate(method, ddp, test_loader, n_test, ctx, task)
    if not math.isfinite(test["loss"]):
        raise TrainingStopped(f"the test loss became NaN/inf at epoch {epoch}; stopping. {on_bad}")
    if interval == "epoch":
        scheduler.step()
    return {
        "epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"], "test_loss": test["loss"],
        "test_acc": test["acc"], "lr": lr,
        "train_samples_per_s": train["samples"] / max(train["seconds"], 1e-9),
        "test_samples_per_s": test["samples"] / max(test["seconds"], 1e-9),
        "peak_mem_mb": _peak_mem_mb(env.device), "epoch_time_s": time.perf_counter() - start,
    }


def _epoch_line(row: dict, stop: int, best_acc: float, best_epoch: int) -> str:
    eta = round((stop - 1 - row["epoch"]) * row["epoch_time_s"])
    return (f"epoch {row['epoch']}/{stop - 1}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  "
            f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}  best {best_acc:.2%} (epoch {best_epoch})  "
            f"lr {row['lr']:.3g}  {row['train_samples_per_s']:.0f}/{row['test_samples_per_s']:.0f} samples/s  "
            f"{row['epoch_time_s']:.1f} s  eta {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}")


__all__ = ["Env", "OPTIMIZERS", "SCHEDULES", "Task", "TrainingStopped", "UsageError", "evaluate", "fit",
           "make_loaders", "run_name", "setup", "top1", "train_one_epoch"]
