"""nn.BatchNorm1d / BatchNorm2d / LayerNorm / CrossEntropyLoss as modules: the running statistics
(replayed exactly in NumPy, and converging to the population's), the seed's facts (BN can be the
identity; a bias before BN is redundant; eval mode is per example), PyTorch's switches (momentum=None,
affine, track_running_stats, state_dict), bad input (exact errors, state unchanged), NaN; and, when
PyTorch is installed, the same modules against torch to ~1e-12 in float64."""
import numpy as np
import pytest
from conftest import assert_close

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.check import compare

F64 = np.float64
EPS = 1e-5
RTOL = 1e-12
U = np.finfo(np.float64).eps


def axes_of(ndim: int) -> tuple[int, ...]:
    return (0,) + tuple(range(2, ndim))


def assert_ok(report):
    assert report.ok, "\n" + str(report)


def bn_module(kind: str, c: int, **kw):
    return (nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d)(c, dtype=F64, **kw)


def batch(rng, shape, scale=2.0, shift=1.0):
    return tg.Tensor(rng.standard_normal(shape) * scale + shift)


def snapshot(m: nn.Module) -> dict:
    return {k: v.copy() for k, v in m.state_dict().items()}


def assert_same_state(m: nn.Module, before: dict):
    after = m.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype, k
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


# ------------------------------------------------------------------------ the running statistics

SHAPES = {"1d (N, C)": ("1d", [(8, 4), (5, 4), (16, 4), (2, 4)]),
          "1d (N, C, L)": ("1d", [(4, 4, 6), (3, 4, 2), (1, 4, 5)]),
          "2d (N, C, H, W)": ("2d", [(2, 4, 3, 3), (5, 4, 2, 1), (1, 4, 2, 2)])}


@pytest.mark.parametrize("momentum", [0.1, 0.3, None], ids=str)
@pytest.mark.parametrize("name", SHAPES)
def test_running_statistics_replayed_in_numpy(name, momentum, rng):
    """running = (1 - momentum) running + momentum * stat, stat = the batch mean and the UNBIASED
    batch variance over N (and L, H, W); momentum=None is the cumulative mean 1/k; the batch is still
    normalized with the biased variance."""
    kind, shapes = SHAPES[name]
    bn = bn_module(kind, 4, momentum=momentum)
    rm, rv = np.zeros(4), np.ones(4)
    for k, shape in enumerate(shapes, start=1):
        x = batch(rng, shape)
        y = bn(x)
        axes = axes_of(len(shape))
        a = 1 / k if momentum is None else momentum
        rm = (1 - a) * rm + a * x.data.mean(axis=axes)
        rv = (1 - a) * rv + a * x.data.var(axis=axes, ddof=1)
        assert_ok(compare({"y": y.data}, {"y": analytic.batchnorm_forward(x.data, np.ones(4), np.zeros(4), EPS,
                                                                          axes)[0]}, rtol=RTOL))
        assert_ok(compare({"running_mean": bn.running_mean.data, "running_var": bn.running_var.data},
                          {"running_mean": rm, "running_var": rv}, rtol=RTOL))
        assert bn.num_batches_tracked.data.dtype == np.int64 and int(bn.num_batches_tracked.data) == k
    assert bn.running_mean.dtype == F64 and not bn.running_mean.requires_grad and bn.running_mean.grad is None


def test_running_averages_converge_to_the_population_statistics():
    """docs/course.md section 5 with momentum 0.1 (the notes' EWA beta = 0.9): after many mini-batches from a
    fixed distribution, running_mean and running_var estimate the population mean and variance. An
    EWA with weight a of i.i.d. terms of variance s^2 has the stationary variance s^2 a / (2 - a);
    over 64 channels every standardized error stays within 5 sd and their mean within 5 / 8."""
    rng = np.random.default_rng(7)
    C, m, steps, a = 64, 4, 400, 0.1
    mu, sigma = rng.uniform(-5, 5, C), rng.uniform(0.5, 3, C)
    bn = nn.BatchNorm1d(C, momentum=a, dtype=F64)
    biased = np.ones(C)  # what the biased variance would give: must be told apart by the same test
    for _ in range(steps):
        x = rng.standard_normal((m, C)) * sigma + mu
        bn(tg.Tensor(x))
        biased = (1 - a) * biased + a * x.var(axis=0)
    shrink = np.sqrt(a / (2 - a))
    z_mean = (bn.running_mean.data - mu) / (sigma / np.sqrt(m) * shrink)
    sd_var = sigma ** 2 * np.sqrt(2 / (m - 1)) * shrink  # Var of the unbiased s^2 of m normals: 2 sigma^4 / (m-1)
    z_var, z_biased = (bn.running_var.data - sigma ** 2) / sd_var, (biased - sigma ** 2) / sd_var
    assert np.abs(z_mean).max() < 5 and abs(z_mean.mean()) < 5 / 8
    assert np.abs(z_var).max() < 5 and abs(z_var.mean()) < 5 / 8
    assert z_biased.mean() < -5 / 8  # the test has the power to see the biased (1/m) variance


