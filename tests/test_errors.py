"""Hostile input across the API: every bad call is a clear error of the exact type, naming the op
(and the shapes), raised without a NumPy traceback chained behind it, and changing nothing (leaf
values and .grad, module parameters and buffers, optimizer state). Then the numerical edges that
must stay finite and exact, documented results (empty batches, NaN/Inf), and detect_anomaly.

Distinct bad inputs: 138 = 133 in the table BAD (test_bad_input_*; the count is asserted below)
+ 5 in their own tests (a view of a saved leaf, a duplicate optimizer parameter, BatchNorm on an
ndarray, an empty batch for cross_entropy and for BatchNorm in eval mode). Cases marked `bug=`
document a defect found here; those listed in STILL_OPEN are strict xfails until fixed.
"""
from __future__ import annotations

import inspect
import os
import re
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from conftest import assert_same, both, snap

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import Tensor, ops
from tinygrad_bn.engine import Function
from tinygrad_bn.viz import GraphTooLargeError

F32, F64 = np.float32, np.float64
EPS = 1e-5
HERE = os.path.basename(__file__)
NUMPY_DIR = os.path.dirname(np.__file__)
DID_NOT_RAISE = pytest.fail.Exception  # what pytest.raises raises when nothing was raised


# ------------------------------------------------------------------------------ what must not change

class Watch:
    """w(a, b, ...) snapshots tensors, modules and optimizers (and returns them); after the failed
    call, assert_unchanged() compares every value, .grad, buffer and optimizer state."""
    def __init__(self):
        self.items: list[tuple[Any, Any]] = []

    def __call__(self, *objs: Any) -> Any:
        self.items += [(o, snap(o)) for o in objs]
        return objs[0] if len(objs) == 1 else objs

    def assert_unchanged(self) -> None:
        for i, (obj, before) in enumerate(self.items):
            assert_same(snap(obj), before, f"watched {i} ({type(obj).__name__})")


# ------------------------------------------------------------------------------ builders (seeded)

def leaf(*shape: int, name: str | None = None, seed: int = 0, dtype=F64) -> Tensor:
    """A leaf that requires grad and already holds a .grad, so a failed call that wrote one shows."""
    r = np.random.default_rng(seed)
    t = Tensor(np.asarray(r.standard_normal(shape), dtype), requires_grad=True, name=name)
    t.grad = Tensor(np.asarray(r.standard_normal(shape), dtype))
    return t


def on(*shapes: tuple[int, ...]) -> Callable:
    """case(w) that makes watched leaves of these shapes and calls fn on them."""
    def build(fn: Callable) -> Callable:
        def case(w: Watch) -> Any:
            ts = w(*[leaf(*s, seed=i) for i, s in enumerate(shapes)])
            return fn(*ts) if isinstance(ts, tuple) else fn(ts)
        return case
    return build


def trained(module: nn.Module, shape: tuple[int, ...], steps: int = 2) -> nn.Module:
    """Non-default state: moved running statistics, num_batches_tracked > 0, a .grad on each parameter."""
    r = np.random.default_rng(5)
    for _ in range(steps):
        y = module(Tensor(r.standard_normal(shape) * 2 + 1))
        (y * Tensor(r.standard_normal(y.shape))).sum().backward()
    return module


def stepped(cls: type, **kw: Any) -> tuple[Tensor, Tensor, tg.optim.Optimizer]:
    """An optimizer over two parameters after two steps (so it holds state), grads still set."""
    r = np.random.default_rng(3)
    a, b = Tensor(r.standard_normal(3), requires_grad=True), Tensor(r.standard_normal(2), requires_grad=True)
    opt = cls([a, b], lr=0.1, **kw)
    for _ in range(2):
        a.grad, b.grad = Tensor(r.standard_normal(3)), Tensor(r.standard_normal(2))
        opt.step()
    return a, b, opt


def _linear(n_in: int, n_out: int) -> nn.Linear:
    return nn.Linear(n_in, n_out, rng=np.random.default_rng(0))  # seeded, not the library's global generator


def labels(*v: int, dtype=np.int64) -> np.ndarray:
    return np.array(v, dtype)


# ------------------------------------------------------------------------------ cases needing setup

def _bad_grad_at_step(cls: type, **kw: Any) -> Callable:
    def case(w: Watch) -> None:
        a, b, opt = stepped(cls, **kw)
        a.grad = Tensor(np.ones(3))
        w(opt)
        w(a)
        w(b)
        b.grad = Tensor(np.ones(5))  # b is (2,): refused here, before any step can use it
        opt.step()
    return case


def _backward_twice(w: Watch) -> None:
    x = leaf(2, 3)
    y = (x * x).sum()
    y.backward()
    w(x)
    y.backward()


def _write_saved_leaf(w: Watch) -> None:
    x = leaf(2, 3)
    y = (x * x).sum()
    w(x)
    x.data[0, 0] = 0.0
    y.backward()


def _write_through_the_source_array(w: Watch) -> None:
    src = np.random.default_rng(0).standard_normal((2, 3))
    x = tg.from_numpy(src, requires_grad=True)  # shares src (Tensor(src) would copy it)
    y = (x * x).sum()
    w(x)
    src[1, 2] = 7.0
    y.backward()


def _write_saved_parameter(w: Watch) -> None:
    lin = trained(nn.Linear(3, 2, dtype=F64, rng=np.random.default_rng(0)), (4, 3))
    out = lin(Tensor(np.ones((4, 3)))).sum()
    w(lin)
    lin.weight.data[...] = 0.0
    out.backward()


def _replace_saved_leaf(w: Watch) -> None:
    x = leaf(2, 3, name="x")
    y = (x * x).sum()
    x.data = np.zeros((2, 3))
    w(x)
    y.backward()


def _writable_data_then_backward(w: Watch) -> None:
    x = leaf(2, 3, name="x")
    y = (x * 3.0).sum()
    x.writable_data()[...] = 1.0  # the documented way to change it: a copy; the graph keeps the old one
    w(x)
    y.backward()


def _optimizer_step_between(w: Watch) -> None:
    lin = nn.Linear(3, 2, dtype=F64, rng=np.random.default_rng(0))
    opt = tg.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    loss = lin(Tensor(np.ones((4, 3)))).sum()
    loss.backward(retain_graph=True)
    opt.step()
    w(lin, opt)
    loss.backward()


def _load_state_dict_between(w: Watch) -> None:
    lin = nn.Linear(3, 2, dtype=F64, rng=np.random.default_rng(0))
    loss = lin(Tensor(np.ones((4, 3)))).sum()
    lin.load_state_dict(nn.Linear(3, 2, dtype=F64, rng=np.random.default_rng(1)).state_dict())
    w(lin)
    loss.backward()


def _scalar_leaf_written(w: Watch) -> None:
    s = Tensor(np.array(2.0), requires_grad=True)
    y = s * s
    w(s)
    s.data[...] = 3.0  # y was computed at s = 2; its gradient 2 s must not become 6
    y.backward()


def _scalar_leaf_replaced(w: Watch) -> None:
    s = Tensor(np.array(2.0), requires_grad=True, name="s")
    y = s * s
    s.data = np.array(3.0)
    w(s)
    y.backward()


def _scalar_parameter_stepped(w: Watch) -> None:
    s = nn.Parameter(np.array(2.0))
    opt = tg.optim.SGD([s], lr=0.5)
    y = s * s
    y.backward(retain_graph=True)
    opt.step()  # s: 2 -> 0
    s.zero_grad()
    w(s, opt)
    y.backward()


def _anomaly_forward(w: Watch) -> None:
    x = w(leaf(3))
    with tg.detect_anomaly(), tg.scope("block"):
        x.abs().log() * Tensor(np.array([1.0, -1.0, 1.0]))  # fine
        (x - 10.0).log()


def _anomaly_backward(w: Watch) -> None:
    x = Tensor(np.array([0.0, 1.0, 4.0]), requires_grad=True)
    x.grad = Tensor(np.ones(3))
    with tg.detect_anomaly():
        with tg.scope("block"):
            y = x.sqrt()  # finite forward; the backward 0 / (2 sqrt x) is NaN at 0 (an Inf alone is no anomaly)
        loss = (y * 0.0).sum()
        w(x)
        loss.backward()


def _anomaly_in_a_module(w: Watch) -> None:
    model = trained(nn.Sequential(nn.BatchNorm1d(2, dtype=F64)), (4, 2))
    x = np.ones((4, 2))
    x[1, 1] = np.inf
    w(model)
    with tg.detect_anomaly():
        model(Tensor(x))


