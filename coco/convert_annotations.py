"""Convert official COCO detection annotations (``instances_<split>.json``) to the label layout the loader reads.

    python coco/convert_annotations.py ROOT/annotations/instances_val2017.json [--root ROOT]

writes ``ROOT/labels/<split>/<image stem>.txt`` (rows ``cls cx cy w h`` normalised, cls = the 0..79 index of the
category id) for every image with annotations and ``ROOT/<split>.txt`` listing ``./images/<split>/<file_name>`` for
every image of the JSON (images without objects included). ``ROOT`` defaults to the folder above ``annotations/``.
Crowd annotations (``iscrowd = 1``) and boxes without area are skipped; boxes are clipped to the image first.
Existing label files or list files are never overwritten (the command stops and names the first one).
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from coco.classes import COCO91_TO_80
from common.errors import DataError, UsageError


def yolo_row(bbox, width: float, height: float, cls: int) -> str | None:
    """``cls cx cy w h`` for a COCO ``[x, y, w, h]`` box clipped to the image; None when nothing is left."""
    x0, y0 = max(bbox[0], 0.0), max(bbox[1], 0.0)
    x1, y1 = min(bbox[0] + bbox[2], width), min(bbox[1] + bbox[3], height)
    if x1 <= x0 or y1 <= y0:
        return None
    return (f"{cls} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
            f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")


def load_instances(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict) or not {"images", "annotations"} <= set(data):
        raise DataError(f"{path}: not a COCO instances file (needs 'images' and 'annotations')")
    return data


def label_rows(data: dict, path: Path) -> dict[int, list[str]]:
    """Image id -> label rows."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    rows: dict[int, list[str]] = defaultdict(list)
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        if ann["category_id"] not in COCO91_TO_80:
            raise DataError(f"{path}: annotation {ann.get('id')} has category_id {ann['category_id']}, "
                            "not one of the 80 COCO detection categories")
        if ann["image_id"] not in sizes:
            raise DataError(f"{path}: annotation {ann.get('id')} refers to unknown image_id {ann['image_id']}")
        row = yolo_row(ann["bbox"], *sizes[ann["image_id"]], COCO91_TO_80[ann["category_id"]])
        if row is not None:
            rows[ann["image_id"]].append(row)
    return rows


def convert(json_path: Path, root: Path, split: str) -> tuple[Path, int]:
    """Write the label files and the list; returns the list path and the number of label files."""
    data = load_instances(json_path)
    rows = label_rows(data, json_path)
    label_dir, list_path = root / "labels" / split, root / f"{split}.txt"
    targets = [label_dir / (Path(img["file_name"]).stem + ".txt") for img in data["images"] if img["id"] in rows]
    for existing in [list_path, *targets]:
        if existing.exists():
            raise UsageError(f"{existing} already exists; move it away to convert again")
    label_dir.mkdir(parents=True, exist_ok=True)
    for img in data["images"]:
        if img["id"] in rows:
            (label_dir / (Path(img["file_name"]).stem + ".txt")).write_text("\n".join(rows[img["id"]]) + "\n")
    list_path.write_text("".join(f"./images/{split}/{img['file_name']}\n" for img in data["images"]))
    return list_path, len(targets)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", type=Path, help="official annotations, e.g. ROOT/annotations/instances_val2017.json")
    p.add_argument("--root", type=Path, default=None, help="dataset root (default: the folder above annotations/)")
    p.add_argument("--split", default=None, help="split name (default: from the file name instances_<split>.json)")
    args = p.parse_args(argv)
    match = re.fullmatch(r"instances_(.+)\.json", args.json.name)
    split = args.split or (match.group(1) if match else None)
    if split is None:
        raise UsageError(f"cannot tell the split from {args.json.name}; pass --split (e.g. val2017)")
    root = args.root or args.json.resolve().parent.parent
    list_path, n = convert(args.json, root, split)
    print(f"wrote {n} label files under {root / 'labels' / split} and the list {list_path}")


if __name__ == "__main__":
    from common.cli import main_guard

    main_guard(main)