def test_momentum_none_is_the_exact_mean_of_the_batch_statistics():
    rng = np.random.default_rng(11)
    C, m, steps = 6, 5, 300
    mu, sigma = rng.uniform(-3, 3, C), rng.uniform(0.5, 2, C)
    bn = nn.BatchNorm1d(C, momentum=None, dtype=F64)
    means, variances = [], []
    for _ in range(steps):
        x = rng.standard_normal((m, C)) * sigma + mu
        bn(tg.Tensor(x))
        means.append(x.mean(axis=0))
        variances.append(x.var(axis=0, ddof=1))
    assert int(bn.num_batches_tracked.data) == steps
    assert_ok(compare({"running_mean": bn.running_mean.data, "running_var": bn.running_var.data},
                      {"running_mean": np.mean(means, axis=0), "running_var": np.mean(variances, axis=0)}, rtol=RTOL))
    # ... and so converges like a plain average of 300 batches: within 5 standard errors
    assert np.all(np.abs(bn.running_mean.data - mu) < 5 * sigma / np.sqrt(m * steps))
    assert np.all(np.abs(bn.running_var.data - sigma ** 2) < 5 * sigma ** 2 * np.sqrt(2 / ((m - 1) * steps)))


@pytest.mark.parametrize("kind, shape", [("1d", (12, 5)), ("1d", (6, 5, 4)), ("2d", (4, 5, 3, 2))], ids=str)
def test_eval_on_a_batch_of_one_equals_eval_on_the_whole_batch(kind, shape, rng):
    """docs/course.md section 5: at test time each example is normalized with the running statistics alone,
    so it does not matter which others share its batch; eval mode changes no state."""
    bn = bn_module(kind, 5)
    bn.weight.data[...] = rng.standard_normal(5) + 1
    bn.bias.data[...] = rng.standard_normal(5)
    for _ in range(3):
        bn(batch(rng, shape))
    bn.eval()
    before = snapshot(bn)
    x = batch(rng, shape)
    whole = bn(x).data
    for i in range(shape[0]):
        np.testing.assert_array_equal(bn(tg.Tensor(x.data[i:i + 1])).data, whole[i:i + 1])
    y_ref = analytic.batchnorm_eval_forward(x.data, bn.weight.data, bn.bias.data, bn.running_mean.data,
                                            bn.running_var.data, EPS, axes_of(len(shape)))[0]
    assert_ok(compare({"y": whole}, {"y": y_ref}, rtol=RTOL))
    assert_same_state(bn, before)
    bn.train()
    assert not np.allclose(bn(tg.Tensor(x.data[:2])).data, whole[:2])  # training mode is not per example


# --------------------------------------------------------------------------------- the seed's facts

@pytest.mark.parametrize("kind, shape, scale, shift", [("1d", (16, 5), 3.0, 2.0), ("1d", (7, 3, 4), 1e3, -1e2),
                                                       ("2d", (2, 3, 4, 4), 1e-2, 1.0), ("1d", (2, 6), 1.0, 0.0)],
                         ids=str)
def test_batch_norm_can_be_the_identity(kind, shape, scale, shift, rng):
    """docs/course.md section 2: with gamma = sqrt(sigma^2 + eps) and beta = mu, z_tilde = z (to round-off)."""
    x = batch(rng, shape, scale, shift)
    axes = axes_of(len(shape))
    bn = bn_module(kind, shape[1])
    bn.weight.data[...] = np.sqrt(x.data.var(axis=axes) + EPS)
    bn.bias.data[...] = x.data.mean(axis=axes)
    assert_ok(compare({"y": bn(x).data}, {"y": x.data}, rtol=16 * U))