def _anomaly_nan_input_in_linear(w: Watch) -> None:
    model = trained(nn.Sequential(nn.Linear(3, 2, dtype=F64, rng=np.random.default_rng(0))), (4, 3))
    x = np.ones((4, 3))
    x[2, 0] = np.nan
    w(model)
    with tg.detect_anomaly():
        model(Tensor(x))


def _viz_freed(w: Watch) -> None:
    x = leaf(3)
    y = (x * x).sum()
    y.backward()
    w(x)
    tg.viz.to_dot(y)


def _viz_backward_without_graph(w: Watch) -> None:
    x = leaf(3)
    x.grad = None
    (x * x).sum().backward()  # no create_graph: x.grad has no graph behind it
    w(x)
    tg.viz.draw(x.grad, backward=True)


def _state_dict_edit(key: str, value: Any) -> Callable:
    def case(w: Watch) -> None:
        bn = w(trained(nn.BatchNorm1d(3, dtype=F64), (6, 3)))
        bn.load_state_dict(bn.state_dict() | {key: value})
    return case


def _bn(kind: str = "1d", c: int = 3, train: bool = True) -> nn.Module:
    m = trained((nn.BatchNorm1d if kind == "1d" else nn.BatchNorm2d)(c, dtype=F64), (6, c) if kind == "1d"
                else (2, c, 2, 2))
    return m.train(train)


def _module_call(make: Callable[[], nn.Module], x: Any) -> Callable:
    def case(w: Watch) -> Any:
        return w(make())(x() if callable(x) else x)
    return case


def _batch_norm_functional_bad_bias(w: Watch) -> None:
    rm, rv = Tensor(np.full(3, 0.5)), Tensor(np.full(3, 2.0))
    x = leaf(5, 3)
    w(rm, rv, x)
    F.batch_norm(x, rm, rv, Tensor(np.ones(3)), Tensor(np.zeros(4)), training=True)


def _ce(target: Any, reduction: str = "mean", shape: tuple[int, ...] = (3, 4)) -> Callable:
    def case(w: Watch) -> Any:
        return F.cross_entropy(w(leaf(*shape)), target, reduction=reduction)
    return case


# ------------------------------------------------------------------------------ the table

class Bad(NamedTuple):
    case: Callable[[Watch], Any]   # sets up (watching what must not change) and triggers
    exc: type                       # the exact exception type
    match: str                      # a regex the message must match
    op: str | None = None           # the op (or method) the message must start with
    bug: str | None = None          # set: a strict xfail documenting a defect found here
    fails_with: type | None = None  # how the xfail fails today


_AXIS_TYPE = "axis must be None, an int or a tuple of ints, got"
_NOT_A_TENSOR = "the library reaches for an attribute of a non-Tensor instead of raising a TypeError naming the call"
_BAD_HYPER = "accepted silently; PyTorch raises ValueError for it, and the updates then diverge or stall"

