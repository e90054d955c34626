"""F.conv2d, F.max_pool2d and nn.Conv2d against PyTorch (skipped where torch is not installed): values,
first and second derivatives in float64, values and gradients in float32, and the one documented
difference, the gradient of a tied maximum."""
import numpy as np
import pytest
from conftest import assert_close

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

CONV = [((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, True), ((2, 3, 6, 5), (4, 3, 3, 3), 1, 1, False),
        ((2, 2, 7, 6), (3, 2, 2, 3), 2, 1, True), ((1, 2, 7, 6), (2, 2, 3, 2), (2, 1), (0, 1), True),
        ((3, 4, 8, 8), (5, 4, 1, 1), 2, 0, True), ((2, 5, 4, 3), (3, 5, 3, 3), 1, 0, False)]
POOL = [((2, 3, 4, 4), 2, None), ((2, 2, 5, 5), 3, 1), ((1, 2, 7, 6), (3, 2), 2), ((2, 1, 5, 7), (2, 3), (1, 2)),
        ((3, 4, 9, 9), 3, 2)]


def pairs(rng, shape, dtype=np.float64):
    """The same values as a tinygrad_bn leaf and a torch leaf."""
    a = rng.standard_normal(shape).astype(dtype)
    return tg.Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


@pytest.mark.parametrize("xs, ws, stride, padding, has_bias", CONV)
def test_conv2d_matches_torch(rng, xs, ws, stride, padding, has_bias):
    (x, tx), (w, tw) = pairs(rng, xs), pairs(rng, ws)
    b, tb = pairs(rng, ws[:1]) if has_bias else (None, None)
    out, tout = F.conv2d(x, w, b, stride, padding), TF.conv2d(tx, tw, tb, stride, padding)
    assert_close(out, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    ins, tins = [x, w] + ([b] if has_bias else []), [tx, tw] + ([tb] if has_bias else [])
    g = rng.standard_normal(out.shape)
    firsts = tg.grad(out, ins, tg.Tensor(g), create_graph=True)
    tfirsts = torch.autograd.grad(tout, tins, torch.tensor(g), create_graph=True)
    for a, t in zip(firsts, tfirsts):
        assert_close(a, t.detach().numpy(), rtol=1e-12, atol=1e-13)
    # second derivatives: the gradient of a random projection of the first derivatives (dx depends on w, dw on x)
    vs = [rng.standard_normal(t.shape) for t in ins]
    seconds = tg.grad(sum((f * tg.Tensor(v)).sum() for f, v in zip(firsts, vs)), ins[:2])
    tseconds = torch.autograd.grad(sum((f * torch.tensor(v)).sum() for f, v in zip(tfirsts, vs)), tins[:2])
    for a, t in zip(seconds, tseconds):
        assert_close(a, t.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("xs, k, stride", POOL)
def test_max_pool2d_matches_torch(rng, xs, k, stride):
    x, tx = pairs(rng, xs)  # continuous values: no ties
    out, tout = F.max_pool2d(x, k, stride), TF.max_pool2d(tx, k, stride)
    assert_close(out, tout.detach().numpy(), rtol=0)
    g = rng.standard_normal(out.shape)
    out.backward(tg.Tensor(g))
    tout.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad.numpy(), rtol=1e-15)


def test_float32_matches_torch(rng):
    (x, tx), (w, tw), (b, tb) = (pairs(rng, s, np.float32) for s in ((4, 3, 8, 8), (6, 3, 3, 3), (6,)))
    out = F.max_pool2d(F.conv2d(x, w, b, 1, 1).relu(), 2)
    tout = TF.max_pool2d(TF.conv2d(tx, tw, tb, 1, 1).relu(), 2)
    assert out.dtype == np.float32
    assert_close(out, tout.detach().numpy(), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    tout.sum().backward()
    for a, t in ((x, tx), (w, tw), (b, tb)):
        assert a.grad.dtype == np.float32
        assert_close(a.grad, t.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_conv2d_module_matches_torch():
    m = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1, dtype=np.float64, rng=np.random.default_rng(0))
    tm = torch.nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1, dtype=torch.float64)
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    assert [k for k, _ in tm.named_parameters()] == list(m.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5))
    assert_close(m(tg.Tensor(x)), tm(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-14)
    assert (m.kernel_size, m.stride, m.padding) == (tm.kernel_size, tm.stride, tm.padding)
    assert_close(nn.MaxPool2d(3, 2)(tg.Tensor(x)), torch.nn.MaxPool2d(3, 2)(torch.tensor(x)).numpy(), rtol=0)


def test_tied_maximum_is_the_documented_difference():
    """Both send a window's gradient to its maxima, but at a tie of k tinygrad_bn gives each 1/k
    (Tensor.max's rule) where PyTorch gives all of it to one: the same total per window."""
    a = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    x, tx = tg.Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    TF.max_pool2d(tx, 2).sum().backward()
    assert_close(x.grad, [[[[1 / 3, 1 / 3], [0.0, 1 / 3]]]], rtol=1e-15)
    assert sorted(tx.grad.numpy().ravel()) == [0.0, 0.0, 0.0, 1.0] and tx.grad.numpy()[0, 0, 1, 0] == 0
