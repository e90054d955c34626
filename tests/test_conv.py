"""F.conv2d and F.max_pool2d (composites of primitives) and nn.Conv2d / nn.MaxPool2d: values against a
direct loop over the definition and against tg.analytic's cs231n formulas; gradients by gradcheck and
gradgradcheck, against the analytic backward (rtol 1e-12), which is itself checked against finite
differences; the modules; every bad input, refused before any op runs. (PyTorch: test_conv_torch.py.)"""
import itertools

import numpy as np
import pytest
from conftest import GRAD_TOL, assert_close, leaf

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.check import gradcheck, gradgradcheck, numerical_grad
from tinygrad_bn.engine import Function

# (x shape, weight shape, stride, padding, bias): strides 1, 2 and a pair, padding 0, 1 and a pair,
# square and non-square kernels, a kernel as large as the padded input, with and without bias
CONV = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, True),
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, False),
    ((2, 2, 6, 5), (3, 2, 2, 3), 2, 1, True),
    ((1, 2, 7, 6), (2, 2, 3, 2), (2, 1), (0, 1), True),
    ((2, 1, 4, 4), (2, 1, 1, 1), 2, 0, False),
    ((1, 2, 3, 4), (3, 2, 5, 4), 1, (1, 0), True),  # the kernel covers the whole padded input: 1 x 1 out
]
CONV_IDS = [f"x{x}-w{w}-s{s}-p{p}-{'bias' if b else 'nobias'}" for x, w, s, p, b in CONV]
# (x shape, kernel_size, stride): non-overlapping, overlapping (stride < kernel), leftover rows, pairs
POOL = [((2, 3, 4, 4), 2, None), ((2, 2, 5, 5), 3, 1), ((1, 2, 7, 6), (3, 2), 2), ((2, 1, 5, 7), (2, 3), (1, 2)),
        ((1, 1, 3, 3), 3, None)]
POOL_IDS = [f"x{x}-k{k}-s{s}" for x, k, s in POOL]


def pair(v):
    return (v, v) if isinstance(v, int) else v


