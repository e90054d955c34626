"""Constructors (full, eye, arange, zeros_like, ones_like, randint, multinomial) and Tensor.clip:
shapes, dtypes and values against NumPy with PyTorch's dtype rules, seeding, multinomial's
distribution, every error, clip's gradient; the torch parity tests at the end skip without torch."""
import math
import re

import numpy as np
import pytest
from conftest import GRAD_TOL, leaf

import tinygrad_bn as tg
from tinygrad_bn.check import gradcheck

# PyTorch's dtype for a fill value or an arange argument: the category of the number, never its width
TORCH_KIND = {"b": np.bool_, "i": np.int64, "u": np.int64, "f": np.float32, "c": np.complex64}


def torch_dtype(*numbers):
    """The dtype PyTorch infers from numbers: the highest category among them (bool < int < float < complex)."""
    kind = max((np.asarray(v).dtype.kind for v in numbers), key="buifc".index)
    return np.dtype(TORCH_KIND[kind])


# ------------------------------------------------------------------------------------------ full, eye
@pytest.mark.parametrize("value", [1.5, -2, True, 0.0, np.float64(2.5), np.int32(3), np.bool_(False), 1 + 2j])
@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4), 5, [1, 2, 1]])
def test_full_shape_dtype_value(value, shape):
    t = tg.full(shape, value)
    expected = np.full(shape, value, torch_dtype(value))
    assert t.shape == expected.shape and t.dtype == expected.dtype
    np.testing.assert_array_equal(t.data, expected)
    assert not t.requires_grad


def test_full_dtype_and_requires_grad():
    t = tg.full((2,), 7, dtype=np.float64, requires_grad=True)
    assert t.dtype == np.float64 and t.requires_grad
    np.testing.assert_array_equal(t.data, np.full(2, 7.0))
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        tg.full((2,), 3, requires_grad=True)  # an int64 fill, as PyTorch refuses
    with pytest.raises(TypeError, match="full: value must be a number"):
        tg.full((2,), "a")
    with pytest.raises(TypeError, match="full: value must be a number"):
        tg.full((2,), tg.tensor(1.0))


@pytest.mark.parametrize("n, m", [(3, None), (2, 4), (4, 2), (0, None), (2, 0), (1, 1)])
def test_eye(n, m):
    t = tg.eye(n, m)
    assert t.dtype == tg.tensor(1.0).dtype  # the default float
    np.testing.assert_array_equal(t.data, np.eye(n, m))
    assert tg.eye(n, m, dtype=np.int64).dtype == np.int64


@pytest.mark.parametrize("n, m", [(-1, None), (2, -1)])
def test_eye_negative_size_is_an_error(n, m):
    with pytest.raises(ValueError, match="eye: n and m must be >= 0"):
        tg.eye(n, m)


# ------------------------------------------------------------------------------------------ arange
ARANGE = [(5,), (0,), (1, 4), (-3, 3, 2), (5, 0, -1), (5, 5), (0, 1, 0.25), (0.0, 3), (0, 1, 0.1), (-3.3, 7.7, 0.37),
          (1, 2, 0.3), (2.5,), (True,), (np.int64(3),), (np.float64(3),), (10, -10, -3)]


@pytest.mark.parametrize("args", ARANGE)
def test_arange_values_and_dtype(args):
    t = tg.arange(*args)
    assert t.dtype == torch_dtype(*args, 1)  # step defaults to the int 1
    expected = np.arange(*args, dtype=np.float64)
    assert t.shape == expected.shape  # both have ceil((stop - start) / step) elements
    np.testing.assert_allclose(t.data, expected, rtol=1e-7, atol=1e-6)


def test_arange_dtype_argument_and_float_accuracy():
    assert tg.arange(3, dtype=np.float64).dtype == np.float64
    assert tg.arange(0.0, 3.0, dtype=np.int64).dtype == np.int64
    # start + i * step in float64: exact to rounding even far from 0, where NumPy's stepping drifts
    t = tg.arange(1e10, 1e10 + 1e5, 0.1, dtype=np.float64)
    exact = 1e10 + 0.1 * np.arange(t.shape[0], dtype=np.float64)
    np.testing.assert_array_equal(t.data, exact)


