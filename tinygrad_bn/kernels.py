"""Executors for fused groups: what runs a `Kernel` the scheduler (fusion.py) built. The seam is
`Executor.run(kernel, inputs) -> outputs`; a new backend (CuPy kernels on a GPU, say) is one more
subclass, and the scheduler does not change.

A Kernel is a small program over one loop domain (a shape): nodes in topological order, each one
recorded op (its class and parameters) applied to kernel inputs (arrays read from memory: leaves,
results of earlier kernels, small values) or to earlier nodes; some nodes are the kernel's
outputs, written to memory (`store`) or accumulated over the domain (a reduction). Every
in-kernel node has the domain's leading extent, so the domain can be cut into row tiles.

- `NumPyTiles` runs the nodes' own NumPy forward on row tiles small enough to stay in cache: the
  same ufuncs as eager mode, one pass over memory per kernel. Always available.
- `Numba` compiles the kernel into one loop nest (numba, an optional extra): each element is read
  once and every intermediate stays in a register. Used for kernels of arithmetic only, whose
  reductions end the kernel; NumPy's SIMD exp/log are ~5x numba's scalar libm calls (measured:
  8.1 vs 1.6 ms for 4M float32 exps), so kernels with transcendentals run as NumPy tiles.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops

TILE_BYTES = 1 << 20  # a row tile's size per full-size array: 1 MiB (measured best of 256 KiB-2 MiB here)


@dataclass
class KNode:
    """One op in a kernel: `args` are ("in", k) for kernel input k or ("node", j) for node j."""
    op: type
    args: tuple[tuple[str, int], ...]
    params: dict[str, Any]
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class Kernel:
    """`domain`: the loop shape (every node broadcasts to it; all share its leading extent).
    `outputs`: (node index, kind) with kind "store" (the node's array) or "reduce" (a reduction
    over the leading axis, accumulated across tiles). `key` identifies the structure (ops, shapes,
    dtypes, which inputs are full-size), so compiled code is reused across calls."""
    domain: tuple[int, ...]
    inputs: list[np.ndarray]
    nodes: list[KNode]
    outputs: list[tuple[int, str]]
    key: tuple = field(default=())


REDUCTIONS = (ops.Sum, ops.Max, ops.Min)
_IDENTITY: dict[type, float] = {ops.Sum: 0.0, ops.Max: -np.inf, ops.Min: np.inf}  # what each reduction starts from


def _acc_dtype(node: KNode) -> np.dtype:
    """Sums of float32 accumulate in float64 (exact to float32 rounding at any length); max and
    min are exact in their own dtype."""
    return np.dtype(np.float64) if node.op is ops.Sum else node.dtype


class Executor:
    """Runs kernels; reports compile time apart from run time (`compile_seconds`, `compiled`)."""
    name = "executor"

    def __init__(self) -> None:
        self.compile_seconds = 0.0
        self.compiled = 0

    def accepts(self, kernel: Kernel) -> bool:
        return True

    def run(self, kernel: Kernel) -> list[np.ndarray]:
        raise NotImplementedError


class NumPyTiles(Executor):
    """Each node's own forward (NumPy, as eager mode) on row tiles of about TILE_BYTES."""
    name = "numpy"

    def run(self, kernel: Kernel) -> list[np.ndarray]:
        n = kernel.domain[0]
        row_bytes = max(1, math.prod(kernel.domain[1:])) * max(nd.dtype.itemsize for nd in kernel.nodes)
        rows = max(1, min(n, TILE_BYTES // row_bytes))
        outs: list[Any] = [None] * len(kernel.outputs)
        tiled = [inp.ndim == len(kernel.domain) and inp.shape[0] == n for inp in kernel.inputs]
        by_row = {j: _by_row(nd) for j, nd in enumerate(kernel.nodes) if nd.op is ops.IndexAdd}
        for a in range(0, n, rows):
            b = min(n, a + rows)
            vals: list[Any] = []
            for j, nd in enumerate(kernel.nodes):
                args = [(kernel.inputs[k][a:b] if tiled[k] else kernel.inputs[k]) if kind == "in" else vals[k]
                        for kind, k in nd.args]
                vals.append(_apply(nd, args, a, b) if j not in by_row else _scatter(nd, args[0], a, b, *by_row[j]))
            for i, (j, kind) in enumerate(kernel.outputs):
                nd, v = kernel.nodes[j], vals[j]
                if kind == "store":
                    if outs[i] is None:
                        outs[i] = np.empty(nd.shape, nd.dtype)
                    outs[i][a:b] = v
                elif 0 not in nd.params["axis"]:  # a reduction within rows: this tile's rows are done
                    if outs[i] is None:
                        outs[i] = np.empty(nd.shape, nd.dtype)
                    outs[i][a:b] = v
                else:  # over the leading axis: add this tile's part
                    outs[i] = v.astype(_acc_dtype(nd)) if outs[i] is None else _combine(nd.op, outs[i], v)
        for i, (j, kind) in enumerate(kernel.outputs):
            if kind == "reduce" and 0 in kernel.nodes[j].params["axis"]:
                nd = kernel.nodes[j]
                outs[i] = outs[i].reshape(nd.shape).astype(nd.dtype, copy=False)
        return outs


def _apply(nd: KNode, args: list, a: int, b: int) -> np.ndarray:
    """Node `nd`'s forward on the tile of rows a:b. A reduction over the leading axis gives its
    tile's part, kept (summed in float64 for float32 input)."""
    p = nd.params
    if nd.op is ops.BroadcastTo:
        return np.broadcast_to(args[0], (b - a,) + p["shape"][1:])
    if nd.op is ops.Where:  # (the condition is the kernel's third argument, tiled as any input)
        return np.where(args[2], args[0], args[1])
    if nd.op in REDUCTIONS and 0 in p["axis"]:
        x = args[0]
        if nd.op is ops.Sum:  # (in x's dtype within the tile: NumPy's casting sum is ~5x slower;
            return x.sum(axis=p["axis"], keepdims=True, dtype=p.get("dtype"))  # the tiles add in float64)
        return (x.max if nd.op is ops.Max else x.min)(axis=p["axis"], keepdims=True)
    if nd.op is ops.Sum:
        return args[0].sum(axis=p["axis"], keepdims=p["keepdims"], dtype=p.get("dtype"))
    if nd.op in (ops.Max, ops.Min):
        return (args[0].max if nd.op is ops.Max else args[0].min)(axis=p["axis"], keepdims=p["keepdims"])
    return nd.op().forward(*args, **p)  # an element-wise op: eager mode's own code


def _by_row(nd: KNode) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """An IndexAdd's elements (one 1-D index per axis: fusion._scatter) sorted by row, so each
    tile finds its own with a binary search: (sorted rows, the other axes' indices, the order)."""
    index = np.broadcast_arrays(*nd.params["index"])
    rows = index[0] % nd.shape[0]
    order = np.argsort(rows, kind="stable")  # (stable: repeated elements add in NumPy's order)
    return rows[order], [i[order] for i in index[1:]], order


def _scatter(nd: KNode, values: np.ndarray, a: int, b: int, rows: np.ndarray, others: list[np.ndarray],
             order: np.ndarray) -> np.ndarray:
    """The tile a:b of zeros(shape) with `values` added at the IndexAdd's elements in it."""
    lo, hi = np.searchsorted(rows, (a, b))
    out = np.zeros((b - a,) + nd.shape[1:], nd.dtype)
    picked = np.broadcast_to(values, order.shape)[order[lo:hi]]
    np.add.at(out, (rows[lo:hi] - a, *(i[lo:hi] for i in others)), picked)
    return out


def _combine(op: type, acc: np.ndarray, part: np.ndarray) -> np.ndarray:
    if op is ops.Sum:
        acc += part
        return acc
    return np.maximum(acc, part) if op is ops.Max else np.minimum(acc, part)  # both propagate NaN


# ------------------------------------------------------------------------------------- numba

_EXPR: dict[type, str] = {  # each element-wise op as a scalar expression in numba; NaN handled as NumPy does
    ops.Neg: "-{0}", ops.Add: "{0} + {1}", ops.Sub: "{0} - {1}", ops.Mul: "{0} * {1}", ops.Div: "{0} / {1}",
    ops.Sqrt: "np.sqrt({0})", ops.Abs: "abs({0})",
    ops.Relu: "({0} if ({0} >= 0 or {0} != {0}) else np.{dt}(0))",  # NumPy's maximum(0, x): -0.0 and NaN stay
    ops.Maximum: "({0} if ({0} > {1} or {0} != {0}) else {1})",  # NumPy's: a tie gives the second (0.0, -0.0)
    ops.Minimum: "({0} if ({0} < {1} or {0} != {0}) else {1})",
}


_NUMBA_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # (numba has no float16 arithmetic)


class Numba(Executor):
    """One compiled loop nest per kernel structure (shapes and dtypes are constants in the code,
    so the innermost loop vectorizes); fastmath allows only reassociation, which a vectorized sum
    needs."""
    name = "numba"
    _cache: dict[tuple, Any] = {}  # kernel key -> compiled function, shared by every context

    def __init__(self) -> None:
        super().__init__()
        import numba
        self.numba = numba

    def accepts(self, kernel: Kernel) -> bool:
        fed = {k for nd in kernel.nodes for kind, k in nd.args if kind == "node"}
        for j, nd in enumerate(kernel.nodes):
            if nd.op in REDUCTIONS:  # one that another node reads within the kernel, or of a smaller
                kind, k = nd.args[0]  # value than the domain (each element would count again): tiles
                of = kernel.nodes[k].shape if kind == "node" else _compact(kernel.inputs[k]).shape
                if j in fed or tuple(of) != kernel.domain:
                    return False
            elif nd.op not in _EXPR and nd.op not in (ops.BroadcastTo, ops.Where, ops.Cast):
                return False
            if nd.dtype not in _NUMBA_DTYPES:
                return False
        return all(inp.dtype in _NUMBA_DTYPES or inp.dtype == np.bool_ for inp in kernel.inputs)

    def run(self, kernel: Kernel) -> list[np.ndarray]:
        fn = self._cache.get(kernel.key)
        if fn is None:
            start = time.perf_counter()
            fn = self._compile(kernel)
            self.compile_seconds += time.perf_counter() - start
            self.compiled += 1
            self._cache[kernel.key] = fn
        outs = [np.empty(_out_shape(kernel, j, kind), _out_dtype(kernel, j, kind)) if kind == "store" else
                np.full(_out_shape(kernel, j, kind), _IDENTITY[kernel.nodes[j].op], _out_dtype(kernel, j, kind))
                for j, kind in kernel.outputs]
        fn(*_flat_inputs(kernel), *[o.reshape(-1) for o in outs])
        return [o if kind == "store" else o.reshape(kernel.nodes[j].shape).astype(kernel.nodes[j].dtype, copy=False)
                for o, (j, kind) in zip(outs, kernel.outputs)]

    def _compile(self, kernel: Kernel) -> Any:
        """The kernel's loop nest, compiled for its argument types. The source is written to the
        cache folder (TINYGRAD_BN_CACHE, else $XDG_CACHE_HOME/tinygrad_bn, else ~/.cache/
        tinygrad_bn) under its hash, so numba's own cache keeps the machine code across processes
        (a training script compiles once per machine); without a writable folder it compiles in
        memory each process."""
        src = "import numpy as np\n\n\n" + _source(kernel)
        fn = None
        folder = _cache_folder()
        if folder is not None:
            path = os.path.join(folder, f"kernel_{hashlib.sha1(src.encode()).hexdigest()[:20]}.py")
            try:
                if not os.path.exists(path):
                    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as f:
                        f.write(src)
                    os.replace(f.name, path)  # (atomic: a concurrent process sees all of it or nothing)
                name = "tinygrad_bn_" + os.path.basename(path)[:-3]  # (numba's cache imports it by name)
                spec = importlib.util.spec_from_file_location(name, path)
                assert spec is not None and spec.loader is not None
                module = sys.modules[name] = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                fn = self.numba.njit(fastmath={"reassoc"}, error_model="numpy", cache=True)(module.kernel)
            except OSError:
                fn = None
        if fn is None:
            scope: dict[str, Any] = {}
            exec(compile(src, "<tinygrad_bn fused kernel>", "exec"), scope)
            fn = self.numba.njit(fastmath={"reassoc"}, error_model="numpy")(scope["kernel"])
        fn.compile(tuple(self.numba.typeof(a) for a in _arguments(kernel)))
        return fn


def _arguments(kernel: Kernel) -> list[np.ndarray]:
    """Arrays of the types the compiled kernel takes (its inputs, flat; its outputs, flat)."""
    return _flat_inputs(kernel) + [np.zeros(0, _out_dtype(kernel, j, kind)) for j, kind in kernel.outputs]


def _flat_inputs(kernel: Kernel) -> list[np.ndarray]:
    """The kernel's inputs as the loop nest reads them: each one's distinct values, C-ordered, flat."""
    return [np.ascontiguousarray(_compact(a)).reshape(-1) for a in kernel.inputs]


def _cache_folder() -> str | None:
    folder = os.environ.get("TINYGRAD_BN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tinygrad_bn")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _kept(shape: tuple[int, ...], axis: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


def _out_shape(kernel: Kernel, j: int, kind: str) -> tuple[int, ...]:
    nd = kernel.nodes[j]
    return nd.shape if kind == "store" else _kept(kernel.domain, nd.params["axis"])


def _out_dtype(kernel: Kernel, j: int, kind: str) -> np.dtype:
    nd = kernel.nodes[j]
    return nd.dtype if kind == "store" else _acc_dtype(nd)


def _compact(a: np.ndarray) -> np.ndarray:
    """A broadcast view's distinct values (stride-0 axes cut to 1): what a kernel reads."""
    if 0 in a.strides and a.size:
        return a[tuple(slice(0, 1) if s == 0 else slice(None) for s in a.strides)]
    return a


def _index(shape: tuple[int, ...], domain: tuple[int, ...]) -> str:
    """The flat index of a C-ordered array of `shape`, broadcast to `domain`, at i0, i1, ..."""
    shape = (1,) * (len(domain) - len(shape)) + tuple(shape)
    terms, stride = [], 1
    for i in reversed(range(len(domain))):
        if shape[i] != 1:
            terms.append(f"i{i}" if stride == 1 else f"i{i} * {stride}")
        stride *= shape[i]
    return " + ".join(reversed(terms)) or "0"


def _source(kernel: Kernel) -> str:
    """The kernel as a Python loop nest for numba. A reduction over the innermost axes adds into
    a local accumulator, opened before its first reduced loop and added into the output after it
    (in a register, vectorized, and a short sum per output element: NumPy's accuracy, where one
    long chain of adds into the output would lose ~n/lanes ulps); a reduction over outer axes
    adds row by row into the output, as NumPy's does."""
    d = kernel.domain
    names = [f"in{k}" for k in range(len(kernel.inputs))] + [f"out{i}" for i in range(len(kernel.outputs))]
    body: list[str] = []
    vals: list[str] = []
    for j, nd in enumerate(kernel.nodes):
        a = [f"in{k}[{_index(_compact(kernel.inputs[k]).shape, d)}]" if kind == "in" else vals[k]
             for kind, k in nd.args]
        if nd.op in REDUCTIONS:
            vals.append(a[0])
            continue
        if nd.op is ops.BroadcastTo:
            expr = a[0]
        elif nd.op is ops.Where:
            expr = f"({a[0]} if {a[2]} else {a[1]})"
        elif nd.op is ops.Cast:
            expr = f"np.{nd.dtype.name}({a[0]})"
        else:
            expr = _EXPR[nd.op].format(*a, dt=nd.dtype.name)
        body.append(f"v{j} = {expr}")
        vals.append(f"v{j}")
    opened: dict[int, list[str]] = {}  # loop depth -> lines before that loop (a local accumulator's start)
    closed: dict[int, list[str]] = {}  # loop depth -> lines after it (the accumulator added out)
    for i, (j, kind) in enumerate(kernel.outputs):
        nd = kernel.nodes[j]
        if kind == "store":
            body.append(f"out{i}[{_index(nd.shape, d)}] = {vals[j]}")
            continue
        axis, at = nd.params["axis"], f"out{i}[{_index(_kept(d, nd.params['axis']), d)}]"
        depth = len(d)  # the first loop of the innermost run of reduced axes
        while depth > 0 and depth - 1 in axis:
            depth -= 1
        acc = f"acc{i}" if depth < len(d) else at
        if depth < len(d):
            opened.setdefault(depth, []).append(f"{acc} = np.{_acc_dtype(nd).name}(float('{_IDENTITY[nd.op]}'))")
            closed.setdefault(depth, []).extend(_accumulate(nd.op, at, acc))
        body.extend(_accumulate(nd.op, acc, vals[j]))
    lines = [f"def kernel({', '.join(names)}):"]
    for depth, n in enumerate(d):
        lines += ["    " * (depth + 1) + line for line in opened.get(depth, [])]
        lines.append("    " * (depth + 1) + f"for i{depth} in range({n}):")
    lines += ["    " * (len(d) + 1) + line for line in body]
    for depth in reversed(range(len(d))):
        lines += ["    " * (depth + 1) + line for line in closed.get(depth, [])]
    return "\n".join(lines) + "\n"


def _accumulate(op: type, into: str, value: str) -> list[str]:
    """`into` combined with `value` by the reduction `op`; max and min keep the first NaN (once the
    accumulator is NaN no comparison moves it)."""
    if op is ops.Sum:
        return [f"{into} += {value}"]
    cmp = ">" if op is ops.Max else "<"
    return [f"if {value} {cmp} {into} or {value} != {value}:", f"    {into} = {value}"]
