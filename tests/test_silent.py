"""Issue 11: no silently wrong result. Each test here failed on the main it was written against
(a wrong value, a NaN, a half-updated state, or no error) and names the item it pins."""
from __future__ import annotations

import array

import numpy as np
import pytest

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn import Tensor

# ------------------------------------------------------------------ float32 normalization of a constant row

@pytest.mark.parametrize("value", [1000.1, -3.7e4, 0.3])
def test_float32_norms_of_a_constant_row_are_exactly_zero_as_pytorch(value):
    """The mean is accumulated in float64 (PyTorch's CPU kernels do), so a constant row has
    mu == its value, xc == 0 and x_hat == 0; a float32 mean was off by an ulp of the value,
    and x_hat = ulp / sqrt(eps) came out as large as 0.3."""
    x = np.full((4, 7), value, np.float32)
    assert np.array_equal(F.layer_norm(Tensor(x), 7).data, np.zeros_like(x))
    assert np.array_equal(F.batch_norm(Tensor(x), None, None, training=True).data, np.zeros_like(x))


def test_the_precise_float32_mean_is_taken_only_where_the_plain_one_could_show(rng):
    """The shifted mean costs a full pass: it is built only when the float32 sum's rounding could
    move x_hat by 1e-5 (a spread tiny beside the mean), so ordinary activations keep mean(x)."""
    ordinary = Tensor((rng.standard_normal((256, 16)) * 2 + 0.5).astype(np.float32), requires_grad=True)
    offset = Tensor((rng.standard_normal((256, 16)) * 0.01 + 1e3).astype(np.float32), requires_grad=True)
    stages = F.standardize(ordinary, (0,), 1e-5)
    assert type(stages["mu"]._ctx).__name__ == "Div"  # sum / m
    assert type(F.standardize(offset, (0,), 1e-5)["mu"]._ctx).__name__ == "Add"  # c + mean(x - c)
    assert type(F.standardize(ordinary.double(), (0,), 1e-5)["mu"]._ctx).__name__ == "Div"  # float64: never


def test_float32_batch_norm_matches_a_float64_evaluation_to_float32_round_off(rng):
    x = (rng.standard_normal((64, 5)) * 0.01 + 1e3).astype(np.float32)  # a small spread far from 0
    got = F.batch_norm(Tensor(x), None, None, training=True).data
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    # what is left: mu rounded to float32 moves xc by up to half an ulp of 1e3, so x_hat by that / std
    # (0.0029 here; a float32-accumulated mean was 0.0085 off)
    bound = np.spacing(np.float32(1e3)) / 2 / np.sqrt(x64.var(0) + 1e-5) * 1.05
    assert got.dtype == np.float32
    assert np.all(np.abs(got - want) <= bound + 1e-6)


# ------------------------------------------------------------------ 1. writes through a view of a held array

VIEWS = {"x[0:2]": lambda x: x[0:2], "x.reshape(3, 1)": lambda x: x.reshape(3, 1), "x.T": lambda x: x.T}


@pytest.mark.parametrize("view", VIEWS)
def test_a_write_through_an_op_made_view_is_refused_and_the_gradient_stays_true(view):
    """v is a view of x's memory; writing v.data went through, and backward read v = 100
    (x.grad = [200, 2, 0] for x = [0, 1, 2]). An array an op computed leaves the library read-only now."""
    x = Tensor(np.array([0.0, 1.0, 2.0]), requires_grad=True)
    v = VIEWS[view](x)
    z = (v * v).sum()
    with pytest.raises(ValueError, match="read-only"):
        v.data.reshape(-1)[0] = 100.0
    with pytest.raises(ValueError, match="read-only"):
        x.data[0] = 100.0  # the memory it views is held too
    z.backward()
    want = 2 * np.array([0.0, 1.0, 2.0]) * (np.arange(3) < 2 if view == "x[0:2]" else 1)
    np.testing.assert_array_equal(x.grad.data, want)


@pytest.mark.parametrize("take", ["t.data", "np.asarray(t)", "t.numpy()", "t.detach().data"])
def test_a_view_handed_out_before_the_graph_cannot_change_it_silently(take):
    """A view taken while the array was writable stays writable (NumPy flags are per view), so
    the graph that later holds the array compares it at backward with a copy it took then."""
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    handed = {"t.data": lambda t: t.data, "np.asarray(t)": np.asarray, "t.numpy()": lambda t: t.numpy(),
              "t.detach().data": lambda t: t.detach().data}[take](x)
    view = handed[:]  # (a write through `handed` itself is refused at once: it is the held array)
    y = (x * x).sum()
    view[0] = 100.0
    with pytest.raises(RuntimeError, match=r"^Mul: its input 0 .*changed in place .*through a view"):
        y.backward()
    assert x.grad is None  # nothing written


