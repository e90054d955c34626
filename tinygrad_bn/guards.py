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
_locks: dict[int, int] = {}  # id(array) -> how many live ops hold it


def _lock(ctx: Function, parents: tuple[Tensor, ...], arrays: list[np.ndarray]) -> weakref.finalize | None:
    """Make the arrays of the leaf inputs read-only while `ctx` holds them (intermediates are the
    library's own arrays; a user changes leaves: inputs, parameters). Returns the finalizer that
    unlocks them: run by free() after backward, or when a graph is dropped without backward."""
    locked = None
    for p, a in zip(parents, arrays):
        if p._ctx is None:  # the library's own constants (wrapped numbers, masks) are born read-only
            n = _locks.get(id(a))
            if n is not None:
                _locks[id(a)] = n + 1
            elif a.flags.writeable:
                a.flags.writeable = False
                _locks[id(a)] = 1
            else:
                continue
            locked = [a] if locked is None else locked + [a]
    return None if locked is None else weakref.finalize(ctx, _unlock, locked)


def _unlock(locked: list[np.ndarray] | None) -> None:
    for a in locked or ():
        n = _locks.get(id(a), 0) - 1
        if n > 0:
            _locks[id(a)] = n
        else:
            _locks.pop(id(a), None)
            with contextlib.suppress(ValueError):  # a view whose base is still held stays read-only
                a.flags.writeable = True


def _check_unchanged(ctx: Function) -> None:
    for i, (p, a) in enumerate(zip(ctx.parents, ctx.arrays)):
        if p.data is not a and p._ctx is None:
            raise RuntimeError(
                f"{_scope_path(ctx, ctx.scope)}: its input {i} ({p.name or 'a tensor'} {p.shape}) was given "
                f"new data (.data was replaced, e.g. by an optimizer step or load_state_dict) after {ctx!r} saved it, "
                "so its gradient would be wrong; run the forward again after changing parameters")
