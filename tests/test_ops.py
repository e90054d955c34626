"""ONE table of ops drives the forward check (against NumPy), gradcheck and gradgradcheck
(against float64 central differences), every broadcasting pattern, and a test of each backward
rule on its own (called directly, so a failure points at the rule, not the engine)."""
import math

import numpy as np
import pytest
from conftest import GRAD_TOL, leaf

import tinygrad_bn as tg
from tinygrad_bn.check import gradcheck, gradgradcheck, numerical_grad


def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# name: (tinygrad_bn function, NumPy reference, input shapes, value domain of each input)
UNARY = {
    "neg": (lambda a: -a, np.negative, "any"),
    "exp": (lambda a: a.exp(), np.exp, "any"),
    "log": (lambda a: a.log(), np.log, "pos"),
    "sqrt": (lambda a: a.sqrt(), np.sqrt, "pos"),
    "abs": (lambda a: a.abs(), np.abs, "nonzero"),
    "relu": (lambda a: a.relu(), lambda a: np.maximum(a, 0), "nonzero"),
    "tanh": (lambda a: a.tanh(), np.tanh, "any"),
    "sigmoid": (lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), "any"),
    "square": (lambda a: a.square(), np.square, "any"),
    "pow_int": (lambda a: a ** 3, lambda a: a ** 3, "any"),
    "pow_neg": (lambda a: a ** -2, lambda a: a ** -2.0, "nonzero"),
    "pow_half": (lambda a: a ** 0.5, np.sqrt, "pos"),
    "rpow": (lambda a: 2.0 ** a, lambda a: 2.0 ** a, "any"),
    "rsub": (lambda a: 1.5 - a, lambda a: 1.5 - a, "any"),
    "rdiv": (lambda a: 1.5 / a, lambda a: 1.5 / a, "nonzero"),
    "sub_scalar": (lambda a: a - 2, lambda a: a - 2, "any"),
    "radd_ndarray": (lambda a: np.full(a.shape[-1], 0.5) + a, lambda a: 0.5 + a, "any"),
}

BINARY = {
    "add": (lambda a, b: a + b, np.add, ("any", "any")),
    "sub": (lambda a, b: a - b, np.subtract, ("any", "any")),
    "mul": (lambda a, b: a * b, np.multiply, ("any", "any")),
    "div": (lambda a, b: a / b, np.divide, ("any", "nonzero")),
    "pow": (lambda a, b: a ** b, np.power, ("pos", "any")),
    "maximum": (lambda a, b: tg.maximum(a, b), np.maximum, ("any", "any")),
}

# every broadcasting pattern: same shape, scalar, row, column, leading dims, size-1 dims on both sides
BROADCASTS = [((3, 4), (3, 4)), ((3, 4), ()), ((), (3, 4)), ((3, 4), (4,)), ((3, 4), (3, 1)), ((3, 1), (1, 4)),
              ((2, 3, 4), (3, 4)), ((2, 1, 4), (1, 3, 1)), ((1, 4), (2, 3, 4)), ((4,), (2, 3, 1))]

AXES = [None, 0, -1, 1, (0, 2), (-1, 0), (0, 1, 2)]
REDUCE = {
    "sum": (lambda a, ax, k: a.sum(ax, k), lambda a, ax, k: np.sum(a, ax, keepdims=k)),
    "mean": (lambda a, ax, k: a.mean(ax, k), lambda a, ax, k: np.mean(a, ax, keepdims=k)),
    "max": (lambda a, ax, k: a.max(ax, k), lambda a, ax, k: np.max(a, ax, keepdims=k)),
    "min": (lambda a, ax, k: a.min(ax, k), lambda a, ax, k: np.min(a, ax, keepdims=k)),
    "var": (lambda a, ax, k: a.var(ax, k), lambda a, ax, k: np.var(a, ax, keepdims=k)),
    "var_unbiased": (lambda a, ax, k: a.var(ax, k, correction=1), lambda a, ax, k: np.var(a, ax, keepdims=k, ddof=1)),
    "std": (lambda a, ax, k: a.std(ax, k), lambda a, ax, k: np.std(a, ax, keepdims=k)),
    "logsumexp": (lambda a, ax, k: a.logsumexp(ax, k), np_logsumexp),
}

