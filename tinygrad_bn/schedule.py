"""The lazy graph of tg.fused() and its scheduling: `Pending` (an array not computed yet), each
fusible op's output shape and dtype without computing it (`_META`), and what a realization does
(docs/architecture.md, "Fused execution").

A realization gathers the pending values the targets need, rewrites some (factors taken out
of sums, a scatter added into its partner's array) and sorts each into
- a kernel: an element-wise op (or a broadcast, a scatter) whose array is large (at least
  `min_elements`) or whose inputs are in a kernel, and a reduction of such an array. A kernel
  runs over one domain (a shape every value in it broadcasts to) and is cut into row tiles, so a
  reduction over the leading axis needs every tile: what reads it runs in a later kernel (a higher
  `level`). A value a later kernel needs is recomputed there from what is in memory, not written
  out, unless it is a reduction (small: always kept), an exp or log, or read outside kernels; or
- a small op (the (1, C) statistics, reshapes, scalars, a gather of single elements): run with
  its own NumPy forward between kernels.
Each kernel goes to an executor (kernels.py): one compiled loop nest (numba) or NumPy on row
tiles. Compiled kernels are cached by their structure, so a training loop compiles once.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import kernels, ops
from .engine import Function
from .guards import _Hold
from .kernels import Kernel, KNode

if TYPE_CHECKING:
    from .fusion import fused

# ------------------------------------------------------------------------------ pending values


class _Flags:
    """A pending value's `flags`, as far as the engine and the guards ask before it exists."""
    __slots__ = ("writeable",)
    c_contiguous = True
    f_contiguous = False

    def __init__(self, writeable: bool):
        self.writeable = writeable


class Pending:
    """An array not computed yet: `op` applied to `inputs` (ndarrays or Pending) with `params`.
    It has the array's shape and dtype; reading anything else computes it (with what it needs,
    fused), and its tensor then holds the array itself."""
    __slots__ = ("op", "inputs", "params", "shape", "dtype", "value", "owner", "readonly", "fuser", "holds",
                 "recorded", "__weakref__")
    base = None  # a computed value is the fused group's own new array (never a view: _own)
    op: type
    inputs: list
    params: dict[str, Any]
    shape: tuple[int, ...]
    dtype: np.dtype
    value: np.ndarray | None
    owner: weakref.ref | None
    readonly: bool
    fuser: fused
    holds: list[_Hold] | None
    recorded: tuple | None  # (op, inputs, params) as recorded, when the scheduler computes it otherwise

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def flags(self) -> Any:
        return self.value.flags if self.value is not None else _Flags(not self.readonly)

    def setflags(self, write: bool | None = None) -> None:
        if self.value is not None:
            self.value.setflags(write=write)
        elif write is False:
            self.readonly = True

    def realize(self) -> np.ndarray:
        if self.value is None:
            self.fuser.realize([self])
        assert self.value is not None
        return self.value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.realize()
        return a.astype(dtype or a.dtype) if copy else a if dtype is None else a.astype(dtype)

    def __getattr__(self, name: str) -> Any:  # anything else is the array's: compute it
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.realize(), name)

    def __repr__(self) -> str:
        return f"Pending({self.op.__name__}, {self.shape}, {self.dtype})"

    __hash__ = object.__hash__


def _forward_to_array(name: str) -> Callable:
    def method(self: Pending, *args: Any) -> Any:
        return getattr(self.realize(), name)(*args)
    method.__name__ = name
    return method


for _name in ("__len__", "__iter__", "__getitem__", "__bool__", "__float__", "__int__", "__index__", "__lt__",
              "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__neg__", "__invert__", "__abs__", "__add__",
              "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__pow__",
              "__rpow__", "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__matmul__", "__rmatmul__"):
    setattr(Pending, _name, _forward_to_array(_name))


# --------------------------------------------------------------------- what each op's output is

def _probe(op: type, dtypes: tuple[np.dtype, ...]) -> np.dtype:
    """The dtype op's forward gives for inputs of `dtypes` (NumPy's rules, as eager), from a
    one-element run, cached."""
    key = (op, dtypes)
    dt = _probed.get(key)
    if dt is None:
        with np.errstate(all="ignore"):
            dt = _probed[key] = np.asarray(op().forward(*[np.ones(1, d) for d in dtypes])).dtype
    return dt


