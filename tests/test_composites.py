"""Batch norm, layer norm and softmax cross-entropy, composed of primitives (nn.functional): autograd
against the hand-derived formulas of tinygrad_bn.analytic to <= 1e-12 relative error in float64, and
against float64 central differences; the `tinygrad-bn check` grid as a parametrized test; the seed's
softmax facts; numerical edge cases (huge logits, one class, zero and tiny variance, NaN)."""
import numpy as np
import pytest
from conftest import GRAD_TOL

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.check import compare, gradcheck, numerical_grad
from tinygrad_bn.report import gradient_cases, run_case

EPS = 1e-5
RTOL = 1e-12     # autograd against the formulas, float64: round-off only
FD_RTOL = 1e-7   # against central differences with step 1e-6: truncation and rounding ~1e-9
GRADS = ("dx", "dgamma", "dbeta")


def axes_of(ndim: int) -> tuple[int, ...]:
    return (0,) + tuple(range(2, ndim))


def assert_ok(report):
    assert report.ok, "\n" + str(report)


def leaves(*arrays):
    return [tg.Tensor(np.asarray(a, np.float64), requires_grad=True) for a in arrays]


# ------------------------------------------------------------------------------- batch norm, train

def bn_train_autograd(x, gamma, beta, dy):
    xt, gt, bt = leaves(x, gamma, beta)
    y = F.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
    y.backward(tg.Tensor(dy))
    return y.data, dict(zip(GRADS, (xt.grad.data, gt.grad.data, bt.grad.data)))


def bn_train_formula(x, gamma, beta, dy):
    y, cache = analytic.batchnorm_forward(x, gamma, beta, EPS, axes_of(x.ndim))
    return y, dict(zip(GRADS, analytic.batchnorm_backward(dy, cache)))


# name: (shape, scale, shift) of x. A batch of 2 is well conditioned only for var not >> eps (there the
# true dx is eps / (var + eps) times its terms, see test_batch_of_two_*), so N=2 uses x ~ 1e-2.
BN_TRAIN = {
    "N=2, var ~ eps": ((2, 8), 1e-2, 0.0),
    "N=3": ((3, 8), 3.0, 1.0),
    "N=16": ((16, 8), 3.0, 1.0),
    "N=256": ((256, 8), 3.0, 1.0),
    "N=4096": ((4096, 8), 3.0, 1.0),
    "tiny variance (x ~ 1e-4)": ((64, 8), 1e-4, 0.0),
    "huge variance (x ~ 1e4)": ((64, 8), 1e4, 1e3),
    "(N, C, L)": ((8, 4, 6), 2.0, -1.0),
    "(N, C, L), N=2": ((2, 3, 5), 2.0, 0.5),
    "(N, C, H, W)": ((4, 3, 5, 5), 2.0, 1.0),
    "(N, C, H, W), N=2": ((2, 3, 3, 3), 1.0, 0.0),
    "(N, C, H, W), huge variance": ((4, 3, 4, 4), 1e4, -1e3),
    "(N, C, H, W), tiny variance": ((3, 2, 4, 4), 1e-4, 1e-4),
}


def bn_inputs(rng, shape, scale=1.0, shift=0.0):
    c = shape[1]
    return (rng.standard_normal(shape) * scale + shift, rng.standard_normal(c) + 1.0, rng.standard_normal(c),
            rng.standard_normal(shape))


@pytest.mark.parametrize("name", BN_TRAIN)
def test_batch_norm_train_equals_formula(name, rng):
    x, gamma, beta, dy = bn_inputs(rng, *BN_TRAIN[name])
    y, got = bn_train_autograd(x, gamma, beta, dy)
    y_ref, ref = bn_train_formula(x, gamma, beta, dy)
    assert_ok(compare({"y": y, **got}, {"y": y_ref, **ref}, rtol=RTOL, title=name))


BN_SMALL = [(4, 3), (3, 2, 4), (2, 2, 2, 3)]