def conv_loops(x, w, b, stride, padding):
    """The definition, one element at a time: out[n,o,p,q] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n,c,p*sh+i,q*sw+j]."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    xp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw))
    xp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]] = x
    n_out, C, KH, KW = w.shape
    out = np.zeros((x.shape[0], n_out, (xp.shape[2] - KH) // sh + 1, (xp.shape[3] - KW) // sw + 1))
    for n, o, p, q in itertools.product(*map(range, out.shape)):
        out[n, o, p, q] = (0.0 if b is None else b[o]) + sum(
            w[o, c, i, j] * xp[n, c, p * sh + i, q * sw + j] for c in range(C) for i in range(KH) for j in range(KW))
    return out


def pool_loops(x, kernel_size, stride):
    (kh, kw) = pair(kernel_size)
    (sh, sw) = (kh, kw) if stride is None else pair(stride)
    out = np.zeros(x.shape[:2] + ((x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1))
    for n, c, p, q in itertools.product(*map(range, out.shape)):
        out[n, c, p, q] = max(x[n, c, p * sh + i, q * sw + j] for i in range(kh) for j in range(kw))
    return out


def conv_inputs(rng, xs, ws, has_bias):
    return leaf(rng, xs, name="x"), leaf(rng, ws, name="w"), leaf(rng, ws[:1], name="b") if has_bias else None


# ------------------------------------------------------------------------------------------- conv2d values

@pytest.mark.parametrize("xs, ws, stride, padding, has_bias", CONV, ids=CONV_IDS)
def test_conv2d_forward(rng, xs, ws, stride, padding, has_bias):
    x, w, b = conv_inputs(rng, xs, ws, has_bias)
    out = F.conv2d(x, w, b, stride, padding)
    bias = None if b is None else b.data
    assert out.dtype == np.float64 and out.requires_grad
    assert_close(out, conv_loops(x.data, w.data, bias, stride, padding), rtol=1e-12, atol=1e-14)
    ref, _ = analytic.conv2d_forward(x.data, w.data, bias, stride, padding)
    assert_close(out, ref, rtol=1e-12, atol=1e-14)


def test_conv2d_unbatched_and_empty_batch(rng):
    """As PyTorch: (C, H, W) input gives (O, Ho, Wo), and an empty batch an empty output."""
    x, w, b = leaf(rng, (2, 5, 4)), leaf(rng, (3, 2, 3, 3)), leaf(rng, (3,))
    out = F.conv2d(x, w, b, padding=1)
    assert out.shape == (3, 5, 4)
    assert_close(out, F.conv2d(x.reshape(1, 2, 5, 4), w, b, padding=1)[0], rtol=0)
    assert F.conv2d(tg.Tensor(np.zeros((0, 2, 5, 4))), w, b).shape == (0, 3, 3, 2)


def test_conv2d_float32(rng):
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    out = F.conv2d(tg.Tensor(x.astype(np.float32)), tg.Tensor(w.astype(np.float32)), stride=2, padding=1)
    assert out.dtype == np.float32
    assert_close(out, analytic.conv2d_forward(x.astype(np.float32).astype(np.float64),
                                              w.astype(np.float32).astype(np.float64), None, 2, 1)[0], rtol=1e-5,
                 atol=1e-5)


# --------------------------------------------------------------------------------------- conv2d gradients

@pytest.mark.parametrize("xs, ws, stride, padding, has_bias", CONV, ids=CONV_IDS)
def test_conv2d_gradcheck(rng, xs, ws, stride, padding, has_bias):
    inputs = [t for t in conv_inputs(rng, xs, ws, has_bias) if t is not None]
    assert gradcheck(lambda x, w, *b: F.conv2d(x, w, *b, stride=stride, padding=padding), inputs, **GRAD_TOL)


@pytest.mark.parametrize("xs, ws, stride, padding, has_bias", [CONV[1], CONV[2], CONV[3]], ids=CONV_IDS[1:4])
def test_conv2d_gradgradcheck(rng, xs, ws, stride, padding, has_bias):
    inputs = [t for t in conv_inputs(rng, xs, ws, has_bias) if t is not None]
    assert gradgradcheck(lambda x, w, *b: F.conv2d(x, w, *b, stride=stride, padding=padding), inputs, **GRAD_TOL)


@pytest.mark.parametrize("xs, ws, stride, padding, has_bias",
                         CONV + [((4, 5, 9, 8), (6, 5, 3, 3), 2, 1, True)], ids=CONV_IDS + ["bigger"])
def test_conv2d_autograd_equals_analytic_backward(rng, xs, ws, stride, padding, has_bias):
    x, w, b = conv_inputs(rng, xs, ws, has_bias)
    out = F.conv2d(x, w, b, stride, padding)
    dout = rng.standard_normal(out.shape)
    out.backward(tg.Tensor(dout))
    bias = None if b is None else b.data
    dx, dw, db = analytic.conv2d_backward(dout, analytic.conv2d_forward(x.data, w.data, bias, stride, padding)[1])
    assert_close(x.grad, dx, atol=1e-14)
    assert_close(w.grad, dw, atol=1e-14)
    if has_bias:
        assert_close(b.grad, db, atol=1e-14)
    else:
        assert db is None


@pytest.mark.parametrize("xs, ws, stride, padding, has_bias", CONV, ids=CONV_IDS)
def test_conv2d_analytic_backward_against_finite_differences(rng, xs, ws, stride, padding, has_bias):
    """The hand formula against central differences of the hand forward: no autograd on either side."""
    x, w, b = (t.data for t in conv_inputs(rng, xs, ws, True))
    b = b if has_bias else None
    out, cache = analytic.conv2d_forward(x, w, b, stride, padding)
    dout = rng.standard_normal(out.shape)
    got = analytic.conv2d_backward(dout, cache)

    def f(*args):
        return tg.Tensor(analytic.conv2d_forward(*(a.data for a in args[:2]), args[2].data if has_bias else None,
                                                 stride, padding)[0])
    args = [tg.Tensor(v) for v in (x, w, b) if v is not None]
    for g, n in zip(got, numerical_grad(f, args + [tg.Tensor(np.zeros(1))] * (not has_bias), grad_output=dout)):
        if g is not None:
            assert_close(g, n, rtol=1e-7, atol=1e-8)


# --------------------------------------------------------------------------------------------- max pool

@pytest.mark.parametrize("xs, k, stride", POOL, ids=POOL_IDS)
def test_max_pool2d_forward(rng, xs, k, stride):
    x = leaf(rng, xs)
    out = F.max_pool2d(x, k, stride)
    assert out.dtype == np.float64 and out.requires_grad
    assert_close(out, pool_loops(x.data, k, stride), rtol=0)
    assert_close(out, analytic.maxpool_forward(x.data, k, stride)[0], rtol=0)


def test_max_pool2d_unbatched_and_integers(rng):
    x = rng.integers(-50, 50, (2, 6, 5))
    out = F.max_pool2d(tg.Tensor(x), 2)
    assert out.shape == (2, 3, 2) and out.dtype == x.dtype
    np.testing.assert_array_equal(out.data, pool_loops(x[None], 2, None)[0])


@pytest.mark.parametrize("xs, k, stride", POOL, ids=POOL_IDS)
def test_max_pool2d_gradcheck(rng, xs, k, stride):
    assert gradcheck(lambda a: F.max_pool2d(a, k, stride), [leaf(rng, xs)], **GRAD_TOL)


@pytest.mark.parametrize("xs, k, stride", POOL, ids=POOL_IDS)
def test_max_pool2d_gradgradcheck(rng, xs, k, stride):
    assert gradgradcheck(lambda a: F.max_pool2d(a, k, stride), [leaf(rng, xs)], **GRAD_TOL)


@pytest.mark.parametrize("xs, k, stride", POOL + [((4, 6, 10, 9), 3, 2)], ids=POOL_IDS + ["bigger"])
def test_max_pool2d_autograd_equals_analytic_backward(rng, xs, k, stride):
    x = leaf(rng, xs)
    out = F.max_pool2d(x, k, stride)
    dout = rng.standard_normal(out.shape)
    out.backward(tg.Tensor(dout))
    assert_close(x.grad, analytic.maxpool_backward(dout, analytic.maxpool_forward(x.data, k, stride)[1]),
                 atol=1e-15)


@pytest.mark.parametrize("xs, k, stride", POOL, ids=POOL_IDS)
def test_maxpool_analytic_backward_against_finite_differences(rng, xs, k, stride):
    x = rng.standard_normal(xs)
    out, cache = analytic.maxpool_forward(x, k, stride)
    dout = rng.standard_normal(out.shape)
    (num,) = numerical_grad(lambda a: tg.Tensor(analytic.maxpool_forward(a.data, k, stride)[0]), [tg.Tensor(x)],
                            grad_output=dout)
    assert_close(analytic.maxpool_backward(dout, cache), num, rtol=1e-7, atol=1e-8)


def test_max_pool2d_ties_split_evenly():
    """A window whose maximum appears k times gives each 1/k of its gradient (Tensor.max's rule; PyTorch
    gives it all to one), in autograd and in the hand formula alike; overlapping windows add up."""
    x = tg.Tensor(np.array([[[[1.0, 3.0, 3.0], [3.0, 0.0, 2.0], [1.0, 2.0, 2.0]]]]), requires_grad=True)
    out = F.max_pool2d(x, 2, 1)  # windows [[1,3],[3,0]] (two 3s), [[3,3],[0,2]] (two 3s),
    dout = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])  # [[3,0],[1,2]] (one 3), [[0,2],[2,2]] (three 2s)
    out.backward(tg.Tensor(dout))
    want = np.array([[[[0, 0.5 + 5, 5], [0.5 + 100, 0, 1000 / 3], [0, 1000 / 3, 1000 / 3]]]])
    assert_close(x.grad, want, rtol=1e-15)
    assert_close(analytic.maxpool_backward(dout, analytic.maxpool_forward(x.data, 2, 1)[1]), want, rtol=1e-15)


def test_conv_pool_network_gradcheck(rng):
    """conv -> relu -> pool -> conv, the composites chained, gradchecked end to end."""
    x, w1, b1, w2 = leaf(rng, (2, 2, 6, 6)), leaf(rng, (3, 2, 3, 3)), leaf(rng, (3,)), leaf(rng, (2, 3, 2, 2))

    def f(x, w1, b1, w2):
        return F.conv2d(F.max_pool2d(F.conv2d(x, w1, b1, padding=1).relu(), 2), w2, stride=1)
    assert gradcheck(f, [x, w1, b1, w2], **GRAD_TOL)


# ----------------------------------------------------------------------------------------------- modules

def test_conv2d_module():
    m = nn.Conv2d(3, 5, (3, 2), stride=2, padding=1, rng=np.random.default_rng(0))
    assert m.weight.shape == (5, 3, 3, 2) and m.bias.shape == (5,)
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32
    assert (m.kernel_size, m.stride, m.padding) == ((3, 2), (2, 2), (1, 1))
    assert [k for k, _ in m.named_parameters()] == ["weight", "bias"]
    assert list(m.state_dict()) == ["weight", "bias"]
    bound = 1 / np.sqrt(3 * 3 * 2)  # PyTorch's kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for p in (m.weight, m.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.5 * bound
    big = nn.Conv2d(64, 64, 3, rng=np.random.default_rng(0)).weight.data
    assert np.abs(big).max() <= 1 / 24 and abs(big.std() - 1 / 24 / np.sqrt(3)) < 1e-3  # U(-a, a) has std a/sqrt(3)
    x = tg.Tensor(np.random.default_rng(1).standard_normal((2, 3, 7, 6)).astype(np.float32))
    out = m(x)
    assert out.shape == (2, 5, 4, 4) and out.dtype == np.float32
    assert_close(out, F.conv2d(x, m.weight, m.bias, 2, 1), rtol=0)
    out.sum().backward()
    assert m.weight.grad.shape == m.weight.shape and m.bias.grad.shape == m.bias.shape
    assert repr(m) == "Conv2d(3, 5, kernel_size=(3, 2), stride=(2, 2), padding=(1, 1))"


def test_conv2d_module_options():
    m = nn.Conv2d(2, 4, 3, bias=False, dtype=np.float64, rng=np.random.default_rng(0))
    assert m.bias is None and m.weight.dtype == np.float64 and list(m.state_dict()) == ["weight"]
    assert "bias=False" in repr(m)
    same = nn.Conv2d(2, 4, 3, bias=False, dtype=np.float64, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(m.weight.data, same.weight.data)  # seeded: reproducible
    other = nn.Conv2d(2, 4, 3, bias=False, dtype=np.float64)
    other.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(other.weight.data, m.weight.data)
    seq = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    assert seq(tg.Tensor(np.zeros((5, 1, 4, 4), np.float32))).shape == (5, 3)


def test_max_pool2d_module(rng):
    m = nn.MaxPool2d(2)
    assert (m.kernel_size, m.stride) == (2, 2) and m.parameters() == [] and m.state_dict() == {}
    assert repr(m) == "MaxPool2d(kernel_size=2, stride=2)"
    x = leaf(rng, (2, 3, 5, 4))
    assert_close(m(x), F.max_pool2d(x, 2), rtol=0)
    m = nn.MaxPool2d((3, 2), stride=1)
    assert m(x).shape == (2, 3, 3, 3) and repr(m) == "MaxPool2d(kernel_size=(3, 2), stride=1)"


# ------------------------------------------------------------------------------------------------ errors

X4, W4 = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
T = tg.Tensor
CONV_BAD = [  # (x, weight, bias, kwargs, error, message)
    (np.zeros((3, 5)), W4, None, {}, tg.ShapeError, r"conv2d: expected input \(N, C, H, W\) or .*got \(3, 5\)"),
    (np.zeros((1, 2, 3, 5, 5)), W4, None, {}, tg.ShapeError, r"expected input .*got \(1, 2, 3, 5, 5\)"),
    (X4, np.zeros((4, 3, 3)), None, {}, tg.ShapeError, r"weight must be 4-D .*got \(4, 3, 3\)"),
    (np.zeros((2, 2, 5, 5)), W4, None, {}, tg.ShapeError,
     r"input \(2, 2, 5, 5\) has 2 channels in axis 1, but weight \(4, 3, 3, 3\) expects 3"),
    (X4, W4, np.zeros(3), {}, tg.ShapeError, r"bias must have shape \(4,\).*got \(3,\)"),
    (X4, W4, np.zeros((4, 1)), {}, tg.ShapeError, r"bias must have shape \(4,\).*got \(4, 1\)"),
    (X4, np.zeros((4, 3, 6, 3)), None, {}, tg.ShapeError,
     r"kernel \(6, 3\) is larger than the input \(5, 5\) \(input \(2, 3, 5, 5\)"),
    (X4, np.zeros((4, 3, 8, 3)), None, {"padding": 1}, tg.ShapeError,
     r"kernel \(8, 3\) is larger than the padded input \(7, 7\)"),
    (X4, np.zeros((4, 3, 0, 3)), None, {}, tg.ShapeError, r"weight \(4, 3, 0, 3\) has an empty kernel"),
    (X4, W4, None, {"stride": 0}, tg.ShapeError, "conv2d: stride must be positive, got 0"),
    (X4, W4, None, {"stride": (1, -1)}, tg.ShapeError, r"stride must be positive, got \(1, -1\)"),
    (X4, W4, None, {"padding": -1}, tg.ShapeError, "conv2d: padding must be non-negative, got -1"),
    (X4, W4, None, {"stride": 1.0}, TypeError, "stride must be an int or a pair of ints, got float 1.0"),
    (X4, W4, None, {"stride": (1, 1, 1)}, TypeError, r"stride must be an int or a pair of ints, got tuple"),
    (X4, W4, None, {"padding": (1, 1.0)}, TypeError, r"padding must be an int or a pair of ints, got tuple \(1, 1.0\)"),
    (X4, W4, None, {"padding": True}, TypeError, "padding must be an int or a pair of ints, got bool"),
    (X4, W4, None, {"padding": "same"}, TypeError, "padding must be an int or a pair of ints, got str"),
    (X4.astype(np.int64), W4, None, {}, NotImplementedError, "conv2d: input of dtype int64 is not supported"),
    (X4, W4.astype(np.float32), None, {}, TypeError, "conv2d: input is float64 but weight is float32"),
    (X4, W4, np.zeros(4, np.float32), {}, TypeError, "conv2d: input is float64 but bias is float32"),
]
POOL_BAD = [  # (x, kernel_size, stride, error, message)
    (np.zeros((5, 5)), 2, None, tg.ShapeError, r"max_pool2d: expected input \(N, C, H, W\) .*got \(5, 5\)"),
    (np.zeros((1, 1, 1, 5, 5)), 2, None, tg.ShapeError, r"got \(1, 1, 1, 5, 5\)"),
    (np.zeros((1, 1, 5, 2)), 3, None, tg.ShapeError, r"max_pool2d: kernel \(3, 3\) is larger than the input \(5, 2\)"),
    (np.zeros((1, 1, 5, 5)), 0, None, tg.ShapeError, "kernel_size must be positive, got 0"),
    (np.zeros((1, 1, 5, 5)), 2, 0, tg.ShapeError, "max_pool2d: stride must be positive, got 0"),
    (np.zeros((1, 1, 5, 5)), 2, (1, -2), tg.ShapeError, r"stride must be positive, got \(1, -2\)"),
    (np.zeros((1, 1, 5, 5)), 2.0, None, TypeError, "kernel_size must be an int or a pair of ints, got float"),
    (np.zeros((1, 1, 5, 5)), [2], None, TypeError, "kernel_size must be an int or a pair of ints, got list"),
]


@pytest.fixture
def no_op_runs(monkeypatch):
    """Any op applied from here on fails the test: a bad call must raise before computing anything."""
    def refuse(cls, *args, **kwargs):
        raise AssertionError(f"{cls.__name__} ran before the error")
    monkeypatch.setattr(Function, "apply", classmethod(refuse))


@pytest.mark.parametrize("x, w, b, kwargs, err, match", CONV_BAD, ids=[m for *_, m in CONV_BAD])
def test_conv2d_errors(no_op_runs, x, w, b, kwargs, err, match):
    args = [T(x, requires_grad=x.dtype.kind == "f"), T(w, requires_grad=True)]
    with pytest.raises(err, match=match):
        F.conv2d(*args, None if b is None else T(b, requires_grad=True), **kwargs)
    assert all(a.grad is None for a in args)


@pytest.mark.parametrize("x, k, stride, err, match", POOL_BAD, ids=[m for *_, m in POOL_BAD])
def test_max_pool2d_errors(no_op_runs, x, k, stride, err, match):
    with pytest.raises(err, match=match):
        F.max_pool2d(T(x, requires_grad=True), k, stride)


def test_errors_are_shape_errors_for_both_conventions():
    """ShapeError is a ValueError (NumPy code) and a RuntimeError (PyTorch raises RuntimeError here)."""
    for e in (ValueError, RuntimeError):
        with pytest.raises(e):
            F.conv2d(T(X4), T(W4), stride=0)
        with pytest.raises(e):
            F.max_pool2d(T(np.zeros((1, 1, 2, 2))), 3)


def test_conv2d_needs_tensors():
    with pytest.raises(TypeError, match="conv2d: x must be a Tensor, got ndarray"):
        F.conv2d(X4, T(W4))
    with pytest.raises(TypeError, match="conv2d: bias must be a Tensor, got ndarray"):
        F.conv2d(T(X4), T(W4), np.zeros(4))
    with pytest.raises(TypeError, match="max_pool2d: x must be a Tensor"):
        F.max_pool2d(X4, 2)


@pytest.mark.parametrize("args, err, match", [
    ((3, 4, 0), tg.ShapeError, "Conv2d: kernel_size must be positive, got 0"),
    ((3, 4, 3, 0), tg.ShapeError, "Conv2d: stride must be positive, got 0"),
    ((3, 4, 3, 1, -1), tg.ShapeError, "Conv2d: padding must be non-negative, got -1"),
    ((3, 4, 2.5), TypeError, "Conv2d: kernel_size must be an int or a pair of ints, got float"),
    ((-3, 4, 3), ValueError, "Conv2d: in_channels must be >= 0, got -3"),
    ((3, 4.0, 3), TypeError, "Conv2d: out_channels must be an int, got float"),
])
def test_conv2d_module_errors(args, err, match):
    with pytest.raises(err, match=match):
        nn.Conv2d(*args)


def test_module_errors():
    with pytest.raises(tg.ShapeError, match="MaxPool2d: kernel_size must be positive, got 0"):
        nn.MaxPool2d(0)
    with pytest.raises(tg.ShapeError, match="MaxPool2d: stride must be positive, got -1"):
        nn.MaxPool2d(2, -1)
    m = nn.Conv2d(3, 4, 3)
    with pytest.raises(tg.ShapeError, match=r"input \(1, 2, 5, 5\) has 2 channels"):
        m(tg.Tensor(np.zeros((1, 2, 5, 5), np.float32)))
