r"""Gen1 detection with the survey's spiking DenseNet-121 + SSD: ``python SFOD/train.py --data-dir GEN1_ROOT
--backbone-ckpt PRETRAIN_RUN_DIR`` (also ``python -m SFOD.train``).

Recipe (spec §2.6, the survey's hparams of all Gen1 runs): batch 16 (training batches grow: every sample with a
pedestrian is emitted twice, each copy flipped with p = 0.5), AdamW lr 1e-3 (1e-4 for CLIF and OSR: the default when
``--lr`` is not given follows ``--neuron`` / ``--norm``), weight decay 1e-4 over all parameters, cosine over 50
epochs to 1e-5 (stepped per epoch), AMP, gradient norm clipped at 1.0, T = 5, SSD focal + Smooth-L1 loss. The
backbone starts from an N-CARS pre-training run (``SFOD/pretrain.py``; a run directory means its
``checkpoint_best.pt``), loaded non-strictly; BlockALIF's size-dependent neuron parameters start fresh. What was
loaded is recorded in ``args.json`` under ``backbone_init``.

Every epoch the test split is scored with pycocotools (``test_AP`` ... ``test_ARl`` in ``metrics.csv``);
``checkpoint_best.pt`` follows ``test_AP``, but the survey reports the **final** (epoch-50) weights: those are the
last ``metrics.csv`` row and ``final_test_*`` in ``summary.json``. ``--sop --resume RUN`` counts SOPs of the final
weights (``checkpoint_latest.pt``) on the test split in the survey's convention (``common.sop`` with ``SFOD.sop``'s
``gen1_survey``). The ``val`` split is
not read (the survey only logged its loss).
"""
from __future__ import annotations

import hashlib
import sys
from functools import partial
from pathlib import Path

from common import checkpoint, cli, engine, sop
from common.coco_eval import COCOEvaluator
from common.errors import UsageError
from common.task import Task
from SFOD import gen1, recipe
from SFOD import sop as gen1_sop
from SFOD.detection import PostProcess, SSDLoss, filter_boxes
from SFOD.model import SpikingSSD, backbone_state

LOW_LR_NEURONS, LOW_LR_NORMS = ("clif",), ("osr",)  # the survey's runs with lr 1e-4


def survey_lr(args) -> float:
    return 1e-4 if args.neuron in LOW_LR_NEURONS or args.norm in LOW_LR_NORMS else 1e-3


def build_parser():
    p = cli.base_parser(
        "Train the survey's spiking DenseNet-121 + SSD on Gen1 (task sfod). --lr defaults to 1e-3, or 1e-4 with "
        "--neuron clif or --norm osr (the survey's runs).", task="sfod",
        **recipe.DEFAULTS, epochs=50, batch_size=16, lr=None, wd=1e-4, lr_min=1e-5, data_dir="./data/gen1")
    p.derived_defaults["lr"] = survey_lr
    recipe.add_amp_switch(p)
    g = p.add_argument_group("Gen1")
    g.add_argument("--backbone-ckpt", default=None, metavar="RUN_DIR_OR_CKPT",
                   help="N-CARS pre-training run (its checkpoint_best.pt) or checkpoint whose backbone starts the "
                        "detector (unset: random init)")
    g.add_argument("--cache-dir", default=None, help="preprocessed-sample cache (default: DATA_DIR/cache)")
    sop.add_args(p, modes=(gen1_sop.MODE,), weights=checkpoint.LATEST)  # the survey counts the final weights
    return p


def load_data(args, params: gen1.Gen1Params):
    """``(train, test)``; no training split for ``--sop``."""
    cache = args.cache_dir or Path(args.data_dir) / "cache"
    splits = ("test",) if args.sop else ("train", "test")
    loaded = [gen1.load_split(args.data_dir, split, cache, params, workers=args.workers) for split in splits]
    return (None, *loaded) if args.sop else tuple(loaded)


def build_task(args, params: gen1.Gen1Params | None = None) -> Task:
    """The task on Gen1 samples of ``params`` (default: the survey's, 240 x 304, ``-T``). The model is built here:
    its anchors define the loss and the post-processing."""
    params = params or gen1.Gen1Params(T=args.T)
    model = SpikingSSD(recipe.neuron_config(args), args.norm, args.T, image_size=(params.height, params.width))
    size = model.image_size
    return Task(
        name="sfod", build_model=lambda kind: model, build_data=partial(load_data, args, params),
        train_loss=SSDLoss(model.anchors),
        make_evaluator=lambda: COCOEvaluator(PostProcess(model.anchors, size), image_size=size,
                                             box_filter=filter_boxes, class_names=gen1.CLASSES),
        score_train=False, train_collate=gen1.TrainCollate(width=size[1]), test_collate=gen1.collate,
        drop_last=False, name_parts=(f"T{args.T}",))


def load_backbone(model, path) -> dict:
    """Load the backbone of a pre-training checkpoint into ``model`` (non-strict); returns what was done."""
    source = checkpoint.find(path, checkpoint.BEST, "--backbone-ckpt")
    state = checkpoint.load(source, map_location="cpu")
    keep, dropped = backbone_state(checkpoint.model_weights(state), model)
    if not keep:
        raise UsageError(f"--backbone-ckpt {source}: holds no backbone weights that fit this model "
                         f"(a run of task '{state.get('task')}')")
    model.load_state_dict(keep, strict=False)
    recorded = state.get("args", {})
    missing = [k for k in model.state_dict() if k.startswith("backbone.") and k not in keep and k not in dropped]
    return {"checkpoint": str(source.resolve()), "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "task": state.get("task"), "epoch": state.get("epoch"), "neuron": recorded.get("neuron"),
            "norm": recorded.get("norm"), "loaded": len(keep), "reinitialised": dropped, "missing": missing}


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(build_parser(), argv)
    recipe.require_bptt(args)
    sop.check_args(args)
    env = engine.setup(args)
    task = build_task(args)
    if args.sop:
        return sop.run(args, task, env, weights=checkpoint.LATEST, **gen1_sop.OPTIONS)
    recipe.read_data_first(task)
    if args.backbone_ckpt and not args.resume and not args.test_only:
        args.backbone_init = load_backbone(task.model, args.backbone_ckpt)
        _note_mismatch(args)
    return engine.fit(args, task, env)


def _note_mismatch(args) -> None:
    init = args.backbone_init
    differ = [f"--{flag} {init[flag]}" for flag in ("neuron", "norm") if init[flag] not in (None, getattr(args, flag))]
    if differ:
        print(f"note: the backbone was pre-trained with {', '.join(differ)}", file=sys.stderr)


if __name__ == "__main__":
    cli.main_guard(main)
