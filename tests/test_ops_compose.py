"""pad, cat, stack, gather and prod: composites of primitives (IndexAdd, Where, GetItem, Mul), checked
against NumPy, by gradcheck and gradgradcheck, on zeros and signed zeros, dtypes and errors, and
optionally against PyTorch (values and gradients)."""
import numpy as np
import pytest
from conftest import GRAD_TOL, leaf

import tinygrad_bn as tg
from tinygrad_bn import Tensor
from tinygrad_bn.check import gradcheck, gradgradcheck

rep = np.array([[0, 2, 2], [1, 0, 0]])  # repeated indices: their gradients must accumulate
# name: (input shapes, tinygrad_bn function, NumPy reference); inputs are float64 N(0, 1) leaves
CASES = {
    "pad_int": ([(2, 3)], lambda a: a.pad(1), lambda a: np.pad(a, 1)),
    "pad_pair": ([(2, 3)], lambda a: a.pad((2, 1)), lambda a: np.pad(a, (2, 1))),
    "pad_per_axis_value": ([(2, 3, 2)], lambda a: a.pad(((0, 1), (2, 0), (1, 1)), value=-1.5),
                           lambda a: np.pad(a, ((0, 1), (2, 0), (1, 1)), constant_values=-1.5)),
    "pad_one_pair_list": ([(3,)], lambda a: a.pad([[0, 2]], value=2), lambda a: np.pad(a, [[0, 2]], constant_values=2)),
    "pad_0d": ([()], lambda a: a.pad(3), lambda a: np.pad(a, 3)),
    "cat_axis0": ([(2, 3), (1, 3)], lambda a, b: tg.cat([a, b]), lambda a, b: np.concatenate([a, b])),
    "cat_axis_neg": ([(2, 1), (2, 3), (2, 2)], lambda a, b, c: tg.cat((a, b, c), axis=-1),
                     lambda a, b, c: np.concatenate([a, b, c], axis=-1)),
    "cat_empty_piece": ([(2, 0, 2), (2, 3, 2)], lambda a, b: tg.cat([a, b], 1),
                        lambda a, b: np.concatenate([a, b], 1)),
    "cat_five": ([(1, 2), (3, 2), (2, 2), (1, 2), (2, 2)], lambda *ts: tg.cat(ts), lambda *ts: np.concatenate(ts)),
    "cat_one": ([(2, 2)], lambda a: tg.cat([a], 1) * 1, lambda a: a),
    "cat_same_twice": ([(2, 2)], lambda a: tg.cat([a, a * 2, a]), lambda a: np.concatenate([a, a * 2, a])),
    "stack_axis0": ([(2, 3), (2, 3)], lambda a, b: tg.stack([a, b]), lambda a, b: np.stack([a, b])),
    "stack_axis_last": ([(2, 3), (2, 3), (2, 3)], lambda a, b, c: tg.stack([a, b, c], axis=-1),
                        lambda a, b, c: np.stack([a, b, c], axis=-1)),
    "stack_0d": ([(), ()], lambda a, b: tg.stack([a, b]), lambda a, b: np.stack([a, b])),
    "gather_axis0": ([(3, 3)], lambda a: a.gather(0, rep), lambda a: np.take_along_axis(a, rep, 0)),
    "gather_axis1": ([(2, 4)], lambda a: a.gather(1, Tensor(rep)), lambda a: np.take_along_axis(a, rep, 1)),
    "gather_smaller": ([(3, 4)], lambda a: a.gather(-1, rep[:1, :2]),
                       lambda a: np.take_along_axis(a[:1], rep[:1, :2], -1)),
    "gather_axis0_smaller": ([(3, 4)], lambda a: a.gather(0, rep[:, :2]),
                             lambda a: np.take_along_axis(a[:, :2], rep[:, :2], 0)),
    "gather_3d": ([(2, 3, 2)], lambda a: a.gather(1, np.array([[[2, 0]], [[1, 1]]])),
                  lambda a: np.take_along_axis(a, np.array([[[2, 0]], [[1, 1]]]), 1)),
    "gather_0d": ([()], lambda a: a.gather(0, Tensor(0)), lambda a: a),
    "prod_all": ([(2, 3)], lambda a: a.prod(), np.prod),
    "prod_axis0": ([(5, 2)], lambda a: a.prod(0), lambda a: np.prod(a, 0)),
    "prod_axis_neg_keep": ([(2, 7)], lambda a: a.prod(-1, keepdims=True), lambda a: np.prod(a, -1, keepdims=True)),
    "prod_tuple": ([(3, 2, 3)], lambda a: a.prod((0, 2)), lambda a: np.prod(a, (0, 2))),
    "prod_len1": ([(1, 3)], lambda a: a.prod(0), lambda a: np.prod(a, 0)),
    "prod_empty": ([(2, 0)], lambda a: a.prod(1), lambda a: np.prod(a, 1)),
    "prod_0d": ([()], lambda a: a.prod(), np.prod),
}


