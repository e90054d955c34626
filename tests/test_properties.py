"""Property tests (hypothesis): element-wise binary ops over broadcast-compatible shapes,
reductions over every kind of axis, and random compositions of ops. Forward values are compared
with NumPy; gradients with tg.check.gradcheck and with independent central differences."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_bn as tg
from tinygrad_bn import Tensor
from tinygrad_bn.check import gradcheck, gradgradcheck

ATOL, RTOL = 1e-7, 1e-6
# derandomize: the examples are a fixed function of the test, so a run is reproducible
PROPS = dict(deadline=None, derandomize=True, database=None)

seeds = st.integers(0, 2**32 - 1)


def _leaf(a) -> Tensor:
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


# ----------------------------------------------------------------------- binary element-wise

def _uniform(rng, shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape)


def _away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)


def _grid(offset):
    """Values k + offset + noise: two grids with offsets 0.25 and 0.75 never come within 0.3,
    so maximum is never at (or within a finite-difference step of) a tie."""
    return lambda rng, shape: rng.integers(-3, 4, shape) + offset + rng.uniform(-0.1, 0.1, shape)


# name -> (tinygrad op, NumPy op, sampler for a, sampler for b)
BINARY = {
    "add": (lambda a, b: a + b, np.add, _uniform, _uniform),
    "sub": (lambda a, b: a - b, np.subtract, _uniform, _uniform),
    "mul": (lambda a, b: a * b, np.multiply, _uniform, _uniform),
    "div": (lambda a, b: a / b, np.divide, _uniform, _away_from_zero),
    "maximum": (tg.maximum, np.maximum, _grid(0.25), _grid(0.75)),
    "maximum_method": (lambda a, b: a.maximum(b), np.maximum, _grid(0.75), _grid(0.25)),
    "pow": (lambda a, b: a ** b, np.power, lambda r, s: r.uniform(0.5, 2.0, s), _uniform),
}

broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=100, **PROPS)
@given(shapes=broadcast_pairs, seed=seeds)
def test_binary_forward_and_gradcheck(name, shapes, seed):
    op, ref, sample_a, sample_b = BINARY[name]
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    av, bv = sample_a(rng, sa), sample_b(rng, sb)
    a, b = _leaf(av), _leaf(bv)
    out = op(a, b)
    assert out.shape == out_shape == np.broadcast_shapes(sa, sb)
    assert out.dtype == np.float64
    assert np.array_equal(out.data, ref(av, bv))
    assert gradcheck(op, [a, b], atol=ATOL, rtol=RTOL)


# name -> (x op c, c op x, NumPy op, sampler for the tensor, strategy for the number)
NUMBER_OPERAND = {
    "add": (lambda x, c: x + c, lambda x, c: c + x, np.add, _uniform, st.floats(-3, 3)),
    "sub": (lambda x, c: x - c, lambda x, c: c - x, np.subtract, _uniform, st.floats(-3, 3)),
    "mul": (lambda x, c: x * c, lambda x, c: c * x, np.multiply, _uniform, st.floats(-3, 3)),
    "div": (lambda x, c: x / c, lambda x, c: c / x, np.divide, _away_from_zero,
            st.sampled_from([-1.0, 1.0]).flatmap(lambda s: st.floats(0.5, 3).map(lambda v: s * v))),
    "pow": (lambda x, c: x ** c, lambda x, c: c ** x, np.power, lambda r, s: r.uniform(0.5, 2.0, s),
            st.floats(0.5, 2.5)),
    "maximum": (lambda x, c: tg.maximum(x, c), lambda x, c: tg.maximum(c, x), np.maximum, _grid(0.25),
                st.integers(-3, 3).map(lambda k: k + 0.75)),
}


@pytest.mark.parametrize("name", sorted(NUMBER_OPERAND))
@settings(max_examples=60, **PROPS)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3), seed=seeds, data=st.data())
def test_python_number_operand_on_either_side(name, shape, seed, data):
    right, left, ref, sample, numbers = NUMBER_OPERAND[name]
    c = data.draw(numbers, label="c")
    xv = sample(np.random.default_rng(seed), shape)
    x = _leaf(xv)
    for op, expected in ((right, ref(xv, c)), (left, ref(c, xv))):
        out = op(x, c)
        assert out.shape == shape and out.dtype == np.float64
        assert np.array_equal(out.data, expected)
        assert gradcheck(lambda t, op=op: op(t, c), [x], atol=ATOL, rtol=RTOL)


@settings(max_examples=60, **PROPS)
@given(shapes=broadcast_pairs, seed=seeds)
def test_maximum_ties_split_the_gradient_evenly(shapes, seed):
    # as PyTorch: where a == b each side gets half of the upstream gradient
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    av, bv = rng.integers(-1, 2, sa).astype(np.float64), rng.integers(-1, 2, sb).astype(np.float64)
    a, b = _leaf(av), _leaf(bv)
    w = rng.standard_normal(out_shape)
    tg.maximum(a, b).backward(Tensor(w))
    A, B = np.broadcast_to(av, out_shape), np.broadcast_to(bv, out_shape)
    share_a = (A > B) + 0.5 * (A == B)
    unbroadcast = lambda g, s: g.sum(axis=tuple(range(g.ndim - len(s)))).sum(  # noqa: E731
        axis=tuple(i for i, n in enumerate(s) if n == 1), keepdims=True)
    np.testing.assert_allclose(a.grad.data, unbroadcast(w * share_a, sa), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(b.grad.data, unbroadcast(w * (1 - share_a), sb), rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------------------- reductions

def _np_logsumexp(x, axis, keepdims):
    """log sum exp x = m + log sum exp(x - m), m the max (finite here)."""
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=tuple(range(x.ndim)) if axis is None else axis)


def _distinct(rng, shape):
    """All values at least 0.2 apart, so max has no ties (or near-ties within a finite-difference step)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.3 + rng.uniform(-0.05, 0.05, n)).reshape(shape)


