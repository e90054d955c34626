"""The Module API (parameter and buffer names and order as PyTorch gives them, shared parameters,
train/eval, zero_grad, dtype casts, state_dict copies, load_state_dict: round trip, casts, rejection
that changes nothing, strict=False), Linear (shapes, PyTorch's init, forward), Dropout (statistics,
edge cases, gradient), Sequential, the scopes a module call records; and, when PyTorch is installed,
names against torch.nn and loading a trained torch model. Batch norm's own semantics: test_nn_bn.py."""
import re

import numpy as np
import pytest
from conftest import assert_close

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F

F64, F32 = np.float64, np.float32


class Block(nn.Module):
    def __init__(self, dtype, rng):
        self.lin = nn.Linear(3, 4, dtype=dtype, rng=rng)
        self.bn = nn.BatchNorm1d(4, dtype=dtype)

    def forward(self, x):
        return self.bn(self.lin(x)).relu()


class Net(nn.Module):
    """Own parameters before AND after the children (PyTorch lists a module's own parameters first
    whatever the assignment order), a nested Sequential, a Dropout, and a plain Tensor attribute that
    is neither a parameter nor a buffer."""
    def __init__(self, dtype=F64, seed=0, p=0.0):
        rng = np.random.default_rng(seed)
        self.scale = nn.Parameter(rng.uniform(0.5, 1.5, 2).astype(dtype))
        self.layers = nn.Sequential(nn.Linear(5, 3, dtype=dtype, rng=rng), Block(dtype, rng), nn.Dropout(p, rng=rng))
        self.head = nn.Linear(4, 2, dtype=dtype, rng=rng)
        self.offset = nn.Parameter(rng.standard_normal(2).astype(dtype))
        self.constant = tg.Tensor(np.ones(2, dtype))

    def forward(self, x):
        return self.head(self.layers(x)) * self.scale + self.offset + self.constant.cast(self.offset.dtype)


PARAM_NAMES = ["scale", "offset", "layers.0.weight", "layers.0.bias", "layers.1.lin.weight", "layers.1.lin.bias",
               "layers.1.bn.weight", "layers.1.bn.bias", "head.weight", "head.bias"]
BUFFER_NAMES = ["layers.1.bn.running_mean", "layers.1.bn.running_var", "layers.1.bn.num_batches_tracked"]
# PyTorch's state_dict: per module, its parameters, then its buffers, then its children
STATE_NAMES = ["scale", "offset", "layers.0.weight", "layers.0.bias", "layers.1.lin.weight", "layers.1.lin.bias",
               "layers.1.bn.weight", "layers.1.bn.bias", *BUFFER_NAMES, "head.weight", "head.bias"]


def train_steps(net, rng, steps=4):
    """A few SGD steps on a cross-entropy loss: moves every parameter and the running statistics."""
    opt = tg.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)
    net.train()
    for _ in range(steps):
        x = tg.Tensor(rng.standard_normal((16, 5)) * 2 + 1)
        y = rng.integers(0, 2, 16)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()


def tensors(net):
    """name -> the Tensor itself, for every parameter and buffer."""
    return dict(net.named_parameters()) | dict(net.named_buffers())


def snapshot(net):
    return {k: (t, t.data, t.data.copy()) for k, t in tensors(net).items()}


def assert_unchanged(net, snap):
    now = tensors(net)
    assert list(now) == list(snap)
    for k, (t, data, copy) in snap.items():
        assert now[k] is t and t.data is data, k
        assert t.data.dtype == copy.dtype, k
        np.testing.assert_array_equal(t.data, copy, err_msg=k)


# ------------------------------------------------------------------------------ names and traversal

def test_named_parameters_and_buffers_follow_pytorch():
    net = Net()
    names = [k for k, _ in net.named_parameters()]
    assert names == PARAM_NAMES
    params = net.parameters()
    assert [id(p) for p in params] == [id(p) for _, p in net.named_parameters()]
    assert params[0] is net.scale and params[2] is net.layers[0].weight and params[-1] is net.head.bias
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    assert [k for k, _ in net.named_buffers()] == BUFFER_NAMES
    bn = net.layers[1].bn
    assert [id(b) for b in net.buffers()] == [id(bn.running_mean), id(bn.running_var), id(bn.num_batches_tracked)]
    assert all(not b.requires_grad for b in net.buffers())
    assert all(t is not net.constant for t in [*net.parameters(), *net.buffers()])


