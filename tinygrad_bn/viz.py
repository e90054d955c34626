"""Rendering computation graphs. `trace` walks a graph into plain data (nodes, edges); `draw` and
`to_dot` only format that data with Graphviz, and every word they draw is written here (the engine
records facts: which rule made an op, what a gradient is the gradient of). Tensor nodes are boxes
(inputs, parameters, constants, outputs and gradients each styled apart), op nodes ellipses; ops
recorded under `tg.scope(...)` or inside an `nn.Module` call are drawn as nested, labelled clusters,
those of the library's own functions (batch_norm, cross_entropy, ...) collapsed by default."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .check import Audit, Report
from .check import compare as check_compare
from .engine import Accumulate, Function, GradFacts, grad_facts
from .tensor import Tensor

BACKWARD_SCOPE = "backward"  # the cluster that holds the ops of the backward rules
# the scopes nn.functional records its internals under: collapsed by default (draw(..., expand=True) opens them)
LIBRARY_SCOPES = ("batch_norm", "layer_norm", "group_norm", "cross_entropy", "conv2d", "max_pool2d", "embedding")


@dataclass
class Node:
    id: str
    kind: str                      # "tensor" | "op" | "collapsed"
    label: str
    scope: tuple[str, ...]         # the nested clusters the node sits in
    style: str                     # tensor: input | param | const | intermediate | output | forward (a forward
    tensor: Tensor | None = None   #   value a backward rule reads) | seed | grad_mid (a gradient on the way) |
    ctx: Function | None = None    #   grad (a gradient asked for); op: op | grad_op; collapsed: collapsed


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, style: "" | "dashed")
    elided: dict[tuple[str, str], Node] = field(default_factory=dict)  # (op, op) edge -> the tensor it stands for
    merged: dict[str, str] = field(default_factory=dict)  # node id -> the collapsed node it is drawn in


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


def _read_by_backward(t: Tensor) -> bool:
    """A forward value (not a gradient) that the backward graph reads."""
    return _is_forward(t) and grad_facts(t) is None


def trace(*tensors: Tensor, backward: bool = False, show_values: bool = False) -> Graph:
    """Walk the graph that made `tensors` (a pure walk: nothing is rendered). With backward=True
    the tensors are gradients built with create_graph=True: the walk follows the ops of the
    backward rules and stops at the forward values they read, which become dashed inputs. A
    gradient computed from constants only (no op recorded) is joined to the gradient it was made
    from through a node for the rule that made it (id "rule<id>", ctx None)."""
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
        facts = grad_facts(t) if backward else None
        stop = backward and facts is None and _is_forward(t) and id(t) not in outputs  # a forward value read
        if ctx is not None and not stop and ctx.parents is None:
            raise ValueError(f"the graph behind {t.name or 'a tensor'} {t.shape} was freed by backward(); draw it "
                             "before backward, or pass retain_graph=True (create_graph=True for backward graphs)")
        short.setdefault(id(t), f"t{len(short)}")
        if id(t) in outputs:
            style = "grad" if backward else "output"
        elif facts is not None:
            style = "seed" if facts.kind == "seed" else "grad_mid"
        elif stop:
            style = "forward"
        elif ctx is None:
            style = "param" if type(t) is not Tensor else ("input" if t.requires_grad else "const")
        else:
            style = "intermediate"
        label = f"{t.name or (_grad_label(t, facts) if facts else None) or short[id(t)]}\\n{t.shape} " \
                f"{_DTYPE.get(t.dtype.name, t.dtype.name)}"
        if show_values:
            label += "\\n" + _summary(t._data)
            if t.grad is not None and not backward:
                label += "\\ngrad: " + _summary(t.grad._data)
        scope = _scope_of(t, backward)
        if ctx is None and facts is not None and facts.inputs:  # made from constant gradients: no op recorded
            rule = facts.rule() if facts.rule is not None else None
            oid = f"rule{id(t)}"
            scope = (BACKWARD_SCOPE,) + rule.scope if rule is not None else (BACKWARD_SCOPE,)
            g.nodes[oid] = Node(oid, "op", _unrecorded_label(facts, rule), scope, "grad_op")
            g.edges.append((oid, tid, ""))
            for u in facts.inputs:
                g.edges.append((f"t{id(u)}", oid, ""))
                stack.append(u)
        g.nodes[tid] = Node(tid, "tensor", label, scope, style, tensor=t)
        if ctx is None or stop:
            continue
        oid = f"op{id(ctx)}"
        consts = [p for p in ctx.parents if p._ctx is None and not p.requires_grad and p._data.size == 1
                  and not (backward and grad_facts(p))]
        g.nodes[oid] = Node(oid, "op", _op_label(ctx, consts), _op_scope(ctx, backward),
                            "grad_op" if ctx.grad_of else "op", ctx=ctx)
        g.edges.append((oid, tid, ""))
        for p in ctx.parents:
            if any(p is c for c in consts):
                continue
            g.edges.append((f"t{id(p)}", oid, "dashed" if backward and _read_by_backward(p) else ""))
            stack.append(p)
    if not backward:  # a parameter sits in the module that reads it
        first: dict[str, str] = {}
        for a, b, _ in g.edges:
            first.setdefault(a, b)
        for n in g.nodes.values():
            if n.style == "param" and n.id in first and n.tensor is not None:  # (a param node has its tensor)
                n.scope = _module_scope(n.tensor, g.nodes[first[n.id]].scope)
    return g


def _grad_label(t: Tensor, facts: GradFacts) -> str | None:
    """A gradient named after what it is the gradient of: dL/dxc; one consumer's part of it, dL/dxc via Mul."""
    of = facts.of()
    if of is None:
        return None
    if facts.kind == "seed":
        if of._data.size == 1 and t._data.size == 1 and t._data.item() == 1:
            return "seed dL/dL = 1"
        return f"seed dL/d{of.name or '[output]'}"
    name = f"dL/d{of.name}" if of.name else f"dL/d[{type(of._ctx).__name__} out]" if of._ctx else None
    if name is None or not facts.part:
        return name
    rule = facts.rule() if facts.rule is not None else None
    return f"{name}, part\\nvia {rule!r}" if rule is not None else f"{name}, partial sum"


