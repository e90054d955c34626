"""tg.check.node / tg.check.audit on a user's own layer, tg.Function (custom ops with a hand-written
backward, once or twice differentiable) and gradcheck's fast mode. Each checker is shown to pass a
right derivation and to name what is wrong in a planted slip."""
import numpy as np
import pytest
from conftest import requires_dot

import tinygrad_bn as tg
from tinygrad_bn import analytic, report
from tinygrad_bn.check import GradcheckError, audit, gradcheck, gradgradcheck, node
from tinygrad_bn.report import rms_norm_derivation, rms_norm_loss

# ---------------------------------------------------------------- a user layer: RMS norm, audited

def rms_inputs(rng, dtype=np.float64):
    x = tg.Tensor((rng.standard_normal((6, 5)) * 2 + 0.5).astype(dtype), name="x")
    g = tg.Tensor((rng.standard_normal(5) + 1).astype(dtype), name="g")
    return x, g, rng.standard_normal((6, 5)).astype(dtype)


def test_a_right_derivation_passes_every_node(rng):
    x, g, dy = rms_inputs(rng)
    a = audit(lambda x, g: rms_norm_loss(x, g, dy), [x, g], rms_norm_derivation(dy))
    assert a.ok and a.first_wrong is None, "\n" + str(a)
    assert [r.name for r in a.rows] == ["y", "x_hat", "inv", "rms", "ms", "g", "x"] or \
        [r.name for r in a.rows][:5] == ["y", "x_hat", "inv", "rms", "ms"]  # from the loss back
    assert {r.name for r in a.rows} == {"y", "x_hat", "inv", "rms", "ms", "x", "g"}
    assert all(r.fd_elements == min(r.tensor.size, 64) for r in a.rows)
    assert "all pass" in str(a)


@pytest.mark.parametrize("slip, inherit", [("rms", {"rms", "ms", "x"}), ("ms", {"ms", "x"}), ("x", {"x"})])
def test_a_planted_slip_is_located(slip, inherit, rng):
    x, g, dy = rms_inputs(rng)
    a = audit(lambda x, g: rms_norm_loss(x, g, dy), [x, g], rms_norm_derivation(dy, slip))
    assert not a.ok
    assert a.first_wrong == slip, "\n" + str(a)
    assert {r.name for r in a.rows if not r.ok} == inherit
    assert all(r.vs_fd.ok for r in a.rows), "autograd itself is right: finite differences agree everywhere"
    assert f"first wrong at {slip!r}" in str(a)


def test_the_audit_runs_in_float32_with_its_default_tolerances(rng):
    x, g, dy = rms_inputs(rng, np.float32)
    right = audit(lambda x, g: rms_norm_loss(x, g, dy), [x, g], rms_norm_derivation(dy))
    assert right.ok, "\n" + str(right)
    assert audit(lambda x, g: rms_norm_loss(x, g, dy), [x, g], rms_norm_derivation(dy, "ms")).first_wrong == "ms"


def test_a_plain_dict_a_partial_derivation_and_unnamed_inputs(rng):
    x = tg.Tensor(rng.standard_normal((3, 4)))
    w = tg.Tensor(rng.standard_normal((4, 2)))
    f = lambda x, w: (node("h", x @ w).tanh() ** 2).sum()  # noqa: E731
    h = x.data @ w.data
    d_h = 2 * np.tanh(h) * (1 - np.tanh(h) ** 2)
    a = audit(f, [x, w], {"h": d_h, "input1": x.data.T @ d_h})
    assert a.ok and {r.name for r in a.rows} == {"h", "input1"}, "\n" + str(a)
    bad = audit(f, [x, w], {"h": d_h, "input1": x.data.T @ d_h + 1e-6})
    assert bad.first_wrong == "input1" and bad["h"].ok