def test_an_unchanged_view_costs_nothing_but_a_copy_and_the_gradient_is_exact():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    view = x.data[:]
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0, 6.0])
    view[0] = 5.0  # the graph is gone: writing is allowed again, as before any graph
    assert x.data[0] == 5.0


@pytest.mark.parametrize("replace", ["t.data = ...", "t.writable_data()"])
def test_the_array_of_a_tensor_an_op_computed_cannot_be_replaced(replace):
    """exp's backward reads its output: e.writable_data()[:] = 0 made x.grad 0 without a word."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    e = x.exp()
    y = e.sum()
    with pytest.raises(RuntimeError, match="computed by Exp"):
        if replace == "t.data = ...":
            e.data = np.zeros(2)
        else:
            e.writable_data()[:] = 0
    y.backward()
    np.testing.assert_allclose(x.grad.data, np.exp([1.0, 2.0]), rtol=1e-15)


def test_a_leaf_that_requires_grad_keeps_its_shape_and_dtype_when_its_data_is_replaced():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    with pytest.raises(TypeError, match="keeps its shape and dtype"):
        x.data = np.array([1, 2, 3])
    with pytest.raises(tg.ShapeError, match="keeps its shape and dtype"):
        x.data = np.ones(5)
    x.data = np.ones(3)  # same shape and dtype: fine (an optimizer's way)
    assert x.data.tolist() == [1.0, 1.0, 1.0]


# ------------------------------------------------------------ 2. arrays already read-only when the graph was built

def _read_only(tmp_path, values):
    np.save(tmp_path / "w.npy", np.asarray(values))
    return np.load(tmp_path / "w.npy", mmap_mode="r")


def test_a_read_only_shared_array_is_still_guarded_against_an_early_optimizer_step(tmp_path):
    w = tg.from_numpy(_read_only(tmp_path, [1.0, -2.0]), requires_grad=True)
    loss = (w * w).sum()
    w.grad = Tensor(np.array([1.0, 1.0]))
    tg.optim.SGD([w], lr=0.5).step()  # gives w a new array (its own was read-only)
    with pytest.raises(RuntimeError, match=r"^Mul: its input 0 .* was given new data"):
        loss.backward()


def test_tensor_of_a_memory_map_is_an_ordinary_writable_copy(tmp_path):
    m = _read_only(tmp_path, [1.0, -2.0])
    w = Tensor(m, requires_grad=True)
    assert w.data.flags.writeable and not np.shares_memory(w.data, m)
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad.data, [2.0, -4.0])


# ------------------------------------------------------------------ 3, 4. copies and sharing

def test_np_array_of_a_tensor_is_a_snapshot_and_np_asarray_shares():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    before = np.array(w)
    shared = np.asarray(w)
    w.grad = Tensor(np.array([1.0, 1.0]))
    tg.optim.SGD([w], lr=0.5).step()
    np.testing.assert_array_equal(before, [1.0, 2.0])
    np.testing.assert_array_equal(shared, [0.5, 1.5])
    assert np.array(w, dtype=np.float32).dtype == np.float32


def test_tensor_copies_the_callers_array_and_from_numpy_shares_it():
    a = np.array([1.0, 2.0, 3.0])
    t, s = Tensor(a, requires_grad=True), tg.from_numpy(a, requires_grad=True)
    assert not np.shares_memory(t.data, a) and s.data is a
    y = (t * t).sum()
    a[0] = 10.0  # the caller's array stays the caller's: no error, and the graph never sees it
    y.backward()
    np.testing.assert_array_equal(t.grad.data, [2.0, 4.0, 6.0])
    z = (s * s).sum()
    with pytest.raises(ValueError, match="read-only"):  # shared and held: the caller's writes are refused
        a[0] = 11.0
    z.backward()
    a[0] = 11.0  # released with the graph


def test_cs231n_style_finite_differences_on_the_callers_array_work_while_a_graph_lives():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5)
    xt = Tensor(x, requires_grad=True)
    loss = (xt * xt * xt).sum()
    h, numeric = 1e-5, np.zeros(5)
    for i in range(5):  # nudge the caller's own array in place, as cs231n's eval_numerical_gradient does
        old = x[i]
        x[i] = old + h
        plus = (Tensor(x) ** 3).sum().item()
        x[i] = old - h
        minus = (Tensor(x) ** 3).sum().item()
        x[i] = old
        numeric[i] = (plus - minus) / (2 * h)
    loss.backward()
    np.testing.assert_allclose(xt.grad.data, numeric, rtol=1e-8)


# ------------------------------------------------------------------ 5. select, don't multiply

def _grad_with_inf_upstream(f, *values):
    xs = [Tensor(np.asarray(v, np.float64), requires_grad=True) for v in values]
    with np.errstate(divide="ignore", invalid="ignore"), tg.detect_anomaly():  # a correct program: no anomaly
        f(*xs).sum().backward()
    return [x.grad.data for x in xs]


def test_relu_then_sqrt_sends_zero_not_nan_below_zero_as_pytorch():
    (g,) = _grad_with_inf_upstream(lambda x: x.relu().sqrt(), [-1.0, 0.0, 4.0])
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.25])


def test_maximum_and_minimum_send_zero_to_the_loser_under_an_infinite_gradient():
    ga, gb = _grad_with_inf_upstream(lambda a, b: tg.maximum(a, b).sqrt(), [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0])
    np.testing.assert_array_equal(ga, [np.inf, 0.0, np.inf])  # PyTorch: the tie splits inf into inf and inf
    np.testing.assert_array_equal(gb, [0.0, np.inf, np.inf])
    ga, gb = _grad_with_inf_upstream(lambda a, b: tg.minimum(a, b).sqrt(), [0.0, 1.0], [1.0, 0.0])
    np.testing.assert_array_equal(ga, [np.inf, 0.0])
    np.testing.assert_array_equal(gb, [0.0, np.inf])


def test_pow_at_exponent_zero_and_abs_and_max_at_their_kinks_send_zero():
    ga, gb = _grad_with_inf_upstream(lambda a, b: (a ** b - 1).sqrt(), [0.0, 2.0], [0.0, 0.0])
    np.testing.assert_array_equal(ga, [0.0, 0.0])  # d a^b / da = b a^(b-1) = 0 at b = 0, whatever comes down
    (g,) = _grad_with_inf_upstream(lambda x: x.abs().sqrt(), [0.0, 4.0])
    np.testing.assert_array_equal(g, [0.0, 0.25])
    (g,) = _grad_with_inf_upstream(lambda x: (x.max() - 3.0).sqrt(), [3.0, 1.0])
    np.testing.assert_array_equal(g, [np.inf, 0.0])


def test_pow_exponent_gradient_at_base_zero_is_minus_inf_for_negative_exponents_as_pytorch():
    with np.errstate(divide="ignore", invalid="ignore"):
        a = Tensor(np.zeros(3), requires_grad=True)
        b = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
        (a ** b).sum().backward()
    np.testing.assert_array_equal(b.grad.data, [-np.inf, 0.0, 0.0])
    np.testing.assert_array_equal(a.grad.data, [-np.inf, 0.0, 0.0])


# ------------------------------------------------------------------ 6. .grad is validated on assignment

@pytest.mark.parametrize("bad, exc, match", [
    (np.ones(3), TypeError, "must be a Tensor or None, got ndarray"),
    (Tensor(np.ones(4)), tg.ShapeError, r"has shape \(4,\), but the tensor has shape \(3,\)"),
    (Tensor(np.ones(3, np.complex128)), TypeError, "dtype complex128, but the tensor is float64"),
    (Tensor(np.ones(3, np.float32)), TypeError, "dtype float32, but the tensor is float64"),
])
def test_a_bad_grad_is_refused_on_assignment_and_changes_nothing(bad, exc, match):
    w = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    w.grad = Tensor(np.zeros(3))
    with pytest.raises(exc, match=match):
        w.grad = bad
    np.testing.assert_array_equal(w.grad.data, np.zeros(3))


# ------------------------------------------------------------------ 7. tensors inside a list operand

def test_a_list_of_tensors_as_an_operand_or_data_is_refused_rather_than_detached():
    x = Tensor(np.ones(2), requires_grad=True)
    a, b = Tensor(2.0, requires_grad=True), Tensor(3.0, requires_grad=True)
    with pytest.raises(TypeError, match="detach them.*tg.stack"):
        x * [a, b]
    with pytest.raises(TypeError, match="detach them.*tg.stack"):
        [a, b] + x
    with pytest.raises(TypeError, match="detach them.*tg.stack"):
        Tensor([a, [b]])


# ------------------------------------------------------------------ 8. var, min, complex numbers

def test_var_and_std_with_correction_at_least_n_are_inf_or_nan_never_negative():
    x = Tensor(np.array([1.0, 2.0, 3.0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        assert x.var(correction=3).item() == np.inf and x.var(correction=5).item() == np.inf
        assert np.isnan(Tensor(np.array([1.0, 1.0])).var(correction=2).item())  # 0 / 0
        assert x.std(correction=4).item() == np.inf


@pytest.mark.parametrize("values", [np.array([0, 255], np.uint8), np.array([np.iinfo(np.int64).min, 5]),
                                    np.array([True, False]), np.array([3, 1, 2], np.int8)])
def test_min_is_exact_for_every_dtype(values):
    t = Tensor(values)
    assert t.min().item() == values.min() and t.min().dtype == values.dtype
    np.testing.assert_array_equal(t.reshape(-1, 1).min(axis=1).data, values)


def test_min_gradient_shares_ties_like_max():
    x = Tensor(np.array([1.0, 1.0, 3.0]), requires_grad=True)
    x.min().backward()
    np.testing.assert_array_equal(x.grad.data, [0.5, 0.5, 0.0])


def test_a_complex_number_promotes_instead_of_vanishing_and_is_refused_in_a_graph():
    x = Tensor(np.array([1.0, 2.0], np.float32))
    y = x * np.complex128(2j)
    assert y.dtype == np.complex64 and y.data.tolist() == [2j, 4j]
    assert (Tensor(np.ones(2)) * 2j).dtype == np.complex128
    with pytest.raises(TypeError, match="complex arithmetic .* not differentiable"):
        Tensor(np.ones(2), requires_grad=True) * 2j


# ------------------------------------------------------------------ semantics decided in API.md

I64, F32, F64, U8 = np.int64, np.float32, np.float64, np.uint8


@pytest.mark.parametrize("a, b, want", [
    (np.ones(3, F32), np.ones(3, I64), F32),         # a float tensor is never promoted by an integer one
    (np.ones(3, I64), np.ones(3, F32), F32),
    (np.ones(3, F32), np.ones(3, F64), F64),         # between floats the wider wins
    (np.ones(3, F32), np.array(2.0, F64), F32),      # ... unless it is 0-d: like a number, it never widens
    (np.ones(3, np.int32), np.array(2.0, F64), F64),  # a 0-d of a higher category brings its own dtype
    (np.ones(3, np.int32), np.array(2, I64), np.int32),
    (np.ones(3, U8), np.ones(3, np.int8), np.int16),
    (np.ones(3, bool), np.ones(3, U8), U8),
])
def test_tensor_with_tensor_promotion_follows_pytorch(a, b, want):
    for op in (lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x - y, tg.maximum):
        assert op(Tensor(a), Tensor(b)).dtype == want


def test_float_valued_ops_of_integer_tensors_give_float32_and_integer_sums_int64():
    i = Tensor(np.array([1, 2, 3]))
    for f in (Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.tanh, Tensor.sigmoid, Tensor.mean, Tensor.softmax,
              Tensor.log_softmax, Tensor.var, lambda t: t / t, Tensor.logsumexp):
        assert f(i).dtype == np.float32
    assert Tensor(np.array([200, 100], U8)).sum().item() == 300  # never wraps
    assert Tensor(np.array([200, 100], U8)).sum().dtype == I64 and Tensor(np.array([True, True])).sum().item() == 2
    x = Tensor(np.ones(3, F32), requires_grad=True)
    (x * Tensor(np.array([1, 2, 3]))).sum().backward()  # the integer side is only a constant
    assert x.grad.dtype == F32 and x.grad.data.tolist() == [1.0, 2.0, 3.0]


def test_equality_is_element_wise_and_tensors_hash_by_identity():
    pred, y = Tensor(np.array([1, 2, 3])), np.array([1, 0, 3])
    assert (pred == y).data.tolist() == [True, False, True] and (pred != y).data.tolist() == [False, True, False]
    assert abs((pred == y).mean().item() - 2 / 3) < 1e-7  # the accuracy idiom
    a, b = Tensor(np.ones(2)), Tensor(np.ones(2))
    assert len({a, b}) == 2 and {a: 1, b: 2}[b] == 2 and a in {a} and b not in {a}
    assert (a == None) is False and (a != None) is True  # noqa: E711  (Python's fallback, as PyTorch)


@pytest.mark.parametrize("bad", [lambda: Tensor(np.ones((2, 3))) + Tensor(np.ones((4, 3))),
                                 lambda: Tensor(np.ones(6)).reshape(4, 2), lambda: Tensor(np.ones((2, 3))).sum(axis=2),
                                 lambda: Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5))),
                                 lambda: Tensor(np.ones((2, 3))).transpose(0, 0)])
def test_shape_errors_are_caught_as_runtime_error_and_as_value_error(bad):
    for kind in (RuntimeError, ValueError, tg.ShapeError):
        with pytest.raises(kind):
            bad()


def test_an_axis_out_of_range_is_also_an_index_error_as_pytorch():
    with pytest.raises(IndexError, match="axis 2 is out of range"):
        Tensor(np.ones((2, 3))).sum(axis=2)


def test_zero_d_tensors_take_axis_0_and_minus_1():
    s = Tensor(np.array(3.0), requires_grad=True)
    for axis in (0, -1):
        assert s.sum(axis).item() == 3.0 and s.mean(axis).item() == 3.0 and s.max(axis).item() == 3.0
        assert s.softmax(axis).item() == 1.0 and s.log_softmax(axis).item() == 0.0 and s.squeeze(axis).shape == ()
        assert s.logsumexp(axis).item() == 3.0
    s.sum(0).backward()
    assert s.grad.item() == 1.0
    with pytest.raises(IndexError):
        s.sum(1)


def test_an_empty_list_index_selects_nothing_as_pytorch():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    assert x[[]].shape == (0, 3)
    x[[]].sum().backward()
    assert x.grad.data.tolist() == [[0.0] * 3] * 2


def test_deepcopy_copies_a_leaf_and_refuses_a_tensor_inside_a_graph():
    import copy
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True, name="x")
    x.grad = Tensor(np.array([5.0, 5.0]))
    c = copy.deepcopy(x)
    assert c.requires_grad and c.name == "x" and not np.shares_memory(c.data, x.data)
    assert c.grad.data.tolist() == [5.0, 5.0] and not np.shares_memory(c.grad.data, x.grad.data)
    y = x * x
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        copy.deepcopy(y)
    y.sum().backward()  # the original graph and its protection are untouched
    assert x.grad.data.tolist() == [7.0, 9.0]


def test_an_ndarray_seed_is_the_callers_after_backward_even_when_the_gradient_is_a_graph():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    dy = np.array([1.0, 3.0])
    (x * x).backward(dy, create_graph=True)  # x.grad = 2 x dy, a graph that reads dy
    dy[:] = 100.0  # the caller's array stays writable, and the graph kept its own copy
    x.grad.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0 + 2.0, 12.0 + 6.0])  # 2 x dy + d(sum 2 x dy)/dx = 2 dy


def test_std_of_a_constant_has_gradient_zero_as_pytorch():
    x = Tensor(np.array([[2.0, 2.0], [1.0, 3.0]]), requires_grad=True)
    s = x.std(axis=1)
    assert s.data.tolist() == [0.0, 1.0]
    s.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0.0, 0.0], [-0.5, 0.5]])


def test_relu_keeps_minus_zero_and_nan_and_passes_the_gradient_at_nan_as_pytorch():
    x = Tensor(np.array([-1.0, -0.0, 0.0, np.nan]), requires_grad=True)
    y = x.relu()
    assert np.signbit(y.data).tolist() == [False, True, False, False] and np.isnan(y.data[3])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0, 0.0, 1.0])


def test_maximum_beside_a_nan_sends_the_gradient_to_both_sides_as_pytorch():
    a, b = Tensor(np.array([1.0, 2.0]), requires_grad=True), Tensor(np.array([np.nan, 2.0]), requires_grad=True)
    tg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [1.0, 0.5])
    np.testing.assert_array_equal(b.grad.data, [1.0, 0.5])


def test_a_tensor_made_from_a_tensor_is_a_copy_that_may_require_grad():
    t = Tensor(np.array([1.0, 2.0]))
    c = Tensor(t, requires_grad=True)
    assert c.requires_grad and not np.shares_memory(c.data, t.data) and c.data.tolist() == [1.0, 2.0]


# ------------------------------------------------------------------ where PyTorch gives NaN, finite differences decide

def _central_differences(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(x)
    for i in range(x.size):
        step = np.zeros_like(x)
        step.flat[i] = h
        out.flat[i] = (f(x + step) - f(x - step)) / (2 * h)
    return out


@pytest.mark.parametrize("name, f, x", [
    ("sqrt(abs(x)) at 0", lambda t: t.abs().sqrt().sum(), [0.0, 4.0]),
    ("sqrt(max(x) - 3) at the other element", lambda t: (t.max() - 3.0).sqrt(), [3.0, 1.0]),
    ("sqrt(0 ** b) at b > 0", lambda t: (Tensor(np.zeros(2)) ** t).sqrt().sum(), [2.0, 0.5]),
])
def test_an_op_that_sends_nothing_sends_exactly_zero_under_an_infinite_gradient(name, f, x):
    """PyTorch multiplies its 0 by the infinite upstream gradient here (NaN); the function does not
    move with these elements, and float64 central differences (the first oracle) give 0."""
    x = np.array(x)
    t = Tensor(x, requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        f(t).backward()
        numeric = _central_differences(lambda v: f(Tensor(v)).item(), x)
    finite = np.isfinite(numeric)
    assert finite.any() and not np.isfinite(t.grad.data[~finite]).any()
    np.testing.assert_allclose(t.grad.data[finite], numeric[finite], atol=1e-6)
    assert (t.grad.data[finite] == 0).any()


def test_var_with_correction_at_least_n_has_a_nan_gradient_not_pytorchs_unclamped_one():
    """The forward is inf (PyTorch too); PyTorch's backward divides by n - correction unclamped
    (-1 here), a finite slope of an infinite value. Here it is NaN: no number to trust."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = x.var(correction=3)
        v.backward()
    assert v.item() == np.inf and np.isnan(x.grad.data).all()