_probed: dict[tuple, np.dtype] = {}


def _elementwise(ctx: Function, arrays: list, params: dict) -> tuple | None:
    if params:
        return None
    shape = arrays[0].shape if len(arrays) == 1 else np.broadcast_shapes(*(a.shape for a in arrays))
    return shape, _probe(type(ctx), tuple(a.dtype for a in arrays))


def _where(ctx: Function, arrays: list, params: dict) -> tuple | None:
    cond = params["cond"]
    ctx.cond = cond  # type: ignore[attr-defined]  # (as Where.forward: its backward reads it)
    return np.broadcast_shapes(arrays[0].shape, arrays[1].shape, cond.shape), np.result_type(
        arrays[0].dtype, arrays[1].dtype)


def _cast(ctx: Function, arrays: list, params: dict) -> tuple | None:
    return arrays[0].shape, np.dtype(params["dtype"])


def _reduce(ctx: Function, arrays: list, params: dict) -> tuple | None:
    x, axis = arrays[0], params["axis"]
    if x.size == 0 or not isinstance(axis, tuple):  # an empty max raises, an empty sum is 0: eager decides
        return None
    ctx.axis = axis  # type: ignore[attr-defined]
    shape = tuple(1 if i in axis else n for i, n in enumerate(x.shape) if params["keepdims"] or i not in axis)
    dtype = params.get("dtype")
    return shape, np.dtype(dtype) if dtype is not None else x.dtype if type(ctx) is not ops.Sum else \
        np.ones(1, x.dtype).sum().dtype


def _broadcast_to(ctx: Function, arrays: list, params: dict) -> tuple | None:
    x, shape = arrays[0], tuple(params["shape"])
    lead = len(shape) - x.ndim
    if lead < 0 or any(n != m and n != 1 for n, m in zip(x.shape, shape[lead:])):
        raise ValueError(f"cannot broadcast {x.shape} to {shape}")
    return shape, x.dtype


def _reshape(ctx: Function, arrays: list, params: dict) -> tuple | None:
    x, shape = arrays[0], list(params["shape"])
    if -1 in shape:
        known = math.prod(n for n in shape if n != -1)
        if shape.count(-1) > 1 or known == 0 or x.size % known:
            return None  # eager NumPy words the error
        shape[shape.index(-1)] = x.size // known
    if math.prod(shape) != x.size or any(n < 0 for n in shape):
        raise ValueError(f"cannot reshape array of size {x.size} into shape {tuple(params['shape'])}")
    return tuple(shape), x.dtype


def _transpose(ctx: Function, arrays: list, params: dict) -> tuple | None:
    x = arrays[0]  # a zero-byte view transposed: NumPy checks the axes
    shape = np.transpose(np.broadcast_to(np.empty((), x.dtype), x.shape), params["axes"]).shape
    ctx.axes = params["axes"]  # type: ignore[attr-defined]
    return shape, x.dtype


def _advanced(index: Any) -> bool:
    """An index of integer arrays only (a gather or scatter of single elements)."""
    return isinstance(index, tuple) and bool(index) and all(
        type(i) is np.ndarray and i.dtype.kind in "iu" for i in index)


def _scatter(p: Pending) -> bool:
    """An IndexAdd a kernel's row tiles can run: one 1-D integer array per axis (single elements)."""
    index = p.params["index"]
    return _advanced(index) and len(index) == p.ndim >= 2 and all(i.ndim == 1 for i in index)


def _getitem(ctx: Function, arrays: list, params: dict) -> tuple | None:
    x, index = arrays[0], params["index"]  # a zero-byte view indexed: NumPy checks the index
    shape = np.broadcast_to(np.empty((), x.dtype), x.shape)[index].shape
    ctx.index = index  # type: ignore[attr-defined]
    return shape, x.dtype


def _index_add(ctx: Function, arrays: list, params: dict) -> tuple | None:
    if not _advanced(params["index"]):
        return None
    picked = np.broadcast_to(np.empty((), arrays[0].dtype), params["shape"])[params["index"]].shape
    np.broadcast_shapes(picked, arrays[0].shape)  # NumPy checks the index, and that the values fit it
    ctx.index = params["index"]  # type: ignore[attr-defined]
    return tuple(params["shape"]), arrays[0].dtype


