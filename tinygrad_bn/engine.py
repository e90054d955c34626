"""The autodiff engine: Function (one recorded op), grad mode, scopes, and reverse-mode backward.

A Tensor made by an op holds `_ctx`, the Function instance that made it; the Function holds its
input Tensors (`parents`). Backward walks that DAG once, iteratively, in reverse topological order.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

if TYPE_CHECKING:  # bound at run time by _link (at the end of this file), once tensor.py has loaded
    from .guards import _check_finite, _check_snapshots, _guard, _Hold, _lock, _replaced_error, _user_site
    from .tensor import Tensor, _broadcasts_to

    _Add: Callable[..., Tensor]


def _keep_freed_memory() -> None:
    """Ask glibc to serve large arrays from its heap and keep freed memory for reuse, instead of
    mapping fresh pages for every big temporary and unmapping them on free: each fresh 16 MiB
    array otherwise costs as much page faulting as computing it. Process-wide (NumPy allocates
    through malloc); set TINYGRAD_BN_SYSTEM_MALLOC=1 to keep the system's defaults."""
    if os.environ.get("TINYGRAD_BN_SYSTEM_MALLOC") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)  # arrays up to 1 GiB come from the heap
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)  # and up to 1 GiB of freed heap stays for reuse


_keep_freed_memory()


class _ThreadState(threading.local):
    """Grad mode and the scope stack are per thread, as PyTorch's grad mode."""
    grad_enabled: bool = True
    scope: tuple[str, ...] = ()
    grad_of: Function | None = None  # during a create_graph backward: the op whose rule is running
    anomaly: bool = False             # detect_anomaly() is on
    rule: Function | None = None      # with anomaly on: the op whose backward rule is running
    lazy: Any = None                  # the open tg.fused() context (fusion.py), which defers forward


_State = _ThreadState()
_new_tensor = object.__new__


class _Replaced:
    """How many times any tensor's array was replaced (Tensor._replace): an op whose inputs were saved
    since the last replacement anywhere needs no identity check at backward."""
    count = 0


class ShapeError(ValueError, RuntimeError):
    """A shape or dimension error (mismatched shapes, a bad reshape, a wrong channel count): both a
    ValueError, as NumPy code expects, and a RuntimeError, as PyTorch code expects."""


class AxisError(ShapeError, IndexError):
    """An axis out of range (PyTorch raises IndexError for it; NumPy's AxisError is a ValueError too)."""


class _GradMode:
    """Sets whether ops record a graph; a context manager and a decorator (`@tg.no_grad()`)."""
    enabled: bool
    _prev: list[bool]  # the modes to restore, one per open `with` (a list: the same object may nest)

    def __new__(cls, func: Callable | None = None) -> Any:
        self = super().__new__(cls)
        self._prev = []
        return self(func) if func is not None else self  # bare `@tg.no_grad` decorates directly

    def __enter__(self) -> None:
        self._prev.append(_State.grad_enabled)
        _State.grad_enabled = self.enabled

    def __exit__(self, *exc: Any) -> None:
        _State.grad_enabled = self._prev.pop()

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Nothing computed inside records a graph (results have requires_grad=False)."""
    enabled = False


class enable_grad(_GradMode):
    """Record graphs again inside a no_grad region."""
    enabled = True


def is_grad_enabled() -> bool:
    return _State.grad_enabled


def current_scope() -> tuple[str, ...]:
    return _State.scope


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Group the ops recorded inside under `name` (nested scopes nest) for the graph renderer."""
    outer = _State.scope
    _State.scope = outer + (str(name),)
    try:
        yield
    finally:
        _State.scope = outer


