import math

import pytest
import torch

from SFOD.detection import PostProcess, SSDLoss, filter_boxes


def _focal(logit_target_pairs, alpha=0.25, gamma=2.0):
    """sigmoid focal loss by hand: -alpha_t (1 - p_t)^gamma log p_t."""
    total = 0.0
    for z, y in logit_target_pairs:
        p = 1 / (1 + math.exp(-z))
        p_t = p if y else 1 - p
        total += -(alpha if y else 1 - alpha) * (1 - p_t) ** gamma * math.log(p_t)
    return total


def _smooth_l1(d):
    return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5


def test_loss_against_hand_computation():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([[0.0, 0, 10, 10],     # IoU 1     -> positive
                            [5.0, 5, 15, 15],     # IoU 1/7   -> background
                            [0.0, 0, 10, 15]])    # IoU 2/3   -> positive
    cls = torch.tensor([[[0.0, 0.5], [-1.0, 2.0], [0.3, -0.2]],
                        [[0.1, 0.2], [0.0, 0.0], [-2.0, 1.0]]])
    reg = torch.zeros(2, 3, 4)
    reg[0, 0] = torch.tensor([0.5, -2.0, 0.0, 0.1])
    targets = [{"boxes": gt, "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    loss_fn = SSDLoss(anchors)
    loss = loss_fn((cls, reg), targets)
    # anchor 2 (cx 5, cy 7.5, w 10, h 15) -> gt (5, 5, 10, 10): dy = 10 (5 - 7.5) / 15, dh = 5 log(10 / 15)
    box = sum(map(_smooth_l1, [0.5, -2.0, 0.0, 0.1])) + sum(map(_smooth_l1, [0.0, 10 * -2.5 / 15, 0.0,
                                                                          5 * math.log(10 / 15)]))
    pairs = [(0.0, 0), (0.5, 1), (-1.0, 0), (2.0, 0), (0.3, 0), (-0.2, 1)]
    pairs += [(z, 0) for z in (0.1, 0.2, 0.0, 0.0, -2.0, 1.0)]  # image without boxes: all background
    positives = 2
    assert loss_fn.last["loss_bbox"].item() == pytest.approx(box / positives, rel=1e-5)
    assert loss_fn.last["loss_classif"].item() == pytest.approx(_focal(pairs) / positives, rel=1e-5)
    assert loss.item() == pytest.approx((box + _focal(pairs)) / positives, rel=1e-5)


def test_postprocess_threshold_topk_classwise_nms():
    anchors = torch.tensor([[0.0, 0, 100, 100], [5.0, 5, 100, 100], [200.0, 100, 260, 200], [0, 0, 400, 400]])
    p = torch.tensor([[0.9, 0.0], [0.8, 0.7], [0.005, 0.3], [0.6, 0.02]])
    logits = torch.log(p / (1 - p)).clamp(-30, 30)
    post = PostProcess(anchors, image_size=(240, 304), topk=2)
    (det,) = post((logits[None], torch.zeros(1, 4, 4)))
    # class 0: scores 0.9, 0.8, 0.6 -> top-2 = anchors 0, 1 -> NMS (IoU 0.9) keeps 0; 0.005 below 0.01
    # class 1: 0.7 (anchor 1), 0.3 (anchor 2), 0.02 (anchor 3) -> top-2 = anchors 1, 2, no overlap
    assert det["scores"].tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert det["labels"].tolist() == [0, 1, 1]
    assert det["boxes"].tolist() == [[0, 0, 100, 100], [5, 5, 100, 100], [200, 100, 260, 200]]
    (det,) = PostProcess(anchors, detections_per_img=1)((logits[None], torch.zeros(1, 4, 4)))
    assert det["scores"].tolist() == pytest.approx([0.9])
    (det,) = PostProcess(anchors)((logits[None], torch.zeros(1, 4, 4)))
    assert [0.0, 0.0, 304.0, 240.0] in det["boxes"].tolist()  # anchor 3 clipped to the image


def test_filter_boxes():
    det = {"boxes": torch.tensor([[0.0, 0, 20, 20], [0, 0, 25, 19], [0, 0, 21, 22], [0, 0, 19, 100]]),
           "labels": torch.tensor([0, 1, 0, 1]), "scores": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    out = filter_boxes(det)  # diag 28.3 (no), side 19 (no), diag 30.4 (yes), side 19 (no)
    assert out["labels"].tolist() == [0] and out["scores"].tolist() == pytest.approx([0.3])
