"""Mini-batches and the handwritten digits data set (scikit-learn's bundled copy: 1797 8x8 images,
no download), for the examples. scikit-learn comes with the optional extra "examples":
`pip install "tinygrad-bn[examples]"`, or `pip install -e ".[examples]"` in a checkout."""
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
    except ImportError:
        from ._missing import MissingExtraError
        raise MissingExtraError("the digits data set (tinygrad_bn.data.load_digits)", "scikit-learn") from None
    bunch = sklearn_digits()
    x, y = bunch.data.astype(dtype), bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def standardize(x_train: np.ndarray, *others: np.ndarray, eps: float = 1e-8) -> list[np.ndarray]:
    """Input normalization (docs/course.md section 1): subtract the training mean and divide by the
    training standard deviation, per feature; the same statistics are applied to `others`."""
    mu = x_train.mean(axis=0)
    sigma = np.sqrt(((x_train - mu) ** 2).mean(axis=0)) + eps
    return [((a - mu) / sigma).astype(x_train.dtype) for a in (x_train, *others)]


# A syllable grammar of our own for name-like words: syllables of an onset (or none) and a vowel, a
# soft consonant now and then between them, and an ending; the letters lean toward those of given names.
_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "l", "m",
           "n", "r", "s", "t", "br", "ch", "cl", "dr", "fr", "gr", "kr", "sh", "st", "th", "tr", "y")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "a", "e", "ai", "ea", "ee", "ia", "io", "y")
_JOINS = ("l", "n", "r", "s", "m", "nd", "rl", "nn", "ll")  # closes a syllable before the next one
_ENDINGS = ("", "a", "a", "e", "ie", "y", "o", "n", "on", "an", "en", "in", "yn", "el", "elle", "ia", "ah", "us",
            "er", "lyn", "ette", "ton", "ley", "ine", "ina", "x", "s", "th", "rd", "ck")


def generated_names(n: int = 4000, seed: int = 0) -> list[str]:
    """`n` distinct name-like words (lowercase a-z, 3-10 letters) from a seeded syllable grammar written
    for this project: a stand-in for the names.txt of Karpathy's makemore, which we do not ship."""
    if n < 1:
        raise ValueError(f"generated_names: n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    seen: dict[str, None] = {}  # insertion-ordered: the same seed gives the same list in the same order
    while len(seen) < n:
        syllables = [(pick(_ONSETS) if i or rng.random() < 0.85 else "") + pick(_VOWELS)
                     for i in range(rng.choice([1, 2, 3], p=[0.3, 0.55, 0.15]))]
        word = "".join(s + (pick(_JOINS) if rng.random() < 0.3 else "") for s in syllables[:-1])
        word += syllables[-1] + pick(_ENDINGS)
        if 3 <= len(word) <= 10:
            seen.setdefault(word)
    return list(seen)
