"""The engine's contract: depth, visiting each node once, accumulation, retain_graph, seeds,
retain_grad, tg.grad, higher derivatives, grad mode, dtype rules, scopes and .grad ownership."""
from __future__ import annotations

import re
import threading
from collections import Counter

import numpy as np
import pytest

import tinygrad_bn as tg
from tinygrad_bn import Tensor, ops


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _leaf(a, **kw) -> Tensor:
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True, **kw)


def _graph_ctxs(*roots: Tensor) -> set:
    """Every Function recorded behind `roots` (an iterative walk, independent of the engine's sort)."""
    seen, stack, ctxs = set(), list(roots), set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t._ctx is not None:
            ctxs.add(t._ctx)
            stack.extend(t._ctx.parents)
    return ctxs


def _count_backward(monkeypatch, *classes) -> Counter:
    """Replace each class's backward with a wrapper that counts calls per Function instance."""
    calls: Counter = Counter()
    for cls in classes:
        orig = cls.backward

        def counting(self, grad, out, _orig=orig):
            calls[self] += 1
            return _orig(self, grad, out)

        monkeypatch.setattr(cls, "backward", counting)
    return calls


# ------------------------------------------------------------------------------ depth


def test_chain_of_100k_ops_backpropagates_exactly():
    # 25,000 rounds of (*2, +b, *0.5, +b): each round maps y -> y + 1.5 b, so
    # d out/dx = (2 * 0.5)^25000 = 1 and d out/db = 1.5 * 25000, both exact in float64.
    rounds = 25_000
    x = _leaf([0.25, -1.5, 3.0])
    b = _leaf([1.0, -0.5, 0.125])
    y = x
    for _ in range(rounds):
        y = ((y * 2.0 + b) * 0.5) + b
    n_ops = len(_graph_ctxs(y))
    assert n_ops == 4 * rounds
    w = np.array([1.0, -2.0, 0.5])
    y.backward(w)  # raises RecursionError if the sort or the sweep recursed
    assert np.array_equal(x.grad.data, w)
    assert np.array_equal(b.grad.data, 1.5 * rounds * w)
    assert np.array_equal(y.data, x.data + 1.5 * rounds * b.data)


def test_deep_graph_survives_teardown_and_tg_grad():
    x = _leaf(0.5)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    (g,) = tg.grad(y, x)
    assert g.item() == 1.0
    del y  # freeing a 100k-deep chain must not overflow the C stack either


# ------------------------------------------------------------------ each node once


def _lattice(x: Tensor, y: Tensor, depth: int):
    """a' = tanh(a b), b' = tanh(a + b): 2^depth paths from the output to the leaves."""
    a, b = x, y
    for _ in range(depth):
        a, b = (a * b).tanh(), (a + b).tanh()
    return a * b


def _lattice_forward_mode(xv: float, yv: float, depth: int) -> tuple[float, float]:
    """The same function's gradient by hand, in forward mode (dual numbers for d/dx, d/dy)."""
    a, b = xv, yv
    da, db = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    for _ in range(depth):
        p, s = a * b, a + b
        dp, ds = da * b + a * db, da + db
        a, b = np.tanh(p), np.tanh(s)
        da, db = (1 - a * a) * dp, (1 - b * b) * ds
    g = da * b + a * db
    return g[0], g[1]


def test_each_backward_runs_once_in_a_shared_dag(monkeypatch):
    depth = 40  # 2^40 paths: any per-path traversal would never finish
    x, y = _leaf(0.7), _leaf(-0.3)
    out = _lattice(x, y, depth)
    ctxs = _graph_ctxs(out)
    assert len(ctxs) == 4 * depth + 1  # Mul, Tanh, Add, Tanh per layer, and the final Mul
    calls = _count_backward(monkeypatch, ops.Mul, ops.Add, ops.Tanh)
    out.backward()
    assert set(calls) == ctxs
    assert set(calls.values()) == {1}
    gx, gy = _lattice_forward_mode(0.7, -0.3, depth)
    np.testing.assert_allclose([x.grad.item(), y.grad.item()], [gx, gy], rtol=1e-12, atol=1e-300)


