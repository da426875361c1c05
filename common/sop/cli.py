"""``--sop --resume RUN`` for every task: evaluate a checkpoint on the test set, count synaptic operations
(:func:`common.sop.counter.count_sops`), print them and write ``sop.json`` next to the checkpoint.

    sop.add_args(parser)                       # --sop, --sop-mode (a task may name its modes and checkpoint)
    args = cli.parse(parser); sop.check_args(args)
    result = sop.run(args, task, env, static_input=True) if args.sop else engine.fit(args, task, env)
"""
from __future__ import annotations

from torch.utils.data import DataLoader

from common import checkpoint, methods
from common.errors import UsageError
from common.sop.counter import SopOptions, count_sops, write_sop_json
from common.sop.modes import SOP_MODES

DEFAULT_MODES = ("corrected", "paper")


def add_args(parser, modes: tuple[str, ...] = DEFAULT_MODES, weights: str = checkpoint.BEST) -> None:
    """``--sop`` and ``--sop-mode`` (one of ``modes``, registered in :data:`SOP_MODES`; the first is the default);
    ``weights``: the checkpoint of a run directory that is counted (as passed to :func:`run`)."""
    def mode(name: str) -> str:
        if name not in modes or name not in SOP_MODES:
            raise UsageError(f"unknown --sop-mode '{name}'; valid: {', '.join(modes)}")
        return name

    g = parser.add_argument_group("energy")
    g.add_argument("--sop", action="store_true",
                   help=f"count SOPs of the --resume checkpoint (run dir: its {weights}) on the test set, "
                        "write sop.json next to it and exit")
    g.add_argument("--sop-mode", type=mode, default=modes[0], help=f"SOP convention: {', '.join(modes)}")


def check_args(args) -> None:
    if args.sop and not args.resume:
        raise UsageError("--sop needs --resume CHECKPOINT (a checkpoint file or run directory)")


def run(args, task, env, *, weights: str = checkpoint.BEST, **options) -> dict:
    """Count SOPs of ``task.model`` loaded from ``--resume`` (a run directory: its ``weights`` checkpoint, EMA
    weights if any) with ``--sop-mode``; the model is driven as ``--method`` drives it (``method.run_sequence``,
    e.g. one step at a time for ``online``). ``options``: the task's further :class:`SopOptions` fields, e.g.
    ``static_input`` (the same input at every step) or ``first_layer_sop`` (count the first layer as SOPs)."""
    method = methods.get(args.method)
    if method.model_kind == "ann":
        raise UsageError(f"--sop counts spikes; --method {args.method} trains a non-spiking network")
    path = checkpoint.find(args.resume, weights, "--resume")
    model = task.model.to(env.device)
    state = checkpoint.load(path, map_location=env.device)
    model.load_state_dict(checkpoint.model_weights(state))
    loader = DataLoader(task.test_set, batch_size=args.batch_size, collate_fn=task.test_collate,
                        num_workers=args.workers)
    result = count_sops(model, loader, task.encode, task.decode, SopOptions(args.sop_mode, args.limit_batches,
                                                                            **options),
                        env.device, forward=method.run_sequence, evaluator=task.make_evaluator())
    write_sop_json(path.parent, result, checkpoint=str(path), batch_size=args.batch_size)
    print(_summary_line(result, task.make_evaluator().best_metric) + f"  ({path})", flush=True)
    return result


def _summary_line(result: dict, metric: str) -> str:
    """Test metric, SOPs, FLOPs of the real-valued layers (when more than the first) and the mode's extras."""
    floats = result["float_layers"]
    line = (f"test {metric} {result[metric]:.4f}  SOP {result['sop_m_per_sample']:.4f} M per sample "
            f"({result['sop_m_per_step']:.6f} M per step)  first-layer FLOP {result['first_layer_flop_m']:.4f} M")
    if len(floats) > (1 if result["first_layer"] else 0):
        line += f"  real-input FLOP {result['float_input_flop_m_per_step']:.4f} M per step ({len(floats)} layers)"
    line += "".join(f"  {key} {value:.3f}" for key, value in result["extras"].items())
    return line + f"  [{result['mode']}, {result['n_samples']} samples]"