def test_casting_to_an_integer_dtype_leaves_the_graph_as_pytorch():
    """x.cast(int64) required grad, and the gradient through it came back truncated: d/dx sum(x * int(x))
    was [2, 4] at x = [1.5, 2.5]; PyTorch (and the math of a constant) give int(x) = [1, 2]."""
    x = Tensor(np.array([1.5, 2.5]), requires_grad=True)
    y = x.cast(np.int64)
    assert not y.requires_grad and y.dtype == np.int64
    (x * y).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [1.0, 2.0])


# ------------------------------------------------------------------ found by red-teaming the guards

def test_index_arrays_masks_and_labels_are_copied_so_refilling_them_changes_nothing():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    idx, mask = np.array([0, 0]), np.array([True, False, True])
    y = (x[idx] * x[idx]).sum() + tg.where(mask, x, 0.0).sum()
    idx[:], mask[:] = 2, False  # a data loader refilling its buffers before backward
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [4.0 + 1.0, 0.0, 1.0])
    z = Tensor(np.zeros((2, 3)), requires_grad=True)
    labels = np.array([0, 1])
    loss = F.cross_entropy(z, labels)
    labels[:] = 2
    loss.backward()
    np.testing.assert_allclose(z.grad.data, (np.full((2, 3), 1 / 3) - np.eye(3)[[0, 1]]) / 2, rtol=1e-15)


