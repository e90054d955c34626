"""tg.optim against the update rules of PyTorch's documentation, re-implemented below in plain NumPy
step by step (float64 to ~1e-15; float32 stays float32), weight decay (coupled, and AdamW's decoupled)
and Nesterov momentum included; closed-form first steps; per-parameter state (a parameter without a
gradient is skipped and gets no state); in-place updates; zero_grad; state_dict round trips; bad
arguments and hyper-parameters (exact exception types, nothing changed); convergence on a convex
quadratic; and, when PyTorch is installed, torch.optim over 25 steps."""
import math

import numpy as np
import pytest
from conftest import assert_same, both, snap

import tinygrad_bn as tg

F64, F32 = np.float64, np.float32
SHAPES = [(3, 4), (5,), (), (2, 3, 2)]  # parameters of different shapes, a 0-d one among them


# ---------------------------------------------------------------- the documented algorithms, in NumPy
# Each reference step takes theta, g and the state dict of ONE parameter (empty before its first
# update) and returns the new theta, written exactly as torch.optim's documentation states it.

def ref_sgd(lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    def step(theta, g, state):
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            state["b"] = g if "b" not in state else momentum * state["b"] + g  # dampening 0, b_1 = g_1
            g = g + momentum * state["b"] if nesterov else state["b"]
        return theta - lr * g
    return step


def ref_rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0):
    def step(theta, g, state):
        if weight_decay != 0:
            g = g + weight_decay * theta
        state["v"] = alpha * state.get("v", 0.0) + (1 - alpha) * g ** 2  # v_0 = 0
        return theta - lr * g / (np.sqrt(state["v"]) + eps)
    return step


def ref_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """Adam; decoupled=True is AdamW (theta <- theta - lr wd theta first, the gradient left as it is)."""
    b1, b2 = betas

    def step(theta, g, state):
        if decoupled:
            theta = theta - lr * weight_decay * theta
        elif weight_decay != 0:
            g = g + weight_decay * theta
        t = state["t"] = state.get("t", 0) + 1
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g ** 2
        m_hat = state["m"] / (1 - b1 ** t)
        v_hat = state["v"] / (1 - b2 ** t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return step


def ref_adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    return ref_adam(lr, betas, eps, weight_decay, decoupled=True)


# name: (optimizer class, hyper-parameters, reference). eps is made large in places so that its position
# (outside the square root, after the bias correction) shows in the result.
CASES = {
    "SGD": (tg.optim.SGD, {"lr": 0.1}, ref_sgd),
    "SGD momentum": (tg.optim.SGD, {"lr": 0.05, "momentum": 0.9}, ref_sgd),
    "SGD weight_decay": (tg.optim.SGD, {"lr": 0.1, "weight_decay": 0.3}, ref_sgd),
    "SGD momentum + weight_decay": (tg.optim.SGD, {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.1}, ref_sgd),
    "SGD nesterov": (tg.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, ref_sgd),
    "SGD nesterov + weight_decay": (tg.optim.SGD, {"lr": 0.05, "momentum": 0.7, "weight_decay": 0.2,
                                                   "nesterov": True}, ref_sgd),
    "RMSprop defaults": (tg.optim.RMSprop, {}, ref_rmsprop),
    "RMSprop alpha, eps": (tg.optim.RMSprop, {"lr": 0.03, "alpha": 0.9, "eps": 1e-2}, ref_rmsprop),
    "RMSprop weight_decay": (tg.optim.RMSprop, {"lr": 0.03, "alpha": 0.9, "weight_decay": 0.5}, ref_rmsprop),
    "Adam defaults": (tg.optim.Adam, {}, ref_adam),
    "Adam betas, eps": (tg.optim.Adam, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-2}, ref_adam),
    "Adam weight_decay": (tg.optim.Adam, {"lr": 0.05, "betas": (0.8, 0.95), "weight_decay": 0.5}, ref_adam),
    "AdamW defaults": (tg.optim.AdamW, {}, ref_adamw),
    "AdamW betas, eps, weight_decay": (tg.optim.AdamW, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-2,
                                                        "weight_decay": 0.5}, ref_adamw),
    "AdamW weight_decay 0 is Adam": (tg.optim.AdamW, {"lr": 0.05, "weight_decay": 0.0}, ref_adam),
}


