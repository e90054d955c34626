"""The small pieces of nn: F.one_hot, F.mse_loss and the modules Tanh, Sigmoid, Flatten, MSELoss.
Values against NumPy, gradients by gradcheck (float64), the errors PyTorch also raises, repr and
parameters(); and, when PyTorch is installed, values and gradients against torch."""
import warnings

import numpy as np
import pytest
from conftest import GRAD_TOL, assert_close, leaf

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn.check import gradcheck

REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}


# ----------------------------------------------------------------------------------------- one_hot

@pytest.mark.parametrize("shape, num_classes", [((), -1), ((5,), -1), ((2, 3), -1), ((), 7), ((5,), 7),
                                                ((2, 3), 7), ((0, 3), 7)])  # (empty with -1: an error)
@pytest.mark.parametrize("wrap", [np.asarray, tg.Tensor])
def test_one_hot_values(rng, shape, num_classes, wrap):
    labels = rng.integers(0, 4, shape)
    out = F.one_hot(wrap(labels), num_classes)
    n = labels.max() + 1 if num_classes == -1 else num_classes
    want = np.zeros((*shape, n), np.int64)
    np.put_along_axis(want, labels[..., None], 1, axis=-1)
    assert isinstance(out, tg.Tensor) and out.dtype == np.int64 and not out.requires_grad
    np.testing.assert_array_equal(out.data, want)


def test_one_hot_accepts_any_integer_dtype():
    for dt in (np.int32, np.uint8, np.int64):
        np.testing.assert_array_equal(F.one_hot(np.array([2, 0], dt)).data, np.eye(3, dtype=np.int64)[[2, 0]])


@pytest.mark.parametrize("labels, num_classes, err, match", [
    ([0, -1, 1], -1, RuntimeError, "non-negative, got label -1 .at index .1,.."),
    ([0, -1, 1], 3, RuntimeError, "non-negative, got label -1"),
    ([0, 3, 1], 3, RuntimeError, "smaller than num_classes=3, got label 3 .at index .1,.."),
    (np.zeros(0, np.int64), -1, RuntimeError, "cannot infer the number of classes"),
    ([0, 1], 0, RuntimeError, "num_classes must be -1 .* or positive, got 0"),
    ([0, 1], -2, RuntimeError, "num_classes must be -1 .* or positive, got -2"),
    ([0.0, 1.0], -1, TypeError, "labels must be integers, got dtype float64"),
    ([True, False], -1, TypeError, "labels must be integers, got dtype bool"),
    ([0, 1], 2.0, TypeError, "num_classes must be an int, got float 2.0"),
    ([0, 1], True, TypeError, "num_classes must be an int, got bool"),
])
def test_one_hot_errors(labels, num_classes, err, match):
    with pytest.raises(err, match=match):
        F.one_hot(np.asarray(labels), num_classes)


# ---------------------------------------------------------------------------------------- mse_loss

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_mse_loss_values(rng, reduction, dtype, rtol):
    x, y = rng.standard_normal((2, 3, 4)).astype(dtype), rng.standard_normal((2, 3, 4)).astype(dtype)
    for target in (y, tg.Tensor(y)):
        out = F.mse_loss(tg.Tensor(x), target, reduction)
        assert out.dtype == dtype
        assert_close(out, REDUCE[reduction]((x - y) ** 2), rtol=rtol)
        assert_close(nn.MSELoss(reduction)(tg.Tensor(x), target), out, rtol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_gradcheck(rng, reduction):
    x, y = leaf(rng, (3, 4)), leaf(rng, (3, 4))
    assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction), [x, y], **GRAD_TOL)
    assert gradcheck(lambda a: nn.MSELoss(reduction)(a, y.data), [x], **GRAD_TOL)


