"""Cross-entropy with weight, ignore_index and label smoothing over (C,), (N, C) and (N, C, d1, ...)
logits; group norm; embedding. Each in float64 against a NumPy forward, autograd against the
hand-derived backward of tg.analytic (round-off), the hand-derived backward against central
differences, gradcheck and gradgradcheck; the modules; every error, raised before anything changes."""
import numpy as np
import pytest
from conftest import GRAD_TOL, assert_same, leaf, snap

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.check import compare, gradcheck, gradgradcheck, numerical_grad

RTOL = 1e-12     # autograd against the formulas, float64: round-off only
FD_RTOL = 1e-7   # against central differences with step 1e-6
REDUCTIONS = ["mean", "sum", "none"]


def assert_ok(report):
    assert report.ok, f"\n{report}"


# ------------------------------------------------------------------------------------ cross-entropy

def np_cross_entropy(z, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's cross_entropy written out in NumPy, position by position (classes in axis 1)."""
    ax = min(z.ndim - 1, 1)
    zl = np.moveaxis(z, ax, -1)
    c = zl.shape[-1]
    logp = zl - zl.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    w = np.ones(c) if weight is None else weight
    if t.shape == z.shape:
        y = (1 - label_smoothing) * np.moveaxis(t, ax, -1) + label_smoothing / c
        losses = -(w * y * logp).sum(-1)
        total = losses.size
    else:
        losses, total = np.zeros(t.shape), 0.0
        for pos in np.ndindex(t.shape):
            if t[pos] != ignore_index:
                k = t[pos]
                losses[pos] = (1 - label_smoothing) * -w[k] * logp[pos][k] - label_smoothing / c * (w * logp[pos]).sum()
                total += w[k]
    return losses.sum() / total if reduction == "mean" else losses.sum() if reduction == "sum" else losses


def _labels(rng, shape, c, ignore=None, some=0.3):
    t = rng.integers(0, c, shape)
    if ignore is not None:
        t = np.where(rng.random(shape) < some, ignore, t)
        t.flat[0] = ignore  # at least one ignored
        if t.size > 1:
            t.flat[-1] = 0 if ignore != 0 else 1  # and at least one kept
    return t


def _probs(rng, shape):
    ax = min(len(shape) - 1, 1)
    return np.moveaxis(rng.dirichlet(np.ones(shape[ax]), shape[:ax] + shape[ax + 1:]), -1, ax)


W4 = np.array([0.3, 2.0, 1.0, 0.7])
W3 = np.array([1.5, 0.2, 0.9])
# name: (logits shape, target kind, keyword arguments); kind "indices", "ignore <i>" (some targets are i), "probs"
CE_CASES = {
    "indices": ((6, 4), "indices", {}),
    "indices, weight": ((6, 4), "indices", {"weight": W4}),
    "ignore -100 (some)": ((6, 4), "ignore -100", {}),
    "ignore_index=1, a class (some)": ((7, 4), "ignore 1", {"ignore_index": 1}),
    "ignore, weight": ((7, 4), "ignore 2", {"ignore_index": 2, "weight": W4}),
    "smoothing": ((6, 4), "indices", {"label_smoothing": 0.2}),
    "smoothing, weight": ((6, 4), "indices", {"label_smoothing": 0.3, "weight": W4}),
    "smoothing, weight, ignore": ((7, 4), "ignore 0", {"label_smoothing": 0.1, "weight": W4, "ignore_index": 0}),
    "smoothing 1": ((5, 4), "indices", {"label_smoothing": 1.0, "weight": W4}),
    "probabilities": ((6, 4), "probs", {}),
    "probabilities, smoothing": ((6, 4), "probs", {"label_smoothing": 0.25}),
    "probabilities, smoothing, weight": ((6, 4), "probs", {"label_smoothing": 0.25, "weight": W4}),
    "(C,) one position, weight, smoothing": ((4,), "indices", {"weight": W4, "label_smoothing": 0.2}),
    "(C,) probabilities, weight": ((4,), "probs", {"weight": W4}),
    "(N, C, d1)": ((3, 3, 5), "indices", {"weight": W3}),
    "(N, C, d1, d2) ignore, smoothing, weight": ((2, 3, 3, 4), "ignore -100",
                                                 {"weight": W3, "label_smoothing": 0.15}),
    "(N, C, d1, d2) probabilities, smoothing, weight": ((2, 3, 3, 4), "probs", {"weight": W3, "label_smoothing": 0.1}),
}


def ce_case(name, rng):
    shape, kind, kw = CE_CASES[name]
    ax = min(len(shape) - 1, 1)
    ishape = shape[:ax] + shape[ax + 1:]
    if kind == "probs":
        t = _probs(rng, shape)
    else:
        t = _labels(rng, ishape, shape[ax], None if kind == "indices" else int(kind.split()[1]))
    return rng.standard_normal(shape) * 2, t, dict(kw)


def _upstream(rng, shape):
    return rng.standard_normal(shape) if shape else np.array(1.0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", CE_CASES)
def test_cross_entropy_value_and_autograd_equal_the_formulas(name, reduction, rng):
    z, t, kw = ce_case(name, rng)
    logits = tg.Tensor(z, requires_grad=True)
    loss = F.cross_entropy(logits, t, reduction=reduction, **kw)
    g = _upstream(rng, loss.shape)
    loss.backward(tg.Tensor(g))
    ref = analytic.softmax_cross_entropy_backward(z, t, reduction, **kw)
    ax = min(z.ndim - 1, 1)
    ref = ref * (np.expand_dims(g, ax) if reduction == "none" and z.ndim > 1 else g)  # d of sum(g * losses)
    assert loss.dtype == np.float64 and loss.shape == np.shape(np_cross_entropy(z, t, reduction=reduction, **kw))
    assert_ok(compare({"loss": loss.data, "dlogits": logits.grad.data},
                      {"loss": np_cross_entropy(z, t, reduction=reduction, **kw), "dlogits": ref}, rtol=RTOL))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", CE_CASES)
def test_cross_entropy_analytic_equals_finite_differences(name, reduction, rng):
    z, t, kw = ce_case(name, rng)
    ref = analytic.softmax_cross_entropy_backward(z, t, reduction, **kw)
    if reduction == "none":  # each position's gradient of its own loss: the sum's gradient
        numeric = numerical_grad(lambda a: F.cross_entropy(a, t, reduction="sum", **kw), [tg.Tensor(z)])[0]
    else:
        numeric = numerical_grad(lambda a: F.cross_entropy(a, t, reduction=reduction, **kw), [tg.Tensor(z)])[0]
    assert_ok(compare({"dlogits": ref}, {"dlogits": numeric}, rtol=FD_RTOL))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", CE_CASES)
def test_cross_entropy_gradcheck_and_gradgradcheck(name, reduction, rng):
    """Over the logits, the weight (a Tensor: the weighted mean's denominator depends on it) and a
    probability target."""
    z, t, kw = ce_case(name, rng)
    w = kw.pop("weight", None)
    inputs = [tg.Tensor(z, requires_grad=True)]
    inputs += [] if w is None else [tg.Tensor(w, requires_grad=True)]
    inputs += [tg.Tensor(t, requires_grad=True)] if t.dtype.kind == "f" else []

    def f(a, *rest):
        rest = list(rest)
        weight = rest.pop(0) if w is not None else None
        return F.cross_entropy(a, rest.pop(0) if rest else t, weight, reduction=reduction, **kw)
    assert gradcheck(f, inputs, **GRAD_TOL)
    assert gradgradcheck(f, inputs, **GRAD_TOL)


def test_cross_entropy_smoothing_is_pytorchs_weighted_formula(rng):
    """With weight w and smoothing eps, PyTorch's mean is
    sum_i [(1-eps) w_yi nll_i + eps/C sum_c w_c (-log p_ic)] / sum_i w_yi: the smoothing term is
    divided by the targets' weights too (aten/src/ATen/native/LossNLL.cpp,
    cross_entropy_loss_label_smoothing), not by N nor by C * sum w."""
    z, t = rng.standard_normal((5, 4)), np.array([0, 1, 1, 3, 2])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    nll = -(W4[t] * logp[np.arange(5), t]).sum() / W4[t].sum()
    smooth = -(logp * W4).sum() / W4[t].sum()
    got = F.cross_entropy(tg.Tensor(z), t, W4, label_smoothing=0.4).item()
    np.testing.assert_allclose(got, 0.6 * nll + 0.4 / 4 * smooth, rtol=1e-14)


def test_cross_entropy_ignored_positions_add_nothing(rng):
    """An ignored position's loss and gradient are exactly 0, even with infinite or NaN logits there,
    and it leaves the mean's denominator."""
    z = rng.standard_normal((4, 3))
    z[1] = [np.inf, np.nan, -np.inf]
    t = np.array([2, -100, 0, 1])
    logits = tg.Tensor(z, requires_grad=True)
    losses = F.cross_entropy(logits, t, reduction="none", label_smoothing=0.1)
    assert losses.data[1] == 0.0 and np.isfinite(losses.data).all()
    mean = F.cross_entropy(logits, t, label_smoothing=0.1)
    np.testing.assert_allclose(mean.item(), losses.data.sum() / 3, rtol=1e-15)
    mean.backward()
    np.testing.assert_array_equal(logits.grad.data[1], 0.0)
    keep = [0, 2, 3]
    np.testing.assert_allclose(mean.item(), F.cross_entropy(tg.Tensor(z[keep]), t[keep], label_smoothing=0.1).item(),
                               rtol=1e-15)


@pytest.mark.parametrize("kw", [{}, {"weight": W4}, {"label_smoothing": 0.2}, {"ignore_index": 3, "weight": W4}],
                         ids=str)
def test_cross_entropy_all_ignored_is_nan_mean_zero_sum(kw):
    """As PyTorch: every target ignored gives mean NaN (0 / 0), sum 0 and zero losses, and zero gradients
    for sum and none."""
    ignore = kw.get("ignore_index", -100)
    t = np.full(3, ignore)
    z = tg.Tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.isnan(F.cross_entropy(z, t, **kw).item())
    total = F.cross_entropy(z, t, reduction="sum", **kw)
    total.backward()
    assert total.item() == 0.0
    np.testing.assert_array_equal(z.grad.data, 0.0)
    np.testing.assert_array_equal(F.cross_entropy(z, t, reduction="none", **kw).data, np.zeros(3))


def test_cross_entropy_spatial_equals_flattened_positions(rng):
    """(N, C, d1, d2) logits are N * d1 * d2 positions of C classes: the same loss as (N*d1*d2, C)."""
    z, t = rng.standard_normal((2, 3, 4, 5)), _labels(rng, (2, 4, 5), 3, ignore=-100)
    flat_z, flat_t = np.moveaxis(z, 1, -1).reshape(-1, 3), t.reshape(-1)
    for kw in ({}, {"weight": W3, "label_smoothing": 0.2}):
        for reduction in REDUCTIONS:
            a = F.cross_entropy(tg.Tensor(z), t, reduction=reduction, **kw).data
            b = F.cross_entropy(tg.Tensor(flat_z), flat_t, reduction=reduction, **kw).data
            np.testing.assert_allclose(a, b.reshape(a.shape), rtol=1e-14)


def test_cross_entropy_weight_as_ndarray_takes_the_logits_dtype(rng):
    z = tg.Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(z, np.array([0, 1, 3]), W4, label_smoothing=0.1)
    loss.backward()
    assert loss.dtype == np.float32 and z.grad.dtype == np.float32


def test_cross_entropy_takes_weight_third_as_pytorch(rng):
    """PyTorch's signature: a reduction passed where weight goes is an error that says so."""
    z, t = tg.Tensor(rng.standard_normal((3, 4))), np.array([0, 1, 3])
    for call in (lambda: F.cross_entropy(z, t, "sum"), lambda: nn.CrossEntropyLoss("sum")):
        with pytest.raises(TypeError, match="reduction='sum' by keyword"):
            call()


def test_cross_entropy_loss_module_passes_everything_through(rng):
    z, t = tg.Tensor(rng.standard_normal((2, 4, 3))), _labels(rng, (2, 3), 4, ignore=1)
    kw = {"weight": W4, "ignore_index": 1, "reduction": "sum", "label_smoothing": 0.3}
    m = nn.CrossEntropyLoss(**kw)
    np.testing.assert_array_equal(m(z, t).data, F.cross_entropy(z, t, **kw).data)
    assert list(m.state_dict()) == ["weight"] and m.parameters() == []
    np.testing.assert_array_equal(m.state_dict()["weight"], W4)
    assert nn.CrossEntropyLoss().state_dict() == {}
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(m) == "CrossEntropyLoss(ignore_index=1, reduction='sum', label_smoothing=0.3)"
    W4[0] = 5.0  # the module holds a copy
    try:
        assert m.weight.data[0] == 0.3
    finally:
        W4[0] = 0.3


# ------------------------------------------------------------------------------------- group norm

# (no group of 2 values: there x_hat is +-1 and dx a tiny difference of large terms, ill-conditioned)
GN_CASES = [((4, 8), 2), ((3, 6, 5), 2), ((2, 4, 3, 3), 1), ((2, 4, 3, 3), 4), ((3, 6, 2, 2), 3), ((1, 4, 2), 2)]
GN_IDS = [f"{s}-G{g}" for s, g in GN_CASES]
EPS = 1e-5


def np_group_norm(x, g, gamma, beta, eps=EPS):
    n, c = x.shape[:2]
    xg = x.reshape(n, g, -1)
    x_hat = ((xg - xg.mean(2, keepdims=True)) / np.sqrt(xg.var(2, keepdims=True) + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return x_hat * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("shape, g", GN_CASES, ids=GN_IDS)
def test_group_norm_autograd_equals_the_formula(shape, g, rng):
    x, gamma, beta = leaf(rng, shape), leaf(rng, shape[1:2], "pos"), leaf(rng, shape[1:2])
    y = F.group_norm(x, g, gamma, beta, EPS)
    dy = rng.standard_normal(shape)
    y.backward(tg.Tensor(dy))
    y_ref, cache = analytic.groupnorm_forward(x.data, gamma.data, beta.data, g, EPS)
    dx, dgamma, dbeta = analytic.groupnorm_backward(dy, cache)
    assert_ok(compare({"y": y.data, "dx": x.grad.data, "dgamma": gamma.grad.data, "dbeta": beta.grad.data},
                      {"y": y_ref, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}, rtol=RTOL))
    assert_ok(compare({"y": y_ref}, {"y": np_group_norm(x.data, g, gamma.data, beta.data)}, rtol=RTOL))


@pytest.mark.parametrize("shape, g", GN_CASES, ids=GN_IDS)
def test_group_norm_analytic_equals_finite_differences(shape, g, rng):
    x, gamma, beta = rng.standard_normal(shape), rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    dy = rng.standard_normal(shape)
    got = analytic.groupnorm_backward(dy, analytic.groupnorm_forward(x, gamma, beta, g, EPS)[1])
    numeric = numerical_grad(lambda *a: F.group_norm(a[0], g, a[1], a[2], EPS),
                             [tg.Tensor(x), tg.Tensor(gamma), tg.Tensor(beta)], grad_output=dy)
    names = ("dx", "dgamma", "dbeta")
    assert_ok(compare(dict(zip(names, got)), dict(zip(names, numeric)), rtol=FD_RTOL))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape, g", GN_CASES, ids=GN_IDS)
def test_group_norm_gradcheck_and_gradgradcheck(shape, g, affine, rng):
    inputs = [leaf(rng, shape)] + ([leaf(rng, shape[1:2], "pos"), leaf(rng, shape[1:2])] if affine else [])
    def f(x, *wb):
        return F.group_norm(x, g, *wb)
    assert gradcheck(f, inputs, **GRAD_TOL)
    assert gradgradcheck(f, inputs, **GRAD_TOL)


def test_group_norm_with_one_group_is_layer_norm_over_c_h_w(rng):
    x = leaf(rng, (3, 4, 2, 5))
    a, b = F.group_norm(x, 1), F.layer_norm(x, (4, 2, 5))
    dy = rng.standard_normal(x.shape)
    (ga,), (gb,) = tg.grad(a, x, tg.Tensor(dy)), tg.grad(b, x, tg.Tensor(dy))
    assert_ok(compare({"y": a.data, "dx": ga.data}, {"y": b.data, "dx": gb.data}, rtol=RTOL))


def test_group_norm_with_c_groups_normalizes_each_channel_of_each_example(rng):
    """G = C is instance norm: each (n, c) slice standardized over H, W on its own."""
    x = rng.standard_normal((2, 3, 4, 5)) * 3 + 1
    y = F.group_norm(tg.Tensor(x), 3).data
    ref = (x - x.mean((2, 3), keepdims=True)) / np.sqrt(x.var((2, 3), keepdims=True) + EPS)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-14)


def test_group_norm_records_the_standardize_graph(rng):
    """The same named stages as batch norm and layer norm (mu, xc, var, std, x_hat)."""
    x = leaf(rng, (2, 4, 3))
    y = F.group_norm(x, 2)
    seen, stack = set(), [y]
    while stack:
        t = stack.pop()
        seen.add(t.name)
        stack += [p for p in (t._ctx.parents if t._ctx is not None else ()) if isinstance(p, tg.Tensor)]
    assert set(F.STAGES) <= seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_module(dtype, rng):
    m = nn.GroupNorm(2, 6, dtype=dtype)
    assert [k for k, _ in m.named_parameters()] == ["weight", "bias"] and list(m.state_dict()) == ["weight", "bias"]
    assert m.weight.dtype == dtype and (m.weight.data == 1).all() and (m.bias.data == 0).all()
    m.weight.data = rng.uniform(0.5, 2, 6).astype(dtype)
    x = tg.Tensor(rng.standard_normal((3, 6, 4)).astype(dtype))
    np.testing.assert_array_equal(m(x).data, F.group_norm(x, 2, m.weight, m.bias).data)
    assert m(x).dtype == dtype
    assert repr(m) == "GroupNorm(2, 6, eps=1e-05, affine=True)"
    bare = nn.GroupNorm(3, 6, eps=1e-3, affine=False)
    assert bare.parameters() == [] and bare.weight is None
    np.testing.assert_array_equal(bare(x).data, F.group_norm(x, 3, eps=1e-3).data)


# -------------------------------------------------------------------------------------- embedding

@pytest.mark.parametrize("wrap", [np.asarray, tg.Tensor], ids=["ndarray", "Tensor"])
@pytest.mark.parametrize("idx_shape", [(), (5,), (2, 3)], ids=str)
def test_embedding_values_and_accumulating_gradient(idx_shape, wrap, rng):
    w = leaf(rng, (4, 3))
    idx = rng.integers(0, 4, idx_shape)
    if idx.size > 1:
        idx.flat[:2] = 2  # a repeated index
    out = F.embedding(wrap(idx), w)
    np.testing.assert_array_equal(out.data, w.data[idx])
    assert out.shape == (*idx_shape, 3)
    dy = rng.standard_normal(out.shape)
    out.backward(tg.Tensor(dy))
    expected = np.zeros((4, 3))
    np.add.at(expected, idx, dy)  # each row of dy adds into its index's row: repeats accumulate
    np.testing.assert_allclose(w.grad.data, expected, rtol=1e-15)
    if idx.size > 1:
        np.testing.assert_allclose(w.grad.data[2], dy.reshape(-1, 3)[idx.reshape(-1) == 2].sum(0), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int64])
def test_embedding_any_integer_dtype_gradcheck(dtype, rng):
    idx = np.array([[0, 3, 3], [1, 0, 3]], dtype)
    w = leaf(rng, (4, 2))
    assert gradcheck(lambda a: F.embedding(idx, a), [w], **GRAD_TOL)
    assert gradgradcheck(lambda a: F.embedding(idx, a).square(), [w], **GRAD_TOL)


def test_embedding_module(rng):
    m = nn.Embedding(1000, 50, rng=np.random.default_rng(0))
    assert m.weight.shape == (1000, 50) and m.weight.dtype == np.float32
    assert list(m.state_dict()) == ["weight"] and repr(m) == "Embedding(1000, 50)"
    assert abs(m.weight.data.mean()) < 0.01 and abs(m.weight.data.std() - 1) < 0.01  # PyTorch's N(0, 1)
    np.testing.assert_array_equal(nn.Embedding(1000, 50, rng=np.random.default_rng(0)).weight.data, m.weight.data)
    idx = np.array([[3, 999], [3, 0]])
    np.testing.assert_array_equal(m(idx).data, m.weight.data[idx])
    m64 = nn.Embedding(5, 2, dtype=np.float64)
    assert m64.weight.dtype == np.float64
    m64(tg.Tensor(np.array([1, 1, 4]))).sum().backward()
    np.testing.assert_array_equal(m64.weight.grad.data, [[0, 0], [2, 2], [0, 0], [0, 0], [1, 1]])


# ----------------------------------------------------------------------------------------- errors

def _ce(logits_shape, target, **kw):
    return lambda z: F.cross_entropy(z, target, **kw), logits_shape


ERRORS = {
    # name: (call on a float64 leaf, its shape), exception, message pattern
    "CE weight of the wrong length": (_ce((3, 4), np.array([0, 1, 2]), weight=W3), tg.ShapeError,
                                      r"^cross_entropy: weight must have shape \(C,\) = \(4,\).*got \(3,\)"),
    "CE weight (1, 4)": (_ce((3, 4), np.array([0, 1, 2]), weight=W4[None]), tg.ShapeError,
                         r"weight must have shape \(C,\) = \(4,\).*got \(1, 4\)"),
    "CE weight int Tensor": (_ce((3, 4), np.array([0, 1, 2]), weight=tg.Tensor(np.ones(4, np.int64))), TypeError,
                             r"^cross_entropy: weight must hold floating numbers, got int64"),
    "CE label_smoothing 1.5": (_ce((3, 4), np.array([0, 1, 2]), label_smoothing=1.5), ValueError,
                               r"^cross_entropy: label_smoothing must be a number in \[0, 1\], got 1.5"),
    "CE label_smoothing -0.1": (_ce((3, 4), np.array([0, 1, 2]), label_smoothing=-0.1), ValueError,
                                r"label_smoothing must be a number in \[0, 1\], got -0.1"),
    "CE label_smoothing '0.1'": (_ce((3, 4), np.array([0, 1, 2]), label_smoothing="0.1"), ValueError,
                                 r"label_smoothing must be a number in \[0, 1\], got '0.1'"),
    "CE ignore_index 1.0": (_ce((3, 4), np.array([0, 1, 2]), ignore_index=1.0), TypeError,
                            r"^cross_entropy: ignore_index must be an int, got float 1.0"),
    "CE ignore_index with probabilities": (_ce((3, 4), np.full((3, 4), 0.25), ignore_index=0), ValueError,
                                           r"^cross_entropy: ignore_index=0 is not supported for probability"),
    "CE label 4, ignore_index 3": (_ce((3, 4), np.array([0, 4, 3]), ignore_index=3), IndexError,
                                   r"^cross_entropy: label 4 out of range for 4 classes \(at index \(1,\)\)"),
    "CE label -100, ignore_index 3": (_ce((3, 4), np.array([0, -100, 3]), ignore_index=3), IndexError,
                                      r"label -100 out of range for 4 classes \(at index \(1,\)\)"),
    "CE (N, C, d1, d2) label out of range": (_ce((2, 3, 2, 2), np.array([[[0, 1], [2, 3]], [[0, 0], [0, 0]]])),
                                             IndexError,
                                             r"label 3 out of range for 3 classes \(at index \(0, 1, 1\)\)"),
    "CE (N, C, d1) target (N,)": (_ce((2, 3, 4), np.zeros(2, np.int64)), tg.ShapeError,
                                  r"^cross_entropy: target \(2,\) fits neither class indices \(2, 4\) nor "
                                  r"probabilities \(2, 3, 4\)"),
    "CE (N, C, d1) target (N, C)": (_ce((2, 3, 4), np.zeros((2, 3), np.int64)), tg.ShapeError,
                                    r"target \(2, 3\) fits neither class indices \(2, 4\)"),
    "CE 0-d logits": (_ce((), np.int64(0)), tg.ShapeError,
                      r"^cross_entropy: logits must be \(C,\), \(N, C\) or \(N, C, d1, \.\.\.\), got \(\)"),
    "CE reduction in weight's place": (_ce((3, 4), np.array([0, 1, 2]), weight="sum"), TypeError,
                                       r"^cross_entropy: weight must be .* reduction='sum' by keyword"),
    "group_norm 6 channels, 4 groups": (lambda x: F.group_norm(x, 4), (2, 6, 3), tg.ShapeError,
                                        r"^group_norm: the 6 channels of input \(2, 6, 3\).*num_groups=4"),
    "group_norm 0 groups": (lambda x: F.group_norm(x, 0), (2, 6), tg.ShapeError, r"num_groups=0"),
    "group_norm 1-D input": (lambda x: F.group_norm(x, 1), (6,), tg.ShapeError,
                             r"^group_norm: expected input \(N, C, \.\.\.\) with at least 2 dims, got \(6,\)"),
    "group_norm weight (4,)": (lambda x: F.group_norm(x, 2, tg.Tensor(np.ones(4))), (2, 6), tg.ShapeError,
                               r"^group_norm: weight must have shape \(6,\).*got \(4,\)"),
    "group_norm bias (6, 1)": (lambda x: F.group_norm(x, 2, None, tg.Tensor(np.ones((6, 1)))), (2, 6),
                               tg.ShapeError, r"^group_norm: bias must have shape \(6,\)"),
    "group_norm num_groups 2.0": (lambda x: F.group_norm(x, 2.0), (2, 6), TypeError,
                                  r"^group_norm: num_groups must be an int, got float"),
    "embedding index 4 of 4": (lambda w: F.embedding(np.array([[0, 1], [4, 2]]), w), (4, 3), IndexError,
                               r"^embedding: index 4 out of range for 4 embeddings \(at position \(1, 0\) of "
                               r"indices \(2, 2\)\)"),
    "embedding index -1": (lambda w: F.embedding(tg.Tensor(np.array([0, -1])), w), (4, 3), IndexError,
                           r"^embedding: index -1 out of range for 4 embeddings \(at position \(1,\)"),
    "embedding float indices": (lambda w: F.embedding(np.array([0.0, 1.0]), w), (4, 3), TypeError,
                                r"^embedding: indices must be integers, got dtype float64"),
    "embedding 1-D weight": (lambda w: F.embedding(np.array([0]), w), (4,), tg.ShapeError,
                             r"^embedding: weight must be 2-D \(num_embeddings, embedding_dim\), got \(4,\)"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_clear_and_change_nothing(name, rng):
    *call, exc, pattern = ERRORS[name]
    fn, shape = call[0] if len(call) == 1 else call
    x = leaf(rng, shape)
    before = snap(x)
    with pytest.raises(exc, match=pattern):
        fn(x)
    assert_same(snap(x), before, name)


def test_int_input_to_group_norm_is_not_implemented():
    with pytest.raises(NotImplementedError, match=r"group_norm: input of dtype int64 is not supported"):
        F.group_norm(tg.Tensor(np.zeros((2, 4), np.int64)), 2)


@pytest.mark.parametrize("make, exc, pattern", [
    (lambda: nn.GroupNorm(4, 6), ValueError, r"^GroupNorm: num_channels=6 must be divisible by num_groups=4"),
    (lambda: nn.GroupNorm(0, 6), ValueError, r"num_groups=0"),
    (lambda: nn.GroupNorm(2, -2), ValueError, r"^GroupNorm: num_channels must be >= 0, got -2"),
    (lambda: nn.Embedding(-1, 3), ValueError, r"^Embedding: num_embeddings must be >= 0, got -1"),
    (lambda: nn.Embedding(3, 2.5), TypeError, r"^Embedding: embedding_dim must be an int, got float"),
    (lambda: nn.CrossEntropyLoss(reduction="avg"), ValueError, r"^CrossEntropyLoss: reduction must be"),
    (lambda: nn.CrossEntropyLoss("sum"), TypeError, r"^CrossEntropyLoss: weight must be .* reduction='sum' by keyword"),
], ids=["GroupNorm(4, 6)", "GroupNorm(0, 6)", "GroupNorm(2, -2)", "Embedding(-1, 3)", "Embedding(3, 2.5)",
        "CrossEntropyLoss avg", "CrossEntropyLoss reduction in weight's place"])
def test_module_construction_errors(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_group_norm_module_wrong_channels_is_a_clear_error(rng):
    m = nn.GroupNorm(2, 6)
    with pytest.raises(tg.ShapeError, match=r"group_norm: weight must have shape \(4,\)"):
        m(tg.Tensor(rng.standard_normal((2, 4, 3))))
