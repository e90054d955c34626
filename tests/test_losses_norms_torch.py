"""Values and gradients of cross_entropy (weight, ignore_index, label smoothing, spatial logits,
probability targets), group_norm and embedding against torch.nn.functional, in float64."""
import numpy as np
import pytest
from test_losses_norms import CE_CASES, GN_CASES, GN_IDS, REDUCTIONS, ce_case

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def t2n(t):
    return t.detach().numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", CE_CASES)
def test_cross_entropy_matches_torch(name, reduction, rng):
    z, t, kw = ce_case(name, rng)
    w = kw.pop("weight", None)
    soft = t.dtype.kind == "f"
    ours = [tg.Tensor(z, requires_grad=True)] + ([tg.Tensor(t, requires_grad=True)] if soft else [])
    theirs = [torch.tensor(z, requires_grad=True)] + ([torch.tensor(t, requires_grad=True)] if soft else [])
    loss = F.cross_entropy(ours[0], ours[1] if soft else t, w, reduction=reduction, **kw)
    ref = TF.cross_entropy(theirs[0], theirs[1] if soft else torch.tensor(t), None if w is None else torch.tensor(w),
                           reduction=reduction, **kw)
    g = rng.standard_normal(loss.shape) if loss.shape else np.array(1.0)
    loss.backward(tg.Tensor(g))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(loss.data, t2n(ref), rtol=1e-12, atol=1e-15)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.data, t2n(b.grad), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kw", [{}, {"weight": True}, {"label_smoothing": 0.2}], ids=str)
def test_all_ignored_matches_torch(kw):
    z = np.arange(12.0).reshape(3, 4) / 7
    t = np.full(3, -100)
    w = np.array([0.3, 2.0, 1.0, 0.7]) if kw.get("weight") else None
    eps = kw.get("label_smoothing", 0.0)
    for reduction in REDUCTIONS:
        with np.errstate(invalid="ignore", divide="ignore"):
            ours = F.cross_entropy(tg.Tensor(z), t, w, reduction=reduction, label_smoothing=eps).data
        theirs = TF.cross_entropy(torch.tensor(z), torch.tensor(t), None if w is None else torch.tensor(w),
                                  reduction=reduction, label_smoothing=eps)
        np.testing.assert_array_equal(ours, t2n(theirs))  # NaN == NaN here


def test_cross_entropy_loss_module_matches_torch(rng):
    z, t = rng.standard_normal((4, 3, 5)), rng.integers(0, 3, (4, 5))
    t[0, 0] = 2
    w = np.array([1.5, 0.2, 0.9])
    kw = {"ignore_index": 2, "reduction": "mean", "label_smoothing": 0.1}
    ours = nn.CrossEntropyLoss(w, **kw)(tg.Tensor(z), t).item()
    theirs = torch.nn.CrossEntropyLoss(torch.tensor(w), **kw)(torch.tensor(z), torch.tensor(t)).item()
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)


@pytest.mark.parametrize("shape, g", GN_CASES, ids=GN_IDS)
def test_group_norm_matches_torch(shape, g, rng):
    x, gamma, beta = rng.standard_normal(shape), rng.uniform(0.5, 2, shape[1]), rng.standard_normal(shape[1])
    ours = [tg.Tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    y = F.group_norm(ours[0], g, ours[1], ours[2], 1e-5)
    ref = TF.group_norm(theirs[0], g, theirs[1], theirs[2], 1e-5)
    dy = rng.standard_normal(shape)
    y.backward(tg.Tensor(dy))
    ref.backward(torch.tensor(dy))
    np.testing.assert_allclose(y.data, t2n(ref), rtol=1e-12, atol=1e-13)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.data, t2n(b.grad), rtol=1e-10, atol=1e-12)


def test_embedding_matches_torch(rng):
    w, idx = rng.standard_normal((6, 3)), np.array([[0, 5, 5], [2, 0, 5]])
    ours, theirs = tg.Tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    y, ref = F.embedding(idx, ours), TF.embedding(torch.tensor(idx), theirs)
    dy = rng.standard_normal(y.shape)
    y.backward(tg.Tensor(dy))
    ref.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y.data, t2n(ref))
    np.testing.assert_allclose(ours.grad.data, t2n(theirs.grad), rtol=1e-15)