def test_a_wrong_custom_backward_fails_against_finite_differences(rng):
    """A custom op whose backward is off by 1%: the hand derivation (right) disagrees with autograd
    (wrong) at the op's input and everything before it, and so do the finite differences."""
    class LeakyTanh(tg.Function):
        def forward(self, a):
            return np.tanh(a)

        def backward(self, grad, out):
            return grad * (1 - out * out) * 1.01

    x = tg.Tensor(rng.standard_normal((4, 3)), name="x")

    def f(x):
        z = node("z", x * 2)
        return (node("t", LeakyTanh.apply(z)) ** 2).sum()
    t = np.tanh(2 * x.data)
    hand = {"t": 2 * t, "z": 2 * t * (1 - t * t)}
    hand["x"] = 2 * hand["z"]
    a = audit(f, [x], hand)
    assert a["t"].ok and not a["z"].vs_fd.ok and not a["x"].vs_fd.ok
    assert a.first_wrong == "z"


def test_node_is_the_identity_outside_an_audit():
    t = tg.Tensor(np.ones(3), requires_grad=True) * 2
    assert node("h", t) is t and t.name is None


@pytest.mark.parametrize("case, error, words", [
    ("twice", ValueError, "marks two tensors"),
    ("unknown", ValueError, "name no node"),
    ("random", RuntimeError, "not deterministic"),
    ("not scalar", TypeError, "scalar floating Tensor"),
    ("clash", ValueError, "also input names"),
])
def test_misuse_is_a_clear_error(case, error, words, rng):
    x = tg.Tensor(rng.standard_normal(4), name="x")
    fs = {
        "twice": lambda x: (node("h", x * 2) + node("h", x * 3)).sum(),
        "unknown": lambda x: node("h", x * 2).sum(),
        "random": lambda x: (x * float(np.random.default_rng().random())).sum(),
        "not scalar": lambda x: x * 2,
        "clash": lambda x: node("x", x * 2).sum(),
    }
    with pytest.raises(error, match=words):
        audit(fs[case], [x], {"hh": np.ones(4)} if case == "unknown" else {"x": np.ones(4)})


def test_draw_overlays_the_audit(rng):
    x, g, dy = rms_inputs(rng)
    a = audit(lambda x, g: rms_norm_loss(x, g, dy), [x, g], rms_norm_derivation(dy, "ms"))
    src = a.draw().source
    assert "FIRST WRONG" in src and src.count("#ff8a80") == 2 and src.count("#9be29b") == 5  # ms, x red


# ------------------------------------------------------------------------------- tg.Function

class Cube(tg.Function):
    """x^3 with a NumPy backward: a hand-written first derivative."""
    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, grad, out):
        return grad.numpy() * 3 * self.x ** 2


class CubeT(tg.Function):
    """x^3 with a backward in Tensor ops: differentiable again."""
    def forward(self, x):
        return x ** 3

    def backward(self, grad, out):
        (x,) = self.parents
        return grad * 3 * x * x


def test_a_numpy_backward_works_in_backward_and_gradcheck(rng):
    x = tg.Tensor(rng.standard_normal(5), requires_grad=True)
    Cube.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 3 * x.data ** 2, rtol=1e-15)
    assert gradcheck(lambda a: Cube.apply(a) * a, [tg.Tensor(rng.standard_normal((2, 3)), requires_grad=True)])


