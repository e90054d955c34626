"""Gradient checkers: central finite differences, and gradcheck / gradgradcheck in the manner of
torch.autograd.gradcheck (full Jacobians, numerical against analytic, element by element)."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engine import grad as autograd_grad
from .tensor import Tensor


class GradcheckError(RuntimeError):
    """A gradient check found analytic and numerical derivatives that disagree."""


def _outputs(f: Callable, inputs: Sequence[Tensor]) -> list[Tensor]:
    out = f(*inputs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    if not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(f"the checked function must return a Tensor (or a tuple of them), got {type(out).__name__}")
    return outs


def _numerical_jacobian(f: Callable, inputs: Sequence[Tensor], i: int, eps: float) -> np.ndarray:
    """J[j, k] = d out_flat[k] / d inputs[i]_flat[j] by central differences, error O(eps^2)."""
    x = inputs[i]
    base = x._data.copy()
    columns = []
    for j in range(base.size):
        evals = []
        for step in (eps, -eps):
            moved = base.copy()
            moved.flat[j] += step
            args = list(inputs)
            args[i] = Tensor(moved, requires_grad=x.requires_grad)
            evals.append(np.concatenate([o._data.astype(np.float64).ravel() for o in _outputs(f, args)]))
        columns.append((evals[0] - evals[1]) / (2 * eps))
    if not columns:  # an input with no elements: no rows (the outputs' size still sets the columns)
        return np.zeros((0, sum(o.size for o in _outputs(f, list(inputs)))))
    return np.array(columns).reshape(base.size, -1)


def numerical_grad(f: Callable, inputs: Sequence[Tensor], eps: float = 1e-6,
                   grad_output: np.ndarray | Sequence[np.ndarray] | None = None) -> list[np.ndarray | None]:
    """Central differences of sum(f(*inputs) * grad_output) (ones by default): one ndarray per
    input, shaped like it (None for non-floating inputs such as labels)."""
    outs = _outputs(f, inputs)
    gos = [np.ones(o.shape) for o in outs] if grad_output is None else \
        [np.asarray(getattr(g, "data", g), np.float64) for g in (grad_output if len(outs) > 1 else [grad_output])]
    flat_go = np.concatenate([np.broadcast_to(g, o.shape).ravel() for g, o in zip(gos, outs)])
    return [(_numerical_jacobian(f, inputs, i, eps) @ flat_go).reshape(x.shape) if x.dtype.kind == "f" else None
            for i, x in enumerate(inputs)]


def _analytic_jacobians(f: Callable, inputs: Sequence[Tensor], diff: list[int]) -> list[np.ndarray]:
    """J[j, k] from one backward per output element k (a one-hot grad_output)."""
    outs = _outputs(f, inputs)
    sizes = [o.size for o in outs]
    jac = [np.zeros((inputs[i].size, sum(sizes))) for i in diff]
    live = [n for n, o in enumerate(outs) if o.requires_grad]  # the others have zero derivative
    offset = np.concatenate([[0], np.cumsum(sizes)])
    for n in live:
        for k in range(sizes[n]):
            seeds = [Tensor(np.zeros(outs[m].shape, outs[m].dtype)) for m in live]
            seeds[live.index(n)]._data.flat[k] = 1
            grads = autograd_grad([outs[m] for m in live], [inputs[i] for i in diff], seeds,
                                  retain_graph=True, allow_unused=True)
            for J, g in zip(jac, grads):
                if g is not None:
                    J[:, offset[n] + k] = g._data.ravel()
    return jac


def gradcheck(f: Callable, inputs: Sequence[Tensor], eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """Compare the full analytic Jacobian of f at `inputs` (every input with requires_grad,
    every output element) with central differences: |analytic - numerical| <= atol + rtol |numerical|.
    On failure the error names the input, its element, the output element and both values."""
    inputs = list(inputs)
    diff = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input has requires_grad=True")
    if any(inputs[i].dtype != np.float64 for i in diff):
        warnings.warn("gradcheck: inputs are not float64; finite differences will be imprecise", stacklevel=2)
    outs = _outputs(f, inputs)
    for J, i in zip(_analytic_jacobians(f, inputs, diff), diff):
        N = _numerical_jacobian(f, inputs, i, eps)
        excess = np.abs(J - N) - (atol + rtol * np.abs(N))
        if excess.size and excess.max() > 0:
            j, k = np.unravel_index(np.argmax(excess), excess.shape)
            n = int(np.searchsorted(np.cumsum([o.size for o in outs]), k, side="right"))
            k_in_out = k - sum(o.size for o in outs[:n])
            where_out = np.unravel_index(k_in_out, outs[n].shape)
            msg = (f"gradcheck: Jacobian mismatch for input {i} (shape {inputs[i].shape}) at element "
                   f"{tuple(int(v) for v in np.unravel_index(j, inputs[i].shape))}, output {n} element "
                   f"{tuple(int(v) for v in where_out)}: numerical {N[j, k]!r} vs analytic {J[j, k]!r} "
                   f"(abs error {abs(J[j, k] - N[j, k]):.3g}, allowed {atol + rtol * abs(N[j, k]):.3g})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def gradgradcheck(f: Callable, inputs: Sequence[Tensor], grad_outputs: Sequence[Tensor] | None = None,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True,
                  seed: int = 0) -> bool:
    """gradcheck of the first derivatives: of x, v -> d(sum v * f(x))/dx (built with
    create_graph=True), against both x and v. grad_outputs default to seeded normal samples."""
    inputs = list(inputs)
    diff = [i for i, x in enumerate(inputs) if x.requires_grad]
    outs = [o for o in _outputs(f, inputs) if o.requires_grad]
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = [Tensor(rng.standard_normal(o.shape).astype(o.dtype), requires_grad=True) for o in outs]
    grad_outputs = list(grad_outputs) if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]
    n = len(inputs)

    def first_derivatives(*args: Tensor) -> tuple[Tensor, ...]:
        xs, vs = args[:n], args[n:]
        ys = [o for o in _outputs(f, xs) if o.requires_grad]
        gs = autograd_grad(ys, [xs[i] for i in diff], list(vs), create_graph=True, allow_unused=True)
        return tuple(g if g is not None else Tensor(np.zeros(xs[i].shape, xs[i].dtype)) for g, i in zip(gs, diff))

    return gradcheck(first_derivatives, inputs + grad_outputs, eps, atol, rtol, raise_exception)


# ------------------------------------------------------------------- autograd against formulas

@dataclass
class Row:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # max |a - b| / max |b|: the error relative to the array's scale
    ok: bool
    rtol: float


@dataclass
class Report:
    """One row per compared array; prints as a table; `.ok` when every row passes."""
    rows: list[Row]
    atol: float
    title: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def __getitem__(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [4])
        lines = [self.title] if self.title else []
        head = f"{'name':<{width}}  {'shape':<14} {'max abs error':>13} {'max rel error':>13} {'rtol':>7}  result"
        lines.append(head)
        lines += [f"{r.name:<{width}}  {str(r.shape):<14} {r.max_abs:>13.3e} {r.max_rel:>13.3e} {r.rtol:>7.0e}  "
                  f"{'pass' if r.ok else 'FAIL'}" for r in self.rows]
        lines.append(f"{'all pass' if self.ok else 'FAILED'} (pass: max abs error <= {self.atol:g} + "
                     "rtol * max |reference|)")
        return "\n".join(lines)


def _array(v: Any) -> np.ndarray:
    return np.asarray(v._data if isinstance(v, Tensor) else v)


def compare(autograd: dict[str, Any], reference: dict[str, Any], rtol: float = 1e-12, atol: float = 0.0,
            title: str = "") -> Report:
    """Compare arrays by name: per name the shape, max |a - b|, max |a - b| / max |b| and pass/fail
    (max |a - b| <= atol + rtol * max |b|). Both dicts must name the same arrays."""
    if set(autograd) != set(reference):
        raise ValueError(f"compare: names differ: only in autograd {sorted(set(autograd) - set(reference))}, "
                         f"only in reference {sorted(set(reference) - set(autograd))}")
    rows = []
    for name, a in autograd.items():
        a, b = _array(a).astype(np.float64), _array(reference[name]).astype(np.float64)
        if a.shape != b.shape:
            rows.append(Row(name, a.shape, np.inf, np.inf, False, rtol))
            continue
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        rel = err / scale if scale > 0 else (0.0 if err == 0 else np.inf)
        rows.append(Row(name, a.shape, err, rel, bool(err <= atol + rtol * scale), rtol))  # NaN fails
    return Report(rows, atol, title)


def audit_batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray, eps: float = 1e-5,
                     fd_eps: float = 1e-5) -> Report:
    """Node by node through the training-mode batch norm graph (SEED.md section 2): for every
    intermediate (x_hat, std, var, xc, mu, x, gamma, beta) compare autograd's gradient of that tensor
    (kept with retain_grad) with the staged hand-derived backward and with central differences
    that perturb the node and recompute only what lies downstream. A wrong step is thus located,
    not just detected. Inputs are float64 arrays: x (N, C, ...), gamma and beta (C,), dy like x.
    The report's rows are `node: autograd vs staged` and `node: autograd vs finite diff`. The
    finite-difference step is fd_eps times the scale on which y varies with each node (std for
    x, xc, mu; var + eps for var), so data of any magnitude is audited alike. Tolerances assume a
    well-conditioned case: for a batch of 2 with var >> eps, dx is a difference of terms var/eps
    times larger than itself, and every method loses digits there."""
    from . import analytic
    from .nn.functional import STAGES, _affine, _channel, standardize
    axes = (0,) + tuple(range(2, x.ndim))
    xt, gt, bt = (Tensor(np.asarray(v, np.float64), requires_grad=True) for v in (x, gamma, beta))

    def run(given: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        s = standardize(given.get("x", xt), axes, eps, given)
        return s, _affine(s["x_hat"], _channel(given.get("gamma", gt), x.ndim), _channel(given.get("beta", bt), x.ndim))

    s, y = run({})
    for name in STAGES:
        s[name].retain_grad()
    (y * Tensor(dy)).sum().backward()
    nodes = {**{k: s[k] for k in STAGES}, "x": xt, "gamma": gt, "beta": bt}
    autograd = {k: t.grad._data for k, t in nodes.items()}
    staged = analytic.batchnorm_backward_staged(dy, analytic.batchnorm_forward(x, gamma, beta, eps, axes)[1])
    staged = {k: np.reshape(staged[k], autograd[k].shape) for k in autograd}
    # the scale on which y varies with each node, per channel: x, xc and mu move y on the scale of
    # std, var on the scale of var + eps; finite differences step a fixed fraction of it
    std = s["std"]._data
    scales = {"x": std, "xc": std, "mu": std, "std": std, "var": std * std,
              "gamma": np.maximum(np.abs(gamma), 1)}
    numeric = {}
    for name, t in nodes.items():  # d(sum y * dy)/d node, with the node's value perturbed
        base, grad = t._data, np.zeros(t.shape)
        step = fd_eps * np.broadcast_to(scales.get(name, 1.0), base.shape)
        for j in range(base.size):
            moved = [base.copy(), base.copy()]
            moved[0].flat[j] += step.flat[j]
            moved[1].flat[j] -= step.flat[j]
            plus, minus = (float(np.sum(run({name: Tensor(v)})[1]._data * dy)) for v in moved)
            grad.flat[j] = (plus - minus) / (2 * step.flat[j])
        numeric[name] = grad
    order = ["x_hat", "std", "var", "xc", "mu", "x", "gamma", "beta"]
    vs_staged = compare({f"{k}: autograd vs staged": autograd[k] for k in order},
                        {f"{k}: autograd vs staged": staged[k] for k in order}, rtol=1e-12)
    vs_fd = compare({f"{k}: autograd vs finite diff": autograd[k] for k in order},
                    {f"{k}: autograd vs finite diff": numeric[k] for k in order}, rtol=1e-6)
    rows = [r for pair in zip(vs_staged.rows, vs_fd.rows) for r in pair]
    return Report(rows, 0.0, f"node-by-node audit of batch norm, x {x.shape} float64")
