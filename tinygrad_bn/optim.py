"""Optimizers (docs/course.md section 2: gamma and beta are updated like W, by gradient descent, momentum,
RMSprop or Adam; AdamW as well). Each update is PyTorch's, written out; parameters are updated in
place, and a parameter without a gradient is skipped, as PyTorch does. weight_decay is PyTorch's: an
L2 term added to the gradient (g + wd w) everywhere but AdamW, whose decay is decoupled."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .engine import ShapeError
from .tensor import Tensor


def _check_hyper(optimizer: str, **values: float) -> None:
    """Hyper-parameters are real numbers >= 0 (PyTorch rejects the same values)."""
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise TypeError(f"{optimizer}: {k} must be a number, got {v!r}")
        if not v >= 0:
            raise ValueError(f"{optimizer}: invalid {k} {v} (must be >= 0)")


class Optimizer:
    def __init__(self, params: Iterable[Tensor], lr: float, weight_decay: float = 0.0):
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
        _check_hyper(name, **{"learning rate": lr, "weight_decay": weight_decay})
        self.lr, self.weight_decay = lr, weight_decay
        self.state: dict[int, dict] = {}  # per parameter index: its moving averages

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        # check every gradient first: a bad one on parameter 2 must not leave parameters 0 and 1 (and their
        # moments) already updated. .grad may have been set by hand, so it is checked here whatever set it
        name = type(self).__name__
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            if not isinstance(g, Tensor):
                raise TypeError(f"{name}.step: parameter {i} has a .grad of type {type(g).__name__}, not a Tensor; "
                                "assign a Tensor (e.g. tg.Tensor(array)) or None")
            if g.shape != p.shape:
                raise ShapeError(f"{name}.step: parameter {i} has shape {p.shape} but its .grad has shape {g.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"{name}.step: parameter {i} is {p.dtype} but its .grad is {g.dtype}; "
                                f"cast the gradient, e.g. p.grad = p.grad.cast(p.dtype)")
        for i, p in enumerate(self.params):
            if p.grad is not None:
                w = p.writable_data()
                self._update(w, self._decay(w, p.grad._data), self.state.setdefault(i, {}))

    def _decay(self, w: np.ndarray, g: np.ndarray) -> np.ndarray:
        """PyTorch's (coupled) weight decay, the gradient of wd |w|^2 / 2 added to the loss's: g + wd w."""
        return g + self.weight_decay * w if self.weight_decay else g

    def _update(self, w: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # the hyper-parameters (beyond lr) and the per-parameter state keys each optimizer saves
    hyper: tuple[str, ...] = ()
    state_keys: tuple[str, ...] = ()

    def _group(self) -> dict[str, Any]:
        return {"lr": self.lr, **{k: getattr(self, k) for k in self.hyper}}

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's layout: {"state": {index: {name: array or step count}}, "param_groups": [{"lr": ...,
        hyper-parameters..., "params": [0, 1, ...]}]}, every array a copy."""
        state = {i: {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in st.items()}
                 for i, st in self.state.items()}
        return {"state": state, "param_groups": [{**self._group(), "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what state_dict() returned. Every entry is checked (and each moment cast to its parameter's
        dtype) before anything is assigned, so a bad entry is an error naming it and changes nothing."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{name}: expected the dict state_dict() returns, got {type(state_dict).__name__}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise KeyError(f"{name}: missing {key!r}; pass the dict state_dict() returns")
        groups, saved = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != 1 or not isinstance(groups[0], dict):
            raise ValueError(f"{name}: loaded state dict has a different number of parameter groups "
                             f"(expected a list of one dict, got {groups!r:.80})")
        group = dict(groups[0])
        n = len(group.pop("params", []))
        if n != len(self.params):
            raise ValueError(f"{name}: loaded state dict has {n} parameters, this optimizer has {len(self.params)}")
        want = set(self._group())
        if set(group) != want:
            raise ValueError(f"{name}: param_groups[0] has keys {sorted(group)}, expected {sorted(want)}")
        try:  # a throwaway optimizer built from the loaded values runs the constructor's checks of each of them
            probe = type(self)([Tensor(np.zeros(1), requires_grad=True)], **group)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: param_groups[0]: {e}") from None
        if not isinstance(saved, dict):
            raise TypeError(f"{name}: 'state' must be a dict index -> dict, got {type(saved).__name__}")
        new: dict[int, dict] = {}
        for i, st in saved.items():
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.params):
                raise ValueError(f"{name}: state key {i!r} is not a parameter index in [0, {len(self.params)})")
            if not isinstance(st, dict) or set(st) not in (set(), set(self.state_keys)):  # {}: no moments yet
                raise ValueError(f"{name}: state {i} must have the keys {list(self.state_keys)}, got "
                                 f"{sorted(st) if isinstance(st, dict) else type(st).__name__}")
            p, new[int(i)] = self.params[i], {}
            for k, v in st.items():
                if k == "t":  # Adam's step count
                    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                        raise ValueError(f"{name}: state {i} 't' must be an int >= 1 (the step count), got {v!r}")
                    new[int(i)][k] = int(v)
                    continue
                a = np.asarray(v._data if isinstance(v, Tensor) else v)
                if a.shape != p.shape or a.dtype.kind not in "iuf":
                    kind = ShapeError if a.shape != p.shape else ValueError
                    raise kind(f"{name}: state {i} {k!r} must be a numeric array of parameter {i}'s shape "
                               f"{p.shape}, got {a.dtype} {a.shape}")
                new[int(i)][k] = a.astype(p.dtype, copy=True)
        self.state = new
        for k in group:  # the values as the constructor stored them (betas a tuple of floats, nesterov a bool)
            setattr(self, k, getattr(probe, k))


class SGD(Optimizer):
    """v = momentum v + g (v = g at the first step; dampening 0); w -= lr v, or with nesterov
    w -= lr (g + momentum v). momentum=0: w -= lr g."""
    hyper, state_keys = ("momentum", "weight_decay", "nesterov"), ("v",)

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, lr, weight_decay)
        _check_hyper("SGD", momentum=momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD: nesterov must be a bool, got {nesterov!r}")
        if nesterov and not momentum > 0:  # PyTorch's rule (our dampening is always 0)
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum {momentum}")
        self.momentum, self.nesterov = momentum, bool(nesterov)

    def _update(self, w, g, state):
        if self.momentum:
            if "v" not in state:
                state["v"] = g.copy()
            else:
                state["v"] *= self.momentum
                state["v"] += g
            g = g + self.momentum * state["v"] if self.nesterov else state["v"]
        w -= self.lr * g


class RMSprop(Optimizer):
    """s = alpha s + (1 - alpha) g^2 (s starts at 0); w -= lr g / (sqrt(s) + eps)."""
    hyper, state_keys = ("alpha", "eps", "weight_decay"), ("s",)

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
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
    hyper, state_keys = ("betas", "eps", "weight_decay"), ("m", "v", "t")

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        name = type(self).__name__
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        _check_hyper(name, eps=eps, beta1=betas[0], beta2=betas[1])
        if not (betas[0] < 1 and betas[1] < 1):
            raise ValueError(f"{name}: betas must be in [0, 1), got {tuple(betas)}")
        self.betas, self.eps = (float(betas[0]), float(betas[1])), eps

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


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): w *= 1 - lr wd, then Adam's update of w
    with the gradient as it is (no L2 term added to it)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)

    def _decay(self, w: np.ndarray, g: np.ndarray) -> np.ndarray:
        w *= 1 - self.lr * self.weight_decay
        return g