@pytest.mark.parametrize("shape", BN_SMALL, ids=str)
def test_batch_norm_train_autograd_equals_finite_differences(shape, rng):
    x, gamma, beta, dy = bn_inputs(rng, shape, 2.0, 1.0)
    _, got = bn_train_autograd(x, gamma, beta, dy)
    numeric = numerical_grad(lambda *a: F.batch_norm(a[0], None, None, a[1], a[2], training=True, eps=EPS),
                             leaves(x, gamma, beta), grad_output=dy)
    assert_ok(compare(got, dict(zip(GRADS, numeric)), rtol=FD_RTOL))


def test_batch_norm_train_full_jacobian_gradcheck(rng):
    x, gamma, beta, _ = bn_inputs(rng, (4, 3), 2.0, 1.0)
    assert gradcheck(lambda *a: F.batch_norm(a[0], None, None, a[1], a[2], training=True), leaves(x, gamma, beta),
                     **GRAD_TOL)


# -------------------------------------------------------------------------------- batch norm, eval

def bn_eval_autograd(x, gamma, beta, dy, rm, rv):
    xt, gt, bt = leaves(x, gamma, beta)
    y = F.batch_norm(xt, tg.Tensor(rm.copy()), tg.Tensor(rv.copy()), gt, bt, training=False, eps=EPS)
    y.backward(tg.Tensor(dy))
    return y.data, dict(zip(GRADS, (xt.grad.data, gt.grad.data, bt.grad.data)))


BN_EVAL = [(16, 8), (1, 8), (8, 4, 6), (1, 4, 3), (4, 3, 5, 5), (1, 3, 2, 2)]


@pytest.mark.parametrize("shape", BN_EVAL, ids=str)
def test_batch_norm_eval_equals_formula_and_finite_differences(shape, rng):
    x, gamma, beta, dy = bn_inputs(rng, shape, 2.0, 1.0)
    rm, rv = rng.standard_normal(shape[1]), rng.uniform(0.5, 2.0, shape[1])
    y, got = bn_eval_autograd(x, gamma, beta, dy, rm, rv)
    y_ref, cache = analytic.batchnorm_eval_forward(x, gamma, beta, rm, rv, EPS, axes_of(len(shape)))
    ref = dict(zip(GRADS, analytic.batchnorm_eval_backward(dy, cache)))
    assert_ok(compare({"y": y, **got}, {"y": y_ref, **ref}, rtol=RTOL))
    if np.prod(shape) <= 64:
        numeric = numerical_grad(lambda *a: F.batch_norm(a[0], tg.Tensor(rm), tg.Tensor(rv), a[1], a[2]),
                                 leaves(x, gamma, beta), grad_output=dy)
        assert_ok(compare(got, dict(zip(GRADS, numeric)), rtol=FD_RTOL))


# ------------------------------------------------------------------------------------- layer norm

LN = [((16, 10), (10,)), ((4, 6), (6,)), ((3, 4, 5), (5,)), ((3, 4, 5), (4, 5)), ((2, 3), (3,))]


@pytest.mark.parametrize("shape, normalized", LN, ids=str)
def test_layer_norm_equals_formula_and_finite_differences(shape, normalized, rng):
    x, dy = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(normalized) + 1, rng.standard_normal(normalized)
    xt, gt, bt = leaves(x, gamma, beta)
    y = F.layer_norm(xt, normalized, gt, bt, eps=EPS)
    y.backward(tg.Tensor(dy))
    got = dict(zip(GRADS, (xt.grad.data, gt.grad.data, bt.grad.data)))
    y_ref, cache = analytic.layernorm_forward(x, gamma, beta, EPS)
    assert_ok(compare({"y": y.data, **got}, {"y": y_ref, **dict(zip(GRADS, analytic.layernorm_backward(dy, cache)))},
                      rtol=RTOL))
    if x.size <= 60:
        numeric = numerical_grad(lambda *a: F.layer_norm(a[0], normalized, a[1], a[2], eps=EPS),
                                 leaves(x, gamma, beta), grad_output=dy)
        assert_ok(compare(got, dict(zip(GRADS, numeric)), rtol=FD_RTOL))


# -------------------------------------------------------------------------- softmax cross-entropy

def make_target(kind, rng, n, c):
    labels = rng.integers(0, c, n)
    return {"indices": labels, "indices as Tensor": tg.Tensor(labels), "one-hot": np.eye(c)[labels],
            "probabilities": rng.dirichlet(np.ones(c), n)}[kind]


