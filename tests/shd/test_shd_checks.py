"""SHD input checks: NaN/inf spike times, times overflowing float16 in milliseconds, a damaged frame cache (rebuilt
with a warning) and an unwritable cache folder (one line with the --no-cache remedy)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from common.errors import DataError, UsageError
from shd import data
from tests.shd.fake_shd import random_samples, write_fake_shd, write_file


def _file_with(tmp_path, index: int, time_value: float, dtype=np.float16):
    times, units, labels = random_samples(4, seed=1)
    times = [t.astype(dtype) for t in times]
    times[index][-1] = time_value
    return write_file(tmp_path / "shd_train.h5", times, units, labels, times_dtype=dtype)


@pytest.mark.parametrize("value, message", [
    (np.nan, "sample 2: spike time nan is not a finite number"),
    (np.inf, "sample 2: spike time inf is not a finite number"),
    (70.0, "sample 2: spike time 70.0 s overflows float16 in milliseconds"),  # 70000 ms > float16 max 65504
])
def test_bad_spike_times_are_a_data_error_naming_file_and_sample(tmp_path, value, message):
    path = _file_with(tmp_path, 2, value)
    with pytest.raises(DataError) as info:
        data.load_split(tmp_path, "train")
    assert str(info.value).startswith(f"SHD file {path}: ") and message in str(info.value)
    assert info.value.exit_code == 3 and isinstance(info.value, ValueError)


def test_long_times_are_fine_in_float32(tmp_path):
    _file_with(tmp_path, 2, 70.0, dtype=np.float32)
    frames = data.load_split(tmp_path, "train")
    assert frames.lengths[2] > 6000  # ~70 s of 10 ms frames, not "all spikes at one instant"


@pytest.fixture
def fake(tmp_path):
    write_fake_shd(tmp_path / "shd", n_train=6, n_test=4, seed=2)
    return tmp_path / "shd"


@pytest.mark.parametrize("damage", [b"", b"garbage, not an npz", "truncated", "inconsistent"])
def test_damaged_cache_is_rebuilt_with_a_warning(fake, tmp_path, capsys, damage):
    cache_dir = tmp_path / "cache"
    reference = data.load_split(fake, "test")
    data.load_split(fake, "test", cache_dir=cache_dir)
    (cache,) = cache_dir.iterdir()
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:100])
    elif damage == "inconsistent":
        np.savez(cache, frames=reference.frames[:3], lengths=reference.lengths, labels=reference.labels)
    else:
        cache.write_bytes(damage)
    capsys.readouterr()
    rebuilt = data.load_split(fake, "test", cache_dir=cache_dir)
    np.testing.assert_array_equal(rebuilt.frames, reference.frames)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: SHD frame cache {cache} is ") and "rebuilding" in err[0]
    assert data.load_split(fake, "test", cache_dir=cache_dir).frames.shape == reference.frames.shape  # good again


def test_unwritable_cache_names_the_no_cache_remedy(fake, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("user file")
    with pytest.raises(UsageError) as info:
        data.load_split(fake, "test", cache_dir=blocker / "cache")
    assert "cannot write the SHD frame cache" in str(info.value) and "--no-cache" in str(info.value)
    assert blocker.read_text() == "user file" and sorted(os.listdir(tmp_path)) == ["not_a_folder", "shd"]