_META: dict[type, Callable[[Function, list, dict], tuple | None]] = {
    **{op: _elementwise for op in (ops.Neg, ops.Exp, ops.Log, ops.Sqrt, ops.Abs, ops.Relu, ops.Tanh, ops.Sigmoid,
                                   ops.Add, ops.Sub, ops.Mul, ops.Div, ops.Pow, ops.Maximum, ops.Minimum)},
    ops.Where: _where, ops.Cast: _cast, ops.Sum: _reduce, ops.Max: _reduce, ops.Min: _reduce,
    ops.BroadcastTo: _broadcast_to, ops.Reshape: _reshape, ops.Transpose: _transpose, ops.GetItem: _getitem,
    ops.IndexAdd: _index_add,
}
_KERNEL_OPS = frozenset(_META) - {ops.Reshape, ops.Transpose, ops.GetItem}  # what runs inside a kernel
_GROWS = (_broadcast_to, _index_add)  # ops whose output may be larger than their inputs
_ELEMENTWISE = frozenset(op for op, meta in _META.items() if meta is _elementwise)
_LINEAR = (ops.Neg, ops.Mul, ops.Div)  # what _factor_sums looks through
# The scheduler's optional steps, each measured (benchmarks/fusion_steps.py turns them off one by
# one): factor_sums (factors out of sums, shared sums), sink (a group joins a later kernel), gather
# (GetItem at its points), keep_costly (exp/log written once), split_stores (a numba kernel writing full-size arrays and
# accumulating sums runs as two loops: one more read pass, but faster than one loop here),
# scatter_into (a + IndexAdd(v) as v added into a's array: a's kernel is then arithmetic).
STEPS = {"factor_sums": True, "sink": True, "gather": True, "keep_costly": True, "split_stores": True,
         "scatter_into": True}
_COSTLY = (ops.Exp, ops.Log, ops.Tanh, ops.Sigmoid, ops.Pow)  # NumPy's vectorized transcendentals


def _value(a: Any) -> np.ndarray:
    if type(a) is Pending:
        assert a.value is not None, f"{a!r} was needed before it was computed (a scheduling error)"
        return a.value
    return a


def _settle(p: Pending) -> None:
    """A computed value goes to its tensor, as its own new array (a small op's view is copied),
    read-only if it is a graph's; the inputs' arrays are released."""
    v = p.value
    assert v is not None
    if v.base is not None and not p.readonly or type(v) is not np.ndarray:
        v = p.value = np.array(v)
    if p.readonly:
        v.setflags(write=False)
    p.holds, p.inputs, p.recorded = None, [], None
    t = p.owner() if p.owner is not None else None
    if t is not None and t._data is p:
        t._data = v


def _derive(fuser: fused, op: type, inputs: list, params: dict) -> Pending:
    """A value the scheduler adds (no tensor holds it): op on inputs, its shape and dtype as eager's."""
    p = object.__new__(Pending)
    found = _META[op](op(), inputs, params)
    assert found is not None
    p.op, p.inputs, p.params, (p.shape, p.dtype) = op, inputs, params, found
    p.value, p.owner, p.readonly, p.fuser, p.holds, p.recorded = None, None, False, fuser, None, None
    return p