def np_losses(z, y):
    """-sum_j y_j log softmax(z)_j per example, in NumPy (y one-hot or probabilities)."""
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    return -(y * (z - lse[..., None])).sum(-1)


TARGETS = ["indices", "indices as Tensor", "one-hot", "probabilities"]
REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("n, c", [(1, 4), (8, 5), (256, 10)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", TARGETS)
def test_cross_entropy_equals_formula(kind, reduction, n, c, rng):
    logits = rng.standard_normal((n, c)) * 3
    target = make_target(kind, rng, n, c)
    z = tg.Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, target, reduction=reduction)
    loss.backward(tg.ones(loss.shape, dtype=np.float64))
    t = target.data if isinstance(target, tg.Tensor) else target
    y = np.eye(c)[t] if t.ndim == 1 else t
    losses = np_losses(logits, y)
    expected = losses.mean() if reduction == "mean" else losses.sum() if reduction == "sum" else losses
    assert loss.shape == np.shape(expected) and loss.dtype == np.float64
    ref = analytic.softmax_cross_entropy_backward(logits, t, reduction)
    assert_ok(compare({"loss": loss.data, "dlogits": z.grad.data}, {"loss": expected, "dlogits": ref}, rtol=RTOL))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["indices", "one-hot", "probabilities"])
def test_cross_entropy_autograd_equals_finite_differences(kind, reduction, rng):
    logits, target = rng.standard_normal((5, 4)) * 2, make_target(kind, rng, 5, 4)
    z = tg.Tensor(logits, requires_grad=True)
    F.cross_entropy(z, target, reduction=reduction).sum().backward()
    numeric = numerical_grad(lambda a: F.cross_entropy(a, target, reduction=reduction), [tg.Tensor(logits)])[0]
    assert_ok(compare({"dlogits": z.grad.data}, {"dlogits": numeric}, rtol=FD_RTOL))
    assert gradcheck(lambda a: F.cross_entropy(a, target, reduction=reduction), leaves(logits), **GRAD_TOL)


def test_cross_entropy_gradient_reaches_soft_targets(rng):
    """With probabilities as a Tensor that requires grad, d loss / d y = -log softmax(z) / m (as PyTorch)."""
    logits, probs = rng.standard_normal((4, 3)), rng.dirichlet(np.ones(3), 4)
    z, y = leaves(logits, probs)
    F.cross_entropy(z, y).backward()
    expected = -(logits - np.log(np.exp(logits).sum(1, keepdims=True))) / 4
    np.testing.assert_allclose(y.grad.data, expected, rtol=1e-13)
    assert gradcheck(lambda a, b: F.cross_entropy(a, b, reduction="none"), leaves(logits, probs), **GRAD_TOL)


def test_cross_entropy_of_one_example_without_batch_axis(rng):
    logits = rng.standard_normal(6)
    z = tg.Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, np.int64(2))
    loss.backward()
    assert loss.shape == ()
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(loss.item(), -np.log(p[2]), rtol=1e-14)
    ref = analytic.softmax_cross_entropy_backward(logits, np.int64(2))
    assert_ok(compare({"dlogits": z.grad.data}, {"dlogits": ref}, rtol=RTOL))


# --------------------------------------------------------------------- the `tinygrad-bn check` grid

