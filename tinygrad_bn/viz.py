"""Rendering computation graphs. `trace` walks a graph into plain data (nodes, edges); `draw` and
`to_dot` only format that data with Graphviz. Tensor nodes are boxes (leaves, parameters,
constants and the output each styled apart), op nodes ellipses; ops recorded under
`tg.scope(...)` or inside an `nn.Module` call are drawn as nested, labelled clusters."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .check import Report
from .check import compare as check_compare
from .engine import Accumulate, Function
from .tensor import Tensor

BACKWARD_SCOPE = "backward"  # the cluster that holds the ops of the backward rules


@dataclass
class Node:
    id: str
    kind: str                      # "tensor" | "op" | "collapsed"
    label: str
    scope: tuple[str, ...]         # the nested clusters the node sits in
    style: str                     # tensor: input | param | const | intermediate | output | forward | grad
    tensor: Tensor | None = None   # op: op | grad_op; collapsed: collapsed
    ctx: Function | None = None


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, style: "" | "dashed")


class GraphTooLargeError(ValueError):
    """The graph has more nodes than `max_nodes`; the message says which scopes to collapse."""


_DTYPE = {"float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "bool": "bool", "float16": "f16"}


def _summary(a: np.ndarray) -> str:
    """Small arrays in full; large ones as mean/std/min/max."""
    if a.size <= 6:
        return np.array2string(np.asarray(a), precision=3, separator=", ").replace("\n", "")
    a = a.astype(np.float64)
    return f"mean {a.mean():.3g}  std {a.std():.3g}\\nmin {a.min():.3g}  max {a.max():.3g}"


def _is_forward(t: Tensor) -> bool:
    return t._ctx is None or t._ctx.grad_of is None


def trace(*tensors: Tensor, backward: bool = False, show_values: bool = False) -> Graph:
    """Walk the graph that made `tensors` (a pure walk: nothing is rendered). With backward=True
    the tensors are gradients built with create_graph=True: the walk follows the ops of the
    backward rules and stops at the forward values they read, which become dashed inputs."""
    g = Graph()
    short: dict[int, str] = {}
    outputs = {id(t) for t in tensors}
    stack = list(tensors)
    while stack:
        t = stack.pop()
        tid = f"t{id(t)}"
        if tid in g.nodes:
            continue
        ctx = t._ctx
        stop = backward and _is_forward(t) and id(t) not in outputs  # a forward value the backward graph reads
        if ctx is not None and not stop and ctx.parents is None:
            raise ValueError(f"the graph behind {t.name or 'a tensor'} {t.shape} was freed by backward(); draw it "
                             "before backward, or pass retain_graph=True (create_graph=True for backward graphs)")
        short.setdefault(id(t), f"t{len(short)}")
        if id(t) in outputs:
            style = "grad" if backward else "output"
        elif stop and backward:
            style = "forward"
        elif ctx is None:
            style = "param" if type(t) is not Tensor else ("input" if t.requires_grad else "const")
        else:
            style = "intermediate"
        label = f"{t.name or short[id(t)]}\\n{t.shape} {_DTYPE.get(t.dtype.name, t.dtype.name)}"
        if show_values:
            label += "\\n" + _summary(t._data)
            if t.grad is not None and not backward:
                label += "\\ngrad: " + _summary(t.grad._data)
        g.nodes[tid] = Node(tid, "tensor", label, _scope_of(t, backward), style, tensor=t)
        if ctx is None or stop:
            continue
        oid = f"op{id(ctx)}"
        consts = [p for p in ctx.parents if p._ctx is None and not p.requires_grad and p._data.size == 1]
        op_label = type(ctx).__name__ + "".join(_folded(ctx, p) for p in consts)
        if isinstance(ctx.grad_of, Accumulate):
            op_label += f"\\n({ctx.grad_of.why})"
        elif ctx.grad_of is not None:
            op_label += f"\\n(in {type(ctx.grad_of).__name__}.backward)"
        g.nodes[oid] = Node(oid, "op", op_label, _op_scope(ctx, backward), "grad_op" if ctx.grad_of else "op",
                            ctx=ctx)
        g.edges.append((oid, tid, ""))
        for p in ctx.parents:
            if any(p is c for c in consts):
                continue
            g.edges.append((f"t{id(p)}", oid, "dashed" if backward and _is_forward(p) else ""))
            stack.append(p)
    return g


_SYMBOL = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Pow": "**"}


def _folded(ctx: Function, const: Tensor) -> str:
    """A scalar constant folded into its op's label, on the side it sits: '· / 4', '1 / ·'."""
    value, symbol = f"{const._data.item():.4g}", _SYMBOL.get(type(ctx).__name__)
    if symbol is None or len(ctx.parents) != 2:
        return f"\\n{value}"
    return f"\\n{value} {symbol} ·" if const is ctx.parents[0] else f"\\n· {symbol} {value}"