def _named(n: Node) -> bool:
    """A tensor the user named, or a gradient of one: drawn as a box, never elided."""
    if n.tensor is None:
        return True
    facts = grad_facts(n.tensor) if n.style in ("grad_mid", "seed") else None
    of = facts.of() if facts is not None else None
    return bool(n.tensor.name or (of is not None and of.name))


_SYMBOL = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Pow": "**"}
_GATHER = {"sum": "(sum of the gradients\\nfrom several consumers)"}


def _op_label(ctx: Function, consts: list[Tensor]) -> str:
    """An op's label: its name, scalar constants folded in, and the rule it belongs to."""
    name, mark = type(ctx).__name__, ctx.grad_of
    if isinstance(mark, Accumulate) and mark.kind == "into_grad":
        return "copy into .grad" if name == "Cast" else f"{name}\\n(add to .grad)"
    label = name + "".join(_folded(ctx, p) for p in consts)
    if isinstance(mark, Accumulate):
        return label + "\\n" + _GATHER.get(mark.kind, f"({mark.kind})")
    return label + (f"\\n(in {type(mark).__name__}.backward)" if mark is not None else "")


def _unrecorded_label(facts: GradFacts, rule: Function | None) -> str:
    """The node standing for a step of backward computed on constants only (so no op was recorded)."""
    if facts.kind == "sum":
        return "Add\\n" + _GATHER["sum"]
    if facts.kind == "into_grad":
        return "copy into .grad" if len(facts.inputs) == 1 else "Add\\n(add to .grad)"
    return f"{rule!r}.backward\\n(on constants)" if rule is not None else "backward rule\\n(on constants)"


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
    if t._ctx is None or backward and _is_forward(t):  # leaves and forward values read: outside the clusters
        return ()
    return _op_scope(t._ctx, backward)


def _module_scope(param: Tensor, reader: tuple[str, ...]) -> tuple[str, ...]:
    """The cluster of a parameter: the module path its name gives ("layers.1.bn.weight" sits in
    "layers.1.bn") within the scopes of an op that reads it, else those scopes without the library's."""
    module = param.name.rpartition(".")[0] if param.name else ""
    if module in reader:
        return reader[:reader.index(module) + 1]
    if param.name and not module and reader:  # a module called on its own names its parameters bare
        return reader[:1]
    while reader and reader[-1] in LIBRARY_SCOPES:
        reader = reader[:-1]
    return reader


