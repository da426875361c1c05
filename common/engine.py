"""The training engine shared by every task: epochs, AMP, DDP, accumulation, EMA, checkpoint/resume, logs, tqdm.

A task script reads like a recipe::

    args = cli.parse(parser, argv)              # flags (common.cli) + validation; --resume restores the run's flags
    env = engine.setup(args)                    # torchrun process group, device, seeds, cuDNN
    task = Task(name="cf10", build_model=..., build_data=..., train_loss=..., ...)   # common.task
    engine.fit(args, task, env)                 # -> summary dict; writes <out-dir>/<run-name>/

Per epoch ``fit`` trains (``common.training.train_step`` per batch), evaluates the test set (fp32, no grad; the EMA
weights when ``--ema-decay`` is set) with the task's evaluator, steps the schedule, appends a row to ``metrics.csv``
and TensorBoard, writes the checkpoints atomically (``common.checkpoint``) and applies the stopping and top-K rules
(``common.stopping``). Only rank 0 writes, holding an exclusive lock on the run directory (``common.rundir``) for the
run's lifetime.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import resource
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from common import checkpoint, distributed, methods, rundir, stopping, training
from common.errors import RunInterrupted, Terminated, TrainingStopped, UsageError
from common.methods.base import Method, StepContext
from common.neuron import NeuronConfig, resolve_backend
from common.runlog import RunLog
from common.task import Task, identity, keep_outputs, mean_over_time
from common.training import Env, TrainState


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
    if resume is not None and _on_main(env, lambda: _finished(run_dir)):
        if env.is_main:
            print(f"run {run_dir} has already finished (summary.json); nothing to do", flush=True)
        return json.loads((run_dir / "summary.json").read_text())
    with contextlib.ExitStack() as stack:
        created = _on_main(env, lambda: not run_dir.exists())
        _on_main(env, lambda: claim_run_dir(stack, run_dir, resume))
        try:
            return _train(args, task, env, method, run_dir, resume)
        except KeyboardInterrupt as e:
            raise RunInterrupted(run_dir, 143 if isinstance(e, Terminated) else 130) from None
        finally:
            if created and env.is_main:
                _remove_if_unstarted(run_dir)


def _finished(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.exists() and json.loads(summary.read_text()).get("finished", False)


def _remove_if_unstarted(run_dir: Path) -> None:
    """Remove a run directory this process created when the run never started (bad data, a bad --init-from): it
    holds only the lock file, and leaving it would look like a run."""
    if not (run_dir / rundir.ARGS_FILE).exists():
        (run_dir / rundir.LOCK_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: something else is in it, keep it
            run_dir.rmdir()


def _test_only(args, task: Task, env: Env, method: Method, resume: Path | None) -> dict:
    if resume is None:
        raise UsageError("--test-only needs --resume CHECKPOINT")
    _, test_loader = make_loaders(args, task, env)
    ckpt = checkpoint.load(resume, map_location=env.device)
    model = task.model.to(env.device)
    model.load_state_dict(checkpoint.model_weights(ckpt))
    ctx = StepContext(env.device, False, None, model)
    method.setup(ctx)
    result = training.evaluate(method, model, test_loader, _limit(test_loader, args.limit_batches), ctx, task)
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
    state = training.build_state(args, task, env, method, n_train)
    _start(args, task, env, state, run_dir, resume)
    if env.is_main:
        print(f"run directory: {run_dir}", flush=True)
    log = RunLog(run_dir, state.epoch, enabled=env.is_main)
    stop = min(args.epochs, args.stop_after or args.epochs)
    started, last = time.perf_counter(), {}
    try:
        while state.epoch < stop and not state.stopped_early:
            last = _run_epoch(state, train_loader, test_loader, n_train, n_test, run_dir)
            improved = last[state.best_key] > state.best
            if improved:
                state.best, state.best_epoch = last[state.best_key], state.epoch
            stopping.watch_early_stop(state, last)
            kept, dropped = stopping.rank_top(state, last[state.best_key])
            log.log_epoch(last)
            snapshot = state.state_dict(task.name, _json_args(args, task))
            if env.is_main:
                latest = checkpoint.save_run_checkpoint(snapshot, run_dir, improved)
                stopping.keep_top_files(run_dir, latest, state.epoch if kept else None, dropped)
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
        summary["top_checkpoints"] = {stopping.top_checkpoint_name(epoch): value for value, epoch in state.top}
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
    train = training.train_one_epoch(state, train_loader, n_train, on_bad)
    _broadcast_buffers(state)
    test = training.evaluate(state.method, state.eval_model, test_loader, n_test, state.ctx, state.task)
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


__all__ = ["Env", "Task", "fit", "identity", "keep_outputs", "make_loaders", "mean_over_time", "run_name", "setup"]
