"""Optimizers (SEED.md section 2: gamma and beta are updated like W, by gradient descent, momentum,
RMSprop or Adam). Each update is PyTorch's, written out; parameters are updated in place, and a
parameter without a gradient is skipped, as PyTorch does."""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .tensor import Tensor


def _check_hyper(optimizer: str, **values: float) -> None:
    """Hyper-parameters are real numbers >= 0 (PyTorch rejects the same values)."""
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{optimizer}: {k} must be a number, got {v!r}")
        if not v >= 0:
            raise ValueError(f"{optimizer}: invalid {k} {v} (must be >= 0)")


class Optimizer:
    def __init__(self, params: Iterable[Tensor], lr: float):
        name = type(self).__name__
        if isinstance(params, Tensor) or hasattr(params, "parameters"):
            raise TypeError(f"{name} takes an iterable of Tensors (e.g. model.parameters() or [w]), "
                            f"got a {type(params).__name__}")
        self.params = list(params)
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{name}: a parameter appears twice in the list "
                             "(a duplicate would be updated twice per step)")
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: parameter {i} is a {type(p).__name__}, not a Tensor")
            if not p.requires_grad:
                raise ValueError(f"{type(self).__name__}: parameter {i} {p.shape} does not require grad")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: parameter {i} {p.shape} is not a leaf (it was computed "
                                 "from other tensors); optimize the leaves it came from")
        _check_hyper(name, **{"learning rate": lr})
        self.lr = lr
        self.state: dict[int, dict] = {}  # per parameter index: its moving averages

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for i, p in enumerate(self.params):  # check every gradient first: a bad one updates nothing
            if p.grad is not None and p.grad.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: parameter {i} has shape {p.shape} "
                                 f"but its .grad has shape {p.grad.shape}")
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(p.writable_data(), p.grad.data, self.state.setdefault(i, {}))

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """v = momentum v + g (v = g at the first step); w -= lr v. momentum=0: w -= lr g."""
    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        _check_hyper("SGD", momentum=momentum, weight_decay=weight_decay)
        self.momentum, self.weight_decay = momentum, weight_decay

    def _update(self, w, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            if "v" not in state:
                state["v"] = g.copy()
            else:
                state["v"] *= self.momentum
                state["v"] += g
            g = state["v"]
        w -= self.lr * g


class RMSprop(Optimizer):
    """s = alpha s + (1 - alpha) g^2 (s starts at 0); w -= lr g / (sqrt(s) + eps)."""
    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr)
        _check_hyper("RMSprop", alpha=alpha, eps=eps)
        self.alpha, self.eps = alpha, eps

    def _update(self, w, g, state):
        s = state.setdefault("s", np.zeros_like(w))
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        w -= self.lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; with bias corrections c1 = 1 - b1^t,
    c2 = 1 - b2^t: w -= (lr / c1) m / (sqrt(v) / sqrt(c2) + eps), PyTorch's arrangement of
    w -= lr m_hat / (sqrt(v_hat) + eps)."""
    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, lr)
        _check_hyper("Adam", eps=eps, beta1=betas[0], beta2=betas[1])
        if not (betas[0] < 1 and betas[1] < 1):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        self.betas, self.eps = betas, eps

    def _update(self, w, g, state):
        b1, b2 = self.betas
        m, v = state.setdefault("m", np.zeros_like(w)), state.setdefault("v", np.zeros_like(w))
        state["t"] = t = state.get("t", 0) + 1
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps  # Python floats keep w's dtype
        w -= (self.lr / (1 - b1 ** t)) * m / denom