# name -> (tinygrad, NumPy, sampler)
REDUCTIONS = {
    "sum": (lambda t, ax, kd: t.sum(axis=ax, keepdims=kd), np.sum, lambda r, s: r.standard_normal(s)),
    "max": (lambda t, ax, kd: t.max(axis=ax, keepdims=kd), np.max, _distinct),
    "mean": (lambda t, ax, kd: t.mean(axis=ax, keepdims=kd), np.mean, lambda r, s: r.standard_normal(s)),
    "var": (lambda t, ax, kd: t.var(axis=ax, keepdims=kd), np.var, lambda r, s: r.standard_normal(s)),
    "logsumexp": (lambda t, ax, kd: t.logsumexp(axis=ax, keepdims=kd), _np_logsumexp,
                  lambda r, s: r.standard_normal(s) * 2),
}


@st.composite
def shape_and_axis(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3))
    ndim = len(shape)
    choices = [st.none(), hnp.valid_tuple_axes(ndim)]  # tuples: negative, unordered, empty
    if ndim:
        choices.append(st.integers(-ndim, ndim - 1))
    return shape, draw(st.one_of(*choices)), draw(st.booleans())


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@settings(max_examples=100, **PROPS)
@given(case=shape_and_axis(), seed=seeds)
def test_reduction_forward_and_gradcheck(name, case, seed):
    op, ref, sample = REDUCTIONS[name]
    shape, axis, keepdims = case
    xv = sample(np.random.default_rng(seed), shape)
    x = _leaf(xv)
    out = op(x, axis, keepdims)
    expected = ref(xv, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected) and out.dtype == np.float64
    np.testing.assert_allclose(out.data, expected, rtol=1e-13, atol=1e-14)
    assert gradcheck(lambda t: op(t, axis, keepdims), [x], atol=ATOL, rtol=RTOL)


@settings(max_examples=60, **PROPS)
@given(case=shape_and_axis(), seed=seeds)
def test_max_ties_share_the_gradient_evenly(case, seed):
    # as PyTorch's amax / max(): k tied maxima get 1/k of the upstream gradient each
    shape, axis, keepdims = case
    rng = np.random.default_rng(seed)
    xv = rng.integers(0, 3, shape).astype(np.float64)  # few distinct values: many ties
    x = _leaf(xv)
    out = x.max(axis=axis, keepdims=keepdims)
    w = rng.standard_normal(out.shape)
    out.backward(Tensor(w))
    hit = xv == np.max(xv, axis=axis, keepdims=True)
    share = hit / hit.sum(axis=axis, keepdims=True)
    w_kept = np.reshape(w, np.max(xv, axis=axis, keepdims=True).shape)
    np.testing.assert_allclose(x.grad.data, share * w_kept, rtol=1e-14, atol=1e-15)