def _op_scope(ctx: Function, backward: bool) -> tuple[str, ...]:
    if ctx.grad_of is not None and backward:  # backward ops sit under the forward op's scopes
        return (BACKWARD_SCOPE,) + ctx.grad_of.scope
    return ctx.scope


def _scope_of(t: Tensor, backward: bool) -> tuple[str, ...]:
    if t._ctx is None:  # a parameter sits in the module that owns it
        return () if backward else getattr(t, "scope", ())
    if backward and _is_forward(t):
        return ()
    return _op_scope(t._ctx, backward)


def _collapse(g: Graph, names: Iterable[str]) -> Graph:
    """Replace every node inside a scope named in `names` by one node for that scope."""
    names = set(names)
    rename: dict[str, str] = {}
    ids: dict[tuple[str, ...], str] = {}
    out = Graph()
    for n in g.nodes.values():
        hit = next((i for i, s in enumerate(n.scope) if s in names), None)
        if hit is None:
            out.nodes[n.id] = n
            continue
        cid = ids.setdefault(n.scope[:hit + 1], f"scope{len(ids)}")
        rename[n.id] = cid
        if cid not in out.nodes:
            out.nodes[cid] = Node(cid, "collapsed", n.scope[hit], n.scope[:hit], "collapsed")
        out.nodes[cid].label = out.nodes[cid].label.split("\\n")[0]
    counts = Counter(rename.values())
    for cid, k in counts.items():
        out.nodes[cid].label += f"\\n({k} nodes collapsed)"
    seen = set()
    for a, b, style in g.edges:
        a, b = rename.get(a, a), rename.get(b, b)
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            out.edges.append((a, b, style))
    return out


def _overlay(g: Graph, compare: Any, rtol: float) -> dict[str, tuple[bool, str]]:
    """node id -> (within tolerance, the label's error line) for each compared tensor. `compare` is
    a tg.check.Audit (rows matched to their own tensors, else by name; both of its errors shown, and
    its first wrong node), a tg.check.Report (rows matched to tensors by name; "dx" or "x: ..."
    match a tensor named "x") or a mapping tensor -> analytic gradient (compared with .grad)."""
    def verdict(ok: bool) -> str:
        return "ok" if ok else "OFF"
    marks: dict[str, tuple[bool, str]] = {}
    if not hasattr(compare, "rows"):
        for t, ref in compare.items():
            nid = f"t{id(t)}"
            if nid in g.nodes and t.grad is not None:
                (row,) = check_compare({"grad": t.grad}, {"grad": ref}, rtol=rtol).rows
                marks[nid] = (row.ok, f"max rel err {row.max_rel:.1e} {verdict(row.ok)}")
        return marks
    by_name = {n.tensor.name: n.id for n in g.nodes.values() if n.tensor is not None and n.tensor.name}
    worst: dict[str, tuple[bool, float]] = {}
    for row in compare.rows:
        key = row.name.split(":")[0].strip()
        own = f"t{id(row.tensor)}" if getattr(row, "tensor", None) is not None else None
        nid = own if own in g.nodes else by_name.get(key) or (by_name.get(key[1:]) if key.startswith("d") else None)
        if nid is None:
            continue
        if hasattr(row, "vs_hand"):  # an audit row: the hand value's error, then finite differences'
            first = "\\nFIRST WRONG" if row.name == compare.first_wrong else ""
            marks[nid] = (row.ok, f"max rel err: hand {row.vs_hand.max_rel:.1e} {verdict(row.vs_hand.ok)}\\n"
                                  f"finite diff {row.vs_fd.max_rel:.1e} {verdict(row.vs_fd.ok)}{first}")
        else:  # several report rows may name one tensor: the worst of them
            ok, rel = worst.get(nid, (True, 0.0))
            worst[nid] = (ok and row.ok, max(rel, row.max_rel))
            marks[nid] = (worst[nid][0], f"max rel err {worst[nid][1]:.1e} {verdict(worst[nid][0])}")
    return marks


_TENSOR_STYLE = {
    "input": {"fillcolor": "#cfe2ff"}, "param": {"fillcolor": "#ffe8a3"}, "const": {"fillcolor": "#eeeeee"},
    "intermediate": {"fillcolor": "white"}, "output": {"fillcolor": "#c8f0c8", "penwidth": "2.5"},
    "forward": {"fillcolor": "white", "style": "rounded,dashed,filled", "fontcolor": "#555555"},
    "grad": {"fillcolor": "#e6d5f5", "penwidth": "2.5"},
}