def test_a_bias_before_batch_norm_gets_zero_gradient(rng):
    """docs/course.md section 2: mean subtraction cancels b[l], so dJ/db = sum_i dz_tilde-backprop = 0:
    the bias of Linear -> BatchNorm1d is redundant (beta takes its place). Without batch norm the
    same bias is not."""
    def model(bn: bool):
        init = np.random.default_rng(3)  # the same Linear weights with and without batch norm
        layers = [nn.Linear(6, 5, dtype=F64, rng=init)] + ([nn.BatchNorm1d(5, dtype=F64)] if bn else []) + \
                 [nn.ReLU(), nn.Linear(5, 3, dtype=F64, rng=init)]
        return nn.Sequential(*layers)

    x, labels = tg.Tensor(rng.standard_normal((32, 6))), rng.integers(0, 3, 32)
    for with_bn in (True, False):
        net = model(with_bn)
        F.cross_entropy(net(x), labels).backward()
        grads = {k: np.abs(p.grad.data).max() for k, p in net.named_parameters()}
        others = max(v for k, v in grads.items() if k != "0.bias")
        if with_bn:
            assert grads["0.bias"] <= 32 * U * others, grads
            y1 = net(x).data
            net[0].bias.data += 10.0  # and shifting it changes nothing downstream
            assert_close(net(x), y1, rtol=1e-12, atol=1e-12 * np.abs(y1).max())
        else:
            assert grads["0.bias"] > 1e-3 * others, grads


# ----------------------------------------------------------------------- affine, track_running_stats

def test_affine_false_has_no_parameters_and_outputs_x_hat(rng):
    bn = nn.BatchNorm1d(3, affine=False, dtype=F64)
    assert bn.weight is None and bn.bias is None and bn.parameters() == []
    assert list(bn.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]
    x = batch(rng, (10, 3))
    x_hat = (x.data - x.data.mean(0)) / np.sqrt(x.data.var(0) + EPS)
    assert_ok(compare({"y": bn(x).data}, {"y": x_hat}, rtol=RTOL))
    assert int(bn.num_batches_tracked.data) == 1


@pytest.mark.parametrize("kind, shape", [("1d", (10, 3)), ("2d", (3, 3, 2, 2))], ids=str)
def test_track_running_stats_false_uses_batch_statistics_in_both_modes(kind, shape, rng):
    bn = bn_module(kind, 3, track_running_stats=False)
    assert bn.running_mean is None and bn.running_var is None and bn.num_batches_tracked is None
    assert bn.buffers() == [] and list(bn.state_dict()) == ["weight", "bias"]
    x = batch(rng, shape)
    y_train = bn(x).data
    bn.eval()
    np.testing.assert_array_equal(bn(x).data, y_train)
    y_ref = analytic.batchnorm_forward(x.data, np.ones(3), np.zeros(3), EPS, axes_of(len(shape)))[0]
    assert_ok(compare({"y": y_train}, {"y": y_ref}, rtol=RTOL))
    assert list(bn.state_dict()) == ["weight", "bias"]


def test_eval_mode_gradients_treat_running_statistics_as_constants(rng):
    bn = nn.BatchNorm1d(4, dtype=F64)
    for _ in range(2):
        bn(batch(rng, (6, 4)))
    bn.eval()
    x = tg.Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    dy = rng.standard_normal((5, 4))
    bn(x).backward(tg.Tensor(dy))
    assert bn.running_mean.grad is None and bn.running_var.grad is None
    dx = bn.weight.data * dy / np.sqrt(bn.running_var.data + EPS)
    assert_ok(compare({"dx": x.grad.data}, {"dx": dx}, rtol=RTOL))


def test_state_dict_keys_follow_pytorch():
    net = nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.BatchNorm1d(4, dtype=F64), nn.ReLU(),
                        nn.BatchNorm1d(4, affine=False, track_running_stats=False, dtype=F64))
    assert list(net.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                      "1.running_var", "1.num_batches_tracked"]
    assert list(nn.BatchNorm2d(2).state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                                    "num_batches_tracked"]
    assert nn.BatchNorm2d(2).state_dict()["num_batches_tracked"].dtype == np.int64
    assert nn.BatchNorm2d(2, dtype=F64).state_dict()["running_var"].dtype == F64
    assert list(nn.LayerNorm((2, 3)).state_dict()) == ["weight", "bias"]