BAD: dict[str, Bad] = {
    # ---- shapes and broadcasting (op errors: the op's name, NumPy's reason, the input shapes)
    "add (2, 3) + (4, 3)": Bad(on((2, 3), (4, 3))(lambda a, b: a + b), tg.ShapeError,
                               r"^Add: operands could not be broadcast.*inputs: \(2, 3\) float64, \(4, 3\) float64",
                               "Add"),
    "ndarray (4,) on the left of + (2, 3)": Bad(on((2, 3))(lambda a: np.zeros(4) + a), tg.ShapeError,
                                                r"^Add: .*inputs: \(4,\) float64, \(2, 3\) float64", "Add"),
    "mul mismatch inside a scope": Bad(on((2, 3), (3, 2))(lambda a, b: _in_scope("block", lambda: a * b)),
                                       tg.ShapeError, r"^Mul in scope block: .*inputs: \(2, 3\) float64, \(3, 2\)",
                                       "Mul"),
    "maximum (2, 3) with (2,)": Bad(on((2, 3), (2,))(lambda a, b: tg.maximum(a, b)), tg.ShapeError,
                                    r"^Maximum: .*inputs: \(2, 3\) float64, \(2,\) float64", "Maximum"),
    "pow (3,) ** (2,)": Bad(on((3,), (2,))(lambda a, b: a ** b), tg.ShapeError, r"^Pow: .*\(3,\) float64, \(2,\)",
                            "Pow"),
    "matmul inner dims (2, 3) @ (4, 5)": Bad(on((2, 3), (4, 5))(lambda a, b: a @ b), tg.ShapeError,
                                             r"^matmul: \(2, 3\) @ \(4, 5\): inner dimensions 3 and 4 differ",
                                             "matmul"),
    "matmul (3,) @ (4,)": Bad(on((3,), (4,))(lambda a, b: a.matmul(b)), tg.ShapeError,
                              r"^matmul: \(3,\) @ \(4,\): inner dimensions 3 and 4", "matmul"),
    "matmul batch dims (2, 3, 4) @ (5, 4, 2)": Bad(on((2, 3, 4), (5, 4, 2))(lambda a, b: a @ b), tg.ShapeError,
                                                   r"^MatMul: .*inputs: \(2, 3, 4\) float64, \(5, 4, 2\) float64",
                                                   "MatMul"),
    "matmul with a 0-d operand": Bad(on((3,), ())(lambda a, b: a @ b), tg.ShapeError,
                                     r"^matmul: operands need at least 1 dim, got \(3,\) @ \(\)", "matmul"),
    "reshape 6 elements to (4, 2)": Bad(on((2, 3))(lambda a: a.reshape(4, 2)), tg.ShapeError,
                                        r"^Reshape: cannot reshape array of size 6 into shape \(4, ?2\).*\(2, 3\)",
                                        "Reshape"),
    "reshape with two -1": Bad(on((2, 3))(lambda a: a.reshape((-1, -1))), tg.ShapeError,
                               r"^Reshape: can only specify one unknown dimension.*\(2, 3\) float64", "Reshape"),
    "reshape (0, 3) to (-1, 0)": Bad(on((0, 3))(lambda a: a.reshape(-1, 0)), tg.ShapeError,
                                     r"^Reshape: cannot reshape array of size 0.*\(0, 3\) float64", "Reshape"),
    "reshape to float sizes": Bad(on((2, 3))(lambda a: a.reshape(2.0, 3)), TypeError,
                                  r"a shape is a tuple of ints, got \(2\.0, 3\)"),
    "broadcast_to (2, 3) -> (2, 4)": Bad(on((2, 3))(lambda a: a.broadcast_to(2, 4)), tg.ShapeError,
                                         r"^BroadcastTo: cannot broadcast \(2, 3\) to \(2, 4\)", "BroadcastTo"),
    "broadcast_to fewer dims": Bad(on((2, 3))(lambda a: a.broadcast_to((3,))), tg.ShapeError,
                                   r"^BroadcastTo: cannot broadcast \(2, 3\) to \(3,\)", "BroadcastTo"),
    "broadcast_to a negative size": Bad(on((2, 3))(lambda a: a.broadcast_to(-1, 3)), tg.ShapeError,
                                        r"^BroadcastTo: cannot broadcast \(2, 3\) to \(-1, 3\)", "BroadcastTo"),
    "linear bias of the wrong width": Bad(on((2, 3), (4, 3), (5,))(F.linear), tg.ShapeError,
                                          r"^Add: .*inputs: \(2, 4\) float64, \(5,\) float64", "Add"),
    "linear weight of the wrong width": Bad(on((2, 3), (4, 5))(F.linear), tg.ShapeError,
                                            r"^linear: input \(2, 3\) has 3 features, the weight \(4, 5\) expects 5",
                                            "linear"),
    # ---- indexing
    "index 5 of an axis of 2": Bad(on((2, 3))(lambda a: a[5]), IndexError,
                                   r"^GetItem: index 5 is out of bounds for axis 0 with size 2.*\(2, 3\)", "GetItem"),
    "three indices into 2-D": Bad(on((2, 3))(lambda a: a[0, 0, 0]), IndexError,
                                  r"^GetItem: too many indices.*\(2, 3\) float64", "GetItem"),
    "a mask of the wrong length": Bad(on((2, 3))(lambda a: a[np.array([True, False, True])]), IndexError,
                                      r"^GetItem: boolean index did not match.*size of axis is 2.*is 3", "GetItem"),
    "an integer array out of range": Bad(on((2, 3))(lambda a: a[np.array([0, 7])]), IndexError,
                                         r"^GetItem: index 7 is out of bounds.*\(2, 3\)", "GetItem"),
    "a string index": Bad(on((2, 3))(lambda a: a["0"]), IndexError, r"^GetItem: only integers, slices.*\(2, 3\)",
                          "GetItem"),
    "a float index": Bad(on((2, 3))(lambda a: a[1.5]), IndexError, r"^GetItem: only integers.*\(2, 3\)", "GetItem"),
    # ---- axes
    "sum axis 2 of 2-D": Bad(on((2, 3))(lambda a: a.sum(axis=2)), tg.AxisError,
                             r"^sum: axis 2 is out of range for a tensor with 2 dims", "sum"),
    "sum axis True": Bad(on((2, 3))(lambda a: a.sum(axis=True)), TypeError, rf"^sum: {_AXIS_TYPE} True", "sum"),
    "sum axis 1.0": Bad(on((2, 3))(lambda a: a.sum(axis=1.0)), TypeError, rf"^sum: {_AXIS_TYPE} 1\.0", "sum",
                        bug="a float axis gives \"'float' object is not iterable\", naming neither sum nor the axis",
                        fails_with=AssertionError),
    "sum repeated axis (1, -1)": Bad(on((2, 3))(lambda a: a.sum(axis=(1, -1))), tg.ShapeError,
                                     r"^sum: axis \(1, -1\) repeats an axis", "sum"),
    "mean axis -3 of 2-D": Bad(on((2, 3))(lambda a: a.mean(axis=-3)), tg.AxisError,
                               r"^mean: axis -3 is out of range for a tensor with 2 dims", "mean"),
    "mean axis [0, 1.5]": Bad(on((2, 3))(lambda a: a.mean(axis=[0, 1.5])), TypeError,
                              rf"^mean: {_AXIS_TYPE} \[0, 1\.5\]", "mean"),
    "max axis (0, 2) of 2-D": Bad(on((2, 3))(lambda a: a.max(axis=(0, 2))), tg.AxisError,
                                  r"^max: axis 2 is out of range", "max"),
    "max repeated axis (0, -2)": Bad(on((2, 3))(lambda a: a.max(axis=(0, -2))), tg.ShapeError,
                                     r"^max: axis \(0, -2\) repeats an axis", "max"),
    "max over an empty axis": Bad(on((0, 3))(lambda a: a.max(axis=0)), tg.ShapeError,
                                  r"^Max: zero-size array to reduction operation maximum.*\(0, 3\) float64", "Max"),
    "var axis '1'": Bad(on((2, 3))(lambda a: a.var(axis="1")), TypeError, rf"^var: {_AXIS_TYPE} '1'", "var"),
    "var axis 3 of 2-D": Bad(on((2, 3))(lambda a: a.var(axis=3)), tg.AxisError,
                             r"^var: axis 3 is out of range", "var"),
    "logsumexp axis 2 of 2-D": Bad(on((2, 3))(lambda a: a.logsumexp(axis=2)), tg.AxisError,
                                   r"^logsumexp: axis 2 is out of range", "logsumexp"),
    "logsumexp repeated axis (0, -2)": Bad(on((2, 3))(lambda a: a.logsumexp(axis=(0, -2))), tg.ShapeError,
                                           r"^logsumexp: axis \(0, -2\) repeats an axis", "logsumexp"),
    "softmax axis 2 of 2-D": Bad(on((2, 3))(lambda a: a.softmax(axis=2)), tg.AxisError,
                                 r"^softmax: axis 2 is out of range", "softmax"),
    "softmax axis 1.5": Bad(on((2, 3))(lambda a: F.softmax(a, axis=1.5)), TypeError, rf"^softmax: {_AXIS_TYPE} 1\.5",
                            "softmax", bug="a float axis gives \"'float' object is not iterable\"",
                            fails_with=AssertionError),
    "log_softmax axis -3 of 2-D": Bad(on((2, 3))(lambda a: F.log_softmax(a, axis=-3)), tg.AxisError,
                                      r"^log_softmax: axis -3 is out of range", "log_softmax"),
    "transpose (0, 0, 1)": Bad(on((2, 3, 4))(lambda a: a.transpose(0, 0, 1)), tg.ShapeError,
                               r"^transpose: axes \(0, 0, 1\) are not a permutation of the 3 axes of \(2, 3, 4\)",
                               "transpose"),
    "transpose too few axes": Bad(on((2, 3, 4))(lambda a: a.transpose(0, 1)), tg.ShapeError,
                                  r"^transpose: axes \(0, 1\) are not a permutation", "transpose"),
    "transpose axis 2 of 2-D": Bad(on((2, 3))(lambda a: a.transpose(0, 2)), tg.ShapeError,
                                   r"^transpose: axes \(0, 2\) are not a permutation of the 2 axes of \(2, 3\)",
                                   "transpose"),
    "swapaxes axis 2 of 2-D": Bad(on((2, 3))(lambda a: a.swapaxes(0, 2)), tg.AxisError,
                                  r"^swapaxes: axis 2 is out of range", "swapaxes"),
    "swapaxes axis 1.0": Bad(on((2, 3))(lambda a: a.swapaxes(0, 1.0)), TypeError, rf"^swapaxes: {_AXIS_TYPE} 1\.0",
                             "swapaxes", bug="a float axis gives \"'float' object is not iterable\"",
                             fails_with=AssertionError),
    "squeeze axis 2 of 2-D": Bad(on((2, 1))(lambda a: a.squeeze(2)), tg.AxisError,
                                 r"^squeeze: axis 2 is out of range", "squeeze"),
    "squeeze repeated axis (0, 0)": Bad(on((1, 3))(lambda a: a.squeeze((0, 0))), tg.ShapeError,
                                        r"^squeeze: axis \(0, 0\) repeats an axis", "squeeze"),
    "unsqueeze axis 4 of 2-D": Bad(on((2, 1))(lambda a: a.unsqueeze(4)), tg.AxisError,
                                   r"^unsqueeze: axis 4 is out of range for a tensor with 3 dims", "unsqueeze"),
    # ---- integer / bool tensors asking for grad
    "int64 array with requires_grad": Bad(lambda w: Tensor(np.arange(3), requires_grad=True), TypeError,
                                          r"only floating-point tensors can require grad, got int64"),
    "bool list with requires_grad": Bad(lambda w: Tensor([True, False], requires_grad=True), TypeError,
                                        r"only floating-point tensors can require grad, got bool"),
    "requires_grad_() on an int tensor": Bad(lambda w: w(Tensor(np.arange(3, dtype=np.int32))).requires_grad_(),
                                             TypeError, both("int32", "cast first")),
    "requires_grad_(False) on a non-leaf": Bad(on((3,))(lambda a: (a * 2).requires_grad_(False)), RuntimeError,
                                               r"only be switched off on a leaf; use \.detach\(\)"),
    "retain_grad() without requires_grad": Bad(lambda w: w(Tensor(np.ones(2))).retain_grad(), RuntimeError,
                                               r"retain_grad\(\) on a tensor that does not require grad"),
    # ---- cross_entropy targets (others: tests/test_nn_bn.py::CE_BAD)
    "label 9 as an int Tensor for 4 classes": Bad(_ce(Tensor(labels(0, 1, 9))), IndexError,
                                                  r"^cross_entropy: label 9 out of range for 4 classes "
                                                  r"\(at index \(2,\)\)", "cross_entropy"),
    "uint8 label 255": Bad(_ce(labels(0, 255, 1, dtype=np.uint8)), IndexError,
                           r"^cross_entropy: label 255 out of range for 4 classes \(at index \(1,\)\)",
                           "cross_entropy"),
    "label 4 for one example of 4 logits": Bad(_ce(np.array(4), shape=(4,)), IndexError,
                                               r"^cross_entropy: label 4 out of range for 4 classes", "cross_entropy"),
    "target (1,) for one example of 4 logits": Bad(_ce(labels(1), shape=(4,)), tg.ShapeError,
                                                   r"^cross_entropy: target \(1,\) fits neither class indices \(\) nor",
                                                   "cross_entropy"),
    "bool Tensor labels": Bad(_ce(Tensor(np.array([True, False, True]))), TypeError,
                              r"^cross_entropy: class-index targets must be integers, got bool \(3,\)",
                              "cross_entropy"),
    "labels [0, 'a', 2]": Bad(_ce([0, "a", 2]), TypeError, r"^cross_entropy: class-index targets must be integers",
                              "cross_entropy"),
    "target None": Bad(_ce(None), tg.ShapeError, r"^cross_entropy: target \(\) fits neither class indices \(3,\)",
                       "cross_entropy"),
    "reduction 'Mean'": Bad(_ce(labels(0, 1, 2), "Mean"), ValueError,
                            r"^cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'Mean'", "cross_entropy"),
    "float labels for an empty batch": Bad(_ce(np.zeros(0), shape=(0, 4)), TypeError,
                                           r"^cross_entropy: class-index targets must be integers, got float64 \(0,\)",
                                           "cross_entropy"),
    "ndarray logits": Bad(lambda w: F.cross_entropy(np.zeros((3, 4)), labels(0, 1, 2)), TypeError,
                          both("cross_entropy", "ndarray"), "cross_entropy", bug=_NOT_A_TENSOR,
                          fails_with=AttributeError),
    "logits with 0 classes": Bad(_ce(labels(0, 0, 0), shape=(3, 0)), IndexError,
                                 both("label 0 out of range for 0 classes")),
    # ---- zero-size dimensions
    "zeros(-1)": Bad(lambda w: tg.zeros(-1), ValueError, r"negative dimensions are not allowed"),
    "Linear(-1, 2)": Bad(lambda w: _linear(-1, 2), ValueError, both("Linear", "-1"),
                         bug="raw NumPy error raised inside numpy.random ('negative dimensions are not allowed'), "
                             "naming neither Linear nor the size", fails_with=AssertionError),
    "BatchNorm1d training on an empty batch (0, 3)": Bad(_module_call(_bn, Tensor(np.zeros((0, 3)))), tg.ShapeError,
                                                         both("more than 1 value per channel", "(0, 3)")),
    "BatchNorm2d training on an empty batch": Bad(_module_call(lambda: _bn("2d"), Tensor(np.zeros((0, 3, 2, 2)))),
                                                  tg.ShapeError, both("more than 1 value per channel", "(0, 3, 2, 2)")),
    "BatchNorm1d training on a length-0 axis (2, 3, 0)": Bad(_module_call(_bn, Tensor(np.zeros((2, 3, 0)))),
                                                             tg.ShapeError, both("more than 1 value", "(2, 3, 0)")),
    # ---- Python objects of the wrong type
    "Tensor('abc')": Bad(lambda w: Tensor("abc"), TypeError, r"^Tensor: cannot make a tensor from str"),
    "Tensor({'a': 1})": Bad(lambda w: Tensor({"a": 1}), TypeError, r"^Tensor: cannot make a tensor from dict"),
    "Tensor(None)": Bad(lambda w: Tensor(None), TypeError, r"^Tensor: cannot make a tensor from NoneType"),
    "Tensor([1, 'a'])": Bad(lambda w: Tensor([1, "a"]), TypeError, r"^Tensor: unsupported dtype <U"),
    "Tensor([1.0, None])": Bad(lambda w: Tensor([1.0, None]), TypeError, r"^Tensor: unsupported dtype object"),
    "Tensor of a ragged list": Bad(lambda w: Tensor([[1.0, 2.0], [3.0]]), ValueError, r"inhomogeneous shape"),
    "Tensor(dtype='banana')": Bad(lambda w: Tensor([1.0], dtype="banana"), TypeError,
                                  r"data type 'banana' not understood"),
    "tensor + None": Bad(on((2,))(lambda a: a + None), TypeError, r"^Tensor: cannot make a tensor from NoneType"),
    "None - tensor": Bad(on((2,))(lambda a: None - a), TypeError, r"^Tensor: cannot make a tensor from NoneType"),
    "tensor * {}": Bad(on((2,))(lambda a: a * {}), TypeError, r"^Tensor: cannot make a tensor from dict"),
    "tensor @ 'ab'": Bad(on((2, 2))(lambda a: a @ "ab"), TypeError, r"^Tensor: cannot make a tensor from str"),
    "tensor + [1, 'a']": Bad(on((2,))(lambda a: a + [1, "a"]), TypeError, r"^Tensor: unsupported dtype <U"),
    "zeros('3')": Bad(lambda w: tg.zeros("3"), TypeError, r"a shape is a tuple of ints, got \('3',\)"),
    "Linear called on a string": Bad(_module_call(lambda: _linear(3, 2), "abc"), TypeError,
                                     both("linear", "str"), bug=_NOT_A_TENSOR, fails_with=AttributeError),
    "BatchNorm1d called on None": Bad(_module_call(_bn, None), TypeError, both("BatchNorm1d", "NoneType"),
                                      bug=_NOT_A_TENSOR, fails_with=AttributeError),
    "Sequential given a string": Bad(lambda w: nn.Sequential(_linear(3, 2), "relu"), TypeError,
                                     both("Sequential", "str"),
                                     bug="the string is silently dropped (only Module attributes are children): "
                                         "the model has one layer, not two", fails_with=DID_NOT_RAISE),
    # ---- BatchNorm / LayerNorm shapes (others: tests/test_nn_bn.py::BN_BAD)
    "BatchNorm2d(4) on channels-last (2, 2, 2, 4)": Bad(_module_call(lambda: _bn("2d", 4),
                                                                     Tensor(np.ones((2, 2, 2, 4)))),
                                                        tg.ShapeError, both("BatchNorm2d(4)", "(2, 2, 2, 4)",
                                                                         "4 channels")),
    "BatchNorm1d on 5-D": Bad(_module_call(_bn, Tensor(np.ones((2, 3, 2, 2, 2)))), tg.ShapeError,
                              both("BatchNorm1d(3)", "(2, 3, 2, 2, 2)", "2-D or 3-D")),
    "BatchNorm1d eval on 5 channels": Bad(_module_call(lambda: _bn(train=False), Tensor(np.ones((6, 5)))),
                                          tg.ShapeError, both("BatchNorm1d(3)", "(6, 5)", "3 channels")),
    "batch_norm bias (4,) for 3 channels": Bad(_batch_norm_functional_bad_bias, tg.ShapeError,
                                               r"^batch_norm: bias has 4 channels but the input \(5, 3\) has 3",
                                               "batch_norm"),
    "LayerNorm((3, 4)) on (2, 4, 3)": Bad(_module_call(lambda: trained(nn.LayerNorm((3, 4), dtype=F64), (2, 3, 4)),
                                                       Tensor(np.ones((2, 4, 3)))), tg.ShapeError,
                                          r"^layer_norm: input \(2, 4, 3\) does not end in normalized_shape \(3, 4\)",
                                          "layer_norm"),
    "LayerNorm(3) on a 0-d tensor": Bad(_module_call(lambda: nn.LayerNorm(3), Tensor(np.array(1.0))), tg.ShapeError,
                                        r"^layer_norm: input \(\) does not end in normalized_shape \(3,\)",
                                        "layer_norm"),
    # ---- Dropout (others: tests/test_nn.py::test_dropout_bad_p_is_a_value_error)
    "Dropout(p=1 + 1e-9)": Bad(lambda w: nn.Dropout(1 + 1e-9), ValueError, r"^Dropout: p must be in \[0, 1\]",
                               "Dropout"),
    "Dropout(p='0.5')": Bad(lambda w: nn.Dropout("0.5"), TypeError, both("Dropout", "str"), "Dropout",
                            bug="\"'<=' not supported between instances of 'int' and 'str'\", naming neither Dropout "
                                "nor p", fails_with=AssertionError),
    # ---- backward misuse
    "backward twice": Bad(_backward_twice, RuntimeError,
                          r"already freed \(Sum -> \(\)\).*pass retain_graph=True"),
    "backward on per-example losses": Bad(lambda w: _ce(labels(0, 1, 2), "none")(w).backward(),
                                          RuntimeError, r"single-element output, got shape \(3,\)"),
    "grad (3,) for an output (2, 3)": Bad(on((2, 3))(lambda a: (a * a).backward(np.ones(3))), tg.ShapeError,
                                          r"grad of shape \(3,\) given for output 0 of shape \(2, 3\)"),
    "grad 'abc'": Bad(on((2, 3))(lambda a: (a * a).backward("abc")), TypeError,
                      r"^Tensor: cannot make a tensor from str"),
    "two grad_outputs for one output": Bad(on((2,))(lambda a: tg.grad((a * a).sum(), a, [1.0, 2.0])), ValueError,
                                           r"got 2 grad_outputs for 1 outputs"),
    "tg.grad of an ndarray input": Bad(on((2,))(lambda a: tg.grad((a * a).sum(), a.data)), TypeError,
                                       both("Tensor", "ndarray"), bug=_NOT_A_TENSOR, fails_with=AttributeError),
    "tg.grad of None outputs": Bad(on((2,))(lambda a: tg.grad(None, a)), TypeError, both("Tensor", "NoneType"),
                                   bug=_NOT_A_TENSOR, fails_with=AttributeError),
    # ---- a saved tensor changed between forward and backward
    "write into a saved leaf's array": Bad(_write_saved_leaf, ValueError, r"read-only"),
    "write into the ndarray given to from_numpy": Bad(_write_through_the_source_array, ValueError, r"read-only"),
    "write into a parameter held by a graph": Bad(_write_saved_parameter, ValueError, r"read-only"),
    "replace a saved leaf's .data": Bad(_replace_saved_leaf, RuntimeError,
                                        r"^Mul: its input 0 \(x \(2, 3\)\) was given new data"),
    "writable_data() then backward": Bad(_writable_data_then_backward, RuntimeError,
                                         both("Mul", "input 0 (x (2, 3))", "new data", "run the forward again")),
    "optimizer step between forward and backward": Bad(_optimizer_step_between, RuntimeError,
                                                       both("Linear/Transpose", "input 0 (weight (2, 3))", "new data")),
    "load_state_dict between forward and backward": Bad(_load_state_dict_between, RuntimeError,
                                                        both("Linear/Transpose", "weight (2, 3)", "load_state_dict")),
    "write into a saved 0-d leaf": Bad(_scalar_leaf_written, ValueError, r"read-only",
                                       bug="0-d leaves were never locked (_lock skipped ndim == 0): the write "
                                           "succeeds and backward returns 2 * 3 = 6 for a loss computed at s = 2",
                                       fails_with=DID_NOT_RAISE),
    "replace a saved 0-d leaf's .data": Bad(_scalar_leaf_replaced, RuntimeError, both("Mul", "s ()", "new data"),
                                            bug="no lock, so _check_unchanged never runs: the gradient is silently "
                                                "computed at the new value", fails_with=DID_NOT_RAISE),
    "optimizer step on a 0-d parameter between forward and backward": Bad(
        _scalar_parameter_stepped, RuntimeError, both("Mul", "new data"),
        bug="SGD updates the unlocked 0-d array in place; the second backward silently returns 0 instead of 4",
        fails_with=DID_NOT_RAISE),
    # ---- NaN / Inf under detect_anomaly: the op, its scope path, the shapes, the user's line
    "log of a negative under detect_anomaly": Bad(_anomaly_forward, tg.AnomalyError,
                                                  r"^Log produced NaN \(output \(3,\)\) at block/Log; inputs: \(3,\); "
                                                  rf"the op was created at .*{re.escape(HERE)}:\d+$", "Log"),
    "0 * sqrt at 0 in backward under detect_anomaly": Bad(_anomaly_backward, tg.AnomalyError,
                                                      r"^Div \(in Sqrt\.backward\) produced NaN \(output \(3,\)\) at "
                                                      rf"block/Sqrt; inputs: \(3,\), \(3,\); .*{re.escape(HERE)}:\d+$",
                                                      "Div"),
    "Inf into a BatchNorm1d under detect_anomaly": Bad(_anomaly_in_a_module, tg.AnomalyError,
                                                       r"^Sum produced Inf \(output \(1, 2\)\) at Sequential/0/"
                                                       r"batch_norm/Sum; inputs: \(4, 2\) \(has NaN/Inf\); .*"
                                                       + re.escape(HERE), "Sum"),
    "NaN into a Linear under detect_anomaly": Bad(_anomaly_nan_input_in_linear, tg.AnomalyError,
                                                  r"^MatMul produced NaN \(output \(4, 2\)\) at Sequential/0/MatMul; "
                                                  r"inputs: \(4, 3\) \(has NaN/Inf\), \(3, 2\); .*" + re.escape(HERE),
                                                  "MatMul"),
    # ---- state_dict (others: tests/test_nn.py::BAD_STATE)
    "state_dict None": Bad(lambda w: w(_bn()).load_state_dict(None), TypeError, both("load_state_dict", "NoneType"),
                           bug="\"argument of type 'NoneType' is not iterable\", not naming load_state_dict",
                           fails_with=AssertionError),
    "state_dict as a list of pairs": Bad(lambda w: w(_bn()).load_state_dict(list(_bn().state_dict().items())),
                                         TypeError, both("load_state_dict", "list"),
                                         bug="\"unhashable type: 'numpy.ndarray'\"", fails_with=AssertionError),
    "state_dict value None": Bad(_state_dict_edit("weight", None), RuntimeError,
                                 r"^load_state_dict for BatchNorm1d: weight: expected shape \(3,\), got \(\)"),
    "state_dict value a dict": Bad(_state_dict_edit("running_mean", {"a": 1}), RuntimeError,
                                   r"running_mean: expected shape \(3,\), got \(\)"),
    "state_dict buffer of strings": Bad(_state_dict_edit("running_var", np.array(["a", "b", "c"])), RuntimeError,
                                        r"^load_state_dict for BatchNorm1d: running_var: expected numbers, "
                                        r"got dtype <U1"),
    "state_dict Tensor of the wrong shape": Bad(_state_dict_edit("bias", Tensor(np.zeros((3, 1)))), RuntimeError,
                                                r"bias: expected shape \(3,\), got \(3, 1\)"),
    "state_dict object array holding None": Bad(_state_dict_edit("weight", np.array([1, None, 3], dtype=object)),
                                                RuntimeError, both("weight", "object"),
                                                bug="loaded silently: None is cast to NaN, the weight becomes "
                                                    "[1, nan, 3]", fails_with=DID_NOT_RAISE),
    # ---- optimizer misuse (others: tests/test_optim.py::BAD)
    "SGD given a module": Bad(lambda w: tg.optim.SGD(_linear(2, 2), lr=0.1), TypeError, both("SGD", "parameters()"),
                              bug="\"'Linear' object is not iterable\", not naming SGD or parameters()",
                              fails_with=AssertionError),
    "SGD lr '0.1'": Bad(lambda w: tg.optim.SGD([leaf(2)], lr="0.1"), TypeError, both("SGD", "learning rate"),
                        bug="\"'>=' not supported between instances of 'str' and 'int'\"", fails_with=AssertionError),
    "SGD momentum -0.5": Bad(lambda w: tg.optim.SGD([leaf(2)], lr=0.1, momentum=-0.5), ValueError,
                             both("SGD", "momentum", "-0.5"), bug=_BAD_HYPER, fails_with=DID_NOT_RAISE),
    "Adam beta1 = 1": Bad(lambda w: tg.optim.Adam([leaf(2)], betas=(1.0, 0.999)), ValueError, both("Adam", "beta"),
                          bug=_BAD_HYPER + " (step() then divides by 1 - 1**t = 0: ZeroDivisionError after m, v "
                          "and t were updated)", fails_with=DID_NOT_RAISE),
    "Adam eps -1": Bad(lambda w: tg.optim.Adam([leaf(2)], eps=-1.0), ValueError, both("Adam", "eps"),
                       bug=_BAD_HYPER, fails_with=DID_NOT_RAISE),
    "RMSprop alpha -1": Bad(lambda w: tg.optim.RMSprop([leaf(2)], alpha=-1.0), ValueError, both("RMSprop", "alpha"),
                            bug=_BAD_HYPER, fails_with=DID_NOT_RAISE),
    "a .grad of the wrong shape before an SGD step": Bad(_bad_grad_at_step(tg.optim.SGD, momentum=0.9),
                                                         tg.ShapeError, both("assigned grad has shape (5,)", "(2,)"),
                                                         bug="a raw NumPy broadcast error, after parameter 0 was "
                                                             "updated and a (5,) momentum buffer stored for "
                                                             "parameter 1",
                                                         fails_with=AssertionError),
    "a .grad of the wrong shape before an Adam step": Bad(_bad_grad_at_step(tg.optim.Adam), tg.ShapeError,
                                                          both("assigned grad has shape (5,)", "(2,)"),
                                                          bug="a raw NumPy broadcast error, after parameter 0 was "
                                                              "updated and parameter 1's m and t changed",
                                                          fails_with=AssertionError),
    # ---- viz misuse
    "to_dot of a freed graph": Bad(_viz_freed, ValueError, r"freed by backward\(\).*retain_graph=True"),
    "draw(backward=True) of a gradient without a graph": Bad(_viz_backward_without_graph, ValueError,
                                                             r"backward=True draws the graph of gradients.*"
                                                             r"create_graph=True"),
    "to_dot with max_nodes=2": Bad(on((2,))(lambda a: tg.viz.to_dot((a * 2 + 1).sum(), max_nodes=2)),
                                   GraphTooLargeError, r"the graph has 7 nodes \(max_nodes=2\).*max_nodes=None"),
    "to_dot of an ndarray": Bad(lambda w: tg.viz.to_dot(np.zeros(3)), TypeError, both("ndarray", "Tensor"),
                                bug=_NOT_A_TENSOR, fails_with=AttributeError),
}