def default_collapse(g: Graph) -> list[str]:
    """The scopes draw collapses unless told otherwise: those of the library's own functions
    (LIBRARY_SCOPES) that the graph holds, in the order met."""
    met = dict.fromkeys(s for n in g.nodes.values() for s in n.scope)
    return [s for s in met if s in LIBRARY_SCOPES]


def _collapse(g: Graph, names: Iterable[str]) -> Graph:
    """Replace every node inside a scope named in `names` by one node for that scope."""
    names = set(names)
    out = Graph()
    rename = out.merged
    ids: dict[tuple[str, ...], str] = {}
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


def _compact(g: Graph, keep: Iterable[str] = ()) -> Graph:
    """Compact chains: an unnamed intermediate tensor (not an output, a leaf, a gradient of a named
    tensor, nor in `keep`) made by one drawn op and read by drawn ops becomes the edges from that op
    to its readers; Graph.elided maps each such edge to the tensor, whose shape labels it."""
    keep = set(keep)
    made_by: dict[str, str] = {}
    read_by: dict[str, list[str]] = {}
    for a, b, _ in g.edges:
        if g.nodes[b].kind == "tensor":
            made_by[b] = a
        else:
            read_by.setdefault(a, []).append(b)
    gone = {n.id for n in g.nodes.values()
            if n.kind == "tensor" and n.style in ("intermediate", "grad_mid") and n.id not in keep and not _named(n)
            and n.id in made_by and read_by.get(n.id) and g.nodes[made_by[n.id]].kind != "tensor"}
    out = Graph({k: n for k, n in g.nodes.items() if k not in gone})
    for a, b, style in g.edges:
        if b in gone:
            continue
        if a in gone:
            out.elided[(made_by[a], b)] = g.nodes[a]
            a = made_by[a]
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
            tid = f"t{id(t)}"
            if tid in g.nodes and t.grad is not None:
                (row,) = check_compare({"grad": t.grad}, {"grad": ref}, rtol=rtol).rows
                marks[tid] = (row.ok, f"max rel err {row.max_rel:.1e} {verdict(row.ok)}")
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
    "seed": {"fillcolor": "#f3ecfa", "color": "#6a3d9a", "penwidth": "2", "style": "rounded,bold,filled"},
    "grad_mid": {"fillcolor": "#f3ecfa", "color": "#6a3d9a"},
    "grad": {"fillcolor": "#e6d5f5", "penwidth": "2.5"},
}
_OP_FILL = {"op": "#dddddd", "grad_op": "#e6d5f5"}
_OVERLAY = {True: "#9be29b", False: "#ff8a80"}

# the legend: (key, what it means); the keys are the styles above, the op styles, "collapsed", "edge"
# (an elided tensor) and "ok"/"off" (the overlay)
LEGEND = [
    ("input", "input (requires grad)"), ("param", "parameter"), ("const", "constant"),
    ("intermediate", "intermediate tensor"), ("edge", "unnamed intermediate,\\ndrawn as an edge (its shape)"),
    ("output", "output"), ("op", "op"), ("collapsed", "collapsed cluster\\n(expand=True opens it)"),
    ("grad_op", "op of a backward rule\\n(the rule in brackets)"), ("forward", "forward value read\\nby backward"),
    ("seed", "seed: the gradient\\nbackward starts from"), ("grad_mid", "gradient on the way\\n(dL/dxc)"),
    ("grad", "gradient asked for"), ("ok", "matches the hand\\nderivation (overlay)"),
    ("off", "differs from the hand\\nderivation (overlay)"),
]