def test_state_dict_round_trip_restores_running_statistics(rng):
    a, b = nn.BatchNorm1d(4, dtype=F64), nn.BatchNorm1d(4, dtype=F64)
    for _ in range(3):
        a(batch(rng, (6, 4)))
    b.load_state_dict(a.state_dict())
    assert_same_state(b, a.state_dict())
    a.eval()
    b.eval()
    x = batch(rng, (3, 4))
    np.testing.assert_array_equal(a(x).data, b(x).data)


# -------------------------------------------------------------------------------------- bad input

BN_BAD = {  # name: (module kind, kwargs, train?, input shape, exception, message pattern)
    "wrong channel count": ("1d", {}, True, (3, 5), ValueError, r"BatchNorm1d\(4\).*\(3, 5\).*4 channels"),
    "wrong channel count, eval": ("1d", {}, False, (3, 5), ValueError, r"\(3, 5\).*4 channels"),
    "wrong channel count, 3-D": ("1d", {}, True, (3, 2, 6), ValueError, r"\(3, 2, 6\).*4 channels"),
    "rank 4 for BatchNorm1d": ("1d", {}, True, (2, 4, 3, 3), ValueError, r"\(2, 4, 3, 3\).*2-D or 3-D"),
    "rank 1 for BatchNorm1d": ("1d", {}, True, (4,), ValueError, r"\(4,\).*2-D or 3-D"),
    "rank 3 for BatchNorm2d": ("2d", {}, True, (2, 4, 3), ValueError, r"BatchNorm2d\(4\).*\(2, 4, 3\).*4-D"),
    "wrong channel count for BatchNorm2d": ("2d", {}, True, (2, 3, 2, 2), ValueError, r"4 channels"),
    "one value per channel (1, C)": ("1d", {}, True, (1, 4), ValueError,
                                     r"more than 1 value per channel when training.*\(1, 4\)"),
    "one value per channel, momentum=None": ("1d", {"momentum": None}, True, (1, 4), ValueError,
                                             r"more than 1 value per channel"),
    "one value per channel (1, C, 1)": ("1d", {}, True, (1, 4, 1), ValueError, r"more than 1 value per channel"),
    "one value per channel (1, C, 1, 1)": ("2d", {}, True, (1, 4, 1, 1), ValueError,
                                           r"more than 1 value per channel"),
    "one value per channel, no running stats": ("1d", {"track_running_stats": False}, True, (1, 4), ValueError,
                                                r"more than 1 value per channel"),
}


@pytest.mark.parametrize("name", BN_BAD)
def test_batch_norm_bad_input_is_a_clear_error_and_changes_no_state(name, rng):
    kind, kw, train, shape, exc, pattern = BN_BAD[name]
    bn = bn_module(kind, 4, **kw)
    good = (6, 4) if kind == "1d" else (3, 4, 2, 2)
    for _ in range(3):  # non-trivial state first
        bn(batch(rng, good)).sum().backward()
    bn.zero_grad()
    bn.train(train)
    before = snapshot(bn)
    with pytest.raises(exc, match=pattern):
        bn(batch(rng, shape))
    assert_same_state(bn, before)
    assert all(p.grad is None for p in bn.parameters())
    bn(batch(rng, good))  # and the module still works


def test_one_example_is_fine_in_eval_mode_and_with_a_length_axis(rng):
    bn = nn.BatchNorm1d(4, dtype=F64)
    y = bn(batch(rng, (1, 4, 3)))  # 3 values per channel: trainable, as in PyTorch
    assert np.isfinite(y.data).all() and int(bn.num_batches_tracked.data) == 1
    bn.eval()
    assert np.isfinite(bn(batch(rng, (1, 4))).data).all()