@pytest.mark.parametrize("args, message", [
    ((0, 5, 0), "step must be nonzero"), ((0.0, 1.0, 0.0), "step must be nonzero"),
    ((5, 0), "runs against step"), ((0, 5, -1), "runs against step"), ((0.0, -1.0, 0.5), "runs against step"),
    ((math.inf,), "bounds must be finite"), ((math.nan,), "bounds must be finite"), ((0, 1, math.nan), "finite"),
])
def test_arange_errors(args, message):
    with pytest.raises(ValueError, match=message):
        tg.arange(*args)


# ------------------------------------------------------------------------------------------ *_like
@pytest.mark.parametrize("like, value", [(tg.zeros_like, 0), (tg.ones_like, 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.bool_])
def test_like(like, value, dtype, rng):
    t = tg.Tensor(rng.standard_normal((2, 3, 1)).astype(dtype))
    out = like(t)
    assert out.shape == t.shape and out.dtype == t.dtype and not out.requires_grad
    np.testing.assert_array_equal(out.data, np.full(t.shape, value, dtype))
    assert like(t, dtype=np.int64).dtype == np.int64


def test_like_does_not_inherit_requires_grad(rng):
    x = leaf(rng, (3,))
    assert not tg.zeros_like(x).requires_grad and tg.zeros_like(x)._ctx is None
    assert tg.ones_like(x, requires_grad=True).requires_grad
    assert not np.shares_memory(tg.ones_like(x).data, x._data)


# ------------------------------------------------------------------------------------------ randint
@pytest.mark.parametrize("low, high, shape", [(0, 5, (2000,)), (-3, -1, (10, 20)), (7, 8, ()), (0, 2**62, (50,))])
def test_randint_range_dtype_shape(low, high, shape):
    t = tg.randint(low, high, shape, rng=np.random.default_rng(0))
    assert t.dtype == np.int64 and t.shape == np.empty(shape).shape
    assert (t.data >= low).all() and (t.data < high).all()
    if high - low <= 5:  # every value turns up, and only those
        assert set(np.unique(t.data)) == set(range(low, high))


def test_randint_seeding():
    tg.manual_seed(11)
    a = tg.randint(0, 100, (50,))
    tg.manual_seed(11)
    b = tg.randint(0, 100, (50,))
    np.testing.assert_array_equal(a.data, b.data)
    c = tg.randint(0, 100, (50,))  # the generator moved on
    assert not np.array_equal(b.data, c.data)
    d = tg.randint(0, 100, (50,), rng=np.random.default_rng(4))
    np.testing.assert_array_equal(d.data, np.random.default_rng(4).integers(0, 100, 50))


@pytest.mark.parametrize("low, high", [(5, 5), (5, 2)])
def test_randint_empty_range_is_an_error(low, high):
    with pytest.raises(ValueError, match="low must be less than high"):
        tg.randint(low, high, (3,))


# ------------------------------------------------------------------------------------------ multinomial
def test_multinomial_shapes_and_dtype():
    w1, w2 = tg.tensor([1.0, 2.0, 3.0, 4.0]), tg.tensor(np.ones((3, 5)))
    for w, k, repl, shape in [(w1, 2, False, (2,)), (w1, 9, True, (9,)), (w2, 5, False, (3, 5)), (w2, 7, True, (3, 7)),
                              (tg.tensor(np.ones((0, 4))), 2, False, (0, 2))]:
        out = tg.multinomial(w, k, replacement=repl, rng=np.random.default_rng(0))
        assert out.shape == shape and out.dtype == np.int64 and not out.requires_grad
        assert ((out.data >= 0) & (out.data < w.shape[-1])).all()


@pytest.mark.parametrize("replacement", [False, True])
def test_multinomial_seeding(replacement):
    w = tg.tensor(np.arange(1.0, 9.0).reshape(2, 4))
    tg.manual_seed(5)
    a = tg.multinomial(w, 3, replacement)
    tg.manual_seed(5)
    b = tg.multinomial(w, 3, replacement)
    np.testing.assert_array_equal(a.data, b.data)
    c, d = (tg.multinomial(w, 3, replacement, rng=np.random.default_rng(9)) for _ in range(2))
    np.testing.assert_array_equal(c.data, d.data)
    # the weights need not be normalized: scaling them changes no draw
    e = tg.multinomial(w * 1e-3, 3, replacement, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(c.data, e.data)


def within_noise(counts, p, n):
    """Frequencies of n draws against probabilities p, within 5 binomial standard deviations
    (plus a count's granularity): honest sampling fails this with probability below 1e-5 per cell."""
    return np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1 / n)


def test_multinomial_with_replacement_frequencies():
    w = np.array([[1.0, 0.0, 3.0, 6.0], [5.0, 5.0, 0.0, 0.0]])
    n = 20000
    out = tg.multinomial(tg.tensor(w), n, replacement=True, rng=np.random.default_rng(1)).data
    for row, wr in zip(out, w):
        counts = np.bincount(row, minlength=4)
        assert counts[wr == 0].sum() == 0  # a zero weight is never drawn
        assert within_noise(counts, wr / wr.sum(), n), counts


def test_multinomial_without_replacement_distribution():
    """First and second draws of many rows against the exact sequential law:
    P(1st = i) = p_i, P(2nd = j) = sum_{i != j} p_i p_j / (1 - p_i)."""
    p = np.array([0.1, 0.2, 0.3, 0.4])
    n = 20000
    out = tg.multinomial(tg.tensor(np.tile(p, (n, 1))), 3, rng=np.random.default_rng(2)).data
    assert all(len(set(r)) == 3 for r in out[:500])  # no repeats in a row
    second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(4) if i != j) for j in range(4)])
    assert within_noise(np.bincount(out[:, 0], minlength=4), p, n)
    assert within_noise(np.bincount(out[:, 1], minlength=4), second, n)


