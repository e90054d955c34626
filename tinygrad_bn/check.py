"""Gradient checkers: central finite differences, and gradcheck / gradgradcheck in the manner of
torch.autograd.gradcheck (full Jacobians, numerical against analytic, element by element)."""
from __future__ import annotations

import html
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import _toposort, enable_grad, no_grad
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


def _fast_gradcheck(f: Callable, inputs: list[Tensor], diff: list[int], eps: float, atol: float, rtol: float,
                    seed: int) -> str | None:
    """PyTorch's fast mode: per input i and output n, with random unit vectors v (over input i)
    and u (over output n), u^T J v from one backward (the vector-Jacobian product J^T u, dotted
    with v) against the central difference of u^T f along v: 2 forwards per input and one
    backward per output instead of one per element. As PyTorch, u and v are uniform in [0, 1)
    then normalized, and atol is scaled by sum(u) sum(v) (= u^T 1 v: the element-wise atol, projected).
    The failure message, or None."""
    rng = np.random.default_rng(seed)
    outs = _outputs(f, inputs)

    def unit(shape: tuple[int, ...]) -> np.ndarray:
        r = rng.random(shape)
        return r / max(float(np.linalg.norm(r)), 1e-300)
    us = [unit(o.shape) for o in outs]
    vs = {i: unit(inputs[i].shape) for i in diff}
    for n, (o, u) in enumerate(zip(outs, us)):
        if not o.requires_grad:  # as PyTorch: an output no input reaches (or an integer one) is not checked
            continue
        vjp = autograd_grad(o, [inputs[i] for i in diff], Tensor(u.astype(o.dtype)), retain_graph=True,
                            allow_unused=True)
        for i, g in zip(diff, vjp):
            analytic = float(np.sum(g._data * vs[i])) if g is not None else 0.0
            sides = []
            for step in (eps, -eps):
                args = list(inputs)
                args[i] = Tensor((inputs[i]._data + step * vs[i]).astype(inputs[i].dtype), requires_grad=True)
                sides.append(float(np.sum(_outputs(f, args)[n]._data.astype(np.float64) * u)))
            numerical = (sides[0] - sides[1]) / (2 * eps)
            allowed = atol * float(u.sum() * vs[i].sum()) + rtol * abs(numerical)
            if not abs(analytic - numerical) <= allowed:
                return (f"gradcheck (fast mode): the projection u^T J v for input {i} (shape {inputs[i].shape}) and "
                        f"output {n} (shape {o.shape}) disagrees: numerical {numerical!r} vs analytic {analytic!r} "
                        f"(abs error {abs(analytic - numerical):.3g}, allowed {allowed:.3g}); "
                        "run with fast_mode=False to name the element")
    return None


def gradcheck(f: Callable, inputs: Sequence[Tensor], eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, fast_mode: bool = False, seed: int = 0) -> bool:
    """Compare the full analytic Jacobian of f at `inputs` (every input with requires_grad,
    every output element) with central differences: |analytic - numerical| <= atol + rtol |numerical|.
    On failure the error names the input, its element, the output element and both values.
    fast_mode=True compares random projections u^T J v instead (seeded by `seed`), which checks a
    (256, 512) layer in a fraction of a second; the error then names the input and output."""
    inputs = list(inputs)
    diff = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input has requires_grad=True")
    if any(inputs[i].dtype != np.float64 for i in diff):
        warnings.warn("gradcheck: inputs are not float64; finite differences will be imprecise", stacklevel=2)
    outs = _outputs(f, inputs)
    if not any(o.requires_grad for o in outs):  # as PyTorch: then the function must not depend on the inputs
        moved = [i for i in diff if np.any(_numerical_jacobian(f, inputs, i, eps))]
        if moved and raise_exception:
            raise GradcheckError(f"gradcheck: no output requires grad, yet the outputs change with input {moved[0]}: "
                                 "the function detached something it depends on")
        return not moved
    if fast_mode:
        msg = _fast_gradcheck(f, inputs, diff, eps, atol, rtol, seed)
        if msg is not None and raise_exception:
            raise GradcheckError(msg)
        return msg is None
    checked = np.concatenate([np.full(o.size, o.requires_grad) for o in outs])  # as PyTorch: differentiable outputs
    for J, i in zip(_analytic_jacobians(f, inputs, diff), diff):
        N = _numerical_jacobian(f, inputs, i, eps)
        excess = np.where(checked, np.abs(J - N) - (atol + rtol * np.abs(N)), -np.inf)
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


