"""The training engine shared by every task: epochs, AMP, DDP, accumulation, EMA, checkpoint/resume, logs, tqdm.

A task script reads like a recipe::

    args = cli.parse(parser, argv)              # flags (common.cli) + validation; --resume restores the run's flags
    env = engine.setup(args)                    # torchrun process group, device, seeds, cuDNN
    task = Task(name="cf10", build_model=..., build_data=..., train_loss=..., ...)   # common.task
    engine.fit(args, task, env)                 # -> summary dict; writes <out-dir>/<run-name>/

Per epoch ``fit`` trains (:func:`train_step` per batch), evaluates the test set (fp32, no grad; the EMA weights
when ``--ema-decay`` is set) with the task's evaluator, steps the schedule, appends a row to ``metrics.csv`` and
TensorBoard and writes the checkpoints atomically (``common.checkpoint``). Only rank 0 writes, holding an exclusive
lock on the run directory (``common.rundir``) for the run's lifetime.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from common import checkpoint, distributed, memory, methods, rundir
from common.batch import Batch
from common.ema import ModelEMA
from common.errors import RunInterrupted, Terminated, TrainingStopped, UsageError
from common.methods.base import Method, StepContext, StepOutput
from common.neuron import NeuronConfig, resolve_backend
from common.optim import OPTIMIZERS, SCHEDULES, Warmup, make_warmup
from common.runlog import RunLog
from common.state import reset_net
from common.task import Task, identity, keep_outputs, mean_over_time


@dataclass(frozen=True)
class Env:
    """The device this process trains on, its place in the (possibly single-process) job, and whether mixed
    precision is on (``--amp`` on CUDA; the flag itself is recorded as given)."""

    device: torch.device
    dist: distributed.DistInfo
    amp: bool = False

    @property
    def is_main(self) -> bool:
        return self.dist.is_main


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(args) -> Env:
    """Join the torchrun job (if any), pick the device (``--amp`` is dropped off CUDA), seed every RNG with
    ``--seed`` (the same on all ranks, so models start identical) and configure cuDNN: autotuned
    (``cudnn.benchmark``) unless ``--deterministic``, which also turns on ``torch.use_deterministic_algorithms``.
    Call before building the model."""
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise UsageError(f"--device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: no CUDA device is available (use --device cpu)")
    amp = bool(getattr(args, "amp", False))
    if amp and device.type != "cuda":
        print("note: --amp needs CUDA; training in fp32", file=sys.stderr)
        amp = False
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if args.deterministic or torch.are_deterministic_algorithms_enabled():  # the call imports torch._dynamo (slow)
        torch.use_deterministic_algorithms(args.deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = args.deterministic
    torch.backends.cudnn.benchmark = not args.deterministic
    info = distributed.init(device.type)
    if device.type == "cuda":
        if info.distributed:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    seed_everything(args.seed)
    return Env(device, info, amp)


def run_name(args, task: Task, method: Method | None = None) -> str:
    """``--run-name``, else ``{task}_{method}[_{neuron}_{norm}_{sg}{alpha}[_{backend}]]_{task parts}_e{E}_b{B}``
    ``_{opt}_lr{lr}[_amp]_s{seed}`` (neuron parts for SNN methods only)."""
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
    """``(run_dir, checkpoint to resume or None)``: ``--resume`` (a checkpoint or a run directory) continues in the
    checkpoint's folder, otherwise ``<out-dir>/<name>``."""
    if args.resume:
        ckpt = checkpoint.find(args.resume, "checkpoint_latest.pt", "--resume")
        return ckpt.parent, ckpt
    return Path(args.out_dir) / name, None


def claim_run_dir(stack: contextlib.ExitStack, run_dir: Path, resume: Path | None) -> None:
    """Lock ``run_dir`` for the lifetime of ``stack`` (a directory in use is refused as such, whatever it holds),
    then refuse a new run in a directory that already holds checkpoints."""
    stack.enter_context(rundir.lock(run_dir))
    existing = sorted(run_dir.glob("checkpoint_*.pt"))
    if resume is None and existing:
        raise UsageError(f"run directory {run_dir} already holds {existing[0].name}; continue it with "
                         f"--resume {run_dir}, or choose another --out-dir / --run-name")


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
    if len(train) == 0:
        raise UsageError(f"-b {args.batch_size} is larger than the training set ({len(task.train_set)} samples "
                         f"on {info.world_size} process(es)), so an epoch would have no batch; lower -b")
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