def test_absent_bias_and_untracked_statistics_are_left_out():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.BatchNorm1d(2, track_running_stats=False),
                        nn.BatchNorm1d(2, affine=False))
    assert [k for k, _ in net.named_parameters()] == ["0.weight", "1.weight", "1.bias"]
    assert [k for k, _ in net.named_buffers()] == ["2.running_mean", "2.running_var", "2.num_batches_tracked"]
    assert list(net.state_dict()) == ["0.weight", "1.weight", "1.bias", "2.running_mean", "2.running_var",
                                      "2.num_batches_tracked"]


def test_a_shared_module_or_tied_parameter_counts_once(rng):
    """The same Linear twice in a Sequential: its parameters are listed once, under the first name; one
    SGD step applies the SUM of both uses' gradients once."""
    lin = nn.Linear(3, 3, dtype=F64, rng=rng)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert [k for k, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert seq.parameters() == [lin.weight, lin.bias]
    a, b = nn.Linear(2, 2, dtype=F64, rng=rng), nn.Linear(2, 2, dtype=F64, rng=rng)
    b.weight = a.weight  # tied weights
    pair = nn.Sequential(a, b)
    assert [k for k, _ in pair.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    x = tg.Tensor(rng.standard_normal((4, 2)))
    pair(x).sum().backward()
    w0, g = a.weight.data.copy(), a.weight.grad.data.copy()
    w = tg.Tensor(w0, requires_grad=True)  # the same function, written out
    ((x @ w.T + a.bias.detach()) @ w.T + b.bias.detach()).sum().backward()
    assert_close(g, w.grad)
    tg.optim.SGD(pair.parameters(), lr=0.5).step()
    assert_close(a.weight, w0 - 0.5 * g, rtol=1e-15)


def test_a_shared_batch_norm_lists_its_buffers_once():
    bn = nn.BatchNorm1d(2)
    seq = nn.Sequential(bn, bn)
    assert len(seq.parameters()) == 2
    assert [k for k, _ in seq.named_buffers()] == ["0.running_mean", "0.running_var", "0.num_batches_tracked"]


def test_parameter_wraps_an_ndarray_or_tensor():
    a = np.arange(3.0)
    p = nn.Parameter(a)
    assert isinstance(p, tg.Tensor) and p.requires_grad and p.dtype == F64 and p.grad is None
    q = nn.Parameter(tg.Tensor(np.ones((2, 2), F32)))
    assert q.requires_grad and q.dtype == F32 and q.shape == (2, 2)
    with pytest.raises(TypeError, match="floating"):
        nn.Parameter(np.arange(3))


# ------------------------------------------------------------------------------ modes and casting

def test_train_and_eval_are_recursive_and_return_the_module(rng):
    net = Net(p=0.5)
    modules = net.modules()
    assert len(modules) == 8 and all(m.training for m in modules)
    assert net.eval() is net
    assert not any(m.training for m in modules)
    x = tg.Tensor(rng.standard_normal((6, 5)))
    np.testing.assert_array_equal(net(x).data, net(x).data)  # eval: no dropout, running statistics
    net.layers[1].train()  # one subtree back to training mode
    assert [m.training for m in modules] == [False, False, False, True, True, True, False, False]
    assert net.train() is net and all(m.training for m in modules)
    net.train(False)
    assert not any(m.training for m in modules)


def test_zero_grad_sets_every_grad_to_none(rng):
    net = Net()
    net(tg.Tensor(rng.standard_normal((6, 5)))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("cast, dtype", [("double", F64), ("float", F32), ("to", F64), ("to", F32)])
def test_to_casts_parameters_and_float_buffers_but_not_num_batches_tracked(cast, dtype, rng):
    start = F32 if dtype == F64 else F64
    net = Net(dtype=start)
    train_steps(net, rng, 2)
    net(tg.Tensor(rng.standard_normal((6, 5)).astype(start))).sum().backward()  # a third training batch
    before = {k: (t, t.data.copy(), t.grad) for k, t in tensors(net).items()}
    out = getattr(net, cast)(dtype) if cast == "to" else getattr(net, cast)()
    assert out is net
    for k, (t, old, grad) in before.items():
        assert tensors(net)[k] is t, k  # the same Tensor objects (an optimizer holding them keeps working)
        if k.endswith("num_batches_tracked"):
            assert t.dtype == np.int64 and int(t.data) == 3
        else:
            assert t.dtype == dtype, k
            np.testing.assert_array_equal(t.data, old.astype(dtype), err_msg=k)
        if grad is not None:
            assert t.grad.dtype == dtype and np.array_equal(t.grad.data, grad.data.astype(dtype)), k
    assert all(v.dtype == (np.int64 if k.endswith("tracked") else dtype) for k, v in net.state_dict().items())
    x = rng.standard_normal((4, 5)).astype(dtype)
    assert net(tg.Tensor(x)).dtype == dtype


# ------------------------------------------------------------------------------------- state_dict

def test_state_dict_keys_order_and_copies(rng):
    net = Net()
    train_steps(net, rng, 3)
    state = net.state_dict()
    assert list(state) == STATE_NAMES
    own = tensors(net)
    for k, v in state.items():
        assert v.dtype == own[k].dtype and v.shape == own[k].shape, k
        np.testing.assert_array_equal(v, own[k].data, err_msg=k)
        assert not np.shares_memory(v, own[k].data), k
    assert int(state["layers.1.bn.num_batches_tracked"]) == 3
    kept = {k: v.copy() for k, v in state.items()}
    for k, v in state.items():  # mutating the dict's arrays leaves the model alone
        if k != "layers.1.bn.num_batches_tracked":  # see the next test
            v[...] = 7
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, kept[k], err_msg=k)
    net.head.weight.data += 1  # and changing the model leaves an earlier dict alone
    assert np.all(state["head.weight"] == 7)


def test_state_dict_values_are_ndarrays_after_training(rng):
    bn = nn.BatchNorm1d(2)
    bn(tg.Tensor(rng.standard_normal((4, 2))))
    assert type(bn.num_batches_tracked.data) is np.ndarray
    state = bn.state_dict()
    assert all(type(v) is np.ndarray for v in state.values()), {k: type(v) for k, v in state.items()}


def test_load_state_dict_round_trip_restores_identical_outputs(rng):
    """A trained model (BatchNorm running statistics moved, num_batches_tracked 4) saved and loaded
    into a differently initialized one: in eval mode the outputs are identical."""
    a, b = Net(seed=0), Net(seed=1)
    train_steps(a, rng)
    a.eval()
    b.eval()
    x = tg.Tensor(rng.standard_normal((7, 5)))
    assert not np.allclose(a(x).data, b(x).data)
    result = b.load_state_dict(a.state_dict())
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    np.testing.assert_array_equal(b(x).data, a(x).data)
    for k, v in a.state_dict().items():
        got = b.state_dict()[k]
        assert got.dtype == v.dtype, k
        np.testing.assert_array_equal(got, v, err_msg=k)
    assert int(b.layers[1].bn.num_batches_tracked.data) == 4
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in b.parameters())
    assert all(not t.requires_grad for t in b.buffers())
    b.train()  # and it keeps training like a: same gradients from the same batch
    a.train()
    for net in (a, b):
        net.zero_grad()
        net(x).sum().backward()
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.grad.data, q.grad.data, err_msg=k)