def gradgradcheck(f: Callable, inputs: Sequence[Tensor],
                  grad_outputs: Tensor | list[Tensor] | tuple[Tensor, ...] | None = None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True, seed: int = 0,
                  fast_mode: bool = False) -> bool:
    """gradcheck of the first derivatives: of x, v -> d(sum v * f(x))/dx (built with
    create_graph=True), against both x and v. grad_outputs default to seeded normal samples."""
    inputs = list(inputs)
    diff = [i for i, x in enumerate(inputs) if x.requires_grad]
    outs = [o for o in _outputs(f, inputs) if o.requires_grad]
    vs: list[Tensor]
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        vs = [Tensor(rng.standard_normal(o.shape).astype(o.dtype), requires_grad=True) for o in outs]
    elif isinstance(grad_outputs, (list, tuple)):
        vs = list(grad_outputs)
    else:
        vs = [grad_outputs]
    n = len(inputs)

    def first_derivatives(*args: Tensor) -> tuple[Tensor, ...]:
        xs, vs = args[:n], args[n:]
        ys = [o for o in _outputs(f, xs) if o.requires_grad]
        gs = autograd_grad(ys, [xs[i] for i in diff], list(vs), create_graph=True, allow_unused=True)
        return tuple(g if g is not None else Tensor(np.zeros(xs[i].shape, xs[i].dtype)) for g, i in zip(gs, diff))

    return gradcheck(first_derivatives, inputs + vs, eps, atol, rtol, raise_exception, fast_mode, seed)


# ------------------------------------------------------------------- autograd against formulas

@dataclass
class Row:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # max |a - b| / max |b|: the error relative to the array's scale
    ok: bool
    rtol: float


@dataclass(repr=False)
class Report:
    """One row per compared array; prints as a table (also its repr, as in a REPL); `.ok` when
    every row passes."""
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
        lines.append(self._footer())
        return "\n".join(lines)

    def _footer(self) -> str:
        return f"{'all pass' if self.ok else 'FAILED'} (pass: max abs error <= {self.atol:g} + rtol * max |reference|)"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return _html_table(self.title, ["name", "shape", "max abs error", "max rel error", "rtol", "result"],
                           [([r.name, str(r.shape), f"{r.max_abs:.3e}", f"{r.max_rel:.3e}", f"{r.rtol:.0e}",
                              "pass" if r.ok else "FAIL"], r.ok) for r in self.rows], self._footer())


def _html_table(title: str, header: list[str], rows: list[tuple[list[str], bool]], footer: str) -> str:
    """A report as an HTML table for Jupyter: each row green (pass) or red (FAIL)."""
    def cells(values: list[str], tag: str) -> str:
        return "".join(f"<{tag} style='padding:2px 8px;text-align:left'>{html.escape(v)}</{tag}>" for v in values)
    body = "".join(f"<tr style='background:{'#e3f6e3' if ok else '#ffd9d6'}'>{cells(values, 'td')}</tr>"
                   for values, ok in rows)
    caption = f"<caption style='text-align:left'>{html.escape(title)}</caption>" if title else ""
    return (f"<table style='font-family:monospace;border-collapse:collapse'>{caption}<tr>{cells(header, 'th')}</tr>"
            f"{body}</table><p style='font-family:monospace'>{html.escape(footer).replace(chr(10), '<br>')}</p>")


def _array(v: Any) -> np.ndarray:
    return np.asarray(v._data if isinstance(v, Tensor) else v)


_DEFAULTS = {8: (1e-10, 1e-6, 1e-6), 4: (1e-4, 1e-2, 1e-3), 2: (1e-2, 1e-1, 1e-2)}  # by itemsize: rtol, fd_rtol, fd_eps


