"""YOLOv5 v6.0 loss on a case computed by hand (matching, CIoU, BCE) and against a brute-force assignment."""
from __future__ import annotations

import math

import numpy as np
import torch

from coco import loss as L
from coco.model import ANCHORS, STRIDES


def ciou(a, b) -> float:
    """CIoU of two (cx, cy, w, h) boxes from its definition: IoU - rho^2 / c^2 - alpha v."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0, min(ax2, bx2) - max(ax1, bx1)) * max(0, min(ay2, by2) - max(ay1, by1))
    iou = inter / (a[2] * a[3] + b[2] * b[3] - inter)
    c2 = (max(ax2, bx2) - min(ax1, bx1)) ** 2 + (max(ay2, by2) - min(ay1, by1)) ** 2
    rho2 = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    v = 4 / math.pi ** 2 * (math.atan(b[2] / b[3]) - math.atan(a[2] / a[3])) ** 2
    return iou - rho2 / c2 - v / (1 - iou + v) * v


def softplus(x):
    return math.log1p(math.exp(x))


def test_loss_matches_a_hand_computed_case():
    # 128 x 128 input: P4 8x8 (stride 16), P5 4x4 (stride 32); batch of 2, image 1 has no objects.
    # Target class 3, centre (36, 76) px, size 30 x 40 px.
    # P4 in grid units: centre (2.25, 4.75), size (1.875, 2.5); all three anchors within ratio 4
    #   (worst: 1.875 / 0.625 = 3); x frac .25 < .5 -> left cell, y: 8 - 4.75 = 3.25, frac .25 -> down cell.
    #   Positives: cells (gi, gj) = (2, 4), (1, 4), (2, 5) x anchors 0, 1, 2.
    # P5: centre (1.125, 2.375), size (0.9375, 1.25); only anchor 0 (81/32 / 0.9375 = 2.7; anchor 1: 4.5 > 4);
    #   x frac .125 -> left, y frac .375 -> up. Positives: (1, 2), (0, 2), (1, 1) x anchor 0.
    obj_logit, cls_logit = -2.0, 1.0
    outputs = []
    for size in (8, 4):
        p = torch.zeros(2, 3, size, size, 85)
        p[..., 4], p[..., 5:] = obj_logit, cls_logit
        outputs.append(p.requires_grad_())
    targets = [{"boxes": torch.tensor([[21.0, 56.0, 51.0, 96.0]]), "labels": torch.tensor([3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    levels = [(16, [(2, 4), (1, 4), (2, 5)], [0, 1, 2], 4.0), (32, [(1, 2), (0, 2), (1, 1)], [0], 1.0)]
    lbox = lobj = lcls = 0.0
    for (stride, cells, anchors, balance), p in zip(levels, outputs):
        target = (36 / stride, 76 / stride, 30 / stride, 40 / stride)
        cious = []
        for gi, gj in cells:
            for a in anchors:
                aw, ah = (v / stride for v in ANCHORS[STRIDES.index(stride)][a])
                cious.append(ciou((gi + 0.5, gj + 0.5, aw, ah), target))  # zero logits: centre of cell, anchor size
        lbox += np.mean([1 - c for c in cious])
        n_cells = p[..., 4].numel()
        lobj += balance * (softplus(obj_logit) - obj_logit * sum(max(c, 0) for c in cious) / n_cells)
        lcls += softplus(cls_logit) - cls_logit / 80
    expected = (0.075 * lbox + 1.5 * lobj + 0.75 * lcls) * 2
    crit = L.YoloLoss(torch.tensor(ANCHORS, dtype=torch.float32), STRIDES)
    got = crit(outputs, targets)
    assert abs(got.item() - expected) < 1e-5 * expected
    torch.testing.assert_close(crit.parts(outputs, targets).sum() * 2, got)
    got.backward()
    assert outputs[0].grad[0, :, 4, 2, :4].abs().sum() > 0 and outputs[0].grad[1, ..., :4].abs().sum() == 0


def reference_assign(rows, shape, anchors, stride, anchor_t=4.0):
    """Brute force from the rule: (b, a, gj, gi) of every positive as a sorted list."""
    H, W = shape[2], shape[3]
    out = []
    for b, _, cx, cy, w, h in rows.tolist():
        x, y, w, h = cx / stride, cy / stride, w / stride, h / stride
        for a, (aw, ah) in enumerate((anchors / stride).tolist()):
            if max(w / aw, aw / w, h / ah, ah / h) >= anchor_t:
                continue
            cells = [(int(x), int(y))]
            if x % 1 < 0.5 and x > 1:
                cells.append((int(x - 0.5), int(y)))
            if y % 1 < 0.5 and y > 1:
                cells.append((int(x), int(y - 0.5)))
            if (W - x) % 1 < 0.5 and W - x > 1:
                cells.append((int(x + 0.5), int(y)))
            if (H - y) % 1 < 0.5 and H - y > 1:
                cells.append((int(x), int(y + 0.5)))
            out += [(int(b), a, min(max(gj, 0), H - 1), min(max(gi, 0), W - 1)) for gi, gj in cells]
    return sorted(out)


def test_assignment_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    n = 40
    wh = torch.rand(n, 2, generator=g) * 150 + 4
    xy = torch.rand(n, 2, generator=g) * 256
    image, cls = torch.randint(0, 3, (n, 1), generator=g), torch.randint(0, 80, (n, 1), generator=g)
    rows = torch.cat([image.float(), cls.float(), xy, wh], 1)
    anchors = torch.tensor(ANCHORS, dtype=torch.float32)
    for level, stride in enumerate(STRIDES):
        shape = (3, 3, 256 // stride, 256 // stride, 85)
        (b, a, gj, gi), tbox, anch, tcls = L.assign(shape, rows, anchors[level], stride, 4.0)
        got = sorted(zip(b.tolist(), a.tolist(), gj.tolist(), gi.tolist()))
        assert got == reference_assign(rows, shape, anchors[level], stride)
        assert len(got) > n  # neighbours add positives
        torch.testing.assert_close(anch, anchors[level][a] / stride)


def test_empty_targets_give_only_objectness_loss():
    outputs = [torch.zeros(1, 3, 4, 4, 85), torch.zeros(1, 3, 2, 2, 85)]
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    parts = L.YoloLoss(torch.tensor(ANCHORS, dtype=torch.float32), STRIDES).parts(outputs, targets)
    torch.testing.assert_close(parts, torch.tensor([0.0, 1.5 * 5 * math.log(2), 0.0]))
