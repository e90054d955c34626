"""Differential test against PyTorch (optional: skipped where torch is not installed).

Random programs of tinygrad_bn ops are generated from a seed. Every op in the table OPS is a pair
of source templates, tinygrad_bn's and its PyTorch twin, so a program is two runnable listings that
are executed line by line side by side. After each line the values are compared (shape, dtype and
values); at the end, first derivatives (`tg.grad` vs `torch.autograd.grad` with a random upstream
gradient, create_graph=True) and second derivatives (the gradient of a random projection of the
first derivatives: a Hessian-vector product). A failure prints both listings, so it reproduces by
pasting either one.

Inputs are multiples of 1/8 in [-2, 2] with many exact zeros, so ties (maximum, max, relu and abs
at 0, 0 ** 0, sqrt(relu(x)) at x < 0 with its infinite local derivative) occur on purpose.
Integer and bool tensors and Python numbers are mixed in as operands (PyTorch's type promotion).
NaN and inf must appear at the same places as in PyTorch; the finite rest is compared in float64
with rtol 1e-10; in float32 against PyTorch run in float64, where tinygrad_bn may be a few times
further off than PyTorch's own float32 result is (plus a small floor).

Two deliberate differences, documented in docs/safety.md and pinned in tests/test_silent.py:
- SELECTS: where abs (at 0), max/min (at the other elements), pow (at a base or exponent of 0) and
  std (of a constant, in second derivatives) send no gradient, tinygrad_bn sends exactly 0 even
  when the upstream gradient is infinite, as central differences do; PyTorch multiplies its 0 by
  the inf and gives NaN (also in its second derivatives, from where's dead branch). So in a program
  using one of them, a NaN of PyTorch's may be a finite value here; a NaN here must still be one
  in PyTorch.
- var/std with correction >= n: the forward is inf/nan in both, but PyTorch's backward divides by
  the unclamped n - correction; here the gradient is NaN. Random programs keep correction < n.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinygrad_bn as tg  # noqa: E402  (after importorskip: without torch nothing here runs)
import tinygrad_bn.nn.functional as F  # noqa: E402
from tinygrad_bn import Tensor  # noqa: E402

N_PROGRAMS = 200  # per float dtype
SELECTS = ("abs", "max", "min", "pow", "std")  # see the module docstring


def fl(x: Any) -> Any:
    """PyTorch refuses mean/var/softmax/... of integer tensors; the contract says they compute in float32."""
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


# ---------------------------------------------------------------------------------- the op table
# name -> (tinygrad_bn template, PyTorch template); {0}, {1} are the operands, {name} the parameters
# (a parameter is one text for both, or a (tinygrad_bn text, torch text) pair).
OPS: dict[str, tuple[str, str]] = {
    "add": ("{0} + {1}", "{0} + {1}"),
    "sub": ("{0} - {1}", "{0} - {1}"),
    "mul": ("{0} * {1}", "{0} * {1}"),
    "div": ("{0} / {1}", "{0} / {1}"),
    "pow": ("{0} ** {1}", "{0} ** {1}"),
    "maximum": ("tg.maximum({0}, {1})", "torch.maximum({0}, {1})"),
    "maximum_method": ("{0}.maximum({1})", "torch.maximum({0}, {1})"),
    "neg": ("-{0}", "-{0}"),
    "exp": ("{0}.exp()", "{0}.exp()"),
    "log": ("{0}.log()", "{0}.log()"),
    "sqrt": ("{0}.sqrt()", "{0}.sqrt()"),
    "abs": ("{0}.abs()", "{0}.abs()"),
    "relu": ("{0}.relu()", "{0}.relu()"),
    "tanh": ("{0}.tanh()", "{0}.tanh()"),
    "sigmoid": ("{0}.sigmoid()", "{0}.sigmoid()"),
    "sum": ("{0}.sum(axis={axis}, keepdims={keep})", "{0}.sum(dim={axis}, keepdim={keep})"),
    "mean": ("{0}.mean(axis={axis}, keepdims={keep})", "fl({0}).mean(dim={axis}, keepdim={keep})"),
    "max": ("{0}.max(axis={axis}, keepdims={keep})", "torch.amax({0}, dim={axis}, keepdim={keep})"),
    "min": ("{0}.min(axis={axis}, keepdims={keep})", "torch.amin({0}, dim={axis}, keepdim={keep})"),
    "var": ("{0}.var(axis={axis}, keepdims={keep}, correction={c})",
            "fl({0}).var(dim={axis}, keepdim={keep}, correction={c})"),
    "std": ("{0}.std(axis={axis}, keepdims={keep}, correction={c})",
            "fl({0}).std(dim={axis}, keepdim={keep}, correction={c})"),
    "logsumexp": ("{0}.logsumexp(axis={axis}, keepdims={keep})",
                  "torch.logsumexp(fl({0}), dim={axis}, keepdim={keep})"),
    "softmax": ("{0}.softmax(axis={axis})", "fl({0}).softmax(dim={axis})"),
    "log_softmax": ("{0}.log_softmax(axis={axis})", "fl({0}).log_softmax(dim={axis})"),
    "reshape": ("{0}.reshape({shape})", "{0}.reshape({shape})"),
    "transpose": ("{0}.transpose({perm})", "{0}.permute({perm})"),
    "T": ("{0}.T", "{0}.permute({perm})"),
    "broadcast_to": ("{0}.broadcast_to({shape})", "{0}.broadcast_to({shape})"),
    "getitem": ("{0}[{index}]", "{0}[{index}]"),
    "matmul": ("{0} @ {1}", "{0} @ {1}"),
    "batch_norm": ("F.batch_norm({0}, {1}, {2}, {3}, {4}, training={train})",
                   "F.batch_norm({0}, {1}, {2}, {3}, {4}, training={train})"),
    "layer_norm": ("F.layer_norm({0}, {shape}, {1}, {2})", "F.layer_norm({0}, {shape}, {1}, {2})"),
    "cross_entropy": ("F.cross_entropy({0}, {1}, reduction={reduction!r})",
                      "F.cross_entropy({0}, {1}, reduction={reduction!r})"),
}

DTYPES = {"float64": "float64", "float32": "float32", "int64": "int64", "int32": "int32", "uint8": "uint8",
          "bool": "bool_"}  # torch name -> NumPy name


class Disagreement(AssertionError):
    pass


# --------------------------------------------------------------------------------- comparison

def mismatch(a: np.ndarray, b: np.ndarray, ref: np.ndarray | None = None, torch_nan_ok: bool = False) -> str | None:
    """None if tinygrad_bn's `a` agrees with torch's `b`, else what differs. `ref` is torch's value
    computed in float64 (float32 programs): `a` may be 8x further from it than `b` is, plus a floor.
    torch_nan_ok: where torch has NaN, `a` may be anything (SELECTS, in the docstring above)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"shape/dtype {a.shape} {a.dtype}, torch {b.shape} {b.dtype}"
    if a.dtype.kind != "f":
        return None if np.array_equal(a, b) else "values differ"
    if not np.array_equal(np.isnan(a), np.isnan(b)) and not (torch_nan_ok and not (np.isnan(a) & ~np.isnan(b)).any()):
        return "NaN at other places"
    seen = ~np.isnan(b)
    if not np.array_equal(np.isinf(a[seen]), np.isinf(b[seen])) or not np.array_equal(a[np.isinf(b)], b[np.isinf(b)]):
        return "inf at other places (or of the other sign)"
    fin = np.isfinite(b) if ref is None else np.isfinite(b) & np.isfinite(ref)
    a64, b64 = a[fin].astype(np.float64), b[fin].astype(np.float64)
    if a64.size == 0:
        return None
    if ref is not None:
        r = ref[fin].astype(np.float64)
        err, tol = np.abs(a64 - r), 8 * np.abs(b64 - r) + 1e-5 * np.abs(r) + 1e-6 * max(1.0, np.abs(r).max())
    elif a.dtype == np.float64:
        err, tol = np.abs(a64 - b64), 1e-10 * np.abs(b64) + 1e-12 * max(1.0, np.abs(b64).max())
    else:  # a float32 array in a float64 program: computed in float64, rounded once
        err, tol = np.abs(a64 - b64), 1e-6 * np.abs(b64) + 1e-7 * max(1.0, np.abs(b64).max())
    bad = err > tol
    if bad.any():
        i = int(np.argmax(err - tol))
        return f"max error {err[i]:.3g} > tolerance {tol[i]:.3g} (tinygrad_bn {a64[i]!r}, torch {b64[i]!r})"
    return None