def compare(autograd: dict[str, Any], reference: dict[str, Any], rtol: float | None = None, atol: float | None = None,
            title: str = "") -> Report:
    """Compare arrays by name: per name the shape, max |a - b|, max |a - b| / max |b| and pass/fail
    (max |a - b| <= atol + rtol * max |b|). Both dicts must name the same arrays. rtol defaults to
    the precision of the coarser of the two arrays (float64 1e-10, float32 1e-4, float16 1e-2), so
    a correct float32 gradient passes; atol to 0."""
    if set(autograd) != set(reference):
        raise ValueError(f"compare: names differ: only in autograd {sorted(set(autograd) - set(reference))}, "
                         f"only in reference {sorted(set(reference) - set(autograd))}")
    atol = 0.0 if atol is None else atol
    rows = []
    for name, a in autograd.items():
        a, b = _array(a), _array(reference[name])
        sizes = [x.dtype.itemsize for x in (a, b) if x.dtype.kind == "f"]
        tol = rtol if rtol is not None else _DEFAULTS.get(min(sizes, default=8), _DEFAULTS[8])[0]
        a, b = a.astype(np.float64), b.astype(np.float64)
        if a.shape != b.shape:
            rows.append(Row(name, a.shape, np.inf, np.inf, False, tol))
            continue
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        rel = err / scale if scale > 0 else (0.0 if err == 0 else np.inf)
        rows.append(Row(name, a.shape, err, rel, bool(err <= atol + tol * scale), tol))  # NaN fails
    return Report(rows, atol, title)


# ------------------------------------------------------------------- auditing a hand derivation

class _Marks(threading.local):
    """The audit in progress on this thread: its first run records the marked nodes; each
    finite-difference run swaps one node's value for a perturbed one."""
    recording: dict[str, Tensor] | None = None
    swap: tuple[str, Tensor] | None = None
    swapped: bool = False


_marks = _Marks()


def node(name: str, t: Tensor) -> Tensor:
    """Mark `t` as the intermediate `name` of a function audited by tg.check.audit. Returns t (outside
    an audit that is all it does); in an audit's finite-difference run, the perturbed value instead."""
    if _marks.recording is not None:
        if not isinstance(t, Tensor):
            raise TypeError(f"check.node({name!r}, ...) marks a Tensor, got {type(t).__name__}")
        if name in _marks.recording:
            raise ValueError(f"check.node: the name {name!r} marks two tensors; each node needs its own name")
        _marks.recording[name] = t
        if t.name is None and t._ctx is not None:  # an intermediate of the audit's own run: label it for draw()
            t.name = name
    elif _marks.swap is not None and _marks.swap[0] == name:
        _marks.swapped = True
        return _marks.swap[1]
    return t


@dataclass
class AuditRow:
    """One audited node: autograd against the hand value, and against central differences of the
    loss with respect to that node alone (on `fd_elements` of its elements). `fd_inconclusive`:
    the differences' own error bar (estimates at steps h, h/4, ... disagreeing: round-off or a kink)
    was wider than the tolerance, so they could not confirm autograd there."""
    name: str
    shape: tuple[int, ...]
    vs_hand: Row
    vs_fd: Row
    fd_elements: int
    position: int  # in the forward's topological order: larger is nearer the loss
    downstream: frozenset = field(default=frozenset(), repr=False)  # audited nodes between it and the loss
    fd_inconclusive: bool = False
    tensor: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.vs_hand.ok and self.vs_fd.ok

    @property
    def max_rel(self) -> float:
        return max(self.vs_hand.max_rel, self.vs_fd.max_rel)