def _factor_sums(order: list[Pending], fuser: fused) -> bool:
    """Factors out of sums: a sum over axes R of a product of big arrays and of factors constant
    along R is the factors times the product's own sum,
        sum_R(a * b * c / d) = c' * sum_R(a * b) / d'        (c', d': c, d without R),
    the same rounding (a scaling), and sums of the same product are computed once: batch norm's
    dgamma = rstd' sum(dy * xc) and dvar's sum(dxhat * xc) = gamma' sum(dy * xc) become one sum.
    A sum of two terms is not split into two sums: sum(a - b) as sum(a) - sum(b) loses what the
    element-wise differences keep where a and b nearly cancel. Returns whether anything was
    rewritten (the recorded form stays in `recorded`, for verify)."""
    changed = False
    position = {id(p): i for i, p in enumerate(order)}
    shared: dict[tuple, Any] = {}  # (the product's arrays, axes, dtype) -> its sum (kept dims)
    for r in order:  # the recorded sums of one array (batch norm's dbeta = sum(dy)) are shared too
        x = r.inputs[0] if r.op is ops.Sum else None
        if x is not None and r.dtype.kind == "f" and not (type(x) is Pending and x.op in _LINEAR):
            kept = tuple(1 if i in r.params["axis"] else n for i, n in enumerate(x.shape))
            shared[((id(x),), r.params["axis"], r.params.get("dtype"))] = r if r.shape == kept else _derive(
                fuser, ops.Reshape, [r], {"shape": kept})
    for r in order:
        if r.op is not ops.Sum or r.dtype.kind != "f" or type(r.inputs[0]) is not Pending:
            continue
        axis, e = r.params["axis"], r.inputs[0]

        memo: dict[int, bool] = {}

        def const(c: Any, depth: int = 0, e: Pending = e, axis: tuple = axis, memo: dict = memo) -> bool:
            """Whether c is constant along the summed axes (by shape, or made only of such values;
            looked for a few ops deep: a factor is a short expression of statistics)."""
            lead = e.ndim - c.ndim
            if all(i < lead or c.shape[i - lead] == 1 for i in axis):
                return True
            if type(c) is not Pending or c.value is not None or c.dtype.kind != "f" or depth > 16:
                return False
            if id(c) not in memo:
                memo[id(c)] = c.op is ops.BroadcastTo and const(c.inputs[0], depth + 1) or \
                    c.op in _ELEMENTWISE and all(const(a, depth + 1) for a in c.inputs)
            return memo[id(c)]

        def product(t: Any, factors: list, bigs: list, depth: int = 0, e: Pending = e) -> None:  # t's factors
            if type(t) is Pending and t.value is None and t.op is ops.Mul and t.shape == e.shape and depth < 16:
                for a in t.inputs:
                    product(a, factors, bigs, depth + 1)
            elif const(t):
                factors.append((ops.Mul, t))
            elif t.shape == e.shape:
                bigs.append(t)
            else:  # a broadcast big array: not a factor of this shape
                bigs.append(None)

        def term(t: Any, sign: int, factors: list, depth: int = 0, e: Pending = e) -> tuple[int, list, list]:
            """t as sign * (product of factors constant along the axes) * (product of big arrays)."""
            if type(t) is not Pending or t.value is not None or t.shape != e.shape or depth > 16 or const(t):
                return sign, factors, [t]
            a = t.inputs
            if t.op is ops.Neg:
                return term(a[0], -sign, factors, depth + 1)
            if t.op is ops.Div and const(a[1]) and not const(a[0]) and a[0].shape == e.shape:
                return term(a[0], sign, factors + [(ops.Div, a[1])], depth + 1)
            if t.op is ops.Mul:
                more: list = []
                bigs: list = []
                product(t, more, bigs)
                if bigs and all(b is not None for b in bigs):
                    return sign, factors + more, bigs
            return sign, factors, [t]

        sign, factors, bigs = term(e, 1, [])
        if not factors and len(bigs) == 1:
            continue

        def squeeze(c: Any, e: Pending = e, axis: tuple = axis) -> Any:  # c without the summed axes
            lead = e.ndim - c.ndim
            if all(i < lead or c.shape[i - lead] == 1 for i in axis):
                return c
            if c.op is ops.BroadcastTo:
                return squeeze(c.inputs[0])
            return _derive(fuser, c.op, [squeeze(a) for a in c.inputs], c.params)

        bigs = sorted(bigs, key=lambda b: position.get(id(b), -1))  # (a stable order: the same kernels)
        key = (tuple(sorted(map(id, bigs))), axis, r.params.get("dtype"))
        v = shared.get(key)
        if v is None:
            base = bigs[0]
            for b in bigs[1:]:
                base = _derive(fuser, ops.Mul, [base, b], {})
            v = shared[key] = _derive(fuser, ops.Sum, [base], {**r.params, "keepdims": True})
        for op, c in factors:
            v = _derive(fuser, op, [v, squeeze(c)], {})
        if sign < 0:
            v = _derive(fuser, ops.Neg, [v], {})
        r.recorded = (r.op, r.inputs, r.params)
        r.op, r.inputs, r.params = ops.Reshape, [v], {"shape": r.shape}
        changed = True
    return changed


class _AddAt:
    """a + IndexAdd(values, index): the values added at their elements into a copy of a (a's own
    array may be read elsewhere), with np.add.at's semantics for repeated elements."""

    def forward(self, a: np.ndarray, values: np.ndarray, index: tuple) -> np.ndarray:
        out = a.copy()
        np.add.at(out, index, values)
        return out