def as_array(v: Any) -> np.ndarray:
    if isinstance(v, Tensor):
        return np.asarray(v.data)
    return v.detach().numpy(force=True)  # (force: torch may return a ZeroTensor)


# ------------------------------------------------------------------------------------ programs

@dataclass
class Program:
    """Two listings (tinygrad_bn and torch) run line by line; `ref` is torch in float64."""
    dtype: str
    rng: np.random.Generator
    lines: list[tuple[str, str]] = field(default_factory=list)
    pool: list[str] = field(default_factory=list)  # values of a float dtype to build on
    leaves: list[str] = field(default_factory=list)  # float leaves that require grad
    consts: list[str] = field(default_factory=list)
    selects: bool = False  # the program uses an op of SELECTS (see the module docstring)

    def __post_init__(self) -> None:
        self.ns_tg: dict[str, Any] = {"np": np, "tg": tg, "Tensor": Tensor, "F": F}
        self.ns_th: dict[str, Any] = {"torch": torch, "F": torch.nn.functional, "fl": fl}
        self.ns_ref: dict[str, Any] | None = dict(self.ns_th) if self.dtype == "float32" else None

    def listing(self) -> str:
        tgl = "\n".join(f"    {a}" for a, _ in self.lines)
        thl = "\n".join(f"    {b}" for _, b in self.lines)
        return f"  tinygrad_bn:\n{tgl}\n  torch:\n{thl}"

    def fail(self, what: str) -> None:
        raise Disagreement(f"{what}\n{self.listing()}")

    def run(self, name: str, tg_src: str, th_src: str, compare: bool = True) -> bool:
        """`name = src` in every namespace; False (and nothing kept) when torch rejects it."""
        try:
            exec(f"{name} = {th_src}", self.ns_th)
        except Exception:
            return False  # not a valid program in PyTorch: not generated
        self.lines.append((f"{name} = {tg_src}", f"{name} = {th_src}"))
        if self.ns_ref is not None:
            exec(f"{name} = {th_src.replace('torch.float32', 'torch.float64')}", self.ns_ref)
        try:
            exec(f"{name} = {tg_src}", self.ns_tg)
        except Exception as e:
            self.fail(f"tinygrad_bn raised {type(e).__name__}: {e}\n  torch gives {self.ns_th[name]!r}")
        if compare:
            self.check(name, self.ns_tg[name], self.ns_th[name], None if self.ns_ref is None else self.ns_ref[name])
        return True

    def check(self, name: str, a: Any, b: Any, ref: Any) -> None:
        if b is None:  # an unused input's gradient: tinygrad_bn may give None or zeros
            if a is not None and np.any(as_array(a)):
                self.fail(f"{name}: torch gives None (zero), tinygrad_bn\n{as_array(a)!r}")
            return
        if a is None:
            a = Tensor(np.zeros(tuple(b.shape), as_array(b).dtype))
        av, bv = as_array(a), as_array(b)
        why = mismatch(av, bv, None if ref is None else as_array(ref), torch_nan_ok=self.selects)
        if why:
            more = "" if ref is None else f"\n  torch in float64:\n{as_array(ref)!r}"
            self.fail(f"{name}: {why}\n  tinygrad_bn:\n{av!r}\n  torch:\n{bv!r}{more}")

    # ---- making values
    def new(self, prefix: str) -> str:
        return f"{prefix}{len(self.lines)}"

    def values(self, shape: tuple[int, ...], dtype: str) -> list | float | int | bool:
        r = self.rng
        if dtype == "bool":
            v = r.random(shape) < 0.5
        elif dtype in ("int64", "int32"):
            v = r.integers(-3, 4, shape)
        elif dtype == "uint8":
            v = r.integers(0, 6, shape)
        else:  # multiples of 1/8 in [-2, 2], a fifth of them exactly 0
            v = r.integers(-16, 17, shape) / 8 * (r.random(shape) > 0.2)
        return np.asarray(v).astype(DTYPES[dtype]).tolist()

    def leaf(self, shape: tuple[int, ...], dtype: str | None = None, grad: bool = True, values: Any = None) -> str:
        """A new input: random values of `shape` (or the given `values`); float ones require grad."""
        dtype = dtype or self.dtype
        grad = grad and dtype.startswith("float")
        name = self.new("x" if grad else "c")
        v = self.values(shape, dtype) if values is None else np.asarray(values).astype(DTYPES[dtype]).tolist()
        rg = ", requires_grad=True" if grad else ""
        if np.size(v) == 0:  # a list cannot spell an empty shape such as (0, 3)
            self.run(name, f"Tensor(np.zeros({shape}, dtype=np.{DTYPES[dtype]}){rg})",
                     f"torch.zeros({shape}, dtype=torch.{dtype}{rg})")
        else:
            self.run(name, f"Tensor(np.array({v}, dtype=np.{DTYPES[dtype]}){rg})",
                     f"torch.tensor({v}, dtype=torch.{dtype}{rg})")
        (self.leaves if grad else self.consts).append(name)
        if grad and dtype == self.dtype:
            self.pool.append(name)
        return name

    def tie(self, x: str) -> str:
        """A new leaf equal to x, value by value (maximum's ties)."""
        name = self.new("x")
        self.run(name, f"Tensor({x}.detach(), requires_grad=True)", f"{x}.detach().clone().requires_grad_()")
        self.leaves.append(name)
        return name

    def apply(self, op: str, operands: list[str], **params: Any) -> str | None:
        tg_t, th_t = OPS[op]
        self.selects |= op in SELECTS
        tp = {k: v[0] if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) else v
              for k, v in params.items()}
        hp = {k: v[1] if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) else v
              for k, v in params.items()}
        name = self.new("v")
        if not self.run(name, tg_t.format(*operands, **tp), th_t.format(*operands, **hp)):
            return None
        d = self.ns_th[name].dtype
        if d == getattr(torch, self.dtype) or (self.dtype == "float32" and d.is_floating_point):
            self.pool.append(name)
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.ns_th[name].shape)

    # ---- derivatives
    def derivatives(self, out: str) -> None:
        """First derivatives into every leaf (upstream gradient u), then the Hessian-vector product
        d/dleaves sum_i <grad_i, v_i>."""
        if not self.ns_th[out].requires_grad or not self.leaves:
            return
        u = self.leaf(self.shape(out), str(self.ns_th[out].dtype).removeprefix("torch."), grad=False)
        xs = ", ".join(self.leaves)
        assert self.run("g", f"tg.grad({out}, [{xs}], grad_outputs={u}, create_graph=True, allow_unused=True)",
                        f"torch.autograd.grad({out}, [{xs}], grad_outputs={u}, create_graph=True, allow_unused=True)",
                        compare=False), f"torch rejects the gradient\n{self.listing()}"
        self.compare_tuple("g")
        vs = [self.leaf(self.shape(x), str(self.ns_th[x].dtype).removeprefix("torch."), grad=False)
              for x in self.leaves]
        terms = [f"(g[{i}] * {v}).sum()" for i, v in enumerate(vs) if getattr(self.ns_th["g"][i], "requires_grad", 0)]
        if not terms:
            return  # the gradient is constant in torch: nothing to differentiate
        self.run("s", " + ".join(terms), " + ".join(terms))
        # where tinygrad_bn's gradient is a constant (no graph), its HVP is 0 and torch's must be too
        none = f"(None,) * {len(self.leaves)}"
        if self.run("h", f"tg.grad(s, [{xs}], allow_unused=True) if s.requires_grad else {none}",
                    f"torch.autograd.grad(s, [{xs}], allow_unused=True)", compare=False):
            self.compare_tuple("h")  # (torch 2.13 cannot double-differentiate layer_norm without weight)

    def compare_tuple(self, name: str) -> None:
        for i, b in enumerate(self.ns_th[name]):
            ref = None if self.ns_ref is None else self.ns_ref[name][i]
            self.check(f"{name}[{i}] (d/d{self.leaves[i]})", self.ns_tg[name][i], b, ref)