def test_differentiating_a_numpy_backward_again_is_an_error_naming_the_op(rng):
    x = tg.Tensor(rng.standard_normal(5), requires_grad=True)
    (g,) = tg.grad(Cube.apply(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"Cube\.backward returned ndarrays.*differentiable once"):
        tg.grad(g.sum(), x)
    with pytest.raises(RuntimeError, match="Cube"):
        gradgradcheck(lambda a: Cube.apply(a), [tg.Tensor(rng.standard_normal(3), requires_grad=True)])


def test_a_tensor_backward_is_differentiable_twice(rng):
    x = tg.Tensor(rng.standard_normal(5), requires_grad=True)
    (g,) = tg.grad(CubeT.apply(x).sum(), x, create_graph=True)
    (h,) = tg.grad(g.sum(), x)
    np.testing.assert_allclose(h.data, 6 * x.data, rtol=1e-15)
    assert gradgradcheck(lambda a: CubeT.apply(a), [tg.Tensor(rng.standard_normal(3), requires_grad=True)])


def test_function_misuse_is_a_clear_error(rng):
    with pytest.raises(TypeError, match="Cube.apply takes Tensors"):
        Cube.apply(np.ones(3))

    class Bad(tg.Function):
        def forward(self, x):
            return x

        def backward(self, grad, out):
            return "oops"
    with pytest.raises(TypeError, match="Bad.backward returned a str"):
        Bad.apply(tg.Tensor(np.ones(2), requires_grad=True)).sum().backward()


# ----------------------------------------------------------------------- gradcheck fast mode

class Scaled(tg.Function):
    """tanh with its backward scaled by `k` (k = 1 is right)."""
    def forward(self, a, k=1.0):
        self.k = k
        return np.tanh(a)

    def backward(self, grad, out):
        return grad * (1 - out * out) * self.k


def layer(k):
    return lambda x, w, b: Scaled.apply(tg.nn.functional.linear(x, w, b), k=k)


def big_layer(rng):
    return [tg.Tensor(rng.standard_normal((256, 512)), requires_grad=True),
            tg.Tensor(rng.standard_normal((64, 512)) * 0.05, requires_grad=True),
            tg.Tensor(rng.standard_normal(64), requires_grad=True)]


def test_fast_mode_passes_a_right_backward_on_a_realistic_layer(rng):
    assert gradcheck(layer(1.0), big_layer(rng), fast_mode=True)
    assert gradgradcheck(lambda x, w, b: tg.nn.functional.linear(x, w, b).tanh(), big_layer(rng), fast_mode=True)


def test_fast_mode_catches_a_wrong_backward_and_names_the_input(rng):
    # as in PyTorch, atol is scaled by sum(u) sum(v) (~3e4 here), so the bias's small projection shows it first
    with pytest.raises(GradcheckError, match=r"fast mode.*input 2 \(shape \(64,\)\) and output 0.*fast_mode=False"):
        gradcheck(layer(1.02), big_layer(rng), fast_mode=True)
    assert not gradcheck(layer(1.02), big_layer(rng), fast_mode=True, raise_exception=False)
    small = [tg.Tensor(rng.standard_normal(shape), requires_grad=True) for shape in ((3, 4), (2, 4), (2,))]
    assert gradcheck(layer(1.0), small, fast_mode=True) and gradcheck(layer(1.0), small)
    assert not gradcheck(layer(1.02), small, fast_mode=True, raise_exception=False)


# ------------------------------------------------- the library's audits, and slips planted in them

def test_every_audit_of_check_audit_passes():
    result = report.audits(seed=0)
    assert len(result) >= 4
    for a in result:
        assert a.ok, "\n" + str(a)


def test_layer_norm_audit_locates_a_wrong_step(monkeypatch, rng):
    """d var = d std / std (sqrt's 1/2 forgotten) in the steps layer norm shares with batch norm:
    var is named, xc inherits it, mu is immune (sum_j xc_j = 0), and the audit's dx comes from the
    compact formula, which is right."""
    real = analytic.standardize_backward_staged

    def slip(d_x_hat, cache):
        d = dict(real(d_x_hat, cache))
        axes, m, xc, std = cache["axes"], cache["m"], cache["xc"], cache["std"]
        d["var"] = d["std"] / std
        d["xc"] = d["x_hat"] / std + d["var"] * 2 * xc / m
        d["mu"] = -d["xc"].sum(axis=axes, keepdims=True)
        d["x"] = d["xc"] + d["mu"] / m
        return d
    monkeypatch.setattr(analytic, "standardize_backward_staged", slip)
    x = rng.standard_normal((4, 6)) * 2 + 1
    a = report.audit_layer_norm(x, rng.standard_normal(6) + 1, rng.standard_normal(6), rng.standard_normal(x.shape))
    assert a.first_wrong == "var", "\n" + str(a)
    assert {r.name for r in a.rows if not r.ok} == {"var", "xc"}


def test_softmax_ce_audit_locates_a_wrong_step(rng):
    """d total with the wrong sign (log's derivative 1/total, its minus lost): counts and shifted
    inherit it; logp and the compact dz stay right."""
    y = rng.dirichlet(np.ones(5), 6)
    right = report.softmax_ce_derivation(y)

    def slip(v):
        d = right(v)
        d["total"] = d["logp"].sum(axis=1, keepdims=True) / v["total"]
        d["counts"] = np.broadcast_to(d["total"], v["counts"].shape)
        d["shifted"] = d["logp"] + d["counts"] * v["counts"]
        return d
    z = tg.Tensor(rng.standard_normal((6, 5)) * 3, name="z")
    assert audit(lambda z: report.softmax_ce_loss(z, y), [z], right).ok
    a = audit(lambda z: report.softmax_ce_loss(z, y), [z], slip)
    assert a.first_wrong == "total", "\n" + str(a)
    assert {r.name for r in a.rows if not r.ok} == {"total", "counts", "shifted"}


def test_group_norm_audit_locates_a_wrong_compact_formula(monkeypatch, rng):
    """The compact group norm dx without its x_hat term (the path through the variance forgotten):
    the staged steps pass, x alone fails."""
    def slip(dy, cache):
        g = (dy * cache["gamma"]).reshape(cache["group"]["x_hat"].shape)
        d = g.shape[-1]
        dx = (d * g - g.sum(axis=-1, keepdims=True)) / (d * cache["group"]["std"])
        return dx.reshape(dy.shape), (dy * cache["x_hat"]).sum(axis=cache["axes"]), dy.sum(axis=cache["axes"])
    x = rng.standard_normal((3, 4, 2, 3)) * 2 + 1
    args = (x, rng.standard_normal(4) + 1, rng.standard_normal(4), rng.standard_normal(x.shape))
    assert report.audit_group_norm(*args, num_groups=2).ok
    monkeypatch.setattr(analytic, "groupnorm_backward", slip)
    a = report.audit_group_norm(*args, num_groups=2)
    assert a.first_wrong == "x" and {r.name for r in a.rows if not r.ok} == {"x"}, "\n" + str(a)
    assert a["x"].fd_elements == 64 and a["x_hat"].fd_elements == 64  # of 72: a seeded sample


def conv_args(rng):
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)) * 0.3
    return x, w, rng.standard_normal(4) * 0.1, rng.standard_normal((2, 4, 3, 3))


