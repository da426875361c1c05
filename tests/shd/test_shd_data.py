"""SHD loader against a per-spike reference written from the spec (float16 arithmetic, last-frame rule)."""
import math

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from shd import data
from tests.shd.fake_shd import random_samples, write_fake_shd, write_file


def reference_frames(times, units, dt=10, n_bins=5):
    """Spec §1.2, one spike at a time: t_ms = 1000 t (float16), minus the first; T = ceil(t_last / dt);
    frame floor(t / dt), everything at index >= T-1 into the last frame; then sum groups of n_bins channels."""
    t_ms = [np.float16(1000) * np.float16(t) for t in times]
    rel = [t - t_ms[0] for t in t_ms]
    T = math.ceil(rel[-1] / np.float16(dt))
    frames = np.zeros((T, 700))
    for r, u in zip(rel, units):
        frames[min(int(r // np.float16(dt)), T - 1), int(u)] += 1
    width = 700 // n_bins
    return frames[:, :width * n_bins].reshape(T, width, n_bins).sum(axis=2)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("shd")
    return root, write_fake_shd(root, n_train=24, n_test=10, seed=3)


@pytest.mark.parametrize("split", data.SPLITS)
def test_frames_match_reference(fake, split):
    root, written = fake
    times, units, labels = written[split]
    ds = data.load_split(root, split)
    assert len(ds) == len(labels) and ds.channels == 140
    for i in range(len(ds)):
        x, y = ds[i]
        ref = reference_frames(times[i], units[i])
        t_ms = np.float16(1000) * times[i]
        assert len(x) == math.ceil((t_ms[-1] - t_ms[0]) / np.float16(10))
        assert x.dtype == torch.float32 and y == labels[i]
        assert float(x.sum()) == len(times[i])
        np.testing.assert_array_equal(x.numpy(), ref)


def test_float16_arithmetic_and_last_frame_rule():
    # 0.01 s is 0.0100021 in float16, 1000 * it rounds to exactly 10.0 ms in float16 -> ceil(1.0) = 1 frame
    # (float64 would give 2); 0.05 s -> exactly 50 ms -> 5 frames, and the spike at 50 ms (index floor(50/10) = 5)
    # goes into the last frame 4.
    times = [np.array([0.0, 0.01], np.float16), np.array([0.0, 0.03, 0.05], np.float16)]
    units = [np.array([0, 699], np.uint16), np.array([5, 9, 10], np.uint16)]
    frames, lengths = data.integrate_events(times, units)
    assert lengths.tolist() == [1, 5]
    np.testing.assert_array_equal(frames[0, [0, 139]], [1, 1])
    np.testing.assert_array_equal(frames[1:], np.concatenate([reference_frames(t, u) for t, u in
                                                              zip(times[1:], units[1:])]))
    assert frames[1 + 3, 1] == 1 and frames[1 + 4, 2] == 1


def test_extract_folder_and_n_bins(tmp_path):
    times, units, labels = random_samples(5, seed=1)
    write_file(tmp_path / "shd_test.h5", times, units, labels, labels_dtype=np.uint8)
    ds = data.load_split(tmp_path, "test", dt_ms=25, n_bins=3)
    assert ds.channels == 233
    for i in range(5):
        np.testing.assert_array_equal(ds[i][0].numpy(), reference_frames(times[i], units[i], dt=25, n_bins=3))


def test_cache_reused_and_keyed_by_parameters(fake, tmp_path):
    root, _ = fake
    a = data.load_split(root, "test", cache_dir=tmp_path)
    first = sorted(tmp_path.iterdir())
    assert len(first) == 1
    b = data.load_split(root, "test", cache_dir=tmp_path)
    np.testing.assert_array_equal(a.frames, b.frames)
    data.load_split(root, "test", dt_ms=20, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    # the cached content is what is read back: tamper with it and see it returned
    with np.load(first[0]) as z:
        np.savez(first[0], frames=z["frames"] * 0, lengths=z["lengths"], labels=z["labels"])
    assert data.load_split(root, "test", cache_dir=tmp_path).frames.sum() == 0


def test_collate_shapes_and_padding(fake):
    root, _ = fake
    ds = data.load_split(root, "train")
    x, y, lengths = next(iter(DataLoader(ds, batch_size=7, collate_fn=data.pad_collate)))
    assert x.shape == (int(ds.lengths[:7].max()), 7, 140) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and lengths.tolist() == ds.lengths[:7].tolist()
    for i in range(7):
        torch.testing.assert_close(x[:lengths[i], i], ds[i][0], rtol=0, atol=0)
        assert x[lengths[i]:, i].abs().sum() == 0
    x, _, _ = data.pad_collate([ds[0], ds[1]], pad_to=200)
    assert x.shape == (200, 2, 140)
    with pytest.raises(ValueError, match="fixed length"):
        data.pad_collate([ds[0]], pad_to=1)


def _malformed(path, case):
    times, units, labels = random_samples(4, seed=2)
    if case == "empty sample":
        times[2], units[2] = times[2][:0], units[2][:0]
    if case == "single instant":
        times[1] = np.full_like(times[1], 0.5)
    if case == "unaligned":
        units[3] = units[3][:-1]
    write_file(path, times, units, labels, times_dtype=np.int32 if case == "int times" else np.float16)
    if case == "missing units":
        with h5py.File(path, "a") as f:
            del f["spikes/units"]
    if case == "bad labels":
        with h5py.File(path, "a") as f:
            del f["labels"]
            f["labels"] = np.array([0, 1, 2, 25])


@pytest.mark.parametrize("case, message", [
    ("missing units", "missing dataset 'spikes/units'"),
    ("int times", "'spikes/times' should be 1-D variable-length float"),
    ("empty sample", "sample 2: no spikes"),
    ("single instant", "sample 1: all spikes at one instant"),
    ("unaligned", "sample 3: times and units differ"),
    ("bad labels", "labels must lie in 0..19"),
])
def test_malformed_file_raises_clear_error(tmp_path, case, message):
    path = tmp_path / "shd_train.h5"
    _malformed(path, case)
    with pytest.raises(data.SHDFormatError, match=message) as err:
        data.load_split(tmp_path, "train")
    assert str(path) in str(err.value)


def test_missing_and_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="extract"):
        data.load_split(tmp_path, "train")
    (tmp_path / "shd_test.h5").write_text("not hdf5")
    with pytest.raises(data.SHDFormatError, match="not a readable HDF5 file"):
        data.load_split(tmp_path, "test")
