"""The hand-derived formulas, in plain NumPy: the oracle autograd is checked against (and which is
itself checked against finite differences). Nothing of the engine is imported here.

Notation (docs/course.md section 2): over the m values of one channel, mu = mean(x), xc = x - mu,
var = mean(xc^2) (biased), std = sqrt(var + eps), x_hat = xc / std, y = gamma * x_hat + beta.
`axis` names the reduced axes: 0 for (N, C); (0, 2) for (N, C, L); (0, 2, 3) for (N, C, H, W).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _axes(axis: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def _expand(v: np.ndarray, axes: tuple[int, ...], ndim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast against x: (C,) -> (1, C, 1, 1) for axes (0, 2, 3)."""
    return v.reshape([1 if i in axes else -1 for i in range(ndim)])


def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    return int(np.prod([shape[a] for a in axes]))


# -------------------------------------------------------------------------------- batch norm

def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5,
                      axis: int | tuple[int, ...] = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Training-mode batch norm (docs/course.md section 2). x: (N, C, ...); gamma, beta: (C,).
    Returns y (x's shape) and the cache the backward formulas read."""
    axes = _axes(axis, x.ndim)
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=axes, keepdims=True)
    std = np.sqrt(var + eps)
    x_hat = xc / std
    g = _expand(gamma, axes, x.ndim)
    y = g * x_hat + _expand(beta, axes, x.ndim)
    return y, {"x": x, "mu": mu, "xc": xc, "var": var, "std": std, "x_hat": x_hat, "gamma": g, "axes": axes,
               "m": _count(x.shape, axes)}