def make_params(rng, dtype, shapes=SHAPES):
    return [tg.Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


def grad_schedule(rng, shapes, steps, dtype, skip=True):
    """Per step, per parameter: a gradient (scales from 1e-4 to 10, so a default eps of 1e-8 still
    differs from 0 at float64 precision), or None now and then (a parameter the loss did not reach)."""
    scales = [10.0 ** rng.uniform(-4, 1) for _ in shapes]
    out = []
    for k in range(steps):
        row = [(rng.standard_normal(s) * c).astype(dtype) for s, c in zip(shapes, scales)]
        if skip and k % 3 == 1:
            row[k % len(shapes)] = None
        out.append(row)
    return out


def run_ours(opt, params, schedule):
    for row in schedule:
        for p, g in zip(params, row):
            p.grad = None if g is None else tg.Tensor(g)
        opt.step()


def run_reference(step, values, schedule):
    values, states = [v.astype(F64) for v in values], [{} for _ in values]
    for row in schedule:
        for i, g in enumerate(row):
            if g is not None:  # skipped parameters keep their value and get no state
                values[i] = step(values[i], g.astype(F64), states[i])
    return values


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a, F64) - b)) / max(np.max(np.abs(b)), 1e-300)


# ------------------------------------------------------------------------------- the update rules

@pytest.mark.parametrize("name", CASES)
def test_updates_follow_the_documented_algorithm_float64(name, rng):
    cls, hyper, ref = CASES[name]
    params = make_params(rng, F64)
    start = [p.data.copy() for p in params]
    schedule = grad_schedule(rng, SHAPES, 12, F64)
    run_ours(cls(params, **hyper), params, schedule)
    expected = run_reference(ref(**hyper), start, schedule)
    for i, (p, e) in enumerate(zip(params, expected)):
        assert p.dtype == F64 and p.shape == e.shape
        assert rel_err(p.data, e) <= 1e-15, (i, rel_err(p.data, e))
        assert not np.array_equal(p.data, start[i])  # every parameter moved


@pytest.mark.parametrize("name", CASES)
def test_float32_parameters_stay_float32(name, rng):
    """float32 in, float32 out (no silent promotion of the parameter), and the values agree with the
    float64 reference to float32 rounding."""
    cls, hyper, ref = CASES[name]
    params = make_params(rng, F32)
    start = [p.data.copy() for p in params]
    schedule = grad_schedule(rng, SHAPES, 12, F32)
    run_ours(cls(params, **hyper), params, schedule)
    expected = run_reference(ref(**hyper), start, schedule)
    for p, e in zip(params, expected):
        assert p.data.dtype == F32 and p.grad.dtype == F32
        assert rel_err(p.data, e) <= 1e-6


FIRST_STEPS = {  # name: (optimizer, hyper-parameters, closed form of the first two updates with g fixed)
    # plain SGD: w - lr g each step
    "SGD": (tg.optim.SGD, {"lr": 0.1}, lambda w, g: (w - 0.1 * g, w - 0.2 * g)),
    # the buffer starts at g (not (1 - momentum) g), then b = momentum b + g = 1.9 g
    "SGD momentum": (tg.optim.SGD, {"lr": 0.1, "momentum": 0.9}, lambda w, g: (w - 0.1 * g, w - 0.1 * g - 0.19 * g)),
    # decay is added to the gradient, w (1 - lr wd) - lr g
    "SGD weight_decay": (tg.optim.SGD, {"lr": 0.1, "weight_decay": 0.5},
                         lambda w, g: (w - 0.1 * (g + 0.5 * w), None)),
    # Nesterov steps along g + momentum b: b = g, so lr (1 + m) g; then b = (1 + m) g, so lr (g + m (1 + m) g)
    "SGD nesterov": (tg.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True},
                     lambda w, g: (w - 0.1 * 1.9 * g, w - 0.1 * 1.9 * g - 0.1 * (g + 0.9 * 1.9 * g))),
    # v = (1 - alpha) g^2: w - lr g / (sqrt(1 - alpha) |g| + eps)
    "RMSprop": (tg.optim.RMSprop, {"lr": 0.01, "alpha": 0.75, "eps": 0.1},
                lambda w, g: (w - 0.01 * g / (0.5 * np.abs(g) + 0.1), None)),
    # the bias corrections make the first step lr g / (|g| + eps) whatever the betas
    "Adam": (tg.optim.Adam, {"lr": 0.01, "betas": (0.5, 0.75), "eps": 0.1},
             lambda w, g: (w - 0.01 * g / (np.abs(g) + 0.1), None)),
    # coupled decay: the same with g + wd w in place of g
    "Adam weight_decay": (tg.optim.Adam, {"lr": 0.01, "betas": (0.5, 0.75), "eps": 0.1, "weight_decay": 2.0},
                          lambda w, g: (w - 0.01 * (g + 2 * w) / (np.abs(g + 2 * w) + 0.1), None)),
    # decoupled decay: w (1 - lr wd), then the step of g alone
    "AdamW": (tg.optim.AdamW, {"lr": 0.01, "betas": (0.5, 0.75), "eps": 0.1, "weight_decay": 2.0},
              lambda w, g: (w * (1 - 0.01 * 2) - 0.01 * g / (np.abs(g) + 0.1), None)),
    # v = (1 - alpha) g'^2 for g' = g + wd w
    "RMSprop weight_decay": (tg.optim.RMSprop, {"lr": 0.01, "alpha": 0.75, "eps": 0.1, "weight_decay": 2.0},
                             lambda w, g: (w - 0.01 * (g + 2 * w) / (0.5 * np.abs(g + 2 * w) + 0.1), None)),
}


