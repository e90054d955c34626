"""The scheduler's promises (tinygrad_bn/fusion.py): how many kernels and memory passes the
composites take under tg.fused(), which the README and docs/architecture.md quote, and the
executors' edge cases (NaN, -0.0, ties, repeated scatter indices) against eager, bit for bit."""
import importlib.util

import numpy as np
import pytest

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn import fusion

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
EXECUTORS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="numba (the fused "
                                                                     "extra) is not installed"))]


def bn_step(x0, dy0, **options):
    """Batch norm forward + backward under tg.fused(**options): (y, dx, dgamma, dbeta, context)."""
    x = tg.Tensor(x0, requires_grad=True)
    g = tg.Tensor(np.linspace(0.5, 1.5, x0.shape[1]).astype(x0.dtype), requires_grad=True)
    b = tg.Tensor(np.linspace(-1, 1, x0.shape[1]).astype(x0.dtype), requires_grad=True)
    with tg.fused(**options) as ctx:
        y = F.batch_norm(x, None, None, g, b, training=True)
        y.backward(tg.Tensor(dy0))
    return y.numpy(), x.grad.numpy(), g.grad.numpy(), b.grad.numpy(), ctx


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_takes_ten_passes_over_its_big_arrays(dtype):
    # sum(x); var's pass over x; one pass reading x and dy for the backward sums (dgamma's and
    # dvar's sum(dy * xc) shared, sum(dy) joined); dmu's sum (it needs dvar); the pass writing y
    # and dx from x and dy (y in a loop of its own when numba runs it)
    rng = np.random.default_rng(0)
    x0, dy0 = rng.standard_normal((300, 64)).astype(dtype), rng.standard_normal((300, 64)).astype(dtype)
    *_, ctx = bn_step(x0, dy0, executor="numpy", min_elements=1)
    assert ctx.stats["passes"] <= 10, ctx.report()


def test_factoring_sums_changes_no_value(monkeypatch):
    rng = np.random.default_rng(0)
    x0, dy0 = rng.standard_normal((300, 64)), rng.standard_normal((300, 64))
    *factored, _ = bn_step(x0, dy0, executor="numpy", min_elements=1)
    monkeypatch.setitem(fusion.STEPS, "factor_sums", False)
    *whole, _ = bn_step(x0, dy0, executor="numpy", min_elements=1)
    for a, b in zip(factored, whole):  # the same values either way, to round-off
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(64, 33), (1024, 1024)])
def test_a_sum_of_a_difference_is_not_split_where_its_terms_cancel(dtype, shape):
    # sum(x - y) with x and y near 1e10 (float64) or 100 (float32): sum(x) - sum(y) would lose the
    # differences the element-wise subtraction keeps exactly (found by a red team: 0.7% off)
    rng = np.random.default_rng(5)
    big = 1e10 if dtype == np.float64 else 100.0
    a, b = (big + rng.random(shape)).astype(dtype), (big + rng.random(shape)).astype(dtype)
    eager = (tg.Tensor(a) - tg.Tensor(b)).sum().item()
    for options in ({"min_elements": 1}, {}):
        with tg.fused(**options):
            fused = (tg.Tensor(a) - tg.Tensor(b)).sum().item()
        exact = float(np.sum(a.astype(np.float64) - b.astype(np.float64), dtype=np.float64))
        assert abs(fused - exact) <= 2 * abs(eager - exact) + 1e-12 * abs(exact) + np.finfo(dtype).eps * np.abs(
            a - b).sum(dtype=np.float64), (fused, eager, exact)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_equals_eager(executor, dtype):
    rng = np.random.default_rng(1)
    x0 = (rng.standard_normal((257, 33)) * 3 + 2).astype(dtype)
    dy0 = rng.standard_normal((257, 33)).astype(dtype)
    fused = bn_step(x0, dy0, executor=executor, min_elements=1)[:4]
    eager = []
    x = tg.Tensor(x0, requires_grad=True)
    g = tg.Tensor(np.linspace(0.5, 1.5, 33).astype(dtype), requires_grad=True)
    b = tg.Tensor(np.linspace(-1, 1, 33).astype(dtype), requires_grad=True)
    y = F.batch_norm(x, None, None, g, b, training=True)
    y.backward(tg.Tensor(dy0))
    eager = [y.numpy(), x.grad.numpy(), g.grad.numpy(), b.grad.numpy()]
    # float64: round-off; float32: the sums accumulate in float64 (eager: float32 row by row), so
    # they differ by eager's own rounding, ~sqrt(257) ulps of the sums' terms
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for name, f, e in zip(("y", "dx", "dgamma", "dbeta"), fused, eager):
        np.testing.assert_allclose(f, e, rtol=tol, atol=tol * np.abs(e).max(), err_msg=name)


