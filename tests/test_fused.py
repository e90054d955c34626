"""tg.fused() against eager mode. Every value and every gradient computed under the context must be
eager's, to round-off: the op table of test_ops.py (unary, binary over every broadcasting pattern,
reductions over every axis), the composites (batch/layer/group norm, softmax, cross-entropy, an MLP
with batch norm trained by SGD), first and second derivatives, float32 and float64, with both
executors (NumPy row tiles and numba loop nests). Then the semantics: nothing pending leaves the
context, reads inside it compute, errors come where eager raises them, the graph is the same,
in-place safety, verify=True, the options, and eager mode left exactly as it was.

Tolerances (assert_as_eager), on each array's largest difference:
- float64: 1e-12 of eager's largest magnitude: round-off only (measured: at most ~15 ulps, from
  sums added in another order); a wrong tile, operand or rule is off by O(1).
- float32: 2 ulps of eager's largest magnitude, plus twice eager's own float32 rounding error.
  Element-wise, the kernels run eager's own ufuncs (NumPy tiles) or the same IEEE operations
  (numba): exact in practice, and eager's own error is at most an ulp or so: a few ulps in all. A
  reduction differs by summation error: eager NumPy sums float32 in float32 (pairwise along a
  contiguous axis, row after row down axis 0), the kernels accumulate in float64 and round once
  (kernels._acc_dtype), and the scheduler may reassociate (schedule._factor_sums sums a product's
  factors apart, or multiplies them in another order). Each is a float32 evaluation of the same
  value, |fused - eager| <= |fused - exact| + |eager - exact|, and both errors are of the size of
  the rounding noise of that computation. A bound from the result's magnitude alone does not
  hold: an intermediate can be far larger than the result (softmax's backward sums g * s, ~3, for
  a gradient of ~0.4; a sum that cancels to ~0.1 of terms ~1). So the noise is measured, per
  array: the largest |eager float32 - the same computation in float64| over the case itself and
  REPLICAS copies of it whose float32 inputs are moved by 0-2 ulps (each copy rounds differently:
  independent samples of eager's error). A real error (a tile dropped or added twice, a wrong
  operand) is off by far more than float32 noise.
Every loss is a random projection: nothing compared is ~0 by cancellation (ulps of ~0 mean nothing).

numba compiles each distinct kernel structure once (~0.4 s; compiled kernels go to a temporary
folder here, so every run pays it): the whole table runs on NumPy tiles, numba a representative
subset (the NUMBA_* lists; composites in float32, the dtype of training), keeping this file near a
minute on 2 cores. A test that found a bug in fusion.py or kernels.py is kept and marked
xfail(strict=True, reason="BUG: ...").
"""
from __future__ import annotations

import contextlib
import math
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from test_ops import AXES, BINARY, BROADCASTS, REDUCE, UNARY

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn import fusion, kernels
from tinygrad_bn.engine import _State
from tinygrad_bn.training import MLP