def _in_scope(name: str, fn: Callable[[], Any]) -> Any:
    with tg.scope(name):
        return fn()


def _params(table: dict[str, Bad]) -> list:
    return [pytest.param(k, marks=pytest.mark.xfail(strict=True, raises=v.fails_with, reason=v.bug))
            if v.bug and k in STILL_OPEN else k for k, v in table.items()]


STILL_OPEN: set[str] = set()  # cases whose `bug` is not fixed yet


def _fingerprint(fn: Any) -> str:
    """What a case does: its code (not where it is written) and what it closes over."""
    if isinstance(fn, (Tensor, np.ndarray)):
        a = np.asarray(fn.data if isinstance(fn, Tensor) else fn)
        return repr((type(fn).__name__, a.shape, a.dtype.str, a.tolist()))
    if not hasattr(fn, "__code__"):
        return repr(fn)
    code = fn.__code__
    closure = [_fingerprint(c.cell_contents) for c in fn.__closure__ or ()]
    return repr((code.co_code, code.co_consts, code.co_names, closure))


def test_the_table_has_at_least_40_distinct_bad_inputs():
    assert len(BAD) >= 40
    # distinct ids, and no case is a relabelled copy of another (same code, same captured values)
    prints: dict[str, str] = {}
    for name, bad in BAD.items():
        first = prints.setdefault(_fingerprint(bad.case), name)
        assert first == name, f"{name!r} repeats {first!r}"
    assert f"Distinct bad inputs: {len(BAD) + 5} = {len(BAD)} in the table BAD" in __doc__


