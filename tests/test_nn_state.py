"""Bad input changes no state, in nn and optim: every bad call below is a clear error of PyTorch's
exception type (naming the function or module, the problem and the fix), raised BEFORE any running
statistic, num_batches_tracked, parameter, .grad or optimizer moment changes; and where PyTorch accepts
the input (NumPy integer sizes, eps=0 in eval mode, a graph that read the BatchNorm buffers), the
result is PyTorch's. Each case builds its objects, snapshots all their state, runs the bad call under
pytest.raises(match=...) and asserts the snapshot is unchanged."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from conftest import assert_same, both, snap

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import Tensor

F64 = np.float64


# ------------------------------------------------------------------------------ snapshots

class Bad(NamedTuple):
    setup: Callable[[], tuple[list, Callable[[], Any]]]  # -> (objects whose state must not change, the bad call)
    exc: type                                           # PyTorch's exception type, exactly
    match: str                                          # the message: the function, the problem, the fix


def check_bad(bad: Bad) -> None:
    watched, call = bad.setup()
    before = [snap(o) for o in watched]
    with np.errstate(all="ignore"), pytest.raises(bad.exc, match=bad.match) as info:
        call()
    assert type(info.value) is bad.exc, f"{type(info.value).__name__}: {info.value}"
    for i, (o, b) in enumerate(zip(watched, before)):
        assert_same(snap(o), b, f"watched {i} ({type(o).__name__})")


# ------------------------------------------------------------------------------ builders (seeded, non-default state)

def batch(*shape: int, seed: int = 0, dtype: Any = F64) -> Tensor:
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 2 + 1)


def trained(module: nn.Module, shape: tuple[int, ...], steps: int = 2) -> nn.Module:
    """Moved running statistics, num_batches_tracked > 0, and a .grad on every parameter."""
    for s in range(steps):
        module(batch(*shape, seed=10 + s)).sum().backward()
    return module


def bn(c: int = 3, kind: str = "1d", **kw: Any) -> nn.Module:
    return trained((nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d)(c, dtype=F64, **kw),
                   (4, c, 2, 2) if kind == "2d" else (4, c))


def bn_eps0(c: int = 3, kind: str = "1d", **kw: Any) -> nn.Module:
    """A trained BatchNorm whose eps is then 0 (as if built with eps=0, which cannot train)."""
    m = bn(c, kind, **kw)
    m.eps = 0.0
    return m


def stats(c: int = 3) -> tuple[Tensor, Tensor]:
    r = np.random.default_rng(7)
    return Tensor(r.standard_normal(c)), Tensor(r.uniform(0.5, 2.0, c))


def functional(call: Callable[[Tensor, Tensor], Any]) -> Callable[[], tuple[list, Callable[[], Any]]]:
    """A case on F.batch_norm with running statistics that must stay as they are."""
    def setup() -> tuple[list, Callable[[], Any]]:
        rm, rv = stats()
        return [rm, rv], lambda: call(rm, rv)
    return setup


def module(make: Callable[[], nn.Module], call: Callable[[nn.Module], Any]) -> Callable[[], tuple[list, Callable]]:
    def setup() -> tuple[list, Callable[[], Any]]:
        m = make()
        return [m], lambda: call(m)
    return setup


X = batch(5, 3)
XI = Tensor(np.arange(15).reshape(5, 3))  # int64
_BOTH = "running_mean and running_var must both be Tensors or both be None"

# ------------------------------------------------------------------------------ items 1, 3, 4, 5: normalization

NORM_BAD: dict[str, Bad] = {
    # 1. one running statistic without the other: running_mean used to be updated, then running_var failed
    "batch_norm running_mean without running_var, training": Bad(
        functional(lambda rm, rv: F.batch_norm(X, rm, None, training=True)), ValueError,
        both("batch_norm", _BOTH, "running_var=None", "pass both or neither")),
    "batch_norm running_var without running_mean, training": Bad(
        functional(lambda rm, rv: F.batch_norm(X, None, rv, training=True)), ValueError,
        both("batch_norm", _BOTH, "running_mean=None")),
    "batch_norm running_mean without running_var, eval": Bad(
        functional(lambda rm, rv: F.batch_norm(X, rm, None, training=False)), ValueError, both("batch_norm", _BOTH)),
    # 3. eps <= 0 in training: PyTorch 2.13 raises ValueError("batch_norm eps must be positive during training")
    "batch_norm eps=0, training": Bad(functional(lambda rm, rv: F.batch_norm(X, rm, rv, training=True, eps=0.0)),
                                      ValueError, both("batch_norm", "eps must be positive during training",
                                                       "got 0.0", "eps=1e-5")),
    "batch_norm eps=-1, training": Bad(functional(lambda rm, rv: F.batch_norm(X, rm, rv, training=True, eps=-1.0)),
                                       ValueError, both("batch_norm", "eps must be positive", "got -1.0")),
    "batch_norm eps=-1, eval": Bad(functional(lambda rm, rv: F.batch_norm(X, rm, rv, training=False, eps=-1.0)),
                                   ValueError, both("batch_norm", "eps must be non-negative", "got -1.0")),
    "batch_norm eps=nan, training": Bad(functional(lambda rm, rv: F.batch_norm(X, rm, rv, training=True,
                                                                               eps=float("nan"))),
                                        ValueError, both("batch_norm", "eps must be positive", "nan")),
    "BatchNorm1d(3, eps=0) training, fresh": Bad(module(lambda: nn.BatchNorm1d(3, eps=0), lambda m: m(X)), ValueError,
                                                 both("batch_norm", "eps must be positive during training")),
    "BatchNorm1d eps=0 training": Bad(module(bn_eps0, lambda m: m(X)), ValueError,
                                      both("batch_norm", "eps must be positive during training")),
    "BatchNorm1d eps=0, momentum=None, training": Bad(module(lambda: bn_eps0(momentum=None), lambda m: m(X)),
                                                      ValueError, both("batch_norm", "eps must be positive")),
    "BatchNorm2d eps=0 training": Bad(module(lambda: bn_eps0(2, "2d"), lambda m: m(batch(3, 2, 2, 2))),
                                      ValueError, both("batch_norm", "eps must be positive")),
    "BatchNorm1d eps=0, track_running_stats=False, eval (batch statistics)": Bad(
        module(lambda: bn_eps0(track_running_stats=False).eval(), lambda m: m(X)), ValueError,
        both("batch_norm", "eps must be positive during training")),
    # 4. integer and bool input: PyTorch raises NotImplementedError ("batch_norm" not implemented for 'Long')
    "BatchNorm1d training on int64": Bad(module(bn, lambda m: m(XI)), NotImplementedError,
                                         both("batch_norm", "int64", "must be floating", "x.float()")),
    "BatchNorm1d eval on int64": Bad(module(lambda: bn().eval(), lambda m: m(XI)), NotImplementedError,
                                     both("batch_norm", "int64", "must be floating")),
    "BatchNorm2d training on int32": Bad(module(lambda: bn(2, "2d"), lambda m: m(Tensor(np.ones((3, 2, 2, 2),
                                                                                                np.int32)))),
                                         NotImplementedError, both("batch_norm", "int32")),
    "batch_norm training on bool": Bad(functional(lambda rm, rv: F.batch_norm(XI > 3, rm, rv, training=True)),
                                       NotImplementedError, both("batch_norm", "bool", "must be floating")),
    "layer_norm on int64": Bad(lambda: ([], lambda: F.layer_norm(XI, 3)), NotImplementedError,
                               both("layer_norm", "int64", "must be floating")),
    "LayerNorm module on int64": Bad(module(lambda: trained(nn.LayerNorm(3, dtype=F64), (4, 3)), lambda m: m(XI)),
                                     NotImplementedError, both("layer_norm", "int64")),
    # 5. ndarrays where Tensors belong: PyTorch's TypeError; running_mean used to be updated before the failure
    "batch_norm running_var an ndarray": Bad(
        functional(lambda rm, rv: F.batch_norm(X, rm, rv.data.copy(), training=True)), TypeError,
        both("batch_norm", "running_var must be a Tensor", "ndarray", "tg.Tensor")),
    "batch_norm running_mean an ndarray (watched too)": Bad(
        lambda: (lambda rm, rv: ([rm, rv], lambda: F.batch_norm(X, rm, rv, training=True)))(np.zeros(3), stats()[1]),
        TypeError, both("batch_norm", "running_mean must be a Tensor", "ndarray")),
    "batch_norm running_var a list": Bad(functional(lambda rm, rv: F.batch_norm(X, rm, [1.0, 1.0, 1.0],
                                                                                training=True)),
                                         TypeError, both("batch_norm", "running_var", "list")),
    "batch_norm weight an ndarray": Bad(functional(lambda rm, rv: F.batch_norm(X, rm, rv, np.ones(3), training=True)),
                                        TypeError, both("batch_norm", "weight must be a Tensor", "ndarray")),
    "batch_norm bias an ndarray": Bad(functional(lambda rm, rv: F.batch_norm(X, rm, rv, None, np.zeros(3),
                                                                             training=True)),
                                      TypeError, both("batch_norm", "bias must be a Tensor", "ndarray")),
}


@pytest.mark.parametrize("name", NORM_BAD)
def test_bad_normalization_input_is_a_clear_error_that_changes_nothing(name):
    check_bad(NORM_BAD[name])


def test_eps_zero_in_eval_mode_is_pytorchs_result():
    """PyTorch accepts eps=0 in eval (only eps < 0 is refused): (x - running_mean) / sqrt(running_var)."""
    rm, rv = stats()
    before = [snap(rm), snap(rv)]
    y = F.batch_norm(X, rm, rv, training=False, eps=0.0)
    np.testing.assert_allclose(y.data, (X.data - rm.data) / np.sqrt(rv.data), rtol=1e-15)
    assert_same([snap(rm), snap(rv)], before)
    m = bn_eps0().eval()
    before = snap(m)
    y = m(X)
    np.testing.assert_allclose(y.data, (X.data - m.running_mean.data) / np.sqrt(m.running_var.data) * m.weight.data
                               + m.bias.data, rtol=1e-14)
    assert_same(snap(m), before)


# ------------------------------------------------------------------------------ item 2: graphs reading the buffers

def _reference(momentum: float | None, steps: int) -> nn.Module:
    """The same BatchNorm1d fed the same batches, with no graph reading its buffers."""
    ref = nn.BatchNorm1d(3, dtype=F64, momentum=momentum)
    for s in range(steps):
        ref(batch(5, 3, seed=20 + s))
    return ref


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("held", ["num_batches_tracked", "running stats (an eval graph)", "all three"])
def test_a_graph_holding_the_buffers_then_a_training_forward_updates_all_three_together(held, momentum):
    """A live graph that read a buffer holds its array read-only. A training forward must still update the
    running statistics AND the counter (as PyTorch does), never the statistics alone with the counter's write
    failing; the old graph then refuses to backward (PyTorch's version counter) or gives its exact gradient."""
    m = nn.BatchNorm1d(3, dtype=F64, momentum=momentum)
    m(batch(5, 3, seed=20))
    graphs = []  # (a graph reading buffers, the leaf it differentiates, that leaf's gradient at the values read)
    if held != "running stats (an eval graph)":
        w = Tensor(np.array(2.0), requires_grad=True)
        graphs.append(((w * m.num_batches_tracked).sum(), w, np.array(1.0)))  # the counter was 1
    if held != "num_batches_tracked":
        x = Tensor(batch(5, 3, seed=30).data, requires_grad=True)
        grad_x = np.broadcast_to(1 / np.sqrt(m.running_var.data + m.eps), x.shape)
        graphs.append((m.eval()(x).sum(), x, grad_x))
        m.train()
    m(batch(5, 3, seed=21))
    ref = _reference(momentum, 2)
    assert int(m.num_batches_tracked.data) == 2
    for k in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(m, k).data, getattr(ref, k).data, rtol=1e-15, err_msg=k)
    for graph, leaf, expected in graphs:  # the old graph: refused as stale, or exact at the values it read
        try:
            graph.backward()
        except RuntimeError as e:  # (PyTorch: "modified by an inplace operation")
            assert "new data" in str(e)
        else:
            np.testing.assert_allclose(leaf.grad.data, expected, rtol=1e-14)


