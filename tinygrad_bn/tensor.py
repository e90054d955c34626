"""Tensor: an ndarray plus the op that made it. Construction and dtype rules, properties, the
operators that apply primitives (ops.py), and API.md's composite methods in a few lines each."""
from __future__ import annotations

import array
import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import engine, ops
from .engine import AxisError, ShapeError
from .guards import _expose, _protect_view
from .ops import (
    Abs,
    Add,
    BroadcastTo,
    Cast,
    Div,
    Exp,
    GetItem,
    IndexAdd,
    Log,
    MatMul,
    Max,
    Maximum,
    Min,
    Minimum,
    Mul,
    Neg,
    Pow,
    Relu,
    Reshape,
    Sigmoid,
    Sqrt,
    Sub,
    Sum,
    Tanh,
    Transpose,
    Where,
)

DEFAULT_FLOAT = np.dtype(np.float32)
_new_tensor = object.__new__
_NUMBER = (int, float, complex, np.number, np.bool_)  # bool is an int


_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}  # PyTorch's type categories: bool < integer < float < complex


def _promote(a: np.ndarray, b: np.ndarray) -> np.dtype:
    """PyTorch's result dtype for two tensors: the higher category wins (float32 * int64 is float32);
    within one category the wider dtype, except that a 0-d tensor, like a number, never widens a
    dimensioned one (float32 (3,) * float64 0-d is float32)."""
    da, db = a.dtype, b.dtype
    ca, cb = _CATEGORY[da.kind], _CATEGORY[db.kind]
    if ca != cb:
        return da if ca > cb else db
    if (a.ndim == 0) != (b.ndim == 0):
        return db if a.ndim == 0 else da
    return np.promote_types(da, db)


def _number_kind(x: Any) -> str:
    """A Python or NumPy number's category as a dtype kind: "b", "i", "f" or "c" (bool is an int)."""
    return ("b" if isinstance(x, (bool, np.bool_)) else "i" if isinstance(x, (int, np.integer))
            else "f" if isinstance(x, (float, np.floating)) else "c")


def _holds_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) or isinstance(x, (list, tuple)) and any(_holds_tensor(v) for v in x)


def _shape(shape: Sequence[Any]) -> tuple[int, ...]:
    """(2, 3), ((2, 3),) and ([2, 3],) all mean the shape (2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"a shape is a tuple of ints, got {tuple(shape)!r}")
    return tuple(int(s) for s in shape)


def _axes(axis: Any, ndim: int, op: str) -> tuple[int, ...]:
    """axis None | int | tuple (negatives count from the end) -> sorted non-negative tuple."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, fast
        return (axis % ndim,)
    if not isinstance(axis, (int, np.integer, tuple, list)):
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
        if ndim == 0 and a in (0, -1):  # a 0-d tensor takes axis 0 and -1 as PyTorch: a reduction over nothing
            return ()
        if not -ndim <= a < ndim:
            raise AxisError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
    norm = sorted(int(a) % ndim for a in axes)
    if len(set(norm)) != len(norm):
        raise ShapeError(f"{op}: axis {axis!r} repeats an axis")
    return tuple(norm)


def _broadcasts_to(small: tuple[int, ...], big: tuple[int, ...]) -> bool:
    """Whether broadcasting turns shape `small` into `big` (only adding axes or stretching 1s)."""
    lead = len(big) - len(small)
    return lead >= 0 and all(n == 1 or n == m for n, m in zip(small, big[lead:]))


def _hand_out(t: Tensor) -> np.ndarray:
    """A leaf's array as it leaves the library (t.data, t.numpy(), np.asarray(t)): noted as handed
    out, since a view taken of it now could write under a later graph, which therefore compares what
    it saved at backward; a view of memory a graph holds goes out read-only until the graph lets go.
    (An array an op computed inside a graph is read-only from birth.)"""
    a = t._data if type(t._data) is np.ndarray else np.asarray(t._data)  # (a Pending value: fusion.py)
    if t._ctx is None:
        _expose(a)
        if a.base is not None and a.flags.writeable:
            _protect_view(a)
    return a


def _frozen(a: np.ndarray) -> Tensor:
    """A constant the library made (a wrapped number, a shift): read-only, so never anybody's data."""
    a.setflags(write=False)
    t = _new_tensor(Tensor)  # Tensor._wrap, inlined: every number in an expression passes here
    t._data, t.requires_grad, t._grad, t._ctx, t.name, t._retains_grad = a, False, None, None, None, False
    return t