@dataclass(eq=False)
class TrainState:
    """Everything a training step and the epoch loop share; :meth:`state_dict` is the checkpoint.

    ``iteration`` counts batches since the run started (0-based index of the next batch) and ``last_step`` the
    iteration of the last optimizer step, as YOLOv5 counts them (gradient accumulation, warm-up)."""

    args: object
    task: Task
    env: Env
    method: Method
    model: nn.Module
    ddp: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    interval: str
    scaler: torch.amp.GradScaler
    ctx: StepContext
    ema: ModelEMA | None = None
    warmup: Warmup | None = None
    epoch: int = 0
    iteration: int = 0
    last_step: int = -1
    best: float = -math.inf
    best_epoch: int = -1
    best_key: str = "test_acc"
    stop_best: float = math.nan  # --early-stop-patience: best value of --early-stop-on (negated unless a loss)
    stop_wait: int = 0  # epochs since it last improved
    top: list = field(default_factory=list)  # --keep-top: [[best-metric value, epoch], ...] of the kept epochs
    skipped_steps: int = 0  # --skip-nonfinite: optimizer steps skipped in this process

    @property
    def stopped_early(self) -> bool:
        patience = getattr(self.args, "early_stop_patience", 0)
        return bool(patience) and self.stop_wait >= patience

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and selected: the EMA when enabled, else the training model."""
        return self.ema.module if self.ema is not None else self.ddp

    def accumulation(self) -> int:
        """Batches per optimizer step at the current iteration (``--accumulate``, ramped during warm-up)."""
        if self.warmup is not None:
            return self.warmup.accumulation(self.iteration)
        return self.args.accumulate

    def state_dict(self, task_name: str, args_json: dict) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "epoch": self.epoch, "iteration": self.iteration, "last_step": self.last_step,
            "best_value": self.best, "best_epoch": self.best_epoch, "task": task_name,
            "early_stop": [self.stop_best, self.stop_wait], "top": self.top,
            "rng": distributed.all_gather_object(checkpoint.rng_state()), "args": args_json,
        }

    def load_state_dict(self, ckpt: dict) -> None:
        """Everything but the model weights (loaded earlier) and the RNG states (restored by the caller)."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.epoch = ckpt["epoch"] + 1
        self.iteration, self.last_step = ckpt["iteration"], ckpt["last_step"]
        self.best, self.best_epoch = ckpt["best_value"], ckpt["best_epoch"]
        self.stop_best, self.stop_wait = ckpt.get("early_stop", (math.nan, 0))
        self.top = [list(entry) for entry in ckpt.get("top", [])]


def optimizer_step(state: TrainState, iteration: int) -> None:
    """Unscale and clip (``--clip-grad-norm``), step the optimizer through the GradScaler, update the scaler and
    the EMA, step a per-step schedule, zero the gradients; ``iteration`` is the batch that completed the step."""
    args = state.args
    skip_nonfinite = getattr(args, "skip_nonfinite", False)
    skip = False
    if args.clip_grad_norm or skip_nonfinite:
        state.scaler.unscale_(state.optimizer)
        params = [p for group in state.optimizer.param_groups for p in group["params"]]
        norm = nn.utils.clip_grad_norm_(params, args.clip_grad_norm or math.inf)
        # without AMP nothing else stops an inf/NaN gradient from reaching the weights (the GradScaler skips those)
        skip = skip_nonfinite and not state.scaler.is_enabled() and not bool(torch.isfinite(norm))
    if skip:
        state.skipped_steps += 1
    else:
        state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    if state.ema is not None and not skip:
        state.ema.update(state.model)
    if state.interval == "step":
        state.scheduler.step()
    state.last_step = iteration