@pytest.mark.parametrize("name", FIRST_STEPS)
def test_first_steps_in_closed_form(name, rng):
    cls, hyper, closed = FIRST_STEPS[name]
    w0, g = rng.standard_normal(6), rng.standard_normal(6)
    p = tg.Tensor(w0.copy(), requires_grad=True)
    opt = cls([p], **hyper)
    expected = closed(w0, g)
    for e in expected:
        if e is None:
            break
        p.grad = tg.Tensor(g.copy())
        opt.step()
        np.testing.assert_allclose(p.data, e, rtol=1e-15, atol=1e-16)


def test_adam_step_size_is_about_lr_whatever_the_gradient_scale(rng):
    """Adam's first update is lr sign(g) up to eps, for gradients of any size (docs/course.md section 2
    trains gamma and beta with it); plain SGD's is proportional to the gradient."""
    for scale in [1e-6, 1.0, 1e6]:
        p = tg.Tensor(np.zeros(5), requires_grad=True)
        g = rng.uniform(0.5, 2.0, 5) * rng.choice([-1.0, 1.0], 5) * scale
        p.grad = tg.Tensor(g)
        tg.optim.Adam([p], lr=0.01, eps=1e-12).step()
        np.testing.assert_allclose(p.data, -0.01 * np.sign(g), rtol=1e-5)


def test_adamw_decay_is_decoupled_from_the_gradient_scaling(rng):
    """With a zero gradient, AdamW only shrinks w by (1 - lr wd) per step (the Adam part is 0 / (0 + eps)),
    while Adam's L2 decay goes through the moments and moves each entry by about lr, like a gradient."""
    w0 = rng.uniform(1.0, 3.0, 5) * rng.choice([-1.0, 1.0], 5)
    lr, wd = 0.01, 0.1
    pw, pa = tg.Tensor(w0.copy(), requires_grad=True), tg.Tensor(w0.copy(), requires_grad=True)
    adamw, adam = tg.optim.AdamW([pw], lr=lr, weight_decay=wd), tg.optim.Adam([pa], lr=lr, weight_decay=wd)
    for k in range(1, 4):
        pw.grad, pa.grad = tg.Tensor(np.zeros(5)), tg.Tensor(np.zeros(5))
        adamw.step()
        adam.step()
        np.testing.assert_allclose(pw.data, w0 * (1 - lr * wd) ** k, rtol=1e-15)
        np.testing.assert_allclose(pa.data, w0 - k * lr * np.sign(w0), rtol=0, atol=1e-3 * lr)


# ----------------------------------------------------------------------------- state and bookkeeping