def test_diamond_runs_each_backward_once_and_sums_branches(monkeypatch):
    x = _leaf([1.5, -2.0])
    a = x * 3.0
    b = x * x
    c = a * b + a  # a is used twice, x three times
    loss = c.sum()
    ctxs = _graph_ctxs(loss)
    calls = _count_backward(monkeypatch, ops.Mul, ops.Add, ops.Sum)
    loss.backward()
    assert set(calls) == ctxs and set(calls.values()) == {1}
    # c = 3x^3 + 3x  ->  9x^2 + 3
    np.testing.assert_allclose(x.grad.data, 9 * x.data**2 + 3, rtol=1e-15)


def test_tg_grad_runs_each_backward_once(monkeypatch):
    x, y = _leaf(0.2), _leaf(0.9)
    out = _lattice(x, y, 25)
    ctxs = _graph_ctxs(out)
    calls = _count_backward(monkeypatch, ops.Mul, ops.Add, ops.Tanh)
    tg.grad(out, [x, y])
    assert set(calls) == ctxs and set(calls.values()) == {1}


# ----------------------------------------------------------------------- accumulation


def test_gradients_accumulate_across_backward_calls_and_zero_grad_resets():
    x = _leaf([1.0, 2.0, -3.0])
    (x * x).sum().backward()
    first = x.grad
    np.testing.assert_array_equal(first.data, 2 * x.data)
    (x * 5.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, 2 * x.data + 5.0)
    x.zero_grad()
    assert x.grad is None
    (x * 4.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.full(3, 4.0))


def test_leaf_used_several_times_sums_contributions():
    x = _leaf([0.5, -1.25])
    y = x * x + x * 3.0 - x / 2.0 + x  # 2x + 3 - 1/2 + 1
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, 2 * x.data + 3.5)


def test_leaf_broadcast_in_several_places_sums_and_keeps_shape():
    b = _leaf([[1.0], [2.0]])  # (2, 1)
    m = Tensor(np.arange(6.0).reshape(2, 3))
    (m * b + b).sum().backward()
    assert b.grad.shape == (2, 1)
    np.testing.assert_array_equal(b.grad.data, m.data.sum(axis=1, keepdims=True) + 3)


# ----------------------------------------------------------------------- retain_graph


def test_retain_graph_allows_second_backward():
    x = _leaf([1.0, -2.0])
    z = (x * x * x).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(x.grad.data, 2 * 3 * x.data**2)


def test_second_backward_without_retain_graph_is_an_error_and_changes_nothing():
    x = _leaf([1.0, -2.0])
    y = x * x
    z = y.sum()
    z.backward()
    before = x.grad.data.copy()
    with pytest.raises(RuntimeError, match="retain_graph"):
        z.backward()
    np.testing.assert_array_equal(x.grad.data, before)
    # a new output built on the freed part of the graph is refused the same way
    with pytest.raises(RuntimeError, match="retain_graph"):
        (y * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, before)


def test_tg_grad_frees_the_graph_unless_retained():
    x = _leaf([1.0, 2.0])
    z = (x * x).sum()
    tg.grad(z, x, retain_graph=True)
    tg.grad(z, x)
    with pytest.raises(RuntimeError, match="retain_graph"):
        tg.grad(z, x)


def test_tg_grad_ignores_a_freed_branch_it_does_not_need():
    x, w = _leaf([1.0, 2.0]), _leaf([3.0, 4.0])
    h = x * x
    h.sum().backward()  # frees h's graph
    (gw,) = tg.grad((h * w).sum(), w)
    np.testing.assert_array_equal(gw.data, h.data)