def train_step(state: TrainState, batch: Batch) -> StepOutput:
    """One training batch: warm-up lr/momentum, ``method.train_step`` (forward, loss, backward under AMP), and when
    ``accumulation()`` batches have been back-propagated since the last step, :func:`optimizer_step`. Neuron
    states are reset before and after. Under DDP the gradient all-reduce runs only on the stepping batch."""
    if state.warmup is not None:
        state.warmup.apply(state.optimizer, state.scheduler, state.iteration)
    will_step = state.iteration - state.last_step >= state.accumulation()
    reset_net(state.ddp)
    with contextlib.nullcontext() if will_step else state.ctx.no_sync():
        out = state.method.train_step(state.ddp, batch, state.ctx)
    reset_net(state.ddp)
    if will_step:
        optimizer_step(state, state.iteration)
    state.iteration += 1
    return out


class _LossMeter:
    """Sums ``loss * n`` and ``n`` on the device (no host sync per batch) and flags NaN/inf losses."""

    def __init__(self, device):
        self.totals = torch.zeros(2, dtype=torch.float64, device=device)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)

    def add(self, loss: torch.Tensor, n: int) -> None:
        self.totals[0] += loss.double() * n
        self.totals[1] += n
        self.bad |= ~torch.isfinite(loss)

    def any_bad(self) -> bool:
        """Whether any rank saw a NaN/inf loss (one tiny all-reduce)."""
        return bool(distributed.all_reduce(self.bad.to(torch.int32), "max").item())

    def result(self) -> dict:
        loss_sum, n = distributed.all_reduce(self.totals.clone()).tolist()
        return {"loss": loss_sum / max(n, 1), "samples": n}

    def mean(self) -> float:
        loss_sum, n = self.totals.tolist()
        return loss_sum / max(n, 1)


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True,
                disable=True if not distributed.is_main() else None)


def train_one_epoch(state: TrainState, loader, n_batches: int, on_bad: str = "") -> dict:
    """``n_batches`` training batches through :func:`train_step`; a pending accumulation is stepped at the end of
    the epoch, so a checkpoint never holds half-accumulated gradients. Raises :class:`TrainingStopped` when a loss
    is NaN/inf (checked every ``--print-freq`` batches)."""
    args, task = state.args, state.task
    state.ddp.train()
    meter = _LossMeter(state.env.device)
    scorer = task.make_evaluator() if task.score_train else None
    bar = _bar(n_batches, f"epoch {state.epoch + 1}/{args.epochs} train")
    start, pending, skipped = time.perf_counter(), 0, state.skipped_steps
    for i, item in enumerate(itertools.islice(loader, n_batches)):
        batch = Batch.of(item).to(state.env.device)
        out = train_step(state, batch)
        meter.add(out.loss, batch.size)
        if scorer is not None:
            scorer.update(out.outputs, batch.targets, batch.extras)
        pending += 1
        if pending == args.print_freq or i + 1 == n_batches:
            if meter.any_bad():
                bar.close()
                raise TrainingStopped(f"the training loss became NaN/inf at epoch {state.epoch + 1}, batch {i + 1}; "
                                      f"stopping. {on_bad}")
            bar.set_postfix(loss=f"{meter.mean():.4f}", refresh=False)
            bar.update(pending)
            pending = 0
    if state.iteration - 1 > state.last_step:
        optimizer_step(state, state.iteration - 1)
    if state.skipped_steps > skipped and distributed.is_main():
        print(f"note: epoch {state.epoch + 1}: {state.skipped_steps - skipped} optimizer step(s) skipped for a "
              "non-finite gradient norm (--skip-nonfinite)", file=sys.stderr, flush=True)
    _sync(state.env.device)
    seconds = time.perf_counter() - start
    bar.close()
    return {**meter.result(), **(scorer.compute() if scorer is not None else {}), "seconds": seconds}