class Tensor:
    """An n-dimensional array that records the ops made from it, for reverse-mode autodiff."""
    __slots__ = ("_data", "requires_grad", "_grad", "_ctx", "name", "_retains_grad", "__weakref__")
    _data: np.ndarray
    requires_grad: bool
    _grad: Tensor | None
    _ctx: Any  # the engine.Function that made it, or None for a leaf
    name: str | None
    _retains_grad: bool
    __array_ufunc__ = None  # so `ndarray + Tensor` calls Tensor.__radd__ instead of looping in NumPy
    __hash__ = object.__hash__  # by identity (== is element-wise), so tensors stay dict keys, as in PyTorch

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None):
        """A new leaf owning a copy of `data` (as torch.tensor): later writes to the caller's array
        never reach it. tg.from_numpy shares instead."""
        copied = False
        if isinstance(data, Tensor):
            data = np.asarray(data._data)  # (a value tg.fused() has not computed yet is computed here)
        elif not isinstance(data, np.ndarray):
            if not isinstance(data, (*_NUMBER, list, tuple)):
                raise TypeError(f"Tensor: cannot make a tensor from {type(data).__name__};"
                                " pass an ndarray, a Tensor, a list or a number")
            if _holds_tensor(data):  # np.array would read their values and drop their graphs
                raise TypeError("Tensor: a list holding Tensors would detach them from their graphs; "
                                "use tg.stack(tensors) to keep the gradient, or pass t.detach() values")
            arr = np.array(data)
            # Python floats (alone or in lists) take the default dtype, float32, as in PyTorch
            data = arr.astype(DEFAULT_FLOAT) if arr.dtype == np.float64 and not isinstance(data, np.generic) else arr
            copied = True
        if data.dtype.kind not in "biufc":
            raise TypeError(f"Tensor: unsupported dtype {data.dtype}; use a numeric or bool array")
        # np.array copies into a plain ndarray (np.matrix or a masked array would keep its own arithmetic)
        data = np.asarray(data, dtype) if copied else np.array(data, dtype)
        self._data, self._grad, self._ctx, self.name, self._retains_grad = data, None, None, name, False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_()

    @classmethod
    def _wrap(cls, data: Any) -> Tensor:
        """The fast constructor ops use: no checks, no conversions beyond ndarray-ness, no copy."""
        t = object.__new__(Tensor)
        t._data = data if type(data) is np.ndarray else np.asarray(data)
        t.requires_grad, t._grad, t._ctx, t.name, t._retains_grad = False, None, None, None, False
        return t

    @property
    def data(self) -> np.ndarray:
        """The tensor's array itself (not a copy). While a live graph reads it, it is read-only; an
        array an op computed is handed out read-only (backward may read it, and views of it)."""
        return _hand_out(self)

    @data.setter
    def data(self, value: Any) -> None:
        a = np.asarray(value._data) if isinstance(value, Tensor) else value
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biufc":
            raise TypeError(f"Tensor.data: assign an ndarray of a numeric or bool dtype, got {type(value).__name__}")
        if self.requires_grad and (a.shape != self.shape or a.dtype != self.dtype):
            raise (ShapeError if a.shape != self.shape else TypeError)(
                f"Tensor.data: a tensor that requires grad keeps its shape and dtype ({self.shape} {self.dtype}), "
                f"got {a.shape} {a.dtype}; make a new tensor instead")
        self._replace(a if type(a) is np.ndarray else a.view(np.ndarray))

    def _replace(self, a: np.ndarray) -> None:
        """Give this tensor a new array (the one way any code does): ops that saved the old one check.
        An array an op computed is what its graph's backward reads (exp's reads its output): refused."""
        if self._ctx is not None:
            raise RuntimeError(f"Tensor.data: this tensor was computed by {self._ctx!r}; replacing its array would "
                               "change what its graph's backward reads. Use t.detach() or Tensor(t) for your own")
        self._data = a
        engine._Replaced.count += 1

    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient (a Tensor of this tensor's shape and dtype), or None."""
        return self._grad

    @grad.setter
    def grad(self, g: Tensor | None) -> None:
        # checked here, as PyTorch does, so a wrong .grad never reaches an accumulation or an optimizer
        if g is not None:
            if not isinstance(g, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(g).__name__}: tg.Tensor(g)")
            if g.shape != self.shape:
                raise ShapeError(f"assigned grad has shape {g.shape}, but the tensor has shape {self.shape}")
            if g.dtype != self.dtype:
                raise TypeError(f"assigned grad has dtype {g.dtype}, but the tensor is {self.dtype}; "
                                f"cast it: g.cast({str(self.dtype)!r})")
        self._grad = g

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self._data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got {self._data.dtype}: "
                            "cast first, e.g. Tensor(x, dtype=np.float64, requires_grad=True)")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be switched off on a leaf; use .detach()")
        self.requires_grad = requires_grad
        return self

    # ------------------------------------------------------------------------- properties
    shape = property(lambda self: self._data.shape)
    ndim = property(lambda self: self._data.ndim)
    dtype = property(lambda self: self._data.dtype)
    size = property(lambda self: self._data.size)
    is_leaf = property(lambda self: self._ctx is None)
    T = property(lambda self: self.transpose())

    def writable_data(self) -> np.ndarray:
        """A leaf's array, ready to be changed in place. While a live graph holds it, it is read-only
        (so a saved value cannot change under the backward); then this tensor gets a writable copy,
        and that graph, which keeps the old array, refuses to backward (it would be stale)."""
        if self._ctx is not None:
            raise RuntimeError(f"writable_data: this tensor was computed by {self._ctx!r}, and its graph's backward "
                               "reads its array; use Tensor(t) for a copy of your own")
        if type(self._data) is not np.ndarray:  # a value tg.fused() has not computed yet
            self._data = np.asarray(self._data)
        if not self._data.flags.writeable:
            self._replace(self._data.copy())
        return self._data

    def numpy(self) -> np.ndarray:
        """The array itself, shared (as torch's .numpy()); np.array(t) copies."""
        return self.data

    def item(self) -> Any:
        if self._data.size != 1:
            raise ShapeError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self._data.item()

    def detach(self) -> Tensor:
        """The same data, cut from the graph (an array computed inside a graph stays read-only)."""
        return Tensor._wrap(self._data)

    def zero_grad(self) -> None:
        self._grad = None

    def __deepcopy__(self, memo: dict) -> Tensor:
        """A leaf copies its data and gradient; a tensor inside a graph refuses, as in PyTorch (a
        copied graph would share the saved arrays, and their in-place protection, with the original)."""
        if self._ctx is not None:
            raise RuntimeError("only leaf tensors (made by the user, not by an op) support deepcopy; "
                               "deep-copy the inputs and run the forward again, or copy t.detach()")
        t = object.__new__(type(self))  # a Parameter stays a Parameter (a module's copy keeps its parameters)
        t._data, t.requires_grad, t._ctx, t.name, t._retains_grad = self._data.copy(), self.requires_grad, None, \
            self.name, False
        t._grad = None if self._grad is None else Tensor(self._grad._data)
        memo[id(self)] = t
        if hasattr(self, "__dict__"):
            t.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return t

    def retain_grad(self) -> None:
        """Keep .grad on this intermediate after backward (leaves always keep theirs)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        self._retains_grad = self._ctx is not None

    def backward(self, grad: Any = None, retain_graph: bool = False, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) (times `grad`) into .grad of every leaf that requires grad."""
        engine.backward(self, grad, retain_graph, create_graph)

    def __repr__(self) -> str:
        extra = "".join([f", dtype={self.dtype}", ", requires_grad=True" if self.requires_grad else "",
                         f", name={self.name!r}" if self.name else ""])
        return f"Tensor({np.array2string(self._data, separator=', ', prefix='Tensor(')}{extra})"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return bool(self._data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """np.array(t) copies (NumPy asks for copy=True and trusts the answer); np.asarray(t) shares."""
        if copy:
            return self._data.astype(dtype or self._data.dtype)
        if dtype is not None and np.dtype(dtype) != self._data.dtype:
            if copy is False:
                raise ValueError(f"np.asarray(t, dtype={dtype}, copy=False): a {self.dtype} tensor needs a copy")
            return self._data.astype(dtype)
        return self.data

    # ------------------------------------------------------------------------- operators
    def _lift(self, x: Any) -> Tensor:
        """The other operand as a Tensor. A Python (or NumPy) number never widens this tensor's
        dtype but may raise its category, as in PyTorch: int tensor * 0.5 is float32, float64 * 2j
        complex128. ndarrays and lists become tensors (copies) and promote as tensors do."""
        if isinstance(x, Tensor):
            return x
        dt = self._data.dtype
        if type(x) in (float, int) and dt.kind in "fc":  # the common case: a number beside a float tensor
            return _frozen(np.array(x, dt))
        if isinstance(x, _NUMBER):
            kind = _number_kind(x)
            if _CATEGORY[kind] > _CATEGORY[dt.kind]:
                wider: dict[str, Any] = {"i": np.int64, "u": np.int64, "f": DEFAULT_FLOAT,
                                         "c": np.complex128 if dt == np.float64 else np.complex64}
                dt = np.dtype(wider[kind])
            if kind == "i" and dt.kind in "iu" and not np.can_cast(np.min_scalar_type(x), dt):
                return _frozen(np.array(x).astype(dt))  # an int out of range wraps around, as PyTorch
            return _frozen(np.array(x, dt))
        if _holds_tensor(x):
            raise TypeError(f"an operand holding Tensors ({type(x).__name__} of Tensors) would detach them from their "
                            "graphs; combine them with tg.stack(tensors) first")
        return Tensor(x)

    def _pair(self, x: Any, true_div: bool = False) -> tuple[Tensor, Tensor]:
        """(self, x) ready for a binary op, in one dtype promoted as PyTorch does (see _promote);
        a true division of integers is computed in float32 (NumPy would give float64)."""
        a, da = self, self._data.dtype
        if type(x) is Tensor:
            b, db = x, x._data.dtype
            if db is da and (not true_div or da.kind == "f"):  # the common case: as they are
                return a, b
        else:
            b = self._lift(x)
            db = b._data.dtype
        if da is not db and da != db:
            dt = _promote(a._data, b._data)
            if dt.kind == "c" and (a.requires_grad or b.requires_grad):
                raise TypeError(f"complex arithmetic ({da} with {db}) is not differentiable here: "
                                "tinygrad_bn differentiates real tensors only")
            a, b = a.cast(dt), b.cast(dt)
        if true_div and a._data.dtype.kind in "biu":
            a, b = a.cast(DEFAULT_FLOAT), b.cast(DEFAULT_FLOAT)
        return a, b

    def _float(self) -> Tensor:
        """Itself if floating, else cast to the default float (exp of an int tensor is float32, as PyTorch)."""
        return self if self._data.dtype.kind in "fc" else self.cast(DEFAULT_FLOAT)

    def __add__(self, x): return Add.apply(*self._pair(x))
    def __radd__(self, x): return Add.apply(*self._pair(x)[::-1])
    def __sub__(self, x): return Sub.apply(*self._pair(x))
    def __rsub__(self, x): return Sub.apply(*self._pair(x)[::-1])
    def __mul__(self, x): return Mul.apply(*self._pair(x))
    def __rmul__(self, x): return Mul.apply(*self._pair(x)[::-1])
    def __truediv__(self, x): return Div.apply(*self._pair(x, true_div=True))
    def __rtruediv__(self, x): return Div.apply(*self._pair(x, true_div=True)[::-1])
    def __pow__(self, x): return Pow.apply(*self._pair(x))
    def __rpow__(self, x): return Pow.apply(*self._pair(x)[::-1])
    def __neg__(self): return Neg.apply(self)
    def __matmul__(self, x): return self.matmul(x)
    def __rmatmul__(self, x): return self._lift(x).matmul(self)

    # comparisons are element-wise and give bool tensors outside the graph (they have no gradient)
    def _compare(self, op: Any, x: Any) -> Tensor:
        if x is None or not isinstance(x, (Tensor, np.ndarray, list, tuple, *_NUMBER)):
            return NotImplemented  # t == None, t == "a": Python's identity fallback (False / True)
        a, b = self._data, self._lift(x)._data
        if a.dtype != b.dtype:  # compared in the promoted dtype, as PyTorch (int64 16777217 == 16777216.0 in float32)
            dt = _promote(a, b)
            a, b = a.astype(dt, copy=False), b.astype(dt, copy=False)
        return Tensor._wrap(op(a, b))

    def __lt__(self, x: Any) -> Tensor: return self._compare(np.less, x)
    def __le__(self, x: Any) -> Tensor: return self._compare(np.less_equal, x)
    def __gt__(self, x: Any) -> Tensor: return self._compare(np.greater, x)
    def __ge__(self, x: Any) -> Tensor: return self._compare(np.greater_equal, x)
    # element-wise, as in NumPy and PyTorch: a Tensor, where object's == and != return bool
    def __eq__(self, x: Any) -> Tensor: return self._compare(np.equal, x)  # type: ignore[override]
    def __ne__(self, x: Any) -> Tensor: return self._compare(np.not_equal, x)  # type: ignore[override]
    eq, ne = __eq__, __ne__

    def exp(self) -> Tensor: return Exp.apply(self._float())
    def log(self) -> Tensor: return Log.apply(self._float())
    def sqrt(self) -> Tensor: return Sqrt.apply(self._float())
    def abs(self) -> Tensor: return Abs.apply(self)
    def relu(self) -> Tensor: return Relu.apply(self)
    def tanh(self) -> Tensor: return Tanh.apply(self._float())
    def sigmoid(self) -> Tensor: return Sigmoid.apply(self._float())
    def maximum(self, x: Any) -> Tensor: return Maximum.apply(*self._pair(x))
    def minimum(self, x: Any) -> Tensor: return Minimum.apply(*self._pair(x))
    def square(self) -> Tensor: return self * self

    def clip(self, min: Any = None, max: Any = None) -> Tensor:
        """self bounded below by min and above by max (numbers or tensors, broadcasting), as torch.clamp:
        x keeps its whole gradient where min <= x <= max (ties too), a bound gets it where it wins, with
        min > max every element is max, and NaN stays NaN with gradient 0."""
        if min is None and max is None:
            raise ValueError("clip: at least one of min and max must not be None")
        x = self if min is None else where(~(self >= min)._data, min, self)  # (a NaN bound wins, as PyTorch)
        x = x if max is None else where(~(x <= max)._data, max, x)
        nan = np.isnan(self._data) if self._data.dtype.kind == "f" else None
        return x if nan is None or not nan.any() else where(nan, math.nan, x)

    def cast(self, dtype: Any) -> Tensor:
        """This tensor as `dtype` (itself if it already is); the gradient is cast back."""
        dtype = np.dtype(dtype)
        if dtype == self._data.dtype:
            return self
        if dtype.kind != "f" and self.requires_grad:
            # an integer, bool or complex result has no gradient (PyTorch's rule for integers): it is
            # outside the graph, else the gradient through it would come back truncated to an integer
            return Tensor._wrap(self._data.astype(dtype))
        return Cast.apply(self, dtype=dtype)

    to = cast

    def clone(self) -> Tensor:
        """A copy of the data that stays in the graph (the gradient passes through unchanged)."""
        return Cast.apply(self, dtype=self._data.dtype)

    def float(self) -> Tensor: return self.cast(np.float32)
    def double(self) -> Tensor: return self.cast(np.float64)

    def matmul(self, x: Any) -> Tensor:
        """(..., n, k) @ (..., k, m) -> (..., n, m), batch dims broadcast; a 1-D operand is
        treated as a row (left) or column (right) vector whose axis is dropped, as in NumPy."""
        x = self._lift(x)
        if self.ndim == 0 or x.ndim == 0:
            raise ShapeError(f"matmul: operands need at least 1 dim, got {self.shape} @ {x.shape}; use * for scalars")
        if self.shape[-1] != x.shape[-2 if x.ndim > 1 else 0]:
            raise ShapeError(f"matmul: {self.shape} @ {x.shape}: inner dimensions "
                             f"{self.shape[-1]} and {x.shape[-2 if x.ndim > 1 else 0]} differ")
        out = MatMul.apply(self.reshape(1, -1) if self.ndim == 1 else self, x.reshape(-1, 1) if x.ndim == 1 else x)
        if self.ndim == 1:
            out = out.reshape(out.shape[:-2] + out.shape[-1:])
        return out.reshape(out.shape[:-1]) if x.ndim == 1 else out

    # ------------------------------------------------------------------------- reductions
    def sum(self, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Tensor:
        """Sum over `axis`, accumulated in `dtype` if given; integer and bool tensors sum to int64
        (as PyTorch: a uint8 sum never wraps)."""
        if dtype is None and self._data.dtype.kind in "biu":
            dtype = np.int64
        return Sum.apply(self, axis=_axes(axis, self.ndim, "sum"), keepdims=keepdims,
                         dtype=None if dtype is None else np.dtype(dtype))

    def prod(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Product over `axis` as a tree of pairwise Muls of halves (log2 n levels): the gradient is
        exact with zeros (one zero: the product of the others; two: 0) and differentiable again,
        unlike exp(sum(log x)). Integer and bool tensors multiply in int64, as PyTorch."""
        axes = _axes(axis, self.ndim, "prod")
        rest = [d for d in range(self.ndim) if d not in axes]
        x = self.cast(np.int64) if self._data.dtype.kind in "biu" else self
        x = x.transpose(*rest, *axes).reshape(*(self.shape[d] for d in rest), math.prod(self.shape[d] for d in axes))
        while (n := x.shape[-1]) != 1:  # a factor 1 changes no product: it pads an odd (or empty) length
            x = x.pad([(0, 0)] * (x.ndim - 1) + [(0, 1)], value=1) if n % 2 or not n else \
                x[..., :n // 2] * x[..., n // 2:]
        return x.reshape(tuple(1 if d in axes else n for d, n in enumerate(self.shape)) if keepdims else x.shape[:-1])

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Values only (as NumPy); tied maxima share the gradient evenly."""
        return Max.apply(self, axis=_axes(axis, self.ndim, "max"), keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Values only; exact for every dtype (-max(-x) is not, for unsigned and int extremes)."""
        return Min.apply(self, axis=_axes(axis, self.ndim, "min"), keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        axes, x = _axes(axis, self.ndim, "mean"), self._float()
        return Sum.apply(x, axis=axes, keepdims=keepdims) / math.prod(self.shape[a] for a in axes)

    def var(self, axis: Any = None, keepdims: bool = False, correction: int = 0) -> Tensor:
        """sum (x - mean)^2 / (n - correction): correction=0 is the biased variance batch norm uses.
        With correction >= n the divisor is 0 (PyTorch's max(0, n - correction)): inf or nan, never
        a negative variance."""
        axes, x = _axes(axis, self.ndim, "var"), self._float()
        centered = x - x.mean(axes, keepdims=True)
        dof = max(math.prod(self.shape[a] for a in axes) - correction, 0)
        return (centered * centered).sum(axes, keepdims) / dof

    def std(self, axis: Any = None, keepdims: bool = False, correction: int = 0) -> Tensor:
        """sqrt(var). Where the std is 0, its gradient is 0, as PyTorch's (sqrt's derivative is infinite
        there and the variance's is 0: NaN): the square root is taken of 1 there and deselected."""
        v = self.var(axis, keepdims, correction)
        flat = v._data == 0
        return v.sqrt() if not flat.any() else where(flat, 0.0, where(flat, 1.0, v).sqrt())

    def sum_to_size(self, *shape: Any) -> Tensor:
        """Sum over the axes that broadcasting `shape` to self.shape would add or stretch, so the
        result has `shape` (PyTorch's sum_to_size): the adjoint of broadcast_to."""
        shape = _shape(shape)
        if not _broadcasts_to(shape, self.shape):
            raise ShapeError(f"sum_to_size: {self.shape} does not broadcast from {shape}")
        return self._sum_to(shape)

    def _sum_to(self, shape: tuple[int, ...]) -> Tensor:
        """sum_to_size for a `shape` known to broadcast to self.shape (the engine's unbroadcast)."""
        lead = self.ndim - len(shape)
        stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and self.shape[lead + i] != 1)
        if not lead:  # keepdims gives the shape directly: no reshape, so the result owns its array
            return Sum.apply(self, axis=stretched, keepdims=True) if stretched else self
        out = Sum.apply(self, axis=tuple(range(lead)) + stretched, keepdims=False)
        return Reshape.apply(out, shape=shape) if stretched else out

    def _shift(self, axes: tuple[int, ...]) -> Tensor:
        """The max over `axes` (kept), as a constant outside the graph; 0 where it is not finite."""
        if self._data.size == 0:  # an empty axis: nothing to shift
            return _frozen(np.zeros([1 if i in axes else n for i, n in enumerate(self.shape)], self.dtype))
        m = np.max(self._data, axis=axes, keepdims=True)
        shift = _frozen(np.where(np.isfinite(m), m, 0).astype(self.dtype, copy=False))
        shift.name = "max (detached)"
        return shift

    def logsumexp(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """log sum exp(x) = m + log sum exp(x - m) for any constant m; m = max(x) keeps exp <= 1,
        and since m is a constant of the identity, detaching it changes no gradient."""
        axes = _axes(axis, self.ndim, "logsumexp")
        x = self._float()
        m = x._shift(axes)
        out = (x - m).exp().sum(axes, keepdims=True).log() + m
        return out if keepdims else out.reshape(tuple(n for i, n in enumerate(self.shape) if i not in axes))

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x) / sum exp(x); softmax is shift-invariant, so subtracting the detached max is exact."""
        x = self._float()
        e = (x - x._shift(_axes(axis, self.ndim, "softmax"))).exp()
        return e / e.sum(axis, keepdims=True)

    def log_softmax(self, axis: int = -1) -> Tensor:
        """(x - m) - log sum exp(x - m) with m the detached max: the log-probabilities, finite where
        softmax underflows, and never adding m back (a small loss beside logits of 1e4 stays exact)."""
        x = self._float()
        shifted = x - x._shift(_axes(axis, self.ndim, "log_softmax"))
        return shifted - shifted.exp().sum(axis, keepdims=True).log()

    def argmax(self, axis: int | None = None) -> np.ndarray:
        return np.asarray(np.argmax(self._data, axis=axis))

    # ------------------------------------------------------------------------- movement
    def reshape(self, *shape: Any) -> Tensor:
        return Reshape.apply(self, shape=_shape(shape))

    def flatten(self, start_axis: int = 0, end_axis: int = -1) -> Tensor:
        """Merge axes start_axis..end_axis into one (all of them by default: 1-D)."""
        return self._merge_axes(start_axis, end_axis, "flatten")

    def _merge_axes(self, start_axis: int, end_axis: int, op: str) -> Tensor:
        """flatten, and nn.Flatten, whose errors name `op`. A 0-d tensor takes axis 0 and -1 as a 1-D one."""
        s, e = (_axes(a, max(self.ndim, 1), op)[0] for a in (start_axis, end_axis))
        if s > e:  # PyTorch refuses; a -1 here would silently insert an axis
            raise ShapeError(f"{op}: start_axis={start_axis} comes after end_axis={end_axis} for input {self.shape}")
        # the merged size spelled out: reshape cannot infer a -1 from an empty array
        return self.reshape(self.shape[:s] + (math.prod(self.shape[s:e + 1]),) + self.shape[e + 1:])

    def transpose(self, *axes: Any) -> Tensor:
        """Permute the axes (reverse them when none are given), as np.transpose."""
        axes = tuple(reversed(range(self.ndim))) if not axes else _shape(axes)
        if sorted(a % self.ndim if self.ndim else a for a in axes) != list(range(self.ndim)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of the {self.ndim} axes of {self.shape}")
        return Transpose.apply(self, axes=tuple(a % self.ndim for a in axes))

    def swapaxes(self, a: int, b: int) -> Tensor:
        perm = list(range(self.ndim))
        a, b = _axes(a, self.ndim, "swapaxes")[0], _axes(b, self.ndim, "swapaxes")[0]
        perm[a], perm[b] = b, a
        return self.transpose(*perm)

    def broadcast_to(self, *shape: Any) -> Tensor:
        return BroadcastTo.apply(self, shape=_shape(shape))

    def squeeze(self, axis: Any = None) -> Tensor:
        """Drop the given size-1 axes (all size-1 axes by default); others given are kept, as PyTorch."""
        axes = range(self.ndim) if axis is None else _axes(axis, self.ndim, "squeeze")
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in axes or n != 1))

    def unsqueeze(self, axis: int) -> Tensor:
        axis = _axes(axis, self.ndim + 1, "unsqueeze")[0]
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def pad(self, pad_width: Any, value: Any = 0.0) -> Tensor:
        """(n0, n1, ...) -> (b0 + n0 + a0, b1 + n1 + a1, ...) as np.pad's constant mode: pad_width is an
        int, one (before, after) pair, or a pair per axis. self is added into zeros at a tuple of slices
        (IndexAdd, the adjoint of slicing), and `value`, cast to self's dtype, is selected outside."""
        w = np.asarray(pad_width)
        if w.size and w.dtype.kind not in "iu":
            raise TypeError(f"pad: pad_width must hold ints, got {pad_width!r}")
        if w.size and w.min() < 0:
            raise ValueError(f"pad: pad_width {pad_width!r} has a negative width (as NumPy refuses); slice to crop")
        try:
            w = np.broadcast_to(w, (self.ndim, 2)).tolist()
        except ValueError:
            raise ShapeError(f"pad: pad_width {pad_width!r} does not fit shape {self.shape}; give an int, "
                             f"one (before, after) pair or {self.ndim} pairs") from None
        inner = tuple(slice(b, b + n) for n, (b, _) in zip(self.shape, w))
        out = IndexAdd.apply(self, shape=tuple(b + n + a for n, (b, a) in zip(self.shape, w)), index=inner)
        v = np.array(value).astype(self.dtype)
        if v.tobytes() == bytes(v.itemsize):  # all bits zero: +0, which the zeros already hold (-0.0 is not)
            return out
        outside = np.ones(out.shape, bool)
        outside[inner] = False
        return where(outside, v, out)

    def gather(self, axis: int, index: Any) -> Tensor:
        """out[i][j][k] = self[index[i][j][k]][j][k] for axis 0 (likewise for the others), as torch.gather:
        index (a Tensor or ndarray of ints) has self's ndim, no larger than self but along `axis`, and out
        has index's shape. A GetItem with integer arrays (index along `axis`, np.indices elsewhere), so
        repeated indices accumulate in the gradient."""
        idx = np.array(index._data if isinstance(index, Tensor) else index)  # a copy: backward scatters by it
        if idx.dtype.kind not in "iu":
            raise TypeError(f"gather: index must hold integers, got {idx.dtype}")
        if self.ndim == 0 and idx.ndim == 0:  # as PyTorch: a 0-d tensor gathers as a 1-d one
            return self.reshape(1).gather(axis, idx.reshape(1)).reshape(())
        ax = _axes(axis, self.ndim, "gather")[0]
        if idx.ndim != self.ndim or any(m > n for d, (m, n) in enumerate(zip(idx.shape, self.shape)) if d != ax):
            raise ShapeError(f"gather: index of shape {idx.shape} does not fit input {self.shape} along axis {ax}: "
                             f"it needs {self.ndim} dims, each no larger than the input's except axis {ax}")
        bad = idx[(idx < 0) | (idx >= self.shape[ax])]
        if bad.size:
            raise IndexError(f"gather: index {bad.flat[0]} is out of range for axis {ax} of size {self.shape[ax]} "
                             "(negative indices are refused, as PyTorch)")
        grid: list[np.ndarray] = list(np.indices(idx.shape, sparse=True))
        grid[ax] = idx
        return self[tuple(grid)]

    def __getitem__(self, index: Any) -> Tensor:
        """NumPy indexing: ints, slices, None, ..., bool masks, integer arrays (repeated
        indices accumulate in the gradient)."""
        index = index if isinstance(index, tuple) else (index,)
        # every advanced index (an array, a list, a tuple or buffer inside the index) becomes an array of
        # our own: GetItem's backward scatters by it (repeats accumulate), whatever the caller does to theirs
        index = tuple(np.array(i._data) if isinstance(i, Tensor) else _list_index(i)
                      if isinstance(i, (np.ndarray, list, tuple, range, memoryview, array.array))
                      else i for i in index)
        return GetItem.apply(self, index=index)


def _list_index(i: Any) -> np.ndarray:
    """An index sequence as an array of our own; an empty one selects nothing (np.array([]) is float64)."""
    a = np.array(i)
    return a.astype(np.intp) if a.size == 0 and a.dtype.kind == "f" else a


def _operands(a: Any, b: Any) -> tuple[Tensor, Any]:
    """(a, b) with a a Tensor when either is (a number or ndarray beside a Tensor takes its rules)."""
    if isinstance(a, Tensor):
        return a, b
    return (b._lift(a) if isinstance(b, Tensor) else Tensor(a)), b


def maximum(a: Any, b: Any) -> Tensor:
    """Element-wise max of a and b (either may be a number or ndarray), broadcasting; a tie splits
    the gradient evenly."""
    a, b = _operands(a, b)
    return a.maximum(b)


def minimum(a: Any, b: Any) -> Tensor:
    """Element-wise min of a and b, as maximum."""
    a, b = _operands(a, b)
    return a.minimum(b)


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """a where cond, else b (broadcasting all three). The gradient is selected, not multiplied by a
    mask: the unselected side gets exactly 0 even where the upstream gradient is infinite."""
    c = np.array(cond._data if isinstance(cond, Tensor) else cond)  # a copy: backward selects by it
    if c.dtype != np.bool_:
        raise TypeError(f"where: cond must be bool, got {c.dtype}; compare first, e.g. tg.where(x > 0, x, 0)")
    a, b = _operands(a, b)
    return Where.apply(*a._pair(b), cond=c, exact=True)


def _tensors(tensors: Any, op: str) -> list[Tensor]:
    """The inputs of cat and stack: a non-empty list or tuple of Tensors (PyTorch takes no numbers)."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: expected a list or tuple of Tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ShapeError(f"{op}: expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected a Tensor as element {i}, got {type(t).__name__}; wrap it: tg.tensor(x)")
    return list(tensors)


def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis: shapes (..., n_i, ...) -> (..., sum n_i, ...), dtypes
    promoted as the binary ops do. Two tensors are joined by padding each to the sum with -0.0 and
    adding: x + -0.0 == x for every x (also -0.0, which a +0.0 padding would turn into +0.0)."""
    ts = _tensors(tensors, "cat")
    if ts[0].ndim == 0:
        raise ShapeError("cat: zero-dimensional tensors cannot be concatenated; use tg.stack")
    ax = _axes(axis, ts[0].ndim, "cat")[0]
    for i, t in enumerate(ts):
        if t.ndim != ts[0].ndim or any(n != m for d, (n, m) in enumerate(zip(t.shape, ts[0].shape)) if d != ax):
            raise ShapeError(f"cat: tensor {i} has shape {t.shape} but tensor 0 has {ts[0].shape}; "
                             f"all must match except along axis {ax}")
    def join(a: Tensor, b: Tensor) -> Tensor:  # + promotes the dtypes as every binary op does (_pair)
        wa, wb = [(0, 0)] * a.ndim, [(0, 0)] * a.ndim
        wa[ax], wb[ax] = (0, b.shape[ax]), (a.shape[ax], 0)
        return a.pad(wa, value=-0.0) + b.pad(wb, value=-0.0)
    parts = ts
    while len(parts) > 1:  # joined pairwise, as a tree: each element is copied log2(k) times, not k
        parts = [join(a, b) for a, b in zip(parts[::2], parts[1::2])] + parts[len(parts) // 2 * 2:]
    return parts[0] if len(ts) > 1 else parts[0].clone()


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join equal-shaped tensors along a new axis: k of shape s -> s[:axis] + (k,) + s[axis:]."""
    ts = _tensors(tensors, "stack")
    for i, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise ShapeError(f"stack: tensor {i} has shape {t.shape} but tensor 0 has {ts[0].shape}; "
                             "stack needs equal shapes")
    ax = _axes(axis, ts[0].ndim + 1, "stack")[0]
    return cat([t.unsqueeze(ax) for t in ts], ax)


# engine.py and ops.py make Tensors at run time but cannot import this module when they load (it builds
# on them): now that Tensor exists, they bind what they use (no import order is load-bearing)
engine._link()
ops._link()
