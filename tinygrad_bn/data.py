"""Mini-batches and the handwritten digits data set (scikit-learn's bundled copy: 1797 8x8 images,
no download), for the examples. scikit-learn is the optional extra `pip install -e ".[examples]"`."""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    x_train: np.ndarray  # (n_train, 64) float
    y_train: np.ndarray  # (n_train,) int64 class labels 0..9
    x_test: np.ndarray
    y_test: np.ndarray


def minibatches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) in batches of `batch_size` along axis 0, shuffled by `rng` (in order without one).
    drop_last skips a final smaller batch (batch norm needs more than one example per batch)."""
    if len(x) != len(y):
        raise ValueError(f"minibatches: x has {len(x)} examples, y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"minibatches: batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def load_digits(test_fraction: float = 0.2, seed: int = 0, dtype: type = np.float32) -> Split:
    """The 8x8 digits (pixel values 0..16, raw: normalize them yourself, or see example 1),
    split into train and test sets by a seeded shuffle stratified by nothing but chance."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as e:
        raise ImportError('the digits data set comes with scikit-learn: pip install -e ".[examples]"') from e
    bunch = sklearn_digits()
    x, y = bunch.data.astype(dtype), bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def standardize(x_train: np.ndarray, *others: np.ndarray, eps: float = 1e-8) -> list[np.ndarray]:
    """Input normalization (SEED.md section 1): subtract the training mean and divide by the
    training standard deviation, per feature; the same statistics are applied to `others`."""
    mu = x_train.mean(axis=0)
    sigma = np.sqrt(((x_train - mu) ** 2).mean(axis=0)) + eps
    return [((a - mu) / sigma).astype(x_train.dtype) for a in (x_train, *others)]