def test_failing_backward_rule_writes_nothing_and_frees_nothing(monkeypatch):
    x = _leaf([1.0, 2.0])
    x.grad = Tensor(np.array([10.0, 20.0]))
    y = (x * 3.0).tanh() + x
    orig = ops.Tanh.backward

    def broken(self, grad, out):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(ops.Tanh, "backward", broken)
    with pytest.raises(ZeroDivisionError):
        y.sum().backward()
    assert tg.is_grad_enabled()
    np.testing.assert_array_equal(x.grad.data, [10.0, 20.0])
    monkeypatch.setattr(ops.Tanh, "backward", orig)
    y.sum().backward()  # the graph was not freed by the failed call
    expected = np.array([10.0, 20.0]) + 3 * (1 - np.tanh(3 * x.data) ** 2) + 1
    np.testing.assert_allclose(x.grad.data, expected, rtol=1e-15)


# ------------------------------------------------------------------------ seeds


def test_backward_on_non_scalar_without_grad_names_the_shape():
    x = _leaf(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=re.escape("(2, 3)")):
        (x * 2.0).backward()
    assert x.grad is None


def test_backward_on_non_scalar_with_explicit_grad():
    x = _leaf(np.arange(6.0).reshape(2, 3))
    g = _rng(1).standard_normal((2, 3))
    (x * x).backward(Tensor(g))
    np.testing.assert_array_equal(x.grad.data, g * 2 * x.data)
    x.zero_grad()
    (x * 3.0).backward(g)  # an ndarray works too
    np.testing.assert_array_equal(x.grad.data, 3.0 * g)


def test_single_element_non_scalar_needs_no_grad():
    x = _leaf([[2.0]])
    (x * x).backward()
    np.testing.assert_array_equal(x.grad.data, [[4.0]])


def test_grad_of_wrong_shape_names_both_shapes():
    x = _leaf(np.ones((2, 3)))
    with pytest.raises(RuntimeError) as info:
        (x * 2.0).backward(np.ones(3))  # broadcastable, still wrong
    assert "(3,)" in str(info.value) and "(2, 3)" in str(info.value)
    assert x.grad is None


def test_backward_on_tensor_without_grad_is_an_error():
    t = Tensor(np.ones(3)).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        t.backward()
    with tg.no_grad():
        u = (_leaf([1.0]) * 2.0).sum()
    with pytest.raises(RuntimeError):
        u.backward()


def test_backward_seed_dtype_follows_the_output():
    x = Tensor(np.ones(2, np.float32), requires_grad=True)
    (x * 2.0).backward(np.array([1.0, 3.0]))  # a float64 seed for a float32 output
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.data, [2.0, 6.0])


# -------------------------------------------------------------------------- retain_grad


def test_retain_grad_keeps_intermediate_grad_and_others_stay_none():
    x = _leaf([1.0, -2.0])
    y = x * 3.0
    y.retain_grad()
    z = y * y
    w = z.sum()
    w.backward()
    np.testing.assert_array_equal(y.grad.data, 2 * y.data)
    np.testing.assert_array_equal(x.grad.data, 2 * y.data * 3.0)
    assert z.grad is None and w.grad is None
    assert y.requires_grad and not y.is_leaf


def test_retained_grad_accumulates_like_leaf_grad():
    x = _leaf([1.0, 2.0])
    y = x * 2.0
    y.retain_grad()
    s = (y * y).sum()
    s.backward(retain_graph=True)
    s.backward()
    np.testing.assert_array_equal(y.grad.data, 2 * (2 * y.data))


# ------------------------------------------------------------------------------ tg.grad


def test_tg_grad_returns_tuple_and_does_not_touch_grad():
    x, y = _leaf([1.0, 2.0]), _leaf([3.0, -1.0])
    x.grad = Tensor(np.array([7.0, 7.0]))
    z = (x * y).sum()
    gs = tg.grad(z, [x, y])
    assert isinstance(gs, tuple) and len(gs) == 2
    np.testing.assert_array_equal(gs[0].data, y.data)
    np.testing.assert_array_equal(gs[1].data, x.data)
    np.testing.assert_array_equal(x.grad.data, [7.0, 7.0])
    assert y.grad is None