def _legend_into(graph: Any, keys: Iterable[str]) -> None:
    """Sample nodes for `keys` (see LEGEND), in rows of four, into `graph` (a cluster "legend")."""
    keys = set(keys)
    rows: list[list[str]] = [[]]
    with graph.subgraph(name="cluster_legend") as leg:
        leg.attr(label="legend", style="rounded", color="#bbbbbb", fontsize="11", fontcolor="#333333")
        for key, text in LEGEND:  # (dot lays a rank out right to left in the order given: each row reversed)
            if key not in keys:
                continue
            if len(rows[-1]) == 4:
                rows.append([])
            nid = f"legend_{key}"
            rows[-1].append(nid)
            if key == "edge":
                leg.node(nid, label=f"op ──(4, 3)──▶ op\\n{text}", shape="plaintext", fontsize="9")
                continue
            n = Node(nid, "op" if key in _OP_FILL else "collapsed" if key == "collapsed" else "tensor", text, (),
                     key if key not in _OVERLAY_KEYS else "intermediate")
            attrs = _node_attrs(n, (key == "ok", "") if key in _OVERLAY_KEYS else None)
            leg.node(nid, **{**attrs, "label": text, "fontsize": "9"})
        for row in rows:
            with leg.subgraph() as r:
                r.attr(rank="same")
                for a, b in zip(row, row[1:]):
                    r.edge(a, b, style="invis")
        for above, below in zip(rows, rows[1:]):
            leg.edge(above[0], below[0], style="invis")


_OVERLAY_KEYS = {"ok", "off"}


def legend(keys: Iterable[str] | None = None) -> Any:
    """The legend on its own, as a graphviz.Digraph: every entry of LEGEND, or those in `keys`."""
    import graphviz
    dot = graphviz.Digraph(graph_attr={"fontname": "Helvetica", "nodesep": "0.25", "ranksep": "0.25"},
                           node_attr={"fontname": "Helvetica", "fontsize": "10"})
    _legend_into(dot, [k for k, _ in LEGEND] if keys is None else keys)
    return dot


def _legend_keys(g: Graph, marks: Mapping[str, tuple[bool, str]]) -> list[str]:
    """The legend entries a drawn graph needs: the styles it uses, elided edges, the overlay's colours."""
    used = {n.style for n in g.nodes.values()} | ({"edge"} if g.elided else set())
    return [k for k, _ in LEGEND if k in used or (k == "ok" and any(ok for ok, _ in marks.values()))
            or (k == "off" and any(not ok for ok, _ in marks.values()))]


def _ranks(g: Graph) -> dict[str, int]:
    """Each node's rank as dot lays it out without clusters: the longest path to it from a source."""
    into: dict[str, list[str]] = {}
    for a, b, _ in g.edges:
        into.setdefault(b, []).append(a)
    rank: dict[str, int] = {}
    for start in g.nodes:  # iteratively: graphs may be deep
        stack = [start]
        while stack:
            n = stack[-1]
            todo = [a for a in into.get(n, []) if a not in rank]
            if n in rank or not todo:
                rank.setdefault(n, 1 + max((rank[a] for a in into.get(n, [])), default=-1))
                stack.pop()
            else:
                stack.extend(todo)
    return rank


def _auto_rankdir(rank: dict[str, int]) -> str:
    """Left to right when top to bottom would be tall: ranks (about 0.7 inch each) against the
    widest rank (about 1.3 inch a node)."""
    widths = Counter(rank.values())
    depth, width = max(widths, default=0) + 1, max(widths.values(), default=1)
    return "LR" if depth * 0.7 > 2 * width * 1.3 else "TB"


