"""Gradient checkers: central finite differences, and gradcheck / gradgradcheck in the manner of
torch.autograd.gradcheck (full Jacobians, numerical against analytic, element by element)."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

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
    base = x.data.copy()
    columns = []
    for j in range(base.size):
        evals = []
        for step in (eps, -eps):
            moved = base.copy()
            moved.flat[j] += step
            args = list(inputs)
            args[i] = Tensor(moved, requires_grad=x.requires_grad)
            evals.append(np.concatenate([o.data.astype(np.float64).ravel() for o in _outputs(f, args)]))
        columns.append((evals[0] - evals[1]) / (2 * eps))
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
            seeds[live.index(n)].data.flat[k] = 1
            grads = autograd_grad([outs[m] for m in live], [inputs[i] for i in diff], seeds,
                                  retain_graph=True, allow_unused=True)
            for J, g in zip(jac, grads):
                if g is not None:
                    J[:, offset[n] + k] = g.data.ravel()
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