def test_functional_batch_norm_bad_arguments(rng):
    x = batch(rng, (5, 3))
    with pytest.raises(ValueError, match=r"running_mean has 4 channels.*\(5, 3\)"):
        F.batch_norm(x, tg.Tensor(np.zeros(4)), tg.Tensor(np.ones(4)), training=True)
    with pytest.raises(ValueError, match=r"weight must be 1-D"):
        F.batch_norm(x, None, None, tg.Tensor(np.ones((3, 1))), training=True)
    with pytest.raises(ValueError, match=r"eval mode needs running_mean and running_var"):
        F.batch_norm(x, None, None, training=False)
    rm = tg.Tensor(np.zeros(4))
    with pytest.raises(ValueError):
        F.batch_norm(x, rm, tg.Tensor(np.ones(4)), training=True)
    np.testing.assert_array_equal(rm.data, np.zeros(4))


def test_layer_norm_bad_shapes():
    with pytest.raises(ValueError, match=r"input \(2, 5\) does not end in normalized_shape \(4,\)"):
        nn.LayerNorm(4, dtype=F64)(tg.Tensor(np.zeros((2, 5))))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), got \(5,\)"):
        F.layer_norm(tg.Tensor(np.zeros((2, 4))), 4, tg.Tensor(np.ones(5)))


CE_BAD = {  # name: (target, reduction, exception, message pattern); logits (3, 4)
    "label = C": (np.array([0, 4, 1]), "mean", IndexError, r"label 4 out of range for 4 classes \(at index \(1,\)\)"),
    "negative label": (np.array([0, 1, -1]), "mean", IndexError, r"label -1 out of range for 4 classes"),
    "huge label": (np.array([10**9, 0, 1]), "sum", IndexError, r"label 1000000000 out of range"),
    "float labels": (np.array([0.0, 1.0, 2.0]), "mean", TypeError, r"must be integers, got float64 \(3,\)"),
    "bool labels": (np.array([True, False, True]), "mean", TypeError, r"must be integers, got bool"),
    "float label Tensor": (tg.Tensor(np.array([0.0, 1.0, 2.0])), "mean", TypeError, r"must be integers"),
    "too few labels": (np.array([0, 1]), "mean", ValueError, r"target \(2,\) fits neither class indices \(3,\)"),
    "labels (N, 1)": (np.array([[0], [1], [2]]), "mean", ValueError, r"target \(3, 1\)"),
    "probabilities of the wrong width": (np.full((3, 5), 0.2), "mean", ValueError,
                                         r"target \(3, 5\).*probabilities \(3, 4\)"),
    "bad reduction": (np.array([0, 1, 2]), "avg", ValueError, r"reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    "reduction None": (np.array([0, 1, 2]), None, ValueError, r"reduction"),
}


@pytest.mark.parametrize("name", CE_BAD)
def test_cross_entropy_bad_target_is_a_clear_error(name, rng):
    target, reduction, exc, pattern = CE_BAD[name]
    logits = tg.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    with pytest.raises(exc, match=pattern):  # (by keyword: the third positional parameter is weight)
        F.cross_entropy(logits, target, reduction=reduction)
    with pytest.raises(exc, match=pattern):
        nn.CrossEntropyLoss(reduction=reduction)(logits, target)
    assert logits.grad is None


def test_cross_entropy_bad_logits_rank():
    with pytest.raises(ValueError, match=r"logits must be \(C,\), \(N, C\) or \(N, C, d1, \.\.\.\), got \(\)"):
        F.cross_entropy(tg.Tensor(np.zeros(())), np.zeros((), np.int64))
    with pytest.raises(ValueError, match=r"target \(2,\) fits neither class indices \(2, 4\)"):  # (N, C, d1)
        F.cross_entropy(tg.Tensor(np.zeros((2, 3, 4))), np.zeros(2, np.int64))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_], ids=["int64", "bool"])
def test_cross_entropy_integer_one_hot_error_names_the_dtype(dtype):
    with pytest.raises((TypeError, ValueError), match=np.dtype(dtype).name):
        F.cross_entropy(tg.Tensor(np.zeros((3, 4))), np.eye(4, dtype=dtype)[[0, 1, 2]])


# -------------------------------------------------------------------------------------- NaN input