ix = np.array([0, 2, 2, 1])  # a repeated index: its gradient must accumulate
MOVEMENT = {  # name: (function, NumPy reference), all on an input of shape (2, 3, 4)
    "reshape": (lambda a: a.reshape(4, 6), lambda a: a.reshape(4, 6)),
    "reshape_tuple_infer": (lambda a: a.reshape((6, -1)), lambda a: a.reshape(6, -1)),
    "transpose_perm": (lambda a: a.transpose(2, 0, 1), lambda a: a.transpose(2, 0, 1)),
    "transpose_reverse": (lambda a: a.transpose(), lambda a: a.transpose()),
    "T": (lambda a: a.T, lambda a: a.T),
    "swapaxes": (lambda a: a.swapaxes(0, -1), lambda a: a.swapaxes(0, -1)),
    "broadcast_to": (lambda a: a.broadcast_to((5, 2, 3, 4)), lambda a: np.broadcast_to(a, (5, 2, 3, 4))),
    "broadcast_size1": (lambda a: a[:, :1].broadcast_to(2, 3, 4), lambda a: np.broadcast_to(a[:, :1], (2, 3, 4))),
    "flatten": (lambda a: a.flatten(), lambda a: a.reshape(-1)),
    "flatten_from_1": (lambda a: a.flatten(1), lambda a: a.reshape(2, -1)),
    "unsqueeze_squeeze": (lambda a: a.unsqueeze(1).squeeze(1) * a.unsqueeze(-1).squeeze(), lambda a: a * a),
    "index_int": (lambda a: a[1], lambda a: a[1]),
    "index_negative": (lambda a: a[-1, -2], lambda a: a[-1, -2]),
    "index_slice_step": (lambda a: a[:, ::2, 1:], lambda a: a[:, ::2, 1:]),
    "index_none_ellipsis": (lambda a: a[None, ..., 2], lambda a: a[None, ..., 2]),
    "index_bool_mask": (lambda a: a[a.data > 0], lambda a: a[a > 0]),
    "index_int_array_repeats": (lambda a: a[:, ix % 3], lambda a: a[:, ix % 3]),
    "index_pairs": (lambda a: a[1][np.arange(3), ix[:3]], lambda a: a[1][np.arange(3), ix[:3]]),
    "index_list": (lambda a: a[[1, 1, 0]], lambda a: a[[1, 1, 0]]),
    "index_tensor": (lambda a: a[tg.Tensor(np.array([1, 0, 1]))], lambda a: a[np.array([1, 0, 1])]),
}

MATMUL = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
          ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4,))]

COMPOSITE = {
    "softmax_last": (lambda a: a.softmax(), lambda a: np_softmax(a, -1)),
    "softmax_axis0": (lambda a: a.softmax(axis=0), lambda a: np_softmax(a, 0)),
    "log_softmax": (lambda a: a.log_softmax(1), lambda a: np.log(np_softmax(a, 1))),
}


def check_op(f, ref, inputs, second_order=True):
    out = f(*inputs)
    expected = ref(*[x.data for x in inputs])
    assert out.shape == np.shape(expected)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-14)
    assert gradcheck(f, inputs, **GRAD_TOL)
    if second_order:
        assert gradgradcheck(f, inputs, **GRAD_TOL)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("name", UNARY)
def test_unary(name, shape, rng):
    f, ref, domain = UNARY[name]
    if name == "radd_ndarray" and shape == ():
        pytest.skip("needs a last axis")
    check_op(f, ref, [leaf(rng, shape, domain)])


@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_broadcasting(name, shapes, rng):
    f, ref, domains = BINARY[name]
    check_op(f, ref, [leaf(rng, s, d) for s, d in zip(shapes, domains)])


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", REDUCE)
def test_reduce(name, axis, keepdims, rng):
    f, ref = REDUCE[name]
    check_op(lambda a: f(a, axis, keepdims), lambda a: ref(a, axis, keepdims), [leaf(rng, (2, 3, 4))])