# ------------------------------------------------------------------------------ item 6: Module.to

def _model() -> nn.Module:
    return trained(nn.Sequential(nn.Linear(3, 3, dtype=F64), nn.BatchNorm1d(3, dtype=F64), nn.ReLU()), (4, 3))


TO_BAD: dict[str, Bad] = {
    f"Module.to({d})": Bad(module(_model, lambda m, d=d: m.to(d)), TypeError,
                           both("Sequential.to", "only floating dtypes", np.dtype(d).name, "np.float64"))
    for d in (np.int64, np.int32, np.uint8, bool, np.complex128, "int64")
}
TO_BAD["BatchNorm1d.to(np.int64)"] = Bad(module(bn, lambda m: m.to(np.int64)), TypeError,
                                          both("BatchNorm1d.to", "only floating dtypes", "int64"))


@pytest.mark.parametrize("name", TO_BAD)
def test_module_to_a_non_floating_dtype_is_refused_before_anything_is_cast(name):
    check_bad(TO_BAD[name])


def test_module_to_a_floating_dtype_still_casts_everything_floating():
    m = _model().to(np.float32)
    assert {p.dtype for p in m.parameters()} == {np.dtype(np.float32)}
    assert {p.grad.dtype for p in m.parameters()} == {np.dtype(np.float32)}
    assert m[1].num_batches_tracked.dtype == np.int64