def test_conv_audit_locates_a_kernel_left_unflipped_in_dx(monkeypatch, rng):
    """dx of a cross-correlation is the full convolution of dout with the kernel; a derivation that
    flips the kernel where it should not gets x (alone) wrong."""
    real = analytic.conv2d_backward

    def slip(dout, cache):
        _, dw, db = real(dout, cache)
        dx, _, _ = real(dout, {**cache, "w": cache["w"][:, :, ::-1, ::-1]})
        return dx, dw, db
    args = conv_args(rng)
    assert report.audit_conv_pool_relu(*args).ok
    monkeypatch.setattr(analytic, "conv2d_backward", slip)
    a = report.audit_conv_pool_relu(*args)
    assert a.first_wrong == "x" and {r.name for r in a.rows if not r.ok} == {"x"}, "\n" + str(a)


def test_conv_audit_locates_a_pool_gradient_sent_to_every_element(monkeypatch, rng):
    """Max-pool's gradient spread over the whole window instead of routed to its maximum: conv is the
    first wrong node, and x, w, b (all computed from d conv) inherit it."""
    def slip(dout, cache):
        return np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3)
    monkeypatch.setattr(analytic, "maxpool_backward", slip)
    a = report.audit_conv_pool_relu(*conv_args(rng))
    assert a.first_wrong == "conv", "\n" + str(a)
    assert {r.name for r in a.rows if not r.ok} == {"conv", "x", "w", "b"}