@pytest.mark.parametrize("name", CASES)
def test_values_match_numpy(name, rng):
    shapes, f, ref = CASES[name]
    xs = [leaf(rng, s) for s in shapes]
    out = f(*xs)
    expected = np.asarray(ref(*[x.data for x in xs]))
    assert out.shape == expected.shape and out.dtype == np.float64
    np.testing.assert_allclose(out.data, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", [n for n in CASES if n not in ("prod_empty", "cat_empty_piece")])  # (size 0: below)
def test_gradcheck_and_gradgradcheck(name, rng):
    shapes, f, _ = CASES[name]
    xs = [leaf(rng, s) for s in shapes]
    assert gradcheck(f, xs, **GRAD_TOL)
    assert gradgradcheck(f, xs, **GRAD_TOL)


def test_size_zero_inputs_get_empty_gradients(rng):
    """(check.gradcheck cannot perturb a size-0 input, so these two are checked by hand)"""
    x, y = leaf(rng, (2, 0)), leaf(rng, (2, 3))
    out = x.prod(1)
    out.sum().backward()
    assert np.array_equal(out.data, [1.0, 1.0]) and x.grad.shape == (2, 0)
    (tg.cat([x, y], 1) * 2).sum().backward()
    assert x.grad.shape == (2, 0) and np.array_equal(y.grad.data, np.full((2, 3), 2.0))


def test_cat_of_one_tensor_is_a_new_tensor(rng):
    """As torch.cat: the result is not the input itself (setting its .data or .grad leaves the input alone)."""
    x = leaf(rng, (2, 2))
    out = tg.cat([x])
    assert out is not x and not out.is_leaf and np.array_equal(out.data, x.data)


def test_gather_accumulates_repeated_indices(rng):
    x = leaf(rng, (3, 3))
    x.gather(0, rep).sum().backward()
    counts = np.zeros((3, 3))
    np.add.at(counts, (rep, np.arange(3)), 1.0)
    assert np.array_equal(x.grad.data, counts)


# ------------------------------------------------------------------ prod with zeros: the closed form

@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("zeros", [(0,), (1,), (0, 2)])
def test_prod_gradient_and_hessian_with_zeros_are_exact(n, zeros, rng):
    """d prod / dx_i = prod_{k != i} x_k and d2 prod / dx_i dx_j = prod_{k != i, j} x_k (0 on the diagonal):
    with one zero only the zero's own gradient survives; with two, every gradient is 0."""
    zeros = [z % n for z in zeros]
    v = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
    v[zeros] = 0.0
    x = Tensor(v, requires_grad=True)
    (g,) = tg.grad(x.prod(), x, create_graph=True)
    others = lambda skip: np.prod([v[k] for k in range(n) if k not in skip])  # noqa: E731
    hessian = np.array([tg.grad(g[i], x, retain_graph=True)[0].data for i in range(n)])
    expected = np.array([[0.0 if i == j else others({i, j}) for j in range(n)] for i in range(n)])
    for got, want in [(g.data, [others({i}) for i in range(n)]), (hessian, expected)]:
        assert np.array_equal(got == 0, np.equal(want, 0))  # exact zeros where the closed form has them
        np.testing.assert_allclose(got, want, rtol=1e-14)  # (the tree multiplies in another order)
    if len(set(zeros)) == 2:
        assert not g.data.any()
    assert gradgradcheck(lambda a: a.prod(), [x], **GRAD_TOL)


def test_prod_of_a_huge_zero_free_row_matches_numpy_to_rounding(rng):
    v = rng.uniform(0.9, 1.1, 1001)
    np.testing.assert_allclose(Tensor(v).prod().item(), np.prod(v), rtol=1e-13)


# ------------------------------------------------------------------ signed zeros and values outside

def test_cat_and_pad_keep_negative_zero():
    """Padding with +0.0 and summing would give -0.0 + 0.0 = +0.0: cat pads with -0.0 (x + -0.0 == x)."""
    a, b = Tensor(np.array([-0.0, 1.0])), Tensor(np.array([-0.0]))
    assert np.array_equal(np.signbit(tg.cat([a, b]).data), [True, False, True])
    assert np.array_equal(np.signbit(tg.stack([b, b]).data), [[True], [True]])
    assert np.array_equal(np.signbit(a.pad(1, value=-0.0).data), [True, True, False, True])
    assert np.array_equal(np.signbit(a.pad(1).data), [False, True, False, False])


def test_pad_value_gets_no_gradient_and_inf_passes(rng):
    x = leaf(rng, (2, 2))
    out = x.pad(1, value=np.inf)
    assert np.isinf(out.data).sum() == 12
    (out * 3).sum().backward()
    assert np.array_equal(x.grad.data, np.full((2, 2), 3.0))


# ------------------------------------------------------------------ dtypes

@pytest.mark.parametrize("dtypes, expected", [
    ((np.int64, np.float32), np.float32), ((np.float32, np.float64), np.float64), ((np.int32, np.int64), np.int64),
    ((np.uint8, np.int8), np.int16), ((np.bool_, np.bool_), np.bool_), ((np.bool_, np.int32, np.float16), np.float16),
])
def test_cat_and_stack_promote_as_the_binary_ops(dtypes, expected):
    ts = [Tensor(np.ones(2, dt)) for dt in dtypes]
    assert tg.cat(ts).dtype == expected and tg.stack(ts).dtype == expected
    np.testing.assert_array_equal(tg.cat(ts).data, np.ones(2 * len(ts), expected))


def test_cat_of_float32_and_int_keeps_float32_gradients():
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    out = tg.cat([a, Tensor(np.arange(3))])
    out.sum().backward()
    assert out.dtype == np.float32 and a.grad.dtype == np.float32


@pytest.mark.parametrize("dtype, expected", [(np.int32, np.int64), (np.uint8, np.int64), (np.bool_, np.int64),
                                             (np.int64, np.int64), (np.float32, np.float32), (np.float64, np.float64)])
def test_prod_dtype_as_pytorch(dtype, expected):
    v = np.array([[1, 2, 3], [1, 0, 1]]).astype(dtype)
    for out, ref in [(Tensor(v).prod(), np.prod(v)), (Tensor(v).prod(1), np.prod(v, 1))]:
        assert out.dtype == expected
        np.testing.assert_array_equal(out.data, ref)


def test_uint8_prod_does_not_wrap():
    assert Tensor(np.full(3, 200, np.uint8)).prod().item() == 200 ** 3


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.float32])
def test_pad_and_gather_keep_the_dtype(dtype):
    x = Tensor(np.ones((2, 2), dtype))
    assert x.pad(1, value=0.5 if dtype == np.float32 else 1).dtype == dtype
    assert x.gather(0, np.zeros((1, 2), np.int32)).dtype == dtype


