r"""SSD loss and post-processing of the survey's Gen1 detector (spec §2.5), built on torchvision's detection ops.

Loss, for a batch with anchors ``a`` and per image ``n`` the GT boxes: ``m = SSDMatcher(0.5)(box_iou(gt, a))``
(IoU >= 0.5 -> positive, plus every GT's best anchor), positives ``P = {j : m_j >= 0}`` over the whole batch::

    L_box = sum_{n, j in P_n} SmoothL1_beta=1(reg[n, j] - BoxCoder(10, 10, 5, 5).encode(gt[m_j], a_j)) / max(1, |P|)
    L_cls = sum_{n, j, k} FL(cls[n, j, k], 1[j in P_n and label[m_j] = k]) / max(1, |P|)

with ``FL`` torchvision's ``sigmoid_focal_loss`` (alpha 0.25, gamma 2) and no background class (an unmatched
anchor has all-zero targets); ``|P|`` counts the positives of the whole batch (the survey's normalisation).

Post-processing per image: decode with the same BoxCoder, clip to the image; per class keep sigmoid scores > 0.01,
at most the top 200; class-wise NMS at IoU 0.45 (``batched_nms``); keep the 100 best.
``filter_boxes`` keeps boxes with diagonal >= 30 px and both sides >= 20 px (applied to detections and ground
truth before the COCO evaluation, as the survey does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder, SSDMatcher
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, sigmoid_focal_loss

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


class _Anchored:
    """Holds the model's anchors and hands them out on the device of the outputs (cached per device)."""

    def __init__(self, anchors: torch.Tensor):
        self._anchors = {anchors.device: anchors.detach()}

    def anchors_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._anchors:
            self._anchors[device] = next(iter(self._anchors.values())).to(device)
        return self._anchors[device]


class SSDLoss(_Anchored):
    """``loss(outputs=(cls_logits [N, A, K], bbox_regression [N, A, 4]), targets) -> L_box + L_cls``; the two parts
    of the last call are kept in ``self.last`` (detached) for logging."""

    def __init__(self, anchors: torch.Tensor, iou_threshold: float = 0.5, weights=BOX_WEIGHTS, alpha: float = 0.25,
                 gamma: float = 2.0):
        super().__init__(anchors)
        self.matcher, self.coder = SSDMatcher(iou_threshold), BoxCoder(weights)
        self.alpha, self.gamma = alpha, gamma
        self.last: dict[str, torch.Tensor] = {}

    def match(self, gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Index of the matched GT box per anchor, -1 for background."""
        if gt_boxes.numel() == 0:
            return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
        return self.matcher(box_iou(gt_boxes, anchors))

    def __call__(self, outputs, targets: list[dict]) -> torch.Tensor:
        cls_logits, bbox_regression = (o.float() for o in outputs)
        anchors = self.anchors_on(cls_logits.device)
        n, a, k = cls_logits.shape
        # matching is per image (its own GT count); everything after it runs on the whole batch at once, with the
        # GT of every image concatenated (plus one filler row for the background anchors) and no host sync
        matched = torch.stack([self.match(t["boxes"].float(), anchors) for t in targets])  # [N, A]
        fg = matched >= 0
        counts = [len(t["boxes"]) for t in targets]
        first = torch.tensor([0, *counts[:-1]], device=matched.device).cumsum(0)[:, None]
        gt_index = torch.where(fg, matched + first, sum(counts))
        boxes = torch.cat([*(t["boxes"].float() for t in targets), anchors.new_zeros(1, 4)])[gt_index]
        labels = torch.cat([*(t["labels"] for t in targets), gt_index.new_zeros(1)])[gt_index]
        boxes = torch.where(fg[..., None], boxes, anchors)  # background: its own anchor, a finite (zero) encoding
        regression_target = self.coder.encode_single(boxes.view(-1, 4), anchors.repeat(n, 1)).view(n, a, 4)
        box_loss = F.smooth_l1_loss(bbox_regression, regression_target, reduction="none", beta=1.0).sum(-1)
        onehot = F.one_hot(labels, k).to(cls_logits.dtype) * fg[..., None]
        cls_loss = sigmoid_focal_loss(cls_logits, onehot, self.alpha, self.gamma, reduction="sum")
        positives = fg.sum().clamp(min=1)
        box_loss, cls_loss = torch.where(fg, box_loss, 0.0).sum() / positives, cls_loss / positives
        self.last = {"loss_bbox": box_loss.detach(), "loss_classif": cls_loss.detach()}
        return box_loss + cls_loss


class PostProcess(_Anchored):
    """``(outputs, extras=None) -> [{"boxes" [D, 4] xyxy, "scores" [D], "labels" [D]}]`` per image."""

    def __init__(self, anchors: torch.Tensor, image_size=(240, 304), weights=BOX_WEIGHTS, score_thresh=0.01,
                 topk: int = 200, nms_thresh: float = 0.45, detections_per_img: int = 100):
        super().__init__(anchors)
        self.coder, self.image_size = BoxCoder(weights), tuple(image_size)
        self.score_thresh, self.topk, self.nms_thresh, self.per_img = score_thresh, topk, nms_thresh, detections_per_img

    def __call__(self, outputs, extras: dict | None = None) -> list[dict[str, torch.Tensor]]:
        cls_logits, bbox_regression = (o.float() for o in outputs)
        anchors = self.anchors_on(cls_logits.device)
        n, a, k = cls_logits.shape
        boxes = self.coder.decode_single(bbox_regression.reshape(-1, 4), anchors.repeat(n, 1))
        boxes = clip_boxes_to_image(boxes, self.image_size).view(n, a, 4)
        # per image and class the top-k anchors; those above the threshold are the candidates (= top-k of those
        # above the threshold)
        scores, index = cls_logits.sigmoid().topk(min(self.topk, a), dim=1)  # [N, topk, K]
        labels = torch.arange(k, device=index.device).expand_as(index[0])
        return [self.nms(b, s, i, labels) for b, s, i in zip(boxes, scores, index)]

    def nms(self, boxes, scores, index, labels) -> dict[str, torch.Tensor]:
        """One image: ``boxes [A, 4]``, per-class top-k ``scores`` / anchor ``index`` / ``labels`` ``[topk, K]``."""
        keep = scores > self.score_thresh
        boxes, scores, labels = boxes[index[keep]], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.nms_thresh)[:self.per_img]
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def filter_boxes(det: dict, min_diag: float = 30.0, min_side: float = 20.0) -> dict:
    """Keep the entries of ``det`` (``boxes`` xyxy and aligned per-box tensors) whose box has
    ``w^2 + h^2 >= min_diag^2``, ``w >= min_side`` and ``h >= min_side``."""
    w = det["boxes"][:, 2] - det["boxes"][:, 0]
    h = det["boxes"][:, 3] - det["boxes"][:, 1]
    keep = (w.square() + h.square() >= min_diag ** 2) & (w >= min_side) & (h >= min_side)
    return {k: (v[keep] if torch.is_tensor(v) and v.dim() > 0 and len(v) == len(keep) else v) for k, v in det.items()}