@dataclass(repr=False)
class Audit:
    """The node-by-node audit of a hand derivation (check.audit): rows from the loss back to the
    inputs; `.ok`; `.first_wrong`; prints as a table (also its repr); `.draw()` overlays it on the
    graph."""
    rows: list[AuditRow]
    loss: Tensor = field(repr=False)
    title: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def wrong(self) -> list[str]:
        """The failing nodes with no failing node between them and the loss, nearest the loss first:
        where a derivation goes wrong (the failing nodes before them inherit it). More than one are
        independent slips on separate paths."""
        bad = {r.name for r in self.rows if not r.ok}
        return [r.name for r in self.rows if r.name in bad and not (r.downstream & bad)]

    @property
    def first_wrong(self) -> str | None:
        """Where the derivation first goes wrong: the failing node nearest the loss (of `wrong`)."""
        return self.wrong[0] if self.wrong else None

    def __repr__(self) -> str:
        return str(self)

    def __getitem__(self, name: str) -> AuditRow:
        return next(r for r in self.rows if r.name == name)

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.rows] + [4])
        head = (f"{'node':<{w}}  {'shape':<14} {'hand vs autograd':^25}  {'autograd vs finite diff':^34}  result\n"
                f"{'':<{w}}  {'':<14} {'max abs':>12} {'max rel':>12}  {'max abs':>12} {'max rel':>12} {'elems':>8}")
        lines = ([self.title] if self.title else []) + [head]
        for r in self.rows:
            lines.append(f"{r.name:<{w}}  {str(r.shape):<14} {r.vs_hand.max_abs:>12.3e} {r.vs_hand.max_rel:>12.3e}  "
                         f"{r.vs_fd.max_abs:>12.3e} {r.vs_fd.max_rel:>12.3e} "
                         f"{f'{r.fd_elements}/{int(np.prod(r.shape))}':>8}  {self._result(r)}")
        lines += self._footer()
        return "\n".join(lines)

    @staticmethod
    def _result(r: AuditRow) -> str:
        failed = [k for k, c in (("hand", r.vs_hand), ("finite diff", r.vs_fd)) if not c.ok]
        return f"FAIL: {' and '.join(failed)}" if failed else "pass (finite diff inconclusive)" \
            if r.fd_inconclusive else "pass"

    def _footer(self) -> list[str]:
        def tols(rows: list[Row]) -> str:
            return " / ".join(f"{t:g}" for t in sorted({r.rtol for r in rows})) or "-"
        lines = [f"pass: max abs error <= {tols([r.vs_hand for r in self.rows])} (hand) or "
                 f"{tols([r.vs_fd for r in self.rows])} (finite diff) times the larger max |value|",
                 "      (plus a round-off floor)"]
        vague = [r.name for r in self.rows if r.fd_inconclusive]
        if vague:
            lines += [f"finite differences inconclusive at {vague}: their own error bar",
                      "(estimates at steps h, h/4, ... disagree) exceeds the tolerance: round-off",
                      "(a float32 audit: run it in float64) or a kink of the loss next to the node's value"]
        wrong = self.wrong
        lines.append("all pass" if not wrong else
                     f"FAILED: first wrong at {wrong[0]!r} (the failing node nearest the loss; those before it are "
                     "right)" if len(wrong) == 1 else
                     f"FAILED: first wrong at {wrong[0]!r}, and independently at {wrong[1:]}\n(slips on separate "
                     "paths: each is the failing node nearest the loss on its path)")
        return lines

    def _repr_html_(self) -> str:
        header = ["node", "shape", "hand: max abs", "hand: max rel", "finite diff: max abs", "finite diff: max rel",
                  "elements", "result"]
        return _html_table(self.title, header, [([r.name, str(r.shape), f"{r.vs_hand.max_abs:.3e}",
                                                 f"{r.vs_hand.max_rel:.3e}", f"{r.vs_fd.max_abs:.3e}",
                                                 f"{r.vs_fd.max_rel:.3e}", f"{r.fd_elements}/{int(np.prod(r.shape))}",
                                                 self._result(r)], r.ok) for r in self.rows], "\n".join(self._footer()))

    def draw(self, **options: Any) -> Any:
        """The loss's graph with every audited node green (pass) or red (FAIL), its error in the label."""
        from .viz import draw
        return draw(self.loss, compare=self, **options)




def _check_row(name: str, a: np.ndarray, b: np.ndarray, rtol: float, atol: float,
               allowance: np.ndarray | float = 0.0) -> Row:
    """max |a - b| - allowance <= atol + rtol * max(max |a|, max |b|): symmetric, and NaN fails."""
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    excess = float(np.max(np.abs(a - b) - allowance)) if a.size else 0.0
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b)))) if a.size else 0.0
    rel = err / scale if scale > 0 else (0.0 if err == 0 else np.inf)
    return Row(name, a.shape, err, rel, bool(excess <= atol + rtol * scale), rtol)


def _downstream(loss: Tensor, nodes: dict[str, Tensor]) -> dict[str, frozenset]:
    """For each audited node, the audited nodes on some path from it to the loss."""
    order = _toposort([loss])
    consumers: dict[Tensor, list[Tensor]] = {}
    for t in order:
        for p in (t._ctx.parents or ()) if t._ctx is not None else ():
            consumers.setdefault(p, []).append(t)
    name_of = {t: k for k, t in nodes.items()}
    reach: dict[Tensor, frozenset] = {}
    for t in reversed(order):  # consumers first
        reach[t] = frozenset().union(*(reach[c] | ({name_of[c]} if c in name_of else set())
                                       for c in consumers.get(t, [])))
    return {k: reach.get(t, frozenset()) for k, t in nodes.items()}