def test_mse_loss_broadcasts_with_a_warning(rng):
    """As PyTorch: a target of another shape broadcasts (with a UserWarning), the result and its
    gradient are those of the broadcast difference."""
    x, y = leaf(rng, (3, 1)), leaf(rng, (3,))
    with pytest.warns(UserWarning, match=r"target shape \(3,\) differs from input shape \(3, 1\)"):
        out = F.mse_loss(x, y, "none")
    assert_close(out, (x.data - y.data) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert gradcheck(lambda a, b: F.mse_loss(a, b, "sum"), [x, y], **GRAD_TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # equal shapes: no warning
        F.mse_loss(x, x.data)


def test_mse_loss_empty():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's 0 / 0 in the mean
        assert np.isnan(F.mse_loss(tg.Tensor(np.zeros(0)), np.zeros(0)).item())  # PyTorch: nan too
    assert F.mse_loss(tg.Tensor(np.zeros(0)), np.zeros(0), "sum").item() == 0


@pytest.mark.parametrize("call, err, match", [
    (lambda: F.mse_loss(tg.Tensor(np.ones(3)), np.zeros(2)), ValueError, r"\(3,\).*\(2,\)"),
    (lambda: F.mse_loss(tg.Tensor(np.ones(3)), np.zeros(3), "bad"), ValueError,
     "mse_loss: reduction must be 'mean', 'sum' or 'none', got 'bad'"),
    (lambda: nn.MSELoss("elementwise_mean"), ValueError, "MSELoss: reduction must be .* got 'elementwise_mean'"),
    (lambda: F.mse_loss(tg.Tensor(np.ones(3, np.int64)), np.zeros(3, np.int64)), NotImplementedError,
     "input int64 and target int64: one of them must be floating"),
    (lambda: F.mse_loss(np.ones(3), np.zeros(3)), TypeError, "mse_loss: input must be a Tensor, got ndarray"),
])
def test_mse_loss_errors(call, err, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(err, match=match):
            call()


def test_mse_loss_mixed_dtypes():
    """An integer target beside a float input is fine (PyTorch too); float32 with a float64 target promotes."""
    x = tg.Tensor(np.array([1.5, -2.0], np.float32))
    for target in (np.array([1, 0]), tg.Tensor(np.array([1, 0], np.int32))):
        out = F.mse_loss(x, target)
        assert out.dtype == np.float32 and out.item() == (0.25 + 4) / 2
    assert F.mse_loss(x, np.array([1.0, 0.0])).dtype == np.float64


# ----------------------------------------------------------------------------------------- modules

@pytest.mark.parametrize("module, ref", [(nn.Tanh, np.tanh), (nn.Sigmoid, lambda a: 1 / (1 + np.exp(-a)))])
def test_activation_values_and_gradcheck(rng, module, ref):
    x = leaf(rng, (2, 3, 4))
    assert_close(module()(x), ref(x.data))
    assert gradcheck(module(), [x], **GRAD_TOL)
    x32 = rng.standard_normal(5).astype(np.float32)
    out = module()(tg.Tensor(x32))
    assert out.dtype == np.float32
    assert_close(out, ref(x32.astype(np.float64)), rtol=1e-6)
    assert module()(tg.Tensor(np.array([1, 2]))).dtype == np.float32  # integers compute in float32, as PyTorch


@pytest.mark.parametrize("shape, start, end, want", [
    ((2, 3, 4, 5), 1, -1, (2, 60)),
    ((2, 3, 4, 5), 0, -1, (120,)),
    ((2, 3, 4, 5), 1, 2, (2, 12, 5)),
    ((2, 3, 4, 5), -2, -1, (2, 3, 20)),
    ((2, 3, 4), 1, 1, (2, 3, 4)),
    ((2, 3), 1, -1, (2, 3)),
    ((0, 3, 4), 1, -1, (0, 12)),
    ((2, 0, 4), 1, -1, (2, 0)),
    ((), 0, -1, (1,)),
    ((), 0, 0, (1,)),
])
def test_flatten_shapes_values_and_gradcheck(rng, shape, start, end, want):
    x = leaf(rng, shape)
    out = nn.Flatten(start, end)(x)
    assert out.shape == want
    np.testing.assert_array_equal(out.data, x.data.reshape(want))
    if x.size:
        assert gradcheck(nn.Flatten(start, end), [x], **GRAD_TOL)


@pytest.mark.parametrize("shape, start, end, err, match", [
    ((3,), 1, -1, IndexError, "Flatten: axis 1 is out of range for a tensor with 1 dims"),
    ((), 1, -1, IndexError, "Flatten: axis 1 is out of range"),
    ((2, 3, 4), 0, 5, IndexError, "Flatten: axis 5 is out of range for a tensor with 3 dims"),
    ((2, 3, 4), 2, 1, RuntimeError, r"Flatten: start_axis=2 comes after end_axis=1 for input \(2, 3, 4\)"),
    ((2, 3, 4), -1, 0, RuntimeError, "start_axis=-1 comes after end_axis=0"),
    ((2, 3, 4), 1.0, -1, TypeError, "Flatten: axis must be None, an int or a tuple of ints, got 1.0"),
    ((2, 3, 4), True, -1, TypeError, "Flatten: axis must be .* got True"),
])
def test_flatten_errors(shape, start, end, err, match):
    with pytest.raises(err, match=match):
        nn.Flatten(start, end)(tg.Tensor(np.ones(shape)))


@pytest.mark.parametrize("module, text", [
    (nn.Tanh(), "Tanh()"), (nn.Sigmoid(), "Sigmoid()"), (nn.Flatten(), "Flatten(start_axis=1, end_axis=-1)"),
    (nn.Flatten(0, 2), "Flatten(start_axis=0, end_axis=2)"), (nn.MSELoss(), "MSELoss()"),
    (nn.MSELoss("sum"), "MSELoss()"),  # PyTorch shows no reduction either
])
def test_repr_and_no_parameters(module, text):
    assert repr(module) == text
    assert module.parameters() == [] and module.buffers() == [] and module.state_dict() == {}


def test_in_a_sequential(rng):
    """Linear -> Tanh -> Flatten -> Linear -> Sigmoid trained against MSELoss: every parameter gets a gradient."""
    net = nn.Sequential(nn.Linear(4, 3, dtype=np.float64, rng=rng), nn.Tanh(), nn.Flatten(),
                        nn.Linear(6, 1, dtype=np.float64, rng=rng), nn.Sigmoid())
    x, y = tg.Tensor(rng.standard_normal((5, 2, 4))), rng.uniform(0, 1, (5, 1))
    lin0, lin1 = net[0], net[3]
    h = np.tanh(x.data @ lin0.weight.data.T + lin0.bias.data).reshape(5, 6)
    p = 1 / (1 + np.exp(-(h @ lin1.weight.data.T + lin1.bias.data)))
    loss = nn.MSELoss()(net(x), y)
    assert_close(loss, np.mean((p - y) ** 2))
    loss.backward()
    assert all(q.grad is not None and q.grad.shape == q.shape for q in net.parameters())
    assert "Tanh()" in repr(net) and "Flatten(start_axis=1, end_axis=-1)" in repr(net)


# ------------------------------------------------------------------------------------ torch parity

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def test_one_hot_matches_torch(torch, rng):
    labels = rng.integers(0, 5, (3, 4))
    for n in (-1, 5, 9):
        np.testing.assert_array_equal(F.one_hot(labels, n).data,
                                      torch.nn.functional.one_hot(torch.tensor(labels), n).numpy())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (4,))])