def test_a_view_made_outside_the_graph_cannot_write_what_the_graph_saved():
    a = Tensor(np.arange(1.0, 7.0))
    v = a.reshape(2, 3)  # no graph (a needs no grad): a plain tensor viewing a's memory
    w = Tensor(np.ones(6), requires_grad=True)
    loss = (w * a).sum()
    with pytest.raises(ValueError, match="read-only"):
        v.data[0, 0] = 100.0
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    with tg.no_grad():
        y = x[:]
    loss2 = (x * x).sum()
    with pytest.raises(ValueError, match="read-only"):
        y.data[0] = 100.0
    loss.backward()
    loss2.backward()
    np.testing.assert_array_equal(w.grad.data, np.arange(1.0, 7.0))
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0, 6.0])
    v.data[0, 0] = 100.0  # the graphs are gone: writable again, as a's own array
    y.data[0] = 100.0
    assert a.data[0] == 100.0 and x.data[0] == 100.0


def test_an_array_handed_out_while_held_is_still_checked_by_later_graphs():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * x).sum()
    d = x.data  # read-only now; the same object turns writable after backward
    y.backward()
    v = d[:]
    y2 = (x * x).sum()
    v[0] = 100.0
    with pytest.raises(RuntimeError, match="changed in place"):
        y2.backward()