# ------------------------------------------------------------------------------ item 7: NumPy integer sizes

SIZES: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], tuple[int, ...]]] = {
    # name: (built from NumPy integers, built from Python ints, an input shape)
    "LayerNorm(np.int64(3))": (lambda: nn.LayerNorm(np.int64(3)), lambda: nn.LayerNorm(3), (2, 3)),
    "LayerNorm((np.int32(2), np.int64(3)))": (lambda: nn.LayerNorm((np.int32(2), np.int64(3))),
                                             lambda: nn.LayerNorm((2, 3)), (4, 2, 3)),
    "LayerNorm([2, 3])": (lambda: nn.LayerNorm([2, np.uint8(3)]), lambda: nn.LayerNorm((2, 3)), (4, 2, 3)),
    "Linear(np.int64(3), np.int32(2))": (lambda: nn.Linear(np.int64(3), np.int32(2), rng=np.random.default_rng(0)),
                                         lambda: nn.Linear(3, 2, rng=np.random.default_rng(0)), (4, 3)),
    "BatchNorm1d(np.int64(4))": (lambda: nn.BatchNorm1d(np.int64(4)), lambda: nn.BatchNorm1d(4), (5, 4)),
    "BatchNorm2d(np.int16(2))": (lambda: nn.BatchNorm2d(np.int16(2)), lambda: nn.BatchNorm2d(2), (3, 2, 2, 2)),
}