def test_tg_grad_accepts_single_tensors_and_sequences():
    x = _leaf([1.0, 2.0])
    single = tg.grad((x * x).sum(), x)
    assert isinstance(single, tuple) and len(single) == 1
    np.testing.assert_array_equal(single[0].data, 2 * x.data)
    as_tuple = tg.grad([(x * x).sum()], (x,))
    np.testing.assert_array_equal(as_tuple[0].data, 2 * x.data)


def test_tg_grad_with_grad_outputs_and_several_outputs():
    x = _leaf([1.0, 2.0, 3.0])
    v1, v2 = np.array([1.0, -1.0, 2.0]), np.array([0.5, 0.0, 4.0])
    (g,) = tg.grad(x * x, x, grad_outputs=Tensor(v1))
    np.testing.assert_array_equal(g.data, 2 * x.data * v1)
    # several outputs: d(sum_k v_k . out_k)/dx
    (g,) = tg.grad([x * x, x * 3.0], x, grad_outputs=[Tensor(v1), Tensor(v2)])
    np.testing.assert_array_equal(g.data, 2 * x.data * v1 + 3.0 * v2)
    with pytest.raises(RuntimeError, match=re.escape("(3,)")):
        tg.grad(x * x, x)  # non-scalar output needs grad_outputs


def test_tg_grad_of_intermediate_input():
    x = _leaf([1.0, -2.0])
    y = x * 3.0
    z = (y * y).sum()
    gy, gx = tg.grad(z, [y, x])
    np.testing.assert_array_equal(gy.data, 2 * y.data)
    np.testing.assert_array_equal(gx.data, 18 * x.data)
    assert y.grad is None and x.grad is None


def test_tg_grad_allow_unused():
    x, unused = _leaf([1.0, 2.0]), _leaf([5.0])
    z = (x * x).sum()
    with pytest.raises(RuntimeError, match=r"input 1\b") as info:
        tg.grad(z, [x, unused], retain_graph=True)
    assert "allow_unused" in str(info.value)
    gx, gu = tg.grad(z, [x, unused], allow_unused=True)
    assert gu is None
    np.testing.assert_array_equal(gx.data, 2 * x.data)


def test_tg_grad_input_without_requires_grad_is_an_error():
    x, c = _leaf([1.0]), Tensor(np.array([2.0]))
    with pytest.raises(RuntimeError, match="input 1"):
        tg.grad((x * c).sum(), [x, c])


# -------------------------------------------------------------------------- create_graph


def test_second_derivative_of_cube_is_exactly_6x():
    xv = _rng(2).standard_normal(7)
    x = _leaf(xv)
    (g,) = tg.grad((x**3).sum(), x, create_graph=True)
    assert g.requires_grad
    np.testing.assert_array_equal(g.data, 3 * xv**2)
    (h,) = tg.grad(g.sum(), x)
    assert h.dtype == np.float64
    assert np.array_equal(h.data, 6 * xv)


def test_third_derivative_of_fourth_power_is_24x():
    xv = _rng(3).standard_normal(5)
    x = _leaf(xv)
    (g1,) = tg.grad((x**4).sum(), x, create_graph=True)
    (g2,) = tg.grad(g1.sum(), x, create_graph=True)
    (g3,) = tg.grad(g2.sum(), x)
    np.testing.assert_allclose(g1.data, 4 * xv**3, rtol=1e-15)
    np.testing.assert_allclose(g2.data, 12 * xv**2, rtol=1e-15)
    assert np.array_equal(g3.data, 24 * xv)