def _start(f: Callable, args: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """The audit's first run of f: its loss and the nodes it marked."""
    if _marks.recording is not None or _marks.swap is not None:
        raise RuntimeError("audit: called inside a function under audit; audits do not nest")
    _marks.recording = {}
    try:
        loss = f(*args)
    finally:
        marked, _marks.recording = _marks.recording, None
    if not isinstance(loss, Tensor) or loss.size != 1 or loss.dtype.kind != "f":
        raise TypeError(f"audit: f must return a scalar floating Tensor (the loss), got "
                        f"{getattr(loss, 'shape', type(loss).__name__)}")
    if not np.isfinite(loss._data).all():
        raise ValueError(f"audit: the loss is {float(loss._data)}: nothing to differentiate (find where it stops "
                         "being finite, e.g. with tg.detect_anomaly())")
    if loss.name is None and loss._ctx is not None:
        loss.name = "loss"
    return loss, marked


def _hand_values(derivation: Callable | dict, values: dict[str, np.ndarray], nodes: dict[str, Tensor],
                 ) -> dict[str, np.ndarray]:
    """The derivation's gradients, checked: known names, no None, the node's shape (or a scalar)."""
    given = derivation(values) if callable(derivation) else derivation
    unknown = set(given) - set(nodes)
    if unknown:
        raise ValueError(f"audit: the derivation gives {sorted(unknown)}, which name no node; the nodes are "
                         f"{list(nodes)}")
    hand = {}
    for k, v in given.items():
        if v is None:
            raise ValueError(f"audit: the derivation gives None for {k!r}; leave out the nodes it does not derive")
        h = _array(v).astype(np.float64)
        if h.shape != nodes[k].shape and h.size != 1:
            raise ValueError(f"audit: the derivation gives {k!r} with shape {h.shape}, the node has shape "
                             f"{nodes[k].shape}")
        if not nodes[k].requires_grad:
            raise ValueError(f"audit: node {k!r} does not require grad: no gradient flows to it")
        hand[k] = np.broadcast_to(h, nodes[k].shape)
    return hand


def audit(f: Callable, inputs: Sequence[Tensor], derivation: Callable | dict, rtol: float | None = None,
          atol: float | None = None, fd_eps: float | None = None, fd_elements: int = 64, seed: int = 0,
          title: str = "") -> Audit:
    """Audit a hand derivation node by node. `f(*inputs)` returns a scalar loss and marks its
    intermediates with check.node(name, t); `derivation({name: forward value})` (the marked nodes
    and the inputs, an input named by its Tensor name, else input0, input1, ...) returns the hand
    dloss/dname for any of those names (a dict is accepted too). Per name: autograd against the
    hand value (rtol: 1e-10 in float64, 1e-4 in float32, by the node's and the loss's precision),
    and autograd against central differences of the loss with respect to that node alone (f re-run
    with that node's value perturbed, so only what depends on it changes; up to `fd_elements`
    elements per node, seeded; element j stepped by fd_eps * max(|v_j|, the node's rms), never
    across 0, then by steps 4, 16, ... 4096 times smaller until one agrees: two estimates' gap is the
    error bar, and a pass that needs it says "inconclusive"). f is
    re-run many times: keep it deterministic and free of side effects (a BatchNorm module in
    training mode updates its running statistics on every call)."""
    inputs = list(inputs)
    names = [x.name or f"input{i}" for i, x in enumerate(inputs)]
    if len(set(names)) < len(names):
        raise ValueError(f"audit: two inputs share a name in {names}; name them apart")
    args = [Tensor(x._data.copy(), requires_grad=True, name=n) if x.dtype.kind == "f" else x
            for x, n in zip(inputs, names)]
    loss, marked = _start(f, args)
    clash = set(marked) & set(names)
    if clash:
        raise ValueError(f"audit: node names {sorted(clash)} are also input names")
    nodes = {**marked, **{n: a for n, a in zip(names, args) if a.dtype.kind == "f"}}
    values = {**{k: t._data.copy() for k, t in nodes.items()}, **{n: a._data.copy() for n, a in zip(names, args)}}
    hand = _hand_values(derivation, {k: v.copy() for k, v in values.items()}, nodes)
    grads = autograd_grad(loss, [nodes[k] for k in hand], retain_graph=True, allow_unused=True)
    autograd = {k: np.zeros(nodes[k].shape) if g is None else g._data.astype(np.float64) for k, g in zip(hand, grads)}
    position = {t: i for i, t in enumerate(_toposort([loss]))}
    downstream = _downstream(loss, {k: nodes[k] for k in hand})
    loss0 = float(loss._data)
    rms = {k: float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) if v.size else 0.0 for k, v in values.items()
           if v.dtype.kind == "f"}
    floor = 1e-3 * max(list(rms.values()) + [0.0]) or 1.0  # a node of value ~0 (a centred mean) steps on this
    scale = {k: max(rms[k], floor) for k in hand}
    # the size gradients reach downstream of each node, in its units: |dL/dv_j| s_j / s_k, the loss
    # itself left out (its |L| may be mostly a constant no gradient sees); round-off scales with it
    reach = {k: max([float(np.max(np.abs(autograd[j]), initial=0)) * scale[j] / scale[k]
                     for j in downstream[k] if nodes[j] is not loss] + [0.0]) for k in hand}
    rng = np.random.default_rng(seed)

    # Below float64, the differences are taken on f run in float64 where f allows it (its float inputs
    # and the perturbed node widened; float32 parameters promote): the function's own derivative, not
    # float32 round-off. A float32 gradient is then held to 1e-3 of it.
    fd_args, upcast = args, False
    if loss.dtype.itemsize < 8:
        wide = [Tensor(a._data.astype(np.float64), name=a.name) if a.dtype.kind == "f" else a for a in args]
        try:
            with no_grad():
                out = f(*wide)
            upcast = isinstance(out, Tensor) and out.dtype == np.float64 and bool(np.isfinite(out._data).all())
        except (TypeError, ValueError, RuntimeError):  # f or an op of it refuses mixed dtypes
            upcast = False
        fd_args = wide if upcast else args

    def loss_with(name: str, value: np.ndarray) -> float:  # value: already in the differences' dtype
        if name in marked:
            _marks.swap, _marks.swapped = (name, Tensor(value)), False
            try:
                out = f(*fd_args)
            finally:
                _marks.swap = None
            if not _marks.swapped:
                raise RuntimeError(f"audit: re-run, f did not mark {name!r} again; f must run the same way every time")
        else:
            out = f(*[Tensor(value) if n == name else a for n, a in zip(names, fd_args)])
        return float(out._data)

    def uses_mark(name: str) -> bool:
        """Whether f goes on with what node(name, ...) returns: with a stand-in that requires grad
        swapped in, the loss's graph holds it."""
        stand_in = Tensor(values[name], requires_grad=True)
        _marks.swap = (name, stand_in)
        try:
            with enable_grad():
                out = f(*args)
        finally:
            _marks.swap = None
        return out.requires_grad and stand_in in set(_toposort([out]))

    ignored = [k for k in hand if k in marked and np.any(autograd[k]) and not uses_mark(k)]
    if ignored:
        raise RuntimeError(f"audit: f does not go on with what node() returns for {ignored}, so perturbing them "
                           f"cannot move the loss: write {ignored[0]} = node({ignored[0]!r}, {ignored[0]})")
    rows = []
    with no_grad():
        again = f(*args)
        if float(again._data) != loss0:
            raise RuntimeError(f"audit: f is not deterministic (loss {loss0!r}, then {float(again._data)!r} on a "
                               "re-run): finite differences need the same function every call; seed or drop the "
                               "randomness")
        for k, h_val in hand.items():
            base, ag = values[k], autograd[k]
            size = min(base.dtype.itemsize, loss.dtype.itemsize)  # the precision this node is computed in
            rtol_hand, fd_rtol, eps = _DEFAULTS.get(size, _DEFAULTS[8])
            fd_rtol, eps = (1e-3, _DEFAULTS[8][2]) if upcast and size < 8 else (fd_rtol, eps)
            rtol_hand, eps = rtol if rtol is not None else rtol_hand, fd_eps if fd_eps is not None else eps
            ulp = float(np.finfo(np.dtype(f"f{size}")).eps)  # autograd's round-off, for the floors
            top = int(np.argmax(np.abs(ag))) if ag.size else 0  # the largest gradient, and a seeded sample
            picked = np.arange(base.size) if base.size <= fd_elements else np.sort(np.append(
                rng.choice(np.delete(np.arange(base.size), top), fd_elements - 1, replace=False), top))
            fd, gap = np.empty(len(picked)), np.empty(len(picked))
            fd_base = base.astype(np.float64) if upcast else base  # widened once per node, not per step
            tol_scale, floor_k = float(np.max(np.abs(ag), initial=0)), 256 * ulp * reach[k]
            for n, j in enumerate(picked):
                v = float(base.flat[j])
                h = eps * max(abs(v), scale[k])
                h = eps * abs(v) if v != 0 and h > abs(v) / 2 else h  # a step across 0 could leave the domain

                def estimate(step: float, k: str = k, base: np.ndarray = fd_base, j: int = j) -> float:
                    sides, at = [], []
                    for sign in (1, -1):
                        moved = base.copy()
                        moved.flat[j] += sign * step
                        sides.append(loss_with(k, moved))
                        at.append(float(moved.flat[j]))  # the step the node's dtype actually took
                    return (sides[0] - sides[1]) / (at[0] - at[1]) if at[0] != at[1] else 0.0
                # steps h, h/4, ..., h/4^6: the gap between two successive estimates is the larger step's error
                # bar (truncation shrinks 16-fold per step, round-off grows 4-fold). Taken: the first estimate
                # within tolerance of autograd whose bar is as narrow (so not a noisy one agreeing by chance),
                # else the first within tolerance plus twice its bar (a pass reported inconclusive), else the
                # first one (a failure)
                bound, pairs, want = fd_rtol * tol_scale + floor_k, [], float(ag.flat[j])
                prev = estimate(h)
                for i in range(1, 7):
                    cur = estimate(h / 4 ** i)
                    pairs.append((prev, abs(cur - prev)))
                    if abs(want - prev) <= bound and abs(cur - prev) <= 2 * bound:
                        break
                    prev = cur
                fits = [p for p in pairs if abs(want - p[0]) <= bound + 2 * p[1]]
                fd[n], gap[n] = next((p for p in pairs if abs(want - p[0]) <= bound and p[1] <= 2 * bound),
                                     fits[0] if fits else pairs[0])
                if all(e == 0 for p in pairs for e in p):  # the loss never moved: its precision cannot see
                    gap[n] = np.inf                          # this element's effect, so no information
            vs_hand = _check_row(k, ag, h_val, rtol_hand, atol if atol is not None else floor_k)
            sampled = ag.ravel()[picked]
            vs_fd = _check_row(k, sampled, fd, fd_rtol, floor_k, 2 * gap)
            inconclusive = vs_fd.ok and not _check_row(k, sampled, fd, fd_rtol, floor_k).ok
            rows.append(AuditRow(k, tuple(base.shape), vs_hand, vs_fd, len(picked), position.get(nodes[k], -1),
                                 downstream[k], inconclusive, nodes[k]))
    rows.sort(key=lambda r: -r.position)
    return Audit(rows, loss, title)