class Function:
    """One recorded op, and the base of users' custom ops (`tg.Function`). A subclass defines
    `forward(*arrays, **params) -> ndarray` on raw NumPy arrays (storing on self only the small
    things backward needs) and `backward(grad, out)`, which returns one gradient (or None) per
    input: written in Tensor ops it is differentiable again; returned as ndarrays it is a
    hand-written first derivative, and differentiating through it is an error naming the op
    (PyTorch's once_differentiable). `out` is the op's output Tensor, passed in rather than
    stored so the graph holds no reference cycles. Call it as `MyOp.apply(*tensors, **params)`.
    `reads_inputs = False` declares that backward never reads the inputs' values (only shapes,
    dtypes, the gradient or `out`), so their arrays need no guarding against in-place change;
    `aliases = True` that the output is a view of the input (a replaced input is still refused)."""
    reads_inputs = True
    aliases = False
    __slots__ = ("parents", "needs", "scope", "grad_of", "arrays", "locked", "epoch", "site", "__dict__",
                 "__weakref__")
    parents: Any  # tuple of input Tensors; None once freed
    needs: list[bool]
    scope: tuple[str, ...]
    grad_of: Any  # the Function whose backward rule recorded this op (create_graph), or None
    arrays: tuple[np.ndarray, ...] | None  # the inputs' arrays, kept to refuse a replaced one
    locked: list[_Hold] | None  # the guards' holds
    epoch: int
    site: str

    @classmethod
    def apply(cls, *parents: Tensor, **params: Any) -> Tensor:
        ctx = cls()
        epoch = _Replaced.count  # before the arrays are read: a replacement from here on is checked at backward
        try:
            arrays = [p._data for p in parents]
        except AttributeError:
            raise TypeError(f"{cls.__name__}.apply takes Tensors, got "
                            f"({', '.join(type(p).__name__ for p in parents)}): wrap arrays with tg.tensor") from None
        lazy = _State.lazy  # under tg.fused(), a fusible op's data is a Pending value (fusion.py)
        try:
            data = ctx.forward(*arrays, **params) if lazy is None else lazy.record(ctx, arrays, params)
        except (ValueError, IndexError, TypeError) as e:
            raise _op_error(cls, parents, e) from None
        out = _new_tensor(Tensor)  # Tensor._wrap, inlined: this is the hottest line of the library
        out._data = data = data if type(data) is np.ndarray else np.asarray(data) if lazy is None else \
            lazy.own(data, out)
        out.requires_grad, out._grad, out._ctx, out.name, out._retains_grad = False, None, None, None, False
        if _State.anomaly:
            rule = _State.rule
            ctx.site = getattr(rule, "site", "<unknown>") if rule is not None else _user_site()
            _check_finite(f"{cls.__name__} (in {rule!r}.backward)" if rule is not None else cls.__name__,
                          rule or cls, (rule or ctx).scope if rule is not None else _State.scope, arrays, data,
                          ctx.site, allow_inf=rule is not None)
        if _State.grad_enabled:
            needs = [p.requires_grad for p in parents]
            if True in needs and data.dtype.kind == "f":  # an integer or bool output has no gradient
                ctx.parents, ctx.needs, ctx.scope, ctx.grad_of = parents, needs, _State.scope, _State.grad_of
                if cls.reads_inputs:  # backward will read these arrays: guard them (guards.py). A tuple of
                    ctx.arrays, ctx.locked = tuple(arrays), _lock(parents, arrays)  # arrays leaves the GC's sight
                else:  # a view op keeps them only to refuse a replaced input (the views share its fate)
                    ctx.arrays, ctx.locked = tuple(arrays) if cls.aliases else None, None
                ctx.epoch = epoch
                data.setflags(write=False)  # an array inside a graph is never written, nor any view of it
                out._ctx, out.requires_grad = ctx, True
        return out

    def free(self) -> None:
        """Release what the op saved for backward (after a backward without retain_graph)."""
        self.parents = self.arrays = self.locked = None  # dropping the holds unlocks what no other op holds

    def forward(self, *arrays: Any, **params: Any) -> np.ndarray:  # (Any: each op names its own arrays)
        raise NotImplementedError

    def backward(self, grad: Tensor, out: Tensor) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


class Accumulate(Function):
    """Not an op: in a create_graph backward, the `grad_of` of the ops that gather gradients rather
    than apply a backward rule. `kind` is "sum" (the Add summing what a tensor's consumers send
    back: the multivariate chain rule) or "into_grad" (the copy into a tensor's .grad, or the add
    to what it held); `of` is a weak reference to that tensor. Facts only: the renderer labels them."""
    kind: str
    of: weakref.ref[Tensor]

    @classmethod
    def marking(cls, t: Tensor, consumer: Function | None, kind: str) -> Accumulate:
        mark = cls()
        owner = t._ctx or consumer
        mark.scope = owner.scope if owner is not None else ()
        mark.kind, mark.of = kind, weakref.ref(t)
        return mark


