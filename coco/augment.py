"""YOLOv5 v6.0 image geometry and augmentation on ``HxWx3`` uint8 BGR arrays with boxes ``[n, 5]`` = ``cls x1 y1 x2
y2`` in pixels. Randomness comes from a ``numpy.random.Generator`` passed in (seeded from torch per sample, so every
DataLoader worker draws different numbers)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # grey of the letterbox border and the mosaic background


@dataclass(frozen=True)
class Hyp:
    """The augmentation part of the survey's ``hyp.scratch.yaml`` (rotation, shear, perspective, up-down flip,
    mixup and copy-paste are 0 there and not implemented)."""

    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    translate: float = 0.1
    scale: float = 0.5
    fliplr: float = 0.5
    mosaic: float = 1.0


def load_resized(path: str, img_size: int, augment: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """The BGR image resized so that its longer side is ``img_size`` (area interpolation when shrinking for
    evaluation, bilinear otherwise) and its original ``(h0, w0)``."""
    im = cv2.imread(path)
    if im is None:
        raise OSError(f"{path}: OpenCV cannot read this image")
    h0, w0 = im.shape[:2]
    r = img_size / max(h0, w0)
    if r != 1:
        interp = cv2.INTER_AREA if r < 1 and not augment else cv2.INTER_LINEAR
        im = cv2.resize(im, (int(w0 * r), int(h0 * r)), interpolation=interp)
    return im, (h0, w0)


def letterbox(im: np.ndarray, new_shape: tuple[int, int], scaleup: bool = True
              ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio, ``r = min(H/h, W/w)`` (at most 1 unless ``scaleup``), and pad centrally with
    grey to ``new_shape = (H, W)``. Returns the image, ``r`` and the padding ``(pad_w, pad_h)`` added on the
    left/top (half of the total; the right/bottom get the rest): ``x' = r x + pad_w``, ``y' = r y + pad_h``."""
    h, w = im.shape[:2]
    r = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (new_shape[1] - new_w) / 2, (new_shape[0] - new_h) / 2
    if (w, h) != (new_w, new_h):
        im = cv2.resize(im, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return im, r, (dw, dh)


def xywhn_to_xyxy(labels: np.ndarray, w: float, h: float, padw: float = 0.0, padh: float = 0.0) -> np.ndarray:
    """Rows ``cls cx cy w h`` (normalised) -> ``cls x1 y1 x2 y2`` in pixels of a ``w x h`` image shifted by the pad."""
    out = labels.astype(np.float32, copy=True)
    out[:, 1] = w * (labels[:, 1] - labels[:, 3] / 2) + padw
    out[:, 2] = h * (labels[:, 2] - labels[:, 4] / 2) + padh
    out[:, 3] = w * (labels[:, 1] + labels[:, 3] / 2) + padw
    out[:, 4] = h * (labels[:, 2] + labels[:, 4] / 2) + padh
    return out


def box_candidates(box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 20, area_thr: float = 0.1,
                   eps: float = 1e-16) -> np.ndarray:
    """Keep a box (``[4, n]`` xyxy before/after augmentation) if it is wider and taller than ``wh_thr`` px, keeps more
    than ``area_thr`` of its (scaled) area and has an aspect ratio below ``ar_thr``."""
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def random_affine(im: np.ndarray, labels: np.ndarray, rng: np.random.Generator, translate: float, scale: float,
                  border: int) -> tuple[np.ndarray, np.ndarray]:
    """``random_perspective`` with degrees = shear = perspective = 0: about the image centre, scale by
    ``s ~ U(1 - scale, 1 + scale)``, then move the centre to ``(U(0.5 - t, 0.5 + t) W, U(0.5 - t, 0.5 + t) H)`` of the
    output, which is the input cropped by ``border`` on every side; boxes are transformed, clipped and filtered
    (:func:`box_candidates`)."""
    height, width = im.shape[0] - 2 * border, im.shape[1] - 2 * border
    s = rng.uniform(1 - scale, 1 + scale)
    tx = rng.uniform(0.5 - translate, 0.5 + translate) * width
    ty = rng.uniform(0.5 - translate, 0.5 + translate) * height
    M = np.array([[s, 0, tx - s * im.shape[1] / 2], [0, s, ty - s * im.shape[0] / 2]], dtype=np.float64)
    im = cv2.warpAffine(im, M, dsize=(width, height), borderValue=(PAD_VALUE,) * 3)
    if len(labels):
        new = labels[:, 1:5] * s + np.array([M[0, 2], M[1, 2]] * 2)  # axis-aligned: corners map to corners
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        keep = box_candidates(labels[:, 1:5].T * s, new.T)
        labels = labels[keep]
        labels[:, 1:5] = new[keep]
    return im, labels


def augment_hsv(im: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> None:
    """In place: OpenCV HSV (hue 0..179) with ``h' = h g_h mod 180``, ``s' = clip(s g_s)``, ``v' = clip(v g_v)``,
    gains ``g = 1 + U(-1, 1) * gain``, through look-up tables."""
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=im)


def mosaic_canvas(images: list[np.ndarray], labels: list[np.ndarray], size: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Paste 4 images (longer side ``size``) around a centre ``(xc, yc) ~ U(size/2, 3 size/2)^2`` of a grey
    ``2size x 2size`` canvas (top-left, top-right, bottom-left, bottom-right, each touching the centre and cropped
    by the canvas); ``labels[k]`` are normalised rows of image k. Returns the canvas and pixel xyxy labels clipped to
    it."""
    s2 = 2 * size
    yc, xc = (int(rng.uniform(size / 2, s2 - size / 2)) for _ in range(2))
    canvas = np.full((s2, s2, 3), PAD_VALUE, dtype=np.uint8)
    out = []
    for k, (im, lab) in enumerate(zip(images, labels)):
        h, w = im.shape[:2]
        x1a, x2a = (max(xc - w, 0), xc) if k in (0, 2) else (xc, min(xc + w, s2))
        y1a, y2a = (max(yc - h, 0), yc) if k in (0, 1) else (yc, min(yc + h, s2))
        x1b = w - (x2a - x1a) if k in (0, 2) else 0
        y1b = h - (y2a - y1a) if k in (0, 1) else 0
        canvas[y1a:y2a, x1a:x2a] = im[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
        out.append(xywhn_to_xyxy(lab, w, h, x1a - x1b, y1a - y1b))
    boxes = np.concatenate(out, 0)
    boxes[:, 1:] = boxes[:, 1:].clip(0, s2)
    return canvas, boxes
