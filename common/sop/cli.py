"""``--sop --resume CKPT`` for every task: evaluate a checkpoint on the test set, count synaptic operations
(:func:`common.sop.counter.count_sops`), print them and write ``sop.json`` next to the checkpoint.

    sop.add_args(parser)                       # --sop, --sop-mode
    args = cli.parse(parser); sop.check_args(args)
    result = sop.run(args, task, env, static_input=True) if args.sop else engine.fit(args, task, env)
"""
from __future__ import annotations

from torch.utils.data import DataLoader

from common import checkpoint, methods
from common.errors import UsageError
from common.sop.counter import SOP_MODES, SopOptions, count_sops, write_sop_json


def add_args(parser) -> None:
    g = parser.add_argument_group("energy")
    g.add_argument("--sop", action="store_true",
                   help="count SOPs of the --resume checkpoint (run dir: its checkpoint_best.pt) on the test set, "
                        "write sop.json next to it and exit")
    g.add_argument("--sop-mode", default="corrected", help=f"SOP convention: {', '.join(SOP_MODES.names())}")


def check_args(args) -> None:
    if args.sop_mode not in SOP_MODES:
        raise UsageError(f"unknown --sop-mode '{args.sop_mode}'; valid: {', '.join(SOP_MODES.names())}")
    if args.sop and not args.resume:
        raise UsageError("--sop needs --resume CHECKPOINT (a checkpoint file or run directory)")


def run(args, task, env, *, static_input: bool = False, first_layer_sop: bool = False) -> dict:
    """Count SOPs of ``task.model`` loaded from ``--resume`` with ``--sop-mode``; the model is driven as
    ``--method`` drives it (``method.run_sequence``, e.g. one step at a time for ``online``). ``static_input``: the
    same input at every step (first layer counted once); ``first_layer_sop``: count the first layer as SOPs."""
    method = methods.get(args.method)
    if method.model_kind == "ann":
        raise UsageError(f"--sop counts spikes; --method {args.method} trains a non-spiking network")
    path = checkpoint.find(args.resume, "checkpoint_best.pt", "--resume")
    model = task.model.to(env.device)
    state = checkpoint.load(path, map_location=env.device)
    model.load_state_dict(state["ema"]["model"] if "ema" in state else state["model"])
    loader = DataLoader(task.test_set, batch_size=args.batch_size, collate_fn=task.test_collate,
                        num_workers=args.workers)
    options = SopOptions(args.sop_mode, args.limit_batches, static_input, first_layer_sop)
    result = count_sops(model, loader, task.encode, task.decode, options, env.device, forward=method.run_sequence,
                        evaluator=task.make_evaluator())
    write_sop_json(path.parent, result, checkpoint=str(path), batch_size=args.batch_size)
    metric = task.make_evaluator().best_metric
    print(f"test {metric} {result[metric]:.4f}  SOP {result['sop_m_per_sample']:.4f} M per sample "
          f"({result['sop_m_per_step']:.6f} M per step)  first-layer FLOP {result['first_layer_flop_m']:.4f} M  "
          f"[{args.sop_mode}, {result['n_samples']} samples]  ({path})", flush=True)
    return result
