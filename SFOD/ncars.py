r"""N-CARS classification (backbone pre-training): ``ROOT/{train,test}/<class>/*.dat`` -> ``[T, 4, 64, 64]`` counts.

Classes are the sub-folder names in sorted order (``background`` = 0, ``cars`` = 1). A sample is the first 100 ms of
its file (``load_delta_t(100 ms)`` from time 0), encoded as in Gen1 (``SFOD.encoding``) on a frame of
``(max y + 1) x (max x + 1)`` pixels (the survey infers the size from the largest coordinate of the window) and
resized to 64 x 64 with nearest-neighbour interpolation. The files are small, so samples are built on the fly from
the memory-mapped files (no cache). Every file's header and size are checked when the split is opened.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from common.errors import DataError
from SFOD import encoding
from SFOD.prophesee import DatFile, check_layout

SPLITS = ("train", "test")


@dataclass(frozen=True)
class NCarsParams(encoding.WindowParams):
    size: int = 64


def find_files(root, split: str) -> tuple[list[tuple[Path, int]], list[str]]:
    """(``[(file, label)]`` sorted, class names sorted) of one split."""
    if split not in SPLITS:
        raise ValueError(f"unknown N-CARS split '{split}'; valid: {', '.join(SPLITS)}")
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"N-CARS {split} folder not found: {folder}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(f, label) for label, name in enumerate(classes) for f in sorted((folder / name).glob("*.dat"))]
    if not files:
        raise DataError(f"{folder}: no .dat files in class folders")
    return files, classes


class NCarsDataset(Dataset):
    """Item ``i`` -> (counts float32 ``[T, 2 tbin, size, size]``, label)."""

    def __init__(self, root, split: str, params: NCarsParams = NCarsParams()):
        self.files, self.classes = find_files(root, split)
        self.params = params
        for path, _ in self.files:
            check_layout(path)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path, label = self.files[i]
        p = self.params
        events = DatFile(path).load_delta_t(p.window_us)
        height, width = int(events["y"].max()) + 1, int(events["x"].max()) + 1
        cells, counts = encoding.sparse_counts(events, p.T, p.tbin, p.window_us, height, width)
        x = torch.from_numpy(encoding.dense(cells, counts, p.T, p.tbin, height, width))
        x = TF.resize(x, [p.size, p.size], interpolation=InterpolationMode.NEAREST)
        return x, label


def collate(batch):
    """``[(x [T, C, H, W], label)]`` -> (inputs ``[T, N, C, H, W]``, labels ``[N]``)."""
    xs, labels = zip(*batch)
    return torch.stack(xs, 1), torch.tensor(labels, dtype=torch.int64)