def test_pad_casts_the_value_to_the_dtype_as_numpy():
    v = np.arange(3, dtype=np.int64)
    np.testing.assert_array_equal(Tensor(v).pad(1, value=2.7).data, np.pad(v, 1, constant_values=2.7))


# ------------------------------------------------------------------ errors

t23, t24 = Tensor(np.zeros((2, 3))), Tensor(np.zeros((2, 4)))
ERRORS = {
    "cat empty": (lambda: tg.cat([]), tg.ShapeError, r"cat: expected a non-empty list"),
    "cat number": (lambda: tg.cat([t23, 1.0]), TypeError, r"cat: expected a Tensor as element 1, got float"),
    "cat ndarray": (lambda: tg.cat([np.zeros(3), t23]), TypeError, r"element 0, got ndarray"),
    "cat a tensor": (lambda: tg.cat(t23), TypeError, r"cat: expected a list or tuple of Tensors, got Tensor"),
    "cat shapes": (lambda: tg.cat([t23, t24]), tg.ShapeError,
                   r"cat: tensor 1 has shape \(2, 4\) but tensor 0 has \(2, 3\); all must match except along axis 0"),
    "cat ndim": (lambda: tg.cat([t23, Tensor(np.zeros(3))], 1), tg.ShapeError, r"tensor 1 has shape \(3,\)"),
    "cat 0-d": (lambda: tg.cat([Tensor(1.0)]), tg.ShapeError, r"zero-dimensional"),
    "cat axis": (lambda: tg.cat([t23], 2), tg.AxisError, r"cat: axis 2 is out of range"),
    "stack empty": (lambda: tg.stack(()), tg.ShapeError, r"stack: expected a non-empty list"),
    "stack shapes": (lambda: tg.stack([t23, t23, t24]), tg.ShapeError,
                     r"stack: tensor 2 has shape \(2, 4\) but tensor 0 has \(2, 3\)"),
    "stack axis": (lambda: tg.stack([t23], -4), tg.AxisError, r"stack: axis -4"),
    "pad negative": (lambda: t23.pad((1, -1)), ValueError, r"pad: pad_width \(1, -1\) has a negative width"),
    "pad float": (lambda: t23.pad(1.5), TypeError, r"pad: pad_width must hold ints, got 1.5"),
    "pad pairs": (lambda: t23.pad(((1, 1), (1, 1), (1, 1))), tg.ShapeError,
                  r"pad: pad_width .* does not fit shape \(2, 3\); .* or 2 pairs"),
    "gather range": (lambda: t23.gather(1, np.array([[0, 3]])), IndexError,
                     r"gather: index 3 is out of range for axis 1 of size 3"),
    "gather negative": (lambda: t23.gather(0, np.array([[-1]])), IndexError, r"index -1 is out of range"),
    "gather float index": (lambda: t23.gather(0, np.zeros((1, 1))), TypeError, r"index must hold integers"),
    "gather ndim": (lambda: t23.gather(0, np.zeros(2, int)), tg.ShapeError,
                    r"gather: index of shape \(2,\) does not fit input \(2, 3\)"),
    "gather too big": (lambda: t23.gather(0, np.zeros((1, 4), int)), tg.ShapeError, r"index of shape \(1, 4\)"),
    "gather axis": (lambda: t23.gather(2, np.zeros((1, 1), int)), tg.AxisError, r"gather: axis 2"),
    "prod axis": (lambda: t23.prod(3), tg.AxisError, r"prod: axis 3 is out of range"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_op_and_the_fix(name):
    f, exc, match = ERRORS[name]
    with pytest.raises(exc, match=match):
        f()


# ------------------------------------------------------------------ PyTorch parity (optional)

TORCH = {  # name: (input shapes, tinygrad_bn function, torch function)
    "pad": ([(2, 3)], lambda a: a.pad(((1, 0), (2, 1)), value=0.5),
            lambda torch, a: torch.nn.functional.pad(a, (2, 1, 1, 0), value=0.5)),
    "cat": ([(2, 3), (2, 1)], lambda a, b: tg.cat([a, b], -1), lambda torch, a, b: torch.cat([a, b], -1)),
    "stack": ([(2, 3), (2, 3)], lambda a, b: tg.stack([a, b], 1), lambda torch, a, b: torch.stack([a, b], 1)),
    "gather": ([(3, 3)], lambda a: a.gather(0, rep), lambda torch, a: torch.gather(a, 0, torch.from_numpy(rep))),
    "prod": ([(3, 4)], lambda a: a.prod(1), lambda torch, a: torch.prod(a, 1)),
    "prod_all": ([(3, 4)], lambda a: a.prod(), lambda torch, a: torch.prod(a)),
}


@pytest.mark.parametrize("name", TORCH)
@pytest.mark.parametrize("with_zeros", [False, True])
def test_torch_parity(name, with_zeros, rng):
    torch = pytest.importorskip("torch")
    shapes, f, tf = TORCH[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    if with_zeros:
        for a in arrays:
            a[0, :2] = 0.0  # prod: one zero in row 0 and two in the whole tensor
    xs = [Tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, tout = f(*xs), tf(torch, *ts)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-14, atol=0)
    g = rng.standard_normal(out.shape)
    out.backward(Tensor(g))
    tout.backward(torch.tensor(g))
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad.data, t.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_torch_prod_dtypes():
    torch = pytest.importorskip("torch")
    for dt in (np.int32, np.uint8, np.bool_, np.float32):
        v = np.array([1, 2, 3]).astype(dt)
        assert str(Tensor(v).prod().dtype) == str(torch.from_numpy(v).prod().dtype).removeprefix("torch.")
