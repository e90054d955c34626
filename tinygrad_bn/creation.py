"""Constructors: new leaf tensors from shapes, numbers and arrays, and the default random generator."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .engine import ShapeError
from .tensor import _NUMBER, DEFAULT_FLOAT, Tensor, _number_kind, _shape

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator that randn, randint, multinomial (and nn initializers) use when given no rng."""
    global _rng
    _rng = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    return _rng


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def from_numpy(a: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A leaf sharing `a` (as torch.from_numpy): no copy. While a live graph reads it, `a` is
    read-only; a view of `a` you took before is yours to keep unwritten (see docs/safety.md)."""
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


_NUMBER_DTYPE = {"b": np.dtype(np.bool_), "i": np.dtype(np.int64), "f": DEFAULT_FLOAT, "c": np.dtype(np.complex64)}


def _number_dtype(value: Any) -> np.dtype:
    """PyTorch's dtype for a Python (or NumPy) number: bool, int64, float32 or complex64."""
    if not isinstance(value, _NUMBER):
        raise TypeError(f"full: value must be a number, got {type(value).__name__}")
    return _NUMBER_DTYPE[_number_kind(value)]


def full(shape: Any, value: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of `shape` filled with `value`; dtype from the value as PyTorch (float32, int64 or bool)."""
    return from_numpy(np.full(_shape((shape,)), value, _number_dtype(value) if dtype is None else dtype), requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = DEFAULT_FLOAT) -> Tensor:
    """The (n, m) identity (m defaults to n): ones on the diagonal, zeros elsewhere."""
    if n < 0 or (m is not None and m < 0):
        raise ValueError(f"eye: n and m must be >= 0, got n={n}, m={m}")
    return from_numpy(np.eye(n, m, dtype=dtype))


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> Tensor:
    """start, start + step, ... up to but excluding stop (arange(n) counts 0..n-1): shape
    (ceil((stop - start) / step),). Integers only give int64, any float float32, as PyTorch; a step
    pointing away from stop is an error there (NumPy returns an empty range), and so it is here."""
    start, stop = (0, start) if stop is None else (start, stop)
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise ValueError(f"arange: unsupported range {start} -> {stop} with step {step}: bounds must be finite")
    if (stop - start > 0 and step < 0) or (stop - start < 0 and step > 0):
        raise ValueError(f"arange: the range {start} -> {stop} runs against step {step}; flip the step's sign")
    ints = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
    # floats: start + i * step in float64, then cast (NumPy's float arange steps by (start + step) - start,
    # which drifts from step by a rounding error per element)
    a = (np.arange(start, stop, step, dtype=np.int64) if ints
         else start + step * np.arange(math.ceil((stop - start) / step), dtype=np.float64))
    return from_numpy(a.astype((np.int64 if ints else DEFAULT_FLOAT) if dtype is None else dtype))


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of t's shape and (unless given) dtype; a new leaf, whatever t's requires_grad."""
    return zeros(t.shape, dtype=t.dtype if dtype is None else dtype, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of t's shape and (unless given) dtype; a new leaf, whatever t's requires_grad."""
    return ones(t.shape, dtype=t.dtype if dtype is None else dtype, requires_grad=requires_grad)


def randint(low: int, high: int, shape: Any, rng: np.random.Generator | None = None) -> Tensor:
    """int64 integers drawn uniformly from [low, high), of `shape`, from `rng` (default: manual_seed's)."""
    if not low < high:
        raise ValueError(f"randint: low must be less than high, got low={low} >= high={high}")
    return from_numpy((rng or _rng).integers(low, high, _shape((shape,)), dtype=np.int64))


def multinomial(probs: Any, num_samples: int, replacement: bool = False,
                rng: np.random.Generator | None = None) -> Tensor:
    """int64 category indices, drawn in proportion to the non-negative weights of each row of probs:
    (n,) -> (num_samples,), (m, n) -> (m, num_samples), as torch.multinomial. Without replacement a
    row's zero-weight categories follow once its positive ones are drawn, as in PyTorch (here in index order)."""
    p = (probs if isinstance(probs, Tensor) else Tensor(probs))._data
    if p.dtype.kind != "f":
        raise TypeError(f"multinomial: probs must be floating point, got {p.dtype}")
    if p.ndim not in (1, 2):
        raise ShapeError(f"multinomial: probs must be 1-D or 2-D, got shape {p.shape}")
    if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool):
        raise TypeError(f"multinomial: num_samples must be an int, got {type(num_samples).__name__}")
    if num_samples <= 0:
        raise ValueError(f"multinomial: num_samples must be positive, got {num_samples}")
    if not replacement and num_samples > p.shape[-1]:
        raise ValueError(f"multinomial: cannot draw {num_samples} samples from {p.shape[-1]} categories "
                         "without replacement; pass replacement=True")
    w = np.atleast_2d(p).astype(np.float64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("multinomial: probs contain inf, nan or a negative weight")
    if (empty := w.sum(axis=-1) <= 0).any():
        raise ValueError(f"multinomial: row {int(np.argmax(empty))} of probs sums to 0; "
                         "every row needs a positive weight")
    w, rng = w / w.max(axis=-1, keepdims=True, initial=0), rng or _rng  # scaled: no sum overflows
    if replacement:
        idx = np.array([rng.choice(w.shape[1], num_samples, p=row / row.sum()) for row in w], np.int64)
    else:  # an exponential race: E_i / w_i ~ Exp(rate w_i), and the smallest k are a draw without replacement
        keys = np.divide(rng.standard_exponential(w.shape), w, out=np.full(w.shape, np.inf), where=w > 0)
        idx = np.argsort(keys, axis=-1, kind="stable")[:, :num_samples]
    return from_numpy(idx.reshape(p.shape[:-1] + (num_samples,)).astype(np.int64))