def test_backward_create_graph_leaves_a_differentiable_grad():
    x = _leaf([0.5, -1.5])
    (x**3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (h,) = tg.grad(x.grad.sum(), x)
    np.testing.assert_array_equal(h.data, 6 * x.data)


def _mlp_loss(params, xb, yb):
    w1, b1, w2, b2 = params
    h = (xb @ w1 + b1).tanh()
    r = h @ w2 + b2 - yb
    return (r * r).mean()


def test_hessian_vector_product_matches_finite_differences_of_gradient():
    rng = _rng(4)
    xb, yb = Tensor(rng.standard_normal((6, 3))), Tensor(rng.standard_normal((6, 1)))
    shapes = [(3, 5), (5,), (5, 1), (1,)]
    p0 = [rng.standard_normal(s) * 0.7 for s in shapes]
    v = [rng.standard_normal(s) for s in shapes]

    def gradient(arrays, create_graph=False):
        params = [_leaf(a) for a in arrays]
        return params, tg.grad(_mlp_loss(params, xb, yb), params, create_graph=create_graph)

    params, gs = gradient(p0, create_graph=True)
    gv = sum((g * Tensor(vi)).sum() for g, vi in zip(gs, v))
    hvp = [h.data for h in tg.grad(gv, params)]

    eps = 1e-5
    plus = gradient([p + eps * vi for p, vi in zip(p0, v)])[1]
    minus = gradient([p - eps * vi for p, vi in zip(p0, v)])[1]
    fd = [(a.data - b.data) / (2 * eps) for a, b in zip(plus, minus)]

    flat_h, flat_fd = np.concatenate([h.ravel() for h in hvp]), np.concatenate([f.ravel() for f in fd])
    assert np.linalg.norm(flat_fd) > 1e-2  # a non-trivial direction
    rel = np.linalg.norm(flat_h - flat_fd) / np.linalg.norm(flat_fd)
    assert rel < 1e-7, rel
    for h, f in zip(hvp, fd):
        np.testing.assert_allclose(h, f, rtol=1e-6, atol=1e-8)


def test_create_graph_grad_of_intermediate_is_differentiable():
    x = _leaf([1.0, 2.0])
    y = x * x
    z = (y * y).sum()  # dz/dy = 2y = 2x^2, and d/dx sum(2x^2) = 4x
    (gy,) = tg.grad(z, y, create_graph=True)
    (gx,) = tg.grad(gy.sum(), x)
    np.testing.assert_array_equal(gx.data, 4 * x.data)


# --------------------------------------------------------------------------- grad mode


def test_no_grad_context_records_nothing():
    x = _leaf([1.0, 2.0])
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = (x * 2.0).exp() + x
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    np.testing.assert_allclose(y.data, np.exp(2 * x.data) + x.data, rtol=1e-15)


def test_no_grad_decorator_records_nothing():
    @tg.no_grad()
    def f(t):
        assert not tg.is_grad_enabled()
        return t * t

    x = _leaf([3.0])
    y = f(x)
    assert not y.requires_grad and y._ctx is None
    assert tg.is_grad_enabled()
    assert f.__name__ == "f"
    assert f(x).data.item() == 9.0  # reusable


def test_no_grad_restores_mode_after_exceptions():
    with pytest.raises(ValueError):
        with tg.no_grad():
            raise ValueError
    assert tg.is_grad_enabled()

    @tg.no_grad()
    def boom():
        raise KeyError

    with pytest.raises(KeyError):
        boom()
    assert tg.is_grad_enabled()
    with tg.no_grad():
        with pytest.raises(ValueError):
            with tg.enable_grad():
                raise ValueError
        assert not tg.is_grad_enabled()


def test_enable_grad_inside_no_grad_and_nesting():
    x = _leaf([1.0])
    with tg.no_grad():
        with tg.enable_grad():
            y = x * 2.0
        z = x * 2.0
        with tg.no_grad():
            assert not tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
    assert y.requires_grad and y._ctx is not None
    assert not z.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0])


def test_same_no_grad_object_can_be_reentered():
    ng = tg.no_grad()
    with ng:
        with tg.enable_grad():
            with ng:
                assert not tg.is_grad_enabled()
            assert tg.is_grad_enabled()
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_backward_inside_no_grad_still_works():
    x = _leaf([1.0, 2.0])
    loss = (x * x).sum()
    with tg.no_grad():
        loss.backward()
        assert not tg.is_grad_enabled()
    np.testing.assert_array_equal(x.grad.data, 2 * x.data)


