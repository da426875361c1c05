r"""After training: ``checkpoint_best.pt`` (its EMA weights) scored with pycocotools (its SOP count: ``--sop``,
:mod:`common.sop` with :mod:`coco.sop`).

:func:`final_eval` is the COCO task's ``final_eval`` hook (:class:`common.task.Task`), as YOLOv5 v6.0 ends a COCO
run: the validation images (rectangular batches of ``-b``), NMS at IoU 0.65 (conf 0.001, 300 detections), boxes
scaled to the original images, every detection written to ``RUN_DIR/predictions_best.json`` (COCO results format,
80 -> 91 category ids, image id = file stem) and scored by pycocotools (:class:`common.coco_eval.COCOEvaluator`)
against the instances JSON, restricted to the evaluated images. Returns the 12 stats as ``test_AP ... test_ARl``.

Survey quirk ``fp16_best``: YOLOv5 strips ``best.pt`` to fp16 before this evaluation (``strip_optimizer``) and
reloads it as fp32, so every weight and buffer is rounded through fp16 first.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from coco import postprocess
from coco.classes import COCO80_TO_91
from common import checkpoint, distributed, methods, quirks
from common.batch import Batch
from common.coco_eval import STAT_KEYS, COCOEvaluator
from common.errors import DataError
from common.state import reset_net

quirks.register("fp16_best", "the final pycocotools evaluation uses the best EMA weights rounded through fp16 "
                "(YOLOv5's strip_optimizer)", tasks=("coco",))

PREDICTIONS = "predictions_best.json"


def load_weights(task, path: Path, device: torch.device, fp16: bool = False) -> nn.Module:
    """A fresh model of ``task`` on ``device`` with the checkpoint's EMA weights (its raw weights without EMA),
    in eval mode; ``fp16``: every float tensor rounded through fp16."""
    state = checkpoint.load(path, map_location=device)
    weights = checkpoint.model_weights(state)
    if fp16:
        weights = {k: v.half().to(v.dtype) if v.is_floating_point() else v for k, v in weights.items()}
    model = task.build_model(task.model_kind).to(device)
    model.load_state_dict(weights)
    return model.eval()


def _as_dicts(dets: list[torch.Tensor]) -> list[dict]:
    return [{"boxes": d[:, :4], "scores": d[:, 4], "labels": d[:, 5].long()} for d in dets]


def _image_ids(extras: dict) -> list[int]:
    ids = extras["image_ids"]
    bad = [(path, i) for path, i in zip(extras["paths"], ids) if not isinstance(i, int)]
    if bad:
        raise DataError(f"{bad[0][0]}: the pycocotools evaluation needs numeric file names (COCO image ids)")
    return ids


def _write_json(path: Path, records: list[dict]) -> None:
    """``records`` to ``path`` through a temporary file (a repeated final evaluation replaces its own output)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    postprocess.write_predictions(tmp, records)
    os.replace(tmp, path)


@torch.no_grad()
def final_eval(args, task, run_dir: Path, best: Path, env) -> dict[str, float]:
    """The module docstring's evaluation of ``best`` on every rank (each scores its shard; the stats cover all)."""
    model = load_weights(task, best, env.device, quirks.on(args, "fp16_best"))
    method = methods.get(args.method)(args, task)
    loader = DataLoader(task.test_set, batch_size=args.batch_size, collate_fn=task.test_collate,
                        num_workers=args.workers, sampler=distributed.ShardSampler(
                            len(task.test_set), env.dist.rank, env.dist.world_size))
    evaluator = COCOEvaluator(annotations=annotations_path(args), category_ids=COCO80_TO_91,
                              verbose=True)
    anchors, strides = model.detect.anchors, model.detect.strides.tolist()
    records = []
    for item in itertools.islice(loader, args.limit_batches or None):
        batch = Batch.of(item).to(env.device)
        reset_net(model)
        outputs = method.forward(model, batch)
        reset_net(model)
        dets = postprocess.detections(outputs, batch.extras, anchors, strides, iou=postprocess.IOU_FINAL)
        ids = _image_ids(batch.extras)
        records += postprocess.coco_records(dets, ids)
        evaluator.update(_as_dicts(dets), None, {"image_id": ids})
    stats = evaluator.compute()
    records = [r for part in distributed.all_gather_object(records) for r in part]
    if env.is_main:
        _write_json(Path(run_dir) / PREDICTIONS, records)
        print(f"pycocotools ({best.name}, NMS IoU {postprocess.IOU_FINAL}, {len(records)} detections): "
              + "  ".join(f"{k} {stats[k]:.4f}" for k in STAT_KEYS), flush=True)
    return {f"test_{k}": stats[k] for k in STAT_KEYS}


def annotations_path(args) -> Path:
    """``--annotations``, relative to ``--data-dir`` unless absolute."""
    return Path(args.data_dir) / args.annotations
