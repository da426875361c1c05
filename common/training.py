"""One training step and the state it works on: :class:`TrainState`, :func:`build_state`, :func:`train_step`
(warm-up, forward/backward through the training rule, accumulation, clipping, optimizer and EMA step),
:func:`train_one_epoch` and :func:`evaluate`. ``common.engine`` runs the epochs around them; ``speed/throughput.py``
times :func:`train_step` itself.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from common import checkpoint, distributed, memory
from common.batch import Batch
from common.ema import ModelEMA
from common.errors import TrainingStopped
from common.methods.base import Method, StepContext, StepOutput
from common.optim import OPTIMIZERS, SCHEDULES, Warmup, make_warmup
from common.state import reset_net
from common.task import Task


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
