import json

import pytest
import torch

from common.coco_eval import STAT_KEYS, COCOEvaluator
from SFOD.detection import filter_boxes


def _targets():
    return [{"boxes": torch.tensor([[10.0, 10, 60, 50], [100, 100, 200, 220]]), "labels": torch.tensor([0, 1])},
            {"boxes": torch.tensor([[30.0, 40, 90, 120]]), "labels": torch.tensor([0])},
            {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]  # removed by filter_boxes


def _as_detections(targets):
    return [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))} for t in targets]


def test_ground_truth_as_detections_scores_one():
    ev = COCOEvaluator(image_size=(240, 304), box_filter=filter_boxes, class_names=("car", "pedestrian"))
    targets = _targets()
    ev.update(_as_detections(targets[:2]), targets[:2], {})
    ev.update(_as_detections(targets[2:]), targets[2:], {})
    stats = ev.compute()
    assert list(stats) == list(STAT_KEYS) and ev.best_metric == "AP"
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert stats["AR100"] == pytest.approx(1.0)


def test_postprocess_callable_misses_and_empty():
    shifted = lambda outputs, extras: [{**d, "boxes": d["boxes"] + 500} for d in outputs]  # noqa: E731
    ev = COCOEvaluator(shifted, image_size=(240, 304))
    targets = _targets()
    ev.update(_as_detections(targets), targets, {})
    assert ev.compute()["AP"] == pytest.approx(0.0)
    assert ev.compute() == dict.fromkeys(STAT_KEYS, 0.0)  # nothing seen since the last compute


def test_instances_json_with_category_map(tmp_path):
    ann = {"images": [{"id": 42, "height": 100, "width": 100}, {"id": 7, "height": 100, "width": 100}],
           "annotations": [{"id": 1, "image_id": 42, "bbox": [10, 10, 40, 30], "area": 1200, "category_id": 18,
                            "iscrowd": 0},
                           {"id": 2, "image_id": 7, "bbox": [5, 5, 50, 50], "area": 2500, "category_id": 3,
                            "iscrowd": 0}],
           "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(ann))
    ev = COCOEvaluator(annotations=path, category_ids=[3, 18])
    dets = [{"boxes": torch.tensor([[10.0, 10, 50, 40]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    ev.update(dets, None, {"image_id": torch.tensor([42])})
    stats = ev.compute()  # only image 42 is scored
    assert stats["AP"] == pytest.approx(1.0)


def test_gathers_images_of_every_rank(monkeypatch):
    """Two ranks: this one saw images 0-1, the other image 2 with a wrong detection -> AP over all three < 1."""
    import common.coco_eval as coco_eval

    other = COCOEvaluator(image_size=(240, 304))
    target = {"boxes": torch.tensor([[50.0, 50, 150, 150]]), "labels": torch.tensor([0])}
    miss = {"boxes": torch.tensor([[200.0, 100, 300, 200]]), "labels": torch.tensor([0]), "scores": torch.ones(1)}
    other.update([miss], [target], {})
    monkeypatch.setattr(coco_eval.distributed, "all_gather_object", lambda obj: [obj, other.images])
    ev = COCOEvaluator(image_size=(240, 304))
    targets = _targets()[:2]
    ev.update(_as_detections(targets), targets, {})
    stats = ev.compute()
    # cars: 2 of 3 found (the third image is the other rank's), pedestrians: 1 of 1 -> AR = (2/3 + 1) / 2
    assert stats["AR100"] == pytest.approx(5 / 6) and 0.5 < stats["AP"] < 1.0