def test_a_leaf_viewing_memory_through_as_strided_holds_that_memory():
    img = np.arange(5.0)
    windows = tg.from_numpy(np.lib.stride_tricks.sliding_window_view(img, 3))
    w = Tensor(np.ones(3), requires_grad=True)
    loss = (windows @ w).sum()
    with pytest.raises(ValueError, match="read-only"):
        img[:] = 0
    loss.backward()
    np.testing.assert_array_equal(w.grad.data, [3.0, 6.0, 9.0])


def test_numpy_subclasses_become_plain_arrays():
    m = Tensor(np.matrix([[1.0, 2.0], [3.0, 4.0]]))
    assert type(m.data) is np.ndarray and (m * m).sum().item() == 30.0  # element-wise, not a matrix product
    masked = Tensor(np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]))
    assert masked.sum().item() == 6.0  # as torch.tensor: the data, not the mask


def test_comparisons_promote_as_pytorch():
    assert (Tensor(np.array([16777217])) == 16777216.0).item()  # both in float32
    assert (Tensor(np.array([0.1], np.float32)) == Tensor(np.array(0.1))).item()  # the 0-d float64 does not widen
    assert not (Tensor(np.array([16777216.0], np.float32)) < Tensor(np.array([16777217]))).item()


def test_deepcopy_of_a_module_keeps_its_parameters():
    import copy
    net = tg.nn.Sequential(tg.nn.Linear(3, 2), tg.nn.BatchNorm1d(2))
    twin = copy.deepcopy(net)
    assert [k for k, _ in twin.named_parameters()] == [k for k, _ in net.named_parameters()]
    assert all(isinstance(p, tg.nn.Parameter) for p in twin.parameters())
    assert not any(np.shares_memory(a.data, b.data) for a, b in zip(net.parameters(), twin.parameters()))