@torch.no_grad()
def evaluate(method: Method, model: nn.Module, loader, n_batches: int, ctx: StepContext, task: Task) -> dict:
    """Test loss and the evaluator's metrics over ``n_batches`` batches (all ranks' shards), fp32, eval mode."""
    model.eval()
    meter = _LossMeter(ctx.device)
    evaluator = task.make_evaluator()
    start = time.perf_counter()
    bar = _bar(n_batches, "test")
    for item in itertools.islice(loader, n_batches):
        batch = Batch.of(item).to(ctx.device)
        reset_net(model)
        out = method.eval_step(model, batch, ctx)
        reset_net(model)
        meter.add(out.loss, batch.size)
        evaluator.update(out.outputs, batch.targets, batch.extras)
        bar.update()
    _sync(ctx.device)
    metrics = evaluator.compute()
    seconds = time.perf_counter() - start
    bar.close()
    return {**meter.result(), **metrics, "seconds": seconds, "best_metric": evaluator.best_metric}


def _json_args(args, task: Task) -> dict:
    return json.loads(json.dumps({**vars(args), "task": task.name, "argv": sys.argv}, default=str))


def _broadcast_buffers(state: TrainState) -> None:
    """Give every rank rank 0's BN running statistics (and EMA), so all ranks evaluate (and rank 0 saves) the
    same model."""
    if distributed.active():
        for module in (state.model, *([state.ema.module] if state.ema is not None else [])):
            for buf in module.buffers():
                torch.distributed.broadcast(buf, 0)


def fit(args, task: Task, env: Env | None = None) -> dict:
    """Train ``task.model`` with ``--method`` for ``--epochs`` (or until ``--stop-after``); returns the summary dict
    (also written to ``summary.json`` once the last epoch is done). Rank 0 writes the run directory.

    Raises :class:`UsageError` for a run directory that would be overwritten, is in use, or a missing ``--resume``
    checkpoint; :class:`TrainingStopped` when the loss becomes NaN/inf (the last good checkpoint stays);
    :class:`RunInterrupted` on SIGINT/SIGTERM (the last checkpoint stays consistent)."""
    env = env or setup(args)
    try:
        return _fit(args, task, env)
    finally:
        if env.dist.distributed:
            distributed.cleanup()


def _on_main(env: Env, check) -> object:
    """Run ``check()`` on rank 0 only; its result, or its :class:`UsageError`, reaches every rank."""
    result = error = None
    if env.is_main:
        try:
            result = check()
        except UsageError as e:
            error = str(e)
    result, error = distributed.broadcast_object((result, error) if env.is_main else None)
    if error:
        raise UsageError(error)
    return result


def _fit(args, task: Task, env: Env) -> dict:
    method = methods.get(args.method)(args, task)
    run_dir, resume = _on_main(env, lambda: resolve_run_dir(args, run_name(args, task, method)))
    if args.test_only:
        return _test_only(args, task, env, method, resume)
    with contextlib.ExitStack() as stack:
        _on_main(env, lambda: claim_run_dir(stack, run_dir, resume))
        if env.is_main:
            print(f"run directory: {run_dir}", flush=True)
        try:
            return _train(args, task, env, method, run_dir, resume)
        except KeyboardInterrupt as e:
            raise RunInterrupted(run_dir, 143 if isinstance(e, Terminated) else 130) from None


def build_state(args, task: Task, env: Env, method: Method, steps_per_epoch: int) -> TrainState:
    """Model on the device (SyncBN/DDP under torchrun), optimizer over ``task.param_groups``, schedule, GradScaler,
    EMA and warm-up; ``method.setup`` last."""
    device = env.device
    model = task.model.to(device)
    if args.sync_bn and env.dist.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory.apply(model, getattr(args, "memopt", memory.DEFAULT_LEVEL))
    params = task.param_groups(model) if task.param_groups is not None else model.parameters()
    optimizer = OPTIMIZERS.get(args.opt)(params, args)
    if task.make_scheduler is not None:
        scheduler, interval = task.make_scheduler(optimizer, args, steps_per_epoch)
    else:
        scheduler, interval = SCHEDULES.get(args.lr_schedule)(optimizer, args), "epoch"
    scaler = torch.amp.GradScaler(device.type, enabled=env.amp)
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if env.dist.distributed else model
    ctx = StepContext(device, env.amp, scaler, ddp)
    ema = ModelEMA(model, args.ema_decay, args.ema_ramp) if args.ema_decay > 0 else None
    state = TrainState(args, task, env, method, model, ddp, optimizer, scheduler, interval, scaler, ctx, ema,
                       make_warmup(args, steps_per_epoch), best_key=f"test_{task.make_evaluator().best_metric}")
    method.setup(ctx)
    return state