def test_no_grad_bare_decorator():
    @tg.no_grad
    def f(t):
        return t * 2.0

    assert not f(_leaf([1.0])).requires_grad


def test_grad_mode_is_thread_local():
    entered, done, seen = threading.Event(), threading.Event(), {}

    def worker():
        entered.wait(5)
        seen["requires_grad"] = (_leaf([1.0]) * 2.0).requires_grad
        done.set()

    th = threading.Thread(target=worker)
    th.start()
    with tg.no_grad():
        entered.set()
        done.wait(5)
    th.join()
    assert seen["requires_grad"] is True


def test_detach_cuts_graph_but_shares_data():
    x = _leaf([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert not d.requires_grad and d._ctx is None
    assert np.shares_memory(d.data, y.data)
    z = (d * x).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.data, y.data)  # no path through d back to x
    with pytest.raises(ValueError, match="read-only"):  # y's array belongs to a graph: it is never written
        d.data[0] = 100.0


# ---------------------------------------------------------------------------- dtypes


def test_constructor_dtype_rules():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([[1.0], [2.5]]).dtype == np.float32
    assert Tensor(3).dtype == np.int64
    assert Tensor([1, 2]).dtype == np.int64
    for dt in (np.float64, np.float32, np.float16, np.int32, np.int64, np.uint8, np.bool_):
        assert Tensor(np.zeros(2, dt)).dtype == dt
    assert Tensor(np.zeros(2), dtype=np.float32).dtype == np.float32


def test_requires_grad_on_int_tensor_raises_type_error():
    with pytest.raises(TypeError):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError):
        Tensor(3, requires_grad=True)
    with pytest.raises(TypeError):
        Tensor(np.array([True]), requires_grad=True)


@pytest.mark.parametrize("op", [
    lambda t: t + 2.5, lambda t: 2.5 + t, lambda t: t - 1, lambda t: 1 - t, lambda t: t * 3, lambda t: 0.1 * t,
    lambda t: t / 7.0, lambda t: 7.0 / t, lambda t: t ** 2, lambda t: t ** 0.5, lambda t: 2.0 ** t,
    lambda t: t.maximum(0.25), lambda t: tg.maximum(0.25, t), lambda t: t * np.float64(1.1),
    lambda t: t.mean(), lambda t: t.var(correction=1), lambda t: t.logsumexp(), lambda t: t.softmax(),
    lambda t: t.log_softmax(), lambda t: t.sigmoid().sqrt(), lambda t: t.max(), lambda t: t[np.array([0, 0, 2])],
])
def test_python_numbers_keep_float32_in_value_and_gradient(op):
    x = Tensor(np.array([0.5, 1.5, 2.0], np.float32), requires_grad=True)
    y = op(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_float32_leaf_gets_float32_grad_through_float64_ops():
    x = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    w = _leaf([3.0, 4.0])
    y = x * w
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])


def test_integer_tensor_with_int_numbers_stays_integer():
    i = Tensor([1, 2, 3])
    assert (i + 1).dtype == np.int64 and (2 * i).dtype == np.int64
    np.testing.assert_array_equal((i * 2 - 1).data, [1, 3, 5])


@pytest.mark.parametrize("op", [lambda i: i * 2.5, lambda i: i + 0.5, lambda i: 2.5 * i, lambda i: i / 2],
                         ids=["i*2.5", "i+0.5", "2.5*i", "i/2"])
def test_integer_tensor_with_float_number_gives_default_float(op):
    i = Tensor([1, 2, 3])
    assert op(i).dtype == np.float32  # as PyTorch: an int tensor and a float give the default float32