GRID = list(gradient_cases(seed=0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("index", range(len(GRID)),
                         ids=[f"{i}:{c[0]} {c[1][0].shape}".replace(" ", "_") for i, c in enumerate(GRID)])
def test_check_grid_case(index, dtype):
    case, inputs, autograd, formula = GRID[index]
    report, ok = run_case(inputs, autograd, formula, dtype)
    assert ok, f"{case}\n{report}"
    assert {r.name for r in report.rows} == set(formula(*inputs))


def test_check_grid_batch_of_two_passes_for_another_seed():
    case = next(c for c in gradient_cases(seed=3, quick=True) if c[1][0].shape == (2, 8))
    report, ok = run_case(*case[1:], np.float64)
    assert ok, str(report)


# ------------------------------------------------------------------------ a batch of 2, in closed form

def batch_of_two_dx(x, gamma, dy):
    """For m = 2, x_hat = +-s with s^2 = var / (var + eps), and the compact formula reduces to
    dx_1 = -dx_2 = gamma / (2 std) * eps / (var + eps) * (dy_1 - dy_2), with no cancellation."""
    var = ((x[0] - x[1]) / 2) ** 2
    d1 = gamma / (2 * np.sqrt(var + EPS)) * (EPS / (var + EPS)) * (dy[0] - dy[1])
    return np.stack([d1, -d1])


@pytest.mark.parametrize("seed", range(5))
def test_batch_of_two_equals_closed_form_when_var_is_not_huge(seed):
    rng = np.random.default_rng(seed)
    x, gamma, beta, dy = bn_inputs(rng, (2, 8), 1e-2)
    _, got = bn_train_autograd(x, gamma, beta, dy)
    assert_ok(compare({"dx": got["dx"]}, {"dx": batch_of_two_dx(x, gamma, dy)}, rtol=RTOL))


def test_batch_of_two_identical_examples_is_finite_and_exact(rng):
    """Both examples equal: var = 0, x_hat = 0, dx = gamma (dy - mean dy) / sqrt(eps)."""
    row = rng.standard_normal(5)
    x, gamma, beta, dy = np.stack([row, row]), rng.standard_normal(5) + 1, rng.standard_normal(5), \
        rng.standard_normal((2, 5))
    y, got = bn_train_autograd(x, gamma, beta, dy)
    y_ref, ref = bn_train_formula(x, gamma, beta, dy)
    assert np.isfinite(y).all() and all(np.isfinite(g).all() for g in got.values())
    assert_ok(compare({"y": y, **got}, {"y": y_ref, **ref}, rtol=RTOL))
    assert_ok(compare({"dx": got["dx"]}, {"dx": batch_of_two_dx(x, gamma, dy)}, rtol=RTOL))


# ---------------------------------------------------------------------- edge cases of the variance

@pytest.mark.parametrize("value", [0.0, 0.7, -3e3])
def test_batch_norm_with_a_constant_channel(value, rng):
    """A channel of one repeated value (variance 0): y = beta there, everything finite, and autograd
    equals the formula (dx = gamma (dy - mean dy) / sqrt(eps) in that channel)."""
    x, gamma, beta, dy = bn_inputs(rng, (16, 4), 2.0)
    x[:, 2] = value
    y, got = bn_train_autograd(x, gamma, beta, dy)
    y_ref, ref = bn_train_formula(x, gamma, beta, dy)
    assert np.isfinite(y).all() and all(np.isfinite(g).all() for g in got.values())
    # y - beta = gamma xc / sqrt(eps), where xc = value - mean is round-off: a few ulp of the value
    ulp = np.finfo(np.float64).eps * max(1.0, abs(value))
    np.testing.assert_allclose(y[:, 2], beta[2], rtol=0, atol=8 * ulp * abs(gamma[2]) / np.sqrt(EPS))
    assert_ok(compare({"y": y, **got}, {"y": y_ref, **ref}, rtol=RTOL))
    dx2 = gamma[2] * (dy[:, 2] - dy[:, 2].mean()) / np.sqrt(EPS)
    np.testing.assert_allclose(got["dx"][:, 2], dx2, rtol=1e-12, atol=1e-12 * np.abs(dx2).max())


@pytest.mark.parametrize("shape", [(16, 4), (2, 4), (4, 2, 3, 3)], ids=str)
def test_batch_norm_with_variance_1e_12(shape, rng):
    x, gamma, beta, dy = bn_inputs(rng, shape, 1e-6)
    assert np.all(x.var(axis=axes_of(len(shape))) < 1e-11)
    y, got = bn_train_autograd(x, gamma, beta, dy)
    y_ref, ref = bn_train_formula(x, gamma, beta, dy)
    assert np.isfinite(y).all() and all(np.isfinite(g).all() for g in got.values())
    assert_ok(compare({"y": y, **got}, {"y": y_ref, **ref}, rtol=RTOL))


# ------------------------------------------------------------------------------- softmax, the seed

def test_notes_example_one_hot_loss_is_minus_log_y_hat_2(rng):
    """docs/course.md section 7: y = [0, 1, 0, 0] gives L = -log(y_hat_2) (the second class, index 1)."""
    logits = rng.standard_normal((1, 4))
    y_hat = np.exp(logits[0]) / np.exp(logits[0]).sum()
    for target in (np.array([[0.0, 1.0, 0.0, 0.0]]), np.array([1])):
        loss = F.cross_entropy(tg.Tensor(logits), target)
        np.testing.assert_allclose(loss.item(), -np.log(y_hat[1]), rtol=1e-14)


def test_one_hot_loss_is_minus_log_of_the_true_class_per_example(rng):
    logits, labels = rng.standard_normal((10, 6)) * 2, rng.integers(0, 6, 10)
    y_hat = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -np.log(y_hat[np.arange(10), labels])
    for target in (np.eye(6)[labels], labels):
        got = F.cross_entropy(tg.Tensor(logits), target, reduction="none").data
        np.testing.assert_allclose(got, expected, rtol=1e-13)
    np.testing.assert_allclose(F.cross_entropy(tg.Tensor(logits), labels).item(), expected.mean(), rtol=1e-13)


@pytest.mark.parametrize("m", [1, 4, 32])
def test_dz_is_y_hat_minus_y_over_m(m, rng):
    """docs/course.md section 7: backprop through softmax and cross-entropy together gives (y_hat - y) / m for
    the mean cost J, and y_hat - y per example (reduction sum)."""
    logits, labels = rng.standard_normal((m, 5)), rng.integers(0, 5, m)
    y_hat, y = np.exp(logits) / np.exp(logits).sum(1, keepdims=True), np.eye(5)[labels]
    for reduction, scale in (("mean", 1 / m), ("sum", 1.0)):
        z = tg.Tensor(logits, requires_grad=True)
        F.cross_entropy(z, labels, reduction=reduction).backward()
        np.testing.assert_allclose(z.grad.data, (y_hat - y) * scale, rtol=1e-13, atol=1e-16)


# ----------------------------------------------------------------------- softmax, numerical edges

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_logits_of_magnitude_1e4_give_finite_loss_and_gradients(dtype, rng):
    logits = np.concatenate([rng.standard_normal((6, 5)) * 1e4, [[1e4, 1e4 - 1, -1e4, 0, 5e3]]]).astype(dtype)
    labels = np.append(rng.integers(0, 5, 6), 1)
    z = tg.Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, labels, reduction="none")
    loss.sum().backward()
    assert loss.dtype == dtype and z.grad.dtype == dtype
    assert np.isfinite(loss.data).all() and np.isfinite(z.grad.data).all()
    # the truth from the same (rounded) logits in float64, by the shifted formulas
    z64 = logits.astype(np.float64)
    expected = np_losses(z64, np.eye(5)[labels])
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert_ok(compare({"loss": loss.data, "dlogits": z.grad.data},
                      {"loss": expected, "dlogits": analytic.softmax_cross_entropy_backward(z64, labels, "none")},
                      rtol=tol))
    assert z.softmax().data.sum(-1) == pytest.approx(np.ones(7), rel=1e-6)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-14)], ids=["float32", "float64"])
