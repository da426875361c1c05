"""Augmentation geometry, rectangular validation batches, letterbox round trip and collation.

The fake images are dark (< 40) with every labelled box painted bright (>= 200), so "the box covers bright pixels"
checks a transformed box against the transformed image content (an independent reference)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from coco import augment, data, postprocess
from coco.augment import Hyp
from tests.coco.fake_coco import write_fake_coco

NO_COLOUR = dict(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fake_coco(tmp_path_factory.mktemp("data"), n_train=8, n_val=6)


def _assert_boxes_on_bright_pixels(image: torch.Tensor, boxes: torch.Tensor) -> None:
    gray = image.float().mean(0)
    for x1, y1, x2, y2 in boxes[:, 1:].tolist():
        inner = gray[int(y1) + 2:int(y2) - 1, int(x1) + 2:int(x2) - 1]  # 2 px margin: resampling blurs the edge
        if inner.numel():
            assert inner.mean() > 150, (x1, y1, x2, y2, inner.mean())


def test_mosaic_samples_are_square_with_boxes_inside_on_the_content(root):
    torch.manual_seed(0)
    ds = data.COCODetection(root / "train2017.txt", 160, augment=True, hyp=Hyp(**NO_COLOUR), workers=1)
    n_boxes = 0
    for i in range(len(ds)):
        image, boxes, info = ds[i]
        assert image.shape == (3, 160, 160) and image.dtype == torch.uint8
        assert (boxes[:, 1:] >= 0).all() and (boxes[:, [1, 3]] <= 160).all() and (boxes[:, [2, 4]] <= 160).all()
        w, h = boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]
        assert ((w > 2) & (h > 2)).all()  # the YOLO candidate filter
        _assert_boxes_on_bright_pixels(image, boxes)
        n_boxes += len(boxes)
    assert n_boxes > 0


def test_mosaic_canvas_places_four_images_around_the_centre():
    rng = np.random.default_rng(3)
    images = [np.full((h, w, 3), 10 * (k + 1), np.uint8) for k, (h, w) in enumerate([(40, 60), (64, 30), (20, 64),
                                                                                      (64, 64)])]
    full = np.array([[0, 0.5, 0.5, 1.0, 1.0]], np.float32)  # one box = the whole image
    canvas, boxes = augment.mosaic_canvas(images, [full] * 4, 64, np.random.default_rng(3))
    yc, xc = (int(rng.uniform(32, 96)) for _ in range(2))
    assert canvas.shape == (128, 128, 3)
    assert canvas[yc - 1, xc - 1, 0] == 10 and canvas[yc - 1, xc, 0] == 20
    assert canvas[yc, xc - 1, 0] == 30 and canvas[yc, xc, 0] == 40
    # image 0 (40 x 60) ends at the centre: its box is (xc - 60, yc - 40, xc, yc), clipped to the canvas
    np.testing.assert_allclose(boxes[0, 1:], [max(xc - 60, 0), max(yc - 40, 0), xc, yc])
    np.testing.assert_allclose(boxes[3, 1:], [xc, yc, min(xc + 64, 128), min(yc + 64, 128)])


def test_box_candidates_by_hand():
    before = np.array([[0, 0, 20, 20], [0, 0, 20, 20], [0, 0, 50, 50]], np.float64).T
    after = np.array([[0, 0, 2.5, 10], [0, 0, 10, 10], [0, 0, 45, 1.5]], np.float64).T
    # 1: w = 2.5 > 2, area 25/400 < 0.1 -> drop; 2: area 100/400 = 0.25 -> keep; 3: h = 1.5 -> drop
    assert augment.box_candidates(before, after).tolist() == [False, True, False]


def test_hsv_value_gain_scales_the_brightest_channel():
    rng_img = np.random.default_rng(0)
    im = rng_img.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    before = im.max(-1).astype(float)
    augment.augment_hsv(im, np.random.default_rng(7), 0.0, 0.0, 0.4)
    gain = np.random.default_rng(7).uniform(-1, 1, 3)[2] * 0.4 + 1  # the third draw is the value gain
    np.testing.assert_allclose(im.max(-1), np.clip(np.floor(before * gain), 0, 255), atol=1)


def test_random_affine_moves_boxes_with_the_content():
    im = np.full((100, 120, 3), 20, np.uint8)
    im[30:60, 40:90] = 230
    labels = np.array([[5, 40, 30, 90, 60]], np.float32)
    out, boxes = augment.random_affine(im, labels, np.random.default_rng(1), translate=0.1, scale=0.5, border=0)
    ys, xs = np.nonzero(out[..., 0] > 125)
    np.testing.assert_allclose(boxes[0, 1:], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.5)


def test_flip_and_no_mosaic_path_keep_boxes_on_content(root):
    torch.manual_seed(1)
    ds = data.COCODetection(root / "train2017.txt", 160, augment=True, workers=1,
                            hyp=Hyp(mosaic=0.0, translate=0.0, scale=0.0, fliplr=1.0, **NO_COLOUR))
    for i in range(4):
        image, boxes, _ = ds[i]
        _assert_boxes_on_bright_pixels(image, boxes)
    # the flipped image's boxes are the mirror of the unflipped ones
    plain = data.COCODetection(root / "train2017.txt", 160, augment=True, workers=1,
                               hyp=Hyp(mosaic=0.0, translate=0.0, scale=0.0, fliplr=0.0, **NO_COLOUR))
    (im_f, b_f, _), (im_p, b_p, _) = ds[0], plain[0]
    np.testing.assert_allclose(b_f[:, 1], 160 - b_p[:, 3], atol=1e-2)
    assert torch.equal(im_f, im_p.flip(-1))


def test_rect_batches_are_multiples_of_32_sorted_by_aspect_ratio(root):
    ds = data.COCODetection(root / "val2017.txt", 160, rect=True, batch_size=2, workers=1)
    ar = ds.shapes[:, 0] / ds.shapes[:, 1]
    assert (np.diff(ar) >= 0).all()
    assert (ds.batch_shapes % 32 == 0).all()
    # by hand: batch 0 = 64x200 and 96x160 (h/w 0.32, 0.6) -> (0.6, 1) * 160 / 32 + 0.5 -> ceil (3.5, 5.5) = (4, 6)
    assert ds.batch_shapes[0].tolist() == [128, 192]
    assert ds.batch_shapes[-1].tolist() == [192, 128]  # two 144x80 portraits: (1, 80/144)
    for i in range(len(ds)):
        image, _, _ = ds[i]
        assert tuple(image.shape[1:]) == ds.target_shape(i)


@pytest.mark.parametrize("img_size", [96, 160])
def test_letterbox_and_scale_back_round_trip(root, img_size):
    ds = data.COCODetection(root / "val2017.txt", img_size, rect=True, batch_size=3, workers=1)
    inst = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    images, targets, extras = data.collate([ds[i] for i in range(len(ds))])
    assert images.dtype == torch.float32 and images.shape[:2] == (len(ds), 3) and 0 <= images.min() <= images.max() <= 1
    for k, target in enumerate(targets):
        img_id = extras["image_ids"][k]
        meta = next(m for m in inst["images"] if m["id"] == img_id)
        assert extras["orig_shapes"][k].tolist() == [meta["height"], meta["width"]]
        back = postprocess.scale_boxes(target["boxes"], extras["ratios"][k], extras["pads"][k],
                                       extras["orig_shapes"][k])
        xywh = torch.tensor([a["bbox"] for a in inst["annotations"] if a["image_id"] == img_id])
        expected = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        order = lambda b: b[torch.argsort(b[:, 0] * 1e4 + b[:, 1])]  # noqa: E731
        torch.testing.assert_close(order(back), order(expected), atol=1e-3, rtol=0)


def test_collate_pads_mixed_shapes_and_keeps_targets():
    a = (torch.zeros(3, 64, 96, dtype=torch.uint8), torch.tensor([[2, 1.0, 2.0, 3.0, 4.0]]),
         dict(image_id=5, orig_shape=(64, 96), ratio=(1.0, 1.0), pad=(0.0, 0.0), path="a/5.jpg"))
    b = (torch.full((3, 96, 64), 255, dtype=torch.uint8), torch.zeros(0, 5),
         dict(image_id="x", orig_shape=(96, 64), ratio=(0.5, 0.5), pad=(1.0, 2.0), path="a/x.jpg"))
    images, targets, extras = data.collate([a, b])
    assert images.shape == (2, 3, 96, 96)
    assert images[0, 0, 80, 0] == pytest.approx(114 / 255) and images[1, 0, 0, 0] == 1.0
    assert targets[0]["labels"].tolist() == [2] and targets[0]["boxes"].tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert targets[1]["boxes"].shape == (0, 4) and targets[1]["labels"].dtype == torch.long
    assert extras["image_ids"] == [5, "x"] and extras["pads"][1].tolist() == [1.0, 2.0]


def test_image_id_is_the_integer_stem():
    assert data.image_id("/a/images/val2017/000000000139.jpg") == 139
    assert data.image_id("/a/b/cat.jpg") == "cat"


def test_img_size_must_be_a_multiple_of_32(root):
    with pytest.raises(ValueError, match="multiple of 32"):
        data.COCODetection(root / "val2017.txt", 100)