def test_nan_in_training_batch_poisons_only_its_channel_and_running_stats(rng):
    """Documented (as PyTorch): a NaN in x makes that channel's outputs and running statistics NaN,
    and leaves every other channel exactly as without it."""
    x = rng.standard_normal((6, 3))
    clean, dirty = nn.BatchNorm1d(3, dtype=F64), nn.BatchNorm1d(3, dtype=F64)
    y_clean = clean(tg.Tensor(x)).data
    x[4, 0] = np.nan
    y = dirty(tg.Tensor(x)).data
    assert np.isnan(y[:, 0]).all() and np.isnan(dirty.running_mean.data[0]) and np.isnan(dirty.running_var.data[0])
    np.testing.assert_array_equal(y[:, 1:], y_clean[:, 1:])
    np.testing.assert_array_equal(dirty.running_mean.data[1:], clean.running_mean.data[1:])
    np.testing.assert_array_equal(dirty.running_var.data[1:], clean.running_var.data[1:])
    assert int(dirty.num_batches_tracked.data) == 1


# ------------------------------------------------------------------------------ against PyTorch

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def t2n(t) -> np.ndarray:
    return t.detach().numpy()


TORCH_BN = {  # name: (kind, kwargs, batch shapes)
    "1d (N, C)": ("1d", {}, [(8, 4), (5, 4), (8, 4), (3, 4)]),
    "1d (N, C, L)": ("1d", {}, [(6, 4, 5), (2, 4, 3), (1, 4, 4)]),
    "2d": ("2d", {}, [(4, 4, 3, 5), (2, 4, 2, 2), (3, 4, 1, 3)]),
    "momentum=None": ("1d", {"momentum": None}, [(8, 4), (5, 4), (6, 4), (7, 4)]),
    "2d momentum=None": ("2d", {"momentum": None}, [(2, 4, 3, 3), (3, 4, 2, 2)]),
    "momentum=0.3, eps=1e-3": ("1d", {"momentum": 0.3, "eps": 1e-3}, [(8, 4), (4, 4, 2), (6, 4)]),
    "affine=False": ("1d", {"affine": False}, [(8, 4), (5, 4)]),
    "track_running_stats=False": ("1d", {"track_running_stats": False}, [(8, 4), (5, 4)]),
    "2d affine=False, track_running_stats=False": ("2d", {"affine": False, "track_running_stats": False},
                                                   [(3, 4, 2, 2)]),
}


def torch_bn(torch, kind, c, kw):
    cls = torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d
    return cls(c, dtype=torch.float64, **kw)


def run_both(torch, ours, theirs, x, dy, params):
    """One forward/backward of both modules; a report of y, dx and each parameter's gradient."""
    xo, xt = tg.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    yo.backward(tg.Tensor(dy))
    yt.backward(torch.tensor(dy))
    got, ref = {"y": yo.data, "dx": xo.grad.data}, {"y": t2n(yt), "dx": t2n(xt.grad)}
    for name in params:
        got["d" + name], ref["d" + name] = getattr(ours, name).grad.data, t2n(getattr(theirs, name).grad)
    return compare(got, ref, rtol=RTOL)


def compare_state(ours, theirs):
    mine, torch_state = ours.state_dict(), {k: t2n(v) for k, v in theirs.state_dict().items()}
    assert list(mine) == list(torch_state)
    for k in mine:
        assert mine[k].shape == torch_state[k].shape, k
    assert_ok(compare(mine, torch_state, rtol=RTOL))


@pytest.mark.parametrize("name", TORCH_BN)
def test_batch_norm_matches_pytorch_over_training_steps_and_eval(name, torch, rng):
    kind, kw, shapes = TORCH_BN[name]
    ours, theirs = bn_module(kind, 4, **kw), torch_bn(torch, kind, 4, kw)
    params = ["weight", "bias"] if kw.get("affine", True) else []
    for p in params:  # start from the same random gamma, beta
        v = rng.standard_normal(4) + (1.0 if p == "weight" else 0.0)
        getattr(ours, p).data[...] = v
        with torch.no_grad():
            getattr(theirs, p).copy_(torch.tensor(v))
    for shape in shapes:  # training steps: forward, backward, an SGD update
        x, dy = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
        assert_ok(run_both(torch, ours, theirs, x, dy, params))
        for p in params:
            getattr(ours, p).data -= 0.1 * getattr(ours, p).grad.data
            with torch.no_grad():
                getattr(theirs, p).sub_(0.1 * getattr(theirs, p).grad)
        ours.zero_grad()
        theirs.zero_grad()
    compare_state(ours, theirs)
    ours.eval()
    theirs.eval()
    shape = shapes[0]
    assert_ok(run_both(torch, ours, theirs, rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape), params))
    compare_state(ours, theirs)