def test_two_leaves_viewing_one_buffer_are_both_writable_after_backward():
    big = np.ones(4)
    x1, x2 = tg.from_numpy(big[:2], requires_grad=True), tg.from_numpy(big[2:], requires_grad=True)
    ((x1 * x1).sum() + (x2 * x2).sum()).backward()
    assert big.flags.writeable and x1.data.flags.writeable and x2.data.flags.writeable
    tg.optim.SGD([x1, x2], lr=0.25).step()
    np.testing.assert_array_equal(big, [0.5] * 4)  # the step wrote into the shared buffer


def test_grad_accumulation_from_four_threads_loses_nothing():
    """t.grad = t.grad + g is a read and a write with NumPy (which lets other threads run) between."""
    import threading
    for _ in range(5):
        w = Tensor(np.ones((64, 64), np.float32), requires_grad=True)
        x = Tensor(np.ones((64, 64), np.float32))

        def work(x: Tensor = x, w: Tensor = w) -> None:
            for _ in range(40):
                (x @ w).sum().backward()
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        np.testing.assert_array_equal(w.grad.data, np.full((64, 64), 4 * 40 * 64.0, np.float32))


def test_a_graph_over_a_slice_of_a_handed_out_array_copies_only_the_slice():
    X = Tensor(np.zeros((1000, 8)))
    handed_out = X.data  # views of it may exist now  # noqa: F841
    w = Tensor(np.ones(8), requires_grad=True)
    loss = (X[0:4] @ w).sum()
    ctxs = [t._ctx for t in tg.engine._toposort([loss]) if t._ctx is not None]
    snapshots = [h.snapshot.size for c in ctxs for h in c.locked or () if h.snapshot is not None]
    assert snapshots == [4 * 8]  # not 1000 * 8: GetItem holds nothing; MatMul holds the rows it saved