def _scatter_into(order: list[Pending], targets: list[Pending]) -> bool:
    """a + IndexAdd(v) (cross-entropy's gradient: softmax's part plus -1/n at the picked logits)
    as v added at its elements into a copy of a's array: a's kernel has no scatter, so it can be
    compiled, and the full-size zeros the scatter adds to are never made."""
    uses: dict[int, int] = {}
    for p in order:
        for x in p.inputs:
            uses[id(x)] = uses.get(id(x), 0) + 1
    for t in targets:
        uses[id(t)] = uses.get(id(t), 0) + 1
    changed = False
    for p in order:
        if p.op is not ops.Add or p.dtype.kind != "f" or len(p.inputs) != 2:
            continue
        for s, a in (p.inputs, p.inputs[::-1]):
            if type(s) is Pending and s.value is None and s.op is ops.IndexAdd and _scatter(s) and \
                    uses.get(id(s)) == 1 and type(a) is Pending and a.value is None and a.shape == p.shape and \
                    s.shape == p.shape and a.dtype == p.dtype == s.dtype:
                p.recorded = (p.op, p.inputs, p.params)
                p.op, p.inputs, p.params = _AddAt, [a, s.inputs[0]], {"index": s.params["index"]}
                changed = True
                break
    return changed


def _pending_order(targets: list[Pending]) -> list[Pending]:
    """The values not yet computed that the targets need, inputs before outputs (iterative DFS)."""
    order: list[Pending] = []
    seen: set[int] = set()
    stack: list[tuple[Pending, bool]] = [(t, False) for t in targets if t.value is None]
    while stack:
        p, done = stack.pop()
        if done:
            order.append(p)
            continue
        if id(p) in seen:
            continue
        seen.add(id(p))
        stack.append((p, True))
        for a in p.inputs:
            if type(a) is Pending and a.value is None and id(a) not in seen:
                stack.append((a, False))
    return order


# ------------------------------------------------------------------------------- scheduling

class _KernelStep:
    """One kernel to build and run: `nodes` (its pending values, in order) over `domain`, reading
    `sources` (computed arrays and pending values computed by earlier steps), producing `outputs`."""

    def __init__(self, nodes: list[Pending], outputs: list[Pending], sources: list[Any], domain: tuple[int, ...]):
        self.nodes, self.outputs, self.sources, self.domain = nodes, outputs, sources, domain
        self.largest = 0  # the largest kernel domain's size in its realization (stats count passes over it)

    def kernel(self, inputs: list[np.ndarray]) -> Kernel:
        where = {id(p): j for j, p in enumerate(self.nodes)}
        slot = {id(s): k for k, s in enumerate(self.sources)}
        knodes = []
        for p in self.nodes:
            args = tuple(("node", where[id(a)]) if id(a) in where else ("in", slot[id(a)]) for a in p.inputs)
            params = dict(p.params)
            if p.op is ops.Where:
                args += (("in", slot[id(params.pop("cond"))]),)
                params.pop("exact", None)
            knodes.append(KNode(p.op, args, params, p.shape, p.dtype))
        outputs = [(where[id(o)], "reduce" if o.op in kernels.REDUCTIONS else "store") for o in self.outputs]
        key = (self.domain, tuple((nd.op.__name__, nd.args, _params_key(nd.params), nd.shape, nd.dtype.str)
                                  for nd in knodes),
               tuple((kernels._compact(a).shape, a.dtype.str) for a in inputs), tuple(outputs))
        return Kernel(self.domain, inputs, knodes, outputs, key)


def _params_key(params: dict) -> tuple:
    """Parameters as a cache key (index arrays by their shapes: only NumPy tiles run them)."""
    return tuple(sorted((k, repr(np.shape(v)) if _advanced(v) or type(v) is np.ndarray else str(v))
                        for k, v in params.items()))