@pytest.mark.parametrize("name", _params(BAD))
def test_bad_input_is_a_clear_error_that_changes_nothing(name):
    bad = BAD[name]
    watch = Watch()
    with np.errstate(all="ignore"), pytest.raises(bad.exc, match=bad.match) as info:
        bad.case(watch)
    e = info.value
    assert type(e) is bad.exc, f"{type(e).__name__}: {e}"
    watch.assert_unchanged()
    # no NumPy traceback behind it: nothing chained, and not raised from inside NumPy's own code
    assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__), repr(e.__context__)
    assert not traceback.extract_tb(e.__traceback__)[-1].filename.startswith(NUMPY_DIR)
    if bad.op is not None:
        assert str(e).startswith(bad.op), str(e)
        if isinstance(getattr(ops, bad.op, None), type) and bad.exc is not tg.AnomalyError:
            assert issubclass(getattr(ops, bad.op), Function)
            assert e.__suppress_context__ is True  # raised `from None`: NumPy's error is not shown behind it


# ------------------------------------------------------------------------------ bad inputs outside the table

def test_a_view_taken_before_the_graph_cannot_change_a_saved_leaf_silently():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    view = x.data[:]
    y = (x * x).sum()
    try:
        view[0] = 100.0
        y.backward()
    except (ValueError, RuntimeError):  # either refusal is fine
        return
    assert x.grad.data[0] == 2.0, f"loss {y.item()} computed at x[0] = 1, gradient {x.grad.data}"


