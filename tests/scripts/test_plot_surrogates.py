"""scripts/plot_surrogates.py draws one panel per registered surrogate (and skips alphas a function rejects)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import matplotlib.image

from common import surrogate

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("plot_surrogates", ROOT / "scripts" / "plot_surrogates.py")
plot_surrogates = sys.modules["plot_surrogates"] = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(plot_surrogates)


def test_alpha_values():
    assert plot_surrogates.alpha_values(2.0) == [1.0, 2.0, 4.0]
    assert plot_surrogates.alpha_values(0.0) == [0.0, 0.1, 0.3]


def test_gallery_has_a_panel_per_surrogate(tmp_path, monkeypatch):
    titles = []
    original = plot_surrogates._save

    def save(fig, path):
        titles.append([ax.get_title() for ax in fig.axes if ax.get_title()])
        return original(fig, path)

    monkeypatch.setattr(plot_surrogates, "_save", save)
    paths = plot_surrogates.main(["--out", str(tmp_path)])
    assert [p.name for p in paths] == ["surrogates.png", "surrogates_alpha.png"]
    names = surrogate.names()
    assert titles[0] == [f"{n} (α={surrogate.get(n).alpha:g})" for n in names]
    assert titles[1] == [f"{n}: g'(x)" for n in names]
    height, width, _ = matplotlib.image.imread(paths[0]).shape
    assert abs(width - 4 * 3.2 * 72) <= 1 and height > 2 * 72  # 4 columns of 3.2 in at 72 dpi
