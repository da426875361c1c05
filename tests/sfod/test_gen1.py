import os
import random

import numpy as np
import pytest
import torch

from common.errors import DataError
from SFOD import encoding, gen1
from SFOD.prophesee import EVENT
from tests.sfod.fake_prophesee import synthetic_gen1, write_boxes, write_dat, write_recording

P = gen1.Gen1Params()


def _ev(rows):
    """rows of (t, x, y, p) -> structured events."""
    out = np.zeros(len(rows), dtype=EVENT)
    for i, row in enumerate(rows):
        out[i] = row
    return out


def test_channel_encoding_by_hand():
    # t relative to the first event: 0, 5 ms, 15 ms (2nd micro-bin), 25 ms (step 1) -> offset max(mb) + 1 = 2
    ev = _ev([(1000, 1, 2, 0), (6000, 3, 4, 1), (16000, 5, 6, 0), (26000, 7, 8, 1)])
    idx = encoding.cell_index(ev, 5, 2, 100_000, 240, 304)
    step, rest = np.divmod(idx, 4 * 240 * 304)
    channel = rest // (240 * 304)
    assert step.tolist() == [0, 0, 0, 1]
    # neg/1st -> 1, pos/1st -> 2, neg/2nd -> 0, pos/1st -> 2
    assert channel.tolist() == [1, 2, 0, 2]
    assert (rest % (240 * 304)).tolist() == [2 * 304 + 1, 4 * 304 + 3, 6 * 304 + 5, 8 * 304 + 7]