def test_a_duplicate_parameter_is_rejected_or_stepped_once():
    w = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    try:
        opt = tg.optim.SGD([w, w], lr=0.5)
    except ValueError as e:
        assert "more than once" in str(e) or "duplicate" in str(e)
        return
    w.grad = Tensor(np.array([1.0, 1.0]))
    opt.step()
    np.testing.assert_array_equal(w.data, [0.5, -2.5])


def test_batch_norm_on_an_ndarray_works_like_linear_or_is_a_type_error():
    x = np.random.default_rng(0).standard_normal((6, 3))
    bn, ref = _bn(), _bn()
    before = snap(bn)
    try:
        y = bn(x)
    except TypeError as e:
        assert "BatchNorm1d" in str(e)
        assert_same(snap(bn), before, "bn")
        return
    np.testing.assert_array_equal(y.data, ref(Tensor(x)).data)


# ------------------------------------------------------------------------------ empty batches: documented results

def test_cross_entropy_of_an_empty_batch_is_what_pytorch_gives():
    """PyTorch: mean over no examples is NaN (0 / 0), sum is 0, 'none' is an empty vector; the
    gradient is an empty array. So here, with a clear anomaly (naming the division) if asked."""
    z = Tensor(np.zeros((0, 4)), requires_grad=True)
    empty = np.zeros(0, np.int64)
    with np.errstate(invalid="ignore"):
        assert np.isnan(F.cross_entropy(z, empty).item())
    assert F.cross_entropy(z, empty, reduction="none").shape == (0,)
    total = F.cross_entropy(z, empty, reduction="sum")
    total.backward()
    assert total.item() == 0.0 and z.grad.shape == (0, 4)
    anomaly = r"^Div produced NaN \(output \(\)\) at cross_entropy/Div;.*" + re.escape(HERE)
    with np.errstate(invalid="ignore"), tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=anomaly):
        F.cross_entropy(z, empty)


def test_batch_norm_eval_on_an_empty_batch_is_empty_and_changes_nothing():
    """Eval mode needs no batch statistics: (0, C) in, (0, C) out, as PyTorch. (Training mode on an
    empty batch is a clear error here, in the table; PyTorch returns an empty output there.)"""
    bn = _bn(train=False)
    before = snap(bn)
    y = bn(Tensor(np.zeros((0, 3))))
    assert y.shape == (0, 3)
    y.sum().backward()  # adds zero gradients
    assert_same(snap(bn), before, "bn")


def test_a_failed_call_leaves_no_leaf_read_only_once_the_error_is_gone():
    """F.linear records x @ w.T (locking x and w) before the bias fails: the partial graph dies
    with the exception, and the arrays are writable again."""
    x, w, b = leaf(2, 3), leaf(4, 3), leaf(5)
    try:
        F.linear(x, w, b)
    except ValueError:
        pass
    assert all(t.data.flags.writeable for t in (x, w, b))


def _writable(t: Tensor) -> bool:
    return t.data.flags.writeable


def test_a_held_array_is_read_only_exactly_while_some_live_graph_reads_it():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y1, y2 = x * x, (x * 3.0).sum()   # y1 itself is Mul's output: its op outlives the backward
    assert not _writable(x)
    y1.backward(np.ones(3))           # frees y1's graph (its saved values and holds); y2's still reads x
    assert not _writable(x)
    del y2                            # the last graph reading x is gone
    assert _writable(x)
    y3 = (x * x).sum()
    y3.backward(retain_graph=True)    # a retained graph keeps holding x
    assert not _writable(x)
    del y3
    assert _writable(x)


def test_a_leaf_no_backward_reads_stays_writable_and_replacing_it_is_harmless():
    """Add never reads its inputs' values (d(a + b) = da + db), so, as in PyTorch, changing b
    between forward and backward changes no gradient and is not an error; x, which Mul's
    backward reads, is guarded."""
    x, b = Tensor(np.array([1.0, 2.0]), requires_grad=True), Tensor(np.array([5.0, 6.0]), requires_grad=True)
    y = (x * x + b).sum()
    assert _writable(b) and not _writable(x)
    b.data[...] = 0.0
    b.data = np.array([7.0, 8.0])
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])


def test_a_view_of_a_leaf_read_by_a_later_op_keeps_the_leaf_read_only():
    """w.T aliases w's array and MatMul's backward reads it: the view op holds w."""
    w = Tensor(np.ones((2, 3)), requires_grad=True)
    y = (Tensor(np.ones((4, 3))) @ w.T).sum()
    with pytest.raises(ValueError, match="read-only"):
        w.data[0, 0] = 5.0
    y.backward()
    assert _writable(w)


def test_an_array_the_user_made_read_only_stays_read_only_after_the_graph():
    a = np.array([1.0, 2.0])
    a.flags.writeable = False
    x = Tensor(a, requires_grad=True)
    (x * x).sum().backward()
    assert not a.flags.writeable