def test_integers_out_of_range_wrap_and_a_negative_integer_power_is_not_a_shape_error():
    u = Tensor(np.array([0, 5], np.uint8))
    assert (u + -1).data.tolist() == [255, 4] and (u * 300).dtype == np.uint8
    with pytest.raises(ValueError) as info:
        Tensor(np.array([2])) ** -1
    assert not isinstance(info.value, tg.ShapeError)


# ------------------------------------------------------------------ found by the second red team

@pytest.mark.parametrize("index", [(slice(None), (1, 1)), ((0, 0), slice(None)), (array.array("q", [2, 2]),)])
def test_repeated_indices_given_as_tuples_or_ranges_accumulate(index):
    """x[:, (1, 1)] sent column 1 a gradient of 1 (the last write won), not 2 as PyTorch."""
    x = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    x[index].sum().backward()
    want = np.zeros((3, 2))
    np.add.at(want, index, 1.0)
    np.testing.assert_array_equal(x.grad.data, want)


def test_a_replacement_while_an_op_runs_its_forward_is_still_caught():
    """The count of replacements is read before the inputs' arrays: a replacement in between (another
    thread, while NumPy runs a matmul) used to let backward skip the check and read the new array."""
    w = Tensor(np.ones((2, 2)), requires_grad=True)

    class Sneaky(tg.ops.Mul):
        def forward(self, a, b):
            w.data = np.full((2, 2), 100.0)
            return super().forward(a, b)
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    y = Sneaky.apply(x, w).sum()
    with pytest.raises(RuntimeError, match="was given new data"):
        y.backward()