def test_multinomial_without_replacement_zero_weights_come_last():
    """As PyTorch: once the positive weights are drawn, the zero-weight categories follow (here in
    index order), instead of an error."""
    w = tg.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1e-30]])
    for seed in range(20):
        out = tg.multinomial(w, 4, rng=np.random.default_rng(seed)).data
        assert set(out[0, :2]) == {1, 3} and list(out[0, 2:]) == [0, 2]
        assert list(out[1]) == [3, 0, 1, 2]


MULTINOMIAL_ERRORS = [  # probs, num_samples, replacement, error, message
    ([1.0, -1.0], 1, False, ValueError, "inf, nan or a negative weight"),
    ([1.0, math.inf], 1, True, ValueError, "inf, nan or a negative weight"),
    ([math.nan, 1.0], 1, False, ValueError, "inf, nan or a negative weight"),
    ([0.0, 0.0], 1, True, ValueError, "row 0 of probs sums to 0"),
    ([[1.0, 1.0], [0.0, 0.0]], 1, False, ValueError, "row 1 of probs sums to 0"),
    (np.ones((2, 0)), 1, True, ValueError, "sums to 0"),
    ([1.0, 1.0], 3, False, ValueError, "cannot draw 3 samples from 2 categories without replacement"),
    (np.ones(0), 1, False, ValueError, "cannot draw 1 samples from 0 categories"),
    ([1.0, 1.0], 0, True, ValueError, "num_samples must be positive"),
    ([1.0, 1.0], -1, True, ValueError, "num_samples must be positive"),
    ([1.0, 1.0], 1.5, True, TypeError, "num_samples must be an int"),
    ([1.0, 1.0], True, True, TypeError, "num_samples must be an int"),
    (np.ones((2, 2, 2)), 1, True, tg.ShapeError, "1-D or 2-D, got shape (2, 2, 2)"),
    (1.0, 1, True, tg.ShapeError, "1-D or 2-D, got shape ()"),
    ([1, 2], 1, True, TypeError, "must be floating point, got int64"),
]


@pytest.mark.parametrize("probs, k, replacement, error, message", MULTINOMIAL_ERRORS)
def test_multinomial_errors(probs, k, replacement, error, message):
    state = tg.creation.default_rng().bit_generator.state
    with pytest.raises(error, match=re.escape(message)):
        tg.multinomial(tg.tensor(probs), k, replacement)
    assert tg.creation.default_rng().bit_generator.state == state  # bad input draws nothing


# ------------------------------------------------------------------------------------------ clip
CLIP = [(-0.5, 0.5), (None, 0.3), (-0.2, None), (0.7, -0.7), (0.0, 0.0)]  # min > max and min == max too