def test_loaded_arrays_are_copies(rng):
    a, b = Net(seed=0), Net(seed=1)
    state = a.state_dict()
    b.load_state_dict(state)
    for v in state.values():
        v[...] = 0
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("src, dst", [(F64, F32), (F32, F64)], ids=["float64 into float32", "float32 into float64"])
def test_load_state_dict_casts_to_each_entrys_dtype(src, dst, rng):
    a, b = Net(dtype=src, seed=0), Net(dtype=dst, seed=1)
    train_steps(a, rng, 2)
    state = a.state_dict()
    state["layers.1.bn.num_batches_tracked"] = np.array(2.0)  # a float count becomes int64
    b.load_state_dict(state)
    for k, v in b.state_dict().items():
        want = np.int64 if k.endswith("tracked") else dst
        assert v.dtype == want, k
        np.testing.assert_array_equal(v, state[k].astype(want), err_msg=k)


def test_load_state_dict_accepts_tensors(rng):
    a, b = Net(seed=0), Net(seed=1)
    train_steps(a, rng, 2)
    b.load_state_dict({k: tg.Tensor(v.copy()) for k, v in a.state_dict().items()})
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v, err_msg=k)


def _drop(key):
    return lambda s: {k: v for k, v in s.items() if k != key}


def _set(key, value):
    return lambda s: s | {key: value}