def draw(*tensors: Tensor, backward: bool = False, show_values: bool = False, collapse: Iterable[str] | None = None,
         expand: bool = False, compact: bool = True, legend: bool = False,
         compare: Audit | Report | Mapping[Tensor, Any] | None = None, rtol: float = 1e-12, max_nodes: int | None = 500,
         rankdir: str | None = None, wrap: int = 1, size: str | None = None, title: str | None = None) -> Any:
    """The graph that made `tensors` as a graphviz.Digraph (render it with .render(format="svg")
    or "png"; it displays itself in Jupyter). backward=True draws gradients made with
    create_graph=True (see trace). collapse: scope or module names each drawn as one node; by
    default the library's own (default_collapse: batch_norm, cross_entropy, ...), none with
    expand=True. compact: unnamed intermediate tensors drawn as the edges between their ops,
    labelled with their shape. legend: a legend of the looks used. compare: a tg.check.Report or
    {tensor: analytic gradient}; compared tensors turn green (max relative error <= rtol) or red,
    with the error in their label. rankdir: "TB" or "LR" (default: LR where top to bottom would be
    tall); wrap: a long graph cut into that many bands of ranks laid side by side (a chain of 24
    ops in 2 columns of 12); size: Graphviz's size ("14,9": at most 14 x 9 inches, scaled down).
    A graph of more than
    max_nodes nodes is an error that names the scopes worth collapsing."""
    import graphviz  # imported here so that the engine does not need it

    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"draw: expected Tensors, got {type(t).__name__}")
    if backward and all(t._ctx is None and not grad_facts(t) for t in tensors):
        raise ValueError("backward=True draws the graph of gradients, and these have none: "
                         "call loss.backward(create_graph=True) (or tg.grad(..., create_graph=True)) first")
    g = trace(*tensors, backward=backward, show_values=show_values)
    marks = _overlay(g, compare, rtol) if compare is not None else {}
    names = ([collapse] if isinstance(collapse, str) else list(collapse) if collapse is not None
             else [] if expand else [s for s in default_collapse(g)  # a scope holding a compared tensor stays open
                                     if not any(s in g.nodes[k].scope for k in marks)])
    if names:
        g = _collapse(g, names)
    if max_nodes is not None and len(g.nodes) > max_nodes:
        sizes = Counter(s for n in g.nodes.values() for s in n.scope)
        advice = ", ".join(f"{s!r} ({k} nodes)" for s, k in sizes.most_common(8))
        hint = (f"collapse scopes, e.g. draw(..., collapse=[...]) with some of {advice}" if advice else
                "it has no scopes to collapse: record parts of it inside tg.scope('name') or nn.Modules")
        raise GraphTooLargeError(f"the graph has {len(g.nodes)} nodes (max_nodes={max_nodes}): {hint}; "
                                 "or pass max_nodes=None")
    if compact:
        g = _compact(g, keep=marks)
    rank = _ranks(g)
    per = -(-(max(rank.values(), default=0) + 1) // max(wrap, 1))  # ranks per band
    dot = graphviz.Digraph(graph_attr={"rankdir": rankdir or _auto_rankdir(rank), "fontname": "Helvetica",
                                       "nodesep": "0.25", "ranksep": "0.3", **({"size": size} if size else {}),
                                       **({"label": title, "labelloc": "t"} if title else {})},
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"arrowsize": "0.6", "fontname": "Helvetica", "fontsize": "8",
                                      "fontcolor": "#666666"})
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
        elided = g.elided.get((a, b))
        dot.edge(a, b, **({"style": style} if style else {}),
                 **({"constraint": "false"} if rank[a] // per != rank[b] // per else {}),
                 **({"label": " " + str(elided.tensor.shape)} if elided is not None and elided.tensor is not None
                    else {}))
    if legend:
        _legend_into(dot, _legend_keys(g, marks))
    return dot


def _node_attrs(n: Node, mark: tuple[bool, str] | None) -> dict[str, str]:
    if n.kind == "op":
        attrs = {"shape": "ellipse", "style": "filled", "fillcolor": _OP_FILL[n.style], "label": n.label,
                 "fontsize": "9"}
    elif n.kind == "collapsed":
        attrs = {"shape": "box3d", "style": "filled", "fillcolor": "#f5f0dc", "label": n.label}
    else:
        attrs = {"shape": "box", "style": "rounded,filled", "label": n.label, **_TENSOR_STYLE[n.style]}
    if mark is not None:
        ok, text = mark
        attrs.update(fillcolor=_OVERLAY[ok], penwidth="4" if "FIRST WRONG" in text else "2.5",
                     label=attrs["label"] + ("\\n" + text if text else ""))
    return attrs


def to_dot(*tensors: Tensor, backward: bool = False, show_values: bool = False, **options: Any) -> str:
    """The DOT source of draw(...)."""
    return draw(*tensors, backward=backward, show_values=show_values, **options).source


def to_html(*tensors: Tensor, backward: bool = False, **options: Any) -> Any:
    """One self-contained interactive HTML page of the graph (tinygrad_bn/html.py): pan, zoom, node
    facts, collapsible clusters, backward step by step. A str that displays itself in Jupyter."""
    from .html import to_html as page
    return page(*tensors, backward=backward, **options)
