"""Composites as short functions of Tensor ops: normalization, softmax, losses. No fused op and no
hand-written backward anywhere: autograd differentiates the graph these functions record, and the
tests check the result against the formulas in tinygrad_bn/analytic.py."""
from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable
from typing import Any, overload

import numpy as np

from ..engine import ShapeError, no_grad, scope
from ..tensor import Tensor, where

STAGES = ("mu", "xc", "var", "std", "x_hat")  # the named nodes of the normalization graph, in order


def standardize(x: Tensor, axes: tuple[int, ...], eps: float, mark: Callable[[str, Tensor], Tensor] | None = None,
                ) -> dict[str, Tensor]:
    """The normalization graph of docs/course.md section 2, one named Tensor per stage:
        mu = mean(x), xc = x - mu, var = mean(xc^2) (biased: divide by m),
        std = sqrt(var + eps), x_hat = xc / std       (statistics over `axes`, kept as size-1 dims).
    Each stage passes through `mark` (tg.check.node, for an audit that perturbs one node and
    recomputes what depends on it)."""
    s: dict[str, Tensor] = {"x": x}

    def stage(name: str, value: Tensor) -> Tensor:
        s[name] = mark(name, value) if mark is not None else value
        if s[name].name is None and s[name].requires_grad:
            s[name].name = name
        return s[name]

    def centered(mu: Tensor) -> tuple[Tensor, Tensor]:
        xc = stage("xc", x - stage("mu", mu))
        return xc, stage("var", (xc * xc).mean(axes, keepdims=True))

    xc, var = centered(x.mean(axes, keepdims=True))
    if mark is None and _imprecise_mean(x, s["mu"], var, eps):  # (an audit marks each stage once: plain mean)
        # A float32 sum is off by a few to ~sqrt(m) ulps of |mu| (same-signed data), and where the
        # spread is as small as that (a constant row: xc is all error) x_hat = error / sqrt(eps),
        # 0.3 for a row of 1e4 (PyTorch, accumulating in float64, gives 0). Then mu = c + mean(x - c)
        # for c a detached sample of each group: x - c is exact near c, so its mean is accurate to
        # the spread, and exactly 0 for a constant. (Checked on (1, C) statistics: free otherwise.)
        c = Tensor._wrap(x._data[tuple(slice(0, 1) if i in axes else slice(None) for i in range(x.ndim))].copy())
        c.name = "a sample (detached)"
        xc, var = centered((x - c).mean(axes, keepdims=True) + c)
    std = stage("std", (var + eps).sqrt())
    # xc / std as xc * (1 / std): the same quotient, but the per-channel division happens once on
    # (1, C) and the big array is only multiplied, forward and backward (no -out / std pass)
    stage("x_hat", xc * (1 / std))
    return s


def _imprecise_mean(x: Tensor, mu: Tensor, var: Tensor, eps: float) -> bool:
    """Whether a float32 mean's rounding could move x_hat by more than 1e-5 somewhere (~100 float32
    ulps of 1): only where the spread is tiny beside the mean. The rounding is taken as sqrt(m) +
    log2(m) + 1 ulps of |mu| (NumPy sums axis 0 of a C-ordered array row by row, not pairwise:
    38-47 ulps measured at m = 8192); a NaN channel leaves the others their check."""
    if x.dtype.itemsize >= 8 or not x.size:
        return False
    m = x.size // max(mu.size, 1)
    k = np.finfo(x.dtype).eps * (math.sqrt(m) + math.log2(m) + 1) / 1e-5
    excess = mu._data * mu._data  # error^2 - (1e-5)^2 (var + eps), in place: this runs on every forward
    excess *= k * k
    excess -= var._data
    return bool((excess > eps).any())


def _need_tensor(fn: str, **args: Any) -> None:
    for k, v in args.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"{fn}: {k} must be a Tensor, got {type(v).__name__} (wrap arrays with tg.Tensor)")


def _size(fn: str, what: str, n: Any) -> int:
    """A size as a Python int: ints and NumPy integers (operator.index) as PyTorch accepts, never a float."""
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{fn}: {what} must be an int, got {type(n).__name__} {n!r}") from None
    if n < 0:
        raise ValueError(f"{fn}: {what} must be >= 0, got {n}")
    return n