BAD_STATE = {  # name: (edit of a good state dict, names the error must mention)
    "missing parameter": (_drop("head.bias"), ["head.bias"]),
    "missing buffer": (_drop("layers.1.bn.running_var"), ["layers.1.bn.running_var"]),
    "unexpected key": (_set("layers.1.bn.extra", np.zeros(4)), ["layers.1.bn.extra"]),
    "transposed weight": (lambda s: s | {"head.weight": s["head.weight"].T}, ["head.weight", "(2, 4)", "(4, 2)"]),
    "mis-shaped buffer": (_set("layers.1.bn.running_mean", np.zeros(5)), ["layers.1.bn.running_mean", "(5,)"]),
    "count of shape (1,)": (_set("layers.1.bn.num_batches_tracked", np.array([3])),
                            ["layers.1.bn.num_batches_tracked", "(1,)"]),
    "all at once": (lambda s: _drop("scale")(s) | {"nope": np.zeros(1), "offset": np.zeros(3)},
                    ["scale", "nope", "offset"]),
}


@pytest.mark.parametrize("name", BAD_STATE)
def test_load_state_dict_rejects_bad_entries_changing_nothing(name, rng):
    edit, mentioned = BAD_STATE[name]
    a, b = Net(seed=0), Net(seed=1)
    train_steps(a, rng, 2)
    train_steps(b, rng, 1)
    # every good entry differs from b's current value, so a partial load would show
    bad = edit({k: v + 1 if v.dtype.kind == "f" else v + 5 for k, v in a.state_dict().items()})
    snap = snapshot(b)
    with pytest.raises(RuntimeError) as info:
        b.load_state_dict(bad)
    assert type(info.value) is RuntimeError
    for word in mentioned:
        assert word in str(info.value), (word, str(info.value))
    assert_unchanged(b, snap)


@pytest.mark.parametrize("name", ["transposed weight", "mis-shaped buffer"])
def test_strict_false_still_rejects_a_shape_mismatch(name, rng):
    edit, mentioned = BAD_STATE[name]
    b = Net(seed=1)
    snap = snapshot(b)
    with pytest.raises(RuntimeError, match=re.escape(mentioned[0])):
        b.load_state_dict(edit({k: v + 1 for k, v in Net(seed=0).state_dict().items()}), strict=False)
    assert_unchanged(b, snap)


def test_strict_false_loads_what_matches_and_reports_the_rest(rng):
    a, b = Net(seed=0), Net(seed=1)
    train_steps(a, rng, 2)
    state = {k: v for k, v in a.state_dict().items() if k not in ("head.bias", "layers.1.bn.running_var")}
    state |= {"extra.weight": np.zeros(3), "another": np.ones(1)}
    kept = {k: t.data.copy() for k, t in tensors(b).items()}
    result = b.load_state_dict(state, strict=False)
    assert result.missing_keys == ["layers.1.bn.running_var", "head.bias"]  # in the model's order
    assert result.unexpected_keys == ["extra.weight", "another"]  # in the dict's order
    assert (result.missing_keys, result.unexpected_keys) == tuple(result)
    for k, t in tensors(b).items():
        np.testing.assert_array_equal(t.data, kept[k] if k in ("head.bias", "layers.1.bn.running_var") else state[k],
                                      err_msg=k)


def test_an_uncastable_entry_is_rejected_changing_nothing():
    a, b = Net(seed=0), Net(seed=1)
    snap = snapshot(b)
    state = a.state_dict() | {"head.weight": np.full((2, 4), "x")}
    with pytest.raises(RuntimeError, match="head.weight"):
        b.load_state_dict(state)
    assert_unchanged(b, snap)