@pytest.mark.parametrize("name", SIZES)
def test_numpy_integer_sizes_build_the_same_module_as_python_ints(name):
    """PyTorch accepts NumPy integers wherever it takes a size; the module is the one built from ints, and
    its size attributes are Python ints (so repr, state_dict and comparisons are the same)."""
    make_np, make_int, shape = SIZES[name]
    a, b = make_np(), make_int()
    for k in ("in_features", "out_features", "num_features", "normalized_shape"):
        if hasattr(b, k):
            va = getattr(a, k)
            assert va == getattr(b, k) and all(type(n) is int for n in (va if isinstance(va, tuple) else (va,))), k
    assert repr(a) == repr(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    x = batch(*shape, dtype=np.float32)
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_layer_norm_takes_a_numpy_integer_shape():
    x = batch(4, 3)
    np.testing.assert_array_equal(F.layer_norm(x, np.int64(3)).data, F.layer_norm(x, 3).data)


SIZE_BAD: dict[str, Bad] = {
    "Linear(3.0, 2)": Bad(lambda: ([], lambda: nn.Linear(3.0, 2)), TypeError,
                          both("Linear", "in_features must be an int", "float 3.0")),
    "Linear(3, '2')": Bad(lambda: ([], lambda: nn.Linear(3, "2")), TypeError,
                          both("Linear", "out_features must be an int", "str")),
    "Linear(np.int64(-1), 2)": Bad(lambda: ([], lambda: nn.Linear(np.int64(-1), 2)), ValueError,
                                   both("Linear", "in_features must be >= 0", "-1")),
    "BatchNorm1d(4.0)": Bad(lambda: ([], lambda: nn.BatchNorm1d(4.0)), TypeError,
                            both("BatchNorm1d", "num_features must be an int", "4.0")),
    "BatchNorm2d(-2)": Bad(lambda: ([], lambda: nn.BatchNorm2d(-2)), ValueError,
                           both("BatchNorm2d", "num_features must be >= 0", "-2")),
    "LayerNorm(3.0)": Bad(lambda: ([], lambda: nn.LayerNorm(3.0)), TypeError,
                          both("LayerNorm", "normalized_shape must be an int or a tuple of ints", "float")),
    "LayerNorm('3')": Bad(lambda: ([], lambda: nn.LayerNorm("3")), TypeError, both("LayerNorm", "str")),
    "LayerNorm((3.0,))": Bad(lambda: ([], lambda: nn.LayerNorm((3.0,))), TypeError,
                             both("LayerNorm", "normalized_shape must be an int", "float 3.0")),
    "layer_norm(x, 3.0)": Bad(lambda: ([], lambda: F.layer_norm(X, 3.0)), TypeError,
                              both("layer_norm", "normalized_shape", "float")),
}


@pytest.mark.parametrize("name", SIZE_BAD)
def test_a_size_that_is_not_an_integer_is_a_clear_error(name):
    check_bad(SIZE_BAD[name])


# ------------------------------------------------------------------------------ item 8: optimizers

OPTIMIZERS: dict[str, Callable[[list[Tensor]], tg.optim.Optimizer]] = {
    "SGD": lambda ps: tg.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "RMSprop": lambda ps: tg.optim.RMSprop(ps, lr=0.01),
    "Adam": lambda ps: tg.optim.Adam(ps, lr=0.01),
}


class RawGrad(Tensor):
    """A parameter whose .grad is a plain attribute, past any check a .grad setter makes: the optimizer's own
    check must hold whatever path a bad gradient took."""
    grad = None


def stepped(name: str) -> tuple[list[Tensor], tg.optim.Optimizer]:
    """Three parameters of different shapes after two steps (moments and step counts exist), each with a .grad."""
    r = np.random.default_rng(3)
    ps = [RawGrad(r.standard_normal(s), requires_grad=True) for s in [(2, 3), (3,), (4,)]]
    opt = OPTIMIZERS[name](ps)
    for _ in range(2):
        for p in ps:
            p.grad = Tensor(r.standard_normal(p.shape))
        opt.step()
    return ps, opt


BAD_GRADS: dict[str, tuple[Callable[[Tensor], Any], type, str]] = {
    # the third parameter's .grad
    "an ndarray": (lambda p: np.ones(p.shape), TypeError, "of type ndarray, not a Tensor"),
    "a list": (lambda p: [1.0] * p.shape[0], TypeError, "of type list, not a Tensor"),
    "the wrong shape": (lambda p: Tensor(np.ones(5)), tg.ShapeError, "has shape (4,) but its .grad has shape (5,)"),
    "float32 for a float64 parameter": (lambda p: Tensor(np.ones(p.shape, np.float32)), TypeError,
                                        "is float64 but its .grad is float32"),
    "int64": (lambda p: Tensor(np.ones(p.shape, np.int64)), TypeError, "is float64 but its .grad is int64"),
}


@pytest.mark.parametrize("grad", BAD_GRADS)
@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_a_bad_grad_on_the_third_parameter_updates_nothing(opt_name, grad):
    make, exc, words = BAD_GRADS[grad]

    def setup() -> tuple[list, Callable[[], Any]]:
        ps, opt = stepped(opt_name)
        ps[2].grad = make(ps[2])
        return [opt, ps[0], ps[1]], opt.step
    check_bad(Bad(setup, exc, both(f"{opt_name}.step", "parameter 2", words)))


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_state_dict_round_trip_continues_the_same_trajectory(opt_name):
    ps, opt = stepped(opt_name)
    sd = opt.state_dict()
    clone = [Tensor(p.data.copy(), requires_grad=True) for p in ps]
    opt2 = OPTIMIZERS[opt_name](clone)
    opt2.load_state_dict(sd)
    for k, v in sd["state"][0].items():  # state_dict() copies: a step of the original changes none of it
        if isinstance(v, np.ndarray):
            v += 1.0
            assert not np.array_equal(v, opt.state[0][k])
            v -= 1.0
    for a, b in zip(ps, clone):
        a.grad = b.grad = Tensor(np.full(a.shape, 0.5))
    opt.step()
    opt2.step()
    for a, b in zip(ps, clone):
        np.testing.assert_array_equal(a.data, b.data)


def _edit(opt_name: str, edit: Callable[[dict], Any]) -> Callable[[], tuple[list, Callable[[], Any]]]:
    def setup() -> tuple[list, Callable[[], Any]]:
        ps, opt = stepped(opt_name)
        sd = opt.state_dict()
        sd = edit(sd) or sd  # an edit returns a replacement, or None after changing sd in place
        return [opt, *ps], lambda: opt.load_state_dict(sd)
    return setup


def _moment(opt_name: str) -> str:
    return {"SGD": "v", "RMSprop": "s", "Adam": "m"}[opt_name]


def _set(d: dict, k: Any, v: Any) -> None:
    d[k] = v


def _pop(d: dict, k: Any) -> None:
    del d[k]


LOAD_BAD: dict[str, tuple[Callable[[str], Callable[[dict], Any]], type, str]] = {
    # name: (the edit, given the optimizer's name; the exception; words of the message)
    "not a dict": (lambda o: lambda sd: [sd], TypeError, "expected the dict state_dict() returns, got list"),
    "no param_groups": (lambda o: lambda sd: _pop(sd, "param_groups"), KeyError, "missing 'param_groups'"),
    "two param groups": (lambda o: lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), ValueError,
                         "different number of parameter groups"),
    "two parameters saved for three": (lambda o: lambda sd: _set(sd["param_groups"][0], "params", [0, 1]), ValueError,
                                       "has 2 parameters, this optimizer has 3"),
    "negative lr": (lambda o: lambda sd: _set(sd["param_groups"][0], "lr", -1.0), ValueError, "learning rate"),
    "lr a string": (lambda o: lambda sd: _set(sd["param_groups"][0], "lr", "0.1"), TypeError, "learning rate"),
    "an unknown hyper-parameter": (lambda o: lambda sd: _set(sd["param_groups"][0], "nesterov_typo", True),
                                   ValueError, "nesterov_typo"),
    "a missing hyper-parameter": (lambda o: lambda sd: _pop(sd["param_groups"][0], "lr"), ValueError, "expected"),
    "state for parameter 5": (lambda o: lambda sd: _set(sd["state"], 5, sd["state"][0]), ValueError,
                              "state key 5 is not a parameter index"),
    "a moment of the wrong shape for parameter 2": (
        lambda o: lambda sd: _set(sd["state"][2], _moment(o), np.zeros(5)), tg.ShapeError,
        "state 2 '{m}' must be"),
    "a moment of strings": (lambda o: lambda sd: _set(sd["state"][2], _moment(o), np.array(["a"] * 4)), ValueError,
                            "must be a numeric array"),
    "a state entry with an unknown key": (lambda o: lambda sd: _set(sd["state"][1], "momentum_buffer", np.zeros(3)),
                                          ValueError, "state 1 must have the keys"),
}