@pytest.mark.parametrize("name", CASES)
def test_parameters_of_different_shapes_keep_separate_state(name, rng):
    """Stepping all parameters in one optimizer equals stepping each in its own."""
    cls, hyper, _ = CASES[name]
    together = make_params(rng, F64)
    alone = [tg.Tensor(p.data.copy(), requires_grad=True) for p in together]
    opts = [cls([p], **hyper) for p in alone]
    schedule = grad_schedule(rng, SHAPES, 8, F64)
    run_ours(cls(together, **hyper), together, schedule)
    for i, (p, opt) in enumerate(zip(alone, opts)):
        run_ours(opt, [p], [[row[i]] for row in schedule])
        np.testing.assert_array_equal(together[i].data, p.data, err_msg=str(i))


@pytest.mark.parametrize("name", CASES)
def test_a_parameter_without_grad_is_skipped_and_gets_no_state(name, rng):
    """b has no gradient for three steps: it is untouched (same values, same array), and its first
    update afterwards is the first update of a fresh optimizer (no momentum buffer, no moving averages,
    Adam's step count starting at 1)."""
    cls, hyper, _ = CASES[name]
    a, b = make_params(rng, F64, [(3,), (2, 2)])
    b_data, b_start = b.data, b.data.copy()
    opt = cls([a, b], **hyper)
    for _ in range(3):
        a.grad = tg.Tensor(rng.standard_normal(3))
        opt.step()
        assert b.grad is None and b.data is b_data
        np.testing.assert_array_equal(b.data, b_start)
    assert len(opt.state) <= 1  # state only for a
    g = rng.standard_normal((2, 2))
    fresh = tg.Tensor(b_start.copy(), requires_grad=True)
    fresh.grad = tg.Tensor(g.copy())
    cls([fresh], **hyper).step()
    a.grad, b.grad = None, tg.Tensor(g.copy())
    a_before = a.data.copy()
    opt.step()
    np.testing.assert_array_equal(b.data, fresh.data)
    np.testing.assert_array_equal(a.data, a_before)  # a, now without grad, is skipped in turn


@pytest.mark.parametrize("name", CASES)
def test_updates_are_in_place(name, rng):
    """The parameter keeps its ndarray (views of it, and anyone holding it, see the update)."""
    cls, hyper, _ = CASES[name]
    p = tg.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    data, row = p.data, p.data[1]
    before = row.copy()
    opt = cls([p], **hyper)
    for _ in range(2):
        p.grad = tg.Tensor(rng.standard_normal((3, 4)))
        opt.step()
    assert p.data is data
    assert not np.array_equal(row, before) and np.array_equal(row, p.data[1])


@pytest.mark.parametrize("cls", [tg.optim.SGD, tg.optim.RMSprop, tg.optim.Adam, tg.optim.AdamW])
def test_zero_grad_sets_grads_to_none_and_a_step_then_changes_nothing(cls, rng):
    w = tg.Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(3), requires_grad=True)
    x = tg.Tensor(rng.standard_normal((5, 4)))
    opt = cls([w, b], lr=0.1)
    ((x @ w + b) ** 2).sum().backward()
    assert w.grad is not None and b.grad is not None
    opt.step()
    opt.zero_grad()
    assert w.grad is None and b.grad is None  # None, not zeros (PyTorch's set_to_none default)
    before = [w.data.copy(), b.data.copy()]
    opt.step()
    np.testing.assert_array_equal(w.data, before[0])
    np.testing.assert_array_equal(b.data, before[1])
    ((x @ w + b) ** 2).sum().backward()  # a fresh gradient, not accumulated onto the old one
    w2 = tg.Tensor(w.data.copy(), requires_grad=True)
    ((x @ w2 + b.detach()) ** 2).sum().backward()
    np.testing.assert_array_equal(w.grad.data, w2.grad.data)


