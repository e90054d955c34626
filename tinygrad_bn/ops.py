"""THE primitive set. Each op: `forward` on ndarrays, `backward(grad, out)` in Tensor ops, one
gradient (or None) per input. Gradients may come back in the broadcast (output) shape: the
engine sums them back to each input's shape, so no rule here deals with broadcasting.
Everything else (sub-graphs like mean, var, softmax, batch norm) is a composite in tensor.py
or nn/functional.py."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .engine import Function

if TYPE_CHECKING:  # tensor.py builds on this module, so it is not imported here: _frozen is bound by _link
    from .tensor import Tensor, _frozen


def _link() -> None:
    """Bind _frozen, which backward rules use; tensor.py calls this once at its end (as engine._link)."""
    global _frozen
    from .tensor import _frozen


def _const(a: np.ndarray) -> Tensor:
    """A value that backward treats as a constant (a mask, a sign): no graph behind it."""
    return _frozen(np.asarray(a))


def _select(grad: Tensor, share: np.ndarray) -> Tensor:
    """grad * share where share != 0, exactly 0 elsewhere. Selected before multiplying: where an op
    sends no gradient, an infinite upstream gradient must give 0, not 0 * inf = NaN (PyTorch's
    relu and maximum do the same), and no NaN is made on the way (detect_anomaly stays quiet)."""
    kept = Where.apply(grad, _const(np.zeros((), grad.dtype)), cond=share != 0)
    return kept if share.dtype == np.bool_ else kept * _const(share.astype(grad.dtype))


# ------------------------------------------------------------------------------------ unary

class Neg(Function):
    reads_inputs = False
    def forward(self, x): return np.negative(x)
    def backward(self, grad, out): return -grad


class Exp(Function):
    reads_inputs = False
    def forward(self, x): return np.exp(x)
    def backward(self, grad, out): return grad * out                       # d e^x = e^x


class Log(Function):
    def forward(self, x): return np.log(x)
    def backward(self, grad, out): return grad / self.parents[0]             # d log x = 1/x


class Sqrt(Function):
    reads_inputs = False
    def forward(self, x): return np.sqrt(x)
    def backward(self, grad, out): return grad / (out * 2)                  # d sqrt x = 1/(2 sqrt x)


class Abs(Function):
    def forward(self, x): return np.abs(x)
    def backward(self, grad, out): return _select(grad, np.sign(self.parents[0]._data))  # sign x; 0 at 0


class Relu(Function):
    reads_inputs = False
    def forward(self, x): return np.maximum(0, x)   # a tie keeps the first: -0.0 and NaN stay, as PyTorch
    def backward(self, grad, out): return _select(grad, ~(out._data <= 0))  # subgradient 0 at 0; NaN passes


class Tanh(Function):
    reads_inputs = False
    def forward(self, x): return np.tanh(x)
    def backward(self, grad, out): return grad * (1 - out * out)            # 1 - tanh^2


class Sigmoid(Function):
    reads_inputs = False
    def forward(self, x):
        # 1/(1+e^-x) = e^x/(1+e^x): take the form whose exp is of -|x|, so it never overflows
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    def backward(self, grad, out): return grad * (out * (1 - out))          # s (1 - s)


class Cast(Function):
    reads_inputs = False
    def forward(self, x, dtype):
        return x.astype(dtype)
    def backward(self, grad, out): return grad.cast(self.parents[0].dtype)


class Where(Function):
    """cond ? a : b for a constant bool array `cond` (a comparison, which has no gradient)."""
    reads_inputs = False
    def forward(self, a, b, cond, exact=False):
        self.cond = cond
        if not exact and b.ndim == 0 and b == 0 and a.shape == cond.shape and a.dtype.kind == "f":
            # a gradient where cond, else 0: a * cond is ten times faster than NumPy's where and the same
            # but for 0 * inf = NaN (then where) and the sign of a zero (-0.0 for negative a: a gradient's
            # zero has no sign that matters; tg.where, whose values do, asks for exact)
            out = a * cond
            return out if not np.isnan(out).any() else np.where(cond, a, b)
        return np.where(cond, a, b)
    def backward(self, grad, out):                                          # each side gets grad where chosen
        zero = _const(np.zeros((), grad.dtype))
        return (Where.apply(grad, zero, cond=self.cond) if self.needs[0] else None,
                Where.apply(zero, grad, cond=self.cond) if self.needs[1] else None)


# ----------------------------------------------------------------------------------- binary

class Add(Function):
    reads_inputs = False
    def forward(self, a, b): return a + b
    def backward(self, grad, out): return grad, grad


class Sub(Function):
    reads_inputs = False
    def forward(self, a, b): return a - b
    def backward(self, grad, out):  # a broadcast b gets -sum(grad): sum first, so the negation is small
        return grad, -grad._sum_to(self.parents[1].shape) if self.needs[1] else None


class Mul(Function):
    def forward(self, a, b):
        # a big broadcast (often a gradient) times a number: scale each distinct value once
        if b.ndim == 0 and a.size > 4096 and 0 in a.strides:
            distinct = a[tuple(slice(None) if st else slice(0, 1) for st in a.strides)]
            return _broadcast(distinct * b, a.shape)
        return a * b
    def backward(self, grad, out):
        a, b = self.parents
        if a is b:  # a * a: d(a^2) = 2a da in one product, exactly what the two halves would sum to
            # (doubling is exact); doubling grad, often a stride-0 broadcast from a sum, reads less
            return grad * 2 * a, None
        return grad * b if self.needs[0] else None, grad * a if self.needs[1] else None


class Div(Function):
    def forward(self, a, b): return a / b
    def backward(self, grad, out):                                          # d(a/b) = da/b - (a/b) db/b
        b = self.parents[1]  # a broadcast b: sum grad * out down to b's shape before the small division
        return grad / b if self.needs[0] else None, -(grad * out)._sum_to(b.shape) / b if self.needs[1] else None


class Pow(Function):
    def forward(self, a, b): return np.power(a, b)
    def backward(self, grad, out):                                          # d a^b = b a^(b-1) da + a^b log(a) db
        # PyTorch's conventions, selected (not multiplied) so an infinite grad gives no NaN: the first
        # term is 0 where b = 0 (0 * a^-1 would be nan at a = 0), the second is 0 where a = 0 and b >= 0
        # (a^b log a -> 0), and -inf * grad where a = 0 and b < 0 (inf * log 0)
        a, b = self.parents
        one, live = _const(np.ones((), a.dtype)), b._data != 0  # a^(b-1) as a^0 where b = 0: no 0^-1 = inf
        da = _select(grad, live) * b * a ** Where.apply(b - 1, one * 0, cond=live) if self.needs[0] else None
        flat = (a._data == 0) & (b._data >= 0)
        db = _select(grad, ~flat) * out * Where.apply(one, a, cond=flat).log() if self.needs[1] else None
        return da, db


class Maximum(Function):
    def forward(self, a, b): return np.maximum(a, b)
    def backward(self, grad, out):
        # the larger input takes the gradient, a tie splits it evenly, and beside a NaN (no comparison
        # holds) both take it, as PyTorch does
        a, b = self.parents[0]._data, self.parents[1]._data
        return _select(grad, self.share(a, b)), _select(grad, self.share(b, a))
    @staticmethod
    def share(a, b): return np.where(a == b, 0.5, np.where(a < b, 0.0, 1.0))  # a's share


class Minimum(Maximum):
    def forward(self, a, b): return np.minimum(a, b)
    @staticmethod
    def share(a, b): return np.where(a == b, 0.5, np.where(a > b, 0.0, 1.0))


# ----------------------------------------------------------------------------------- reduce

def _kept(shape: tuple[int, ...], axis: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a reduction over `axis` with keepdims."""
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


