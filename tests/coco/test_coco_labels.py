"""Image lists, label parsing, bad-input handling, the label cache and the annotation converter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coco import cache, labels
from common.errors import DataError, UsageError
from tests.coco.fake_coco import write_fake_coco


@pytest.fixture
def root(tmp_path):
    return write_fake_coco(tmp_path, n_train=4, n_val=4)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_label_path_replaces_last_images_folder():
    p = os.path.join("", "data", "images", "x", "images", "val2017", "000000000139.jpg")
    assert labels.label_path(p) == os.path.join("", "data", "images", "x", "labels", "val2017", "000000000139.txt")


def test_image_list_resolves_dot_slash_against_its_folder(root):
    files = labels.image_files(root / "val2017.txt")
    assert files[0] == str(root / "images" / "val2017" / "000000000139.jpg")
    assert len(files) == 4
    assert labels.image_files(root / "images" / "val2017") == files  # a directory works too


def test_missing_list_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        labels.image_files(tmp_path / "val2017.txt")


def test_parse_boxes_polygons_and_duplicates(tmp_path):
    f = _write(tmp_path / "a.txt", "3 0.5 0.5 0.2 0.4\n"
                                   "3 0.5 0.5 0.2 0.4\n"                      # duplicate: dropped
                                   "7 0.1 0.2 0.5 0.2 0.3 0.6 0.2 0.9\n\n")    # polygon of 4 points
    rows = labels.parse_labels(str(f), nc=80)
    # polygon bbox by hand: x in [0.1, 0.5], y in [0.2, 0.9] -> centre (0.3, 0.55), size (0.4, 0.7)
    np.testing.assert_allclose(rows, [[3, 0.5, 0.5, 0.2, 0.4], [7, 0.3, 0.55, 0.4, 0.7]], atol=1e-6)
    assert labels.parse_labels(str(tmp_path / "missing.txt"), 80).shape == (0, 5)


@pytest.mark.parametrize("row, problem", [
    ("1 0.5 0.5 0.2", "4 columns"),
    ("1 0.5 0.5 0.2 0.3 0.4", "6 columns"),
    ("80 0.5 0.5 0.2 0.2", "class id 80"),
    ("2.5 0.5 0.5 0.2 0.2", "class id 2.5"),
    ("1 0.5 1.2 0.2 0.2", "outside \\[0, 1\\]"),
    ("1 0.5 x 0.2 0.2", "not numeric"),
])
def test_bad_label_rows_name_the_file(tmp_path, row, problem):
    f = _write(tmp_path / "bad.txt", row + "\n")
    with pytest.raises(labels.BadSample, match=f"bad.txt: .*{problem}"):
        labels.parse_labels(str(f), nc=80)


def test_bad_samples_are_skipped_and_reported_once(root, capsys):
    val = root / "images" / "val2017"
    images = sorted(val.iterdir())
    images[0].write_bytes(b"not an image")
    images[1].write_bytes(images[1].read_bytes()[:-200])  # truncated JPEG
    _write(root / "labels" / "val2017" / (images[2].stem + ".txt"), "99 0.5 0.5 0.1 0.1\n")
    index = cache.load_index(root / "val2017.txt", nc=80, workers=2)
    assert index.files == [str(images[3])]
    err = capsys.readouterr().err
    for image in images[:2]:
        assert err.count(image.name) == 1
    assert err.count(images[2].stem + ".txt") == 1
    assert "unreadable image" in err and "truncated JPEG" in err and "class id 99" in err


def test_no_usable_image_is_a_data_error(root):
    for image in (root / "images" / "val2017").iterdir():
        image.write_bytes(b"broken")
    with pytest.raises(DataError, match="none of its 4 images"):
        cache.load_index(root / "val2017.txt", nc=80, workers=1)


def test_cache_is_written_reused_and_rebuilt_when_stale(root, monkeypatch):
    first = cache.load_index(root / "val2017.txt", 80, workers=1)
    cache_file = root / "val2017.cache"
    assert cache_file.is_file()
    monkeypatch.setattr(cache, "build_index", lambda *a, **k: pytest.fail("a fresh cache must be reused"))
    again = cache.load_index(root / "val2017.txt", 80, workers=1)
    assert again.files == first.files
    for a, b in zip(again.labels, first.labels):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.shapes, first.shapes)
    monkeypatch.undo()
    label = root / "labels" / "val2017" / (Path(first.files[0]).stem + ".txt")
    label.write_text("5 0.5 0.5 0.25 0.25\n")  # different size -> stale
    rebuilt = cache.load_index(root / "val2017.txt", 80, workers=1)
    np.testing.assert_allclose(rebuilt.labels[0], [[5, 0.5, 0.5, 0.25, 0.25]])


def test_corrupt_cache_is_detected_and_rebuilt(root, capsys):
    cache.load_index(root / "val2017.txt", 80, workers=1)
    (root / "val2017.cache").write_bytes(b"PK\x03\x04 garbage")
    index = cache.load_index(root / "val2017.txt", 80, workers=1)
    assert len(index.files) == 4
    assert "corrupt" in capsys.readouterr().err
    with np.load(root / "val2017.cache") as z:  # a valid cache again
        assert int(z["version"]) == cache.CACHE_VERSION


def test_shapes_and_labels_match_the_instances_json(root):
    index = cache.load_index(root / "val2017.txt", 80, workers=1)
    inst = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    by_name = {img["file_name"]: img for img in inst["images"]}
    for path, shape, rows in zip(index.files, index.shapes, index.labels):
        img = by_name[Path(path).name]
        assert tuple(shape) == (img["height"], img["width"])
        anns = [a for a in inst["annotations"] if a["image_id"] == img["id"]]
        xywh = np.array([a["bbox"] for a in anns])
        w, h = img["width"], img["height"]
        expected = np.c_[np.zeros(len(anns)), (xywh[:, 0] + xywh[:, 2] / 2) / w, (xywh[:, 1] + xywh[:, 3] / 2) / h,
                         xywh[:, 2] / w, xywh[:, 3] / h]
        np.testing.assert_allclose(rows[:, 1:], expected[:, 1:], atol=1e-5)


def test_converter_script_reproduces_the_label_layout(tmp_path):
    ref = write_fake_coco(tmp_path / "ref", n_train=1, n_val=4)
    out = tmp_path / "new" / "coco"
    (out / "annotations").mkdir(parents=True)
    json_path = out / "annotations" / "instances_val2017.json"
    json_path.write_text((ref / "annotations" / "instances_val2017.json").read_text())
    script = Path(__file__).resolve().parents[2] / "coco" / "convert_annotations.py"
    run = subprocess.run([sys.executable, str(script), str(json_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (out / "val2017.txt").read_text() == (ref / "val2017.txt").read_text()
    for f in (ref / "labels" / "val2017").iterdir():
        got = np.loadtxt(out / "labels" / "val2017" / f.name, ndmin=2)
        np.testing.assert_allclose(got, np.loadtxt(f, ndmin=2), atol=2e-6)



def test_converter_never_overwrites(tmp_path, capsys, monkeypatch):
    from coco import convert_annotations
    from common.cli import main_guard

    ref = write_fake_coco(tmp_path, n_train=1, n_val=2)
    json_path = ref / "annotations" / "instances_val2017.json"
    before = (ref / "val2017.txt").read_text()
    monkeypatch.setattr(sys, "argv", ["convert_annotations.py", str(json_path)])
    with pytest.raises(SystemExit) as stop:
        main_guard(convert_annotations.main)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "val2017.txt already exists" in err and "Traceback" not in err
    assert (ref / "val2017.txt").read_text() == before