def test_lr_zero_is_allowed_and_changes_nothing(rng):
    p = tg.Tensor(rng.standard_normal(4), requires_grad=True)
    before = p.data.copy()
    for opt in [tg.optim.SGD([p], lr=0.0, momentum=0.9, weight_decay=0.1, nesterov=True),
                tg.optim.RMSprop([p], lr=0.0, weight_decay=0.1), tg.optim.Adam([p], lr=0.0, weight_decay=0.1),
                tg.optim.AdamW([p], lr=0.0, weight_decay=0.1)]:
        p.grad = tg.Tensor(rng.standard_normal(4))
        opt.step()
    np.testing.assert_array_equal(p.data, before)


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trip_continues_identically(name, rng):
    """Three steps, then state_dict() loaded into an optimizer built with other hyper-parameters (on copies
    of the parameters): it takes the saved hyper-parameters and moments, and the next steps are equal."""
    cls, hyper, _ = CASES[name]
    params = make_params(rng, F64)
    opt = cls(params, **hyper)
    schedule = grad_schedule(rng, SHAPES, 6, F64)
    run_ours(opt, params, schedule[:3])
    sd = opt.state_dict()
    group = sd["param_groups"][0]
    assert set(group) == {"lr", "params", *cls.hyper} and {"lr", "weight_decay"} <= set(group)
    clone = [tg.Tensor(p.data.copy(), requires_grad=True) for p in params]
    other = cls(clone, lr=0.5)
    other.load_state_dict(sd)
    assert other.state_dict()["param_groups"] == sd["param_groups"]
    run_ours(opt, params, schedule[3:])
    run_ours(other, clone, schedule[3:])
    for p, q in zip(params, clone):
        np.testing.assert_array_equal(p.data, q.data)


# ------------------------------------------------------------------------------------- bad input

def _w():
    return tg.Tensor(np.zeros(3), requires_grad=True)


BAD = {  # name: (params factory, lr, exception type, message pattern)
    "empty list": (lambda: [], 0.1, ValueError, r"empty parameter list"),
    "empty generator": (lambda: iter(()), 0.1, ValueError, r"empty parameter list"),
    "negative lr": (lambda: [_w()], -0.1, ValueError, r"learning rate -0.1"),
    "nan lr": (lambda: [_w()], float("nan"), ValueError, r"learning rate nan"),
    "an ndarray among the params": (lambda: [_w(), np.zeros(3)], 0.1, TypeError, r"parameter 1 is a ndarray"),
    "a number": (lambda: [1.0], 0.1, TypeError, r"parameter 0 is a float, not a Tensor"),
    "does not require grad": (lambda: [_w(), tg.Tensor(np.zeros(2))], 0.1, ValueError,
                              r"parameter 1 \(2,\) does not require grad"),
}


@pytest.mark.parametrize("cls", [tg.optim.SGD, tg.optim.RMSprop, tg.optim.Adam, tg.optim.AdamW])
@pytest.mark.parametrize("name", BAD)
def test_bad_arguments_are_clear_errors(name, cls):
    params, lr, exc, pattern = BAD[name]
    with pytest.raises(exc, match=pattern) as info:
        cls(params(), lr=lr)
    assert type(info.value) is exc
    assert cls.__name__ in str(info.value)


