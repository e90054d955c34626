"""Guards against silently wrong gradients: anomaly mode (NaN/Inf named at the op that made it)
and in-place safety (arrays a live graph saved are read-only; replaced data is caught at backward).
The engine calls these from Function.apply and the backward sweep."""
from __future__ import annotations

import contextlib
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import Function, _GradMode, _State

if TYPE_CHECKING:
    from .tensor import Tensor


class detect_anomaly(_GradMode):
    """Inside, the first op whose forward or backward produces NaN or Inf raises AnomalyError
    naming the op, its scope path, the shapes, and the line of user code that created it.
    Costs a finiteness check per op; off by default (then free: one flag test per op)."""

    def __enter__(self) -> None:
        self._prev.append(_State.anomaly)
        _State.anomaly = True

    def __exit__(self, *exc: Any) -> None:
        _State.anomaly = self._prev.pop()


class AnomalyError(FloatingPointError):
    """An op produced NaN or Inf while detect_anomaly() was on."""


def _user_site() -> str:
    """file:line of the innermost caller outside this package (where the user created the op)."""
    frame = sys._getframe(1)
    package = os.path.dirname(os.path.abspath(__file__))
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "<unknown>"


def _scope_path(ctx: Function | type, scope: tuple[str, ...]) -> str:
    """Where an op sits: its scopes and its name, e.g. MLP/layers/layers.2.bn/batch_norm/Sqrt."""
    return "/".join(scope + ((ctx if isinstance(ctx, type) else type(ctx)).__name__,))


def _check_finite(what: str, ctx: Function | type, scope: tuple[str, ...], arrays: list, out: np.ndarray,
                  site: str, allow_inf: bool = False) -> None:
    """Raise AnomalyError if `out` (a floating array) holds NaN, or Inf unless `allow_inf`: in backward,
    as in PyTorch, only NaN is an anomaly (an infinite gradient, d sqrt(x) at 0, may be selected away
    by a relu behind it; a NaN never is)."""
    if out.dtype.kind in "fc" and (np.isnan(out).any() if allow_inf else not np.isfinite(out).all()):
        bad = "NaN" if np.isnan(out).any() else "Inf"
        inputs = ", ".join(f"{a.shape}{' (has NaN/Inf)' if a.dtype.kind in 'fc' and not np.isfinite(a).all() else ''}"
                           for a in arrays)
        raise AnomalyError(f"{what} produced {bad} (output {out.shape}) at {_scope_path(ctx, scope)}; inputs: "
                           f"{inputs}; the op was created at {site}")


# In-place safety. An op saves its inputs' arrays; its backward reads them again. Changing one
# in between would silently change the gradient. So: an array an op made inside a graph leaves the
# library read-only (tensor._hand_out); a leaf's array (an input, a parameter) is read-only while a live graph
# holds it, and so is the array it is a view of; a replaced array (t.data = ...) is caught at
# backward; and an array whose writable views may be out there (it was handed out by t.data,
# t.numpy() or np.asarray(t) while writable) is also compared at backward with a copy taken when
# the graph first held it. The one thing not guarded: a view of an array given to tg.from_numpy,
# taken by the caller before the graph (the caller owns that memory; Tensor(a) copies instead).
class _Hold:
    """Keeps one array read-only for as long as some live op refers to this hold: every op
    reading the array shares it, so Python's reference count does the bookkeeping, and the last
    op to let go (free() after backward, or its dropped graph collected) makes it writable again
    (if it was writable before). `snapshot`: a copy to compare at backward, for an exposed array."""
    __slots__ = ("array", "restore", "snapshot", "__weakref__")

    def __init__(self, a: np.ndarray):
        self.array, self.restore = a, a.flags.writeable
        self.snapshot = a.copy() if _is_exposed(a) else None
        a.flags.writeable = False
        _holds[id(a)] = weakref.ref(self)

    def __del__(self) -> None:
        ref = _holds.get(id(self.array))
        if ref is not None and ref() in (self, None):  # not a newer hold on the same array
            del _holds[id(self.array)]
            if self.restore:
                with contextlib.suppress(ValueError):  # a view whose base is still held stays read-only
                    self.array.flags.writeable = True


_holds: dict[int, weakref.ref] = {}  # id(array) -> its hold, while one lives (the hold keeps the id taken)
_exposed: dict[int, weakref.ref] = {}  # id(array) -> the array, for arrays handed out while writable


def _owner(a: np.ndarray) -> np.ndarray | None:
    """The array `a` is a view of (NumPy points a view's base at the array owning the memory)."""
    return a.base if isinstance(a.base, np.ndarray) else None


def _expose(a: np.ndarray) -> None:
    """Note that `a` was handed out writable: views of it may exist that no flag of ours reaches."""
    if id(a) not in _exposed:
        key = id(a)
        _exposed[key] = weakref.ref(a, lambda _, key=key: _exposed.pop(key, None))


def _is_exposed(a: np.ndarray) -> bool:
    owner = _owner(a)
    return id(a) in _exposed or owner is not None and id(owner) in _exposed


def _lock(parents: tuple[Tensor, ...], arrays: list[np.ndarray]) -> list[_Hold] | None:
    """Hold the arrays of the leaf inputs (and the arrays they are views of) read-only while the op
    lives. An op's own outputs leave the library read-only; the library's constants (wrapped numbers,
    masks) are read-only and are never handed out, so they need no hold. Returns the holds to keep."""
    holds = None
    for p, a in zip(parents, arrays):
        if p._ctx is not None:
            continue
        for arr in (a,) if a.base is None else (a, _owner(a)):
            if arr is None:
                continue
            ref = _holds.get(id(arr))
            hold = ref() if ref is not None else None
            if hold is None:
                if not arr.flags.writeable and id(arr) not in _exposed:
                    continue  # read-only and never handed out writable: a library constant, a memory map
                hold = _Hold(arr)
            holds = [hold] if holds is None else holds + [hold]
    return holds


def _check_unchanged(ctx: Function, checked: set[int]) -> None:
    """Before ctx's backward reads its inputs: each is still the array the forward saw, with its values."""
    for i, (p, a) in enumerate(zip(ctx.parents, ctx.arrays)):
        if p._data is not a:
            raise RuntimeError(
                f"{_scope_path(ctx, ctx.scope)}: its input {i} ({p.name or 'a tensor'} {p.shape}) was given "
                f"new data (.data was replaced, e.g. by an optimizer step or load_state_dict) after {ctx!r} saved it, "
                "so its gradient would be wrong; run the forward again after changing parameters")
    for hold in ctx.locked or ():
        if hold.snapshot is not None and id(hold) not in checked:
            checked.add(id(hold))
            if not np.array_equal(hold.array, hold.snapshot, equal_nan=hold.array.dtype.kind in "fc"):
                i = next((i for i, a in enumerate(ctx.arrays) if a is hold.array or _owner(a) is hold.array), 0)
                p = ctx.parents[i]
                raise RuntimeError(
                    f"{_scope_path(ctx, ctx.scope)}: its input {i} ({p.name or 'a tensor'} {p.shape}) was changed in "
                    f"place after {ctx!r} saved it, through a view of its array taken before the graph was built "
                    "(t.data[...], t.numpy() or np.asarray(t)), so its gradient would be wrong; take copies "
                    "(np.array(t)) to keep values, or run the forward again after changing it")
