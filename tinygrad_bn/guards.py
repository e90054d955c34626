"""Guards against silently wrong gradients: anomaly mode (NaN/Inf named at the op that made it)
and in-place safety (arrays a live graph saved are read-only; replaced data is caught at backward).
The engine calls these from Function.apply and the backward sweep."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import Function, _GradMode, _State

if TYPE_CHECKING:
    from types import FrameType

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
    frame: FrameType | None = sys._getframe(1)
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


# In-place safety. An op saves its inputs' arrays, and some read their output; backward reads them
# again, so changing one in between would silently change the gradient. So (README, Safety):
# - every array an op computes while recording a graph is born read-only (Function.apply), and
#   so is every view NumPy makes of it later;
# - a leaf's array (an input, a parameter) that an op saves, and the array a saved view belongs
#   to, are held read-only while the op lives (_Hold, _lock);
# - replacing a saved input's array (t.data = ..., all through Tensor._replace) is caught at
#   backward (the engine compares the arrays; _replaced_error);
# - a leaf's array handed out (t.data, t.numpy(), np.asarray(t)) may have writable views no flag
#   reaches, so an op that saves it (or a view of it) keeps a copy of what it saved and compares
#   it at backward.
# Not guarded: views of an array given to tg.from_numpy that its caller took before (the caller
# owns that memory; Tensor(a) copies instead).
_guard = threading.RLock()  # holds and .grad accumulation are shared between threads


class _Hold:
    """Keeps one array read-only for as long as some live op refers to this hold: every op
    reading the array shares it, so Python's reference count does the bookkeeping, and the last
    op to let go (free() after backward, or its dropped graph collected) makes it writable again
    (if it was writable before; a view whose owner is still held, when that owner's hold goes).
    `snapshot`: a copy to compare at backward, for an array with views we cannot reach."""
    __slots__ = ("array", "restore", "snapshot", "views", "__weakref__")
    array: np.ndarray
    restore: bool
    snapshot: np.ndarray | None
    views: list[np.ndarray] | None  # views made writable again only when this hold goes

    def __init__(self, a: np.ndarray, snapshot: bool):
        self.array, self.restore, self.views = a, a.flags.writeable, None
        self.snapshot = a.copy() if snapshot else None
        _holds[id(a)] = weakref.ref(self)  # registered before the flag: a late __del__ of an old hold sees us
        a.setflags(write=False)

    def __del__(self) -> None:
        with _guard:
            a = self.array
            ref = _holds.get(id(a))
            if ref is None or ref() not in (self, None):  # a newer hold has the array
                return
            del _holds[id(a)]
            if not self.restore:
                return
            try:
                a.setflags(write=True)
            except ValueError:  # its owner is still held: writable again when that hold goes
                _restore_with_owner(a)
                return
            for v in self.views or ():
                if id(v) not in _holds:
                    with contextlib.suppress(ValueError):
                        v.setflags(write=True)


_holds: dict[int, weakref.ref] = {}  # id(array) -> its hold, while one lives (the hold keeps the id taken)
_exposed: dict[int, weakref.ref] = {}  # id(array) -> the array, for leaf arrays handed out


def _owner(a: np.ndarray) -> np.ndarray | None:
    """The array whose memory `a` views, or None. NumPy points a view's base at the array owning the
    memory, or at a buffer object (as_strided, sliding_window_view) whose own base is that array."""
    base = a.base
    while base is not None and not isinstance(base, np.ndarray):
        base = getattr(base, "base", None)
    return base


def _expose(a: np.ndarray) -> None:
    """Note that a leaf's array was handed out: views of it (and of the memory it views) may exist
    that no flag of ours reaches."""
    for arr in (a, _owner(a)):
        if arr is not None and id(arr) not in _exposed:
            key = id(arr)

            def forget(_: object, key: int = key) -> None:  # when the array is collected
                _exposed.pop(key, None)
            _exposed[key] = weakref.ref(arr, forget)


def _restore_with_owner(a: np.ndarray) -> bool:
    """Make view `a` writable again when the hold on its owner goes; False if no hold has the owner."""
    ref = _holds.get(id(_owner(a)))
    hold = ref() if ref is not None else None
    if hold is not None:
        hold.views = [a] if hold.views is None else hold.views + [a]
    return hold is not None


def _protect_view(a: np.ndarray) -> None:
    """A leaf's writable view of memory a graph holds goes out read-only until that hold lets go."""
    with _guard:
        if _restore_with_owner(a):
            a.setflags(write=False)


def _hold(a: np.ndarray, snapshot: bool) -> _Hold:
    with _guard:  # get or make, atomically
        ref = _holds.get(id(a))
        hold = ref() if ref is not None else None
        return _Hold(a, snapshot) if hold is None else hold


def _lock(parents: tuple[Tensor, ...], arrays: list[np.ndarray]) -> list[_Hold] | None:
    """Hold what the op saved: a leaf's array, and the memory a saved view belongs to, read-only
    while the op lives; with a snapshot of what was saved when that memory was handed out. An
    intermediate's own array is read-only from birth; the library's constants (wrapped numbers)
    are read-only and never handed out. Returns the holds to keep."""
    holds = None
    for p, a in zip(parents, arrays):
        view = a.base is not None
        if p._ctx is not None and not view:
            continue
        owner = _owner(a) if view else None
        exposed = id(a) in _exposed or owner is not None and id(owner) in _exposed
        ref = _holds.get(id(a))
        if exposed or a.flags.writeable or ref is not None:
            hold = _hold(a, exposed)
            holds = [hold] if holds is None else holds + [hold]
        if owner is not None and (owner.flags.writeable or id(owner) in _holds):
            hold = _hold(owner, False)
            holds = [hold] if holds is None else holds + [hold]
    return holds


def _replaced_error(ctx: Function, p: Tensor) -> RuntimeError:
    """The error for an input of ctx whose array was replaced after ctx saved it (the engine checks)."""
    i = next(i for i, q in enumerate(ctx.parents) if q is p)
    return RuntimeError(
        f"{_scope_path(ctx, ctx.scope)}: its input {i} ({p.name or 'a tensor'} {p.shape}) was given "
        f"new data (.data was replaced, e.g. by an optimizer step or load_state_dict) after {ctx!r} saved it, "
        "so its gradient would be wrong; run the forward again after changing parameters")


def _check_snapshots(ctx: Function, locked: list[_Hold], arrays: tuple[np.ndarray, ...], checked: set[int]) -> None:
    """Before ctx's backward reads its inputs (`arrays`, held by `locked`): those with a snapshot
    still hold the values it saved."""
    for hold in locked:
        if hold.snapshot is not None and id(hold) not in checked:
            checked.add(id(hold))
            if not np.array_equal(hold.array, hold.snapshot, equal_nan=hold.array.dtype.kind in "fc"):
                i = next((i for i, a in enumerate(arrays) if a is hold.array), 0)
                p = ctx.parents[i]
                raise RuntimeError(
                    f"{_scope_path(ctx, ctx.scope)}: its input {i} ({p.name or 'a tensor'} {p.shape}) was changed in "
                    f"place after {ctx!r} saved it, through a view of its array taken before the graph was built "
                    "(t.data[...], t.numpy() or np.asarray(t)), so its gradient would be wrong; take copies "
                    "(np.array(t)) to keep values, or run the forward again after changing it")
