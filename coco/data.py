"""COCO detection datasets in the "coco2017labels" layout (:mod:`coco.labels`) and their batches.

Training (``augment=True``): 4-image mosaic (probability ``hyp.mosaic``) on a ``2 size`` canvas, random scale and
translation cropping back to ``size x size`` (:func:`coco.augment.random_affine`), HSV jitter, left-right flip.
Evaluation (``rect=True``): images sorted by aspect ratio; batch ``b`` (consecutive ``batch_size`` images) shares the
letterbox shape ``ceil(size * (h, w)_b / 32 + 0.5) * 32`` with ``(h, w)_b`` the batch's aspect ratio normalised to a
longer side of 1 -- every side a multiple of 32. Without augmentation the image is resized to a longer side of
``size`` and letterboxed (never up-scaled) into that shape.

A sample is ``(image uint8 [3, H, W] RGB, boxes [n, 5] = cls x1 y1 x2 y2 in pixels, info)``; :func:`collate` makes
``(images float [N, 3, H, W] in [0, 1], targets, extras)`` with ``targets[i] = {"boxes": [n, 4] xyxy pixels,
"labels": [n] class ids 0..79}`` and ``extras = {"image_ids", "orig_shapes" [N, 2] (h0, w0), "ratios" [N, 2]
(x, y: input px per original px; they differ slightly from integer resizing), "pads" [N, 2] (pad_w, pad_h),
"paths"}`` (mosaic samples: ratio 1, pad 0, the shape of their first image).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from coco import augment
from coco.augment import Hyp
from coco.cache import load_index

STRIDE = 32  # the network's largest stride: input sides must be multiples of it


def image_id(path: str) -> int | str:
    """COCO image id = the file stem as an integer (``000000000139.jpg -> 139``); non-numeric stems stay strings."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def rect_batch_shapes(shapes_hw: np.ndarray, batch_size: int, img_size: int, stride: int = STRIDE,
                      pad: float = 0.5) -> np.ndarray:
    """``[n_batches, 2]`` letterbox shapes (h, w) for images already sorted by ``h / w``."""
    ar = shapes_hw[:, 0] / shapes_hw[:, 1]
    n_batches = math.ceil(len(ar) / batch_size)
    rel = np.ones((n_batches, 2))
    for b in range(n_batches):
        ari = ar[b * batch_size:(b + 1) * batch_size]
        if ari.max() < 1:
            rel[b] = (ari.max(), 1)
        elif ari.min() > 1:
            rel[b] = (1, 1 / ari.min())
    return (np.ceil(rel * img_size / stride + pad).astype(np.int64) * stride).astype(np.int64)


class COCODetection(Dataset):
    """One split (``source`` = ``ROOT/val2017.txt`` or an image directory) as described in the module docstring."""

    def __init__(self, source, img_size: int = 640, *, augment: bool = False, rect: bool = False,
                 batch_size: int = 16, hyp: Hyp | None = None, nc: int = 80, workers: int = 8,
                 use_cache: bool = True):
        if img_size % STRIDE:
            raise ValueError(f"--img-size must be a multiple of {STRIDE}, got {img_size}")
        self.source, self.img_size, self.augment, self.hyp = str(source), img_size, augment, hyp or Hyp()
        index = load_index(source, nc, workers, use_cache)
        aspect = index.shapes[:, 0] / index.shapes[:, 1]
        order = np.argsort(aspect, kind="stable") if rect else np.arange(len(index.files))
        self.files = [index.files[i] for i in order]
        self.shapes = index.shapes[order]  # (h0, w0)
        self.labels = [index.labels[i] for i in order]
        self.batch_size = batch_size
        self.batch_shapes = rect_batch_shapes(self.shapes, batch_size, img_size) if rect else None

    def __len__(self) -> int:
        return len(self.files)

    def target_shape(self, index: int) -> tuple[int, int]:
        if self.batch_shapes is None:
            return self.img_size, self.img_size
        return tuple(int(v) for v in self.batch_shapes[index // self.batch_size])

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    def _mosaic(self, index: int, rng: np.random.Generator) -> np.ndarray | tuple:
        picks = [index, *rng.integers(0, len(self), 3)]
        rng.shuffle(picks)
        images = [augment.load_resized(self.files[i], self.img_size, True)[0] for i in picks]
        canvas, boxes = augment.mosaic_canvas(images, [self.labels[i] for i in picks], self.img_size, rng)
        return augment.random_affine(canvas, boxes, rng, self.hyp.translate, self.hyp.scale, self.img_size // 2)

    def _letterboxed(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        im, (h0, w0) = augment.load_resized(self.files[index], self.img_size, self.augment)
        h, w = im.shape[:2]
        im, r, (pw, ph) = augment.letterbox(im, self.target_shape(index), scaleup=self.augment)
        boxes = augment.xywhn_to_xyxy(self.labels[index], r * w, r * h, pw, ph)
        info = dict(orig_shape=(h0, w0), ratio=(r * w / w0, r * h / h0), pad=(pw, ph))
        return im, boxes, info

    def __getitem__(self, index: int):
        rng = self._rng() if self.augment else None
        if self.augment and rng.random() < self.hyp.mosaic:
            im, boxes = self._mosaic(index, rng)
            info = dict(orig_shape=tuple(int(v) for v in self.shapes[index]), ratio=(1.0, 1.0), pad=(0.0, 0.0))
        else:
            im, boxes, info = self._letterboxed(index)
            if self.augment:
                im, boxes = augment.random_affine(im, boxes, rng, self.hyp.translate, self.hyp.scale, 0)
        h, w = im.shape[:2]
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, w - 1e-3)  # YOLO's clip before xywhn (eps 1e-3)
        boxes[:, [2, 4]] = boxes[:, [2, 4]].clip(0, h - 1e-3)
        if self.augment:
            augment.augment_hsv(im, rng, self.hyp.hsv_h, self.hyp.hsv_s, self.hyp.hsv_v)
            if rng.random() < self.hyp.fliplr:
                im = np.ascontiguousarray(im[:, ::-1])
                boxes[:, [1, 3]] = w - boxes[:, [3, 1]]
        image = torch.from_numpy(np.ascontiguousarray(im[:, :, ::-1].transpose(2, 0, 1)))  # BGR HWC -> RGB CHW
        info.update(image_id=image_id(self.files[index]), path=self.files[index])
        return image, torch.from_numpy(boxes), info


def collate(batch) -> tuple[torch.Tensor, list[dict], dict]:
    """Stack a list of samples (padding with letterbox grey to the largest H and W of the batch, which only happens
    when a loader does not batch exactly as the rectangular shapes assume, e.g. a sharded evaluation)."""
    H = max(im.shape[1] for im, _, _ in batch)
    W = max(im.shape[2] for im, _, _ in batch)
    images = torch.full((len(batch), 3, H, W), augment.PAD_VALUE, dtype=torch.uint8)
    targets = []
    for k, (im, boxes, _) in enumerate(batch):
        images[k, :, :im.shape[1], :im.shape[2]] = im
        targets.append({"boxes": boxes[:, 1:5].float(), "labels": boxes[:, 0].long()})
    infos = [info for _, _, info in batch]
    extras = {
        "image_ids": [info["image_id"] for info in infos],
        "orig_shapes": torch.tensor([info["orig_shape"] for info in infos], dtype=torch.float64),
        "ratios": torch.tensor([info["ratio"] for info in infos], dtype=torch.float64),
        "pads": torch.tensor([info["pad"] for info in infos], dtype=torch.float64),
        "paths": [info["path"] for info in infos],
    }
    return images.float().div_(255.0), targets, extras