class GradFacts:
    """What a gradient made by a create_graph backward is (facts for the renderer, recorded only
    then): `of`, a weak reference to the tensor it is the gradient of; `kind`, "seed" (where the
    sweep starts), "rule" (sent by the backward of `rule`, a weak reference), "sum" (several
    consumers' gradients added) or "into_grad"; `part`, whether it was then added to other
    consumers' gradients; `inputs`, for a gradient with no graph behind it (nothing it was made
    from requires grad, so no op was recorded), the gradients it was made from."""
    __slots__ = ("of", "kind", "rule", "inputs", "part")

    def __init__(self, of: Tensor, kind: str, rule: Function | None, inputs: tuple[Tensor, ...]):
        self.of, self.kind, self.part = weakref.ref(of), kind, False
        self.rule = weakref.ref(rule) if rule is not None else None
        self.inputs = inputs  # graph-less gradients hold only arrays: no cycle, no leak


_facts: dict[int, tuple[weakref.ref, GradFacts]] = {}  # id(gradient) -> (its weak reference, its facts)


def grad_facts(t: Tensor) -> GradFacts | None:
    """The facts recorded about `t` as a gradient of a create_graph backward, else None."""
    entry = _facts.get(id(t))
    return entry[1] if entry is not None and entry[0]() is t else None


def _note(g: Tensor, of: Tensor, kind: str, rule: Function | None = None, inputs: tuple[Tensor, ...] = ()) -> None:
    """create_graph only: record that g is a gradient of `of` (the first record of a tensor wins)."""
    if grad_facts(g) is None:
        key = id(g)

        def forget(_: object, key: int = key, facts: dict = _facts) -> None:  # when g is collected
            facts.pop(key, None)
        _facts[key] = (weakref.ref(g, forget), GradFacts(of, kind, rule, inputs if g._ctx is None else ()))


def _op_error(cls: type, parents: Sequence[Tensor], e: Exception) -> Exception:
    """Re-raise a NumPy failure inside an op, naming the op and its inputs: a NumPy ValueError (shapes
    that do not broadcast, a bad reshape) as ShapeError, an axis error as AxisError, else its own type."""
    shapes = ", ".join(f"{p.shape} {p.dtype}" for p in parents)
    where = f" in scope {'/'.join(_State.scope)}" if _State.scope else ""
    shapes_wrong = type(e) is ValueError and any(w in str(e) for w in ("shape", "broadcast", "dimension", "size"))
    kind = AxisError if isinstance(e, np.exceptions.AxisError) else ShapeError if shapes_wrong else type(e)
    return kind(f"{cls.__name__}{where}: {e} (inputs: {shapes})")


# ---------------------------------------------------------------------------------- backward