@pytest.mark.parametrize("name, op, dx", [
    ("add", lambda a, t: a + t, lambda a, x: np.ones_like(x)),
    ("sub", lambda a, t: a - t, lambda a, x: -np.ones_like(x)),
    ("mul", lambda a, t: a * t, lambda a, x: a),
    ("div", lambda a, t: a / t, lambda a, x: -a / x**2),
    ("pow", lambda a, t: a ** t, lambda a, x: a**x * np.log(a)),
])
def test_ndarray_on_the_left_gives_a_tensor(name, op, dx):
    a = np.array([1.5, 2.0, 3.0])
    x = _leaf([0.5, -1.0, 2.0])
    y = op(a, x)
    assert isinstance(y, Tensor), name
    np.testing.assert_allclose(y.data, op(a, x.data), rtol=1e-15)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, dx(a, x.data), rtol=1e-14)


def test_ndarray_on_the_left_of_matmul_gives_a_tensor():
    a = np.arange(6.0).reshape(2, 3)
    x = _leaf(np.ones((3, 2)))
    y = a @ x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, a.T @ np.ones((2, 2)))


# ---------------------------------------------------------------------- scopes and names


def test_scopes_are_recorded_on_each_ctx():
    x = _leaf([1.0, 2.0])
    with tg.scope("a"):
        y = x * 2.0
        with tg.scope("b"):
            z = y.exp() + y
        w = z.sum()
    v = w * 1.0
    assert y._ctx.scope == ("a",)
    assert z._ctx.scope == ("a", "b") and z._ctx.parents[0]._ctx.scope == ("a", "b")
    assert w._ctx.scope == ("a",)
    assert v._ctx.scope == ()


def test_scope_is_restored_after_exceptions():
    with pytest.raises(ValueError):
        with tg.scope("outer"):
            raise ValueError
    y = _leaf([1.0]) * 2.0
    assert y._ctx.scope == ()


def test_name_is_kept():
    x = Tensor(np.ones(2), requires_grad=True, name="weight")
    assert x.name == "weight"
    assert tg.tensor([1.0], name="b").name == "b"


# ----------------------------------------------------------------------- .grad ownership


@pytest.mark.parametrize("seeded", [False, True], ids=["sum", "explicit-grad"])
def test_leaf_grads_are_independent_arrays(seeded):
    # Add.backward hands the same upstream gradient to both inputs; each .grad must own a copy
    x, y = _leaf([1.0, 2.0]), _leaf([3.0, 4.0])
    z = x + y
    z.retain_grad()
    seed = Tensor(np.ones(2))
    if seeded:
        z.backward(seed)
    else:
        z.sum().backward()
    for t in (x, y, z):
        assert t.grad.data.flags.writeable
    x.grad.data[0] = 99.0
    np.testing.assert_array_equal(y.grad.data, [1.0, 1.0])
    np.testing.assert_array_equal(z.grad.data, [1.0, 1.0])
    y.grad.data *= 5.0
    np.testing.assert_array_equal(z.grad.data, [1.0, 1.0])
    z.grad.data[:] = -1.0
    np.testing.assert_array_equal(x.grad.data, [99.0, 1.0])
    np.testing.assert_array_equal(seed.data, [1.0, 1.0])


def test_explicit_seed_is_not_aliased_by_grad():
    x = _leaf([1.0, 2.0])
    seed = Tensor(np.array([1.0, 1.0]))
    (x * 1.0 + 0.0).backward(seed)
    x.grad.data[:] = 0.0
    np.testing.assert_array_equal(seed.data, [1.0, 1.0])


def test_grad_of_broadcast_and_reshape_is_writable_and_owned():
    x = _leaf([[1.0, 2.0]])  # (1, 2)
    y = _leaf([3.0, 4.0])
    (x.broadcast_to((3, 2)) + y.reshape(1, 2)).sum().backward()
    for t in (x, y):
        assert t.grad.data.flags.writeable and t.grad.data.base is None
    x.grad.data += 1.0
    np.testing.assert_array_equal(y.grad.data, [3.0, 3.0])


def test_leaf_grads_are_independent_with_create_graph():
    x, y = _leaf([1.0, 2.0]), _leaf([3.0, 4.0])
    (x + y).sum().backward(create_graph=True)
    assert x.grad is not y.grad
    x.grad.data[0] = 99.0
    np.testing.assert_array_equal(y.grad.data, [1.0, 1.0])