def test_cross_entropy_gathers_its_picked_logits_without_writing_the_shifted_logits():
    # the loss reads z - max at one element per row: computed at those points, the (N, C) shifted
    # logits are never written (a pass), only exp's values (read again by the backward)
    rng = np.random.default_rng(2)
    z0, t = rng.standard_normal((400, 50)), rng.integers(0, 50, 400)
    z = tg.Tensor(z0, requires_grad=True)
    with tg.fused(min_elements=1, executor="numpy") as ctx:
        loss = F.cross_entropy(z, t)
        loss.backward()
    ze = tg.Tensor(z0, requires_grad=True)
    le = F.cross_entropy(ze, t)
    le.backward()
    assert loss.item() == pytest.approx(le.item(), rel=1e-14)
    np.testing.assert_allclose(z.grad.numpy(), ze.grad.numpy(), rtol=1e-13, atol=1e-16)
    # exp's pass reads z and writes exp; the gradient's pass reads exp and writes dz
    assert ctx.stats["passes"] <= 4, ctx.report()


def test_a_scatter_with_repeated_indices_adds_as_eager_across_tiles(monkeypatch):
    monkeypatch.setattr(fusion.kernels, "TILE_BYTES", 64 * 8)  # 8 rows of 64 float64 a tile
    rng = np.random.default_rng(3)
    z0 = rng.standard_normal((50, 64))
    rows, cols = rng.integers(0, 50, 300), rng.integers(0, 64, 300)  # many repeats, across tiles

    def f(z):
        return (z[rows, cols] * tg.Tensor(np.arange(300.0))).sum()
    z = tg.Tensor(z0, requires_grad=True)
    with tg.fused(min_elements=1, executor="numpy"):
        f(z).backward()
    ze = tg.Tensor(z0, requires_grad=True)
    f(ze).backward()
    np.testing.assert_array_equal(z.grad.numpy(), ze.grad.numpy())


SPECIAL = np.array([0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, np.nan, 3.0, 3.0, -2.0])


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("op", ["relu", "maximum", "minimum", "abs", "max", "min", "sqrt", "div", "where"])
def test_special_values_equal_eager_bit_for_bit(executor, op):
    a0 = np.tile(SPECIAL, (64, 3)).reshape(64, 30)
    b0 = np.roll(a0, 1, axis=1)
    fns = {"relu": lambda a, b: a.relu(), "maximum": lambda a, b: tg.maximum(a, b),
           "minimum": lambda a, b: tg.minimum(a, b), "abs": lambda a, b: a.abs(),
           "max": lambda a, b: (a + b).max(axis=0), "min": lambda a, b: (a * b).min(axis=1),
           "sqrt": lambda a, b: a.sqrt(), "div": lambda a, b: a / b,
           "where": lambda a, b: tg.where(a0 > b0, a * 2, b)}
    with np.errstate(all="ignore"):
        want = fns[op](tg.Tensor(a0), tg.Tensor(b0)).numpy()
        with tg.fused(min_elements=1, executor=executor):
            got = fns[op](tg.Tensor(a0), tg.Tensor(b0)).numpy()
    # the same bits: -0.0 stays -0.0, NaN stays NaN (compared as bytes)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.signbit(got) | np.isnan(got), np.signbit(want) | np.isnan(want))
    np.testing.assert_array_equal(got, want)


def test_numba_kernels_compile_once_per_structure():
    pytest.importorskip("numba")
    rng = np.random.default_rng(4)
    x0, dy0 = rng.standard_normal((64, 40)), rng.standard_normal((64, 40))
    bn_step(x0, dy0, executor="numba", min_elements=1)
    *_, again = bn_step(x0 + 1, dy0, executor="numba", min_elements=1)  # new values, same structure
    assert again.compile_seconds == 0 and again.stats["kernels_numba"] > 0


# ------------------------------------------------------------------ what README.md quotes

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def readme_section(title: str) -> str:
    return (ROOT / "README.md").read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.skipif(not HAVE_NUMBA, reason="the quoted kernels are numba's (the fused extra)")
