#!/usr/bin/env python
"""Gallery of every registered surrogate gradient function (``common.surrogate``), drawn from the registry.

    python scripts/plot_surrogates.py [--out docs/figures] [--x-max 2]

Writes two PNGs to ``--out``:

* ``surrogates.png``: per function, the smooth step ``g(x)`` (primitive, where one exists), its derivative ``g'(x)``
  (the backward pass) and the Heaviside forward ``H(x)``, at the function's default alpha;
* ``surrogates_alpha.png``: ``g'(x)`` at alpha = default x 1/2, 1, 2 (0, 0.1, 0.3 when the default is 0);
  values a function rejects are left out.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from common import surrogate

ROOT = Path(__file__).resolve().parents[1]
COLS = 4


def alpha_values(default: float) -> list[float]:
    """The alphas of the second figure: the default scaled by 1/2, 1 and 2 (fixed small values for a default 0)."""
    return [default * f for f in (0.5, 1.0, 2.0)] if default > 0 else [0.0, 0.1, 0.3]


def _grid(n: int):
    rows = math.ceil(n / COLS)
    fig, axes = plt.subplots(rows, COLS, figsize=(3.2 * COLS, 2.3 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def plot_defaults(path: Path, x: torch.Tensor) -> Path:
    names = surrogate.names()
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        sg = surrogate.get(name)
        ax.plot(x, (x >= 0).float(), color="0.6", ls="--", lw=1, label="H(x)")
        try:
            ax.plot(x, sg.primitive(x), lw=1.5, label="g(x)")
        except NotImplementedError:
            pass
        ax.plot(x, sg.derivative(x), lw=1.5, label="g'(x)")
        ax.set_title(f"{name} (α={sg.alpha:g})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_alphas(path: Path, x: torch.Tensor) -> Path:
    names = surrogate.names()
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        for alpha in alpha_values(surrogate.SURROGATES.get(name).default_alpha):
            try:
                sg = surrogate.get(name, alpha=alpha)
            except ValueError:
                continue
            ax.plot(x, sg.derivative(x), lw=1.2, label=f"α={alpha:g}")
        ax.set_title(f"{name}: g'(x)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, path)


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures", help="output folder")
    parser.add_argument("--x-max", type=float, default=2.0, help="plot x in [-x_max, x_max]")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    x = torch.linspace(-args.x_max, args.x_max, 801, dtype=torch.float64)
    paths = [plot_defaults(args.out / "surrogates.png", x), plot_alphas(args.out / "surrogates_alpha.png", x)]
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths


if __name__ == "__main__":
    main()