def _test_only(args, task: Task, env: Env, method: Method, resume: Path | None) -> dict:
    if resume is None:
        raise UsageError("--test-only needs --resume CHECKPOINT")
    _, test_loader = make_loaders(args, task, env)
    ckpt = checkpoint.load(resume, map_location=env.device)
    model = task.model.to(env.device)
    model.load_state_dict(ckpt["ema"]["model"] if "ema" in ckpt else ckpt["model"])
    ctx = StepContext(env.device, False, None, model)
    method.setup(ctx)
    result = evaluate(method, model, test_loader, _limit(test_loader, args.limit_batches), ctx, task)
    metrics = {f"test_{k}": v for k, v in result.items() if k not in ("samples", "seconds", "best_metric")}
    if env.is_main:
        print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({resume})", flush=True)
    return {**metrics, "checkpoint": str(resume)}


def _start(args, task: Task, env: Env, state: TrainState, run_dir: Path, resume: Path | None) -> None:
    """Restore a resumed run (verified checkpoint, RNG states) or start a new one (``--init-from`` weights);
    record the run: ``args.json`` once for a new run, a line in the resume log for a resumed one."""
    info = env.dist
    if resume is not None:
        ckpt = checkpoint.load(resume, map_location=env.device)
        state.model.load_state_dict(ckpt["model"])
        state.load_state_dict(ckpt)
        if len(ckpt["rng"]) == info.world_size:
            checkpoint.set_rng_state(ckpt["rng"][info.rank])
        elif info.distributed:
            seed_everything(args.seed + info.rank + 1000 * state.epoch)
        if info.is_main:
            rundir.append_resume_log(run_dir, sys.argv)
        return
    record = {**_json_args(args, task), "world_size": info.world_size, "device": str(env.device),
              "host": socket.gethostname(), "backend_used": _backend_used(args, state.method, env.device, env.amp)}
    if getattr(args, "init_from", None):
        source = checkpoint.find(args.init_from, "checkpoint_latest.pt", "--init-from")
        state.model.load_state_dict(checkpoint.load(source, map_location=env.device)["model"])
        record["init_from"] = {"checkpoint": str(source.resolve()),
                               "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    if info.is_main:
        rundir.write_args_once(run_dir, record)
    if info.distributed:  # different augmentation streams per rank; same model init was seeded in setup()
        seed_everything(args.seed + info.rank)


def _backend_used(args, method: Method, device: torch.device, amp: bool) -> str | None:
    """The neuron kernel that ``--backend`` resolves to on ``device`` (``auto`` resolved), for SNN methods."""
    if method.model_kind != "snn" or not hasattr(args, "neuron"):
        return None
    return resolve_backend(NeuronConfig.from_args(args), device, torch.float16 if amp else torch.float32)


def _train(args, task: Task, env: Env, method: Method, run_dir: Path, resume: Path | None) -> dict:
    train_loader, test_loader = make_loaders(args, task, env)
    n_train, n_test = _limit(train_loader, args.limit_batches), _limit(test_loader, args.limit_batches)
    state = build_state(args, task, env, method, n_train)
    _start(args, task, env, state, run_dir, resume)
    log = RunLog(run_dir, state.epoch, enabled=env.is_main)
    stop = min(args.epochs, args.stop_after or args.epochs)
    started, last = time.perf_counter(), {}
    try:
        while state.epoch < stop and not state.stopped_early:
            last = _run_epoch(state, train_loader, test_loader, n_train, n_test, run_dir)
            improved = last[state.best_key] > state.best
            if improved:
                state.best, state.best_epoch = last[state.best_key], state.epoch
            _watch_early_stop(state, last)
            kept, dropped = _rank_top(state, last[state.best_key])
            log.log_epoch(last)
            snapshot = state.state_dict(task.name, _json_args(args, task))
            if env.is_main:
                latest = checkpoint.save_run_checkpoint(snapshot, run_dir, improved)
                _keep_top_files(run_dir, latest, state.epoch if kept else None, dropped)
                print(_epoch_line(last, state, stop), flush=True)
                if state.stopped_early:
                    print(f"early stop: {args.early_stop_on} has not improved for {state.stop_wait} epochs",
                          flush=True)
            state.epoch += 1
        finished = stop >= args.epochs or state.stopped_early
        final = _final_eval(args, task, env, run_dir, log, finished, state.epoch - 1)
    finally:
        log.close()
    return _finish(args, state, log, run_dir, last, stop, time.perf_counter() - started, final)


def _watch_early_stop(state: TrainState, row: dict) -> None:
    """``--early-stop-patience``: count the epochs since ``--early-stop-on`` last improved (strictly: lower for a
    ``*loss`` column, higher otherwise), as Lightning's ``EarlyStopping``; ``state.stopped_early`` once the count
    reaches the patience."""
    args = state.args
    if not getattr(args, "early_stop_patience", 0):
        return
    key = args.early_stop_on
    if key not in row:
        raise UsageError(f"--early-stop-on {key}: not a metrics.csv column of this task; valid: "
                         f"{', '.join(k for k in row if k.startswith(('train_', 'test_')))}")
    value = row[key] if key.endswith("loss") else -row[key]
    if math.isnan(state.stop_best) or value < state.stop_best:
        state.stop_best, state.stop_wait = value, 0
    else:
        state.stop_wait += 1


def _rank_top(state: TrainState, value: float) -> tuple[bool, list[int]]:
    """``--keep-top K``: whether this epoch joins the K best by the best metric (once K are kept, only when strictly
    better than the worst, which is dropped; the oldest of equal worst ones first, as Lightning's
    ``ModelCheckpoint(save_top_k=K)``), and the epochs dropped."""
    k = getattr(state.args, "keep_top", 0)
    if not k:
        return False, []
    dropped = []
    if len(state.top) >= k:
        worst = min(state.top, key=lambda entry: entry[0])
        if not value > worst[0]:
            return False, []
        state.top.remove(worst)
        dropped.append(worst[1])
    state.top.append([value, state.epoch])
    return True, dropped


def top_checkpoint_name(epoch: int) -> str:
    """File name of a ``--keep-top`` checkpoint (0-based epoch, as in ``metrics.csv``)."""
    return f"checkpoint_top_epoch{epoch:03d}.pt"


def _keep_top_files(run_dir: Path, latest: Path, kept: int | None, dropped: list[int]) -> None:
    if kept is not None:
        checkpoint._link_or_copy(latest, run_dir / top_checkpoint_name(kept))
    for epoch in dropped:
        (run_dir / top_checkpoint_name(epoch)).unlink(missing_ok=True)


def _final_eval(args, task: Task, env: Env, run_dir: Path, log: RunLog, finished: bool, last_epoch: int) -> dict:
    """``task.final_eval`` (every rank) once the last epoch is done, unless ``summary.json`` exists (a finished run
    resumed); its metrics become one more ``metrics.csv`` row (epoch = the last epoch, other columns NaN)."""
    if task.final_eval is None or not finished or _on_main(env, (run_dir / "summary.json").exists):
        return {}
    result = task.final_eval(run_dir, run_dir / checkpoint.BEST, env)
    if env.is_main and log.columns:
        log.log_epoch({**dict.fromkeys(log.columns, math.nan), **result, "epoch": last_epoch})
    return result


def _finish(args, state: TrainState, log: RunLog, run_dir: Path, last: dict, stop: int, seconds: float,
            final: dict | None = None) -> dict:
    summary_path = run_dir / "summary.json"
    if not last and not final and summary_path.exists():  # resumed a finished run: nothing to do, keep its summary
        return json.loads(summary_path.read_text())
    key = state.best_key
    summary = {"finished": stop >= args.epochs or state.stopped_early, "best_metric": key,
               f"best_{key}": state.best, "best_epoch": state.best_epoch, "epochs": args.epochs,
               "epochs_done": state.epoch if state.stopped_early else max(stop, state.epoch), "run_dir": str(run_dir)}
    if state.stopped_early:
        summary["stopped_early"] = True
    if state.top:
        summary["top_checkpoints"] = {top_checkpoint_name(epoch): value for value, epoch in state.top}
    if last:
        summary.update({f"final_{k}": v for k, v in last.items() if k.startswith(("train_", "test_"))
                        and not k.endswith("_per_s")})
    if final:
        summary["final_eval"] = final
    if summary["finished"]:
        log.write_summary(summary)
    if state.env.is_main:
        print(f"done: best {key} {state.best:.4f} (epoch {state.best_epoch + 1}), {seconds:.0f} s, "
              f"run directory {run_dir}", flush=True)
    return summary


def _run_epoch(state: TrainState, train_loader, test_loader, n_train: int, n_test: int, run_dir: Path) -> dict:
    """Train + evaluate one epoch; returns the ``metrics.csv`` row (epoch column 0-based)."""
    args, env, epoch = state.args, state.env, state.epoch
    if env.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(env.device)
    start = time.perf_counter()
    lr = state.optimizer.param_groups[0]["lr"]
    _seed_epoch(train_loader, args, epoch, env.dist.rank)
    _seed_epoch(test_loader, args, epoch, env.dist.rank)
    latest = run_dir / "checkpoint_latest.pt"
    on_bad = (f"The last good checkpoint is {latest} (epoch {epoch})." if epoch > 0 else "No checkpoint was written.")
    train = train_one_epoch(state, train_loader, n_train, on_bad)
    _broadcast_buffers(state)
    test = evaluate(state.method, state.eval_model, test_loader, n_test, state.ctx, state.task)
    if not math.isfinite(test["loss"]):
        raise TrainingStopped(f"the test loss became NaN/inf at epoch {epoch + 1}; stopping. {on_bad}")
    if state.interval == "epoch":
        state.scheduler.step()
    test.pop("best_metric")
    row = {"epoch": epoch}
    row.update({f"train_{k}": v for k, v in train.items() if k not in ("samples", "seconds")})
    row.update({f"test_{k}": v for k, v in test.items() if k not in ("samples", "seconds")})
    row.update({"lr": lr, "train_samples_per_s": train["samples"] / max(train["seconds"], 1e-9),
                "test_samples_per_s": test["samples"] / max(test["seconds"], 1e-9),
                "peak_mem_mb": _peak_mem_mb(env.device), "epoch_time_s": time.perf_counter() - start})
    return row


def _epoch_line(row: dict, state: TrainState, stop: int) -> str:
    """``epoch 3/10  train loss .. acc ..  test loss .. acc ..  best .. (epoch 2)  lr ..  samples/s  eta`` (human,
    1-based epoch numbers; ``metrics.csv`` keeps the 0-based index)."""
    eta = round((stop - 1 - row["epoch"]) * row["epoch_time_s"])
    scores = "  ".join(f"{k.replace('_', ' ', 1)} {v:.4g}" for k, v in row.items()
                       if k.startswith(("train_", "test_")) and not k.endswith("_per_s") and not math.isnan(v))
    return (f"epoch {row['epoch'] + 1}/{state.args.epochs}  {scores}  best {state.best:.4g} (epoch "
            f"{state.best_epoch + 1})  lr {row['lr']:.3g}  {row['train_samples_per_s']:.0f}/"
            f"{row['test_samples_per_s']:.0f} samples/s  {row['epoch_time_s']:.1f} s  "
            f"eta {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}")


__all__ = ["Env", "Task", "TrainState", "build_state", "evaluate", "fit", "identity", "keep_outputs",
           "make_loaders", "mean_over_time", "optimizer_step", "run_name", "setup", "train_one_epoch",
           "train_step"]