class Sum(Function):
    reads_inputs = False
    def forward(self, x, axis, keepdims, dtype=None):  # dtype: accumulate (and return) in it
        self.axis = axis
        return x.sum(axis=axis, keepdims=keepdims, dtype=dtype)
    def backward(self, grad, out):                                          # adjoint of sum: broadcast
        x = self.parents[0]  # cast while small (a float64 sum of float32 input), not after broadcasting
        if grad._data.dtype != x._data.dtype and x._data.dtype.kind == "f":
            grad = grad.cast(x._data.dtype)
        kept = _kept(x.shape, self.axis)
        return BroadcastTo.apply(grad if grad.shape == kept else Reshape.apply(grad, shape=kept), shape=x.shape)


class Max(Function):
    def forward(self, x, axis, keepdims):
        self.axis = axis
        return x.max(axis=axis, keepdims=keepdims)
    def backward(self, grad, out):
        # the maximal elements share the gradient evenly (a tie of k gets 1/k each), as PyTorch's amax
        kept = _kept(self.parents[0].shape, self.axis)
        hit = self.parents[0]._data == out._data.reshape(kept)
        return _select(grad.reshape(kept), hit / hit.sum(axis=self.axis, keepdims=True))


class Min(Max):  # the same rule: the minimal elements share the gradient
    def forward(self, x, axis, keepdims):
        self.axis = axis
        return x.min(axis=axis, keepdims=keepdims)