# ------------------------------------------------------------------------------------------ Linear

def test_linear_shapes_dtypes_and_forward(rng):
    lin = nn.Linear(4, 3, dtype=F64, rng=rng)
    assert lin.weight.shape == (3, 4) and lin.bias.shape == (3,)
    assert lin.weight.dtype == F64 and lin.bias.dtype == F64
    assert [k for k, _ in lin.named_parameters()] == ["weight", "bias"]
    for shape in [(5, 4), (4,), (2, 5, 4)]:  # a batch, one example, a batch of sequences
        x = rng.standard_normal(shape)
        y = lin(tg.Tensor(x))
        assert y.dtype == F64
        assert_close(y, x @ lin.weight.data.T + lin.bias.data, rtol=1e-14, atol=1e-15)
    assert nn.Linear(4, 3).weight.dtype == F32 and nn.Linear(4, 3).bias.dtype == F32  # the default dtype
    x32 = rng.standard_normal((5, 4)).astype(F32)
    lin32 = nn.Linear(4, 3, rng=rng)
    assert lin32(tg.Tensor(x32)).dtype == F32


def test_linear_without_bias(rng):
    lin = nn.Linear(4, 3, bias=False, dtype=F64, rng=rng)
    assert lin.bias is None and lin.parameters() == [lin.weight] and list(lin.state_dict()) == ["weight"]
    x = rng.standard_normal((5, 4))
    assert_close(lin(tg.Tensor(x)), x @ lin.weight.data.T, rtol=1e-14, atol=1e-15)


def test_linear_gradients(rng):
    """dW = dy^T x, db = sum dy, dx = dy W: the linear layer's backward, written out."""
    lin = nn.Linear(4, 3, dtype=F64, rng=rng)
    x = tg.Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    dy = rng.standard_normal((5, 3))
    lin(x).backward(tg.Tensor(dy))
    assert_close(lin.weight.grad, dy.T @ x.data)
    assert_close(lin.bias.grad, dy.sum(axis=0))
    assert_close(x.grad, dy @ lin.weight.data)