DTYPES = [np.float64, np.float32]
REPLICAS = 3  # float32 cases: eager's rounding noise measured on the case and on this many copies
# shapes cut into NumPy row tiles of kernels.TILE_BYTES unevenly (several tiles, a partial last one) in
# both dtypes: float32 rows fit one tile plus a remainder, float64 ones two tiles plus that remainder
BIG = (kernels.TILE_BYTES // (257 * 4) + 80, 257)
BIG3 = (kernels.TILE_BYTES // (7 * 33 * 4) + 50, 7, 33)


@pytest.fixture(autouse=True, scope="module")
def kernel_cache_in_a_temporary_folder(tmp_path_factory):
    """numba's compiled kernels go to a folder of this run (not ~/.cache): every run compiles, the
    same as a first run on a new machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGRAD_BN_CACHE", str(tmp_path_factory.mktemp("kernels")))
        yield


# ------------------------------------------------------------------------------------------- helpers

def array(t) -> np.ndarray:
    return np.asarray(t.data if isinstance(t, tg.Tensor) else t)


def assert_as_eager(got, want, noise: float | None = None, what: str = "") -> None:
    """`got` (fused) is `want` (eager) to round-off (the module docstring). `noise`: for float32,
    eager's largest float32 rounding error on this array (rounding_noise)."""
    got, want = array(got), array(want)
    assert type(got) is np.ndarray, f"{what}: {type(got).__name__}, not an ndarray"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != eager's {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != eager's {want.dtype}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN in other places")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"{what}: infinities differ")
    finite = np.isfinite(want)
    g, w = got[finite].astype(np.float64), want[finite].astype(np.float64)
    scale = float(np.max(np.abs(w), initial=0.0))
    if want.dtype == np.float64:
        tol, rule = 1e-12 * scale, "1e-12 relative"
    else:
        assert want.dtype == np.float32, want.dtype
        assert noise is not None, f"{what}: a float32 comparison needs eager's rounding noise"
        ulp = float(np.spacing(np.float32(scale)))
        tol, rule = 2 * ulp + 2 * noise, f"2 ulps + 2 x eager's rounding noise {noise:.3g} ({noise / ulp:.1f} ulps)"
    worst = float(np.max(np.abs(g - w), initial=0.0))
    assert worst <= tol, (f"{what}: max |fused - eager| = {worst:.3g} > {tol:.3g} ({rule}; max |eager| = "
                          f"{scale:.3g}, {want.dtype})")


def needs(executor: str | None) -> None:
    if executor == "numba":
        pytest.importorskip("numba")


def under(fused: dict | None):
    """tg.fused(**fused), or eager mode for None."""
    return tg.fused(**fused) if fused is not None else contextlib.nullcontext()


def kernels_ran(f: tg.fused) -> int:
    return f.stats["kernels_numpy"] + f.stats["kernels_numba"]


def all_tensors(*roots: tg.Tensor) -> list[tg.Tensor]:
    """Every tensor of the graph behind roots (walking _ctx.parents), each once, in a fixed order."""
    seen, order, stack = set(), [], list(reversed(roots))
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        order.append(t)
        if t._ctx is not None and t._ctx.parents is not None:
            stack.extend(reversed(t._ctx.parents))
    return order


class Inputs:
    """What a case computes on: values drawn from a seeded generator and rounded to `dtype` (moved
    by 0-2 ulps in a replica), held in `compute` (float64: the exact run of float32 values); and
    where: `context()` is tg.fused(**fused), or eager mode."""

    def __init__(self, seed: int, dtype, fused: dict | None = None, compute=None, replica: int = 0):
        self.rng = np.random.default_rng(seed)
        self.dtype, self.compute, self.fused = np.dtype(dtype), np.dtype(compute or dtype), fused
        self.jitter = np.random.default_rng([seed, replica]) if replica else None
        self.contexts: list[tg.fused] = []

    def array(self, x) -> np.ndarray:
        a = np.asarray(x).astype(self.dtype)
        if self.jitter is not None:
            a = (a + np.spacing(a) * self.jitter.integers(-2, 3, a.shape)).astype(self.dtype)
        return a.astype(self.compute)

    def draw(self, shape, domain: str = "any", scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
        """Values as conftest.leaf draws them: 'any' N(0, 1), 'pos' in [0.5, 2], 'nonzero' |x| there."""
        if domain == "pos":
            x = self.rng.uniform(0.5, 2.0, shape)
        elif domain == "nonzero":
            x = self.rng.uniform(0.5, 2.0, shape) * self.rng.choice([-1.0, 1.0], shape)
        else:
            x = self.rng.standard_normal(shape)
        return self.array(x * scale + shift)

    def leaf(self, shape, domain: str = "any", scale: float = 1.0, shift: float = 0.0, grad: bool = True):
        return tg.Tensor(self.draw(shape, domain, scale, shift), requires_grad=grad)

    def project(self, y: tg.Tensor) -> tg.Tensor:
        """A random projection of y: a loss whose gradient is nowhere ~0 by cancellation."""
        return (y * tg.Tensor(self.draw(y.shape))).sum()

    @contextlib.contextmanager
    def context(self):
        with under(self.fused) as f:
            if f is not None:
                self.contexts.append(f)
            yield f


def outcome(case, seed: int, dtype, fused: dict | None = None, compute=None, replica: int = 0):
    """case(Inputs) -> {name: Tensor or array}, read after its contexts closed: ({name: array}, contexts)."""
    v = Inputs(seed, dtype, fused, compute, replica)
    return {k: np.array(array(t)) for k, t in case(v).items()}, v.contexts


def rounding_noise(case, seed: int, dtype) -> dict[str, float]:
    """Per result, eager's largest float32 rounding error: |float32 - float64| from the same float32
    inputs, over the case and REPLICAS copies of it (inputs moved by a few ulps)."""
    noise: dict[str, float] = {}
    if np.dtype(dtype) != np.float32:
        return noise
    for r in range(REPLICAS + 1):
        low, _ = outcome(case, seed, dtype, replica=r)
        exact, _ = outcome(case, seed, dtype, compute=np.float64, replica=r)
        for k, a in low.items():
            if a.dtype.kind == "f":
                d = np.abs(a.astype(np.float64) - exact[k])
                noise[k] = max(noise.get(k, 0.0), float(np.max(d[np.isfinite(d)], initial=0.0)))
    return noise


def check(case, dtype, executor: str, seed: int = 7, min_elements: int = 1) -> list[tg.fused]:
    """The case fused (min_elements=1: kernels for arrays of any size) against eager, every result."""
    want, _ = outcome(case, seed, dtype)
    got, contexts = outcome(case, seed, dtype, {"executor": executor, "min_elements": min_elements})
    noise = rounding_noise(case, seed, dtype)
    assert got.keys() == want.keys()
    for k in want:
        assert_as_eager(got[k], want[k], noise.get(k), k)
    assert contexts and all(kernels_ran(f) >= 1 for f in contexts), [f.stats for f in contexts]
    return contexts


# ------------------------------------------------------------------------------------ the op table

def op_case(fn, shapes, domains):
    """fn on leaves, then backward with a random upstream gradient: the value and each gradient."""
    def case(v: Inputs) -> dict:
        xs = [v.leaf(s, d) for s, d in zip(shapes, domains)]
        with v.context():
            out = fn(*xs)
            out.backward(v.draw(out.shape))
        return {"value": out, **{f"gradient of input {i}": x.grad for i, x in enumerate(xs)}}
    return case


NUMBA_UNARY = ["neg", "abs", "relu", "sqrt", "square", "rdiv", "exp"]  # arithmetic (numba), and one transcendental
NUMBA_BINARY = ["add", "sub", "mul", "div", "maximum"]
NUMBA_BROADCASTS = [((3, 4), (4,)), ((2, 1, 4), (1, 3, 1)), ((4,), (2, 3, 1)), ((BIG[0], 1), BIG)]


@pytest.mark.parametrize("shape", [BIG, BIG3])
def test_big_shapes_split_into_uneven_row_tiles(shape):
    """Several NumPy row tiles with a partial last one, in both dtypes: a wrong tile offset, or a
    mishandled partial tile, shows in every test using these shapes."""
    for dtype in DTYPES:
        rows = kernels.TILE_BYTES // (math.prod(shape[1:]) * np.dtype(dtype).itemsize)
        assert 1 <= rows < shape[0] and shape[0] % rows, (dtype, rows)


def unary_cases():
    for dtype in DTYPES:
        for name in UNARY:
            for shape in [(5,), (3, 4), (2, 3, 4), BIG]:
                yield pytest.param(name, shape, dtype, "numpy", id=f"{name}-{shape}-{np.dtype(dtype)}-numpy")
        for name in NUMBA_UNARY:
            yield pytest.param(name, BIG, dtype, "numba", id=f"{name}-big-{np.dtype(dtype)}-numba")


@pytest.mark.parametrize("name, shape, dtype, executor", list(unary_cases()))
def test_unary_op_table(name, shape, dtype, executor):
    needs(executor)
    fn, _, domain = UNARY[name]
    (f,) = check(op_case(fn, [shape], [domain]), dtype, executor, seed=1)
    if executor == "numba" and name != "exp":  # arithmetic: numba's own loop nest, not the NumPy fallback
        assert f.stats["kernels_numba"] >= 1, f.stats


def binary_cases():
    for dtype in DTYPES:
        for name in BINARY:
            for shapes in BROADCASTS + [(BIG, (BIG[1],)), ((BIG[0], 1), BIG), (BIG, BIG)]:
                yield pytest.param(name, shapes, dtype, "numpy", id=f"{name}-{shapes}-{np.dtype(dtype)}-numpy")
        for name in NUMBA_BINARY:  # every arithmetic op once on a multi-tile broadcast
            yield pytest.param(name, (BIG, (BIG[1],)), dtype, "numba", id=f"{name}-big-row-{np.dtype(dtype)}-numba")
    for shapes in NUMBA_BROADCASTS:  # other kinds of broadcast once (mul: both operands reach the gradients)
        yield pytest.param("mul", shapes, np.float64, "numba", id=f"mul-{shapes}-float64-numba")


@pytest.mark.parametrize("name, shapes, dtype, executor", list(binary_cases()))
def test_binary_op_table_every_broadcast(name, shapes, dtype, executor):
    needs(executor)
    fn, _, domains = BINARY[name]
    (f,) = check(op_case(fn, shapes, domains), dtype, executor, seed=2)
    if executor == "numba":
        assert f.stats["kernels_numba"] >= 1, f.stats


NUMBA_REDUCE = [("sum", (0, 2)), ("max", 0), ("var", -1), ("std", None), ("mean", 1)]


def reduce_cases():
    for dtype in DTYPES:
        for name in REDUCE:
            for axis in AXES:
                for keepdims in (False, True):
                    yield pytest.param(name, axis, keepdims, (2, 3, 4), dtype, "numpy",
                                       id=f"{name}-{axis}-{keepdims}-small-{np.dtype(dtype)}-numpy")
            for axis in [0, -1, (0, 2), None]:  # several tiles: reductions across them (axis 0) and within rows
                yield pytest.param(name, axis, True, BIG3, dtype, "numpy",
                                   id=f"{name}-{axis}-big-{np.dtype(dtype)}-numpy")
        for name, axis in NUMBA_REDUCE:
            yield pytest.param(name, axis, False, BIG3, dtype, "numba", id=f"{name}-{axis}-big-{np.dtype(dtype)}-numba")


@pytest.mark.parametrize("name, axis, keepdims, shape, dtype, executor", list(reduce_cases()))
def test_reduce_op_table_every_axis(name, axis, keepdims, shape, dtype, executor):
    """The reduction of an element-wise value (x * 1.5 + 0.25, so a kernel computes what it reduces
    and the reduction runs in that kernel) and its gradient, over every axis."""
    needs(executor)
    fn = REDUCE[name][0]
    check(op_case(lambda a: fn(a * 1.5 + 0.25, axis, keepdims), [shape], ["any"]), dtype, executor, seed=3)


@pytest.mark.parametrize("executor", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_where_cast_and_movement_ops_between_kernels(dtype, executor):
    """Where (a broadcast condition), Cast both ways, BroadcastTo, Transpose and Reshape between
    element-wise ops, reductions of the result, and a sum accumulated in float64."""
    needs(executor)
    other = np.float32 if dtype == np.float64 else np.float64
    cond = np.random.default_rng(4).random((BIG[0], 1)) > 0.3

    def fn(x, c):
        y = tg.where(cond, x * 2.0, c.broadcast_to(BIG) - 1.0)
        z = (y.cast(other) * 3.0).relu().cast(dtype)
        t = z.transpose(1, 0).reshape(BIG[1], 4, BIG[0] // 4) * 0.5
        return t.sum(1) * t.max(1) + x.sum(dtype=np.float64).cast(dtype)
    assert BIG[0] % 4 == 0
    check(op_case(fn, [BIG, (BIG[1],)], ["any", "any"]), dtype, executor, seed=5)


# -------------------------------------------------------------------- special values, bit for bit

SPECIAL = np.array([-0.0, 0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 2.5, -2.5, 3.0] * 30).reshape(30, 10)
OTHER = np.array([0.0, -0.0, np.nan, 1.0, 0.0, np.inf, 5.0, -np.inf, 2.5, np.nan] * 30).reshape(30, 10)
SPECIAL_OPS = {
    "relu": lambda a, b: a.relu(), "abs": lambda a, b: a.abs(), "neg": lambda a, b: -a, "sqrt": lambda a, b: a.sqrt(),
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
    "maximum": lambda a, b: tg.maximum(a, b), "minimum": lambda a, b: tg.minimum(a, b),
    "where": lambda a, b: tg.where(OTHER > 0, a, b), "max_axis0": lambda a, b: (a * 1).max(0),
    "min_axis1": lambda a, b: (a * 1).min(1), "sum_axis0": lambda a, b: (a * 1).sum(0),
}


@pytest.mark.parametrize("executor", ["numpy", "numba"])
@pytest.mark.parametrize("name", SPECIAL_OPS)
def test_special_values_bit_for_bit(name, executor):
    """NaN, infinities and signed zeros come out as eager's, to the bit (the sign of a zero too)."""
    needs(executor)
    fn = SPECIAL_OPS[name]
    with np.errstate(all="ignore"):
        want = fn(tg.Tensor(SPECIAL), tg.Tensor(OTHER)).data
        with tg.fused(executor=executor, min_elements=1) as f:
            got = fn(tg.Tensor(SPECIAL), tg.Tensor(OTHER))
    assert kernels_ran(f) >= 1, f.stats
    np.testing.assert_array_equal(got.data, want)
    np.testing.assert_array_equal(np.signbit(got.data), np.signbit(want), err_msg="the sign of a zero differs")


# -------------------------------------------------------------------------------------- composites

def with_grads(v: Inputs, out: dict, y: tg.Tensor, named: dict) -> dict:
    """out, plus the gradients of named leaves after backward from a random projection of y (a
    loss itself if 0-d)."""
    (v.project(y) if y.ndim else y).backward()
    return {**out, **{f"d{k}": t.grad for k, t in named.items()}}


def bn_train(shape):
    def case(v: Inputs) -> dict:
        c = shape[1]
        x, w, b = v.leaf(shape, scale=2.0, shift=0.5), v.leaf((c,), "pos"), v.leaf((c,))
        rm, rv = v.leaf((c,), grad=False), v.leaf((c,), "pos", grad=False)
        with v.context():
            y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2)
            return with_grads(v, {"y": y, "running_mean": rm, "running_var": rv}, y, {"x": x, "w": w, "b": b})
    return case


def bn_eval(v: Inputs) -> dict:
    x, w, b = v.leaf((300, 40)), v.leaf((40,), "pos"), v.leaf((40,))
    rm, rv = v.leaf((40,), grad=False), v.leaf((40,), "pos", grad=False)
    with v.context():
        y = F.batch_norm(x, rm, rv, w, b, training=False)
        return with_grads(v, {"y": y}, y, {"x": x, "w": w, "b": b})


def layer_norm(v: Inputs) -> dict:
    x, w, b = v.leaf((300, 40)), v.leaf((40,), "pos"), v.leaf((40,))
    with v.context():
        y = F.layer_norm(x, 40, w, b)
        return with_grads(v, {"y": y}, y, {"x": x, "w": w, "b": b})


def group_norm(v: Inputs) -> dict:
    x, w, b = v.leaf((30, 12, 9)), v.leaf((12,), "pos"), v.leaf((12,))
    with v.context():
        y = F.group_norm(x, 4, w, b)
        return with_grads(v, {"y": y}, y, {"x": x, "w": w, "b": b})


def softmax(axis, log=False):
    def case(v: Inputs) -> dict:
        x = v.leaf((300, 40), scale=3.0)
        with v.context():
            y = (F.log_softmax if log else F.softmax)(x, axis)
            return with_grads(v, {"y": y}, y, {"x": x})
    return case


def cross_entropy(target: str, logits=(300, 10), weighted: bool = False, **options):
    def case(v: Inputs) -> dict:
        z = v.leaf(logits, scale=2.0)
        if target == "probabilities":
            p = v.rng.uniform(size=logits)
            t = v.array(p / p.sum(1, keepdims=True))
        else:
            t = v.rng.integers(0, logits[1], (logits[0],) + logits[2:])
            t[t == 3] = options.get("ignore_index", 3)  # (class 3 then: no change unless ignore_index is 3)
        weight = v.draw((logits[1],), "pos") if weighted else None
        with v.context():
            loss = F.cross_entropy(z, t, weight=weight, **options)
            return with_grads(v, {"loss": loss}, loss, {"z": z})
    return case


def mlp_training(v: Inputs, steps: int = 3) -> dict:
    """MLP [20, 64, 64] -> 10 with batch norm, cross-entropy and SGD, three steps, each under its
    own context (as a training loop would): each step's loss, then every parameter and buffer."""
    start = MLP([20, 64, 64], 10, batch_norm=True, seed=0, dtype=v.dtype).state_dict()
    model = MLP([20, 64, 64], 10, batch_norm=True, seed=0, dtype=v.compute)
    model.load_state_dict({k: v.array(a) if a.dtype.kind == "f" else a for k, a in start.items()})
    opt = tg.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        x, y = tg.Tensor(v.draw((128, 20))), v.rng.integers(0, 10, 128)
        with v.context():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.data)
    return {"losses": np.stack(losses), **model.state_dict()}


COMPOSITES = {
    "batch_norm_train_2d": bn_train((300, 40)),
    "batch_norm_train_4d": bn_train((16, 8, 6, 5)),
    "batch_norm_eval": bn_eval,
    "layer_norm": layer_norm,
    "group_norm": group_norm,
    "softmax_last": softmax(-1),
    "softmax_axis0": softmax(0),
    "log_softmax": softmax(1, log=True),
    "ce_indices": cross_entropy("indices"),
    "ce_indices_3d": cross_entropy("indices", logits=(30, 10, 7)),
    "ce_probabilities": cross_entropy("probabilities"),
    "ce_weight_ignore_index": cross_entropy("indices", weighted=True, ignore_index=3),
    "ce_label_smoothing": cross_entropy("indices", label_smoothing=0.1),
    "ce_everything_sum": cross_entropy("indices", weighted=True, ignore_index=3, label_smoothing=0.2, reduction="sum"),
    "ce_probabilities_smoothing_weight": cross_entropy("probabilities", weighted=True, label_smoothing=0.3),
    "ce_none": cross_entropy("indices", reduction="none", label_smoothing=0.1),
    "mlp_batch_norm_sgd_3_steps": mlp_training,
}
NUMBA_COMPOSITES = ["batch_norm_train_2d", "layer_norm", "softmax_axis0", "ce_everything_sum", "group_norm",
                    "mlp_batch_norm_sgd_3_steps"]


def composite_cases():
    for dtype in DTYPES:
        for name in COMPOSITES:
            for executor in ("numpy", "numba"):
                if executor == "numba" and (dtype == np.float64 or name not in NUMBA_COMPOSITES):
                    continue
                marks: list = []
                yield pytest.param(name, dtype, executor, marks=marks, id=f"{name}-{np.dtype(dtype)}-{executor}")


@pytest.mark.parametrize("name, dtype, executor", list(composite_cases()))
def test_composite_values_gradients_and_running_stats(name, dtype, executor):
    """Values, gradients of every input and the running statistics (changed in place) or, for the
    MLP, three steps' losses and every parameter and buffer after them."""
    needs(executor)
    check(COMPOSITES[name], dtype, executor)


@pytest.mark.parametrize("dtype, executor", [(np.float64, "numpy"), (np.float32, "numpy"), (np.float32, "numba")])
def test_mlp_training_with_kernels_for_the_hidden_layers(dtype, executor):
    """The MLP's three steps again with min_elements = 128 * 64: its (128, 64) hidden layers run in
    kernels, the (128, 10) logits op by op (which keeps clear of the bug the test above shows)."""
    needs(executor)
    check(mlp_training, dtype, executor, min_elements=128 * 64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_below_min_elements_results_are_eager_bit_for_bit(dtype):
    """With the defaults (executor 'auto', min_elements 512K), the MLP's arrays (128 x 64) are small:
    its ops run one by one as eager's, so the three training steps end bit for bit where eager's do."""
    want, _ = outcome(mlp_training, 7, dtype)
    got, contexts = outcome(mlp_training, 7, dtype, {})
    assert len(contexts) == 3 and all(kernels_ran(f) == 0 for f in contexts), [f.stats for f in contexts]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def big_batch_norm_and_cross_entropy(v: Inputs) -> dict:
    x, w, b = v.leaf((2048, 256), scale=2.0, shift=1.0), v.leaf((256,), "pos"), v.leaf((256,))
    rm, rv = v.leaf((256,), grad=False), v.leaf((256,), "pos", grad=False)
    labels = v.rng.integers(0, 256, 2048)
    with v.context():
        y = F.batch_norm(x, rm, rv, w, b, training=True)
        loss = F.cross_entropy(y, labels, label_smoothing=0.1)
        loss.backward()
    return {"y": y, "loss": loss, "dx": x.grad, "dw": w.grad, "db": b.grad, "running_mean": rm, "running_var": rv}


@pytest.mark.parametrize("executor", ["auto", "numpy"])
def test_defaults_at_the_size_they_are_meant_for(executor):
    """tg.fused() with its default min_elements on arrays of that size (2048 x 256 = 512K): kernels run
    ('auto': numba's where installed, NumPy tiles otherwise)."""
    want, _ = outcome(big_batch_norm_and_cross_entropy, 9, np.float32)
    got, (f,) = outcome(big_batch_norm_and_cross_entropy, 9, np.float32, {"executor": executor})
    assert kernels_ran(f) >= 1, f.stats
    noise = rounding_noise(big_batch_norm_and_cross_entropy, 9, np.float32)
    for k in want:
        assert_as_eager(got[k], want[k], noise[k], k)


# ------------------------------------------------------------------------------ second derivatives

def hvp_case(fn, shapes):
    """out = fn(*xs); g = d<u, out>/dxs (create_graph=True); then d<r, g>/dxs, a Hessian-vector
    product, through tg.grad; and the same through backward(create_graph=True) and .grad."""
    def case(v: Inputs) -> dict:
        xs = [v.leaf(s) for s in shapes]
        with v.context():
            out = fn(*xs)
            u = v.draw(out.shape)
            gs = tg.grad(out, xs, grad_outputs=u, create_graph=True)
            rs = [tg.Tensor(v.draw(g.shape)) for g in gs]
            hs = tg.grad(sum((g * r).sum() for g, r in zip(gs, rs)), xs, retain_graph=True, allow_unused=True)
            fn(*xs).backward(u, create_graph=True)  # again, into .grad
            firsts = [x.grad for x in xs]
            for x in xs:
                x.grad = None
            sum((g * tg.Tensor(v.draw(g.shape))).sum() for g in firsts).backward()
            seconds = [x.grad for x in xs]
        results = {"value": out}
        for i, x in enumerate(xs):
            zero = np.zeros(x.shape, x.dtype)  # (None: x enters linearly, its Hessian is 0)
            results.update({f"grad {i}": gs[i], f"hvp {i}": hs[i] if hs[i] is not None else zero,
                            f".grad {i}": firsts[i], f".grad second {i}": seconds[i] if seconds[i] is not None
                            else zero})
        return results
    return case


HVP = {  # name: (function, input shapes)
    "tanh": (lambda x: x.tanh(), [BIG]),
    "sigmoid_times_row": (lambda x, y: x.sigmoid() * y, [BIG, (BIG[1],)]),
    "div_by_column": (lambda x, y: x / (y * y + 1.0), [BIG, (BIG[0], 1)]),
    "log_exp": (lambda x: (x * x + 1.0).log() * (x * 0.5).exp(), [(64, 33)]),
    "pow": (lambda x, y: (x * x + 0.5) ** (y * 0.5), [(64, 33), (33,)]),
    "max_times_sum": (lambda x: x.max(0) * x.sum(0), [BIG]),
    "softmax": (lambda x: x.softmax(1), [(300, 20)]),
    "log_softmax_axis0": (lambda x: x.log_softmax(0), [(300, 20)]),
    "logsumexp": (lambda x: x.logsumexp(0), [(300, 20)]),
    "std": (lambda x: x.std(0), [(300, 20)]),
    "batch_norm": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True).tanh(), [(300, 20), (20,), (20,)]),
    "layer_norm": (lambda x, w: F.layer_norm(x, 20, w).tanh(), [(300, 20), (20,)]),
    "group_norm": (lambda x: F.group_norm(x, 4).tanh(), [(30, 12, 9)]),
    "group_norm_affine": (lambda x, w, b: F.group_norm(x, 4, w, b).tanh(), [(30, 12, 9), (12,), (12,)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, np.arange(300) % 20, label_smoothing=0.1, reduction="none"),
                      [(300, 20)]),
}
NUMBA_HVP = ["sigmoid_times_row", "div_by_column", "batch_norm"]


def hvp_cases():
    for dtype in DTYPES:
        for name in HVP:
            for executor in ("numpy", "numba"):
                if executor == "numpy" or name in NUMBA_HVP:
                    marks: list = []
                    yield pytest.param(name, dtype, executor, marks=marks, id=f"{name}-{np.dtype(dtype)}-{executor}")


@pytest.mark.parametrize("name, dtype, executor", list(hvp_cases()))
def test_second_derivatives(name, dtype, executor):
    """Values, gradients (create_graph=True) and Hessian-vector products, fused vs eager."""
    needs(executor)
    check(hvp_case(*HVP[name]), dtype, executor, seed=13)


# --------------------------------------------------------------------------------------- semantics

def small_model(x: tg.Tensor, w: tg.Tensor) -> tg.Tensor:
    return ((x * w + 1.0).tanh() * x).sum(1).relu()


@pytest.fixture
def xw():
    rng = np.random.default_rng(21)
    return (tg.Tensor(rng.standard_normal((40, 30)), requires_grad=True),
            tg.Tensor(rng.standard_normal(30), requires_grad=True))


def eager_reference(xw):
    x, w = (tg.Tensor(t.data.copy(), requires_grad=True) for t in xw)
    y = small_model(x, w)
    y.sum().backward()
    return y.data, x.grad.data, w.grad.data


def test_nothing_pending_escapes_the_context(xw):
    x, w = xw
    with tg.fused(executor="numpy", min_elements=1) as f:
        ys = [x * w, (x * w + 1.0).tanh(), small_model(x, w)]
        with tg.no_grad():
            ys.append(x * 3.0 - w)  # a graph-less value
        loss = ys[-2].sum()
        (g,) = tg.grad(loss, [w], create_graph=True)
        ys += [g, g * g]
        assert any(type(t._data) is fusion.Pending for t in ys), "nothing was deferred: the test tests nothing"
        loss.backward()
        assert type(x.grad._data) is np.ndarray and type(w.grad._data) is np.ndarray  # backward() computes
        late = [x * 5.0, (x * w.grad).sum(0), (x * 2.0).relu()]  # after it: computed on leaving
        assert all(type(t._data) is fusion.Pending for t in late)
        ys += late
    assert _State.lazy is None
    everything = ys + all_tensors(*ys) + [x.grad, w.grad]
    assert [type(t._data).__name__ for t in everything if type(t._data) is not np.ndarray] == []
    assert kernels_ran(f) >= 1
    np.testing.assert_array_equal(ys[3].data, x.data * 3.0 - w.data)


def test_reads_inside_the_context_compute_eager_values(xw):
    want_y, want_dx, want_dw = eager_reference(xw)
    x, w = xw
    with tg.fused(executor="numpy", min_elements=1) as f:
        y = small_model(x, w)
        other = x * 2.0  # not read: stays pending until the end
        s = y.sum()
        assert (y.shape, y.dtype, y.ndim, y.size, s.shape) == ((40,), np.float64, 1, 40, ())
        assert f.stats["realizations"] == 0, "asking for a shape or dtype computed something"
        assert s.item() == pytest.approx(float(want_y.sum()), rel=1e-12)
        assert f.stats["realizations"] == 1 and type(s._data) is np.ndarray
        assert type(other._data) is fusion.Pending, "reading one value computed an unrelated one"
        assert_as_eager(y.numpy(), want_y)
        assert_as_eager(y.data, want_y)
        assert_as_eager(np.asarray(y), want_y)
        assert_as_eager(np.array(y), want_y)
        assert float(s) == s.item() and bool(s > -1e9)
        assert repr(y * 1.0).startswith("Tensor([")
        assert_as_eager(tg.Tensor(y * 1.0), want_y)
        assert_as_eager((y * 1.0).detach(), want_y)
        s.backward()
        assert_as_eager(x.grad.data, want_dx)
        assert_as_eager(w.grad.data, want_dw)
    assert_as_eager(other.data, x.data * 2.0)


def test_decorator_bare_and_with_arguments(xw):
    want_y, want_dx, _ = eager_reference(xw)
    seen = []

    @tg.fused
    def bare(x, w):
        """bare's doc"""
        seen.append(_State.lazy)
        y = small_model(x, w)
        y.sum().backward()
        return y

    @tg.fused(executor="numpy", min_elements=1, verify=True)
    def configured(x, w):
        seen.append(_State.lazy)
        return small_model(x, w) * 1.0

    x, w = xw
    y = bare(x, w)
    assert bare.__name__ == "bare" and bare.__doc__ == "bare's doc"
    assert isinstance(seen[0], tg.fused) and _State.lazy is None
    assert type(y._data) is np.ndarray
    assert_as_eager(y, want_y)
    assert_as_eager(x.grad, want_dx)
    z = configured(x.detach(), w.detach())
    assert (seen[1].executor_name, seen[1].min_elements, seen[1].verify) == ("numpy", 1, True)
    assert seen[1].differences and _State.lazy is None and type(z._data) is np.ndarray
    assert_as_eager(z, want_y)
    assert configured(x.detach(), w.detach()) is not z and seen[2] is not seen[1]  # a new context per call


@pytest.mark.parametrize("executor", ["numpy", "numba"])
def test_independent_values_with_the_same_leading_extent(executor):
    """Two unrelated values computed together (the defaults fail alike on (2048, 256) and (2048, 300))."""
    needs(executor)
    a, b = tg.Tensor(np.ones((5, 7))), tg.Tensor(np.ones((5, 3)))
    with tg.fused(executor=executor, min_elements=1):
        c, d = a * 2.0, b * 3.0
    np.testing.assert_array_equal(c.data, np.full((5, 7), 2.0))
    np.testing.assert_array_equal(d.data, np.full((5, 3), 3.0))


def test_nested_contexts(xw):
    x, w = xw
    want = (x.data * 3.0 + 1.0) * (x.data * 3.0)
    outer = tg.fused(executor="numpy", min_elements=1)
    with outer:
        a = x * 3.0
        with tg.fused(executor="numpy", min_elements=1) as inner:
            assert _State.lazy is inner
            b = a + 1.0
        assert _State.lazy is outer
        assert type(b._data) is np.ndarray  # the inner context computed what it made (and what that needs)
        c = b * a
        with outer:  # the same context again, re-entered
            d = c * 1.0
        assert _State.lazy is outer and type(d._data) is np.ndarray
    assert _State.lazy is None
    for t in (a, b, c, d):
        assert type(t._data) is np.ndarray
    assert_as_eager(c, want)
    assert_as_eager(d, want)


def test_an_exception_inside_leaves_tensors_usable_and_eager_mode_back(xw):
    x, w = xw
    with pytest.raises(KeyError, match="boom"):
        with tg.fused(executor="numpy", min_elements=1):
            y = x * w + 1.0
            raise KeyError("boom")
    assert _State.lazy is None and type(y._data) is np.ndarray
    np.testing.assert_array_equal(y.data, x.data * w.data + 1.0)
    with pytest.raises(tg.ShapeError):  # an op's error, inside a nested context
        with tg.fused(executor="numpy", min_elements=1) as outer:
            z = x.exp()
            with tg.fused(executor="numpy", min_elements=1):
                assert _State.lazy is not outer
                _ = z + tg.Tensor(np.ones(7))
    assert _State.lazy is None and type(z._data) is np.ndarray
    np.testing.assert_array_equal(z.data, np.exp(x.data))
    assert type((x * 2.0)._data) is np.ndarray  # eager again


ERRORS = {  # name: what fails at the op (under fused: where eager fails, not when values are computed)
    "binary_shapes": lambda x: x * 2.0 + tg.Tensor(np.ones(7)),
    "maximum_shapes": lambda x: tg.maximum(x * 2.0, tg.Tensor(np.ones((3, 30)))),
    "where_shapes": lambda x: tg.where(np.ones(7, bool), x * 2.0, 1.0),
    "reshape": lambda x: (x * 2.0).reshape(7, 7),
    "reshape_infer": lambda x: (x * 2.0).reshape(7, -1),
    "broadcast_to": lambda x: (x * 2.0).broadcast_to(3, 40),
    "broadcast_to_fewer_dims": lambda x: (x * 2.0).broadcast_to(30),
    "index": lambda x: (x * 2.0)[50],
    "sum_axis": lambda x: (x * 2.0).sum(2),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_raised_at_the_op_as_eager(name, xw):
    x = xw[0]
    with pytest.raises(Exception) as eager:
        ERRORS[name](x)
    with tg.fused(executor="numpy", min_elements=1):
        y = x * 5.0  # something pending: the failing op does not get to run it
        with pytest.raises(type(eager.value)) as fused:
            ERRORS[name](x)
        assert type(y._data) is fusion.Pending
        z = y + 1.0  # the context goes on
    assert type(fused.value) is type(eager.value)
    assert str(fused.value).split(":")[0] == str(eager.value).split(":")[0]  # the same op named
    np.testing.assert_array_equal(z.data, x.data * 5.0 + 1.0)


def op_signature(*roots: tg.Tensor) -> list:
    return [(type(t._ctx).__name__ if t._ctx is not None else "leaf", t.shape, str(t.dtype), t.requires_grad, t.name,
             t._ctx.scope if t._ctx is not None else None) for t in all_tensors(*roots)]


def test_the_same_graph_is_recorded():
    """The same Function nodes, parents, shapes, dtypes, names and scopes, for the forward graph and
    for a create_graph backward's graph (also as tg.viz.trace draws them)."""
    def build(fused):
        v = Inputs(5, np.float32)
        x, w, b = v.leaf((64, 16)), v.leaf((16,), "pos"), v.leaf((16,))
        with under(fused):
            y = F.batch_norm(x, None, None, w, b, training=True)
            loss = F.cross_entropy(y, np.arange(64) % 16, label_smoothing=0.1)
            grads = tg.grad(loss, [x, w], create_graph=True)
            forward, backward = op_signature(loss), op_signature(*grads)
            traced = sorted((n.label, n.style) for n in tg.viz.trace(*grads, backward=True).nodes.values())
        return forward, backward, traced
    eager = build(None)
    fused = build({"executor": "numpy", "min_elements": 1})
    assert len(eager[0]) > 20 and len(eager[1]) > 20
    for what, e, f in zip(("forward", "backward", "trace"), eager, fused):
        assert f == e, what


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # (eager NumPy's own)
def test_detect_anomaly_still_raises_under_fused():
    x = tg.Tensor(np.array([[1.0, -1.0], [2.0, 3.0]] * 8), requires_grad=True)
    for outside in (True, False):  # detect_anomaly around the context, and inside it
        with tg.detect_anomaly() if outside else contextlib.nullcontext():
            with tg.fused(executor="numpy", min_elements=1):
                y = x * 2.0  # (pending when anomaly mode is off: the next op computes it, and checks)
                with tg.detect_anomaly() if not outside else contextlib.nullcontext():
                    with pytest.raises(tg.AnomalyError, match="Log"):
                        y.log()
    with tg.fused(executor="numpy", min_elements=1):  # NaN made by a backward rule: sqrt'(0) * 0
        z = (tg.Tensor(np.zeros((8, 8)), requires_grad=True) * 1.0).sqrt() * 0.0
        with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match="NaN"):
            z.sum().backward()


def test_a_leaf_read_by_a_pending_op_cannot_change_under_it():
    a = np.arange(12.0).reshape(3, 4)
    mine = a.copy()
    x = tg.from_numpy(mine)  # the caller keeps the leaf's array
    with tg.fused(executor="numpy", min_elements=1):
        y = x * 2.0
        with pytest.raises(ValueError, match="read-only"):
            mine[0, 0] = 100.0  # held read-only until y is computed
        x.data = np.full((3, 4), -1.0)  # a new array: y still reads the old one
        p = tg.Tensor(np.ones((3, 4)), requires_grad=True)
        q = p * 3.0
        p.writable_data()[...] = 7.0  # an optimizer's way: the pending op keeps the old values
    np.testing.assert_array_equal(y.data, a * 2.0)
    np.testing.assert_array_equal(q.data, np.full((3, 4), 3.0))
    assert mine.flags.writeable  # computed: the hold let go
    mine[0, 0] = 5.0


def test_a_view_handed_out_before_cannot_change_a_pending_op():
    x = tg.Tensor(np.arange(12.0).reshape(3, 4))
    view = x.numpy()[:, :2]  # taken before the op: no flag reaches it
    with tg.fused(executor="numpy", min_elements=1):
        y = x * 2.0
        with contextlib.suppress(ValueError):  # refusing the write would do as well
            view[...] = 100.0
    np.testing.assert_array_equal(y.data, np.arange(12.0).reshape(3, 4) * 2.0)


def test_an_upstream_gradient_given_is_not_written():
    x = tg.Tensor(np.zeros((6, 5)), requires_grad=True)
    w = tg.Tensor(np.ones(30))  # a tensor of the caller's, the upstream gradient of x.reshape(30)
    given = np.ones(6)
    rows, cols = np.arange(6), np.array([0, 1, 2, 3, 4, 0])
    with tg.fused(executor="numpy", min_elements=1):
        (g,) = tg.grad([x.reshape(30), x[rows, cols]], [x], grad_outputs=[w, given * 10])
    want = np.ones((6, 5))
    want[rows, cols] += 10.0
    np.testing.assert_array_equal(g.data, want)
    np.testing.assert_array_equal(w.data, np.ones(30), err_msg="the upstream gradient tensor was changed")


@pytest.mark.parametrize("step", list(fusion.STEPS) + ["all"])
def test_each_optional_scheduling_step_off_gives_the_same_results(step, monkeypatch):
    """The scheduler's optional rewrites (fusion.STEPS: split sums, sink, gather, keep costly values,
    split stores, scatter into) only move work: with one (or all) of them off the results are eager's."""
    for k in fusion.STEPS:
        monkeypatch.setitem(fusion.STEPS, k, not (step == "all" or k == step))
    case = COMPOSITES["ce_everything_sum"]
    check(case, np.float32, "numpy", seed=3)
    check(bn_train((300, 40)), np.float64, "numpy")


def test_verify_reports_each_computed_node():
    rng = np.random.default_rng(8)
    x = tg.Tensor(rng.standard_normal(BIG).astype(np.float32))  # (a sum across tiles: not eager's to the bit)

    def chain(x):
        a = x * 2.0
        b = a + 1.0
        c = b.exp()
        m = c * 0.5
        return [a, b, c, m, c.sum(0), m.max(1)]  # every value held: each is computed, and verified, once
    want, exact = chain(x), chain(tg.Tensor(x.data.astype(np.float64)))
    with tg.fused(executor="numpy", min_elements=1, verify=True) as f:
        got = chain(x)
    for g, w, e in zip(got, want, exact):
        assert_as_eager(g, w, float(np.max(np.abs(array(w).astype(np.float64) - array(e)))))
    # verify runs each op eagerly on eager's values of its inputs: eager's chain, `want`
    expected = []
    for name, g, w in zip(["Mul", "Add", "Exp", "Mul", "Sum", "Max"], got, want):
        worst = float(np.max(np.abs(array(g).astype(np.float64) - array(w))))
        expected.append((name, g.shape, "float32", worst, worst / float(np.spacing(np.max(np.abs(array(w)))))))
    assert sorted(n for n, *_ in f.differences) == sorted(n for n, *_ in expected)
    for entry in f.differences:
        assert any(entry[:3] == e[:3] and entry[3:] == pytest.approx(e[3:], rel=1e-9) for e in expected), entry
    assert max(e[4] for e in expected) > 0, "nothing differs: the comparison tests nothing"
    assert f.max_difference() == max(u for *_, u in f.differences)
    report = f.report().splitlines()
    assert report[0].startswith("fused: ") and "realizations" in report[0]
    assert len(report) == 2 + len(f.differences) and "max |fused - eager|" in report[1]
    for line, (name, shape, *_) in zip(report[2:], f.differences):
        assert line.split()[0] == name and str(shape) in line
    with tg.fused(executor="numpy", min_elements=1) as quiet:
        _ = (x * 2.0).data
    assert quiet.differences == [] and quiet.max_difference() == 0.0 and len(quiet.report().splitlines()) == 1


def test_executor_numba_without_numba_raises_an_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now fails
    with pytest.raises(ImportError):
        tg.fused(executor="numba")
    assert _State.lazy is None


def test_executor_numba_without_numba_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    with pytest.raises(ImportError) as err:
        tg.fused(executor="numba")
    message = str(err.value)
    assert err.value.name == "numba", err.value.name
    assert re.search(r"needs numba\b.*not installed", message), message
    extras = re.findall(r"tinygrad-bn\[([^\]]*)\]", message)  # an extra named must exist
    declared = Path(__file__).parents[1].joinpath("pyproject.toml").read_text()
    assert all(re.search(rf"^{re.escape(e)}\s*=", declared, re.M) for e in extras), extras
    assert extras or "pip install numba" in message, message


def test_executor_auto_without_numba_runs_numpy_tiles(monkeypatch, xw):
    want_y, want_dx, _ = eager_reference(xw)
    monkeypatch.setitem(sys.modules, "numba", None)
    x, w = xw
    with tg.fused(min_elements=1) as f:  # executor="auto"
        y = small_model(x, w)
        y.sum().backward()
    assert f.stats["kernels_numba"] == 0 and f.stats["kernels_numpy"] >= 1 and f.compile_seconds == 0.0
    assert_as_eager(y, want_y)
    assert_as_eager(x.grad, want_dx)


@pytest.mark.parametrize("options", [
    {"executor": "gpu"}, {"executor": "NUMBA"}, {"executor": None}, {"min_elements": 0}, {"min_elements": -1},
    {"min_elements": 2.5}, {"min_elements": "64"}, {"min_elements": True}],
    ids=str)
def test_bad_options_raise_value_error(options):
    with pytest.raises(ValueError, match="fused"):
        tg.fused(**options)
    with pytest.raises(ValueError, match="fused"):  # as a decorator: when decorating, not when called
        tg.fused(**options)(lambda: None)
    assert _State.lazy is None


def test_stats_executors_and_the_compile_cache(xw):
    needs("numba")
    x, w = (t.detach() for t in xw)

    def step():
        return ((x * w + 0.5) * (x - w)).sum(0)  # arithmetic only: numba's
    with tg.fused(executor="numpy", min_elements=1) as f:
        want = step().data
    assert f.stats["kernels_numba"] == 0 and f.stats["kernels_numpy"] >= 1 and f.compile_seconds == 0.0
    runs = []
    for _ in range(2):
        with tg.fused(executor="numba", min_elements=1) as f:
            got = step()
        runs.append(f)
        assert_as_eager(got, want)
    assert runs[0].stats["kernels_numba"] >= 1 and runs[0].stats["kernels_numpy"] == 0
    assert runs[1].compile_seconds == 0.0, "the same kernel structure compiled twice"
    with tg.fused(min_elements=64 * 64) as f:  # (40, 30) is below min_elements: op by op, no kernel
        small = step()
    assert kernels_ran(f) == 0, f.stats
    assert_as_eager(small, want)


def test_another_thread_stays_eager(xw):
    x, w = (t.detach() for t in xw)
    seen = {}

    def other():
        seen["lazy"] = _State.lazy
        seen["type"] = type((x * w)._data)
    with tg.fused(executor="numpy", min_elements=1):
        y = x * w
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert type(y._data) is fusion.Pending
    assert seen == {"lazy": None, "type": np.ndarray}


# ----------------------------------------------------------------------------- eager stays as it is

def eager_workload() -> list[bytes]:
    v = Inputs(17, np.float32)
    x, w, b = v.leaf((128, 32)), v.leaf((32,), "pos"), v.leaf((32,))
    rm, rv = v.leaf((32,), grad=False), v.leaf((32,), "pos", grad=False)
    y = F.batch_norm(x, rm, rv, w, b, training=True)
    loss = F.cross_entropy(y.tanh(), np.arange(128) % 32, label_smoothing=0.1) + (y.softmax(0) ** 2).sum()
    loss.backward()
    (g,) = tg.grad((x * x).sum() * loss.detach(), [x], create_graph=True)
    graph = all_tensors(loss, g)
    assert all(type(t._data) is np.ndarray for t in graph)
    return [array(t).tobytes() for t in (loss, y, x.grad, w.grad, b.grad, rm, rv, g)]


def test_eager_mode_is_unchanged_by_a_fused_context(monkeypatch):
    before = eager_workload()
    with tg.fused(executor="numpy", min_elements=1):
        inside = eager_workload()
    with tg.fused(min_elements=1):  # "auto": numba too, when installed
        eager_workload()
    after = eager_workload()
    assert after == before, "eager results changed after a fused context"
    assert len(inside) == len(before)

    def refuse(*args, **kwargs):
        raise AssertionError("the fused machinery ran outside a context")
    monkeypatch.setattr(fusion.fused, "record", refuse)
    monkeypatch.setattr(fusion.fused, "own", refuse)
    monkeypatch.setattr(fusion.fused, "realize_all", refuse)
    assert _State.lazy is None
    assert eager_workload() == before