# --------------------------------------------------------------------------------- movement

class Reshape(Function):
    reads_inputs, aliases = False, True  # (an op that saves the view holds the memory it views: guards._lock)
    def forward(self, x, shape): return x.reshape(shape)
    def backward(self, grad, out): return grad.reshape(self.parents[0].shape)


class Transpose(Function):
    reads_inputs, aliases = False, True
    def forward(self, x, axes):
        self.axes = axes
        return np.transpose(x, axes)
    def backward(self, grad, out): return grad.transpose(*np.argsort(self.axes).tolist())


def _broadcast(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """np.broadcast_to(x, shape): a read-only view with stride 0 along the stretched axes, built
    directly for contiguous x (np.broadcast_to's general machinery costs ten times as much on
    small arrays)."""
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"cannot broadcast {x.shape} to {shape}")
    if not x.flags.c_contiguous:
        return np.broadcast_to(x, shape)
    strides = [0] * lead
    for n, m, st in zip(x.shape, shape[lead:], x.strides):
        if n != m and n != 1:
            raise ValueError(f"cannot broadcast {x.shape} to {shape}")
        strides.append(st if n == m else 0)
    view = np.ndarray(shape, x.dtype, x, 0, strides)
    view.setflags(write=False)
    return view


class BroadcastTo(Function):
    reads_inputs, aliases = False, True
    def forward(self, x, shape): return _broadcast(x, shape)
    def backward(self, grad, out): return grad                              # the engine sums it back


class GetItem(Function):
    reads_inputs, aliases = False, True
    def forward(self, x, index):
        self.index = index
        return x[index]
    def backward(self, grad, out):                                          # adjoint: add into zeros
        return IndexAdd.apply(grad, shape=self.parents[0].shape, index=self.index)


class IndexAdd(Function):
    """zeros(shape) with x added at `index`; repeated indices accumulate (np.add.at semantics)."""
    reads_inputs = False
    def forward(self, x, shape, index):
        self.index = index
        out = np.zeros(shape, x.dtype)
        if any(isinstance(i, np.ndarray) for i in index):  # (Tensor.__getitem__ makes every advanced index one)
            np.add.at(out, index, x)
        else:  # basic indexing never repeats an element, so plain assignment is exact (and fast)
            out[index] = x
        return out
    def backward(self, grad, out): return grad[self.index]


# ----------------------------------------------------------------------------------- matmul

class MatMul(Function):
    def forward(self, a, b): return np.matmul(a, b)
    def backward(self, grad, out):                                          # dA = G B^T, dB = A^T G
        a, b = self.parents
        if not self.needs[1]:
            db = None
        elif b.ndim == 2 and b._data.flags.f_contiguous and not b._data.flags.c_contiguous:
            db = (grad.swapaxes(-1, -2) @ a).swapaxes(-1, -2)  # b is a transpose (x @ w.T): so is dB, and
        else:                                                  # w's gradient comes out in w's own layout
            db = a.swapaxes(-1, -2) @ grad
        return grad @ b.swapaxes(-1, -2) if self.needs[0] else None, db
