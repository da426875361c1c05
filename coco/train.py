"""COCO 2017 with the survey's EMS-ResNet10 spiking YOLO: ``python coco/train.py --data-dir COCO_ROOT [--neuron if]``.

Recipe defaults (survey §3.6, YOLOv5 v6.0 ``hyp.scratch.yaml``): 100 epochs, batch 16, 640 px, T = 5 (direct
encoding), LIF tau = 2 / ATan alpha = 2; SGD Nesterov momentum 0.937, lr 0.01 with a cosine ``lf`` to 0.1 stepped per
epoch (:mod:`coco.schedule`); warm-up over max(3 epochs, 1000 iterations) (momentum 0.8 -> 0.937, bias lr 0.1 ->
lr); gradient accumulation to a nominal batch of 64 (``--accumulate`` = max(round(64 / global batch), 1)) with
weight decay 5e-4 x global batch x accumulate / 64 on conv weights only (:mod:`coco.param_groups`); EMA 0.9999
(ramp 2000), evaluated every epoch with the YOLOv5 metric (best by fitness); AMP on CUDA; seed 0. After the last
epoch ``checkpoint_best.pt`` is scored by pycocotools (:mod:`coco.evaluate`). ``--sop --resume RUN`` counts SOPs.
"""
from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import torch

from coco import data, evaluate, metrics, schedule
from coco import model as M
from coco import sop as coco_sop
from coco.loss import YoloLoss
from coco.param_groups import param_groups
from common import cli, engine, methods, quirks, sop
from common.coco_eval import STAT_KEYS
from common.errors import UsageError
from common.neuron import NeuronConfig
from common.task import Task, repeat_over_time

DESCRIPTION = ("Train the survey's EMS-ResNet10 spiking YOLO on COCO 2017 (ultralytics coco2017labels layout under "
               "--data-dir) and score checkpoint_best.pt with pycocotools.")