class _Plan:
    """The steps that compute `order` (see the module docstring): small ops and kernels by level."""

    def __init__(self, order: list[Pending], targets: list[Pending], min_elements: int, keep_all: bool = False):
        index = {id(p): i for i, p in enumerate(order)}
        n = len(order)
        inker = [False] * n     # computed inside a kernel
        aligned = [False] * n   # a kernel's per-tile value other nodes of that kernel may read
        key: list[Any] = [None] * n  # the kernel's domain: the shape every value of the kernel broadcasts to
        level = [0] * n         # the kernel level that computes it (in a kernel), or that may read it (small)
        keep = [False] * n      # written to memory
        users: list[list[int]] = [[] for _ in range(n)]
        gathers: dict[int, list[int]] = {}  # a GetItem computed at its points alone -> the values it recomputes
        for i, p in enumerate(order):
            ins = [index[id(a)] for a in p.inputs if type(a) is Pending and id(a) in index]
            for j in ins:
                users[j].append(i)
            fusible = p.op in _KERNEL_OPS and p.dtype.kind == "f" and all(a.dtype.kind == "f" for a in p.inputs) and (
                p.op is not ops.Where or p.params["cond"].dtype == bool) and (
                p.op is not ops.IndexAdd or _scatter(p))
            if p.op in kernels.REDUCTIONS:
                src, x = (ins[0] if ins else None), p.inputs[0]
                if fusible and (src is not None and inker[src] and aligned[src] or src is None and x.ndim >= 1 and
                                x.shape[0] >= 2 and x.size >= min_elements):  # (an array in memory: level 0)
                    inker[i], keep[i] = True, True
                    key[i], level[i] = (key[src], level[src]) if src is not None else (tuple(x.shape), 0)
                    aligned[i] = p.params["keepdims"] and 0 not in p.params["axis"]
                    continue
            elif p.op is ops.GetItem and ins and inker[ins[0]] and _advanced(p.params["index"]) and STEPS["gather"]:
                cone = _gather_cone(order, index, ins[0], inker, aligned, key, level)
                if cone is not None:  # a few elements of a big value: computed at those points only
                    gathers[i], level[i] = cone, level[ins[0]]
                    continue
            elif fusible and p.ndim >= 1 and p.shape[0] >= 2:
                # the domain: the first in-kernel input's that this value fits in (softmax's (N, 1) sums
                # live in their (N, C) kernel), else its own shape
                k = next((key[j] for j in ins if inker[j] and aligned[j] and _fits(p.shape, key[j])), p.shape)
                if p.size >= min_elements or any(inker[j] and aligned[j] and key[j] == k for j in ins):
                    inker[i], aligned[i], key[i] = True, True, k
                    for j in ins:
                        same = inker[j] and aligned[j] and key[j] == k
                        level[i] = max(level[i], level[j] if same else level[j] + (1 if inker[j] else 0))
                    for j in ins:  # what this kernel cannot compute itself it reads from memory
                        if inker[j] and not (aligned[j] and key[j] == k):
                            keep[j] = True
                        elif inker[j] and level[j] < level[i] and order[j].op in _COSTLY and STEPS["keep_costly"]:
                            keep[j] = True  # written once rather than recomputed (NumPy's exp: ~1 ms per 4M)
                    continue
            for j in ins:  # a small op: after the kernels that write its inputs
                level[i] = max(level[i], level[j] + (1 if inker[j] else 0))
                if inker[j]:
                    keep[j] = True
        for p in targets:
            if id(p) in index:
                keep[index[id(p)]] = True
        if keep_all:  # (verify: every value written, to be compared with eager's)
            keep = [True] * n
        top = max(level, default=0)
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            if inker[i] and keep[i]:
                groups.setdefault((level[i], key[i]), []).append(i)
        for (lv, k), outs in sorted(groups.items(), key=lambda item: item[0][0]):
            # a group nothing reads before level `latest` joins the last kernel of its key by then, which
            # often reads the same arrays (batch norm's sum(dy) joins the pass that writes dx)
            latest = min((level[u] - 1 for o in outs for u in users[o]), default=top)
            later = [lv2 for (lv2, k2) in groups if k2 == k and lv < lv2 <= latest and STEPS["sink"]]
            if later and groups.get((lv, k)) is outs:
                dest = groups[(max(later), k)]
                dest += outs
                del groups[(lv, k)]
                for o in outs:
                    level[o] = max(later)
        self.steps: list[Any] = []
        for lv in range(top + 1):
            self.steps += [_GatherStep(order[i], [order[c] for c in gathers[i]]) if i in gathers else order[i]
                           for i in range(n) if not inker[i] and level[i] == lv]
            for (lv2, _), outs in groups.items():
                if lv2 == lv:
                    self.steps.append(self._kernel(order, index, sorted(outs), inker, level, keep, key, lv))
        largest = max((math.prod(st.domain) for st in self.steps if isinstance(st, _KernelStep)), default=0)
        for st in self.steps:
            if isinstance(st, _KernelStep):
                st.largest = largest

    @staticmethod
    def _kernel(order: list[Pending], index: dict[int, int], outs: list[int], inker: list[bool], level: list[int],
                keep: list[bool], key: list[Any], lv: int) -> _KernelStep:
        """The kernel computing `outs`: their cone back to what is in memory (computed arrays,
        values kept by earlier steps), recomputing element-wise values of lower levels."""
        member: set[int] = set()
        stack = list(outs)
        while stack:
            i = stack.pop()
            if i in member:
                continue
            member.add(i)
            for a in order[i].inputs:
                j = index.get(id(a)) if type(a) is Pending else None
                if j is None or not inker[j] or keep[j] and level[j] < lv or key[j] != key[i]:
                    continue
                if order[j].op in kernels.REDUCTIONS and level[j] < lv:
                    continue
                stack.append(j)
        nodes = sorted(member)
        sources: list[Any] = []
        seen: set[int] = set()
        for i in nodes:
            p = order[i]
            extra = [p.params["cond"]] if p.op is ops.Where else []
            for a in list(p.inputs) + extra:
                j = index.get(id(a)) if type(a) is Pending else None
                if (j is None or j not in member) and id(a) not in seen:
                    seen.add(id(a))
                    sources.append(a)
        shapes = [order[i].shape for i in nodes if order[i].op not in kernels.REDUCTIONS] + [
            order[i].inputs[0].shape for i in nodes if order[i].op in kernels.REDUCTIONS]
        domain = tuple(np.broadcast_shapes(*shapes))
        return _KernelStep([order[i] for i in nodes], [order[i] for i in sorted(outs)], sources, domain)


