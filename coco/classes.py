"""The 80 COCO detection classes and the map from contiguous ids (0..79, label files) to the official category ids
(1..90 with gaps, "91-style", used by ``instances_*.json`` and pycocotools)."""
from __future__ import annotations

NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
NUM_CLASSES = len(NAMES)

# The ten ids of the 2014 paper's 91-category list that have no detection annotations.
_UNUSED_IDS = frozenset({12, 26, 29, 30, 45, 66, 68, 69, 71, 83})

# COCO80_TO_91[c] = category id of contiguous class c (ascending, skipping the unused ids).
COCO80_TO_91 = tuple(i for i in range(1, 91) if i not in _UNUSED_IDS)
COCO91_TO_80 = {cat: c for c, cat in enumerate(COCO80_TO_91)}