def test_channel_offset_quirk_without_second_micro_bin():
    ev = _ev([(0, 0, 0, 0), (3000, 0, 0, 1), (21000, 0, 0, 1)])  # all in a 1st micro-bin -> offset 1
    idx = encoding.cell_index(ev, 5, 2, 100_000, 240, 304)
    assert (idx // (240 * 304) % 4).tolist() == [0, 1, 1]


def test_targets_last_box_per_track_clamped():
    rows = [(5, 10, 10, 20, 20, 0, 3), (5, 300, 200, 10, 50, 1, 8), (5, 12, 12, 22, 22, 0, 3),
            (5, 50, 50, 0, 10, 0, 4), (5, -4, 30, 10, 10, 1, 1)]
    arr = np.zeros(len(rows), dtype=[("t", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"),
                                     ("class_id", "u1"), ("track_id", "<u4")])
    for i, r in enumerate(rows):
        arr[i] = r
    boxes, labels = gen1.build_targets(arr, 240, 304)
    # descending track id 8, 4 (zero width: dropped), 3 (last instance), 1 (x clamped to 0)
    np.testing.assert_allclose(boxes, [[300, 200, 304, 240], [12, 12, 34, 34], [0, 30, 6, 40]])
    assert labels.tolist() == [1, 0, 1]


def _tiny_recording(folder):
    t = np.array([20_000, 60_000, 130_000, 150_000, 199_999, 200_000, 450_000])
    x = np.array([1, 2, 3, 4, 5, 6, 7])
    write_dat(folder / "rec_td.dat", t, x, x, np.ones(7, int))
    rows = [(50_000, 0, 0, 10, 10, 0, 1),      # ts < 100 ms -> window [0, 100 ms): events at 20 and 60 ms
            (200_000, 0, 0, 10, 10, 1, 2),     # [100, 200) ms: 130, 150, 199.999 ms
            (200_000, 0, 0, 10, 10, 0, 1),
            (300_000, 0, 0, 0, 10, 0, 1),      # zero-width only -> dropped
            (400_000, 0, 0, 10, 10, 0, 1)]     # no events in [300, 400) ms -> dropped
    write_boxes(folder / "rec_bbox.npy", rows)


def test_samples_windows_and_drops(tmp_path):
    _tiny_recording(tmp_path / "data" / "test")
    ds = gen1.load_split(tmp_path / "data", "test", tmp_path / "cache", progress=False)
    assert len(ds) == 2
    x0, t0, _ = ds[0]
    x1, t1, _ = ds[1]
    assert x0.shape == (5, 4, 240, 304) and x0.dtype == torch.float32
    assert x0.sum() == 2 and x1.sum() == 3
    assert t1["labels"].tolist() == [1, 0]  # descending track id
    # window 2: t - t0 = 0, 20, 69.999 ms -> steps 0, 1, 3, all in a 1st micro-bin (69.999 = 3 * 20 + 9.999), so
    # the offset is 1 and the positive events land in channel 1
    assert x1.nonzero().tolist() == [[0, 1, 3, 3], [1, 1, 4, 4], [3, 1, 5, 5]]


def test_cache_reused_rebuilt_and_keyed(tmp_path):
    root = synthetic_gen1(tmp_path / "d", n_recordings=2, splits=("val",))
    a = gen1.load_split(root, "val", tmp_path / "c", progress=False)
    folder = tmp_path / "c" / f"gen1_val_{P.tag()}"
    meta = folder / "val_rec0.meta.npz"
    stamp = meta.stat().st_mtime_ns
    b = gen1.load_split(root, "val", tmp_path / "c", progress=False)
    assert meta.stat().st_mtime_ns == stamp and len(a) == len(b) > 0
    torch.testing.assert_close(a[3][0], b[3][0])
    meta.write_bytes(b"garbage")  # corrupt -> rebuilt
    c = gen1.load_split(root, "val", tmp_path / "c", progress=False)
    torch.testing.assert_close(a[3][0], c[3][0])
    os.utime(root / "val" / "val_rec1_td.dat", ns=(1, 1))  # source changed -> rebuilt
    gen1.load_split(root, "val", tmp_path / "c", progress=False)
    assert (folder / "val_rec1.meta.npz").stat().st_mtime_ns != stamp
    gen1.load_split(root, "val", tmp_path / "c", gen1.Gen1Params(T=4), progress=False)
    assert (tmp_path / "c" / f"gen1_val_{gen1.Gen1Params(T=4).tag()}").is_dir()


def test_parallel_equals_serial_and_train_abc(tmp_path):
    root = synthetic_gen1(tmp_path / "d", n_recordings=2, splits=("train_a", "train_b"))
    serial = gen1.load_split(root, "train", tmp_path / "c1", progress=False)
    parallel = gen1.load_split(root, "train", tmp_path / "c2", workers=2, progress=False)
    assert len(serial) == len(parallel) == 4 * 5
    torch.testing.assert_close(serial[7][0], parallel[7][0])


def test_bad_inputs_write_nothing(tmp_path):
    (tmp_path / "d" / "test").mkdir(parents=True)
    with pytest.raises(DataError, match="no Gen1 recordings"):
        gen1.load_split(tmp_path / "d", "test", tmp_path / "c", progress=False)
    write_recording(tmp_path / "d" / "test", "r", ([1, 2], [1, 1], [1, 1], [0, 1]), [(1, 0, 0, 5, 5, 0, 1)])
    (tmp_path / "d" / "test" / "r_td.dat").write_bytes(b"% Height 240\n\x00\x08\x01\x02\x03")
    with pytest.raises(DataError, match="r_td.dat: truncated"):
        gen1.load_split(tmp_path / "d", "test", tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(FileNotFoundError):
        gen1.load_split(tmp_path / "d", "val", tmp_path / "c", progress=False)


def test_train_collate_flip_and_pedestrian_duplication():
    x = torch.zeros(5, 4, 240, 304)
    x[0, 1, 10, 0] = 1
    car = {"boxes": torch.tensor([[0.0, 0, 30, 40]]), "labels": torch.tensor([0])}
    ped = {"boxes": torch.tensor([[10.0, 5, 20, 50]]), "labels": torch.tensor([1])}
    inputs, targets, extras = gen1.TrainCollate(flip_p=1.0)([(x, car, 0), (x, ped, 1)])
    assert inputs.shape == (5, 3, 4, 240, 304)
    assert extras["index"].tolist() == [0, 1, 1]
    assert inputs[0, :, 1, 10, 303].tolist() == [1, 1, 1] and inputs.sum() == 3
    assert targets[0]["boxes"].tolist() == [[274, 0, 304, 40]]
    assert targets[2]["boxes"].tolist() == [[284, 5, 294, 50]]
    random.seed(0)
    _, targets, _ = gen1.TrainCollate()([(x, car, 0)] * 64)
    flipped = sum(t["boxes"][0, 0].item() == 274 for t in targets)
    assert 16 < flipped < 48
    inputs, targets, _ = gen1.collate([(x, car, 0), (x, ped, 1)])
    assert inputs.shape == (5, 2, 4, 240, 304) and targets[1] is ped
