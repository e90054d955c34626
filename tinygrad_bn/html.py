"""tg.viz.to_html: one self-contained HTML page showing a graph interactively (no server, no network).

Graphviz lays out every collapse state the page offers (the local `dot`, at build time); the page
holds those SVGs, the facts of each node (shape, dtype, value and gradient statistics, the overlay
error) and the backward pass as steps: the ops in reverse topological order, each with the gradient
its rule receives and the gradient it sends to each input, and where a tensor's gradient is the sum
of several consumers' (the multivariate chain rule). Everything drawn comes from viz (trace, draw);
the page's script (graph_page.html, ours) only shows, hides and highlights."""
from __future__ import annotations

import html as html_escape
import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .engine import _toposort, no_grad
from .engine import grad as autograd_grad
from .tensor import Tensor
from .viz import _OP_FILL, _OVERLAY, _TENSOR_STYLE, LEGEND, Graph, _collapse, _overlay, draw, trace

_TEMPLATE = Path(__file__).with_name("graph_page.html")


def _stats(a: np.ndarray) -> dict[str, Any]:
    """What the panel shows of an array: small ones whole, others as mean, std, min, max, norm."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        return {}
    f = a.astype(np.float64)
    out: dict[str, Any] = {"shape": list(a.shape), "dtype": a.dtype.name}
    if a.size == 0:
        return out
    out.update(mean=float(f.mean()), std=float(f.std()), min=float(f.min()), max=float(f.max()),
               norm=float(np.sqrt((f * f).sum())))
    if a.size <= 12:
        out["values"] = np.round(f, 6).ravel().tolist()
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


def _scope_names(g: Graph) -> list[str]:
    """Every cluster name of the graph, outermost first (a name collapses all clusters it names)."""
    seen: dict[str, int] = {}
    for n in g.nodes.values():
        for depth, name in enumerate(n.scope):
            seen[name] = min(seen.get(name, depth), depth)
    return sorted(seen, key=lambda k: (seen[k], k))


def _states(names: list[str], default: list[str], max_states: int) -> list[frozenset]:
    """The collapse states the page offers: every subset of the cluster names when there are few;
    else the default, everything expanded, and the default with one name toggled."""
    if 2 ** len(names) <= max_states:
        return [frozenset(c) for r in range(len(names) + 1) for c in itertools.combinations(names, r)]
    base = frozenset(default)
    return list(dict.fromkeys([base, frozenset()] + [base ^ {n} for n in names]))


def _svg(dot_source: str) -> str:
    """The SVG of a DOT source, as inline markup (no XML header, no DOCTYPE: nothing that names a URL
    to fetch)."""
    import graphviz

    from ._missing import DotNotFoundError
    try:
        svg = graphviz.Source(dot_source).pipe(format="svg").decode()
    except graphviz.ExecutableNotFound:
        raise DotNotFoundError("tg.viz.to_html (Graphviz lays out the page's graphs)") from None
    svg = svg[svg.index("<svg"):]
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


def _backward_steps(tensors: tuple[Tensor, ...], g: Graph) -> list[dict[str, Any]]:
    """The backward pass of the graph's sum of outputs, op by op in reverse topological order: the
    gradient each rule receives (the total at its output), what it sends to each input (the rule
    itself, run once more on that total), and, per input, which of the gradients it sums this is."""
    roots = [t for t in tensors if t.requires_grad and t._data.dtype.kind == "f"]
    if not roots:
        return []
    wanted = _toposort(roots)
    order = [t for t in wanted if t._ctx is not None and t._ctx.parents is not None]
    with no_grad():
        totals = autograd_grad(roots, wanted, [Tensor._wrap(np.ones(r.shape, r.dtype)) for r in roots],
                               retain_graph=True, allow_unused=True)
    total = {t: gr for t, gr in zip(wanted, totals)}
    steps: list[dict[str, Any]] = []
    for t in reversed(order):
        ctx, g_out = t._ctx, total.get(t)
        if g_out is None:
            continue
        with no_grad():
            sent = ctx.backward(g_out, t)
        sent = sent if isinstance(sent, tuple) else (sent,)
        edges: list[dict[str, Any]] = []
        for p, need, pg in zip(ctx.parents, ctx.needs, sent):
            if not need or pg is None:  # (a rule may send one gradient for two inputs: a * a sends 2a da once)
                continue
            pg = pg if isinstance(pg, Tensor) else Tensor._wrap(np.asarray(pg))
            if pg.shape != p.shape:
                pg = pg._sum_to(p.shape)  # the engine's one unbroadcast, as backward does it
            edges.append({"to": f"t{id(p)}", "tensor": p, "grad": _stats(pg._data)})
        steps.append({"op": f"op{id(ctx)}", "out": f"t{id(t)}", "rule": type(ctx).__name__,
                      "receives": _stats(g_out._data), "sends": edges})
    # how many gradients each tensor receives, and which of them each send is: the sum's progress
    count: dict[str, int] = {}
    for e in (e for s in steps for e in s["sends"]):
        count[e["to"]] = count.get(e["to"], 0) + 1
    arrived: dict[str, int] = {}
    for e in (e for s in steps for e in s["sends"]):
        arrived[e["to"]] = arrived.get(e["to"], 0) + 1
        p_total = total.get(e.pop("tensor"))
        e.update(arrived=arrived[e["to"]], of=count[e["to"]],
                 total=_stats(p_total._data) if p_total is not None else {})
    return steps


def _node_facts(g: Graph, marks: Mapping[str, tuple[bool, str]]) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for n in g.nodes.values():
        f: dict[str, Any] = {"kind": n.kind, "style": n.style, "scope": "/".join(n.scope),
                             "label": n.label.replace("\\n", "\n")}
        if n.tensor is not None:
            t = n.tensor
            # a name a learner can read: the tensor's own, else what made it (never an internal id like t15)
            own = t.name or (f"{type(t._ctx).__name__}'s output" if t._ctx is not None else
                             f"an unnamed {n.style} {t.shape}")
            f.update(name=own, value=_stats(t._data))
            if t.grad is not None:
                f["grad"] = _stats(t.grad._data)
            if t._ctx is not None:
                f["made_by"] = f"op{id(t._ctx)}"  # where the page highlights it if it is drawn as an edge
        if n.ctx is not None:
            f["rule"] = type(n.ctx).__name__
        if n.id in marks:
            f["check"] = {"ok": marks[n.id][0], "text": marks[n.id][1].replace("\\n", "; ")}
        facts[n.id] = f
    return facts


def _legend() -> list[dict[str, str]]:
    """viz's legend (its words, its colours) for the page's side panel."""
    fill = {**{k: v["fillcolor"] for k, v in _TENSOR_STYLE.items()}, **_OP_FILL, "collapsed": "#f5f0dc",
            "ok": _OVERLAY[True], "off": _OVERLAY[False], "edge": "#ffffff"}
    return [{"name": text.replace("\\n", " "), "fill": fill.get(key, "#ffffff")} for key, text in LEGEND]


class Page(str):
    """The page's HTML (a str); in Jupyter it displays itself inline, in an isolated frame."""

    def __repr__(self) -> str:
        return f"<tinygrad_bn page, {len(self):,} characters: write it to a .html file or display it in Jupyter>"

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html_escape.escape(str(self))}" style="width:100%;height:640px;'
                'border:1px solid #ccc" sandbox="allow-scripts"></iframe>')