def test_load_state_dict_cannot_replace_a_buffer_an_op_computed():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    m = tg.nn.Module()
    m.register_buffer("b", x.exp())
    loss = m.b.sum()
    with pytest.raises(RuntimeError, match="computed by Exp"):
        m.load_state_dict({"b": np.array([5.0, 5.0])})
    loss.backward()
    np.testing.assert_allclose(x.grad.data, np.exp([1.0, 2.0]), rtol=1e-15)


def test_where_keeps_the_sign_of_zero_as_numpy_and_pytorch():
    x = Tensor(np.array([-3.0, 2.0]))
    assert np.signbit(tg.where(x > 0, x, 0.0).data).tolist() == [False, False]
    assert np.signbit(tg.where(x > 5, x, -0.0).data).tolist() == [True, True]


def test_batch_norm_refuses_running_statistics_an_op_computed_and_changes_nothing():
    x = Tensor(np.random.default_rng(0).standard_normal((4, 2)))
    mean = Tensor(np.zeros(2))
    var = Tensor(np.ones(2), requires_grad=True) * 1.0
    with pytest.raises(ValueError, match="running_var was computed by Mul"):
        F.batch_norm(x, mean, var, training=True)
    assert mean.data.tolist() == [0.0, 0.0]


def test_module_to_its_own_dtype_changes_nothing_and_keeps_a_pending_backward_valid():
    lin = tg.nn.Linear(3, 2)
    y = lin(Tensor(np.ones((4, 3), np.float32))).sum()
    arrays = [p._data for p in lin.parameters()]
    lin.float()
    assert all(p._data is a for p, a in zip(lin.parameters(), arrays))
    y.backward()
    assert lin.weight.grad is not None


def test_the_float32_mean_check_sees_past_a_nan_channel_and_a_row_by_row_sum():
    x = np.full((64, 3), 10000.1, np.float32)
    x[0, 0] = np.nan
    x[:, 2] = np.random.default_rng(0).standard_normal(64)
    y = F.batch_norm(Tensor(x), None, None, training=True).data
    assert np.isnan(y[:, 0]).all() and np.array_equal(y[:, 1], np.zeros(64, np.float32))
    rng = np.random.default_rng(1)
    big = (rng.standard_normal((8192, 8)) * 0.2 + 1.0).astype(np.float32)  # axis 0 is summed row by row
    got = F.batch_norm(Tensor(big), None, None, training=True).data
    b64 = big.astype(np.float64)
    want = (b64 - b64.mean(0)) / np.sqrt(b64.var(0) + 1e-5)
    assert np.abs(got - want).max() < 1e-5


def test_flatten_refuses_crossed_axes_and_flattens_empty_tensors():
    """(2, 3, 4).flatten(2, 1) gave (2, 3, 1, 4) without a word; (0, 3, 4).flatten(1) failed to reshape."""
    x = Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(tg.ShapeError, match=r"^flatten: start_axis=2 comes after end_axis=1 for input \(2, 3, 4\)"):
        x.flatten(2, 1)
    assert Tensor(np.zeros((0, 3, 4))).flatten(1).shape == (0, 12)
    assert x.flatten(1).shape == (2, 12) and x.flatten().shape == (24,) and x.flatten(1, 1).shape == (2, 3, 4)