@settings(max_examples=60, **PROPS)
@given(case=shape_and_axis(), seed=seeds, correction=st.integers(0, 2))
def test_var_correction_matches_numpy_ddof(case, seed, correction):
    shape, axis, keepdims = case
    n = int(np.prod([shape[a] for a in range(len(shape))] if axis is None else
                    [shape[a] for a in np.atleast_1d(axis).astype(int)]))
    assume(n > correction)
    xv = np.random.default_rng(seed).standard_normal(shape)
    x = _leaf(xv)
    out = x.var(axis=axis, keepdims=keepdims, correction=correction)
    np.testing.assert_allclose(out.data, np.var(xv, axis=axis, keepdims=keepdims, ddof=correction),
                               rtol=1e-13, atol=1e-14)
    assert gradcheck(lambda t: t.var(axis=axis, keepdims=keepdims, correction=correction), [x], atol=ATOL, rtol=RTOL)


@settings(max_examples=60, **PROPS)
@given(case=shape_and_axis(), seed=seeds, offset=st.sampled_from([-800.0, 0.0, 800.0]))
def test_logsumexp_is_stable_for_large_values(case, seed, offset):
    shape, axis, keepdims = case
    xv = np.random.default_rng(seed).standard_normal(shape) + offset
    out = Tensor(xv).logsumexp(axis=axis, keepdims=keepdims)
    assert np.all(np.isfinite(out.data))
    np.testing.assert_allclose(out.data, _np_logsumexp(xv, axis, keepdims), rtol=1e-13, atol=1e-12)


# --------------------------------------------------------------------------- compositions
# Each op is a pair (Tensor version, NumPy version) acting on t of shape (r, c), with the
# leaves y (r, c) and z (c,) and a fixed index array idx (r,) with repeats; shapes are kept.

UNARY = {
    "tanh": (lambda t, e: t.tanh(), lambda t, e: np.tanh(t)),
    "sigmoid": (lambda t, e: t.sigmoid(), lambda t, e: 1 / (1 + np.exp(-t))),
    "neg": (lambda t, e: -t, lambda t, e: -t),
    "exp": (lambda t, e: t.exp(), lambda t, e: np.exp(t)),
    "square": (lambda t, e: t * t, lambda t, e: t * t),
    "log1p_sq": (lambda t, e: (t * t + 1.0).log(), lambda t, e: np.log(t * t + 1.0)),
    "sqrt1p_sq": (lambda t, e: (t * t + 1.0).sqrt(), lambda t, e: np.sqrt(t * t + 1.0)),
    "pow": (lambda t, e: (t * t + 0.5) ** 1.5, lambda t, e: (t * t + 0.5) ** 1.5),
    "softmax": (lambda t, e: t.softmax(axis=-1),
                lambda t, e: np.exp(t - t.max(-1, keepdims=True)) / np.exp(t - t.max(-1, keepdims=True)).sum(
                    -1, keepdims=True)),
    "log_softmax": (lambda t, e: t.log_softmax(axis=0), lambda t, e: t - _np_logsumexp(t, 0, True)),
    "center": (lambda t, e: t - t.mean(axis=0, keepdims=True), lambda t, e: t - t.mean(0, keepdims=True)),
    "standardize": (lambda t, e: (t - t.mean(axis=1, keepdims=True)) / (t.var(axis=1, keepdims=True) + 1.0).sqrt(),
                    lambda t, e: (t - t.mean(1, keepdims=True)) / np.sqrt(t.var(1, keepdims=True) + 1.0)),
    "flip": (lambda t, e: t[::-1], lambda t, e: t[::-1]),
    "gather_rows": (lambda t, e: t[e["idx"]], lambda t, e: t[e["idx"]]),
    "transpose_twice": (lambda t, e: t.T.reshape(t.shape[1], t.shape[0]).swapaxes(0, 1),
                        lambda t, e: t.T.swapaxes(0, 1)),
}
BINARY_WITH_LEAVES = {
    "add_y": (lambda t, e: t + e["y"], lambda t, e: t + e["y"]),
    "sub_y": (lambda t, e: e["y"] - t, lambda t, e: e["y"] - t),
    "mul_y": (lambda t, e: t * e["y"], lambda t, e: t * e["y"]),
    "div_y": (lambda t, e: t / (e["y"] * e["y"] + 1.0), lambda t, e: t / (e["y"] * e["y"] + 1.0)),
    "mul_z": (lambda t, e: t * e["z"], lambda t, e: t * e["z"]),
    "pow_y": (lambda t, e: (t * t + 1.0) ** e["y"], lambda t, e: (t * t + 1.0) ** e["y"]),
    "matmul_y": (lambda t, e: t @ (e["y"].T @ e["y"]) * 0.25, lambda t, e: t @ (e["y"].T @ e["y"]) * 0.25),
    "add_row_sum": (lambda t, e: t + e["z"] * t.sum(axis=0), lambda t, e: t + e["z"] * t.sum(axis=0)),
}
OPS = {**UNARY, **BINARY_WITH_LEAVES}