def build_parser() -> argparse.ArgumentParser:
    p = cli.base_parser(
        DESCRIPTION, task="coco", epochs=100, batch_size=16, lr=0.01, momentum=0.937, nesterov=True, wd=5e-4,
        label_smoothing=0.0, seed=0, T=5, tau=2.0, sg_alpha=2.0, warmup_epochs=3.0, warmup_min_iters=1000,
        warmup_momentum=0.8, warmup_bias_lr=0.1, ema_decay=0.9999, ema_ramp=2000.0, accumulate=4,
        amp=torch.cuda.is_available(), data_dir="./data/coco")
    g = p.add_argument_group("COCO")
    g.add_argument("--img-size", type=int, default=640, help="training size and longest validation side (x 32)")
    g.add_argument("--lrf", type=float, default=0.1, help="final lr fraction of the cosine lf")
    g.add_argument("--nominal-batch", type=int, default=64,
                   help="--accumulate defaults to max(round(NOMINAL / (b x processes)), 1); weight decay is scaled "
                        "by b x processes x accumulate / NOMINAL")
    g.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain SGD momentum")
    g.add_argument("--no-amp", dest="amp", action="store_false", help="train in fp32 on CUDA")
    g.add_argument("--train-list", default="train2017.txt", help="image list or folder, relative to --data-dir")
    g.add_argument("--val-list", default="val2017.txt", help="image list or folder, relative to --data-dir")
    g.add_argument("--annotations", default="annotations/instances_val2017.json",
                   help="instances JSON of the validation images for the final pycocotools evaluation")
    g.add_argument("--final-eval", action=argparse.BooleanOptionalAction, default=True,
                   help="score checkpoint_best.pt with pycocotools after the last epoch")
    g.add_argument("--no-cache", action="store_true", help="check the labels without reading or writing the cache")
    sop.add_args(p, modes=coco_sop.MODES)
    return p


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def nominal_accumulate(nominal: int, global_batch: int) -> int:
    """YOLOv5's ``accumulate = max(round(nbs / batch), 1)``."""
    return max(round(nominal / global_batch), 1)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """:func:`common.cli.parse` with ``--accumulate`` defaulting to :func:`nominal_accumulate` of this command
    line's ``-b`` and ``--nominal-batch`` (a resumed run keeps its recorded value)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(accumulate=nominal_accumulate(known.nominal_batch, known.batch_size * world_size()))
    return cli.parse(parser, argv)


def check_paths(args) -> None:
    """The lists (and the annotations when needed) exist: a wrong ``--data-dir`` is one line before any run
    directory is made."""
    root = Path(args.data_dir)
    if not root.is_dir():
        raise UsageError(f"--data-dir {root} is not a folder (expected COCO_ROOT with train2017.txt, val2017.txt, "
                         "images/, labels/, annotations/; see docs/coco.md)")
    needed = [("--val-list", args.val_list)] + ([] if args.sop else [("--train-list", args.train_list)])
    if args.final_eval and not args.sop:
        needed.append(("--annotations", args.annotations))
    for flag, rel in needed:
        if not (root / rel).exists():
            raise UsageError(f"{flag}: {root / rel} does not exist (see docs/coco.md for the layout and "
                             "coco/convert_annotations.py)")


def build_model(args, kind: str = "snn") -> M.EMSResNet10:
    if kind != "snn":
        raise UsageError(f"--method {args.method} needs a non-spiking twin, which the COCO model does not have")
    extra = {**M.SURVEY_NEURON_OPTIONS.get(args.neuron, {}), **args.neuron_extra}
    return M.build_model(NeuronConfig.from_args(args, extra=extra), args.norm, args.T, img_size=args.img_size)


def _dataset(args, rel: str, train: bool) -> data.COCODetection:
    return data.COCODetection(Path(args.data_dir) / rel, args.img_size, augment=train, rect=not train,
                              batch_size=args.batch_size, workers=min(8, os.cpu_count() or 1),
                              use_cache=not args.no_cache)


def load_data(args) -> tuple[data.COCODetection | None, data.COCODetection]:
    """``(train, val)``; no training set for ``--sop``."""
    return None if args.sop else _dataset(args, args.train_list, True), _dataset(args, args.val_list, False)


def process_summed_loss(loss: YoloLoss, n_processes: int, outputs, targets) -> torch.Tensor:
    """YOLOv5's training loss under DDP: ``ComputeLoss x world size``, so that DDP's gradient average over the
    processes equals the gradient of one process holding the whole global batch."""
    return loss(outputs, targets) * n_processes


def build_task(args, n_processes: int = 1) -> Task:
    global_batch = args.batch_size * n_processes
    weight_decay = args.wd * global_batch * args.accumulate / args.nominal_batch
    loss = YoloLoss(M.ANCHORS, M.STRIDES)
    anchors = torch.tensor(M.ANCHORS, dtype=torch.float32)
    parts = [f"T{args.T}", f"img{args.img_size}"]
    if args.survey_quirks:
        parts.append("sq-" + "-".join(sorted(set(args.survey_quirks))))
    task = Task(
        name="coco", build_model=partial(build_model, args), build_data=partial(load_data, args),
        model_kind=methods.get(args.method).model_kind, train_loss=partial(process_summed_loss, loss, n_processes),
        test_loss=loss,
        encode=partial(repeat_over_time, T=args.T), decode=M.mean_over_time,
        make_evaluator=partial(metrics.YoloAP, anchors, M.STRIDES, placeholders=STAT_KEYS), score_train=False,
        train_collate=data.collate, test_collate=data.collate, drop_last=False,
        param_groups=partial(param_groups, weight_decay=weight_decay, survey=quirks.on(args, "frozen_tebn_p")),
        make_scheduler=schedule.make_scheduler, name_parts=tuple(parts))
    if args.final_eval:
        task.final_eval = partial(evaluate.final_eval, args, task)
    return task


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    sop.check_args(args)
    check_paths(args)
    env = engine.setup(args)
    task = build_task(args, env.dist.world_size)
    if args.sop:  # rates over the validation images, operation counts at one --img-size square image
        return sop.run(args, task, env, **coco_sop.options(args.img_size))
    return engine.fit(args, task, env)


if __name__ == "__main__":
    cli.main_guard(main)