HYPER_BAD = [  # (optimizer, hyper-parameters, exception, words of the message); torch raises ValueError for each
    # ValueError case (test_torch_rejects_the_same_hyper_parameters) but nan, which torch's SGD lets through
    (tg.optim.SGD, {"lr": 0.1, "weight_decay": -0.1}, ValueError, "weight_decay -0.1"),
    (tg.optim.SGD, {"lr": 0.1, "weight_decay": float("nan")}, ValueError, "weight_decay nan"),
    (tg.optim.SGD, {"lr": 0.1, "momentum": -0.5}, ValueError, "momentum -0.5"),
    (tg.optim.SGD, {"lr": 0.1, "momentum": 0.0, "nesterov": True}, ValueError, "Nesterov momentum requires a momentum"),
    (tg.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": "yes"}, TypeError, "nesterov must be a bool"),
    (tg.optim.SGD, {"lr": 0.1, "weight_decay": "0.1"}, TypeError, "weight_decay must be a number"),
    (tg.optim.RMSprop, {"lr": -1.0}, ValueError, "learning rate -1.0"),
    (tg.optim.RMSprop, {"lr": 0.1, "weight_decay": -1.0}, ValueError, "weight_decay -1.0"),
    (tg.optim.RMSprop, {"lr": 0.1, "alpha": -0.5}, ValueError, "alpha -0.5"),
    (tg.optim.RMSprop, {"lr": 0.1, "eps": -1e-8}, ValueError, "eps -1e-08"),
    (tg.optim.Adam, {"lr": 0.1, "weight_decay": -1.0}, ValueError, "weight_decay -1.0"),
    (tg.optim.Adam, {"lr": 0.1, "eps": -1.0}, ValueError, "eps -1.0"),
    (tg.optim.Adam, {"lr": 0.1, "betas": (1.0, 0.999)}, ValueError, "betas must be in [0, 1)"),
    (tg.optim.Adam, {"lr": 0.1, "betas": (0.9, 1.0)}, ValueError, "betas must be in [0, 1)"),
    (tg.optim.Adam, {"lr": 0.1, "betas": (-0.1, 0.999)}, ValueError, "beta1 -0.1"),
    (tg.optim.Adam, {"lr": 0.1, "betas": 0.9}, TypeError, "betas must be a pair"),
    (tg.optim.AdamW, {"lr": -0.1}, ValueError, "learning rate -0.1"),
    (tg.optim.AdamW, {"lr": 0.1, "weight_decay": -0.01}, ValueError, "weight_decay -0.01"),
    (tg.optim.AdamW, {"lr": 0.1, "eps": -1.0}, ValueError, "eps -1.0"),
    (tg.optim.AdamW, {"lr": 0.1, "betas": (0.9, 1.5)}, ValueError, "betas must be in [0, 1)"),
    (tg.optim.AdamW, {"lr": 0.1, "betas": (0.9, 0.99, 0.9)}, TypeError, "betas must be a pair"),
]
HYPER_IDS = [f"{c.__name__} {kw}" for c, kw, _, _ in HYPER_BAD]


def stepped(cls, rng):
    """Two parameters after three steps of a valid optimizer of class cls (moments and step counts exist),
    each with a fresh .grad."""
    params = make_params(rng, F64, [(3,), (2, 2)])
    opt = cls(params, lr=0.1, **({"momentum": 0.9} if cls is tg.optim.SGD else {}))
    run_ours(opt, params, grad_schedule(rng, [(3,), (2, 2)], 3, F64, skip=False))
    return params, opt


@pytest.mark.parametrize("case", HYPER_BAD, ids=HYPER_IDS)
def test_bad_hyper_parameters_raise_and_change_nothing(case, rng):
    """In the constructor, and in load_state_dict (the same values in param_groups): an error of PyTorch's
    type naming the optimizer and the value; parameters, .grad, hyper-parameters and moments unchanged."""
    cls, hyper, exc, words = case
    params, opt = stepped(cls, rng)
    before = snap(opt)
    with pytest.raises(exc, match=both(cls.__name__, words)) as info:
        cls(params, **hyper)
    assert type(info.value) is exc
    sd = opt.state_dict()
    sd["param_groups"][0].update(hyper)
    with pytest.raises(exc, match=both(f"{cls.__name__}.load_state_dict", words)) as info:
        opt.load_state_dict(sd)
    assert type(info.value) is exc
    assert_same(snap(opt), before)


def test_a_non_leaf_tensor_is_rejected():
    w = _w()
    with pytest.raises(ValueError, match="leaf"):
        tg.optim.SGD([w * 2], lr=0.1)


def test_a_bare_tensor_instead_of_a_list_is_a_type_error():
    w = tg.Tensor(np.zeros((3, 2)), requires_grad=True)
    with pytest.raises(TypeError):
        tg.optim.SGD(w, lr=0.1)


# ------------------------------------------------------------------------------------- end to end

QUADRATIC = {  # name: (optimizer factory, steps, final distance to the minimizer)
    "SGD": (lambda p: tg.optim.SGD(p, lr=0.15), 300, 1e-12),
    "SGD momentum": (lambda p: tg.optim.SGD(p, lr=0.05, momentum=0.6), 300, 1e-12),
    # with a constant lr, RMSprop settles in a ball of radius ~lr around the minimum
    "RMSprop": (lambda p: tg.optim.RMSprop(p, lr=0.01), 800, 1e-3),
    "Adam": (lambda p: tg.optim.Adam(p, lr=0.05), 1000, 1e-9),
}


@pytest.mark.parametrize("name", QUADRATIC)
def test_minimizing_a_convex_quadratic_converges(name, rng):
    """f(w, c) = 1/2 w^T A w - b^T w + |c|^2 with A symmetric positive definite (eigenvalues 1..10)
    has its minimum at w* = A^-1 b (1 <= |w*_i| <= 3), c = 0; the gradients come from autograd."""
    make, steps, tol = QUADRATIC[name]
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a_mat = q @ np.diag(np.linspace(1.0, 10.0, 6)) @ q.T
    w_star = rng.uniform(1.0, 3.0, 6) * rng.choice([-1.0, 1.0], 6)
    b_vec = a_mat @ w_star
    w = tg.Tensor(np.zeros(6), requires_grad=True)
    c = tg.Tensor(np.ones(2), requires_grad=True)
    a_t, b_t = tg.Tensor(a_mat), tg.Tensor(b_vec)
    opt = make([w, c])
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (w @ (a_t @ w)) - (b_t * w).sum() + (c * c).sum()
        loss.backward()
        opt.step()
    assert np.abs(w.data - w_star).max() < tol
    assert np.abs(c.data).max() < tol
    assert math.isclose(loss.item(), -0.5 * b_vec @ w_star, rel_tol=1e-2)


# ------------------------------------------------------------------------------------- PyTorch

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


TORCH = {  # name: (our optimizer, its torch counterpart, hyper-parameters)
    "SGD": ("SGD", {"lr": 0.1}),
    "SGD momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}),
    "SGD weight_decay": ("SGD", {"lr": 0.1, "weight_decay": 0.3}),
    "SGD momentum + weight_decay": ("SGD", {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.1}),
    "SGD nesterov": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "SGD nesterov + weight_decay": ("SGD", {"lr": 0.05, "momentum": 0.7, "weight_decay": 0.2, "nesterov": True}),
    "RMSprop defaults": ("RMSprop", {}),
    "RMSprop alpha, eps": ("RMSprop", {"lr": 0.03, "alpha": 0.9, "eps": 1e-2}),
    "RMSprop weight_decay": ("RMSprop", {"lr": 0.03, "alpha": 0.9, "weight_decay": 0.5}),
    "Adam defaults": ("Adam", {}),
    "Adam betas, eps": ("Adam", {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-2}),
    "Adam weight_decay": ("Adam", {"lr": 0.05, "betas": (0.8, 0.95), "weight_decay": 0.5}),
    "AdamW defaults": ("AdamW", {}),
    "AdamW betas, eps, weight_decay": ("AdamW", {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-2, "weight_decay": 0.5}),
}


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", TORCH)
def test_matches_torch_optim_over_25_steps(name, dtype, torch, rng):
    """Same start, same gradients (some None), 25 steps: equal to a few rounding errors at every step
    (torch fuses a multiply-add and uses lerp, so bit-equality is not expected)."""
    cls_name, hyper = TORCH[name]
    ours = make_params(rng, dtype)
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt_o = getattr(tg.optim, cls_name)(ours, **hyper)
    opt_t = getattr(torch.optim, cls_name)(theirs, **hyper)
    for k, v in opt_o.state_dict()["param_groups"][0].items():  # the same names and defaults as torch's
        assert k == "params" or opt_t.param_groups[0][k] == v, k
    tol = 16 * np.finfo(dtype).eps
    for k, row in enumerate(grad_schedule(rng, SHAPES, 25, dtype)):
        for p, q, g in zip(ours, theirs, row):
            p.grad = None if g is None else tg.Tensor(g.copy())
            q.grad = None if g is None else torch.tensor(g.copy())
        opt_o.step()
        opt_t.step()
        for i, (p, q) in enumerate(zip(ours, theirs)):
            t = q.detach().numpy()
            assert p.data.dtype == t.dtype
            assert rel_err(p.data, t.astype(F64)) <= tol, (k, i, rel_err(p.data, t.astype(F64)))



TORCH_REJECTS = [(i, c) for i, c in zip(HYPER_IDS, HYPER_BAD) if c[2] is ValueError and "nan" not in c[3]]


@pytest.mark.parametrize("case", [c for _, c in TORCH_REJECTS], ids=[i for i, _ in TORCH_REJECTS])
def test_torch_rejects_the_same_hyper_parameters(case, torch):
    cls, hyper, _, _ = case
    with pytest.raises(ValueError):
        getattr(torch.optim, cls.__name__)([torch.zeros(3, requires_grad=True)], **hyper)