def _five_point_diff(f, arrays, w, h=1e-4):
    """d sum(f * w) / d arrays by the fourth-order central stencil
    (8 (f(+h) - f(-h)) - (f(+2h) - f(-2h))) / 12h: truncation O(h^4), roundoff ~1e-12 |f|."""
    grads = []
    for i, a in enumerate(arrays):
        g = np.zeros_like(a)
        for j in range(a.size):
            def at(step, i=i, j=j):
                moved = [b.copy() for b in arrays]
                moved[i].flat[j] += step
                return np.sum(f(*moved) * w)
            g.flat[j] = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
        grads.append(g)
    return grads


@settings(max_examples=500, **PROPS)
@given(r=st.integers(1, 3), c=st.integers(1, 4), seed=seeds,
       names=st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=5))
def test_random_composition_matches_numpy_and_central_differences(r, c, seed, names):
    rng = np.random.default_rng(seed)
    xv, yv, zv = rng.uniform(-1, 1, (r, c)), rng.uniform(-1, 1, (r, c)), rng.uniform(-1, 1, c)
    idx = rng.integers(0, r, r)
    w = rng.standard_normal((r, c))

    def run(which, x, y, z):
        env = {"y": y, "z": z, "idx": idx}
        t = x
        for name in names:
            t = OPS[name][which](t, env)
        return t

    def np_f(x, y, z):
        return run(1, x, y, z)

    expected = np_f(xv, yv, zv)
    assume(np.all(np.isfinite(expected)) and np.abs(expected).max() < 50)

    x, y, z = _leaf(xv), _leaf(yv), _leaf(zv)
    out = run(0, x, y, z)
    assert out.shape == (r, c) and out.dtype == np.float64
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-13)

    grads = tg.grad(out, [x, y, z], grad_outputs=Tensor(w), allow_unused=True)
    numeric = _five_point_diff(np_f, [xv, yv, zv], w)
    for g, n, label in zip(grads, numeric, "xyz"):
        got = np.zeros_like(n) if g is None else g.data
        assert g is None or g.shape == n.shape
        np.testing.assert_allclose(got, n, rtol=RTOL, atol=ATOL, err_msg=f"d/d{label} of {names}")


@settings(max_examples=200, **PROPS)
@given(r=st.integers(1, 3), c=st.integers(1, 3), seed=seeds,
       names=st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=4))
def test_random_composition_passes_gradgradcheck(r, c, seed, names):
    rng = np.random.default_rng(seed)
    xv, yv, zv = rng.uniform(-1, 1, (r, c)), rng.uniform(-1, 1, (r, c)), rng.uniform(-1, 1, c)
    idx = rng.integers(0, r, r)

    def f(x, y, z):
        env = {"y": y, "z": z, "idx": idx}
        t = x
        for name in names:
            t = OPS[name][0](t, env)
        return t

    with tg.no_grad():
        value = f(Tensor(xv), Tensor(yv), Tensor(zv)).data
    assume(np.all(np.isfinite(value)) and np.abs(value).max() < 20)
    assert gradgradcheck(f, [_leaf(xv), _leaf(yv), _leaf(zv)], atol=ATOL, rtol=RTOL)
