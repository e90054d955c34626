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
                  site: str) -> None:
    """Raise AnomalyError if `out` (a floating array) holds NaN or Inf."""
    if out.dtype.kind in "fc" and not np.isfinite(out).all():
        bad = "NaN" if np.isnan(out).any() else "Inf"
        inputs = ", ".join(f"{a.shape}{' (has NaN/Inf)' if a.dtype.kind in 'fc' and not np.isfinite(a).all() else ''}"
                           for a in arrays)
        raise AnomalyError(f"{what} produced {bad} (output {out.shape}) at {_scope_path(ctx, scope)}; inputs: "
                           f"{inputs}; the op was created at {site}")


# In-place safety. An op saves its inputs' arrays; its backward reads them again. Changing one
# in between would silently change the gradient, so while a graph holds an array it is made
# read-only (a write raises), and replacing a tensor's array (t.data = ...) is caught at backward.
class _Hold:
    """Keeps one leaf array read-only for as long as some live op refers to this hold: every op
    reading the array shares it, so Python's reference count does the bookkeeping, and the last
    op to let go (free() after backward, or its dropped graph collected) makes it writable again."""
    __slots__ = ("array", "__weakref__")

    def __init__(self, a: np.ndarray):
        self.array, a.flags.writeable = a, False
        _holds[id(a)] = weakref.ref(self)

    def __del__(self) -> None:
        ref = _holds.get(id(self.array))
        if ref is not None and ref() in (self, None):  # not a newer hold on the same array
            del _holds[id(self.array)]
            with contextlib.suppress(ValueError):  # a view whose base is still held stays read-only
                self.array.flags.writeable = True


_holds: dict[int, weakref.ref] = {}  # id(array) -> its hold, while one lives (the hold keeps the id taken)


def _lock(parents: tuple[Tensor, ...], arrays: list[np.ndarray]) -> list[_Hold] | None:
    """Make the arrays of the leaf inputs read-only while the op holds them (intermediates are the
    library's own arrays; a user changes leaves: inputs, parameters). Returns the holds to keep."""
    holds = None
    for p, a in zip(parents, arrays):
        if p._ctx is None:  # the library's own constants (wrapped numbers, masks) are born read-only
            ref = _holds.get(id(a))
            hold = ref() if ref is not None else None
            if hold is None:
                if not a.flags.writeable:
                    continue
                hold = _Hold(a)
            holds = [hold] if holds is None else holds + [hold]
    return holds


def _check_unchanged(ctx: Function) -> None:
    for i, (p, a) in enumerate(zip(ctx.parents, ctx.arrays)):
        if p.data is not a and p._ctx is None:
            raise RuntimeError(
                f"{_scope_path(ctx, ctx.scope)}: its input {i} ({p.name or 'a tensor'} {p.shape}) was given "
                f"new data (.data was replaced, e.g. by an optimizer step or load_state_dict) after {ctx!r} saved it, "
                "so its gradient would be wrong; run the forward again after changing parameters")