# ---------------------------------------------------------------------------------- generators
# Each takes (program, rng, x) and appends one op applied to x (and operands it makes).

Gen = Callable[[Program, np.random.Generator, str], Any]
SHAPES = [(), (3,), (1,), (2, 3), (3, 1), (1, 3), (4, 3), (2, 3, 4), (2, 1, 4), (3, 2, 2)]
NUMBERS = ["0", "1", "2", "3", "-1", "0.0", "0.5", "2.0", "-1.5", "1.5"]


def pick(rng: np.random.Generator, seq: list) -> Any:
    return seq[int(rng.integers(len(seq)))]


def compatible_shape(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts with `shape`: a suffix of it, some sides set to 1, maybe an extra axis."""
    s = tuple(1 if rng.random() < 0.3 else n for n in shape[int(rng.integers(len(shape) + 1)):])
    return (2,) + s if rng.random() < 0.15 else s


def other_operand(p: Program, rng: np.random.Generator, x: str) -> str:
    u = rng.random()
    shape = compatible_shape(rng, p.shape(x))
    if u < 0.35:
        return p.leaf(shape)
    if u < 0.5:
        return p.tie(x) if p.ns_th[x].requires_grad else p.leaf(p.shape(x))
    if u < 0.7:
        return p.leaf(shape, pick(rng, ["int64", "int32", "uint8", "bool"]))
    if u < 0.8:  # the other float width: float32 in float64 programs (exact values), float64 in float32 ones
        return p.leaf(shape, "float32" if p.dtype == "float64" else "float64")
    if u < 0.9:
        others = [v for v in p.pool if _broadcasts(p.shape(v), p.shape(x))]
        return pick(rng, others) if others else p.leaf(shape)
    return pick(rng, NUMBERS)


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def binary(op: str) -> Gen:
    def gen(p: Program, rng: np.random.Generator, x: str) -> Any:
        y = other_operand(p, rng, x)
        return p.apply(op, [y, x] if rng.random() < 0.3 else [x, y])
    return gen


def unary(op: str) -> Gen:
    def gen(p: Program, rng: np.random.Generator, x: str) -> Any:
        if op in ("log", "sqrt") and rng.random() < 0.7:  # mostly inside the domain, 0 included
            x = p.apply(pick(rng, ["abs", "relu"]), [x]) or x
        return p.apply(op, [x])
    return gen


def axis_param(rng: np.random.Generator, ndim: int, torch_none: str = "None") -> tuple[str, str]:
    """None, an int (negative too; 0 and -1 for a 0-d tensor) or a tuple; (tinygrad_bn, torch) texts."""
    u, n = rng.random(), max(ndim, 1)
    if u < 0.2:
        return ("None", torch_none)
    if u < 0.6 or ndim < 2:
        a = str(int(rng.integers(-n, n)))
        return (a, a)
    k = int(rng.integers(1, ndim + 1))
    axes = tuple(int(a) - ndim * int(rng.random() < 0.3) for a in rng.permutation(ndim)[:k])
    return (repr(axes), repr(axes))


def reduction(op: str) -> Gen:
    def gen(p: Program, rng: np.random.Generator, x: str) -> Any:
        nd = len(p.shape(x))
        none = {"max": "()", "min": "()", "logsumexp": repr(tuple(range(nd)))}.get(op, "None")
        axis = axis_param(rng, nd, none)
        picked = eval(axis[0]) if nd else None
        picked = range(nd) if picked is None else (picked,) if isinstance(picked, int) else picked
        n = int(np.prod([p.shape(x)[a] for a in picked])) if nd else 1
        c = min(int(pick(rng, [0, 0, 1, 1, 2, 5])), max(n - 1, 0))  # correction < n (see the module docstring)
        return p.apply(op, [x], axis=axis, keep=bool(rng.random() < 0.4), c=c)
    return gen


def softmax(op: str) -> Gen:
    def gen(p: Program, rng: np.random.Generator, x: str) -> Any:
        n = max(len(p.shape(x)), 1)
        return p.apply(op, [x], axis=int(rng.integers(-n, n)))
    return gen


def reshape(p: Program, rng: np.random.Generator, x: str) -> Any:
    size = int(np.prod(p.shape(x)))
    factors = [f for f in (2, 3, 5, 7) for _ in range(20) if size % f ** (_ + 1) == 0]
    shape = [int(f) for f in rng.permutation(factors)] if factors else []
    while len(shape) > 1 and rng.random() < 0.5:  # merge neighbours
        i = int(rng.integers(len(shape) - 1))
        shape[i:i + 2] = [shape[i] * shape[i + 1]]
    for _ in range(int(rng.integers(0, 2))):
        shape.insert(int(rng.integers(len(shape) + 1)), 1)
    if shape and rng.random() < 0.3:
        shape[int(rng.integers(len(shape)))] = -1
    return p.apply("reshape", [x], shape=repr(tuple(shape)))


def transpose(p: Program, rng: np.random.Generator, x: str) -> Any:
    if len(p.shape(x)) < 3 and rng.random() < 0.6:  # 3 axes: permutations that are not their own inverse
        x = p.apply("broadcast_to", [x], shape=repr((2,) * (3 - len(p.shape(x))) + p.shape(x))) or x
    nd = len(p.shape(x))
    rev = ", ".join(str(i) for i in reversed(range(nd)))
    u = rng.random()
    if u < 0.3:
        return p.apply("T", [x], perm=rev)
    if u < 0.5:
        return p.apply("transpose", [x], perm=("", rev))  # no axes: reversed
    perm = ", ".join(str(int(i)) for i in rng.permutation(nd))
    return p.apply("transpose", [x], perm=perm)


def broadcast_to(p: Program, rng: np.random.Generator, x: str) -> Any:
    shape = tuple(int(rng.integers(1, 4)) if n == 1 else n for n in p.shape(x))
    if rng.random() < 0.5:
        shape = (int(rng.integers(1, 4)),) + shape
    return p.apply("broadcast_to", [x], shape=repr(shape))


def getitem(p: Program, rng: np.random.Generator, x: str) -> Any:
    shape = p.shape(x)
    tg_parts: list[str] = []
    th_parts: list[str] = []
    if rng.random() < 0.1:  # a boolean mask of the whole shape
        m = np.asarray(rng.random(shape) < 0.5).tolist()
        return p.apply("getitem", [x], index=(f"np.array({m})", f"torch.tensor({m})"))
    for n in shape[:int(rng.integers(len(shape) + 1))]:
        u = rng.random()
        if u < 0.25:
            tg_parts.append(str(int(rng.integers(-n, n))))
            th_parts.append(tg_parts[-1])
        elif u < 0.6:
            a, b, s = int(rng.integers(0, n)), int(rng.integers(0, n + 1)), int(rng.integers(1, 3))
            tg_parts.append(f"{a}:{b}:{s}" if rng.random() < 0.5 else f"{a}:")
            th_parts.append(tg_parts[-1])
        elif u < 0.9:
            idx = rng.integers(-n, n, int(rng.integers(1, 4))).tolist()
            tg_parts.append(f"np.array({idx})")
            th_parts.append(f"torch.tensor({idx})")
        else:
            tg_parts += [":", "None"]
            th_parts += [":", "None"]
    if rng.random() < 0.15:
        tg_parts.insert(0, "...")
        th_parts.insert(0, "...")
    if not tg_parts:
        return p.apply("getitem", [x], index="()")
    return p.apply("getitem", [x], index=(", ".join(tg_parts), ", ".join(th_parts)))


def matmul(p: Program, rng: np.random.Generator, x: str) -> Any:
    s = p.shape(x)
    if not s:
        return None
    m = int(rng.integers(1, 4))
    if rng.random() < 0.5:  # x @ w
        w = p.leaf((s[-1],) if rng.random() < 0.3 else (s[-1], m))
        return p.apply("matmul", [x, w])
    k = s[0] if len(s) == 1 else s[-2]
    w = p.leaf((k,) if rng.random() < 0.3 else (m, k))
    return p.apply("matmul", [w, x])


def batch_norm(p: Program, rng: np.random.Generator, x: str) -> Any:
    s = p.shape(x)
    if len(s) not in (2, 3):
        return None
    c = s[1]
    train = bool(rng.random() < 0.6)
    stats = ([p.leaf((c,), grad=False), p.leaf((c,), grad=False)] if not train or rng.random() < 0.5
             else ["None", "None"])
    if stats[1] != "None":  # a variance is positive
        stats[1] = p.apply("abs", [stats[1]]) or stats[1]
    affine = [p.leaf((c,)) if rng.random() < 0.7 else "None" for _ in range(2)]
    return p.apply("batch_norm", [x, *stats, *affine], train=train)


def layer_norm(p: Program, rng: np.random.Generator, x: str) -> Any:
    s = p.shape(x)
    if not s:
        return None
    shape = s[len(s) - int(rng.integers(1, len(s) + 1)):]
    affine = [p.leaf(shape) if rng.random() < 0.7 else "None" for _ in range(2)]
    return p.apply("layer_norm", [x, *affine], shape=repr(shape))


def cross_entropy(p: Program, rng: np.random.Generator, x: str) -> Any:
    s = p.shape(x)
    if len(s) not in (1, 2):
        return None
    if rng.random() < 0.6:  # class indices
        t = p.leaf(s[:-1], "int64")
        p.ns_th[t] %= s[-1]  # keep labels in range, identically in every namespace
        p.ns_tg[t] = Tensor(np.asarray(p.ns_th[t]))
        if p.ns_ref is not None:
            p.ns_ref[t] = p.ns_th[t].clone()
        v = p.ns_th[t].tolist()
        p.lines[-1] = (f"{t} = Tensor(np.array({v}, dtype=np.int64))", f"{t} = torch.tensor({v}, dtype=torch.int64)")
    else:  # probabilities: a softmax of a constant
        t = p.apply("softmax", [p.leaf(s, grad=False)], axis=-1) or "None"
    return p.apply("cross_entropy", [x, t], reduction=pick(rng, ["mean", "sum", "none"]))


def integer_op(p: Program, rng: np.random.Generator, x: str) -> Any:
    """An op on integer/bool tensors only (exact results, PyTorch's dtypes): compared, not built on."""
    c = p.leaf(pick(rng, SHAPES), pick(rng, ["int64", "int32", "uint8", "bool"]))
    gen = GENERATORS[pick(rng, ["sum", "max", "min", "mean", "exp", "abs", "relu", "neg", "add", "mul", "div"])]
    gen(p, rng, c)
    return None


GENERATORS: dict[str, Gen] = {
    **{op: binary(op) for op in ("add", "sub", "mul", "div", "pow", "maximum", "maximum_method")},
    **{op: unary(op) for op in ("neg", "exp", "log", "sqrt", "abs", "relu", "tanh", "sigmoid")},
    **{op: reduction(op) for op in ("sum", "mean", "max", "min", "var", "std", "logsumexp")},
    **{op: softmax(op) for op in ("softmax", "log_softmax")},
    "reshape": reshape, "transpose": transpose, "broadcast_to": broadcast_to, "getitem": getitem,
    "matmul": matmul, "batch_norm": batch_norm, "layer_norm": layer_norm, "cross_entropy": cross_entropy,
    "integer_op": integer_op,
}


def finish(p: Program, out: str | None) -> None:
    """Compare the constants (batch norm updates running statistics in place), then the derivatives."""
    for c in p.consts:
        p.check(c, p.ns_tg[c], p.ns_th[c], None if p.ns_ref is None else p.ns_ref[c])
    if out is not None:
        p.derivatives(out)


CHOICES = list(GENERATORS) + ["transpose", "getitem", "reshape", "matmul", "maximum", "pow"]  # (weight 2)


def random_program(seed: int, dtype: str) -> Program:
    """1 to 6 ops on a leaf, each on the latest value (or an earlier one), then the derivatives."""
    rng = np.random.default_rng(seed)
    p = Program(dtype, rng)
    cur = p.leaf(pick(rng, SHAPES))
    for _ in range(int(rng.integers(1, 7))):
        x = cur if rng.random() < 0.75 else pick(rng, p.pool)
        new = GENERATORS[pick(rng, CHOICES)](p, rng, x)
        if new is not None and new in p.pool:
            cur = new
    finish(p, cur)
    return p


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", range(N_PROGRAMS))
def test_random_program_matches_torch(seed: int, dtype: str) -> None:
    random_program(seed, dtype)


# ------------------------------------------------------------------------- edge cases, on purpose

def ops(p: Program, x: str, *names: str, **params: Any) -> str:
    """x, then each op of `names` applied in turn (params go to every op)."""
    for op in names:
        y = p.apply(op, [x], **params)
        assert y is not None, f"torch rejects {op} in the edge case\n{p.listing()}"
        x = y
    return x


def two(p: Program, op: str, a: str, b: str, **params: Any) -> str:
    y = p.apply(op, [a, b], **params)
    assert y is not None, f"torch rejects {op} in the edge case\n{p.listing()}"
    return y


def on(values: Any, *names: str, **params: Any) -> Callable[[Program], str]:
    """The edge case: a leaf with `values`, then the ops `names`."""
    return lambda p: ops(p, p.leaf((), values=values), *names, **params)


Z = [-1.0, 0.0, -0.0, 0.5, 2.0]  # negative, both zeros, positive
ALL_0D = {"axis": "0", "keep": False}
EDGES: dict[str, Callable[[Program], str | None]] = {
    # an infinite local derivative (sqrt, log at 0) meets a mask (relu, abs, maximum): PyTorch gives 0 (or NaN for abs)
    "sqrt(relu(x)) at x <= 0": lambda p: ops(p, p.leaf((), values=Z), "relu", "sqrt"),
    "log(relu(x)) at x <= 0": lambda p: ops(p, p.leaf((), values=Z), "relu", "log"),
    "sqrt(abs(x)) at 0": lambda p: ops(p, p.leaf((), values=Z), "abs", "sqrt"),
    "sqrt(maximum(x, 0)) at x <= 0": lambda p: ops(p, two(p, "maximum", p.leaf((), values=Z),
                                                          p.leaf((), values=[0.0] * len(Z))), "sqrt"),
    "maximum(x, y) with ties x == y": lambda p: two(p, "maximum", x := p.leaf((), values=Z), p.tie(x)),
    "maximum(sqrt(x), y) with ties at 0": lambda p: two(p, "maximum", ops(p, p.leaf((), values=[0.0, 0.0, 1.0]),
                                                                          "sqrt"), p.leaf((), values=[0.0, -1, 1])),
    "max over ties": lambda p: ops(p, p.leaf((), values=[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), "max", axis="-1",
                                   keep=False),
    "sqrt(max) over ties at 0": lambda p: ops(p, ops(p, p.leaf((), values=[[0.0, 0.0], [-1.0, 0.0]]), "max", axis="1",
                                                     keep=True), "sqrt"),
    "min over ties": lambda p: ops(p, p.leaf((), values=[[1.0, 1.0, 0.0], [0.0, -0.0, 0.0]]), "min", axis="None",
                                   keep=False),
    # pow: 0 ** 0, 0 ** positive, negative base with an integer exponent
    "x ** y at x = 0, y = 0": lambda p: two(p, "pow", p.leaf((), values=[0.0, 0.0, 0.0, -2.0, 2.0]),
                                            p.leaf((), values=[0.0, 1.0, 2.5, 2.0, 0.0])),
    "x ** 0 and x ** 1 at 0": lambda p: two(p, "add", two(p, "pow", x := p.leaf((), values=Z), "0"),
                                            two(p, "pow", x, "1")),
    "0 ** y": lambda p: two(p, "pow", "0.0", p.leaf((), values=[0.0, 1.0, 0.5, 3.0])),
    "x ** 0.5 at 0": lambda p: two(p, "pow", p.leaf((), values=[0.0, 1.0]), "0.5"),
    # PyTorch's type promotion with integer and bool tensors
    "float * int64 tensor": lambda p: two(p, "mul", p.leaf((), values=[1.5, -2.0]), p.leaf((), "int64", values=[3, 2])),
    "int32 tensor - float": lambda p: two(p, "sub", p.leaf((), "int32", values=[3, 2]), p.leaf((), values=[1.5, 0.0])),
    "bool tensor * float": lambda p: two(p, "mul", p.leaf((), "bool", values=[True, False]), p.leaf((), values=Z[:2])),
    "float / uint8 tensor (0 included)": lambda p: two(p, "div", p.leaf((), values=[1.0, 0.0, -1.0]),
                                                       p.leaf((), "uint8", values=[0, 0, 0])),
    "float32 * float64 tensor": lambda p: two(p, "mul", p.leaf((), "float32", values=[1.5]), p.leaf((), "float64",
                                                                                                    values=[0.25])),
    "int tensor * python float": lambda p: two(p, "mul", p.leaf((), "int64", values=[1, 2]), "2.5"),
    "exp of an int tensor": lambda p: ops(p, p.leaf((), "int64", values=[0, 1, -1]), "exp"),
    "sum of uint8": lambda p: ops(p, p.leaf((), "uint8", values=[200, 100, 50]), "sum", axis="None", keep=False),
    "sum of bool": lambda p: ops(p, p.leaf((), "bool", values=[True, True]), "sum", axis="0", keep=True),
    "mean of int32": lambda p: ops(p, p.leaf((), "int32", values=[[1, 2], [4, 4]]), "mean", axis="0", keep=False),
    "min of int64": lambda p: ops(p, p.leaf((), "int64", values=[[3, -2], [5, 7]]), "min", axis="-1", keep=False),
    "max of uint8": lambda p: ops(p, p.leaf((), "uint8", values=[[3, 0], [5, 255]]), "max", axis="None", keep=False),
    "int / int tensor": lambda p: two(p, "div", p.leaf((), "int64", values=[1, -3]),
                                      p.leaf((), "int64", values=[2, 0])),
    # 0-d tensors with axis 0 and -1
    **{f"{op} of a 0-d tensor, axis 0": on(0.75, op, **ALL_0D, c=0)
       for op in ("sum", "mean", "max", "min", "var", "std", "logsumexp", "softmax", "log_softmax")},
    "sum of a 0-d tensor, axis (-1,), keepdims": lambda p: ops(p, p.leaf((), values=0.5), "sum", axis="(-1,)",
                                                              keep=True),
    # var and std with correction 1 (>= n: tests/test_silent.py, see the module docstring)
    **{f"{op} with correction 1 of 2 values": on([[1.0, 1.5], [2.0, 2.0]], op, axis="1", keep=False, c=1)
       for op in ("var", "std")},
    # the composites
    "batch_norm, training": lambda p: batch_norm(p, np.random.default_rng(0), p.leaf((4, 3))),
    "layer_norm of a constant row": lambda p: p.apply("layer_norm", [p.leaf((), values=[[1.0, 1.0], [0.0, 2.0]]),
                                                                     "None", "None"], shape="(2,)"),
    "cross_entropy with a one-hot target": lambda p: p.apply("cross_entropy", [
        p.leaf((), values=[[0.0, 0.0, 1.0], [2.0, -1.0, 0.0]]), p.leaf((), values=[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
                                                                     grad=False)], reduction="mean"),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(EDGES))
def test_edge_case_matches_torch(case: str, dtype: str) -> None:
    p = Program(dtype, np.random.default_rng(0))
    out = EDGES[case](p)
    assert out is not None, f"torch rejects the edge case\n{p.listing()}"
    finish(p, out if out in p.pool else None)