# ------------------------------------------------------------------------------ NaN / Inf: documented propagation

def test_nan_in_a_max_row_poisons_that_row_only():
    x = Tensor(np.array([[1.0, np.nan, 3.0], [4.0, 6.0, 5.0]]), requires_grad=True)
    with np.errstate(invalid="ignore"):
        y = x.max(axis=1)
        y.sum().backward()
    assert np.isnan(y.data[0]) and y.data[1] == 6.0
    assert np.isnan(x.grad.data[0]).all()
    np.testing.assert_array_equal(x.grad.data[1], [0.0, 1.0, 0.0])


def test_inf_squashed_by_sigmoid_and_tanh_is_finite_and_detect_anomaly_stays_silent():
    """detect_anomaly checks what each op PRODUCES: sigmoid(+-Inf) = 1, 0 and tanh(+-Inf) = +-1 are
    finite, with derivative exactly 0, so an Inf input squashed by them raises nothing."""
    for fn, out, grad in ((Tensor.sigmoid, [1.0, 0.0, 0.5], [0.0, 0.0, 0.25]),
                          (Tensor.tanh, [1.0, -1.0, 0.0], [0.0, 0.0, 1.0])):
        with tg.detect_anomaly():
            x = Tensor(np.array([np.inf, -np.inf, 0.0]), requires_grad=True)
            y = fn(x)
            y.sum().backward()
        np.testing.assert_array_equal(y.data, out)
        np.testing.assert_array_equal(x.grad.data, grad)


def test_minus_inf_masked_logits_give_an_exact_loss_and_gradient_but_detect_anomaly_reports_them():
    """A logit of -inf (a masked class) has probability 0: the loss over [-inf, 0, 0] with label 1 is
    log 2 and the gradient [0, -1/2, 1/2], exactly, as PyTorch. detect_anomaly counts the -inf the
    shifted logits hold as an anomaly (Inf, by its definition), naming the op inside cross_entropy."""
    for dtype in (F32, F64):
        z = Tensor(np.array([[-np.inf, 0.0, 0.0]], dtype), requires_grad=True)
        loss = F.cross_entropy(z, labels(1))
        loss.backward()
        assert loss.item() == float(dtype(np.log(2)))
        np.testing.assert_array_equal(z.grad.data, np.array([[0.0, -0.5, 0.5]], dtype))
        with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=r"^Sub produced Inf \(output \(1, 3\)\) at "
                                                r"cross_entropy/Sub; inputs: \(1, 3\) \(has NaN/Inf\), \(1, 1\)"):
            F.cross_entropy(z, labels(1))


# ------------------------------------------------------------------------------ numerical edges: finite, exact

W_ROWS = np.random.default_rng(11).standard_normal((3, 5))  # upstream gradients
LOGITS_1E4 = np.array([[1e4, 1e4 - 1, -1e4, 0, 5e3], [-1e4, -1e4, 3e3, -2e3, 1e4 - 3],
                       [1e4, 1e4, 1e4, 1e4, 1e4]])  # integers: exact in float32 too


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    s = z - z.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def _log_softmax_1e4(dtype):
    x = Tensor(LOGITS_1E4.astype(dtype), requires_grad=True)
    w = W_ROWS.astype(dtype)
    out = x.log_softmax()
    (out * Tensor(w)).sum().backward()
    ref = _np_log_softmax(LOGITS_1E4)
    w64 = w.astype(F64)
    return {"out": out.data, "dx": x.grad.data}, {"out": ref, "dx": w64 - np.exp(ref) * w64.sum(-1, keepdims=True)}


def _logsumexp_1e4(dtype):
    x = Tensor(LOGITS_1E4.astype(dtype), requires_grad=True)
    w = W_ROWS[:, 0].astype(dtype)
    out = x.logsumexp(axis=1)
    (out * Tensor(w)).sum().backward()
    m = LOGITS_1E4.max(-1)
    ref = m + np.log(np.exp(LOGITS_1E4 - m[:, None]).sum(-1))
    return {"out": out.data, "dx": x.grad.data}, {"out": ref, "dx": w.astype(F64)[:, None] *
                                                  np.exp(_np_log_softmax(LOGITS_1E4))}


def _softmax_1e4(dtype):
    x = Tensor(LOGITS_1E4.astype(dtype), requires_grad=True)
    w = W_ROWS.astype(dtype)
    out = x.softmax()
    (out * Tensor(w)).sum().backward()
    s, w64 = np.exp(_np_log_softmax(LOGITS_1E4)), w.astype(F64)
    return {"out": out.data, "dx": x.grad.data}, {"out": s, "dx": s * (w64 - (w64 * s).sum(-1, keepdims=True))}


def _soft_targets_1e4(dtype):
    y = np.array([[0.5, 0.5, 0, 0, 0], [0, 0, 0.25, 0, 0.75], [0.2, 0.2, 0.2, 0.2, 0.2]])
    x = Tensor(LOGITS_1E4.astype(dtype), requires_grad=True)
    loss = F.cross_entropy(x, y.astype(dtype), reduction="sum")
    loss.backward()
    logp = _np_log_softmax(LOGITS_1E4)
    return {"loss": loss.data, "dx": x.grad.data}, {"loss": -(y * logp).sum(), "dx": np.exp(logp) - y}


def _norm_formula(x, g, b, dy, axes):
    """Normalization over `axes` and its input gradient in float64 NumPy (docs/course.md section 2):
    x_hat = (x - mu) / sqrt(var + eps), y = g x_hat + b,
    dx = (dxh - mean dxh - x_hat mean(dxh x_hat)) / std with dxh = g dy (g, b broadcastable)."""
    mu, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    std = np.sqrt(var + EPS)
    x_hat = (x - mu) / std
    dxh = dy * g
    dx = (dxh - dxh.mean(axes, keepdims=True) - x_hat * (dxh * x_hat).mean(axes, keepdims=True)) / std
    return g * x_hat + b, dx, x_hat, mu, var


def _batch_norm_case(kind: str, dtype, x: np.ndarray):
    c = x.shape[1]
    r = np.random.default_rng(2)
    bn = (nn.BatchNorm1d if kind == "1d" else nn.BatchNorm2d)(c, dtype=dtype)
    bn.weight.data[...] = r.uniform(0.5, 2, c)
    bn.bias.data[...] = r.standard_normal(c)
    dy = r.standard_normal(x.shape).astype(dtype)
    xt = Tensor(x.astype(dtype), requires_grad=True)
    y = bn(xt)
    (y * Tensor(dy)).sum().backward()
    got = {"y": y.data, "dx": xt.grad.data, "dgamma": bn.weight.grad.data, "dbeta": bn.bias.grad.data,
           "running_mean": bn.running_mean.data, "running_var": bn.running_var.data}
    axes = (0,) + tuple(range(2, x.ndim))
    keep = (1, c) + (1,) * (x.ndim - 2)
    dy64 = dy.astype(F64)
    y_ref, dx_ref, x_hat, mu, var = _norm_formula(x.astype(dtype).astype(F64), bn.weight.data.astype(F64).reshape(keep),
                                                  bn.bias.data.astype(F64).reshape(keep), dy64, axes)
    m = x.size // c
    want = {"y": y_ref, "dx": dx_ref, "dgamma": (dy64 * x_hat).sum(axes), "dbeta": dy64.sum(axes),
            "running_mean": 0.1 * mu.ravel(), "running_var": 0.9 + 0.1 * var.ravel() * m / (m - 1)}
    return got, want, bn


def _bn_batch_of_two_constant_channel(dtype):
    """Batch of 2. Channel 0 constant (variance 0): y there is beta EXACTLY (the mean of two equal
    numbers is exact, so x - mean is 0), and dx there is gamma (dy - mean dy) / sqrt(eps).
    Channel 3: 0.5 and 0.5 + 2^-19, variance 2^-40 ~ 9e-13 (exact in float32 too)."""
    x = np.array([[0.75, 1.0, -2.0, 0.5], [0.75, 3.0, 5.0, 0.5 + 2.0 ** -19]])
    got, want, bn = _batch_norm_case("1d", dtype, x)
    np.testing.assert_array_equal(got["y"][:, 0], np.full(2, bn.bias.data[0]))
    assert x[:, 3].var() == 2.0 ** -40
    return got, want


