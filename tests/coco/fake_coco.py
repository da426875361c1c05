"""A tiny COCO 2017 in the exact on-disk layout (ultralytics "coco2017labels" + official instances JSON).

    coco/images/{train2017,val2017}/<12-digit id>.jpg     random JPEGs of different aspect ratios
    coco/labels/{...}/<id>.txt                            rows "cls cx cy w h" (normalised)
    coco/{train2017,val2017}.txt                          "./images/<split>/<id>.jpg" lines
    coco/annotations/instances_{split}.json               images, annotations (absolute xywh, 91-style ids), categories

Boxes are painted as bright rectangles on a dark noisy background so a detector can learn something.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# (width, height) per image: landscape, portrait, square, very wide
SIZES = ((160, 96), (80, 144), (128, 128), (200, 64))
# Official ids of a few categories, written here independently of coco.classes: contiguous class -> category id.
KNOWN_91 = {0: 1, 11: 13, 24: 27, 79: 90}


def category_ids() -> list[int]:
    """The 80 official category ids (1..90 without the ten unused ones)."""
    return [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def _boxes(rng, w: int, h: int, n: int) -> list[tuple[int, float, float, float, float]]:
    """n boxes ``(cls, x, y, bw, bh)`` in pixels, at least 12 px wide/high, inside the image."""
    out = []
    for _ in range(n):
        bw, bh = rng.uniform(12, w * 0.6), rng.uniform(12, h * 0.6)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        out.append((int(rng.choice(list(KNOWN_91))), round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)))
    return out


def write_split(root: Path, split: str, n_images: int, first_id: int, seed: int) -> dict:
    """Write one split; returns the instances JSON dict."""
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    cats = category_ids()
    images, annotations, lines = [], [], []
    for k in range(n_images):
        w, h = SIZES[k % len(SIZES)]
        img_id = first_id + k
        name = f"{img_id:012d}.jpg"
        pixels = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        rows = []
        for cls, x, y, bw, bh in _boxes(rng, w, h, 1 + k % 3):
            pixels[int(y):int(y + bh), int(x):int(x + bw)] = 200 + 20 * (cls % 3)
            rows.append(f"{cls} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
            annotations.append(dict(id=len(annotations) + 1, image_id=img_id, category_id=cats[cls],
                                    bbox=[x, y, bw, bh], area=bw * bh, iscrowd=0))
        Image.fromarray(pixels).save(root / "images" / split / name, quality=95)
        (root / "labels" / split / f"{img_id:012d}.txt").write_text("\n".join(rows) + "\n")
        images.append(dict(id=img_id, width=w, height=h, file_name=name))
        lines.append(f"./images/{split}/{name}")
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    categories = [dict(id=c, name=f"class{c}", supercategory="x") for c in cats]
    instances = dict(images=images, annotations=annotations, categories=categories)
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(instances))
    return instances


def write_fake_coco(base: Path, n_train: int = 8, n_val: int = 6) -> Path:
    """``base/coco`` with both splits; returns the root."""
    root = Path(base) / "coco"
    write_split(root, "train2017", n_train, 1000, seed=0)
    write_split(root, "val2017", n_val, 139, seed=1)
    return root