def _toposort(roots: Sequence[Tensor]) -> list[Tensor]:
    """Tensors that require grad and lead to `roots`, each once, inputs before outputs.
    Iterative DFS post-order, so graphs of any depth work (no recursion limit)."""
    order: list[Tensor] = []
    seen: set[Tensor] = set()  # Tensor hashes by identity
    stack: list[tuple[Tensor, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if t in seen:
            continue
        seen.add(t)
        stack.append((t, True))
        ctx = t._ctx
        if ctx is not None and ctx.parents is not None:  # a freed node is an error only if backprop reaches it
            for p in ctx.parents:
                if p.requires_grad and p not in seen:
                    stack.append((p, False))
    return order


def _unbroadcast(g: Tensor, shape: tuple[int, ...], ctx: Function) -> Tensor:
    """A rule's gradient `g`, given in the broadcast (output) shape, summed back to its input's
    `shape`: the one place the engine undoes broadcasting (Tensor.sum_to_size's sums)."""
    if not _broadcasts_to(shape, g.shape):
        raise RuntimeError(f"{ctx!r}.backward returned {g.shape} for input {shape}")
    return g._sum_to(shape)


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _seed_grads(outputs: list[Tensor], grad_outputs: list, create_graph: bool) -> list[Tensor]:
    """The gradients to start from: given ones checked against their outputs, else ones for scalars.
    A given ndarray is only read during this sweep (nothing recorded keeps it), so it is not copied;
    with create_graph the gradient graph keeps it, so it is copied, as Tensor(ndarray) is."""
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    seeds = []
    for i, (t, g) in enumerate(zip(outputs, grad_outputs)):
        if not t.requires_grad:
            raise RuntimeError(
                f"output {i} (shape {t.shape}) does not require grad and has no graph: nothing to "
                "differentiate (was it made under no_grad, or from tensors without requires_grad=True?)")
        if g is None:
            if t._data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for a single-element output, got shape {t.shape}:"
                    " pass a gradient of that shape, e.g. t.backward(tg.ones(t.shape)), or reduce t first")
            g = Tensor._wrap(np.ones(t.shape, t.dtype))
        else:
            shared = not create_graph and type(g) is np.ndarray and g.dtype.kind in "biufc"
            g = g if isinstance(g, Tensor) else Tensor._wrap(g) if shared else Tensor(g)
            if g.shape != t.shape:
                raise ShapeError(f"grad of shape {g.shape} given for output {i} of shape {t.shape}")
            if g.dtype != t.dtype:
                g = g.cast(t.dtype)
        seeds.append(g)
    return seeds


def backprop(outputs: list[Tensor], seeds: list[Tensor], retain_graph: bool, create_graph: bool,
             inputs: list[Tensor] | None = None) -> dict[Tensor, Tensor]:
    """Reverse-mode sweep from `outputs` (with gradients `seeds`). With `inputs`, return their
    gradients by id and touch no `.grad`; without, accumulate into `.grad` of leaves (and of
    tensors that called retain_grad()). Backward rules run recorded only when create_graph.
    Nothing is written and nothing freed unless the whole sweep succeeds."""
    order = _toposort(outputs)
    if inputs is not None:  # prune to the nodes through which some input is reached
        wanted, reach = set(inputs), set(inputs)
        for t in order:
            if t._ctx is not None and t._ctx.parents is not None and any(p in reach for p in t._ctx.parents):
                reach.add(t)
    grads: dict[Tensor, Tensor] = {}
    for t, seed in zip(outputs, seeds):
        grads[t] = seed if t not in grads else grads[t] + seed
        if create_graph:
            _note(seed, t, "seed")
    found: dict[Tensor, Tensor] = {}
    freed: Any = None  # a freed node that got a gradient but, its inputs released, leads nowhere known
    to_store: list[tuple[Tensor, Tensor]] = []
    checked: set[int] = set()  # holds whose snapshot this sweep compared already
    anomaly = _State.anomaly
    try:
        with (enable_grad() if create_graph else no_grad()):
            for t in reversed(order):
                g = grads.pop(t, None)
                if g is None:
                    continue
                ctx = t._ctx
                if inputs is not None:
                    if t in wanted:
                        found[t] = g
                    if t not in reach:
                        freed = freed or (ctx is not None and ctx.parents is None and (ctx, t))
                        continue
                elif ctx is None or t._retains_grad:
                    to_store.append((t, g))
                if ctx is None:
                    continue
                if ctx.parents is None:
                    raise _freed_error(ctx, t)
                if ctx.arrays is not None:  # what backward will read is still what the forward saw
                    if ctx.epoch != _Replaced.count:
                        for p, a in zip(ctx.parents, ctx.arrays):
                            if p._data is not a and getattr(a, "value", a) is not p._data:  # (or a
                                raise _replaced_error(ctx, p)  # Pending computed since: fusion.py)
                    if ctx.locked is not None:
                        _check_snapshots(ctx, ctx.locked, ctx.arrays, checked)
                if anomaly:
                    _State.rule = ctx
                if create_graph:  # ops recorded now belong to ctx's backward rule (the renderer groups them)
                    _State.grad_of = ctx
                in_grads = ctx.backward(g, t)
                if type(in_grads) is not tuple:
                    in_grads = (in_grads,)
                if anomaly:
                    _State.rule = None
                    for pg in in_grads:
                        if pg is not None:
                            _check_finite(f"{ctx!r}.backward", ctx, ctx.scope, [g._data], np.asarray(
                                              pg._data if isinstance(pg, Tensor) else pg),  # (a custom op's ndarray)
                                          getattr(ctx, "site", "<created before detect_anomaly was on>"),
                                          allow_inf=True)
                if len(in_grads) != len(ctx.parents):
                    raise RuntimeError(f"{ctx!r}.backward returned {len(in_grads)} gradients "
                                       f"for {len(ctx.parents)} inputs")
                for p, need, pg in zip(ctx.parents, ctx.needs, in_grads):
                    if not need or pg is None:
                        continue
                    if type(pg) is not Tensor and not isinstance(pg, Tensor):  # (the first test is the fast one)
                        pg = _hand_written(ctx, pg, g, create_graph)
                    if pg._data.shape != p._data.shape:
                        pg = _unbroadcast(pg, p._data.shape, ctx)
                    if pg._data.dtype != p._data.dtype:
                        pg = pg.cast(p._data.dtype)
                    if create_graph:  # say what pg is, for the renderer
                        _note(pg, p, "rule", ctx, (g,))
                    prev = grads.get(p)
                    if prev is None:
                        grads[p] = pg
                    elif create_graph:  # tag the Add that sums what p's consumers send back
                        _State.grad_of = Accumulate.marking(p, ctx, "sum")
                        grads[p] = prev + pg
                        _State.grad_of = ctx
                        for part in (prev, pg):
                            facts = grad_facts(part)
                            if facts is not None and facts.of() is p:
                                facts.part = True
                        _note(grads[p], p, "sum", None, (prev, pg))
                    else:
                        grads[p] = _Add(prev, pg)  # prev + pg: both the input's shape and dtype already
            if freed and len(found) < len(wanted):  # an input may lie behind the freed node: say so
                raise _freed_error(*freed)
            stored: set[int] = {id(s) for s in seeds}
            for t, g in to_store:
                _State.grad_of = Accumulate.marking(t, None, "into_grad") if create_graph else None
                _accumulate(t, g, create_graph, stored)
    finally:
        _State.grad_of = _State.rule = None
    if not retain_graph:
        for t in order:
            if t._ctx is not None and t._ctx.parents is not None:
                t._ctx.free()
    return found


class OnceDifferentiable(Function):
    """In a create_graph backward, the gradient a custom op's backward returned as an ndarray: a
    hand-written first derivative, with no rule for its own derivative. It depends on the op's
    inputs and upstream gradient, so differentiating through it raises instead of giving 0."""
    reads_inputs = False

    def forward(self, value: np.ndarray, *depends_on: np.ndarray, op: str = "") -> np.ndarray:
        self.op = op
        return value

    def backward(self, grad: Tensor, out: Tensor) -> Any:
        raise RuntimeError(f"{self.op}.backward returned ndarrays (a hand-written first derivative), so it is "
                           "differentiable once: differentiating through it again is not defined. Write that "
                           "backward in Tensor ops to make it differentiable twice")


def _hand_written(ctx: Function, pg: Any, g: Tensor, create_graph: bool) -> Tensor:
    """A gradient a backward returned as an ndarray (or number): copied into a Tensor (the op may
    keep the array); with create_graph, an OnceDifferentiable node over the op's inputs and g."""
    a = np.array(pg)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{ctx!r}.backward returned a {type(pg).__name__} of dtype {a.dtype}, not a gradient: "
                        "return Tensors, ndarrays or None")
    if not create_graph:
        return Tensor._wrap(a)
    with enable_grad():
        return OnceDifferentiable.apply(Tensor._wrap(a), g, *ctx.parents, op=repr(ctx))


