"""Class map, decoding, NMS, COCO-JSON predictions (scored by pycocotools) and the per-epoch YOLO AP."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from coco import classes, data, metrics, postprocess
from tests.coco.fake_coco import KNOWN_91, write_fake_coco


def test_80_to_91_map():
    unused = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # ids without detection annotations (COCO 2014 paper list)
    assert list(classes.COCO80_TO_91) == sorted(set(range(1, 91)) - unused)
    for c, cat in KNOWN_91.items():  # person 1, stop sign 13, backpack 27, toothbrush 90
        assert classes.COCO80_TO_91[c] == cat
    assert (classes.NAMES[0], classes.NAMES[11], classes.NAMES[24], classes.NAMES[79]) == (
        "person", "stop sign", "backpack", "toothbrush")
    assert all(classes.COCO91_TO_80[classes.COCO80_TO_91[c]] == c for c in range(80))


def test_decode_by_hand():
    p = torch.zeros(1, 1, 2, 2, 7)  # one anchor, 2x2 grid, 2 classes
    p[0, 0, 1, 0, 0] = 50.0  # sigma -> 1: x = (2 - 0.5 + 0) * 16 = 24 for cell row 1, column 0
    out = postprocess.decode([p], torch.tensor([[[8.0, 12.0]]]), [16])
    assert out.shape == (1, 4, 7)
    # cells in row-major order: (row 0, col 0), (0, 1), (1, 0), (1, 1); zero logits: centre = (col + 0.5) * 16
    torch.testing.assert_close(out[0, 0, :4], torch.tensor([8.0, 8.0, 8.0, 12.0]))
    torch.testing.assert_close(out[0, 1, :4], torch.tensor([24.0, 8.0, 8.0, 12.0]))
    torch.testing.assert_close(out[0, 2, :4], torch.tensor([24.0, 24.0, 8.0, 12.0]))
    torch.testing.assert_close(out[0, 3, 4:], torch.full((3,), 0.5))


def _pred(rows):
    """Decoded rows ``cx cy w h obj cls0 cls1``."""
    return torch.tensor([rows], dtype=torch.float32)


def test_nms_is_multi_label_and_class_aware():
    pred = _pred([[50, 50, 20, 20, 0.9, 0.9, 0.5],      # one box, two classes above conf
                  [51, 50, 20, 20, 0.8, 0.9, 0.0],      # overlaps box 0 in class 0 -> suppressed
                  [150, 50, 20, 20, 0.0005, 1.0, 1.0]])  # objectness below conf -> dropped
    det = postprocess.nms(pred, conf=0.001, iou=0.6)[0]
    assert det[:, 5].tolist() == [0.0, 1.0]
    torch.testing.assert_close(det[:, 4], torch.tensor([0.81, 0.45]))
    torch.testing.assert_close(det[0, :4], torch.tensor([40.0, 40.0, 60.0, 60.0]))
    assert len(postprocess.nms(pred, conf=0.001, iou=0.6, max_det=1)[0]) == 1


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fake_coco(tmp_path_factory.mktemp("pp"), n_train=1, n_val=6)


def _ground_truth_detections(root, img_size=128):
    ds = data.COCODetection(root / "val2017.txt", img_size, rect=True, batch_size=4, workers=1)
    _, targets, extras = data.collate([ds[i] for i in range(len(ds))])
    dets = []
    for k, t in enumerate(targets):
        boxes = postprocess.scale_boxes(t["boxes"], extras["ratios"][k], extras["pads"][k], extras["orig_shapes"][k])
        dets.append(torch.cat([boxes, torch.ones(len(boxes), 1), t["labels"][:, None].float()], 1))
    return dets, targets, extras


def test_ground_truth_predictions_score_ap_1_with_pycocotools(root, tmp_path):
    dets, _, extras = _ground_truth_detections(root)
    path = postprocess.write_predictions(tmp_path / "pred.json", postprocess.coco_records(dets, extras["image_ids"]))
    records = json.loads(path.read_text())
    assert {r["category_id"] for r in records} <= set(KNOWN_91.values())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "annotations" / "instances_val2017.json"))
        ev = COCOeval(gt, gt.loadRes(str(path)), "bbox")
        ev.params.imgIds = extras["image_ids"]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0) and ev.stats[1] == pytest.approx(1.0)
    with pytest.raises(FileExistsError):
        postprocess.write_predictions(path, records)


def test_compute_ap_by_hand():
    # perfect: envelope 1 on [0, 1], but np.interp at r = 1 takes the appended 0 -> last trapezoid is
    # (1 + 0) / 2 * 0.01: AP = 0.99 + 0.005 = 0.995 (YOLOv5's well-known ceiling)
    assert metrics.compute_ap(np.array([1.0]), np.array([1.0])) == pytest.approx(0.995)
    # recall 0.5 at precision 1, then 1.0 at 0.5: 0.5 + 0.5 * (1 + 0.5) / 2 - 0.01 * 0.5 / 2 = 0.8725
    assert metrics.compute_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.8725)


def test_match_follows_yolov5_v6():
    gt = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    labels = torch.tensor([0, 1])
    det = torch.tensor([[0, 0, 10, 8.2, 0.9, 0],     # IoU 0.82 with gt 0
                        [0, 0, 10, 10, 0.85, 1],     # wrong class
                        [21.2, 20, 30, 30, 0.8, 1],  # IoU 0.88 with gt 1
                        [0, 0, 10, 10, 0.7, 0]])     # IoU 1 with gt 0
    correct = metrics.match(det, gt, labels)
    # YOLOv5 v6.0: after keeping each detection's best pair the pairs are in detection order, so gt 0 keeps its
    # pair with the lowest detection index (d0, IoU 0.82), not the best one (d3)
    assert correct[0].tolist() == [True] * 7 + [False] * 3  # 0.5 ... 0.8
    assert not correct[1].any() and not correct[3].any()
    assert correct[2].tolist() == [True] * 8 + [False] * 2  # 0.5 ... 0.85


def test_yolo_ap_evaluator_on_ground_truth(root, monkeypatch):
    dets, targets, extras = _ground_truth_detections(root)
    monkeypatch.setattr(postprocess, "detections", lambda *a, **k: dets)
    ev = metrics.YoloAP(torch.zeros(2, 3, 2), (16, 32))
    ev.update(None, targets, extras)
    result = ev.compute()
    assert result["AP50"] == pytest.approx(0.995) and result["AP"] == pytest.approx(0.995)
    assert result["fitness"] == pytest.approx(0.1 * 0.995 + 0.9 * 0.995)
    assert result["P"] == pytest.approx(1.0) and result["R"] == pytest.approx(1.0)
    assert ev.best_metric == "fitness"