def test_mse_loss_matches_torch(torch, rng, reduction, shapes):
    x, y = leaf(rng, shapes[0]), leaf(rng, shapes[1])
    tx, ty = (torch.tensor(a.data, requires_grad=True) for a in (x, y))
    g = rng.standard_normal(np.broadcast_shapes(*shapes) if reduction == "none" else ())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # both warn about the broadcast
        ours, theirs = F.mse_loss(x, y, reduction), torch.nn.functional.mse_loss(tx, ty, reduction=reduction)
    assert_close(ours, theirs.detach().numpy())
    (ours * tg.Tensor(g)).sum().backward()
    (theirs * torch.tensor(g)).sum().backward()
    assert_close(x.grad, tx.grad.numpy())
    assert_close(y.grad, ty.grad.numpy())


@pytest.mark.parametrize("name, args", [("Tanh", ()), ("Sigmoid", ()), ("Flatten", ()), ("Flatten", (0, 1)),
                                        ("Flatten", (-2, -1))])
def test_modules_match_torch(torch, rng, name, args):
    x = leaf(rng, (2, 3, 4))
    tx = torch.tensor(x.data, requires_grad=True)
    ours, theirs = getattr(nn, name)(*args)(x), getattr(torch.nn, name)(*args)(tx)
    assert_close(ours, theirs.detach().numpy())
    g = rng.standard_normal(ours.shape)
    (ours * tg.Tensor(g)).sum().backward()
    (theirs * torch.tensor(g)).sum().backward()
    assert_close(x.grad, tx.grad.numpy())


# API.md: every built-in module takes dtype= (its parameters' and buffers' dtype; one without any keeps
# its input's dtype)
MODULES = {
    "Linear": lambda dt: nn.Linear(3, 2, dtype=dt), "Conv2d": lambda dt: nn.Conv2d(1, 2, 3, dtype=dt),
    "BatchNorm1d": lambda dt: nn.BatchNorm1d(3, dtype=dt), "BatchNorm2d": lambda dt: nn.BatchNorm2d(3, dtype=dt),
    "LayerNorm": lambda dt: nn.LayerNorm(3, dtype=dt), "GroupNorm": lambda dt: nn.GroupNorm(1, 3, dtype=dt),
    "Embedding": lambda dt: nn.Embedding(4, 3, dtype=dt), "ReLU": lambda dt: nn.ReLU(dtype=dt),
    "Tanh": lambda dt: nn.Tanh(dtype=dt), "Sigmoid": lambda dt: nn.Sigmoid(dtype=dt),
    "Flatten": lambda dt: nn.Flatten(dtype=dt), "Dropout": lambda dt: nn.Dropout(0.5, dtype=dt),
    "MaxPool2d": lambda dt: nn.MaxPool2d(2, dtype=dt), "MSELoss": lambda dt: nn.MSELoss(dtype=dt),
    "CrossEntropyLoss": lambda dt: nn.CrossEntropyLoss(weight=[1.0, 2.0, 3.0], dtype=dt),
}


@pytest.mark.parametrize("name", MODULES)
def test_every_module_takes_dtype(name):
    for dt in (np.float64, np.float32):
        m = MODULES[name](dt)
        tensors = list(m.parameters()) + [b for b in m.buffers() if b.dtype.kind == "f"]
        assert all(t.dtype == dt for t in tensors), name
    with pytest.raises(TypeError, match="dtype"):
        MODULES[name](np.int64)
