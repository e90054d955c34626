"""The hand-derived formulas (tinygrad_bn.analytic) on their own: each against float64 central
differences of its own NumPy forward (so neither the engine nor the formula is trusted blindly),
the staged batch norm backward against the compact one, and the node-by-node audit
(check.audit_batch_norm, `tinygrad-bn check --audit`) shown to pass on correct inputs and to
LOCATE an error: only the rows of the corrupted node and of the nodes downstream of it fail."""
import numpy as np
import pytest

import tinygrad_bn as tg
from tinygrad_bn import analytic, cli, ops, report
from tinygrad_bn.check import audit_batch_norm, compare, numerical_grad

EPS = 1e-5
RTOL = 1e-12     # formula against formula, or autograd against formula: round-off only
FD_RTOL = 1e-7   # against central differences with step 1e-6: truncation and rounding ~1e-9
NODES = ["x_hat", "std", "var", "xc", "mu", "x", "gamma", "beta"]  # the audit's rows, in its order


def axes_of(ndim: int) -> tuple[int, ...]:
    """The reduced axes of batch norm: all but channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def bn_inputs(rng, shape, scale=2.0, shift=1.0):
    c = shape[1]
    return (rng.standard_normal(shape) * scale + shift, rng.standard_normal(c) + 1.0, rng.standard_normal(c),
            rng.standard_normal(shape))


def fd_of_numpy(forward, arrays, dy):
    """Central differences of sum(forward(*arrays) * dy) for a pure-NumPy `forward`: the engine
    only carries the arrays into check.numerical_grad, it computes nothing."""
    def f(*ts):
        return tg.Tensor(np.asarray(forward(*[t.data for t in ts]), np.float64))
    return numerical_grad(f, [tg.Tensor(np.asarray(a, np.float64)) for a in arrays], grad_output=dy)


def assert_ok(report):
    assert report.ok, "\n" + str(report)


def failing(report) -> set[str]:
    return {r.name for r in report.rows if not r.ok}


# ----------------------------------------------------------- the formulas against central differences

# A batch of 2 has x_hat = +-sqrt(var / (var + eps)) per channel, so the true dx is a residual
# eps / (var + eps) times the size of its terms: with var >> eps it is pure cancellation, and neither
# the formula nor finite differences nor autograd has the digits (see test_composites.py,
# test_batch_of_two_*). Batches of 2 are therefore checked with var ~ 10 eps (x ~ 1e-2).
BN_SHAPES = [((4, 3), 2.0), ((2, 3), 1e-2), ((3, 2, 4), 2.0), ((2, 2, 2, 3), 2.0)]


@pytest.mark.parametrize("shape, scale", BN_SHAPES, ids=str)
def test_batchnorm_backward_matches_finite_differences(shape, scale, rng):
    x, gamma, beta, dy = bn_inputs(rng, shape, scale=scale, shift=scale)
    axes = axes_of(len(shape))
    dx, dgamma, dbeta = analytic.batchnorm_backward(dy, analytic.batchnorm_forward(x, gamma, beta, EPS, axes)[1])
    numeric = fd_of_numpy(lambda *a: analytic.batchnorm_forward(*a, EPS, axes)[0], (x, gamma, beta), dy)
    assert_ok(compare({"dx": dx, "dgamma": dgamma, "dbeta": dbeta}, dict(zip(("dx", "dgamma", "dbeta"), numeric)),
                      rtol=FD_RTOL))


@pytest.mark.parametrize("shape", [(5, 3), (1, 3), (2, 3, 4), (2, 2, 2, 3)], ids=str)
def test_batchnorm_eval_backward_matches_finite_differences(shape, rng):
    x, gamma, beta, dy = bn_inputs(rng, shape)
    rm, rv = rng.standard_normal(shape[1]), rng.uniform(0.5, 2.0, shape[1])
    axes = axes_of(len(shape))
    grads = analytic.batchnorm_eval_backward(dy, analytic.batchnorm_eval_forward(x, gamma, beta, rm, rv, EPS, axes)[1])
    numeric = fd_of_numpy(lambda *a: analytic.batchnorm_eval_forward(*a, rm, rv, EPS, axes)[0], (x, gamma, beta), dy)
    names = ("dx", "dgamma", "dbeta")
    assert_ok(compare(dict(zip(names, grads)), dict(zip(names, numeric)), rtol=FD_RTOL))


@pytest.mark.parametrize("shape, normalized", [((4, 5), (5,)), ((3, 2, 4), (4,)), ((3, 2, 4), (2, 4))], ids=str)
def test_layernorm_backward_matches_finite_differences(shape, normalized, rng):
    x, dy = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(normalized) + 1, rng.standard_normal(normalized)
    grads = analytic.layernorm_backward(dy, analytic.layernorm_forward(x, gamma, beta, EPS)[1])
    numeric = fd_of_numpy(lambda *a: analytic.layernorm_forward(*a, EPS)[0], (x, gamma, beta), dy)
    names = ("dx", "dgamma", "dbeta")
    assert_ok(compare(dict(zip(names, grads)), dict(zip(names, numeric)), rtol=FD_RTOL))


def np_cross_entropy(z, target, reduction):
    """-sum_j y_j log softmax(z)_j per example, reduced; a NumPy forward for the finite differences."""
    y = analytic.one_hot(target, z.shape[-1]) if target.shape != z.shape else target
    losses = -(y * np.log(analytic.softmax(z))).sum(axis=-1)
    return losses.mean() if reduction == "mean" else losses.sum() if reduction == "sum" else losses


def ce_targets(rng, n, c):
    labels = rng.integers(0, c, n)
    return {"indices": labels, "one-hot": np.eye(c)[labels], "probabilities": rng.dirichlet(np.ones(c), n)}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["indices", "one-hot", "probabilities"])
def test_softmax_cross_entropy_backward_matches_finite_differences(kind, reduction, rng):
    z = rng.standard_normal((5, 4)) * 2
    target = ce_targets(rng, 5, 4)[kind]
    numeric = fd_of_numpy(lambda a: np_cross_entropy(a, target, reduction), (z,), None)[0]
    got = analytic.softmax_cross_entropy_backward(z, target, reduction)
    assert_ok(compare({"dlogits": got}, {"dlogits": numeric}, rtol=FD_RTOL))


def test_softmax_cross_entropy_backward_of_one_example_without_batch_axis(rng):
    z = rng.standard_normal(6)
    got = analytic.softmax_cross_entropy_backward(z, np.int64(2))
    numeric = fd_of_numpy(lambda a: np_cross_entropy(a[None], np.array([2]), "sum"), (z,), None)[0]
    assert_ok(compare({"dlogits": got}, {"dlogits": numeric}, rtol=FD_RTOL))


def test_linear_and_relu_backward_match_finite_differences(rng):
    x, w, b = rng.standard_normal((6, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    dy = rng.standard_normal((6, 3))
    z = x @ w.T + b
    dz = analytic.relu_backward(dy, z)
    grads = analytic.linear_backward(dz, x, w)
    numeric = fd_of_numpy(lambda x, w, b: np.maximum(x @ w.T + b, 0), (x, w, b), dy)
    names = ("dx", "dW", "db")
    assert_ok(compare(dict(zip(names, grads)), dict(zip(names, numeric)), rtol=FD_RTOL))


# ----------------------------------------------------------------- the formulas against each other

@pytest.mark.parametrize("shape, scale", [((2, 3), 1e-2), ((16, 5), 2.0), ((256, 4), 1e4), ((64, 4), 1e-4),
                                          ((8, 4, 6), 1.0), ((4, 3, 5, 5), 3.0)], ids=str)
def test_staged_backward_equals_compact(shape, scale, rng):
    x, gamma, beta, dy = bn_inputs(rng, shape, scale=scale, shift=scale)
    cache = analytic.batchnorm_forward(x, gamma, beta, EPS, axes_of(len(shape)))[1]
    dx, dgamma, dbeta = analytic.batchnorm_backward(dy, cache)
    staged = analytic.batchnorm_backward_staged(dy, cache)
    assert_ok(compare({"dx": staged["x"], "dgamma": staged["gamma"], "dbeta": staged["beta"]},
                      {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}, rtol=RTOL))


def test_staged_intermediates_match_finite_differences_of_each_node(rng):
    """d var, d std, ... of the staged backward against differences that perturb only that node,
    with x_hat = xc / std and std = sqrt(var + eps) recomputed downstream (the chain of docs/course.md section 3)."""
    x, gamma, beta, dy = bn_inputs(rng, (5, 3))
    cache = analytic.batchnorm_forward(x, gamma, beta, EPS, 0)[1]
    staged = analytic.batchnorm_backward_staged(dy, cache)
    xc, var, g = cache["xc"], cache["var"], cache["gamma"]
    downstream = {  # node value -> sum(y * dy), everything upstream of the node held fixed
        "x_hat": lambda v: np.sum((g * v + beta) * dy),
        "std": lambda v: np.sum((g * xc / v + beta) * dy),
        "var": lambda v: np.sum((g * xc / np.sqrt(v + EPS) + beta) * dy),
    }
    base = {"x_hat": cache["x_hat"], "std": cache["std"], "var": var}
    for name, f in downstream.items():
        numeric = fd_of_numpy(lambda v, f=f: f(v), (base[name],), None)[0]
        assert_ok(compare({name: staged[name]}, {name: numeric}, rtol=FD_RTOL))


def test_cross_entropy_backward_indices_equal_one_hot_and_sum_is_m_times_mean(rng):
    z = rng.standard_normal((7, 5)) * 3
    labels = rng.integers(0, 5, 7)
    by_index = analytic.softmax_cross_entropy_backward(z, labels)
    by_one_hot = analytic.softmax_cross_entropy_backward(z, np.eye(5)[labels])
    np.testing.assert_array_equal(by_index, by_one_hot)
    summed = analytic.softmax_cross_entropy_backward(z, labels, "sum")
    np.testing.assert_allclose(summed, 7 * by_index, rtol=1e-15)


# ------------------------------------------------------------------------------ the node-by-node audit

# The audit's finite differences perturb every node by the same absolute step (fd_eps = 1e-6), so they
# are accurate only for x of order 0.1 .. 10 (test_audit_false_alarm_*). A batch of 2 in turn needs
# var not >> eps (see BN_SHAPES). x ~ 0.1 (var ~ 1e-2) satisfies both.
AUDIT_CASES = [((8, 3), 2.0), ((2, 3), 0.1), ((3, 2, 4), 2.0), ((2, 2, 2, 3), 2.0), ((64, 4), 5.0)]


@pytest.mark.parametrize("shape, scale", AUDIT_CASES, ids=str)
def test_audit_passes_on_correct_inputs(shape, scale, rng):
    x, gamma, beta, dy = bn_inputs(rng, shape, scale=scale, shift=scale)
    report = audit_batch_norm(x, gamma, beta, dy)
    assert_ok(report)
    assert [r.name for r in report.rows] == NODES  # from the loss back to the inputs
    assert report.first_wrong is None


@pytest.mark.parametrize("shape, scale, shift", [((2, 3), 1e-2, 1.0), ((8, 3), 1e-2, 1e-2), ((64, 4), 1e3, 1e3)],
                         ids=str)
def test_audit_passes_at_any_data_scale(shape, scale, shift, rng):
    """The audit's finite-difference steps follow each node's scale (std for x, xc, mu; var + eps for
    var), so tiny, huge and batch-of-2 (well-conditioned: var not >> eps) data all pass."""
    assert_ok(audit_batch_norm(*bn_inputs(rng, shape, scale=scale, shift=shift)))


STEPS = [  # the staged backward, one step per line (docs/course.md section 3.1), used only to
    # re-run the steps downstream of a corrupted node; test_fault_free_replay_equals_library pins it
    ("x_hat", lambda d, c: d["y"] * c["gamma"]),
    ("std", lambda d, c: (d["x_hat"] * -c["xc"] / c["std"] ** 2).sum(axis=c["axes"], keepdims=True)),
    ("var", lambda d, c: d["std"] / (2 * c["std"])),
    ("xc", lambda d, c: d["x_hat"] / c["std"] + d["var"] * 2 * c["xc"] / c["m"]),
    ("mu", lambda d, c: -d["xc"].sum(axis=c["axes"], keepdims=True)),
    ("x", lambda d, c: d["xc"] + d["mu"] / c["m"]),
]


def staged_with_fault(node: str, factor: float = 1.5, propagate: bool = True):
    """analytic.batchnorm_backward_staged with the step that computes d[node] scaled by `factor`:
    with propagate, the steps downstream of it are re-run on the wrong value (a wrong step);
    without, only the stored d[node] is wrong (a wrong value nobody else used)."""
    real = analytic.batchnorm_backward_staged

    def wrong(dy, cache):
        d = dict(real(dy, cache))
        names = [n for n, _ in STEPS]
        d[node] = d[node] * factor
        if propagate:
            for name, step in STEPS[names.index(node) + 1:]:
                d[name] = step(d, cache)
        return d
    return wrong


def test_fault_free_replay_equals_library(rng):
    x, gamma, beta, dy = bn_inputs(rng, (6, 3))
    cache = analytic.batchnorm_forward(x, gamma, beta, EPS, 0)[1]
    d = analytic.batchnorm_backward_staged(dy, cache)
    assert set(d) >= {n for n, _ in STEPS} | {"y", "gamma", "beta"}
    replayed = staged_with_fault("x_hat", factor=1.0)(dy, cache)
    for name, _ in STEPS:
        np.testing.assert_allclose(replayed[name], d[name], rtol=1e-15, atol=0, err_msg=name)


# A corrupted step shows up at its node and at every node downstream whose value depends on it.
# d mu = -sum_i d xc_i = -sum_i d x_hat_i / std - d var * 2 sum_i xc_i / m, and sum_i xc_i = 0, so
# d mu does NOT depend on d var (nor on d std, which only reaches mu through d var): a fault at var
# or std leaves mu right, and the audit correctly passes it.
FAULTS = {
    "x_hat": ["x_hat", "std", "var", "xc", "mu", "x"],
    "std": ["std", "var", "xc", "x"],
    "var": ["var", "xc", "x"],
    "xc": ["xc", "mu", "x"],
    "mu": ["mu", "x"],
    "x": ["x"],
}


@pytest.mark.parametrize("node", FAULTS)
def test_audit_locates_a_wrong_step_of_the_staged_backward(node, monkeypatch, rng):
    x, gamma, beta, dy = bn_inputs(rng, (8, 3))
    monkeypatch.setattr(analytic, "batchnorm_backward_staged", staged_with_fault(node))
    report = audit_batch_norm(x, gamma, beta, dy)
    assert not report.ok
    assert failing(report) == set(FAULTS[node]), "\n" + str(report)
    assert report.first_wrong == node  # the failing node nearest the loss is the corrupted step
    for n in NODES:  # autograd itself is right: every comparison with finite differences passes
        assert report[n].vs_fd.ok
    assert "FAIL: hand" in str(report) and f"first wrong at {node!r}" in str(report)


def test_audit_locates_a_wrong_value_at_var_alone(monkeypatch, rng):
    x, gamma, beta, dy = bn_inputs(rng, (8, 3))
    monkeypatch.setattr(analytic, "batchnorm_backward_staged", staged_with_fault("var", propagate=False))
    report = audit_batch_norm(x, gamma, beta, dy)
    assert failing(report) == {"var"}, "\n" + str(report)
    assert report["var"].vs_hand.max_rel == pytest.approx(0.5 / 1.5, rel=1e-9)  # |1.5 d - d| / |1.5 d|
    assert report.first_wrong == "var"


def test_audit_locates_a_wrong_backward_rule_in_autograd(monkeypatch, rng):
    """Sqrt.backward without its factor 2 (d sqrt v = 1/(2 sqrt v)): std = sqrt(var + eps) is the one
    sqrt of the graph, so autograd's d var is wrong, and so are the nodes downstream (xc, x; mu is
    immune, as above), against both the staged formula and finite differences; x_hat and std pass."""
    def wrong(self, grad, out):
        return grad / out
    monkeypatch.setattr(ops.Sqrt, "backward", wrong)
    x, gamma, beta, dy = bn_inputs(rng, (8, 3))
    report = audit_batch_norm(x, gamma, beta, dy)
    bad = {"var", "xc", "x"}
    assert failing(report) == bad, "\n" + str(report)
    assert all(not report[n].vs_hand.ok and not report[n].vs_fd.ok for n in bad)
    assert report.first_wrong == "var"


# ----------------------------------------------------------------------------- `tinygrad-bn check`

def test_cli_check_quick_audit_passes(capsys):
    assert cli.main(["check", "--quick", "--audit"]) == 0
    out = capsys.readouterr().out
    assert "node-by-node audit of batch norm" in out
    assert out.rstrip().splitlines()[-1] == "PASS: 0 failing case(s)"
    assert " FAIL" not in out


def test_cli_check_fails_when_a_formula_is_wrong(monkeypatch, capsys):
    """dx of the compact formula off by one part in 1e9: every float64 training-mode batch norm case
    must fail (float32 cases compare against the same wrong float64 formula at 1e-5, so they pass)."""
    real = analytic.batchnorm_backward

    def wrong(dy, cache):
        dx, dgamma, dbeta = real(dy, cache)
        return dx * (1 + 1e-9), dgamma, dbeta
    monkeypatch.setattr(analytic, "batchnorm_backward", wrong)
    n_train = sum(case.startswith("batch norm train") for case, *_ in report.gradient_cases(quick=True))
    assert n_train >= 8
    assert cli.main(["check", "--quick"]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == f"FAIL: {n_train} failing case(s)"
    failed = [line for line in out.splitlines() if line.endswith("FAIL")]
    assert len(failed) == n_train and all(line.startswith("batch norm train") and "float64" in line
                                          for line in failed)


def test_cli_check_audit_fails_when_a_staged_step_is_wrong(monkeypatch, capsys):
    monkeypatch.setattr(analytic, "batchnorm_backward_staged", staged_with_fault("std"))
    assert cli.main(["check", "--quick", "--audit"]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == "FAIL: 1 failing case(s)"
    assert "first wrong at 'std'" in out and "FAILED" in out


def test_tinygrad_bn_train_runs_and_prints_its_table(capsys):
    """`tinygrad-bn train` (example 2 from the command line) on a small net for one epoch."""
    pytest.importorskip("sklearn", reason="the digits data set: pip install -e '.[examples]'")
    assert cli.main(["train", "--epochs", "1", "--lr", "0.1", "--depth", "2", "--width", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "MLP 64 -> 2 x 16 -> 10" in out and "0.1" in out