@pytest.mark.parametrize("fan_in, fan_out", [(256, 512), (9, 20000)])
def test_linear_default_init_is_uniform_within_one_over_sqrt_fan_in(fan_in, fan_out):
    """PyTorch's default: W, b ~ U(-1/sqrt(in), 1/sqrt(in)). Checked on 130k-180k draws: within the
    bound, reaching it, mean 0, standard deviation bound/sqrt(3), half the mass inside bound/2 (each to
    about five standard errors)."""
    lin = nn.Linear(fan_in, fan_out, dtype=F64, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(fan_in)
    for name, v in [("weight", lin.weight.data.ravel()), ("bias", lin.bias.data)]:
        n = v.size
        assert np.abs(v).max() <= bound, name
        assert v.max() > bound * (1 - 20 / n) and v.min() < -bound * (1 - 20 / n), name
        assert abs(v.mean()) < 5 * bound / np.sqrt(3 * n), name
        assert abs(v.std() / (bound / np.sqrt(3)) - 1) < 5 * np.sqrt(0.2 / n), name
        assert abs(np.mean(np.abs(v) < bound / 2) - 0.5) < 5 * 0.5 / np.sqrt(n), name


def test_linear_init_is_reproducible_from_a_seed():
    a = nn.Linear(6, 4, rng=np.random.default_rng(5))
    b = nn.Linear(6, 4, rng=np.random.default_rng(5))
    c = nn.Linear(6, 4, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    tg.manual_seed(11)
    d = nn.Linear(6, 4)
    tg.manual_seed(11)
    e = nn.Linear(6, 4)
    np.testing.assert_array_equal(d.weight.data, e.weight.data)


# ----------------------------------------------------------------------------------------- Dropout

def test_dropout_in_eval_mode_is_the_identity(rng):
    drop = nn.Dropout(0.5, rng=rng).eval()
    x = tg.Tensor(rng.standard_normal((50, 40)), requires_grad=True)
    y = drop(x)
    np.testing.assert_array_equal(y.data, x.data)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.ones((50, 40)))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_zeroes_about_p_and_scales_the_rest(p):
    """Inverted dropout: an element is dropped with probability p, a kept one is x / (1 - p), so the
    expected output is x. Bounds: five binomial standard deviations."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, (200, 300))  # never 0, so a zero output means dropped
    drop = nn.Dropout(p, rng=np.random.default_rng(1))
    y = drop(tg.Tensor(x)).data
    kept = y != 0
    n = x.size
    assert abs((~kept).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    sd = np.sqrt(np.mean(x ** 2) * p / (1 - p) / n)  # sd of the mean of y - x
    assert abs(y.mean() - x.mean()) < 5 * sd
    y2 = drop(tg.Tensor(x)).data  # a fresh mask every call
    assert not np.array_equal(y2 != 0, kept)
    assert abs(np.mean((y2 != 0) & kept) - (1 - p) ** 2) < 5 * np.sqrt(n) / n


def test_dropout_gradient_flows_only_through_kept_elements(rng):
    p = 0.3
    x = tg.Tensor(rng.uniform(0.5, 2.0, (30, 20)), requires_grad=True)
    y = nn.Dropout(p, rng=rng)(x)
    dy = rng.standard_normal((30, 20))
    y.backward(tg.Tensor(dy))
    kept = y.data != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(x.grad.data, np.where(kept, dy / (1 - p), 0.0), rtol=1e-15)


def test_dropout_is_reproducible_and_keeps_the_dtype():
    x = tg.Tensor(np.ones((10, 10), F32))
    a = nn.Dropout(0.5, rng=np.random.default_rng(3))(x)
    b = nn.Dropout(0.5, rng=np.random.default_rng(3))(x)
    assert a.dtype == F32
    np.testing.assert_array_equal(a.data, b.data)
    assert set(np.unique(a.data)) == {0.0, 2.0}


def test_dropout_p_zero_and_p_one(rng):
    x = tg.Tensor(rng.standard_normal((8, 6)), requires_grad=True)
    y = nn.Dropout(0.0, rng=rng)(x)
    np.testing.assert_array_equal(y.data, x.data)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.ones((8, 6)))
    x.zero_grad()
    z = nn.Dropout(1.0, rng=rng)(x)
    assert z.dtype == F64
    np.testing.assert_array_equal(z.data, np.zeros((8, 6)))
    z.sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.zeros((8, 6)))  # zero, not NaN from 1 / (1 - p)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_bad_p_is_a_value_error(p):
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        nn.Dropout(p)


# -------------------------------------------------------------------------------------- Sequential

class Record(nn.Module):
    def __init__(self, tag, log):
        self.tag, self.log = tag, log

    def forward(self, x):
        self.log.append(self.tag)
        return x * 2 + self.tag


def test_sequential_indexing_len_and_order(rng):
    log = []
    mods = [Record(1, log), Record(2, log), Record(3, log)]
    seq = nn.Sequential(*mods)
    assert len(seq) == 3 and seq[0] is mods[0] and seq[2] is mods[2] and seq[-1] is mods[2] and seq[-3] is mods[0]
    assert list(seq) == mods
    with pytest.raises(IndexError):
        seq[3]
    y = seq(tg.Tensor(np.array([1.0])))
    assert log == [1, 2, 3]
    assert y.item() == ((1 * 2 + 1) * 2 + 2) * 2 + 3
    lin1, lin2 = nn.Linear(3, 4, dtype=F64, rng=rng), nn.Linear(4, 2, dtype=F64, rng=rng)
    x = tg.Tensor(rng.standard_normal((5, 3)))
    assert_close(nn.Sequential(lin1, nn.ReLU(), lin2)(x), lin2(lin1(x).relu()))
    assert len(nn.Sequential()) == 0 and nn.Sequential()(x) is x


def test_sequential_slice_is_a_sequential():
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    head = seq[0:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is seq[0] and head[1] is seq[1]


# ---------------------------------------------------------------------------------------- scopes

def op_scopes(t):
    """(op name, scope) of every op in t's graph."""
    out, stack, seen = [], [t], set()
    while stack:
        u = stack.pop()
        if u._ctx is None or id(u) in seen:
            continue
        seen.add(id(u))
        out.append((type(u._ctx).__name__, u._ctx.scope))
        stack.extend(u._ctx.parents)
    return out


def test_a_module_call_records_nested_scopes_named_by_attribute_path(rng):
    net = Net()
    x = tg.Tensor(rng.standard_normal((6, 5)))
    y = net(x)
    assert y._ctx.scope == ("Net",)  # the last op, `+ constant`, is Net's own
    scopes = op_scopes(y)
    matmuls = {s for op, s in scopes if op == "MatMul"}
    assert matmuls == {("Net", "layers", "layers.0"), ("Net", "layers", "layers.1", "layers.1.lin"), ("Net", "head")}
    bn_ops = [s for _, s in scopes if "layers.1.bn" in s]
    assert bn_ops and all(s[:4] == ("Net", "layers", "layers.1", "layers.1.bn") for s in bn_ops)
    assert ("Relu", ("Net", "layers", "layers.1")) in scopes
    assert tg.engine.current_scope() == ()
    assert net.layers[1].lin.weight.name == "layers.1.lin.weight" and net.scale.name == "scale"
    with tg.scope("outer"):
        z = net.head(tg.Tensor(rng.standard_normal((2, 4))))
    assert z._ctx.scope == ("outer", "Linear")  # called on its own, a module is the root of its names


def test_an_error_in_forward_leaves_no_scope_behind(rng):
    class Broken(nn.Module):
        def __init__(self):
            self.lin = nn.Linear(3, 3, dtype=F64, rng=rng)

        def forward(self, x):
            return self.lin(x[:, :2])  # wrong width: linear raises

    with pytest.raises(ValueError, match="features"):
        Broken()(tg.Tensor(rng.standard_normal((4, 3))))
    assert tg.engine.current_scope() == ()
    y = Net()(tg.Tensor(rng.standard_normal((6, 5))))  # the next outermost call names its modules again
    assert y._ctx.scope == ("Net",) and ("MatMul", ("Net", "head")) in op_scopes(y)


# ---------------------------------------------------------------------------------------- PyTorch

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def test_names_and_state_dict_order_match_torch(torch):
    tn = torch.nn

    class TBlock(tn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.bn = tn.Linear(3, 4), tn.BatchNorm1d(4)

    class TNet(tn.Module):
        def __init__(self):
            super().__init__()
            self.scale = tn.Parameter(torch.ones(2))
            self.layers = tn.Sequential(tn.Linear(5, 3), TBlock(), tn.Dropout(0.0))
            self.head = tn.Linear(4, 2)
            self.offset = tn.Parameter(torch.zeros(2))

    theirs, ours = TNet(), Net()
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    assert [k for k, _ in ours.named_buffers()] == [k for k, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert ours.state_dict()[k].shape == tuple(v.shape), k


@pytest.mark.parametrize("dtype, rtol", [(F64, 1e-13), (F32, 1e-5)], ids=["float64", "float32"])
def test_load_a_trained_torch_model(dtype, rtol, torch, rng):
    """Linear -> BatchNorm1d -> Linear trained in torch (float64) for a few Adam steps, its state_dict
    loaded into ours (cast to float32 in the second case): the same outputs in eval mode."""
    tn = torch.nn
    torch.manual_seed(0)
    theirs = tn.Sequential(tn.Linear(6, 5), tn.BatchNorm1d(5), tn.Linear(5, 3)).double()
    opt = torch.optim.Adam(theirs.parameters(), lr=0.05)
    for _ in range(5):
        x = torch.tensor(rng.standard_normal((10, 6)) * 2 + 1)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(theirs(x), torch.tensor(rng.integers(0, 3, 10))).backward()
        opt.step()
    ours = nn.Sequential(nn.Linear(6, 5, dtype=dtype), nn.BatchNorm1d(5, dtype=dtype), nn.Linear(5, 3, dtype=dtype))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert int(ours[1].num_batches_tracked.data) == 5
    theirs.eval()
    ours.eval()
    x = rng.standard_normal((8, 6)) * 2 + 1
    got = ours(tg.Tensor(x.astype(dtype)))
    assert got.dtype == dtype
    with torch.no_grad():
        want = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got.data, want, rtol=rtol, atol=rtol)