def _bn2d_constant_and_tiny_variance(dtype):
    """16 values per channel. Channel 0 constant (0.75: every partial sum is exact, so y = beta
    exactly there); channel 1 = 0.5 + k 2^-20 for small integers k, variance ~1e-12, far below eps
    (x_hat ~ 1e-3); exact in float32 as well, so both dtypes see the same data."""
    x = np.empty((4, 2, 2, 2))
    x[:, 0] = 0.75
    x[:, 1] = 0.5 + 2.0 ** -20 * np.random.default_rng(4).integers(-2, 3, (4, 2, 2))
    got, want, bn = _batch_norm_case("2d", dtype, x)
    np.testing.assert_array_equal(got["y"][:, 0], np.full((4, 2, 2), bn.bias.data[0]))
    assert 1e-13 < x[:, 1].var() < 1e-11
    return got, want


def _layer_norm_constant_row(dtype):
    """A row of one repeated value: y is beta exactly there; the gradient stays finite."""
    x = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, -2.0, 0.5, 3.0]])
    r = np.random.default_rng(6)
    ln = nn.LayerNorm(4, dtype=dtype)
    ln.weight.data[...], ln.bias.data[...] = r.uniform(0.5, 2, 4), r.standard_normal(4)
    dy = r.standard_normal(x.shape).astype(dtype)
    xt = Tensor(x.astype(dtype), requires_grad=True)
    y = ln(xt)
    (y * Tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y.data[0], ln.bias.data)
    y_ref, dx_ref, *_ = _norm_formula(x.astype(F64), ln.weight.data.astype(F64), ln.bias.data.astype(F64),
                                      dy.astype(F64), (1,))
    return {"y": y.data, "dx": xt.grad.data}, {"y": y_ref, "dx": dx_ref}


def _single_class(dtype):
    z = Tensor(np.full((3, 1), 1e4, dtype), requires_grad=True)
    s, logp = F.softmax(z), F.log_softmax(z)
    loss = F.cross_entropy(z, np.zeros(3, np.int64))
    loss.backward()
    return ({"softmax": s.data, "log_softmax": logp.data, "loss": loss.data, "dz": z.grad.data},
            {"softmax": np.ones((3, 1)), "log_softmax": np.zeros((3, 1)), "loss": 0.0, "dz": np.zeros((3, 1))})


EDGES = {  # name: (case(dtype) -> (got, want)); tolerance per dtype below
    "log_softmax of logits ~1e4": _log_softmax_1e4,
    "logsumexp of logits ~1e4": _logsumexp_1e4,
    "softmax of logits ~1e4": _softmax_1e4,
    "cross_entropy with soft targets, logits ~1e4": _soft_targets_1e4,
    "BatchNorm1d, batch of 2, variance 0 and 1e-12": _bn_batch_of_two_constant_channel,
    "BatchNorm2d, a constant channel and variance 1e-12": _bn2d_constant_and_tiny_variance,
    "LayerNorm, a constant row": _layer_norm_constant_row,
    "softmax / log_softmax / cross_entropy of one class at 1e4": _single_class,
}
EDGE_RTOL = {F32: 2e-6, F64: 1e-12}


@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", EDGES)
def test_numerical_edges_are_finite_exact_and_silent_under_detect_anomaly(name, dtype):
    got, want = EDGES[name](dtype)
    with tg.detect_anomaly():  # raises AnomalyError on any NaN or Inf, forward or backward
        again, _ = EDGES[name](dtype)
    for k, v in got.items():
        assert v.dtype == dtype, k
        assert np.isfinite(v).all(), k
        np.testing.assert_array_equal(again[k], v, err_msg=f"{k}: detect_anomaly changed the result")
        # values element by element; gradients on the scale of their array (a batch of 2 makes dx a
        # difference of terms var / eps times larger than itself, exact only up to that scale)
        ref = np.asarray(want[k], F64)
        scale = max(float(np.abs(ref).max()), 1.0) if k.startswith("d") else 1.0
        np.testing.assert_allclose(v.astype(F64), ref, rtol=EDGE_RTOL[dtype], atol=EDGE_RTOL[dtype] * scale,
                                   err_msg=k)


# ------------------------------------------------------------------------------ detect_anomaly itself

def test_detect_anomaly_is_off_by_default_and_costs_nothing_when_off(monkeypatch):
    """Off: a NaN-producing op raises nothing, and neither the finiteness check nor the lookup of
    the user's line runs (patched here to record calls, and shown live inside detect_anomaly)."""
    assert tg.engine._State.anomaly is False
    calls: list[str] = []
    monkeypatch.setattr(tg.engine, "_check_finite", lambda *a, **k: calls.append("check"))
    monkeypatch.setattr(tg.engine, "_user_site", lambda: calls.append("site") or "here")
    x = Tensor(np.array([-1.0, 0.0, 4.0]), requires_grad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = x.log()
        y.sum().backward()
    assert calls == []
    assert not hasattr(y._ctx, "site")  # nothing recorded per op
    assert np.isnan(y.data[0]) and y.data[1] == -np.inf
    np.testing.assert_array_equal(x.grad.data, [-1.0, np.inf, 0.25])
    with tg.detect_anomaly():
        x.exp()
    assert calls == ["site", "check"]


def test_anomaly_names_the_line_that_created_the_op():
    x = Tensor(np.array([0.0, 4.0]), requires_grad=True)
    with tg.detect_anomaly():
        with np.errstate(invalid="ignore"), pytest.raises(tg.AnomalyError) as info:
            line = inspect.currentframe().f_lineno + 1
            (x - 1.0).log()
        assert str(info.value).endswith(f"{HERE}:{line}"), str(info.value)
        line = inspect.currentframe().f_lineno + 1
        y = x.sqrt()
        with np.errstate(divide="ignore", invalid="ignore"), pytest.raises(tg.AnomalyError) as info:
            (y * 0.0).sum().backward()  # the backward of the op made on `line`: 0 / (2 sqrt 0) is NaN
        assert str(info.value).endswith(f"{HERE}:{line}"), str(info.value)


def test_a_backward_anomaly_writes_nothing_frees_nothing_and_leaves_no_rule_behind():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    y = (x.sqrt() * 0.0).sum()
    with tg.detect_anomaly():
        with np.errstate(divide="ignore", invalid="ignore"), pytest.raises(tg.AnomalyError, match=r"Sqrt\.backward"):
            y.backward()
        assert x.grad is None
        with np.errstate(invalid="ignore"), pytest.raises(tg.AnomalyError) as info:
            Tensor(np.array([-1.0])).log()  # a forward op now is not "in Sqrt.backward"
        assert str(info.value).startswith("Log produced NaN"), str(info.value)
    with np.errstate(divide="ignore", invalid="ignore"):
        y.backward()  # the graph survived; outside detect_anomaly the NaN is the documented result
    np.testing.assert_array_equal(x.grad.data, [np.nan, 0.0])


def test_nested_detect_anomaly_no_grad_and_scope_restore_state_after_exceptions():
    state = tg.engine._State

    def modes():
        return state.anomaly, tg.is_grad_enabled(), tg.engine.current_scope(), state.rule

    outside = modes()
    assert outside == (False, True, (), None)
    with np.errstate(invalid="ignore"), pytest.raises(tg.AnomalyError):
        with tg.detect_anomaly(), tg.no_grad(), tg.scope("s"), tg.detect_anomaly():
            assert modes() == (True, False, ("s",), None)
            Tensor(np.array([-1.0])).log()
    assert modes() == outside
    anomaly = tg.detect_anomaly()  # one object, re-entered while active
    with anomaly, tg.no_grad():
        with pytest.raises(KeyError):
            with tg.enable_grad(), anomaly:
                assert modes()[:2] == (True, True)
                raise KeyError
        assert modes()[:2] == (True, False)
    assert modes() == outside

    @tg.detect_anomaly()
    def fails():
        assert state.anomaly
        raise ValueError

    with pytest.raises(ValueError):
        fails()
    assert modes() == outside


def test_empty_axes_give_empty_results_as_pytorch():
    """Not errors: softmax / log_softmax over an empty axis give empty arrays, logsumexp gives -inf,
    and maximum of two ndarrays is a Tensor (PyTorch's results)."""
    e = Tensor(np.zeros((2, 0)), requires_grad=True)
    assert e.softmax(-1).shape == (2, 0) and e.log_softmax(-1).shape == (2, 0)
    np.testing.assert_array_equal(e.logsumexp(-1).data, [-np.inf, -np.inf])
    m = tg.maximum(np.zeros(2), np.array([1.0, -1.0]))
    assert isinstance(m, Tensor) and m.data.tolist() == [1.0, 0.0]