def test_small_loss_next_to_logits_of_magnitude_1e4_is_accurate(dtype, rtol):
    """Logits [1e4, 1e4 - 1, -1e4, 0, 5e3] (exact in float32) and label 1: L = 1 + log(1 + e^-1 + ...)."""
    logits = np.array([[1e4, 1e4 - 1, -1e4, 0, 5e3]], dtype)
    loss = F.cross_entropy(tg.Tensor(logits), np.array([1]), reduction="none")
    np.testing.assert_allclose(loss.data[0], 1 + np.log1p(np.exp(-1.0)), rtol=rtol)


@pytest.mark.parametrize("logit", [0.0, -3.0, 1e4])
def test_softmax_of_a_single_class(logit):
    z = tg.Tensor(np.full((3, 1), logit), requires_grad=True)
    np.testing.assert_array_equal(F.softmax(z).data, np.ones((3, 1)))
    np.testing.assert_array_equal(F.log_softmax(z).data, np.zeros((3, 1)))
    loss = F.cross_entropy(z, np.zeros(3, np.int64))
    loss.backward()
    assert loss.item() == 0.0
    np.testing.assert_array_equal(z.grad.data, np.zeros((3, 1)))


# ------------------------------------------------------------------------------------- NaN in input
# Documented behaviour (as PyTorch): NaN propagates to everything computed from it and nothing else.