def _shape(fn: str, what: str, shape: Any) -> tuple[int, ...]:
    """An int or a sequence of ints (NumPy integers too) as a tuple of Python ints."""
    if isinstance(shape, (int, np.integer)):
        return (_size(fn, what, shape),)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{fn}: {what} must be an int or a tuple of ints, got {type(shape).__name__} {shape!r}")
    return tuple(_size(fn, what, n) for n in shape)


def _need_float(fn: str, x: Tensor) -> None:
    """PyTorch's normalization kernels exist for floating input only (NotImplementedError for int and bool)."""
    if x.dtype.kind != "f":
        raise NotImplementedError(f"{fn}: input of dtype {x.dtype} is not supported, it must be floating; "
                                  "cast it first, e.g. x.float() or x.double()")


@overload
def _channel(v: Tensor, ndim: int) -> Tensor: ...
@overload
def _channel(v: None, ndim: int) -> None: ...
def _channel(v: Tensor | None, ndim: int) -> Tensor | None:
    """A per-channel (C,) vector shaped (1, C, 1, ...) to broadcast against (N, C, ...); against
    (N, C) it broadcasts as it is (no reshape op in the graph)."""
    return v if v is None or ndim == 2 else v.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """y = gamma * x_hat + beta (docs/course.md section 2: z_tilde), either part optional."""
    y = x_hat if weight is None else x_hat * weight
    return y if bias is None else y + bias


def _check_channels(x: Tensor, n: int, what: str) -> None:
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expected input (N, C, ...) with at least 2 dims, got {x.shape}")
    if x.shape[1] != n:
        raise ShapeError(f"batch_norm: {what} has {n} channels but the input {x.shape} has {x.shape[1]} in axis 1")


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
               ) -> Tensor:
    """Batch norm of x (N, C, ...) per channel C, statistics over N and the trailing axes.
    Training: normalize with the batch mean and biased variance (docs/course.md section 2), and update
    running stats in place: running = (1 - momentum) running + momentum batch_stat, with the
    UNBIASED batch variance (PyTorch's convention). Eval: normalize with the running statistics
    (docs/course.md section 5), which are constants of the graph. NaN in x propagates to its channel."""
    # every check comes before the first write: a bad call leaves the running statistics as they were
    given = {k: v for k, v in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                                ("running_var", running_var)) if v is not None}
    _need_tensor("batch_norm", x=x, **given)
    _need_float("batch_norm", x)
    if (running_mean is None) != (running_var is None):  # PyTorch's ValueError; one of them would be updated alone
        raise ValueError(f"batch_norm: running_mean and running_var must both be Tensors or both be None, got "
                         f"{'running_var' if running_var is None else 'running_mean'}=None; pass both or neither")
    for what in ("running_mean", "running_var"):  # updated in place: state of our own, not values a graph computed
        if what in given and given[what]._ctx is not None:
            raise ValueError(f"batch_norm: {what} was computed by {given[what]._ctx!r}; running statistics are "
                             "updated in place and must be tensors of their own (buffers), e.g. t.detach().clone()")
    for what, v in given.items():
        if v.ndim != 1:
            raise ShapeError(f"batch_norm: {what} must be 1-D (C,), got {v.shape}")
        _check_channels(x, v.shape[0], what)
    axes = (0,) + tuple(range(2, x.ndim)) if x.ndim >= 2 else (0,)
    m = math.prod(x.shape[a] for a in axes)
    if training and m <= 1:
        raise ShapeError(f"batch_norm: expected more than 1 value per channel when training, got input {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: eval mode needs running_mean and running_var (or pass training=True)")
    # PyTorch's rule: a constant channel has batch variance 0, so eps is all that keeps x_hat = 0 / sqrt(0 + eps)
    # finite in training (eps <= 0 is a ValueError); in eval the running variance is positive, eps = 0 is allowed
    if not (eps > 0 if training else eps >= 0):
        raise ValueError(f"batch_norm: eps must be {'positive during training' if training else 'non-negative'}, "
                         f"got {eps}; use e.g. eps=1e-5")
    with scope("batch_norm"):
        if training:
            s = standardize(x, axes, eps)
            x_hat = s["x_hat"]
        else:
            assert running_mean is not None and running_var is not None  # (eval without them raised above)
            x_hat = (x - _channel(running_mean, x.ndim)) / (_channel(running_var, x.ndim) + eps).sqrt()
        y = _affine(x_hat, _channel(weight, x.ndim), _channel(bias, x.ndim))
    if training and running_mean is not None and running_var is not None:  # (both or neither, checked above)
        with no_grad():  # the running averages are state, not part of the graph
            mean = (1 - momentum) * running_mean._data + momentum * s["mu"]._data.ravel()
            var = (1 - momentum) * running_var._data + momentum * s["var"]._data.ravel() * (m / (m - 1))  # unbiased
            # both computed before either is written, so the two statistics change together or not at all
            running_mean.writable_data()[...] = mean
            running_var.writable_data()[...] = var
    return y