class _GatherStep:
    """GetItem of single elements of a value computed inside a kernel: `cone` (that value and the
    element-wise values it is made of, in order) evaluated at the picked elements only."""

    def __init__(self, node: Pending, cone: list[Pending]):
        self.node, self.cone = node, cone

    def run(self) -> None:
        full, index = self.node.inputs[0].shape, self.node.params["index"]
        picked: dict[int, np.ndarray] = {}

        def at(a: Any) -> np.ndarray:  # a cone value's picked elements, or those of what it reads
            return picked[id(a)] if id(a) in picked else np.broadcast_to(_value(a), full)[index]
        with np.errstate(all="ignore"):
            for c in self.cone:
                args = [at(a) for a in c.inputs]
                if c.op is ops.BroadcastTo:
                    picked[id(c)] = args[0]
                elif c.op is ops.Where:
                    picked[id(c)] = ops.Where().forward(args[0], args[1], cond=at(c.params["cond"]), exact=True)
                else:
                    picked[id(c)] = np.asarray(c.op().forward(*args, **c.params))
        self.node.value = picked[id(self.cone[-1])]


def _fits(shape: tuple[int, ...], domain: tuple[int, ...]) -> bool:
    """Whether a value of `shape` lives in a kernel over `domain`: the same rank and leading
    extent (its rows are the domain's rows), broadcasting to it."""
    return len(shape) == len(domain) and shape[0] == domain[0] and all(
        n == m or n == 1 for n, m in zip(shape, domain))


def _gather_cone(order: list[Pending], index: dict[int, int], j: int, inker: list[bool], aligned: list[bool],
                 key: list[Any], level: list[int]) -> list[int] | None:
    """The in-kernel element-wise values that value j is computed from within its kernel, in
    order, if no reduction of j's own level is among them (it would need whole rows)."""
    cone: set[int] = set()
    stack = [j]
    while stack:
        i = stack.pop()
        if i in cone:
            continue
        if order[i].op not in _ELEMENTWISE and order[i].op not in (ops.BroadcastTo, ops.Where, ops.Cast):
            return None
        cone.add(i)
        for a in order[i].inputs:
            m = index.get(id(a)) if type(a) is Pending else None
            if m is None or not (inker[m] and aligned[m] and key[m] == key[j]):
                continue
            if order[m].op in kernels.REDUCTIONS:
                if level[m] == level[j]:
                    return None
                continue  # a reduction of an earlier level is in memory
            stack.append(m)
    return sorted(cone)



