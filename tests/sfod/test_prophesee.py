import numpy as np
import pytest

from common.errors import DataError
from SFOD.prophesee import DatFile, load_boxes, read_header
from tests.sfod.fake_prophesee import BOX_DTYPE, write_boxes, write_dat


def _events(n=500, seed=0, t_max=300_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return t, rng.integers(0, 304, n), rng.integers(0, 240, n), rng.integers(0, 2, n)


@pytest.mark.parametrize("header", [("% Date 2019", "% Version 2", "% Height 240", "% Width 304"), ("% v",), None])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_round_trip_header_variants(tmp_path, header, line_end):
    t, x, y, p = _events()
    path = write_dat(tmp_path / "a_td.dat", t, x, y, p, header=header, line_end=line_end)
    f = DatFile(path)
    ev = f.load_delta_t(10**9)
    np.testing.assert_array_equal(ev["t"], t)
    np.testing.assert_array_equal(ev["x"], x)
    np.testing.assert_array_equal(ev["y"], y)
    np.testing.assert_array_equal(ev["p"], p)
    assert (f.height, f.width) == ((240, 304) if header and len(header) == 4 else (None, None))


def test_bit_layout(tmp_path):
    """x = bits 0-13, y = bits 14-27, p = bit 28; higher bits are ignored."""
    path = tmp_path / "b.dat"
    with open(path, "wb") as f:
        f.write(b"% Version 2\n" + bytes([0, 8]))
        word = 16383 | (16383 << 14) | (1 << 28) | (0b111 << 29)
        f.write(np.array([(7, word), (9, 5 | (3 << 14))], dtype=[("t", "<u4"), ("w", "<u4")]).tobytes())
    ev = DatFile(path).load_delta_t(100)
    assert ev.tolist() == [(7, 16383, 16383, 1), (9, 5, 3, 0)]
    assert read_header(path).offset == len(b"% Version 2\n") + 2


def test_seek_and_window_match_brute_force(tmp_path):
    t, x, y, p = _events(2000, t_max=1_000_000)
    t[100:120] = t[100]  # repeated time stamps
    t = np.sort(t)
    f = DatFile(write_dat(tmp_path / "c.dat", t, x, y, p))
    for start in (-5, 0, 1, int(t[100]), 123_456, int(t[-1]), int(t[-1]) + 1):
        f.seek_time(start)
        ev = f.load_delta_t(50_000)
        lo = max(start, 0) if start <= int(t[-1]) else np.inf
        expected = t[(t >= lo) & (t < lo + 50_000)] if np.isfinite(lo) else t[:0]
        np.testing.assert_array_equal(ev["t"], expected)
    f.seek_time(100_000)
    a, b = f.load_delta_t(30_000), f.load_delta_t(30_000)  # consecutive windows tile time
    np.testing.assert_array_equal(np.concatenate([a["t"], b["t"]]), t[(t >= 100_000) & (t < 160_000)])
    assert f.current_time == 160_000


@pytest.mark.parametrize("problem, write", [
    ("truncated", lambda p: p.write_bytes(b"% Height 240\n\x00\x08" + b"\x01" * 12)),
    ("header only", lambda p: p.write_bytes(b"% Height 240\n% Width 304\n\x00\x08")),
    ("event size", lambda p: p.write_bytes(b"% x\n\x00\x10" + b"\x00" * 16)),
    ("type and size", lambda p: p.write_bytes(b"% x\n")),
])
def test_bad_dat_is_one_line(tmp_path, problem, write):
    path = tmp_path / "bad_td.dat"
    write(path)
    with pytest.raises(DataError, match=problem) as e:
        DatFile(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_outside_sensor_and_decreasing_time(tmp_path):
    f = DatFile(write_dat(tmp_path / "o.dat", [1, 2], [10, 304], [0, 0], [0, 1]))
    with pytest.raises(DataError, match="x=304 outside the 304x240 sensor"):
        f.load_delta_t(10)
    with pytest.raises(DataError, match="decrease"):
        DatFile(write_dat(tmp_path / "d.dat", [5, 2], [1, 1], [1, 1], [0, 0]))


def test_boxes_reader(tmp_path):
    path = write_boxes(tmp_path / "r_bbox.npy", [(10, 1, 2, 3, 4, 0, 7), (20, 5, 6, 7, 8, 1, 9)])
    boxes = load_boxes(path)
    assert boxes["t"].tolist() == [10, 20] and boxes["track_id"].tolist() == [7, 9]
    no_track = np.dtype([d for d in BOX_DTYPE.descr if d[0] != "track_id"])
    bad = write_boxes(tmp_path / "s_bbox.npy", [(1, 1, 1, 1, 1, 0, 0)], dtype=no_track)
    with pytest.raises(DataError, match="lacks the field.*track_id"):
        load_boxes(bad)
    np.save(tmp_path / "u_bbox.npy", np.zeros(3))
    with pytest.raises(DataError, match="structured"):
        load_boxes(tmp_path / "u_bbox.npy")
