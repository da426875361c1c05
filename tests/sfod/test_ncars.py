import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import DataError
from SFOD import ncars
from tests.sfod.fake_prophesee import write_dat, write_ncars


def test_layout_classes_and_shapes(tmp_path):
    root = write_ncars(tmp_path, n_per_class=2)
    ds = ncars.NCarsDataset(root, "train")
    assert ds.classes == ["background", "cars"] and len(ds) == 4
    assert [label for _, label in ds.files] == [0, 0, 1, 1]
    x, y = ds[3]
    assert x.shape == (5, 4, 64, 64) and y == 1
    inputs, labels = ncars.collate([ds[0], ds[3]])
    assert inputs.shape == (5, 2, 4, 64, 64) and labels.tolist() == [0, 1]


def test_first_100ms_encoded_and_resized_nearest(tmp_path):
    t = np.array([0, 5_000, 12_000, 45_000, 99_999, 100_000, 130_000])
    x = np.array([0, 9, 3, 4, 19, 5, 6])
    y = np.array([0, 1, 2, 3, 7, 4, 4])
    p = np.array([1, 0, 1, 1, 0, 1, 1])
    write_dat(tmp_path / "train" / "cars" / "a.dat", t, x, y, p, header=None)
    sample, _ = ncars.NCarsDataset(tmp_path, "train")[0]
    # by hand: frame 8 x 20 (max y + 1, max x + 1); 2nd micro-bins occur (12 ms, 99.999 ms) -> offset 2
    # (t, step, mb, p, channel): (0,0,0,1,2) (5,0,0,0,1) (12,0,1,1,3) (45,2,0,1,2) (99.999,4,1,0,0)
    ref = torch.zeros(5, 4, 8, 20)
    for step, ch, yy, xx in [(0, 2, 0, 0), (0, 1, 1, 9), (0, 3, 2, 3), (2, 2, 3, 4), (4, 0, 7, 19)]:
        ref[step, ch, yy, xx] += 1
    torch.testing.assert_close(sample, F.interpolate(ref, size=(64, 64), mode="nearest"))


def test_empty_class_folders(tmp_path):
    (tmp_path / "test" / "cars").mkdir(parents=True)
    with pytest.raises(DataError, match="no .dat files"):
        ncars.NCarsDataset(tmp_path, "test")
    (tmp_path / "test" / "cars" / "x.dat").write_bytes(b"% a\n\x00\x08")
    with pytest.raises(DataError, match="header only"):
        ncars.NCarsDataset(tmp_path, "test")