@pytest.mark.parametrize("name", MOVEMENT)
def test_movement(name, rng):
    f, ref = MOVEMENT[name]
    check_op(f, ref, [leaf(rng, (2, 3, 4))])


@pytest.mark.parametrize("shapes", MATMUL, ids=str)
def test_matmul(shapes, rng):
    check_op(lambda a, b: a @ b, np.matmul, [leaf(rng, s) for s in shapes])


@pytest.mark.parametrize("name", COMPOSITE)
def test_composite(name, rng):
    f, ref = COMPOSITE[name]
    check_op(f, ref, [leaf(rng, (3, 5))])


# -------------------------------------------------- each backward rule on its own, called directly

RULES = [  # (op expression, input domains): the rule under test is the last op the expression applies
    (lambda a: -a, ["any"]), (lambda a: a.exp(), ["any"]), (lambda a: a.log(), ["pos"]),
    (lambda a: a.sqrt(), ["pos"]), (lambda a: a.abs(), ["nonzero"]), (lambda a: a.relu(), ["nonzero"]),
    (lambda a: a.tanh(), ["any"]), (lambda a: a.sigmoid(), ["any"]), (lambda a, b: a + b, ["any", "any"]),
    (lambda a, b: a - b, ["any", "any"]), (lambda a, b: a * b, ["any", "any"]),
    (lambda a, b: a / b, ["any", "nonzero"]), (lambda a, b: a ** b, ["pos", "any"]),
    (lambda a, b: a.maximum(b), ["any", "any"]), (lambda a: a.sum(1), ["any"]), (lambda a: a.max(0), ["any"]),
    (lambda a: a.reshape(6, 2), ["any"]), (lambda a: a.transpose(1, 0), ["any"]),
    (lambda a: a[np.array([0, 0, 2])], ["any"]), (lambda a, b: a @ b, ["any", "any"], [(3, 4), (4, 2)]),
]


@pytest.mark.parametrize("case", range(len(RULES)))
def test_backward_rule_alone(case, rng):
    """out._ctx.backward(v, out) must equal the vector-Jacobian product v^T J from finite differences."""
    f, domains, *shapes = RULES[case]
    inputs = [leaf(rng, s, d) for s, d in zip(shapes[0] if shapes else [(3, 4)] * 2, domains)]
    out = f(*inputs)
    v = rng.standard_normal(out.shape)
    with tg.no_grad():
        got = out._ctx.backward(tg.Tensor(v), out)
    got = got if isinstance(got, tuple) else (got,)
    expected = numerical_grad(f, inputs, grad_output=v)
    assert len(got) == len(inputs)
    for x, g, e in zip(inputs, got, expected):
        assert g.shape == x.shape
        np.testing.assert_allclose(g.data, e, rtol=1e-7, atol=1e-8, err_msg=f"{type(out._ctx).__name__}.backward")


# ---------------------------------------------------------------------------- fine print of rules

def test_max_ties_share_the_gradient_evenly():
    x = tg.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 0.5, 0.5], [1, 0, 0]])


def test_maximum_tie_splits_the_gradient():
    a = tg.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = tg.Tensor(np.array([1.0, 5.0, 0.0]), requires_grad=True)
    tg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [0.5, 0, 1])
    np.testing.assert_array_equal(b.grad.data, [0.5, 1, 0])


def test_relu_and_abs_have_zero_gradient_at_zero():
    x = tg.Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    (x.relu() + x.abs()).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [-1, 0, 2])