def draw(*tensors: Tensor, backward: bool = False, show_values: bool = False, collapse: Iterable[str] = (),
         compare: Report | Mapping[Tensor, Any] | None = None, rtol: float = 1e-12, max_nodes: int | None = 500,
         rankdir: str = "TB", title: str | None = None) -> Any:
    """The graph that made `tensors` as a graphviz.Digraph (render it with .render(format="svg")
    or "png"; it displays itself in Jupyter). backward=True draws gradients made with
    create_graph=True (see trace). collapse: scope or module names each drawn as one node.
    compare: a tg.check.Report or {tensor: analytic gradient}; compared tensors turn green
    (max relative error <= rtol) or red, with the error in their label. A graph of more than
    max_nodes nodes is an error that names the scopes worth collapsing."""
    import graphviz  # imported here so that the engine does not need it

    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"draw: expected Tensors, got {type(t).__name__}")
    if backward and all(t._ctx is None for t in tensors):
        raise ValueError("backward=True draws the graph of gradients, and these have none: "
                         "call loss.backward(create_graph=True) (or tg.grad(..., create_graph=True)) first")
    g = trace(*tensors, backward=backward, show_values=show_values)
    collapse = [collapse] if isinstance(collapse, str) else list(collapse)
    if collapse:
        g = _collapse(g, collapse)
    if max_nodes is not None and len(g.nodes) > max_nodes:
        sizes = Counter(s for n in g.nodes.values() for s in n.scope)
        advice = ", ".join(f"{s!r} ({k} nodes)" for s, k in sizes.most_common(8))
        hint = (f"collapse scopes, e.g. draw(..., collapse=[...]) with some of {advice}" if advice else
                "it has no scopes to collapse: record parts of it inside tg.scope('name') or nn.Modules")
        raise GraphTooLargeError(f"the graph has {len(g.nodes)} nodes (max_nodes={max_nodes}): {hint}; "
                                 "or pass max_nodes=None")
    marks = _overlay(g, compare, rtol) if compare is not None else {}
    dot = graphviz.Digraph(graph_attr={"rankdir": rankdir, "fontname": "Helvetica", "nodesep": "0.25",
                                       "ranksep": "0.3", **({"label": title, "labelloc": "t"} if title else {})},
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"arrowsize": "0.6"})
    tree: dict[tuple[str, ...], list[Node]] = {}
    for n in g.nodes.values():
        tree.setdefault(n.scope, []).append(n)

    def emit(graph: Any, prefix: tuple[str, ...]) -> None:
        for n in tree.get(prefix, []):
            graph.node(n.id, **_node_attrs(n, marks.get(n.id)))
        children = sorted({s[:len(prefix) + 1] for s in tree if len(s) > len(prefix) and s[:len(prefix)] == prefix})
        for child in children:
            with graph.subgraph(name="cluster_" + "/".join(child)) as sub:
                sub.attr(label=child[-1], style="rounded,dashed" if child[-1] == BACKWARD_SCOPE else "rounded",
                         color="#888888", fontsize="11", fontcolor="#333333")
                emit(sub, child)

    emit(dot, ())
    for a, b, style in g.edges:
        dot.edge(a, b, **({"style": style} if style else {}))
    return dot


def _node_attrs(n: Node, mark: tuple[bool, str] | None) -> dict[str, str]:
    if n.kind == "op":
        fill = "#e6d5f5" if n.style == "grad_op" else "#dddddd"
        attrs = {"shape": "ellipse", "style": "filled", "fillcolor": fill, "label": n.label, "fontsize": "9"}
    elif n.kind == "collapsed":
        attrs = {"shape": "box3d", "style": "filled", "fillcolor": "#f5f0dc", "label": n.label}
    else:
        attrs = {"shape": "box", "style": "rounded,filled", "label": n.label, **_TENSOR_STYLE[n.style]}
    if mark is not None:
        ok, text = mark
        attrs.update(fillcolor="#9be29b" if ok else "#ff8a80", penwidth="4" if "FIRST WRONG" in text else "2.5",
                     label=attrs["label"] + "\\n" + text)
    return attrs


def to_dot(*tensors: Tensor, backward: bool = False, show_values: bool = False, **options: Any) -> str:
    """The DOT source of draw(...)."""
    return draw(*tensors, backward=backward, show_values=show_values, **options).source


def to_html(*tensors: Tensor, backward: bool = False, **options: Any) -> Any:
    """One self-contained interactive HTML page of the graph (tinygrad_bn/html.py): pan, zoom, node
    facts, collapsible clusters, backward step by step. A str that displays itself in Jupyter."""
    from .html import to_html as page
    return page(*tensors, backward=backward, **options)
