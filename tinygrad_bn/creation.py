"""Constructors: new leaf tensors from shapes, numbers and arrays, and the default random generator."""
from __future__ import annotations

from typing import Any

import numpy as np

from .tensor import DEFAULT_FLOAT, Tensor, _shape

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator that randn (and nn initializers) use when given no rng."""
    global _rng
    _rng = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    return _rng


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def from_numpy(a: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A leaf sharing `a` (as torch.from_numpy): no copy. While a live graph reads it, `a` is
    read-only; a view of `a` you took before is yours to keep unwritten (see README, Safety)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray, got {type(a).__name__}")
    if a.dtype.kind not in "biufc":
        raise TypeError(f"from_numpy: unsupported dtype {a.dtype}; use a numeric or bool array")
    return Tensor._wrap(a if type(a) is np.ndarray else a.view(np.ndarray)).requires_grad_(requires_grad)


def zeros(*shape: Any, dtype: Any = DEFAULT_FLOAT, requires_grad: bool = False) -> Tensor:
    return from_numpy(np.zeros(_shape(shape), dtype), requires_grad)


def ones(*shape: Any, dtype: Any = DEFAULT_FLOAT, requires_grad: bool = False) -> Tensor:
    return from_numpy(np.ones(_shape(shape), dtype), requires_grad)


def randn(*shape: Any, rng: np.random.Generator | None = None, dtype: Any = DEFAULT_FLOAT,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples from `rng` (default: the generator manual_seed sets)."""
    return from_numpy((rng or _rng).standard_normal(_shape(shape)).astype(dtype), requires_grad)
