"""Verified checkpoints: every kind of damage is one CheckpointError line that offers the intact neighbours; disk-full
writes leave the previous checkpoint intact; the latest/previous/best rotation; the run-directory resolver."""
from __future__ import annotations

import argparse
import errno
import hashlib
import io
import os

import pytest
import torch

from common import checkpoint
from common.errors import CheckpointError, StorageError, UsageError


def state(epoch: int) -> dict:
    g = torch.Generator().manual_seed(epoch)
    return {"model": {"w": torch.randn(64, 64, generator=g)}, "epoch": epoch, "best_test_acc": 0.5}


def assert_same(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"] and torch.equal(a["model"]["w"], b["model"]["w"])


def test_file_format_is_a_sha256_of_the_torch_save_payload(tmp_path):
    """Checked with hashlib and torch.load directly, independent of checkpoint.load."""
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(state(1), path)
    wrapper = torch.load(path, weights_only=True)
    payload = wrapper["payload"].numpy().tobytes()
    assert wrapper["sha256"] == hashlib.sha256(payload).hexdigest()
    assert_same(torch.load(io.BytesIO(payload), weights_only=True), state(1))
    assert_same(checkpoint.load(path), state(1))


def test_rotation_latest_previous_best(tmp_path):
    checkpoint.save_run_checkpoint(state(0), tmp_path, improved=True)
    checkpoint.save_run_checkpoint(state(1), tmp_path, improved=False)
    checkpoint.save_run_checkpoint(state(2), tmp_path, improved=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.BEST, checkpoint.LATEST, checkpoint.PREVIOUS]
    assert checkpoint.load(tmp_path / checkpoint.LATEST)["epoch"] == 2
    assert checkpoint.load(tmp_path / checkpoint.PREVIOUS)["epoch"] == 1
    assert checkpoint.load(tmp_path / checkpoint.BEST)["epoch"] == 0
    checkpoint.save_run_checkpoint(state(3), tmp_path, improved=True)
    assert checkpoint.load(tmp_path / checkpoint.BEST)["epoch"] == 3
    assert checkpoint.load(tmp_path / checkpoint.PREVIOUS)["epoch"] == 2


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped":  # 4 KiB of flipped bytes in the middle, as in the report
        mid = len(data) // 2
        data[mid:mid + 4096] = bytes(b ^ 0xFF for b in data[mid:mid + 4096])
    elif how == "one_bit":
        data[len(data) // 2] ^= 0x01
    elif how == "truncated":
        data = data[: len(data) // 3]
    elif how == "empty":
        data = bytearray()
    elif how == "garbage":
        data = bytearray(b"this is not a checkpoint at all\n" * 10)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, problem", [
    ("flipped", "content-hash"), ("one_bit", ""), ("truncated", "truncated or damaged"), ("empty", "is empty"),
    ("garbage", "not a PyTorch checkpoint"),
])
def test_damaged_latest_is_one_line_naming_file_and_offering_intact_ones(tmp_path, how, problem):
    checkpoint.save_run_checkpoint(state(0), tmp_path, improved=True)
    checkpoint.save_run_checkpoint(state(1), tmp_path, improved=False)
    latest = tmp_path / checkpoint.LATEST
    _damage(latest, how)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(latest)
    message = str(info.value)
    assert "\n" not in message and problem in message and "weights_only" not in message
    assert message.startswith(f"checkpoint {latest} ")
    assert f"intact checkpoints in the same folder: {tmp_path / checkpoint.PREVIOUS}, {tmp_path / checkpoint.BEST}" \
        in message
    assert info.value.exit_code == 3 and isinstance(info.value, UsageError)


def test_damaged_best_shared_with_latest_is_not_offered(tmp_path):
    """best is a hard link of latest when it improved: damage to one is damage to both, so neither is offered."""
    checkpoint.save_run_checkpoint(state(0), tmp_path, improved=True)
    _damage(tmp_path / checkpoint.LATEST, "flipped")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(tmp_path / checkpoint.BEST)
    assert "intact" not in str(info.value)


def test_disk_full_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    checkpoint.save_run_checkpoint(state(0), tmp_path, improved=True)
    before = sorted(os.listdir(tmp_path))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError) as info:
        checkpoint.save_run_checkpoint(state(1), tmp_path, improved=True)
    monkeypatch.undo()
    latest = tmp_path / checkpoint.LATEST
    assert str(info.value) == f"no space left on device while writing {latest}; the previous checkpoint is intact"
    assert info.value.exit_code == 5
    assert sorted(os.listdir(tmp_path)) == before  # no temporary file left, no rotation happened
    assert checkpoint.load(latest)["epoch"] == 0 and checkpoint.load(tmp_path / checkpoint.BEST)["epoch"] == 0


def test_other_write_errors_are_not_reported_as_disk_full(tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError) as info:
        checkpoint.save_atomic(state(0), tmp_path / "c.pt")
    assert not isinstance(info.value, StorageError) and os.listdir(tmp_path) == []


def test_unhashed_legacy_checkpoint_loads_with_a_note(tmp_path, capsys):
    torch.save(state(4), tmp_path / "old.pt")
    assert_same(checkpoint.load(tmp_path / "old.pt"), state(4))
    assert "has no content hash" in capsys.readouterr().err


def test_pickled_objects_are_refused_without_torch_advice(tmp_path):
    torch.save({"x": argparse.Namespace(a=1)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(tmp_path / "evil.pt")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


def test_find_names_what_the_folder_holds_instead_of_circular_advice(tmp_path):
    checkpoint.save_atomic(state(0), tmp_path / checkpoint.BEST)
    with pytest.raises(UsageError) as info:
        checkpoint.find(tmp_path, checkpoint.LATEST, "--resume")
    assert str(info.value) == (f"--resume: {tmp_path} has no checkpoint_latest.pt; it holds checkpoint_best.pt: "
                               f"name one of them, e.g. --resume {tmp_path / checkpoint.BEST}")
    assert checkpoint.find(tmp_path / checkpoint.BEST, checkpoint.LATEST, "--resume") == tmp_path / checkpoint.BEST
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds none"):
        checkpoint.find(empty, checkpoint.LATEST, "--resume")
    with pytest.raises(UsageError, match="no checkpoint or run directory"):
        checkpoint.find(tmp_path / "nope" / "x.pt", checkpoint.LATEST, "--teacher")
