"""What every example shares: argument parsing, the output folder, the digits data, a figure saver."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tinygrad_bn.data import Split, load_digits, standardize


def parse_args(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder for the figures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a shorter run (as the tests use)")
    return parser.parse_args()


def digits(normalize: bool = True, dtype: type = np.float32) -> Split:
    """The digits split; with normalize, each pixel standardized with the training statistics."""
    d = load_digits(dtype=dtype)
    if not normalize:
        return d
    x_train, x_test = standardize(d.x_train, d.x_test)
    return Split(x_train, d.y_train, x_test, d.y_test)


def save(fig, out: str, name: str) -> Path:
    """Save a matplotlib figure as out/name.png and say where."""
    path = Path(out) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")
    return path


def pyplot():
    """matplotlib's pyplot on a file-only backend (no screen needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