@requires_dot
def test_the_readme_audit_example_prints_what_the_readme_quotes(tmp_path, monkeypatch, capsys):
    """README's "Prove your own derivation" runs as printed; its output matches the quoted table line
    by line (words equal; numbers zero where quoted zero, else within a factor of 4: round-off)."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Prove your own derivation", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    quoted = section.split("```python\n", 1)[1].split("```", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert (tmp_path / "rms_norm_audit.png").stat().st_size > 0
    number = r"\d\.\d{3}e[-+]\d\d"
    assert len(printed.splitlines()) == len(quoted.splitlines())
    for q, p in zip(quoted.splitlines(), printed.splitlines()):
        assert re.sub(number, "#", q) == re.sub(number, "#", p), f"README: {q}\nnow:    {p}"
        for a, b in zip(map(float, re.findall(number, q)), map(float, re.findall(number, p))):
            assert (a == 0) == (b == 0) and (a == 0 or 1 / 4 <= b / a <= 4), f"README: {q}\nnow:    {p}"


def test_reports_show_as_html_tables_in_jupyter(rng):
    x, g, dy = rms_inputs(rng)
    page = audit(lambda x, g: rms_norm_loss(x, g, dy), [x, g], rms_norm_derivation(dy, "ms"))._repr_html_()
    assert page.count("<tr") == 1 + 7 and page.count("#ffd9d6") == 2 and page.count("#e3f6e3") == 5
    assert "FAIL: hand" in page and "first wrong at &#x27;ms&#x27;" in page
    report_page = tg.check.compare({"a": np.ones(3)}, {"a": np.ones(3) * 1.1})._repr_html_()
    assert report_page.count("#ffd9d6") == 1 and "FAILED" in report_page


# ------------------------------------------------ red-team findings: each once silently wrong or misleading

def test_a_large_loss_offset_does_not_hide_a_wrong_hand_gradient(rng):
    """float32, loss = 6e4 + 0.01 aux(h): the hand d/dh off by 2 used to pass under a floor that grew
    with |loss|; round-off is now judged from the gradients downstream of the node, not from |loss|."""
    pred = tg.Tensor((rng.standard_normal(64) * 30).astype(np.float32), name="pred")
    x = tg.Tensor(rng.standard_normal((4, 3)).astype(np.float32), name="x")

    def f(pred, x):
        h = node("h", x * 2)
        return (pred ** 2).sum() + 0.01 * node("aux", (h * h).sum())
    right = audit(f, [pred, x], lambda v: {"aux": np.float32(0.01), "h": 0.02 * v["h"]})
    wrong = audit(f, [pred, x], lambda v: {"aux": np.float32(0.01), "h": 0.01 * v["h"]})
    assert right.ok, "\n" + str(right)
    assert wrong.first_wrong == "h" and not wrong["h"].vs_hand.ok


class DoubleTanh(tg.Function):
    """tanh whose backward is 2x too large: autograd wrong, a hand derivation right."""
    def forward(self, a):
        return np.tanh(a)

    def backward(self, grad, out):
        return grad * (1 - out * out) * 2.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_wrong_autograd_is_blamed_by_the_finite_differences_in_float32_too(dtype, rng):
    x = tg.Tensor(rng.standard_normal((32, 64)).astype(dtype), name="x")
    target = rng.standard_normal((32, 64)).astype(dtype)

    def f(x):
        t = node("t", DoubleTanh.apply(node("z", x * 0.5)))
        return ((t - tg.Tensor(target)) ** 2).mean()

    def derive(v):
        dt = 2 * (v["t"] - target) / v["t"].size
        return {"t": dt, "z": dt * (1 - v["t"] ** 2), "x": 0.5 * dt * (1 - v["t"] ** 2)}
    a = audit(f, [x], derive)
    assert a["t"].ok and not a["z"].vs_fd.ok and not a["x"].vs_fd.ok, "\n" + str(a)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiny_probabilities_are_no_false_alarm(dtype, rng):
    """A confident wrong prediction (p of the label ~1e-5): one step for the whole node used to step
    past such elements' scale; each element now steps on its own scale, smaller if need be."""
    z = rng.standard_normal((8, 10)) * 2
    labels = rng.integers(0, 10, 8)
    z[0, labels[0]] = -8.0
    zt = tg.Tensor(z.astype(dtype), name="z")

    def f(z):
        probs = node("probs", z.softmax(axis=1))
        return -(node("logp", probs.log())[np.arange(8), labels]).mean()

    def derive(v):
        d = {"logp": np.zeros_like(v["logp"])}
        d["logp"][np.arange(8), labels] = -1 / 8
        d["probs"] = d["logp"] / v["probs"]
        d["z"] = v["probs"] - np.eye(10)[labels]
        d["z"] /= 8
        return d
    a = audit(f, [zt], derive)
    assert a.ok and not any(r.fd_inconclusive for r in a.rows), "\n" + str(a)


def test_mixed_dtypes_take_each_nodes_precision(rng):
    x = tg.Tensor(rng.standard_normal((5, 3)).astype(np.float32), name="x")
    w = tg.Tensor(rng.standard_normal((3, 2)), name="w")
    a = audit(lambda x, w: (node("h", x @ w) ** 2).sum(), [x, w],
              lambda v: {"h": 2 * v["h"], "x": 2 * v["h"] @ v["w"].T, "w": v["x"].T @ (2 * v["h"])})
    assert a.ok, "\n" + str(a)