def _freed_error(ctx: Function, t: Tensor) -> RuntimeError:
    return RuntimeError(f"backward through a graph that was already freed ({ctx!r} -> {t.shape}): the first"
                        " backward released its saved values; pass retain_graph=True to it to backward twice")


def _accumulate(t: Tensor, g: Tensor, create_graph: bool, stored: set[int]) -> None:
    """t.grad += g. The stored gradient must be t's own: writable, not a view, not handed to
    another tensor or the caller, so an in-place change to one .grad leaks nowhere. With
    create_graph a gradient that is a graph node is read-only already (as every array in a graph);
    a copy is then a graph op (clone), so the gradient stays differentiable."""
    if id(g) in stored or g._ctx is None and (not g._data.flags.writeable or g._data.base is not None):
        # order="K" keeps the layout: a transposed view (a weight's gradient through w.T) is copied
        # as one contiguous block instead of element by element, and stays a transpose
        g = g.clone() if create_graph else Tensor._wrap(g._data.copy(order="K"))
    stored.add(id(g))
    with _guard:  # two threads' backward passes into one .grad both count
        old, t._grad = t._grad, g if t._grad is None else t._grad + g
    if create_graph:  # t.grad is t's gradient, whatever else it was the gradient of
        facts = grad_facts(t._grad)
        if facts is None:
            _note(t._grad, t, "into_grad", None, (g,) if old is None else (old, g))
        else:
            facts.of = weakref.ref(t)