@pytest.mark.parametrize("lo, hi", CLIP)
def test_clip_values_match_numpy(lo, hi, rng):
    x = leaf(rng, (4, 5))
    # np.clip is max(min(x, hi), lo): with lo > hi it gives lo; PyTorch (and tg) give hi, i.e. min(max(x, lo), hi)
    ref = x.data if lo is None else np.maximum(x.data, lo)
    ref = ref if hi is None else np.minimum(ref, hi)
    np.testing.assert_array_equal(x.clip(lo, hi).data, ref)
    if lo is not None and hi is not None and lo <= hi:
        np.testing.assert_array_equal(x.clip(lo, hi).data, np.clip(x.data, lo, hi))


def test_clip_min_above_max_is_max_everywhere(rng):
    x = leaf(rng, (6,))
    out = x.clip(1.0, -1.0)
    np.testing.assert_array_equal(out.data, np.full(6, -1.0))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.zeros(6))  # as PyTorch: no element is inside [min, max]


@pytest.mark.parametrize("lo, hi", CLIP)
def test_clip_gradcheck(lo, hi, rng):
    a = rng.standard_normal((3, 4))
    for bound in (lo, hi):  # away from the kinks: differentiable there
        a[np.abs(a - (bound or 0.0)) < 1e-3] += 0.01
    x = tg.Tensor(a, requires_grad=True)
    assert gradcheck(lambda a: a.clip(lo, hi), [x], **GRAD_TOL)


def test_clip_tensor_bounds_gradcheck(rng):
    x = leaf(rng, (3, 4))
    lo, hi = (tg.Tensor(rng.standard_normal(s) + d, requires_grad=True) for s, d in [((4,), -0.5), ((3, 1), 0.5)])
    assert gradcheck(lambda a, b, c: a.clip(b, c), [x, lo, hi], **GRAD_TOL)
    out = x.clip(lo, hi)
    np.testing.assert_array_equal(out.data, np.minimum(np.maximum(x.data, lo.data), hi.data))


def test_clip_gradients_at_ties_nan_and_crossed_bounds_are_pytorchs():
    """As torch.clamp: x keeps the whole gradient at a tie with a bound (unlike tg.maximum, which splits
    it), a bound gets it only where it wins, NaN stays NaN with gradient 0, and min > max gives max."""
    x = tg.Tensor([0.0, 1.0, 1.5, 2.0, 3.0, math.nan], dtype=np.float64, requires_grad=True)
    lo, hi = (tg.Tensor(v, dtype=np.float64, requires_grad=True) for v in (1.0, 2.0))
    y = x.clip(lo, hi)
    np.testing.assert_array_equal(y.data, [1.0, 1.0, 1.5, 2.0, 2.0, math.nan])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    assert lo.grad.item() == 1.0 and hi.grad.item() == 1.0
    x2 = tg.Tensor([5.0, 3.0], dtype=np.float64, requires_grad=True)
    lo2, hi2 = (tg.Tensor(v, dtype=np.float64, requires_grad=True) for v in (6.0, 4.0))
    x2.clip(lo2, hi2).sum().backward()
    assert x2.grad.data.tolist() == [0.0, 0.0] and lo2.grad.item() == 0.0 and hi2.grad.item() == 2.0


def test_clip_dtypes_and_nan():
    i = tg.tensor([1, 2, 3])
    assert i.clip(2).dtype == np.int64 and i.clip(1.5).dtype == tg.tensor(1.0).dtype  # a float bound raises the kind
    np.testing.assert_array_equal(i.clip(1.5).data, [1.5, 2.0, 3.0])
    f = tg.tensor([1.0, math.nan, -5.0])
    assert f.clip(0.0, 2.0).dtype == np.float32
    np.testing.assert_array_equal(f.clip(0.0, 2.0).data, np.array([1.0, math.nan, 0.0], np.float32))
    np.testing.assert_array_equal(tg.tensor([1.0, 2.0]).clip(math.nan).data, [math.nan, math.nan])


def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="at least one of min and max"):
        tg.tensor([1.0]).clip()