def test_the_readme_fused_example_prints_what_the_readme_quotes(capsys):
    import re
    section = readme_section("Fused execution")
    code, after = section.split("```python\n", 1)[1].split("```", 1)
    quoted = after.split("```\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    number = r"\d\.\de-\d\d"
    for q, p in zip(quoted.splitlines(), printed.splitlines(), strict=True):
        assert re.sub(number, "#", q) == re.sub(number, "#", p), f"README: {q}\nnow:    {p}"
        for a, b in zip(map(float, re.findall(number, q)), map(float, re.findall(number, p))):
            assert 1 / 4 <= b / a <= 4, f"README: {q}\nnow:    {p}"  # float32 round-off, not an exact number


def test_the_readme_speed_tables_are_the_saved_runs(monkeypatch):
    """README's timing tables are benchmarks/results.json (printed as run.py prints it) and
    benchmarks/fusion_steps.txt, word for word: a number changes only with a new run."""
    import contextlib
    import io
    import json
    import sys
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setitem(sys.modules, "torch", None)  # (run.py only needs its formatting here)
    import run
    with contextlib.redirect_stdout(io.StringIO()) as out:
        run.print_table(json.loads((ROOT / "benchmarks" / "results.json").read_text())["rows"])
    table = [line for line in out.getvalue().splitlines() if set(line) != {"-"}]
    speed = readme_section("Speed")
    assert "\n".join(table) in speed
    assert (ROOT / "benchmarks" / "fusion_steps.txt").read_text().rstrip("\n") in speed


# ------------------------------------------------------------------ a red team's findings, kept fixed

def test_a_scattered_gradient_never_writes_into_an_array_another_value_reads():
    from tinygrad_bn import ops
    rows = cols = np.array([0, 1, 2])
    x = tg.Tensor(np.ones((8, 5)))
    with tg.fused(executor="numpy", min_elements=1):
        t = x * 2.0
        u = t + ops.IndexAdd.apply(tg.Tensor(np.ones(3)), shape=(8, 5), index=(rows, cols))
        w = t * 1.0  # another reader of t's array
        del t
        u.numpy()  # u alone: t's array must not get the scatter
    np.testing.assert_array_equal(w.numpy(), np.full((8, 5), 2.0))


def test_the_array_a_from_numpy_view_belongs_to_is_held_too():
    base = np.ones((4, 4))
    x = tg.from_numpy(base[:2])
    with tg.fused(min_elements=1):
        y = x * 2.0
        with pytest.raises(ValueError, match="read-only"):
            base[0, 0] = 100.0  # as eager's guards refuse it under a graph
    np.testing.assert_array_equal(y.numpy(), np.full((2, 4), 2.0))
    base[0, 0] = 100.0  # computed: the hold let go


def test_an_integer_op_raises_at_the_op_and_the_bodys_error_wins():
    a, b = tg.Tensor(np.arange(1, 11)), tg.Tensor(np.array(-1))
    with tg.fused(min_elements=1):
        with pytest.raises(ValueError, match="negative integer powers"):
            a ** b  # as eager: integers wait for nothing
    x = tg.Tensor(np.ones((4, 4)))
    with pytest.raises(KeyError), tg.fused(min_elements=1):
        y = x * 2.0
        raise KeyError("the caller's own error")
    assert type(y._data) is np.ndarray and tg.engine._State.lazy is None


def test_pending_values_through_writable_data_the_data_setter_and_parameter():
    x = tg.Tensor(np.ones((3, 4)))
    with tg.fused(min_elements=1):
        y = x * 2.0
        w = y.writable_data()
        assert type(w) is np.ndarray
        w[0, 0] = 7.0
        z = tg.Tensor(np.zeros((3, 4)))
        z.data = x * 3.0  # a pending Tensor assigned
        p = tg.nn.Parameter(x * 4.0)
    assert y.numpy()[0, 0] == 7.0 and (z.numpy() == 3.0).all() and (p.numpy() == 4.0).all()


def test_threads_reading_one_pending_value_compute_it_once():
    import threading
    x = tg.Tensor(np.random.default_rng(0).standard_normal((400, 300)))
    want = (np.tanh(x.numpy() * 2.0) * x.numpy()).sum(0)
    got, errors = {}, []
    with tg.fused(executor="numpy", min_elements=1):
        y = ((x * 2.0).tanh() * x).sum(0)

        def read(i):
            try:
                got[i] = np.array(y.numpy())
            except Exception as e:  # noqa: BLE001 (any error is the finding)
                errors.append(e)
        threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and len(got) == 8
    for v in got.values():
        np.testing.assert_allclose(v, want, rtol=1e-12)
