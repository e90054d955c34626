"""The checkers are shown to fail: wrong backward rules must be caught, named by input, element
and output, and numerical_grad must agree with closed forms."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import tinygrad_bn as tg
from tinygrad_bn import Tensor, analytic
from tinygrad_bn.check import GradcheckError, compare, gradcheck, gradgradcheck, numerical_grad
from tinygrad_bn.engine import Function

ATOL, RTOL = 1e-7, 1e-6


def _leaf(a) -> Tensor:
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -------------------------------------------------------------- primitives to check against


class Square(Function):
    """x^2 with the right rule, written in Tensor ops (so it is differentiable again)."""
    def forward(self, x): return x * x
    def backward(self, grad, out): return grad * self.parents[0] * 2.0


class WrongSquare(Function):
    """x^2 whose backward forgets the factor 2."""
    def forward(self, x): return x * x
    def backward(self, grad, out): return grad * self.parents[0]


class SquareIgnoresGrad(Function):
    """x^2 whose backward returns 2x whatever the upstream gradient: right for sum(), wrong otherwise."""
    def forward(self, x): return x * x
    def backward(self, grad, out): return self.parents[0] * 2.0


class FrozenSquare(Function):
    """x^2 whose backward is right in value but built from raw data: a constant 2x, so a second
    derivative through it loses the dependence on x."""
    def forward(self, x): return x * x
    def backward(self, grad, out): return grad * Tensor(2.0 * self.parents[0].data)


def _message_values(msg: str) -> tuple[float, float]:
    m = re.search(r"numerical\s+(?:np\.float64\()?([-+0-9.eE]+)\)?\s+vs\s+analytic\s+(?:np\.float64\()?([-+0-9.eE]+)",
                  msg)
    assert m, msg
    return float(m.group(1)), float(m.group(2))


# --------------------------------------------------------------------------- gradcheck


def test_gradcheck_passes_a_right_rule():
    x = _leaf(_rng(0).standard_normal((2, 3)))
    assert gradcheck(lambda t: Square.apply(t), [x], atol=ATOL, rtol=RTOL) is True


def test_gradcheck_names_input_and_element_of_a_wrong_rule():
    xv = np.array([0.3, -1.7, 0.9, 1.2])
    a, b = _leaf([1.0, 2.0]), _leaf(xv)

    def f(a, b):
        return (a * 3.0).sum() + WrongSquare.apply(b).sum()

    with pytest.raises(GradcheckError) as info:
        gradcheck(f, [a, b], atol=ATOL, rtol=RTOL)
    msg = str(info.value)
    # the error is |x| on the diagonal, so the worst element is the one of largest |x|
    assert re.search(r"\binput 1\b", msg), msg
    worst = int(np.argmax(np.abs(xv)))
    assert f"element ({worst},)" in msg, msg
    numerical, analytic = _message_values(msg)
    np.testing.assert_allclose(numerical, 2 * xv[worst], rtol=1e-8)
    assert analytic == xv[worst]
    assert gradcheck(f, [a, b], atol=ATOL, rtol=RTOL, raise_exception=False) is False


def test_gradcheck_names_a_2d_element():
    xv = np.array([[0.1, 0.2, -0.3], [0.4, 2.5, 0.6]])
    with pytest.raises(GradcheckError, match=re.escape("element (1, 1)")) as info:
        gradcheck(lambda t: WrongSquare.apply(t), [_leaf(xv)], atol=ATOL, rtol=RTOL)
    assert re.search(r"\binput 0\b", str(info.value))


def test_gradcheck_checks_inputs_that_do_not_require_grad_are_skipped():
    x, c = _leaf([0.5, 1.5]), Tensor(np.array([2.0, 3.0]))
    assert gradcheck(lambda x, c: Square.apply(x) * c, [x, c], atol=ATOL, rtol=RTOL)
    with pytest.raises(GradcheckError, match=r"input 0\b"):
        gradcheck(lambda x, c: WrongSquare.apply(x) * c, [x, c], atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError):
        gradcheck(lambda c: c * 2.0, [c])  # nothing to check


def test_gradcheck_checks_the_full_jacobian_not_just_the_sum():
    x = _leaf([0.5, -1.0, 2.0])
    # sum(f(x)) has the right gradient, so only a full Jacobian (one-hot seeds) exposes the rule
    (g,) = tg.grad(SquareIgnoresGrad.apply(x).sum(), x)
    np.testing.assert_array_equal(g.data, 2 * x.data)
    assert gradcheck(lambda t: SquareIgnoresGrad.apply(t).sum(), [x], atol=ATOL, rtol=RTOL)
    with pytest.raises(GradcheckError, match=r"input 0\b"):
        gradcheck(lambda t: SquareIgnoresGrad.apply(t), [x], atol=ATOL, rtol=RTOL)
    assert gradcheck(lambda t: Square.apply(t), [x], atol=ATOL, rtol=RTOL)


def test_gradcheck_non_scalar_outputs():
    rng = _rng(1)
    a, b = _leaf(rng.standard_normal((3, 4))), _leaf(rng.standard_normal((4, 2)))
    assert gradcheck(lambda a, b: (a @ b).tanh(), [a, b], atol=ATOL, rtol=RTOL)
    assert gradcheck(lambda a: a.softmax(axis=1), [a], atol=ATOL, rtol=RTOL)


def test_gradcheck_tuple_outputs_and_names_the_output():
    rng = _rng(2)
    x, y = _leaf(rng.standard_normal(3)), _leaf(rng.standard_normal((2, 3)))

    def right(x, y):
        return x * y, Square.apply(y).sum(axis=0), x.exp()

    assert gradcheck(right, [x, y], atol=ATOL, rtol=RTOL)

    yv = np.array([[0.1, 0.2, 0.3], [0.4, -0.5, 3.0]])

    def wrong(x, y):
        return x * y, WrongSquare.apply(y), x.exp()

    with pytest.raises(GradcheckError) as info:
        gradcheck(wrong, [x, _leaf(yv)], atol=ATOL, rtol=RTOL)
    msg = str(info.value)
    assert re.search(r"\binput 1\b", msg) and re.search(r"\boutput 1\b", msg), msg
    assert "element (1, 2)" in msg, msg  # the largest |y|
    assert gradcheck(wrong, [x, _leaf(yv)], atol=ATOL, rtol=RTOL, raise_exception=False) is False


def test_gradcheck_output_without_graph_counts_as_zero():
    x = _leaf([1.0, 2.0])
    assert gradcheck(lambda x: (x * 2.0, Tensor(np.ones(3))), [x], atol=ATOL, rtol=RTOL)


def test_gradcheck_warns_on_float32():
    x = Tensor(np.array([0.5, 1.0], np.float32), requires_grad=True)
    with pytest.warns(UserWarning, match="float64"):
        gradcheck(lambda t: t * 2.0, [x], eps=1e-3, atol=1e-2, rtol=1e-2)


def test_gradcheck_does_not_change_inputs_or_their_grad():
    xv = _rng(3).standard_normal(4)
    x = _leaf(xv.copy())
    gradcheck(lambda t: (t * t).tanh(), [x], atol=ATOL, rtol=RTOL)
    np.testing.assert_array_equal(x.data, xv)
    assert x.grad is None


# ----------------------------------------------------------------------- gradgradcheck


def test_frozen_rule_passes_gradcheck_but_fails_gradgradcheck():
    xv = np.array([0.5, -1.5, 2.0])
    f = lambda t: FrozenSquare.apply(t)  # noqa: E731
    assert gradcheck(f, [_leaf(xv)], atol=ATOL, rtol=RTOL)
    with pytest.raises(GradcheckError, match=r"input 0\b"):
        gradgradcheck(f, [_leaf(xv)], atol=ATOL, rtol=RTOL)
    assert gradgradcheck(f, [_leaf(xv)], atol=ATOL, rtol=RTOL, raise_exception=False) is False
    # the same function with the rule in Tensor ops passes both
    g = lambda t: Square.apply(t)  # noqa: E731
    assert gradcheck(g, [_leaf(xv)], atol=ATOL, rtol=RTOL)
    assert gradgradcheck(g, [_leaf(xv)], atol=ATOL, rtol=RTOL)


def test_frozen_rule_fails_gradgradcheck_with_given_grad_outputs():
    xv = np.array([[0.5, -1.5], [2.0, 0.25]])
    v = Tensor(_rng(4).standard_normal((2, 2)), requires_grad=True)
    with pytest.raises(GradcheckError):
        gradgradcheck(lambda t: FrozenSquare.apply(t) * 3.0, [_leaf(xv)], grad_outputs=[v], atol=ATOL, rtol=RTOL)
    assert gradgradcheck(lambda t: Square.apply(t) * 3.0, [_leaf(xv)], grad_outputs=[v], atol=ATOL, rtol=RTOL)


def test_gradgradcheck_passes_smooth_composites():
    rng = _rng(5)
    a, b = _leaf(rng.standard_normal((2, 3))), _leaf(rng.standard_normal(3))
    assert gradgradcheck(lambda a, b: (a * b).tanh().sum(axis=1), [a, b], atol=ATOL, rtol=RTOL)
    assert gradgradcheck(lambda a: a.logsumexp(axis=1), [a], atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------------- numerical_grad


def test_numerical_grad_of_sum_of_squares_is_2x():
    xv = _rng(6).standard_normal((3, 2))
    (g,) = numerical_grad(lambda t: (t * t).sum(), [_leaf(xv)])
    assert isinstance(g, np.ndarray) and g.shape == (3, 2)
    np.testing.assert_allclose(g, 2 * xv, rtol=1e-8, atol=1e-8)


def test_numerical_grad_with_grad_output_weighting():
    rng = _rng(7)
    xv, w = rng.standard_normal(4), rng.standard_normal(4)
    (g,) = numerical_grad(lambda t: t * t * t, [_leaf(xv)], grad_output=w)
    np.testing.assert_allclose(g, 3 * xv**2 * w, rtol=1e-8, atol=1e-8)
    (ones,) = numerical_grad(lambda t: t * t * t, [_leaf(xv)])  # default weighting: ones
    np.testing.assert_allclose(ones, 3 * xv**2, rtol=1e-8, atol=1e-8)


def test_numerical_grad_several_inputs_and_outputs():
    rng = _rng(8)
    xv, yv = rng.standard_normal(3), rng.standard_normal(3)
    w1, w2 = rng.standard_normal(3), rng.standard_normal(())
    gx, gy = numerical_grad(lambda x, y: (x * y, (x * x).sum()), [_leaf(xv), _leaf(yv)], grad_output=[w1, w2])
    np.testing.assert_allclose(gx, yv * w1 + 2 * xv * w2, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(gy, xv * w1, rtol=1e-8, atol=1e-8)


def test_numerical_grad_skips_integer_inputs():
    xv = np.array([[1.0, 2.0], [3.0, 4.0]])
    labels = Tensor(np.array([1, 0]))
    gx, gl = numerical_grad(lambda x, i: x[np.arange(2), i.data], [_leaf(xv), labels])
    assert gl is None
    np.testing.assert_allclose(gx, [[0.0, 1.0], [1.0, 0.0]], atol=1e-9)


def test_numerical_grad_agrees_with_autograd_on_a_composite():
    rng = _rng(9)
    a = _leaf(rng.standard_normal((3, 4)))
    f = lambda t: (t.exp() / (t * t + 1.0)).log_softmax(axis=0)  # noqa: E731
    w = rng.standard_normal((3, 4))
    (num,) = numerical_grad(f, [a], grad_output=w)
    (ana,) = tg.grad(f(a), a, grad_outputs=Tensor(w))
    np.testing.assert_allclose(ana.data, num, rtol=1e-7, atol=1e-8)


def test_numerical_grad_leaves_inputs_unchanged():
    xv = _rng(10).standard_normal(3)
    x = _leaf(xv.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numerical_grad(lambda t: t.tanh(), [x])
    np.testing.assert_array_equal(x.data, xv)


def test_the_readme_check_excerpt_is_what_tinygrad_bn_check_prints_now(capsys):
    """README quotes rows of `tinygrad-bn check --audit`: each quoted row is in today's output with
    the same case, shape, dtype and result, and errors equal to round-off noise (zero stays zero,
    and a non-zero error within a factor of 4, what another CPU's summation order can move)."""
    from pathlib import Path

    from tinygrad_bn.cli import main
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    excerpt = readme.split("An excerpt of", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    quoted = [line for line in excerpt.splitlines() if re.search(r"\d\.\d{3}e[-+]\d\d", line)]
    assert len(quoted) >= 5
    main(["check", "--audit"])
    printed = capsys.readouterr().out.splitlines()
    number = r"(\d\.\d{3}e[-+]\d\d)"
    for line in quoted:
        label = re.split(number, line)[0].rstrip()
        now = next((p for p in printed if p.startswith(label)), None)
        assert now is not None, f"README quotes {label!r}, which tinygrad-bn check no longer prints"
        for q, n in zip(map(float, re.findall(number, line)), map(float, re.findall(number, now))):
            assert (q == 0) == (n == 0) and (q == 0 or 1 / 4 <= n / q <= 4), f"README: {line}\nnow:    {now}"
        assert line.split()[-1] == now.split()[-1]


def test_gradcheck_takes_an_input_with_no_elements():
    """An empty input has an empty Jacobian; the finite differences crashed reshaping no columns."""
    empty, x = _leaf(np.zeros((0, 3))), _leaf([1.0, 2.0])
    assert gradcheck(lambda e, y: tg.cat([e.sum(axis=0), y * y]), [empty, x])
    np.testing.assert_array_equal(numerical_grad(lambda e: e * 2, [empty])[0], np.zeros((0, 3)))


def test_compare_tolerances_follow_the_dtype_by_default(rng):
    """A correct float32 gradient passes against its float64 truth; a 1% slip fails in any dtype."""
    z = rng.standard_normal((64, 10))
    truth = analytic.softmax_cross_entropy_backward(z, rng.integers(0, 10, 64))
    got32 = truth.astype(np.float32)  # what a right float32 autograd gives: the truth, rounded
    assert compare({"dz": got32}, {"dz": truth}).ok
    assert compare({"dz": got32}, {"dz": truth}).rows[0].rtol == 1e-4
    assert not compare({"dz": got32 * np.float32(1.01)}, {"dz": truth}).ok
    assert compare({"dz": truth * (1 + 1e-12)}, {"dz": truth}).ok
    assert not compare({"dz": truth * (1 + 1e-8)}, {"dz": truth}).ok  # float64: 1e-10
    assert compare({"dz": truth * (1 + 1e-8)}, {"dz": truth}, rtol=1e-6).ok
