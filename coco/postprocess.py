r"""From head outputs to COCO detections: decoding, class-aware multi-label NMS, scaling back to the original
images, and COCO-JSON prediction records.

Decoding, per level with stride s and anchors a (pixels), for the cell (i, j) and raw output t::

    (cx, cy) = (2 sigma(t_xy) - 0.5 + (j, i)) s,   (w, h) = (2 sigma(t_wh))^2 a,   obj, cls = sigma(t_obj), sigma(t_cls)

NMS (YOLOv5 v6.0 ``non_max_suppression``, multi-label): every (box, class c) with ``score = obj * cls_c > conf``
is a candidate; at most ``max_nms`` (30,000) highest-scoring candidates go to a class-aware NMS
(``torchvision.ops.batched_nms``) at IoU ``iou``; the ``max_det`` (300) best survive. (YOLOv5's 10 s time limit
per batch is not reproduced.) Validation uses ``conf 0.001, iou 0.6``; the final evaluation ``iou 0.65``.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.ops import batched_nms, box_convert

from coco.classes import COCO80_TO_91

CONF_THRES, IOU_VAL, IOU_FINAL, MAX_DET, MAX_NMS = 0.001, 0.6, 0.65, 300, 30000


def decode(outputs: Sequence[torch.Tensor], anchors: torch.Tensor, strides: Sequence[float]) -> torch.Tensor:
    """Per-level ``[N, na, H, W, no]`` logits -> ``[N, sum_i na H_i W_i, no]`` = ``cx cy w h`` (pixels of the network
    input), objectness and class probabilities."""
    out = []
    for p, anchor, s in zip(outputs, anchors, strides):
        N, na, H, W, no = p.shape
        y = p.float().sigmoid()
        gy, gx = torch.meshgrid(torch.arange(H, device=p.device), torch.arange(W, device=p.device), indexing="ij")
        grid = torch.stack([gx, gy], -1).to(y.dtype)  # [H, W, 2] = (x, y)
        xy = (y[..., :2] * 2 - 0.5 + grid) * float(s)
        wh = (y[..., 2:4] * 2) ** 2 * anchor.to(y).view(1, na, 1, 1, 2)
        out.append(torch.cat([xy, wh, y[..., 4:]], -1).view(N, -1, no))
    return torch.cat(out, 1)


def nms(pred: torch.Tensor, conf: float = CONF_THRES, iou: float = IOU_VAL, max_det: int = MAX_DET,
        max_nms: int = MAX_NMS) -> list[torch.Tensor]:
    """Decoded ``[N, A, 5 + nc]`` -> per image ``[n, 6]`` rows ``x1 y1 x2 y2 score class``, best first."""
    results = []
    for x in pred:
        x = x[x[:, 4] > conf]
        scores = x[:, 5:] * x[:, 4:5]
        i, j = (scores > conf).nonzero().T
        det = torch.cat([box_convert(x[i, :4], "cxcywh", "xyxy"), scores[i, j, None], j[:, None].to(x.dtype)], 1)
        if len(det) > max_nms:
            det = det[det[:, 4].argsort(descending=True)[:max_nms]]
        keep = batched_nms(det[:, :4], det[:, 4], det[:, 5].long(), iou)[:max_det]
        results.append(det[keep])
    return results


def scale_boxes(boxes: torch.Tensor, ratio, pad: Sequence[float], orig_shape: Sequence[float]) -> torch.Tensor:
    """Network-input pixels -> original-image pixels: ``x0 = (x - pad_w) / ratio_x``, ``y0 = (y - pad_h) / ratio_y``
    (``ratio`` a number or ``(ratio_x, ratio_y)``), clipped to the ``(h0, w0)`` image. Returns a new tensor (fp32;
    the factors may be tensors on any device: no host synchronisation)."""
    boxes = boxes.float()
    as_xy = lambda v: torch.as_tensor(v, dtype=boxes.dtype, device=boxes.device).expand(2).repeat(2)  # noqa: E731
    size_xy = as_xy(orig_shape).flip(0)  # (h0, w0, h0, w0) -> (w0, h0, w0, h0)
    return ((boxes - as_xy(pad)) / as_xy(ratio)).clamp(min=0).minimum(size_xy)


def detections(outputs: Sequence[torch.Tensor], extras: dict, anchors: torch.Tensor, strides: Sequence[float],
               conf: float = CONF_THRES, iou: float = IOU_VAL, max_det: int = MAX_DET) -> list[torch.Tensor]:
    """Per image ``[n, 6]`` (``x1 y1 x2 y2 score class``) in original-image pixels (``extras`` of
    :func:`coco.data.collate`)."""
    dets = nms(decode(outputs, anchors, strides), conf, iou, max_det)
    out = []
    for k, det in enumerate(dets):
        det = det.clone()
        det[:, :4] = scale_boxes(det[:, :4], extras["ratios"][k], extras["pads"][k], extras["orig_shapes"][k])
        out.append(det)
    return out


def coco_records(dets: Sequence[torch.Tensor], image_ids: Sequence[int]) -> list[dict]:
    """COCO result records ``{"image_id", "category_id" (80 -> 91 map), "bbox": [x, y, w, h], "score"}`` (boxes
    rounded to 3 decimals, scores to 5, as YOLOv5 writes them)."""
    records = []
    for det, image_id in zip(dets, image_ids):
        det = det.detach().cpu().double()
        xywh = det[:, :4].clone()
        xywh[:, 2:] -= xywh[:, :2]
        for box, score, cls in zip(xywh.tolist(), det[:, 4].tolist(), det[:, 5].tolist()):
            records.append({"image_id": image_id, "category_id": COCO80_TO_91[int(cls)],
                            "bbox": [round(v, 3) for v in box], "score": round(score, 5)})
    return records


def write_predictions(path: str | Path, records: list[dict]) -> Path:
    """``records`` as the COCO results JSON (a list); refuses to overwrite an existing file."""
    path = Path(path)
    with path.open("x") as f:
        json.dump(records, f)
    return path