def to_html(*tensors: Tensor, backward: bool = False, show_values: bool = False, collapse: Any = None,
            compare: Any = None, rtol: float = 1e-12, max_states: int = 64, title: str | None = None,
            **options: Any) -> Page:
    """One self-contained HTML page showing the graph that made `tensors` (backward=True: the graph
    of gradients made with create_graph=True): pan and zoom, click a node for its facts, collapse
    and expand clusters, step through backward op by op (forward graphs; the pass differentiates the
    sum of the outputs). collapse: the scope names collapsed at first (default: the renderer's
    default); compare: an overlay as in viz.draw. Every layout comes from the local Graphviz `dot`;
    the page needs no server and no network. Extra options go to viz.draw."""
    if not tensors:
        raise TypeError("to_html: give the tensors whose graph to show, e.g. tg.viz.to_html(loss)")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"to_html: expected Tensors, got {type(t).__name__}")
    g = trace(*tensors, backward=backward, show_values=show_values)
    names = _scope_names(g)
    if collapse is None:
        from . import viz
        collapse = viz.default_collapse(g) if hasattr(viz, "default_collapse") else []
    collapse = [collapse] if isinstance(collapse, str) else list(collapse)
    states = _states(names, collapse, max_states)
    start = frozenset(collapse) & frozenset(names)
    if start not in states:
        states.insert(0, start)
    views = {}
    for state in states:
        shown = _collapse(g, sorted(state)) if state else g
        dot = draw(*tensors, backward=backward, show_values=show_values, collapse=sorted(state), compare=compare,
                   rtol=rtol, max_nodes=None, **options)
        # which node each node is drawn as (itself, or the collapsed cluster holding it)
        where = {n: shown.merged.get(n, n) for n in g.nodes}
        clusters = {m.id: m.label.split("\\n")[0] for m in shown.nodes.values() if m.kind == "collapsed"}
        views[_key(state)] = {"svg": _svg(dot.source), "where": where, "collapsed": clusters,
                              "state": sorted(state)}
    marks = _overlay(g, compare, rtol) if compare is not None else {}
    data: dict[str, Any] = {"title": title or ("backward graph" if backward else "forward graph"), "names": names,
            "start": _key(start), "views": views, "nodes": _node_facts(g, marks),
            "steps": [] if backward else _backward_steps(tensors, g),
            "seed_note": "" if backward or (len(tensors) == 1 and tensors[0].size == 1) else
            "These outputs are not one scalar: L here is the sum of all their elements.",
            "legend": _legend()}
    page = _TEMPLATE.read_text()
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # nothing closes the script early
    return Page(page.replace("__TITLE__", html_escape.escape(data["title"])).replace("__DATA__", payload))


def page_data(page: str) -> dict[str, Any]:
    """The data a page from to_html holds (its layouts, node facts and backward steps), read back."""
    return json.loads(page.split("const DATA = ", 1)[1].split(";\n", 1)[0].replace("<\\/", "</"))


def _key(state: frozenset) -> str:
    return "|".join(sorted(state))