def layer_norm(x: Tensor, normalized_shape: int | tuple[int, ...], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize each example over its trailing `normalized_shape` axes (the same graph as batch
    norm with the roles of the axes swapped); weight, bias have shape normalized_shape."""
    _need_tensor("layer_norm", x=x)
    _need_float("layer_norm", x)
    shape = _shape("layer_norm", "normalized_shape", normalized_shape)
    if x.shape[x.ndim - len(shape):] != shape or x.ndim < len(shape):
        raise ShapeError(f"layer_norm: input {x.shape} does not end in normalized_shape {shape}")
    for what, v in (("weight", weight), ("bias", bias)):
        if v is not None and v.shape != shape:
            raise ShapeError(f"layer_norm: {what} must have shape {shape}, got {v.shape}")
    with scope("layer_norm"):
        return _affine(standardize(x, tuple(range(x.ndim - len(shape), x.ndim)), eps)["x_hat"], weight, bias)


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """PyTorch's group norm: x (N, C, *) seen as (N, G, C/G * prod(*)), each group of C/G channels
    (with the trailing axes) standardized over the last axis by the batch norm graph, shaped back, then
    y = gamma_c x_hat + beta_c per channel. G = 1 is layer norm over (C, *); G = C is instance norm."""
    _need_tensor("group_norm", x=x, **{k: v for k, v in (("weight", weight), ("bias", bias)) if v is not None})
    _need_float("group_norm", x)
    g = _size("group_norm", "num_groups", num_groups)
    if x.ndim < 2:
        raise ShapeError(f"group_norm: expected input (N, C, ...) with at least 2 dims, got {x.shape}")
    n, c = x.shape[:2]
    if g == 0 or c % g:
        raise ShapeError(f"group_norm: the {c} channels of input {x.shape} (axis 1) do not split into "
                         f"num_groups={g} equal groups; use a num_groups that divides {c}")
    for what, v in (("weight", weight), ("bias", bias)):
        if v is not None and v.shape != (c,):
            raise ShapeError(f"group_norm: {what} must have shape ({c},), one per channel of input {x.shape}, "
                             f"got {v.shape}")
    with scope("group_norm"):
        groups = x.reshape((n, g, x.size // max(n * g, 1)))  # (N, G, C/G * prod(*)): a group is one row
        x_hat = standardize(groups, (2,), eps)["x_hat"].reshape(x.shape)
        return _affine(x_hat, _channel(weight, x.ndim), _channel(bias, x.ndim))


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.softmax(axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.log_softmax(axis)


def relu(x: Tensor) -> Tensor:
    return x.relu()


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x (..., in) @ w^T + b, with w (out, in) and b (out,) as in PyTorch."""
    _need_tensor("linear", x=x, w=w)
    if x.shape[-1] != w.shape[-1]:
        raise ShapeError(f"linear: input {x.shape} has {x.shape[-1]} features, "
                         f"the weight {w.shape} expects {w.shape[-1]}")
    y = x @ w.T
    return y if b is None else y + b


def embedding(indices: Any, weight: Tensor) -> Tensor:
    """weight[indices]: the rows of weight (num_embeddings, dim) at integer indices of any shape, giving
    (*indices.shape, dim). The gradient adds each upstream row into its index's row of d weight (the
    adjoint of indexing), so a repeated index accumulates. The indices themselves have no gradient."""
    _need_tensor("embedding", weight=weight)
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {weight.shape}")
    idx = indices._data if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    bad = (idx < 0) | (idx >= weight.shape[0])
    if bad.any():  # (negative ones too, as PyTorch: a row is never counted from the end)
        raise IndexError(f"embedding: index {idx[bad].flat[0]} out of range for {weight.shape[0]} embeddings "
                         f"(at position {tuple(int(i) for i in np.argwhere(bad)[0])} of indices {idx.shape})")
    with scope("embedding"):
        return weight[idx]


def cross_entropy(logits: Tensor, target: Any, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """PyTorch's cross_entropy, -sum_c y_c log softmax(z)_c per position (docs/course.md section 10). logits (C,),
    (N, C) or (N, C, d1, ...), classes in axis 1; target class indices (), (N,) or (N, d1, ...) (an int
    ndarray or Tensor), or probabilities / one-hot of the logits' shape. With class weights w (C,) (else
    1), smoothing eps and p = softmax(z), per position:
        indices:       l = (1 - eps) w_y (-log p_y) + eps/C sum_c w_c (-log p_c); 0 where y == ignore_index
        probabilities: l = -sum_c w_c ((1 - eps) y_c + eps/C) log p_c
    reduction "none" | "sum" | "mean": sum l / sum of w_y over the positions not ignored (indices: PyTorch's
    weighted mean, NaN when all are ignored), or / the number of positions (probabilities)."""
    _need_tensor("cross_entropy", logits=logits)
    _check_reduction("cross_entropy", reduction)
    if logits.ndim == 0:
        raise ShapeError("cross_entropy: logits must be (C,), (N, C) or (N, C, d1, ...), got ()")
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing, (int, float, np.number)) \
            or not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    ignore_index = _index("cross_entropy", "ignore_index", ignore_index)
    ax = min(logits.ndim - 1, 1)  # the class axis
    n_cls, eps = logits.shape[ax], float(label_smoothing)
    w = _class_weights(weight, n_cls, logits)
    wb = w if w is None or logits.ndim <= 2 else w.reshape((-1,) + (1,) * (logits.ndim - 2))  # (C, 1, ...)
    t = target._data if isinstance(target, Tensor) else np.asarray(target)
    if t.shape == logits.shape:  # probabilities (one-hot included)
        if t.dtype.kind != "f":
            raise TypeError(f"cross_entropy: a target shaped like the logits {logits.shape} holds probabilities and "
                            f"must be floating, got {t.dtype}; class indices have shape "
                            f"{logits.shape[:ax] + logits.shape[ax + 1:]}")
        if ignore_index >= 0:  # (PyTorch's check: a negative one is accepted and has no effect)
            raise ValueError(f"cross_entropy: ignore_index={ignore_index} is not supported for probability targets; "
                             "leave it at -100 or pass class indices")
        with scope("cross_entropy"):
            y = target if isinstance(target, Tensor) else Tensor(t)
            y = y if not eps else y * (1 - eps) + eps / n_cls  # the target mixed with the uniform distribution
            logp = logits.log_softmax(axis=ax)
            return _reduce(-((logp if w is None else logp * wb) * y).sum(axis=ax), reduction)
    if t.shape != logits.shape[:ax] + logits.shape[ax + 1:]:
        raise ShapeError(f"cross_entropy: target {t.shape} fits neither class indices "
                         f"{logits.shape[:ax] + logits.shape[ax + 1:]} nor probabilities {logits.shape} "
                         f"for logits {logits.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: class-index targets must be integers, got {t.dtype} {t.shape}"
                        f"; probability targets must have the logits' shape {logits.shape}")
    ignored = t == ignore_index
    bad = (t < 0) | (t >= n_cls)
    bad &= ~ignored
    if bad.any():
        raise IndexError(f"cross_entropy: label {t[bad].flat[0]} out of range for {n_cls} classes "
                         f"(at index {tuple(int(i) for i in np.argwhere(bad)[0])})")
    some_ignored = bool(ignored.any())
    with scope("cross_entropy"):
        z = logits
        if some_ignored:  # an ignored position's logits reach neither its loss nor the gradient (0, even if not finite)
            z = where(np.expand_dims(~ignored, ax), logits, 0.0)
            t = np.where(ignored, 0, t)  # any valid class: its loss is deselected below
        # -log softmax(z)_y = log sum_j exp(z_j - m) - (z_y - m) with m the detached max over the classes (the
        # loss is shift-invariant): only the true class's logit is gathered, log_softmax is never built
        shifted = z - z._shift((ax,))
        lse = shifted.exp().sum(axis=ax).log()
        grid: list[np.ndarray] = list(np.indices(t.shape, sparse=True))
        grid.insert(ax, t)
        losses = lse - shifted[tuple(grid)]
        w_y = None if w is None else w[t]
        if w_y is not None:
            losses = losses * w_y
        if eps:  # sum_c w_c (-log p_c) = sum_c w_c (lse - shifted_c), a sum of non-negative terms
            smooth = lse * n_cls - shifted.sum(axis=ax) if w is None else lse * w.sum() - (shifted * wb).sum(axis=ax)
            losses = losses * (1 - eps) + smooth * (eps / n_cls)
        if some_ignored:
            losses = where(ignored, 0.0, losses)
        if reduction != "mean" or (w is None and not some_ignored):
            return _reduce(losses, reduction)
        # the weighted mean: divide by the total weight of the targets counted (their number, unweighted)
        total = int((~ignored).sum()) if w_y is None else (w_y if not some_ignored else where(ignored, 0.0, w_y)).sum()
        return losses.sum() / total


def _index(fn: str, what: str, n: Any) -> int:
    """An int (a NumPy integer too, never a bool or a float) as a Python int."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{fn}: {what} must be an int, got {type(n).__name__} {n!r}")
    return int(n)


def _class_weights(weight: Any, n_cls: int, logits: Tensor) -> Tensor | None:
    """cross_entropy's per-class weights as a (C,) Tensor (an ndarray or list in the logits' dtype)."""
    if weight is None:
        return None
    if isinstance(weight, str):  # PyTorch's signature: weight comes third, reduction by keyword
        raise TypeError(f"cross_entropy: weight must be a (C,) array of class weights, got the string {weight!r}; "
                        f"pass reduction={weight!r} by keyword")
    w = weight if isinstance(weight, Tensor) else np.asarray(weight)
    if w.dtype.kind != "f" and (isinstance(weight, Tensor) or w.dtype.kind not in "iu"):
        raise TypeError(f"cross_entropy: weight must hold floating numbers, got {w.dtype}")
    if w.shape != (n_cls,):
        raise ShapeError(f"cross_entropy: weight must have shape (C,) = ({n_cls},), one per class of the logits "
                         f"{logits.shape}, got {w.shape}")
    return w if isinstance(w, Tensor) else Tensor(w.astype(logits.dtype))


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    """The per-element losses themselves ("none"), their sum, or their mean."""
    return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.mean()


def _check_reduction(fn: str, reduction: Any) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """(input - target)^2 per element, then its mean | sum | itself ("none", input's shape).
    target (a Tensor or an ndarray, gradients flow to a Tensor target too) should have input's
    shape; another shape broadcasts against it with a UserWarning, as in PyTorch."""
    _need_tensor("mse_loss", input=input)
    _check_reduction("mse_loss", reduction)
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    if target.shape != input.shape:
        warnings.warn(f"mse_loss: target shape {target.shape} differs from input shape {input.shape}; they "
                      "broadcast, which is likely wrong: make the shapes equal", UserWarning, stacklevel=2)
    diff = input - target  # (shapes that cannot broadcast: the ShapeError of the subtraction)
    if diff.dtype.kind != "f":  # PyTorch has no integer kernel either
        raise NotImplementedError(f"mse_loss: input {input.dtype} and target {target.dtype}: one of them must be "
                                  "floating, e.g. input.float()")
    return _reduce(diff.square(), reduction)


def one_hot(labels: Any, num_classes: int = -1) -> Tensor:
    """labels (...) of class indices in [0, num_classes) -> int64 (..., num_classes) with a 1 at each
    label; num_classes=-1 takes max(labels) + 1. An integer tensor: outside the graph, no gradient."""
    t = labels._data if isinstance(labels, Tensor) else np.asarray(labels)
    if t.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got dtype {t.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"one_hot: num_classes must be an int, got {type(num_classes).__name__} {num_classes!r}")
    if num_classes == -1 and t.size == 0:
        raise RuntimeError("one_hot: cannot infer the number of classes from empty labels; pass num_classes")
    if num_classes != -1 and num_classes < 1:
        raise RuntimeError(f"one_hot: num_classes must be -1 (max label + 1) or positive, got {num_classes}")
    n = int(t.max()) + 1 if num_classes == -1 else int(num_classes)
    for bad, what in ((t < 0, "must be non-negative"), (t >= n, f"must be smaller than num_classes={n}")):
        if bad.any():
            raise RuntimeError(f"one_hot: class values {what}, got label {t[bad].flat[0]} "
                               f"(at index {tuple(int(i) for i in np.argwhere(bad)[0])})")
    return Tensor((t[..., None] == np.arange(n)).astype(np.int64))


# ---------------------------------------------------------------------- convolution and pooling

def _pair(fn: str, what: str, v: Any, least: int) -> tuple[int, int]:
    """An int or a pair of ints (NumPy integers too) as (h, w) Python ints, each >= least."""
    vs = (v, v) if isinstance(v, (int, np.integer)) else v
    if not isinstance(vs, (tuple, list)) or len(vs) != 2 or \
            any(isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) for n in vs):
        raise TypeError(f"{fn}: {what} must be an int or a pair of ints, got {type(v).__name__} {v!r}")
    h, w = int(vs[0]), int(vs[1])
    if min(h, w) < least:  # PyTorch's RuntimeError ("non-positive stride", "negative padding"); ShapeError is both
        raise ShapeError(f"{fn}: {what} must be {'positive' if least else 'non-negative'}, got {v!r}")
    return h, w


def _positions(fn: str, x: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """(Ho, Wo) = ((H + 2 ph - KH) // sh + 1, (W + 2 pw - KW) // sw + 1), the window positions."""
    if x.ndim not in (3, 4):
        raise ShapeError(f"{fn}: expected input (N, C, H, W) or unbatched (C, H, W), got {x.shape}")
    h, w = x.shape[-2] + 2 * padding[0], x.shape[-1] + 2 * padding[1]
    if kernel[0] > h or kernel[1] > w:
        raise ShapeError(f"{fn}: kernel {kernel} is larger than the {'padded ' if any(padding) else ''}input "
                         f"{(h, w)} (input {x.shape}, padding {padding}); pad more or use a smaller kernel")
    return (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1


def _windows(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], positions: tuple[int, int]) -> Tensor:
    """The windows of x (..., H, W) as (..., Ho, Wo, KH, KW): win[..., p, q, i, j] = x[..., p*sh + i, q*sw + j],
    one gather by integer index arrays (im2col). Its backward is the scatter-add (col2im): an element in
    several windows (stride < kernel) sums what each sends it."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, positions
    rows = (np.arange(ho) * sh)[:, None, None, None] + np.arange(kh)[:, None]  # (Ho, 1, KH, 1)
    cols = (np.arange(wo) * sw)[:, None, None] + np.arange(kw)                # (Wo, 1, KW): broadcast together
    return x[..., rows, cols]                                                 # to (Ho, Wo, KH, KW)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] = 0) -> Tensor:
    """out[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] x_pad[n, c, p*sh + i, q*sw + j], PyTorch's conv2d
    (a cross-correlation): x (N, C, H, W) or unbatched (C, H, W), weight (O, C, KH, KW), bias (O,), x_pad
    is x with `padding` zeros on both sides of H and W; out (N, O, Ho, Wo), Ho = (H + 2 ph - KH) // sh + 1.
    Composed as a sum over the KH*KW kernel offsets (i, j) of w[:, :, i, j] (O, C) @ the strided slice
    x_pad[:, :, i::sh, j::sw] (N, C, Ho*Wo): the im2col product with its K axis unrolled."""
    _need_tensor("conv2d", x=x, weight=weight, **({} if bias is None else {"bias": bias}))
    st, pad = _pair("conv2d", "stride", stride, 1), _pair("conv2d", "padding", padding, 0)
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: weight must be 4-D (out_channels, in_channels, KH, KW), got {weight.shape}")
    if x.ndim in (3, 4) and x.shape[-3] != weight.shape[1]:
        raise ShapeError(f"conv2d: input {x.shape} has {x.shape[-3]} channels in axis {x.ndim - 3}, but weight "
                         f"{weight.shape} expects {weight.shape[1]}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ShapeError(f"conv2d: bias must have shape {weight.shape[:1]}, one value per output channel of "
                         f"weight {weight.shape}, got {bias.shape}")
    if min(weight.shape[2:]) < 1:
        raise ShapeError(f"conv2d: weight {weight.shape} has an empty kernel")
    kh, kw = weight.shape[2:]
    ho, wo = _positions("conv2d", x, (kh, kw), st, pad)
    _need_float("conv2d", x)
    for what, v in (("weight", weight), ("bias", bias)):
        if v is not None and v.dtype != x.dtype:  # as PyTorch, no silent promotion of one operand
            raise TypeError(f"conv2d: input is {x.dtype} but {what} is {v.dtype}; cast one, e.g. "
                            f"{what}.cast({str(x.dtype)!r})")
    (sh, sw), (ph, pw) = st, pad
    with scope("conv2d"):
        xb = x if x.ndim == 4 else x.reshape((1,) + x.shape)
        if ph or pw:
            xb = xb.pad(((0, 0), (0, 0), (ph, ph), (pw, pw)))
        n, c = xb.shape[:2]
        out: Tensor | None = None
        # summing KH*KW small matmuls measured 2.5 ms forward + backward at (64, 8, 8, 8) * (16, 8, 3, 3),
        # against 6.1 ms for one matmul of the gathered windows (_windows): its backward is an np.add.at
        for i in range(kh):
            for j in range(kw):
                patch = xb[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw].reshape(n, c, ho * wo)
                term = weight[:, :, i, j] @ patch  # (O, C) @ (N, C, Ho*Wo) -> (N, O, Ho*Wo)
                out = term if out is None else out + term
        assert out is not None  # (the kernel is not empty: checked above)
        if bias is not None:
            out = out + bias.reshape(-1, 1)
        return out.reshape(((n,) if x.ndim == 4 else ()) + (weight.shape[0], ho, wo))


def max_pool2d(x: Tensor, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
               ) -> Tensor:
    """out[n, c, p, q] = max_{i < KH, j < KW} x[n, c, p*sh + i, q*sw + j] for x (N, C, H, W) or (C, H, W);
    stride defaults to kernel_size. The maximum over the gathered windows (_windows), so the gradient goes
    to the maximal element of each window, and a tie of k maxima gives each 1/k (Tensor.max's rule;
    PyTorch sends all of it to one of them); an element in several windows collects from each."""
    _need_tensor("max_pool2d", x=x)
    k = _pair("max_pool2d", "kernel_size", kernel_size, 1)
    st = k if stride is None else _pair("max_pool2d", "stride", stride, 1)
    positions = _positions("max_pool2d", x, k, st)
    with scope("max_pool2d"):
        return _windows(x, k, st, positions).max(axis=(-2, -1))


__all__ = ["batch_norm", "layer_norm", "softmax", "log_softmax", "relu", "linear", "cross_entropy", "standardize",
           "group_norm", "embedding",
           "STAGES", "mse_loss", "one_hot", "conv2d", "max_pool2d"]