def test_sequential_state_dict_matches_pytorch_and_loads_from_it(torch, rng):
    tn = torch.nn
    theirs = tn.Sequential(tn.Linear(3, 4), tn.BatchNorm1d(4), tn.ReLU(), tn.Linear(4, 2)).double()
    ours = nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.BatchNorm1d(4, dtype=F64), nn.ReLU(),
                         nn.Linear(4, 2, dtype=F64))
    for _ in range(3):
        theirs(torch.tensor(rng.standard_normal((5, 3))))
    state = {k: t2n(v) for k, v in theirs.state_dict().items()}
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state)
    assert int(ours[1].num_batches_tracked.data) == 3
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((6, 3))
    assert_ok(compare({"y": ours(tg.Tensor(x)).data}, {"y": t2n(theirs(torch.tensor(x)))}, rtol=RTOL))


@pytest.mark.parametrize("shape, normalized, affine", [((8, 10), (10,), True), ((3, 4, 5), (4, 5), True),
                                                      ((6, 7), (7,), False)], ids=str)
def test_layer_norm_matches_pytorch(shape, normalized, affine, torch, rng):
    ours = nn.LayerNorm(normalized, elementwise_affine=affine, dtype=F64)
    theirs = torch.nn.LayerNorm(normalized, elementwise_affine=affine, dtype=torch.float64)
    params = ["weight", "bias"] if affine else []
    for p in params:
        v = rng.standard_normal(normalized) + (1.0 if p == "weight" else 0.0)
        getattr(ours, p).data[...] = v
        with torch.no_grad():
            getattr(theirs, p).copy_(torch.tensor(v))
    assert_ok(run_both(torch, ours, theirs, rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape), params))
    assert list(ours.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["indices", "one-hot", "probabilities", "one example"])
def test_cross_entropy_matches_pytorch(kind, reduction, torch, rng):
    n, c = 6, 5
    logits = rng.standard_normal((n, c)) * 3
    labels = rng.integers(0, c, n)
    target = {"indices": labels, "one-hot": np.eye(c)[labels], "probabilities": rng.dirichlet(np.ones(c), n),
              "one example": np.int64(labels[0])}[kind]
    if kind == "one example":
        logits = logits[0]
    z, zt = tg.Tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    soft = target.dtype.kind == "f"
    yo = tg.Tensor(target, requires_grad=True) if soft else target
    yt = torch.tensor(target, requires_grad=soft)
    loss = nn.CrossEntropyLoss(reduction=reduction)(z, yo)
    lt = torch.nn.CrossEntropyLoss(reduction=reduction)(zt, yt)
    w = rng.standard_normal(loss.shape)
    loss.backward(tg.Tensor(w))
    lt.backward(torch.tensor(w))
    got, ref = {"loss": loss.data, "dlogits": z.grad.data}, {"loss": t2n(lt), "dlogits": t2n(zt.grad)}
    if soft:
        got["dtarget"], ref["dtarget"] = yo.grad.data, t2n(yt.grad)
    assert_ok(compare(got, ref, rtol=RTOL))


def test_nan_behaviour_matches_pytorch(torch, rng):
    x = rng.standard_normal((6, 3))
    x[4, 0] = np.nan
    ours, theirs = nn.BatchNorm1d(3, dtype=F64), torch.nn.BatchNorm1d(3, dtype=torch.float64)
    y, yt = ours(tg.Tensor(x)).data, t2n(theirs(torch.tensor(x)))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt))
    np.testing.assert_allclose(y, yt, rtol=1e-12, atol=1e-15)  # NaN == NaN here
    np.testing.assert_allclose(ours.running_mean.data, t2n(theirs.running_mean), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours.running_var.data, t2n(theirs.running_var), rtol=1e-12, atol=1e-15)
    z = np.where(np.isnan(x), np.nan, x)
    lo = F.cross_entropy(tg.Tensor(z), np.array([0, 1, 2, 0, 1, 2]), reduction="none").data
    lt = t2n(torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor([0, 1, 2, 0, 1, 2]), reduction="none"))
    np.testing.assert_array_equal(np.isnan(lo), np.isnan(lt))
    np.testing.assert_allclose(lo, lt, rtol=1e-12)