def batchnorm_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compact formula of docs/course.md section 3.2 (training mode), dy = dJ/dy:
        dbeta  = sum_i dy_i
        dgamma = sum_i dy_i x_hat_i
        dx     = gamma / (m std) * (m dy - sum_i dy_i - x_hat sum_i dy_i x_hat_i)
    It follows from the staged backward (batchnorm_backward_staged) by substituting d mu and
    d var into dx and using sum_i xc_i = 0."""
    axes, m, x_hat = cache["axes"], cache["m"], cache["x_hat"]
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * x_hat).sum(axis=axes, keepdims=True)
    dx = cache["gamma"] / (m * cache["std"]) * (m * dy - dbeta - x_hat * dgamma)
    return dx, dgamma.ravel(), dbeta.ravel()


def batchnorm_backward_staged(dy: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """The same gradient walked backward stage by stage through the small graph
    mu -> xc -> var -> std -> x_hat -> y, returning every intermediate gradient by name
    (d x_hat, d std, d var, d xc, d mu, ...) so each step can be audited on its own.
    'xc' is the total gradient of xc (through x_hat and through var)."""
    axes, x_hat = cache["axes"], cache["x_hat"]
    d = {"y": dy, "beta": dy.sum(axis=axes), "gamma": (dy * x_hat).sum(axis=axes)}
    return {**d, **standardize_backward_staged(dy * cache["gamma"], cache)}  # y = gamma x_hat + beta


def standardize_backward_staged(d_x_hat: np.ndarray, cache: dict[str, Any]) -> dict[str, np.ndarray]:
    """From d x_hat back through x_hat = xc / std, std = sqrt(var + eps), var = mean(xc^2),
    xc = x - mu, mu = mean(x), the means over cache["axes"] (m values each): the steps batch,
    layer and group norm share. cache holds xc, std, axes, m."""
    axes, m, xc, std = cache["axes"], cache["m"], cache["xc"], cache["std"]
    d = {"x_hat": d_x_hat}
    d["std"] = (d["x_hat"] * -xc / std**2).sum(axis=axes, keepdims=True)  # x_hat = xc / std
    d["var"] = d["std"] / (2 * std)                                      # std = sqrt(var + eps)
    d["xc"] = d["x_hat"] / std + d["var"] * 2 * xc / m                   # var = mean(xc^2), and x_hat
    d["mu"] = -d["xc"].sum(axis=axes, keepdims=True)                     # xc = x - mu
    d["x"] = d["xc"] + d["mu"] / m                                       # mu = mean(x), and xc
    return d


def batchnorm_eval_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                           running_var: np.ndarray, eps: float = 1e-5, axis: int | tuple[int, ...] = 0,
                           ) -> tuple[np.ndarray, dict[str, Any]]:
    """Eval-mode batch norm (docs/course.md section 5): the running statistics are constants."""
    axes = _axes(axis, x.ndim)
    std = np.sqrt(_expand(running_var, axes, x.ndim) + eps)
    x_hat = (x - _expand(running_mean, axes, x.ndim)) / std
    g = _expand(gamma, axes, x.ndim)
    return g * x_hat + _expand(beta, axes, x.ndim), {"x_hat": x_hat, "std": std, "gamma": g, "axes": axes}


def batchnorm_eval_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """With mu and sigma^2 constant, batch norm is affine in x: dx = gamma dy / sqrt(var_running + eps);
    dgamma and dbeta as in training mode."""
    axes, x_hat = cache["axes"], cache["x_hat"]
    return cache["gamma"] * dy / cache["std"], (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


# -------------------------------------------------------------------------------- layer norm

def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5,
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Layer norm over the trailing gamma.ndim axes (one example's features), biased variance."""
    axes = tuple(range(x.ndim - gamma.ndim, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    std = np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    x_hat = xc / std
    return gamma * x_hat + beta, {"x_hat": x_hat, "std": std, "gamma": gamma, "axes": axes,
                                  "d": _count(x.shape, axes)}


def layernorm_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch norm compact formula with the roles of the axes swapped: statistics over the
    D features of each example, and gamma, beta summed over the examples.
        dx = 1 / (D std) * (D g - sum_j g_j - x_hat sum_j g_j x_hat_j),  g = dy * gamma"""
    axes, D, x_hat = cache["axes"], cache["d"], cache["x_hat"]
    g = dy * cache["gamma"]
    dx = (D * g - g.sum(axis=axes, keepdims=True) - x_hat * (g * x_hat).sum(axis=axes, keepdims=True)) \
        / (D * cache["std"])
    batch = tuple(range(dy.ndim - len(axes)))
    return dx, (dy * x_hat).sum(axis=batch), dy.sum(axis=batch)


# -------------------------------------------------------------------------------- group norm

def groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, num_groups: int, eps: float = 1e-5,
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Group norm: x (N, C, *) seen as (N, G, D), D = C/G * prod(*), each row standardized as in layer
    norm (biased variance), shaped back, then y = gamma_c x_hat + beta_c per channel; gamma, beta: (C,)."""
    n, c = x.shape[:2]
    d = x.size // max(n * num_groups, 1)
    _, group = layernorm_forward(x.reshape(n, num_groups, d), np.ones(d, x.dtype), np.zeros(d, x.dtype), eps)
    x_hat = group["x_hat"].reshape(x.shape)
    axes = (0,) + tuple(range(2, x.ndim))  # the axes a channel's gamma and beta are summed over
    g = _expand(gamma, axes, x.ndim)
    return g * x_hat + _expand(beta, axes, x.ndim), {"group": group, "x_hat": x_hat, "gamma": g, "axes": axes}


def groupnorm_backward(dy: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within a group, layer norm's compact formula over its D values (layernorm_backward on the (N, G, D)
    view, fed g = dy * gamma_c with unit gain); gamma and beta per channel, as in batch norm:
        dx     = 1 / (D std) * (D g - sum_j g_j - x_hat sum_j g_j x_hat_j),  g = dy * gamma_c
        dgamma = sum over N and * of dy x_hat,   dbeta = sum over N and * of dy"""
    axes, x_hat, group = cache["axes"], cache["x_hat"], cache["group"]
    dx, _, _ = layernorm_backward((dy * cache["gamma"]).reshape(group["x_hat"].shape), group)
    return dx.reshape(dy.shape), (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


# ----------------------------------------------------------------- softmax and cross-entropy

def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z) / sum exp(z), shifted by the max first (softmax is shift-invariant): never overflows."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def one_hot(labels: np.ndarray, num_classes: int, dtype: Any = np.float64) -> np.ndarray:
    return np.eye(num_classes, dtype=dtype)[labels]


def softmax_cross_entropy_backward(logits: np.ndarray, target: np.ndarray, reduction: str = "mean",
                                   weight: np.ndarray | None = None, ignore_index: int = -100,
                                   label_smoothing: float = 0.0) -> np.ndarray:
    """dJ/dz of F.cross_entropy (docs/course.md sections 7 and 10, with PyTorch's weight, ignore_index and smoothing).
    logits (C,), (N, C) or (N, C, d1, ...), classes in axis 1; p = softmax(z) per position, w the class
    weights (else 1), W = sum_c w_c, eps = label_smoothing. As d(-log p_k)/dz_c = p_c - [c = k]:
        class indices y:  l = (1-eps) w_y (-log p_y) + eps/C sum_k w_k (-log p_k)
                          dl/dz = (1-eps) w_y (p - onehot(y)) + eps/C (W p - w);  0 where y == ignore_index
        probabilities y:  l = -sum_k w_k y'_k log p_k,  y' = (1-eps) y + eps/C
                          dl/dz = p sum_k w_k y'_k - w y'
    Unweighted and unsmoothed both are (y_hat - y) (y summing to 1). reduction "mean" divides by sum w_y
    over the positions not ignored (indices) or by the number of positions (probabilities): (y_hat - y) / m;
    "sum" does not divide; "none" gives each position's gradient of its own loss."""
    ax = min(logits.ndim - 1, 1)
    z = np.moveaxis(logits, ax, -1)  # the classes last: (..., C)
    n_cls, eps = z.shape[-1], label_smoothing
    p = softmax(z, axis=-1)
    w = np.ones(n_cls, logits.dtype) if weight is None else np.asarray(weight, logits.dtype)
    if target.shape == logits.shape:
        y = (1 - eps) * np.moveaxis(target, ax, -1) + eps / n_cls
        dz = p * (w * y).sum(axis=-1, keepdims=True) - w * y
        total = z.size // max(n_cls, 1)
    else:
        keep = target != ignore_index
        y = np.where(keep, target, 0)
        w_y = np.where(keep, w[y], 0)[..., None]
        dz = (1 - eps) * w_y * (p - one_hot(y, n_cls, logits.dtype)) + eps / n_cls * (w.sum() * p - w)
        dz = np.where(keep[..., None], dz, 0)
        total = w_y.sum()
    return np.moveaxis(dz / total if reduction == "mean" else dz, -1, ax)


# -------------------------------------------------------------------------- linear and relu

def linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y = x W^T + b with W: (out, in), x: (N, in), dy: (N, out):
    dx = dy W, dW = dy^T x, db = sum_i dy_i."""
    return dy @ w, dy.T @ x, dy.sum(axis=0)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """relu(x) = max(x, 0): dx = dy where x > 0, else 0 (the subgradient 0 at 0)."""
    return dy * (x > 0)


# ------------------------------------------------------------------- convolution and pooling

def _hw(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int | tuple[int, int] = 1,
                   padding: int | tuple[int, int] = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """out[n,o,p,q] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n,c,p*sh+i,q*sw+j] (cs231n's conv_forward, a
    cross-correlation as PyTorch's). x: (N, C, H, W); w: (O, C, KH, KW); b: (O,) or None; x_pad is x
    with `padding` zeros on both sides of H and W; out: (N, O, Ho, Wo), Ho = (H + 2 ph - KH) // sh + 1."""
    (sh, sw), (ph, pw) = _hw(stride), _hw(padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    ho, wo = (x_pad.shape[2] - kh) // sh + 1, (x_pad.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo), np.result_type(x, w))
    for i in range(kh):  # one kernel offset at a time: x_pad seen through (i, j) is (N, C, Ho, Wo)
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", x_pad[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw], w[:, :, i, j])
    if b is not None:
        out += b.reshape(-1, 1, 1)
    return out, {"x_pad": x_pad, "w": w, "has_bias": b is not None, "stride": (sh, sw), "padding": (ph, pw)}


def conv2d_backward(dout: np.ndarray, cache: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The im2col view of conv2d_forward, dout: (N, O, Ho, Wo):
        db[o]        = sum_{n,p,q} dout[n,o,p,q]
        dw[o,c,i,j]  = sum_{n,p,q} dout[n,o,p,q] x_pad[n,c,p*sh+i,q*sw+j]      (dout . windows)
        dx_pad[n,c,p*sh+i,q*sw+j] += sum_o dout[n,o,p,q] w[o,c,i,j]            (col2im: each offset (i, j)
    scatter-adds its share; an element in several windows sums them), and dx is dx_pad without the padding."""
    x_pad, w, (sh, sw), (ph, pw) = cache["x_pad"], cache["w"], cache["stride"], cache["padding"]
    kh, kw = w.shape[2:]
    ho, wo = dout.shape[2:]
    dw, dx_pad = np.zeros_like(w, np.result_type(dout, w)), np.zeros_like(x_pad, np.result_type(dout, x_pad))
    for i in range(kh):
        for j in range(kw):
            rows, cols = slice(i, i + sh * ho, sh), slice(j, j + sw * wo, sw)
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dout, x_pad[:, :, rows, cols])
            dx_pad[:, :, rows, cols] += np.einsum("nohw,oc->nchw", dout, w[:, :, i, j])
    dx = dx_pad[:, :, ph:dx_pad.shape[2] - ph, pw:dx_pad.shape[3] - pw]
    return dx, dw, dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None


def maxpool_forward(x: np.ndarray, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """out[n,c,p,q] = max_{i<KH, j<KW} x[n,c,p*sh+i,q*sw+j], x: (N, C, H, W); stride defaults to kernel_size."""
    (kh, kw) = _hw(kernel_size)
    (sh, sw) = (kh, kw) if stride is None else _hw(stride)
    # windows[n, c, p, q, i, j] = x[n, c, p*sh + i, q*sw + j]: a read-only view, no copy
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    out = win.max(axis=(4, 5))
    return out, {"x_shape": x.shape, "windows": win, "out": out, "stride": (sh, sw)}


def maxpool_backward(dout: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
    """The gradient routed to the arg-max of each window:
        dx[n,c,p*sh+i,q*sw+j] += dout[n,c,p,q] [x[n,c,p*sh+i,q*sw+j] == out[n,c,p,q]] / k[n,c,p,q]
    with k the number of maxima in the window (1 without ties; a tie splits evenly, as tg's Tensor.max,
    where PyTorch sends it all to one), and overlapping windows (stride < kernel) summing into dx."""
    win, out, (sh, sw) = cache["windows"], cache["out"], cache["stride"]
    hit = win == out[..., None, None]
    share = dout[..., None, None] * hit / hit.sum(axis=(4, 5), keepdims=True)
    ho, wo, kh, kw = win.shape[2:]
    dx = np.zeros(cache["x_shape"], np.result_type(dout, out))
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw] += share[:, :, :, :, i, j]
    return dx
