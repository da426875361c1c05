r"""The per-epoch YOLOv5 v6.0 validation metric (``val.py`` + ``utils/metrics.py``), used to select ``best``.

Matching, per image (original pixels), as YOLOv5 v6.0 ``process_batch`` does it: a detection and a ground truth
of the same class with IoU >= 0.5 are candidate pairs; each detection keeps its highest-IoU pair, then each ground
truth keeps, of the remaining pairs, the one with the lowest detection index (v6.0 does not re-sort by IoU there);
a matched detection is a true positive at every threshold ``tau in {0.5, 0.55, ..., 0.95}`` with ``IoU >= tau``
(one matching at 0.5 for all thresholds).

Per class c with ``n_c`` ground truths and detections sorted by score: recall ``R_k = TP_k / n_c``, precision
``P_k = TP_k / k``; the precision envelope ``P~(r) = max_{R_k >= r} P_k`` on ``(0, R..., 1)`` / ``(1, P..., 0)``
is sampled at r = 0, 0.01, ..., 1 and integrated with the trapezoid rule (101-point AP). AP50 / AP = the mean over
classes that have ground truth of AP at 0.5 / of the mean AP over the ten thresholds;
``fitness = 0.1 AP50 + 0.9 AP``. P and R are the class means at the score of maximum mean F1.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

from coco import postprocess
from common import distributed

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def match(det: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor) -> np.ndarray:
    """``[n_det, 10]`` bool: detection k is a true positive at threshold j."""
    correct = np.zeros((len(det), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(det) or not len(gt_boxes):
        return correct
    iou = box_iou(gt_boxes.float(), det[:, :4].float())
    gi, di = torch.where((iou >= IOU_THRESHOLDS[0]) & (gt_labels[:, None] == det[None, :, 5].long()))
    if not len(gi):
        return correct
    m = torch.stack([gi.double(), di.double(), iou[gi, di].double()], 1).cpu().numpy()
    m = m[m[:, 2].argsort()[::-1]]
    m = m[np.unique(m[:, 1], return_index=True)[1]]
    m = m[np.unique(m[:, 0], return_index=True)[1]]
    correct[m[:, 1].astype(int)] = m[:, 2:3] >= IOU_THRESHOLDS
    return correct


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP of one precision/recall curve (module docstring)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(P [C], R [C], AP [C, 10], classes [C])`` for the C classes present in ``target_cls``."""
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes = np.unique(target_cls)
    px = np.linspace(0, 1, 1000)
    ap = np.zeros((len(classes), tp.shape[1]))
    p, r = np.zeros((len(classes), 1000)), np.zeros((len(classes), 1000))
    for ci, c in enumerate(classes):
        sel = pred_cls == c
        n_gt = (target_cls == c).sum()
        if not sel.any():
            continue
        tpc = tp[sel].cumsum(0)
        fpc = (1 - tp[sel]).cumsum(0)
        recall = tpc / (n_gt + 1e-16)
        precision = tpc / (tpc + fpc)
        r[ci] = np.interp(-px, -conf[sel], recall[:, 0], left=0)
        p[ci] = np.interp(-px, -conf[sel], precision[:, 0], left=1)
        ap[ci] = [compute_ap(recall[:, j], precision[:, j]) for j in range(tp.shape[1])]
    f1 = 2 * p * r / (p + r + 1e-16)
    best = f1.mean(0).argmax() if len(classes) else 0
    return p[:, best], r[:, best], ap, classes


def fitness(ap50: float, ap: float) -> float:
    return 0.1 * ap50 + 0.9 * ap


class YoloAP:
    """Evaluator (engine protocol): ``update(outputs, targets, extras)`` per batch (outputs = per-level
    ``[N, na, H, W, no]``), ``compute() -> {"P", "R", "AP50", "AP", "fitness"}`` over all ranks (plus NaN
    for each ``placeholders`` key); ``best_metric = "fitness"``."""

    best_metric = "fitness"

    def __init__(self, anchors: torch.Tensor, strides: Sequence[float], conf: float = postprocess.CONF_THRES,
                 iou: float = postprocess.IOU_VAL, max_det: int = postprocess.MAX_DET,
                 placeholders: Sequence[str] = ()):
        self.anchors, self.strides = anchors, strides
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.placeholders = tuple(placeholders)  # keys reported as NaN (metrics.csv columns of the final evaluation)
        self.stats: list[tuple[np.ndarray, ...]] = []

    @torch.no_grad()
    def update(self, outputs, targets, extras: dict) -> None:
        dets = postprocess.detections(outputs, extras, self.anchors, self.strides, self.conf, self.iou, self.max_det)
        for k, (det, target) in enumerate(zip(dets, targets)):
            gt = postprocess.scale_boxes(target["boxes"].reshape(-1, 4), extras["ratios"][k], extras["pads"][k],
                                         extras["orig_shapes"][k])
            labels = target["labels"].reshape(-1).to(det.device)
            self.stats.append((match(det, gt.to(det.device), labels), det[:, 4].cpu().numpy(),
                               det[:, 5].cpu().numpy(), labels.cpu().numpy()))

    def compute(self) -> dict[str, float]:
        return {**self._scores(), **{k: math.nan for k in self.placeholders if k not in _KEYS}}

    def _scores(self) -> dict[str, float]:
        stats = [s for part in distributed.all_gather_object(self.stats) for s in part]
        if not stats:
            return dict.fromkeys(_KEYS, 0.0)
        tp, conf, pred_cls, target_cls = (np.concatenate(x, 0) for x in zip(*stats))
        if not len(target_cls):
            return dict.fromkeys(_KEYS, 0.0)
        p, r, ap, _ = ap_per_class(tp, conf, pred_cls, target_cls)
        ap50, ap_all = float(ap[:, 0].mean()), float(ap.mean(1).mean())
        return dict(P=float(p.mean()), R=float(r.mean()), AP50=ap50, AP=ap_all, fitness=fitness(ap50, ap_all))


_KEYS = ("P", "R", "AP50", "AP", "fitness")