def backward(t: Tensor, grad: Any = None, retain_graph: bool = False, create_graph: bool = False) -> None:
    outputs = [t]
    backprop(outputs, _seed_grads(outputs, [grad], create_graph), retain_graph or create_graph, create_graph)
    if _State.lazy is not None:  # under tg.fused(), backward() computes the gradients (and what else is pending)
        _State.lazy.realize_all()


@overload  # without allow_unused every input has a gradient (an unused one raises)
def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor], grad_outputs: Any = None,
         retain_graph: bool | None = None, create_graph: bool = False, allow_unused: Literal[False] = False,
         ) -> tuple[Tensor, ...]: ...
@overload
def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor], grad_outputs: Any = None,
         retain_graph: bool | None = None, create_graph: bool = False, allow_unused: bool = False,
         ) -> tuple[Tensor | None, ...]: ...
def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor], grad_outputs: Any = None,
         retain_graph: bool | None = None, create_graph: bool = False, allow_unused: bool = False,
         ) -> tuple[Tensor | None, ...]:
    """d(sum_k grad_outputs[k] * outputs[k]) / d inputs, as a tuple of Tensors (one per input),
    without touching `.grad`. With create_graph=True the results are differentiable again."""
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    for what, ts in (("outputs", outputs), ("inputs", inputs)):
        for t in ts:
            if not isinstance(t, Tensor):
                raise TypeError(f"grad: {what} must be Tensors, got {type(t).__name__}")
    grad_outputs = [None] * len(outputs) if grad_outputs is None else _as_list(grad_outputs)
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"input {i} (shape {x.shape}) does not require grad")
    retain = create_graph if retain_graph is None else retain_graph
    found = backprop(outputs, _seed_grads(outputs, grad_outputs, create_graph), retain, create_graph, inputs)
    result = tuple(found.get(x) for x in inputs)
    if _State.lazy is not None:
        _State.lazy.realize_all()
    if not allow_unused:
        for i, r in enumerate(result):
            if r is None:
                raise RuntimeError(f"input {i} (shape {inputs[i].shape}) was not used to compute the outputs;"
                                   " pass allow_unused=True to get None for it")
    return result


def _link() -> None:
    """Bind what the engine uses at run time from the modules that build on it: Tensor (apply makes
    them), Add (backward sums with it) and the guards. This module imports nothing of the package
    when it loads, so it can load first from any import order; tensor.py, which imports this module,
    guards.py and ops.py, calls _link once at its end, when all of those names exist. Plain module
    globals, so the per-op hot path looks them up as fast as imported names."""
    global Tensor, _broadcasts_to, _Add, _check_finite, _check_snapshots, _guard, _lock, _replaced_error, _user_site
    from .guards import _check_finite, _check_snapshots, _guard, _lock, _replaced_error, _user_site
    from .ops import Add
    from .tensor import Tensor, _broadcasts_to
    _Add = Add.apply
