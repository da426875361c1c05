r"""YOLOv5 v6.0 ``ComputeLoss`` for the 2-level head, on per-level raw outputs ``p_i [N, na, H_i, W_i, nc + 5]``
(already averaged over T) and targets ``[{"boxes": xyxy pixels, "labels": class ids}, ...]``.

Assignment, per level i with stride s_i and anchors ``a_ik`` (pixels / s_i): a target of size ``(w, h)`` (grid
units) goes to every anchor k with ``max(w / a_w, a_w / w, h / a_h, a_h / h) < anchor_t`` (4), in its centre cell
and in the two nearest neighbouring cells: the left (up) one when the centre's fractional x (y) is below 0.5, else
the right (down) one -- only where that cell exists (``x > 1`` and ``W - x > 1``); cell indices clamped to the map.

Per positive, ``pxy = 2 sigma(t_xy) - 0.5`` (offset from the cell corner), ``pwh = (2 sigma(t_wh))^2 a``::

    l_box = sum_i mean(1 - CIoU(pred, target))                          (torchvision complete_box_iou_loss)
    l_obj = sum_i balance_i * mean_cells BCE(t_obj, tobj),  tobj = clamp(CIoU, 0) detached at positives, else 0
    l_cls = sum_i mean_{positives, classes} BCE(t_cls, onehot)
    loss  = (0.075 l_box + 1.5 l_obj + 0.75 l_cls) * N                  (balance = 4.0, 1.0)

Gains are ``hyp.scratch.yaml``'s (box 0.05, obj 1.0, cls 0.5) scaled by 3 / n_levels (and cls by nc / 80 = 1).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, complete_box_iou_loss

# centre cell, then left, up, right, down neighbours, scaled by the 0.5 rule
_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * 0.5


@dataclass(frozen=True)
class LossGains:
    box: float = 0.05 * 3 / 2
    obj: float = 1.0 * 3 / 2
    cls: float = 0.5 * 3 / 2
    anchor_t: float = 4.0
    balance: tuple[float, ...] = (4.0, 1.0)


def targets_to_rows(targets: Sequence[dict], device) -> torch.Tensor:
    """``[M, 6]`` rows ``(image index, class, cx, cy, w, h)`` in pixels."""
    if not targets:
        return torch.zeros((0, 6), device=device)
    boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(device=device, dtype=torch.float32)
    labels = torch.cat([t["labels"].reshape(-1) for t in targets]).to(device=device, dtype=torch.float32)
    counts = torch.tensor([t["labels"].numel() for t in targets], device=device)
    image = torch.repeat_interleave(torch.arange(len(targets), device=device, dtype=torch.float32), counts)
    return torch.cat([image[:, None], labels[:, None], box_convert(boxes, "xyxy", "cxcywh")], 1)


def assign(shape: tuple[int, ...], rows: torch.Tensor, anchors: torch.Tensor, stride: float, anchor_t: float):
    """Positives of one level with ``shape = (N, na, H, W, no)``: ``(b, a, gj, gi)`` indices, the target box
    ``(x - gi, y - gj, w, h)`` in grid units, the anchors (grid units) and classes."""
    na, H, W = shape[1], shape[2], shape[3]
    anchors = anchors.to(rows.device) / stride
    t = rows.clone()
    t[:, 2:6] /= stride
    t = torch.cat([t.repeat(na, 1), torch.arange(na, device=rows.device).repeat_interleave(len(rows))[:, None]], 1)
    if len(t):
        r = t[:, 4:6] / anchors[t[:, 6].long()]
        t = t[torch.max(r, 1 / r).max(1).values < anchor_t]
    gxy = t[:, 2:4]
    gxi = torch.tensor([W, H], device=t.device, dtype=t.dtype) - gxy
    j, k = ((gxy % 1 < 0.5) & (gxy > 1)).T
    l, m = ((gxi % 1 < 0.5) & (gxi > 1)).T
    mask = torch.stack([torch.ones_like(j), j, k, l, m])  # [5, M]
    offsets = _OFFSETS.to(t.device)[:, None].expand(5, len(t), 2)[mask]
    t = t.repeat(5, 1, 1)[mask]
    gij = (t[:, 2:4] - offsets).long()
    gi, gj = gij[:, 0].clamp(0, W - 1), gij[:, 1].clamp(0, H - 1)
    a = t[:, 6].long()
    tbox = torch.cat([t[:, 2:4] - torch.stack([gi, gj], 1), t[:, 4:6]], 1)
    return (t[:, 0].long(), a, gj, gi), tbox, anchors[a], t[:, 1].long()


class YoloLoss(nn.Module):
    """``loss(outputs, targets)`` -> the scalar training loss; :meth:`parts` -> ``[l_box, l_obj, l_cls]`` with the
    gains applied, before the batch-size factor. ``anchors [nl, na, 2]`` in pixels, ``strides [nl]``."""

    def __init__(self, anchors, strides: Sequence[float], nc: int = 80, gains: LossGains = LossGains()):
        super().__init__()
        self.register_buffer("anchors", torch.as_tensor(anchors, dtype=torch.float32).clone())
        self.strides, self.nc, self.gains = [float(s) for s in strides], nc, gains

    def forward(self, outputs: Sequence[torch.Tensor], targets: Sequence[dict]) -> torch.Tensor:
        return self.parts(outputs, targets).sum() * outputs[0].shape[0]

    def parts(self, outputs: Sequence[torch.Tensor], targets: Sequence[dict]) -> torch.Tensor:
        device = outputs[0].device
        rows = targets_to_rows(targets, device)
        lbox, lobj, lcls = (torch.zeros((), device=device) for _ in range(3))
        for p, anchors, stride, balance in zip(outputs, self.anchors, self.strides, self.gains.balance):
            p = p.float()
            (b, a, gj, gi), tbox, anch, tcls = assign(p.shape, rows, anchors, stride, self.gains.anchor_t)
            tobj = torch.zeros(p.shape[:4], device=device)
            if len(b):
                ps = p[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anch
                pred = box_convert(torch.cat([pxy, pwh], 1), "cxcywh", "xyxy")
                ciou_loss = complete_box_iou_loss(pred, box_convert(tbox, "cxcywh", "xyxy"), reduction="none")
                lbox = lbox + ciou_loss.mean()
                tobj[b, a, gj, gi] = (1.0 - ciou_loss).detach().clamp(0)
                if self.nc > 1:
                    onehot = F.one_hot(tcls, self.nc).to(ps.dtype)
                    lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], onehot)
            lobj = lobj + balance * F.binary_cross_entropy_with_logits(p[..., 4], tobj)
        return torch.stack([lbox * self.gains.box, lobj * self.gains.obj, lcls * self.gains.cls])
