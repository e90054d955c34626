"""Fused execution: `tg.fused()`. Ops are recorded exactly as in eager mode (the same Function
nodes, parents and scopes: checking, the audit and drawing see the same graph), but an op the
scheduler can fuse does not compute: its output's array is a `Pending` value (its shape and
dtype, and how to compute it). Values are computed, in fused groups, when they are needed:
`.data`, `.numpy()`, `.item()`, any read of the array (a backward rule's mask, a composite's
check), `backward()`, and leaving the context.

The lazy values and the scheduler are in schedule.py, the executors in kernels.py; this module is
the context: recording, realizing, verifying and reporting.
"""
from __future__ import annotations

import functools
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import kernels
from .engine import Function, _State
from .guards import _exposed, _hold, _owner
from .schedule import (
    _GROWS,
    _META,
    STEPS,
    Pending,
    _factor_sums,
    _GatherStep,
    _KernelStep,
    _pending_order,
    _Plan,
    _reduce,
    _scatter_into,
    _settle,
    _value,
)

__all__ = ["fused", "Pending", "STEPS"]


# ------------------------------------------------------------------------------- the context

class fused:
    """Fused execution: a context manager and a decorator (`@tg.fused`, `@tg.fused(verify=True)`).
    `executor`: "auto" (numba for kernels of arithmetic when numba is installed, NumPy row tiles
    otherwise), "numpy" or "numba". `verify=True` writes every value a kernel computes, runs
    every op eagerly too, and records per node the largest difference (`differences`, `report()`,
    `max_difference()`).
    `min_elements`: the smallest array worth a kernel; smaller ones whose inputs are computed run
    op by op, as eager (measured on batch norm: eager wins below ~512K elements, 2 MiB of float32,
    where its arrays stay in cache and a kernel's scheduling costs more than the passes it saves)."""
    verify: bool
    min_elements: int
    executor_name: str
    tiles: kernels.Executor
    numba: kernels.Executor | None
    differences: list[tuple[str, tuple[int, ...], str, float, float]]  # name, shape, dtype, max |diff|, ulps
    stats: dict[str, Any]
    _owned: list[weakref.ref]
    _prev: list[Any]
    _lock: threading.RLock

    def __new__(cls, func: Callable | None = None, *, verify: bool = False, executor: str = "auto",
                min_elements: int = 1 << 19) -> Any:
        if executor not in ("auto", "numpy", "numba"):
            raise ValueError(f"fused: executor must be 'auto', 'numpy' or 'numba', got {executor!r}")
        if isinstance(min_elements, bool) or not isinstance(min_elements, int) or min_elements < 1:
            raise ValueError(f"fused: min_elements must be a positive int, got {min_elements!r}")
        self = super().__new__(cls)
        self.verify, self.min_elements, self.executor_name = verify, min_elements, executor
        self.tiles = kernels.NumPyTiles()
        self.numba = None
        if executor != "numpy":
            try:
                self.numba = kernels.Numba()
            except ImportError:
                if executor == "numba":
                    from ._missing import MissingExtraError
                    raise MissingExtraError("tg.fused(executor='numba')", "numba", "fused") from None
        self._owned, self._prev, self.differences, self._lock = [], [], [], threading.RLock()
        self.stats = {"realizations": 0, "kernels_numba": 0, "kernels_numpy": 0, "small_ops": 0, "passes": 0,
                      "schedule_seconds": 0.0, "run_seconds": 0.0}
        return self(func) if func is not None else self  # bare `@tg.fused` decorates directly

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling kernels (numba) in this context, apart from running them."""
        return self.numba.compile_seconds if self.numba is not None else 0.0

    def __enter__(self) -> fused:
        self._prev.append(_State.lazy)
        _State.lazy = self
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        try:
            self.realize_all()
        except Exception:
            if kind is None:  # (an exception leaving the body is the one to see)
                raise
        finally:
            _State.lazy = self._prev.pop()

    def __call__(self, fn: Callable) -> Callable:
        options: dict[str, Any] = {"verify": self.verify, "executor": self.executor_name,
                                   "min_elements": self.min_elements}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with fused(**options):
                return fn(*args, **kwargs)
        return wrapper

    # --------------------------------------------------------------------------- recording
    def record(self, ctx: Function, arrays: list, params: dict) -> Any:
        """Function.apply's forward under this context: a Pending for an op the scheduler knows,
        else the op computed now (on its inputs computed first), as is a small op on computed
        inputs (below min_elements a kernel saves no memory pass worth its scheduling)."""
        meta = _META.get(type(ctx))
        small = self.min_elements
        if meta is not None and not _State.anomaly and (  # (anomaly mode checks each op's output: eager)
                meta in _GROWS or any(type(a) is not np.ndarray or a.size >= small for a in arrays)):
            found = meta(ctx, arrays, params)  # (only floating values wait: kernels compute nothing else, and an
            if found is not None and found[1].kind == "f" and (  # integer op's error belongs at the op)
                    math.prod(found[0]) >= small or meta is _reduce or Pending in map(type, arrays)):
                p = object.__new__(Pending)
                p.op, p.inputs, p.params, (p.shape, p.dtype) = type(ctx), arrays, params, found
                p.value, p.owner, p.readonly, p.fuser, p.holds, p.recorded = None, None, False, self, None, None
                for i, a in enumerate(arrays):  # a leaf's array stays as the op saw it until the value is computed:
                    if type(a) is not np.ndarray:  # held read-only; one handed out (views of it may exist that
                        continue                   # no flag reaches) is copied, as eager's guards snapshot it
                    owner = _owner(a) if a.base is not None else None
                    if id(a) in _exposed or owner is not None and id(owner) in _exposed:
                        p.inputs = list(arrays) if p.inputs is arrays else p.inputs
                        p.inputs[i] = a.copy()
                        continue
                    for held in (a, owner):  # (a view, and the array it views: as guards._lock holds them)
                        if held is not None and held.flags.writeable:
                            p.holds = [_hold(held, False)] if p.holds is None else p.holds + [_hold(held, False)]
                return p
        for i, a in enumerate(arrays):
            if type(a) is Pending:
                arrays[i] = a.realize()  # (the list Function.apply keeps: it saves computed arrays)
        return ctx.forward(*arrays, **params)

    def own(self, data: Any, out: Any) -> Any:
        """Function.apply's output array: a Pending remembers its tensor (which gets the array)."""
        if type(data) is not Pending:
            return np.asarray(data)
        data.owner = weakref.ref(out)
        self._owned.append(data.owner)
        return data

    # ------------------------------------------------------------------------- realization
    def realize_all(self) -> None:
        """Compute every pending value whose tensor is still alive (backward(), leaving)."""
        with self._lock:
            alive = [t._data for t in (r() for r in self._owned) if t is not None and type(t._data) is Pending]
            if alive:
                self.realize(alive)
            self._owned = [r for r in self._owned if (t := r()) is not None and type(t._data) is Pending]

    def realize(self, targets: list[Pending]) -> None:
        with self._lock:  # (two threads reading one pending value: one computes it, the other finds it)
            self._realize([t for t in targets if t.value is None])

    def _realize(self, targets: list[Pending]) -> None:
        start = time.perf_counter()
        order = recorded = _pending_order(targets)
        if not order:
            return
        rewritten = STEPS["factor_sums"] and _factor_sums(order, self)
        if STEPS["scatter_into"] and _scatter_into(order, targets) or rewritten:
            order = _pending_order(targets)
        plan = _Plan(order, targets, self.min_elements, keep_all=self.verify)
        self.stats["schedule_seconds"] += time.perf_counter() - start
        self.stats["realizations"] += 1
        start = time.perf_counter()
        compiling = self.compile_seconds
        for step in plan.steps:
            if isinstance(step, _KernelStep):
                self._run_kernel(step)
            elif isinstance(step, _GatherStep):
                step.run()
                self.stats["small_ops"] += 1
            else:
                self._run_small(step)
        self.stats["run_seconds"] += time.perf_counter() - start - (self.compile_seconds - compiling)
        if self.verify:
            self._verify(recorded)
        for p in order:
            if p.value is not None:
                _settle(p)

    def _run_small(self, p: Pending) -> None:
        self.stats["small_ops"] += 1
        with np.errstate(all="ignore"):
            p.value = np.asarray(p.op().forward(*[_value(a) for a in p.inputs], **p.params))

    def _run_kernel(self, step: _KernelStep) -> None:
        kernel = step.kernel([_value(a) for a in step.sources])
        ex: kernels.Executor = self.tiles
        if self.numba is not None and self.numba.accepts(kernel):
            ex = self.numba
            stores = [o for o in step.outputs if o.op not in kernels.REDUCTIONS]
            if STEPS["split_stores"] and stores and len(stores) < len(step.outputs):
                for part in (stores, [o for o in step.outputs if o.op in kernels.REDUCTIONS]):
                    half = _KernelStep(step.nodes, part, step.sources, step.domain)
                    half.largest = step.largest
                    self._run_kernel(half)
                return
        self.stats["kernels_numba" if ex is self.numba else "kernels_numpy"] += 1
        full = math.prod(kernel.domain)  # memory passes: arrays of the realization's largest size read or written
        if full == step.largest:
            self.stats["passes"] += sum(kernels._compact(a).size == full for a in kernel.inputs) + sum(
                p.size == full for p in step.outputs)
        with np.errstate(all="ignore"):
            for p, value in zip(step.outputs, ex.run(kernel)):
                p.value = value

    def _verify(self, order: list[Pending]) -> None:
        """Every op again, eagerly, in order; the largest difference of each computed value."""
        eager: dict[int, np.ndarray] = {}
        with np.errstate(all="ignore"):
            for p in order:
                op, inputs, params = p.recorded or (p.op, p.inputs, p.params)
                args = [eager[id(a)] if type(a) is Pending and id(a) in eager else _value(a) for a in inputs]
                ref = eager[id(p)] = np.asarray(op().forward(*args, **params))
                if p.value is None or ref.dtype.kind != "f":
                    continue
                diff = np.abs(p.value.astype(np.float64) - ref)
                diff = diff[~(np.isnan(ref) & np.isnan(p.value))] if diff.size else diff
                worst = float(np.max(diff, initial=0.0))
                ulps = worst / float(np.spacing(np.asarray(np.max(np.abs(ref), initial=0.0), ref.dtype)))
                t = p.owner() if p.owner is not None else None
                name = f"{p.op.__name__}" + (f" {t.name}" if t is not None and t.name else "")
                self.differences.append((name, p.shape, str(p.dtype), worst, ulps))

    def report(self) -> str:
        """The statistics, and (verify=True) each node's largest difference from eager."""
        lines = [f"fused: {self.stats['realizations']} realizations, {self.stats['kernels_numba']} numba kernels, "
                 f"{self.stats['kernels_numpy']} NumPy-tile kernels ({self.stats['passes']} passes over full-size "
                 f"arrays), {self.stats['small_ops']} small ops; "
                 f"compile {self.compile_seconds:.3f} s, schedule {self.stats['schedule_seconds']:.3f} s, "
                 f"run {self.stats['run_seconds']:.3f} s"]
        if self.differences:
            lines.append(f"{'node':<24}{'shape':>16} {'dtype':<8}{'max |fused - eager|':>20}{'ulps of max':>13}")
            lines += [f"{n:<24}{str(s):>16} {d:<8}{w:>20.3g}{u:>13.2f}" for n, s, d, w, u in self.differences]
        return "\n".join(lines)

    def max_difference(self) -> float:
        """The largest |fused - eager| over every node verified (verify=True), in ulps of the
        node's largest magnitude."""
        return max((u for *_, u in self.differences), default=0.0)
