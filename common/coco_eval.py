r"""COCO box mAP with pycocotools, as an engine evaluator (``update(outputs, targets, extras)`` / ``compute()``).

``compute()`` returns the 12 ``COCOeval.stats`` under :data:`STAT_KEYS` (AP at IoU .50:.95, .50, .75, AP small /
medium / large, AR at 1 / 10 / 100 detections, AR small / medium / large); ``best_metric = "AP"``.

Detections: ``update`` receives the model's outputs; ``postprocess(outputs, extras)`` (given at construction; default:
the outputs already are) turns them into one dict per image ``{"boxes" [D, 4] xyxy pixels, "scores" [D],
"labels" [D]}``. Ground truth comes from one of two sources:

* ``annotations=None`` -- from the batch ``targets`` (per image ``{"boxes" xyxy, "labels"}``): images get ids
  1..N in the order seen (rank 0's first), size ``image_size`` (H, W), categories ``label + 1``, ``area = w h``,
  ``iscrowd = 0``; ``box_filter`` (e.g. the survey's ``filter_boxes``) is applied to detections and targets alike;
* ``annotations=PATH`` -- a COCO instances JSON; ``extras["image_id"]`` names each image, ``category_ids[label]``
  maps contiguous labels to COCO category ids, and only the images seen are scored.

Every rank keeps its own images; ``compute()`` gathers them (``common.distributed.all_gather_object``) and scores
the union on every rank. With no detection at all every stat is 0.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from common import distributed

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _numpy(d: dict, keys) -> dict[str, np.ndarray]:
    return {k: (d[k].detach().float().cpu().numpy() if k in ("boxes", "scores") else d[k].detach().cpu().numpy())
            for k in keys}


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


class COCOEvaluator:
    best_metric = "AP"

    def __init__(self, postprocess: Callable | None = None, *, image_size: tuple[int, int] | None = None,
                 box_filter: Callable[[dict], dict] | None = None, class_names: Sequence[str] | None = None,
                 annotations=None, category_ids: Sequence[int] | None = None, verbose: bool = False):
        if annotations is None and image_size is None:
            raise ValueError("COCOEvaluator needs image_size (H, W) when the ground truth comes from the targets")
        if annotations is not None and category_ids is None:
            raise ValueError("COCOEvaluator needs category_ids (label -> COCO category id) with an annotations file")
        self.postprocess = postprocess or (lambda outputs, extras: outputs)
        self.image_size, self.box_filter, self.class_names = image_size, box_filter, class_names
        self.category_ids, self.verbose = category_ids, verbose
        self.coco_gt = None
        if annotations is not None:
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco_gt = COCO(str(annotations))
        self.images: list[tuple] = []  # (image_id or None, detections, targets or None)

    def update(self, outputs, targets, extras: dict | None = None) -> None:
        extras = extras or {}
        detections = self.postprocess(outputs, extras)
        ids = extras.get("image_id")
        for n, det in enumerate(detections):
            target = None if self.coco_gt is not None else targets[n]
            if self.box_filter is not None:
                det = self.box_filter(det)
                target = None if target is None else self.box_filter(target)
            image_id = None if ids is None else int(ids[n])
            self.images.append((image_id, _numpy(det, ("boxes", "scores", "labels")),
                                None if target is None else _numpy(target, ("boxes", "labels"))))

    def compute(self) -> dict[str, float]:
        images = [item for part in distributed.all_gather_object(self.images) for item in part]
        self.images = []
        if self.coco_gt is None:
            coco_gt, image_ids = self._gt_from_targets(images), list(range(1, len(images) + 1))
            category_of = np.arange(1, self._num_labels(images) + 1)  # label + 1
        else:
            coco_gt, image_ids = self.coco_gt, [image_id for image_id, _, _ in images]
            category_of = np.asarray(self.category_ids)
        # one [D, 7] block per image: image id, x, y, w, h, score, category
        results = np.concatenate([np.zeros((0, 7))] + [
            np.column_stack([np.full(len(det["scores"]), image_id), _xywh(det["boxes"]), det["scores"],
                             category_of[det["labels"].astype(np.int64)]])
            for image_id, (_, det, _) in zip(image_ids, images)]).astype(np.float64)
        if not len(results):
            return dict.fromkeys(STAT_KEYS, 0.0)
        return self._score(coco_gt, results, sorted(set(image_ids)))

    @staticmethod
    def _num_labels(images) -> int:
        """1 + the largest label of any detection or target (at least 1)."""
        labels = [part["labels"] for _, d, t in images for part in (d, t) if part is not None]
        return int(np.concatenate([np.zeros(1, np.int64), *labels]).max()) + 1

    def _gt_from_targets(self, images) -> COCO:
        h, w = self.image_size
        names = self.class_names or [str(k) for k in range(self._num_labels(images))]
        annotations = []
        for image_id, (_, _, target) in enumerate(images, start=1):
            for box, label in zip(_xywh(target["boxes"]).tolist(), target["labels"].tolist()):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "bbox": box,
                                    "area": box[2] * box[3], "category_id": int(label) + 1, "iscrowd": 0})
        coco = COCO()
        coco.dataset = {"images": [{"id": i, "height": h, "width": w} for i in range(1, len(images) + 1)],
                        "annotations": annotations,
                        "categories": [{"id": k + 1, "name": name, "supercategory": "none"}
                                       for k, name in enumerate(names)]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def _score(self, coco_gt: COCO, results: np.ndarray, image_ids: list[int]) -> dict[str, float]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            coco_dt = coco_gt.loadRes(results)
            evaluator = COCOeval(coco_gt, coco_dt, "bbox")
            evaluator.params.imgIds = image_ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        if self.verbose and distributed.is_main():
            print(out.getvalue(), end="")
        return {key: float(value) for key, value in zip(STAT_KEYS, evaluator.stats)}