def test_repeated_indices_accumulate():
    x = tg.Tensor(np.arange(4.0), requires_grad=True)
    x[np.array([0, 0, 3, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3, 0, 0, 1])


def test_logsumexp_and_softmax_are_stable_for_huge_logits():
    x = tg.Tensor(np.array([[1e4, 0.0, -1e4], [-np.inf, 0.0, 1.0]]), requires_grad=True)
    lse = x.logsumexp(axis=1)
    assert np.isfinite(lse.data).all() and lse.data[0] == 1e4
    x.log_softmax(1).sum().backward()
    assert np.isfinite(x.grad.data).all()
    np.testing.assert_allclose(x.softmax(1).data.sum(1), 1.0, rtol=1e-15)


def test_sigmoid_is_accurate_in_the_tails():
    x = tg.Tensor(np.array([-800.0, -40.0, 0.0, 40.0, 800.0]))
    np.testing.assert_allclose(x.sigmoid().data, [0.0, np.exp(-40.0) / (1 + np.exp(-40.0)), 0.5, 1.0, 1.0],
                               rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_keep_float_dtype_in_forward_and_backward(dtype, rng):
    a = tg.Tensor(rng.standard_normal((3, 4)).astype(dtype), requires_grad=True)
    b = tg.Tensor(rng.standard_normal((4,)).astype(dtype), requires_grad=True)
    out = ((a * 2 + 1.5) / 3.0 - b ** 2).exp().log_softmax(1).sum() * 0.5
    assert out.dtype == dtype
    out.backward()
    assert a.grad.dtype == dtype and b.grad.dtype == dtype


def test_cast_carries_the_gradient_back_in_the_leaf_dtype(rng):
    x = tg.Tensor(rng.standard_normal(5), requires_grad=True)
    y = x.cast(np.float32)
    assert y.dtype == np.float32 and x.float().dtype == np.float32 and y.double().dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.data, 2 * x.data.astype(np.float32), rtol=1e-6)


def test_pow_at_zero_follows_pytorch():
    """d(a^b)/db = a^b log a is 0 at a = 0 for b >= 0, and d(x^0)/dx = 0 even at x = 0 (not nan)."""
    a = tg.Tensor(np.array([0.0, 0.0, 2.0]), requires_grad=True)
    b = tg.Tensor(np.array([2.0, 0.0, 3.0]), requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [0.0, 0.0, 12.0])
    np.testing.assert_array_equal(b.grad.data, [0.0, 0.0, 8 * np.log(2.0)])


@pytest.mark.parametrize("shape, to", [((1, 64), (72, 64)), ((72, 1), (72, 64)), ((64,), (2, 36, 64)),
                                       ((1, 1), (72, 64)), ((1, 4), (5, 4))])
def test_a_broadcast_times_a_number_scales_each_distinct_value_once(shape, to, rng):
    """Mul computes a big (> 4096 elements) stride-0 broadcast times a number on the distinct values
    and broadcasts the result: values, dtype and gradients must be those of the full product."""
    x = leaf(rng, shape)
    y = x.broadcast_to(to) * 2.5
    np.testing.assert_array_equal(y.data, np.broadcast_to(x.data, to) * 2.5)
    assert y.shape == to and y.dtype == x.dtype
    assert (0 in y.data.strides) == (y.size > 4096)  # the product was not materialized
    assert gradcheck(lambda t: t.broadcast_to(to) * 2.5 * tg.Tensor(np.arange(math.prod(to)).reshape(to) + 1.0), [x])
    assert gradgradcheck(lambda t: (t.broadcast_to(to) * 2.5) * t.broadcast_to(to), [x])


def test_a_weight_used_through_its_transpose_gets_its_gradient_in_its_own_layout(rng):
    """x @ w.T (Linear): dW = G^T x, computed so that it comes out C-ordered like w (an F-ordered
    gradient made the optimizer's update w -= lr g a strided pass 14x slower)."""
    x, w, g = leaf(rng, (5, 3)), leaf(rng, (4, 3)), rng.standard_normal((5, 4))
    (x @ w.T * tg.Tensor(g)).sum().backward()
    np.testing.assert_allclose(w.grad.data, g.T @ x.data, rtol=1e-13)
    np.testing.assert_allclose(x.grad.data, g @ w.data, rtol=1e-13)
    assert w.grad.data.flags.c_contiguous
    assert gradcheck(lambda a, b: a @ b.T, [leaf(rng, (2, 5, 3)), leaf(rng, (4, 3))])  # batched a, transposed b
    assert gradgradcheck(lambda a, b: a @ b.T, [leaf(rng, (5, 3)), leaf(rng, (4, 3))])