def audit_batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray, eps: float = 1e-5,
                     **options: Any) -> Audit:
    """check.audit applied to training-mode batch norm (docs/course.md section 3): loss = sum(y * dy), the
    nodes mu, xc, var, std, x_hat marked inside the normalization graph, and the derivation
    analytic.batchnorm_backward_staged. x (N, C, ...) float64, gamma and beta (C,), dy like x."""
    from . import analytic
    from .nn.functional import _affine, _channel, standardize
    axes = (0,) + tuple(range(2, np.ndim(x)))
    xt, gt, bt = (Tensor(np.asarray(v, np.float64), name=n) for v, n in ((x, "x"), (gamma, "gamma"), (beta, "beta")))

    def loss(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        x_hat = standardize(x, axes, eps, mark=node)["x_hat"]
        return (_affine(x_hat, _channel(gamma, x.ndim), _channel(beta, x.ndim)) * Tensor(dy, name="dy")).sum()

    def staged(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = analytic.batchnorm_backward_staged(dy, analytic.batchnorm_forward(v["x"], v["gamma"], v["beta"], eps,
                                                                              axes)[1])
        return {k: np.reshape(d[k], v[k].shape) for k in ("x_hat", "std", "var", "xc", "mu", "x", "gamma", "beta")}
    return audit(loss, [xt, gt, bt], staged, title=f"node-by-node audit of batch norm, x {np.shape(x)} float64",
                 **options)