def test_independent_slips_on_two_paths_are_both_named(rng):
    x = tg.Tensor(rng.standard_normal(5), name="x")

    def f(x):
        a = node("a2", node("a1", x * 3).tanh()).sum()
        return a + node("b1", (x * x).sum())

    def derive(v):
        t = v["a2"]
        return {"a2": np.ones(5), "a1": 1 - t * t + 0.1, "b1": 1.5}
    a = audit(f, [x], derive)
    assert set(a.wrong) == {"a1", "b1"} and a.first_wrong in {"a1", "b1"}
    assert "independently" in str(a) and "those before it are right" not in str(a)


@pytest.mark.parametrize("case, error, words", [
    ("return ignored", RuntimeError, r"does not go on with what node\(\) returns for \['h'\]"),
    ("nan loss", ValueError, "the loss is nan"),
    ("wrong shape", ValueError, r"gives 'h' with shape \(3,\), the node has shape \(1, 3\)"),
    ("none", ValueError, "gives None for 'h'"),
    ("nested", RuntimeError, "audits do not nest"),
])
def test_more_misuse_is_a_clear_error(case, error, words, rng):
    x = tg.Tensor(rng.standard_normal((1, 3)), name="x")

    def ignored(x):
        h = x * 2
        node("h", h)
        return (h * h).sum()
    fs = {"return ignored": ignored, "nan loss": lambda x: node("h", x * 2).sum() * float("nan"),
          "wrong shape": lambda x: node("h", x * 2).sum(), "none": lambda x: node("h", x * 2).sum(),
          "nested": lambda x: audit(lambda y: node("h", y * 2).sum(), [x], {}).loss}
    hand = {"wrong shape": {"h": np.ones(3)}, "none": {"h": None}}.get(case, {"h": np.ones((1, 3))})
    with pytest.raises(error, match=words):
        audit(fs[case], [x], hand)


def test_the_derivation_cannot_change_the_callers_labels(rng):
    labels = tg.Tensor(np.array([0, 2, 1, 0]))
    x = tg.Tensor(rng.standard_normal((4, 3)), name="x")

    def derive(v):
        v["input1"][:] = 2  # a careless derivation writing into what it was given
        return {"x": np.eye(3)[np.array([0, 2, 1, 0])] * -1}
    audit(lambda x, y: -(x[np.arange(4), y._data]).sum(), [x, labels], derive)
    np.testing.assert_array_equal(labels.data, [0, 2, 1, 0])


def test_a_numpy_backward_works_under_detect_anomaly(rng):
    x = tg.Tensor(rng.standard_normal(3), requires_grad=True)
    with tg.detect_anomaly():
        Cube.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 3 * x.data ** 2)


def test_an_integer_output_of_a_custom_op_does_not_require_grad(rng):
    class Round(tg.Function):
        def forward(self, a):
            return np.rint(a).astype(np.int64)

        def backward(self, grad, out):
            return None
    out = Round.apply(tg.Tensor(rng.standard_normal(3), requires_grad=True))
    assert out.dtype == np.int64 and not out.requires_grad


def test_gradcheck_perturbs_inputs_in_their_dtype_and_skips_outputs_without_grad(rng):
    class Float32Only(tg.Function):
        def forward(self, a):
            assert a.dtype == np.float32
            return a * 2

        def backward(self, grad, out):
            return grad * 2
    x32 = tg.Tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    with pytest.warns(UserWarning, match="not float64"):
        assert gradcheck(lambda a: Float32Only.apply(a), [x32], eps=1e-2, atol=1e-2, fast_mode=True)
    x = tg.Tensor(rng.standard_normal(4), requires_grad=True)
    for fast in (False, True):  # a detached output is not checked (PyTorch); a detached-only function must be constant
        assert gradcheck(lambda a: (a.tanh(), a.detach() * 3), [x], fast_mode=fast)
        assert not gradcheck(lambda a: a.detach() * 3, [x], fast_mode=fast, raise_exception=False)