# ------------------------------------------------------------------------------------------ torch parity
def test_torch_parity_dtypes_and_values():
    torch = pytest.importorskip("torch")
    for value in [1.5, -2, True, np.float64(2.5), np.int32(3), 1 + 2j]:
        assert str(tg.full((2,), value).dtype) == str(torch.full((2,), value).dtype).removeprefix("torch.")
    for args in ARANGE:
        t, ref = tg.arange(*args), torch.arange(*args)
        assert str(t.dtype) == str(ref.dtype).removeprefix("torch.") and t.shape == tuple(ref.shape)
        # PyTorch's float32 arange rounds in float32 on CPU: within an ulp of ours
        np.testing.assert_allclose(t.data, ref.numpy(), rtol=2e-7, atol=1e-7)
    for n, m in [(3, None), (2, 4), (0, None)]:
        np.testing.assert_array_equal(tg.eye(n, m).data, torch.eye(n, *(() if m is None else (m,))).numpy())
    t = torch.ones(2, 3, dtype=torch.int32)
    assert str(torch.zeros_like(t).dtype) == "torch." + str(tg.zeros_like(tg.tensor(t.numpy())).dtype)


def test_torch_parity_errors():
    """Every error case raises both here and in PyTorch (a RuntimeError or TypeError there)."""
    torch = pytest.importorskip("torch")

    def both_raise(ours, theirs, *args):
        with pytest.raises((ValueError, TypeError)):
            ours(*args)
        with pytest.raises((RuntimeError, TypeError)):
            theirs(*args)

    for args in [(0, 5, 0), (5, 0), (math.inf,), (math.nan,)]:
        both_raise(tg.arange, torch.arange, *args)
    both_raise(tg.randint, torch.randint, 5, 5, (3,))
    both_raise(tg.eye, torch.eye, -1)
    both_raise(lambda: tg.tensor([1.0]).clip(), lambda: torch.tensor([1.0]).clamp())
    for p, k, r, *_ in MULTINOMIAL_ERRORS:
        both_raise(lambda *a: tg.multinomial(tg.tensor(a[0]), *a[1:]),
                   lambda *a: torch.multinomial(torch.tensor(a[0]), *a[1:]), p, k, r)


def test_torch_parity_clip(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 5))
    for lo, hi in CLIP:
        ours = tg.Tensor(x, requires_grad=True)
        out = ours.clip(lo, hi)
        out.backward(tg.Tensor(np.arange(20.0).reshape(4, 5)))
        ref = torch.tensor(x, requires_grad=True)
        ref_out = ref.clamp(lo, hi)
        ref_out.backward(torch.arange(20.0, dtype=torch.float64).reshape(4, 5))
        np.testing.assert_array_equal(out.data, ref_out.detach().numpy())
        np.testing.assert_array_equal(ours.grad.data, ref.grad.numpy())  # no ties: the same gradient
    for lo, hi in [(np.array([0.0, -1.0]), np.array(0.5)), (np.array([[1.0], [-1.0]]), np.array([0.0, 2.0]))]:
        y = np.array([[0.3, -0.8], [1.2, 0.1]])
        np.testing.assert_array_equal(tg.Tensor(y).clip(tg.Tensor(lo), tg.Tensor(hi)).data,
                                      torch.tensor(y).clamp(torch.tensor(lo), torch.tensor(hi)).numpy())
    for v, lo in [([1, 2, 3], 2), ([1, 2, 3], 1.5)]:
        assert str(tg.tensor(v).clip(lo).dtype) == str(torch.tensor(v).clamp(lo).dtype).removeprefix("torch.")


def test_torch_clamp_ties_and_nan():
    torch = pytest.importorskip("torch")
    x = torch.tensor([0.0, 1.0, 1.5, 2.0, 3.0, math.nan], requires_grad=True)
    lo, hi = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    torch.clamp(x, lo, hi).sum().backward()
    ours, olo, ohi = (tg.Tensor(t.detach().numpy(), requires_grad=True) for t in (x, lo, hi))
    ours.clip(olo, ohi).sum().backward()
    np.testing.assert_array_equal(ours.grad.data, x.grad.numpy())
    assert olo.grad.item() == lo.grad.item() and ohi.grad.item() == hi.grad.item()


def test_torch_multinomial_zero_weights_order():
    """PyTorch too draws the zero-weight categories last rather than raising; their order there is its
    top-k's (not index order), so only the sets are compared."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    w = [[0.0, 2.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1e-30, 0.0]]
    ref, ours = torch.multinomial(torch.tensor(w), 5).numpy(), tg.multinomial(tg.tensor(w), 5).data
    for r, o, positives in zip(ref, ours, (2, 1)):
        assert set(r[:positives]) == set(o[:positives]) and set(r[positives:]) == set(o[positives:])