def test_nan_propagates_to_its_channel_in_batch_norm_training(rng):
    x, gamma, beta, dy = bn_inputs(rng, (6, 3), 2.0)
    clean_y, clean = bn_train_autograd(x, gamma, beta, dy)
    x[2, 1] = np.nan
    y, got = bn_train_autograd(x, gamma, beta, dy)
    assert np.isnan(y[:, 1]).all() and np.isnan(got["dx"][:, 1]).all()
    assert np.isnan(got["dgamma"][1]) and got["dbeta"][1] == clean["dbeta"][1]  # dbeta = sum dy has no x in it
    others = [0, 2]
    np.testing.assert_array_equal(y[:, others], clean_y[:, others])
    np.testing.assert_array_equal(got["dx"][:, others], clean["dx"][:, others])
    np.testing.assert_array_equal(got["dgamma"][others], clean["dgamma"][others])


def test_nan_propagates_to_its_element_in_batch_norm_eval(rng):
    x, gamma, beta, dy = bn_inputs(rng, (6, 3), 2.0)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    clean_y, _ = bn_eval_autograd(x, gamma, beta, dy, rm, rv)
    x[2, 1] = np.nan
    y, got = bn_eval_autograd(x, gamma, beta, dy, rm, rv)
    nan = np.zeros(x.shape, bool)
    nan[2, 1] = True
    np.testing.assert_array_equal(np.isnan(y), nan)
    np.testing.assert_array_equal(y[~nan], clean_y[~nan])
    assert np.isfinite(got["dx"]).all()  # dx = gamma dy / std does not read x
    assert np.isnan(got["dgamma"][1]) and np.isfinite(got["dgamma"][[0, 2]]).all()


def test_nan_propagates_to_its_example_in_layer_norm_and_cross_entropy(rng):
    x = rng.standard_normal((5, 4))
    x[3, 2] = np.nan
    y = F.layer_norm(tg.Tensor(x), 4)
    np.testing.assert_array_equal(np.isnan(y.data).all(1), [False, False, False, True, False])
    assert np.isfinite(np.delete(y.data, 3, axis=0)).all()
    z = tg.Tensor(x, requires_grad=True)
    losses = F.cross_entropy(z, np.array([0, 1, 2, 3, 0]), reduction="none")
    np.testing.assert_array_equal(np.isnan(losses.data), [False, False, False, True, False])
    losses.sum().backward()
    np.testing.assert_array_equal(np.isnan(z.grad.data).any(1), [False, False, False, True, False])
    assert np.isnan(F.cross_entropy(tg.Tensor(x), np.array([0, 1, 2, 3, 0])).item())


@pytest.mark.parametrize("shape, target", [((4, 3), (1, 3)), ((4, 3), (3,)), ((2, 4, 3), (4, 1)), ((2, 4, 3), ()),
                                           ((4, 3), (4, 3)), ((2, 1, 3), (1, 1, 3))])
def test_sum_to_size_is_the_adjoint_of_broadcast_to(shape, target, rng):
    """<broadcast_to(v), g> = <v, sum_to_size(g)> for every v, g; the values are NumPy's sums."""
    g = tg.Tensor(rng.standard_normal(shape), requires_grad=True)
    v = rng.standard_normal(target)
    s = g.sum_to_size(target)
    assert s.shape == target
    np.testing.assert_allclose(float(np.sum(np.broadcast_to(v, shape) * g.data)), float(np.sum(v * s.data)), rtol=1e-13)
    assert gradcheck(lambda t: t.sum_to_size(target), [g])


def test_sum_to_size_rejects_a_shape_that_does_not_broadcast(rng):
    with pytest.raises(ValueError, match=r"sum_to_size: \(4, 3\) does not broadcast from \(2, 3\)"):
        tg.Tensor(rng.standard_normal((4, 3))).sum_to_size(2, 3)