@pytest.mark.parametrize("bad", LOAD_BAD)
@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_load_state_dict_with_a_bad_entry_changes_nothing(opt_name, bad):
    edit, exc, words = LOAD_BAD[bad]
    words = words.replace("{m}", _moment(opt_name))
    check_bad(Bad(_edit(opt_name, edit(opt_name)), exc, both(f"{opt_name}.load_state_dict", words)))


ADAM_LOAD_BAD: dict[str, tuple[Callable[[dict], Any], type, str]] = {
    "step count 0": (lambda sd: _set(sd["state"][1], "t", 0), ValueError, "'t' must be an int >= 1"),
    "step count 1.5": (lambda sd: _set(sd["state"][1], "t", 1.5), ValueError, "'t' must be an int >= 1"),
    "beta1 = 1": (lambda sd: _set(sd["param_groups"][0], "betas", (1.0, 0.999)), ValueError, "betas"),
    "eps = -1": (lambda sd: _set(sd["param_groups"][0], "eps", -1.0), ValueError, "eps"),
}


@pytest.mark.parametrize("bad", ADAM_LOAD_BAD)
def test_adam_load_state_dict_with_a_bad_entry_changes_nothing(bad):
    edit, exc, words = ADAM_LOAD_BAD[bad]
    check_bad(Bad(_edit("Adam", edit), exc, both("Adam.load_state_dict", words)))
