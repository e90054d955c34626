"""The graph renderer: trace (nodes, edges, scopes) and the DOT that draw/to_dot make of it, checked
both as data and as DOT text; clusters per tg.scope and module path; collapse; backward graphs;
the comparison overlay; the size guard; and real renders through Graphviz's `dot` (SVG, PNG, the
gallery)."""
import re
import struct
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import requires_dot

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.viz import GraphTooLargeError, draw, to_dot, trace

SVG = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILL = {"ok": "#9be29b", "off": "#ff8a80"}  # the overlay's colours (viz._node_attrs)
FULL = {"expand": True, "compact": False}  # draw every node trace walks: no cluster collapsed, no tensor elided

# ------------------------------------------------------------------------------ DOT parsing

_ID = r'("(?:[^"\\]|\\.)*"|[^\s\[\]"{}]+)'
_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s\]]+)')


def _unquote(s: str) -> str:
    return s[1:-1].replace('\\"', '"') if s.startswith('"') else s


def _attrs(s: str) -> dict[str, str]:
    return {k: _unquote(v) for k, v in _ATTR.findall(s or "")}


def parse_dot(src: str) -> SimpleNamespace:
    """The DOT text as data: nodes {id: attrs}, where {id: labels of the enclosing clusters,
    outermost first}, clusters {name: (names of the enclosing subgraphs, attrs)}, edges
    [(from, to, attrs)] in source order."""
    nodes, where, clusters, edges, stack = {}, {}, {}, [], []
    for line in src.splitlines():
        s = line.strip()
        if m := re.fullmatch(r"subgraph " + _ID + r" \{", s):
            name = _unquote(m[1])
            clusters[name] = (tuple(stack), {})
            stack.append(name)
        elif s == "}":
            if stack:
                stack.pop()
        elif m := re.fullmatch(_ID + " -> " + _ID + r"(?: \[(.*)\])?", s):
            edges.append((_unquote(m[1]), _unquote(m[2]), _attrs(m[3])))
        elif (m := re.fullmatch(_ID + r" \[(.*)\]", s)) and m[1] not in ("graph", "node", "edge"):
            nid = _unquote(m[1])
            nodes[nid] = _attrs(m[2])
            where[nid] = tuple(clusters[c][1].get("label") for c in stack)
        elif stack and "=" in s:  # a cluster's own attributes (label, style)
            clusters[stack[-1]][1].update(_attrs(s))
    return SimpleNamespace(nodes=nodes, where=where, clusters=clusters, edges=edges)


def by_name(g) -> dict:
    """tensor name -> node, for the named tensor nodes of a traced Graph."""
    return {n.tensor.name: n for n in g.nodes.values() if n.tensor is not None and n.tensor.name}


# ------------------------------------------------------------------------------ graphs used below

def bn_graph(seed: int = 0) -> SimpleNamespace:
    """Training-mode batch norm of a named x (4, 3) through F.batch_norm, loss = sum(y * dy)."""
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.standard_normal((4, 3)) * 2 + 1, requires_grad=True, name="x")
    gamma = tg.Tensor(rng.standard_normal(3) + 1, requires_grad=True, name="gamma")
    beta = tg.Tensor(rng.standard_normal(3), requires_grad=True, name="beta")
    dy = rng.standard_normal((4, 3))
    y = F.batch_norm(x, None, None, gamma, beta, training=True)
    y.name = "y"
    loss = (y * tg.Tensor(dy, name="dy")).sum()
    loss.name = "loss"
    return SimpleNamespace(x=x, gamma=gamma, beta=beta, dy=dy, y=y, loss=loss)


def bn_staged_graph(seed: int = 0) -> SimpleNamespace:
    """The same batch norm written out with F.standardize (as the gallery does), gamma and beta
    used without a reshape, and the stage tensors returned."""
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.standard_normal((4, 3)) * 2 + 1, requires_grad=True, name="x")
    gamma = tg.Tensor(rng.standard_normal(3) + 1, requires_grad=True, name="gamma")
    beta = tg.Tensor(rng.standard_normal(3), requires_grad=True, name="beta")
    dy = rng.standard_normal((4, 3))
    with tg.scope("batch_norm"):
        s = F.standardize(x, (0,), 1e-5)
        y = s["x_hat"] * gamma + beta
    loss = (y * tg.Tensor(dy, name="dy")).sum()
    loss.name = "loss"
    return SimpleNamespace(x=x, gamma=gamma, beta=beta, dy=dy, stages=s, y=y, loss=loss)


class Block(nn.Module):
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator):
        self.fc = nn.Linear(n_in, n_out, bias=False, dtype=np.float64, rng=rng)
        self.bn = nn.BatchNorm1d(n_out, dtype=np.float64)

    def forward(self, x):
        return self.bn(self.fc(x)).relu()


class Net(nn.Module):
    def __init__(self, rng: np.random.Generator):
        self.layers = nn.Sequential(Block(4, 5, rng), Block(5, 5, rng))
        self.head = nn.Linear(5, 3, dtype=np.float64, rng=rng)

    def forward(self, x):
        return self.head(self.layers(x))


def net_graph(seed: int = 0) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    net = Net(rng)
    loss = F.cross_entropy(net(tg.Tensor(rng.standard_normal((6, 4)), name="batch")), rng.integers(0, 3, 6))
    loss.name = "loss"
    return SimpleNamespace(net=net, loss=loss)


def scoped_chain(blocks: int = 20, per_block: int = 100):
    """A chain of blocks * per_block element-wise ops, each block in its own tg.scope."""
    x = tg.Tensor(np.linspace(-1, 1, 3), requires_grad=True, name="x")
    y = x
    for b in range(blocks):
        with tg.scope(f"block{b}"):
            for i in range(per_block):
                y = y * 0.999 if i % 2 else y + 0.001
    return x, y


def ops_in(g, scope: tuple | None = None) -> Counter:
    """Op names (the first label line) of the op nodes, those of one scope if given."""
    return Counter(n.label.split("\\n")[0] for n in g.nodes.values()
                   if n.kind == "op" and (scope is None or n.scope == scope))


# ------------------------------------------------------------------------------ forward structure

def test_batch_norm_graph_has_its_ops_and_named_stages():
    b = bn_graph()
    g = trace(b.loss)
    # mu = sum/m; xc = x - mu; var = sum(xc*xc)/m; std = sqrt(var + eps); x_hat = xc * (1/std);
    # y = x_hat*gamma + beta (gamma, beta (C,) broadcast against (N, C) without a reshape)
    assert ops_in(g, ("batch_norm",)) == Counter({"Sum": 2, "Div": 3, "Sub": 1, "Mul": 3, "Sqrt": 1, "Add": 2})
    assert ops_in(g, ()) == Counter({"Mul": 1, "Sum": 1})  # y * dy, then sum
    labels = {n.label for n in g.nodes.values() if n.kind == "op"}
    assert "Add\\n· + 1e-05" in labels and "Div\\n· / 4" in labels  # scalar constants folded into the op (eps, m)
    assert "Div\\n1 / ·" in labels  # 1 / std: the constant on its side
    names = by_name(g)
    for stage, shape in {"mu": (1, 3), "xc": (4, 3), "var": (1, 3), "std": (1, 3), "x_hat": (4, 3)}.items():
        assert names[stage].kind == "tensor" and names[stage].scope == ("batch_norm",)
        assert names[stage].label == f"{stage}\\n{shape} f64"
    # the same in the DOT text: the stages sit in the batch_norm cluster, the loss outside any cluster
    d = parse_dot(to_dot(b.loss, **FULL))
    for stage in F.STAGES:
        assert d.where[names[stage].id] == ("batch_norm",)
    assert d.where[names["loss"].id] == () and d.where[names["x"].id] == ()
    assert all(name.startswith("cluster_") for name in d.clusters)  # else dot draws no box
    assert {c[1].get("label") for c in d.clusters.values()} == {"batch_norm"}
    assert set(d.nodes) == set(g.nodes)


def test_edges_run_from_parent_tensors_through_the_op_to_its_output():
    b = bn_graph()
    g = trace(b.loss)
    names = by_name(g)
    kinds = {nid: n.kind for nid, n in g.nodes.items()}
    for a, c, _ in g.edges:  # bipartite: tensor -> op -> tensor
        assert {kinds[a], kinds[c]} == {"tensor", "op"}
        assert kinds[c] == "op" or g.nodes[c].tensor._ctx is g.nodes[a].ctx  # an op points at its own output
    # x_hat = xc * (1 / std): xc -> Mul, inv -> Mul, Mul -> x_hat, std -> Div -> inv, never the other way round
    div = f"op{id(names['x_hat'].tensor._ctx)}"  # the Mul that makes x_hat
    xc, std, x_hat = names["xc"].id, names["std"].id, names["x_hat"].id
    inv = f"t{id(names['x_hat'].tensor._ctx.parents[1])}"
    assert [(a, c) for a, c, _ in g.edges if c == div] == [(xc, div), (inv, div)]  # in argument order
    assert (div, x_hat) in [(a, c) for a, c, _ in g.edges]
    assert (x_hat, div) not in [(a, c) for a, c, _ in g.edges]
    recip = f"op{id(names['x_hat'].tensor._ctx.parents[1]._ctx)}"
    assert [(a, c) for a, c, _ in g.edges if c == recip] == [(std, recip)]
    # var = mean(xc * xc): the Mul reads xc twice, so two edges
    mul = f"op{id(names['var'].tensor._ctx.parents[0]._ctx.parents[0]._ctx)}"
    assert [(a, c) for a, c, _ in g.edges if c == mul] == [(xc, mul), (xc, mul)]
    # the DOT text holds exactly these edges, same direction
    d = parse_dot(to_dot(b.loss, **FULL))
    assert [(a, c) for a, c, _ in d.edges] == [(a, c) for a, c, _ in g.edges]
    src = to_dot(b.loss, **FULL)
    assert f"{xc} -> {div}" in src and f"{div} -> {x_hat}" in src and f"{x_hat} -> {div}" not in src


def test_every_op_has_one_output_edge_and_one_input_edge_per_tensor_parent():
    b = bn_graph()
    g = trace(b.loss)
    for n in g.nodes.values():
        if n.kind != "op":
            continue
        outs = [c for a, c, _ in g.edges if a == n.id]
        ins = [a for a, c, _ in g.edges if c == n.id]
        assert len(outs) == 1 and g.nodes[outs[0]].tensor._ctx is n.ctx
        tensor_parents = [p for p in n.ctx.parents if p.data.size > 1 or p.requires_grad]  # scalars are folded
        assert ins == [f"t{id(p)}" for p in tensor_parents]


def test_labels_show_name_shape_and_dtype():
    a = tg.Tensor(np.ones((2, 3), np.float32), requires_grad=True, name="a")
    out = (a * 2).cast(np.float64).sum()
    g = trace(out)
    labels = sorted(n.label for n in g.nodes.values() if n.kind == "tensor")
    assert "a\\n(2, 3) f32" in labels
    assert any(re.fullmatch(r"t\d+\\n\(2, 3\) f32", s) for s in labels)  # unnamed: a short id
    assert any(re.fullmatch(r"t\d+\\n\(2, 3\) f64", s) for s in labels)  # after the cast
    assert any(re.fullmatch(r"t\d+\\n\(\) f64", s) for s in labels)  # the scalar output
    assert ops_in(g) == Counter({"Mul": 1, "Cast": 1, "Sum": 1})
    dot_labels = {v["label"] for v in parse_dot(to_dot(out)).nodes.values()}
    assert "a\\n(2, 3) f32" in dot_labels and "Mul\\n· * 2" in dot_labels


def test_inputs_parameters_constants_and_output_are_styled_apart():
    rng = np.random.default_rng(3)
    lin = nn.Linear(3, 2, dtype=np.float64, rng=rng)
    x = tg.Tensor(rng.standard_normal((4, 3)), requires_grad=True, name="xin")
    c = tg.Tensor(rng.standard_normal((4, 2)), name="c")
    out = (lin(x) * c).sum()
    g = trace(out)
    style = {n.id: n.style for n in g.nodes.values()}
    ids = {"param": f"t{id(lin.weight)}", "input": f"t{id(x)}", "const": f"t{id(c)}", "output": f"t{id(out)}"}
    assert {k: style[v] for k, v in ids.items()} == {k: k for k in ids}
    assert style[f"t{id(lin.bias)}"] == "param"
    assert g.nodes[ids["param"]].label == "weight\\n(2, 3) f64"  # a parameter is named by its attribute
    assert {n.style for n in g.nodes.values() if n.kind == "tensor" and n.id not in ids.values()} == {"param",
                                                                                                    "intermediate"}
    d = parse_dot(to_dot(out, **FULL))
    looks = {k: tuple(d.nodes[v].get(a) for a in ("fillcolor", "penwidth", "style")) for k, v in ids.items()}
    looks["intermediate"] = next(tuple(d.nodes[n.id].get(a) for a in ("fillcolor", "penwidth", "style"))
                                 for n in g.nodes.values() if n.style == "intermediate")
    assert len(set(looks.values())) == 5, looks  # five kinds of tensor, five looks
    for n in g.nodes.values():
        assert d.nodes[n.id]["shape"] == ("ellipse" if n.kind == "op" else "box")


def test_nested_scopes_become_nested_clusters():
    x = tg.Tensor(np.arange(3.0), requires_grad=True, name="x")
    with tg.scope("outer"):
        h = x.exp()
        with tg.scope("inner"):
            h = h * x
        h = h.sum()
    g = trace(h)
    assert ops_in(g, ("outer",)) == Counter({"Exp": 1, "Sum": 1})
    assert ops_in(g, ("outer", "inner")) == Counter({"Mul": 1})
    assert by_name(g)["x"].scope == ()
    d = parse_dot(to_dot(h))
    mul = next(n.id for n in g.nodes.values() if n.label == "Mul")
    exp = next(n.id for n in g.nodes.values() if n.label == "Exp")
    assert d.where[mul] == ("outer", "inner") and d.where[exp] == ("outer",) and d.where[f"t{id(x)}"] == ()
    (inner,) = [k for k, (_, attrs) in d.clusters.items() if attrs.get("label") == "inner"]
    (outer,) = [k for k, (_, attrs) in d.clusters.items() if attrs.get("label") == "outer"]
    assert d.clusters[inner][0] == (outer,) and d.clusters[outer][0] == ()
    assert re.search(r"subgraph cluster_outer \{[^}]*subgraph \"?cluster_[^{]*inner\"? \{", to_dot(h))


def test_module_attribute_paths_nest_and_parameters_sit_in_their_module():
    n = net_graph()
    g = trace(n.loss)
    names = by_name(g)
    bn1 = ("Net", "layers", "layers.1", "layers.1.bn")
    assert ops_in(g, bn1 + ("batch_norm",))["Sqrt"] == 1
    assert names["layers.1.bn.weight"].scope == bn1 and names["layers.1.bn.weight"].style == "param"
    assert names["layers.0.fc.weight"].scope == ("Net", "layers", "layers.0", "layers.0.fc")
    assert names["head.bias"].scope == ("Net", "head")
    assert {p for p, _ in n.net.named_parameters()} <= set(names)  # every parameter drawn, by its path
    d = parse_dot(to_dot(n.loss, **FULL))
    assert d.where[names["layers.1.bn.weight"].id] == bn1
    assert d.where[names["layers.1.bn.bias"].id] == bn1
    assert d.where[names["head.weight"].id] == ("Net", "head")
    sqrt1 = next(x.id for x in g.nodes.values() if x.label == "Sqrt" and x.scope[:4] == bn1)
    assert d.where[sqrt1] == bn1 + ("batch_norm",)
    # the clusters nest as the modules do: layers.1.bn in layers.1 in layers in Net
    label_of = {k: attrs.get("label") for k, (_, attrs) in d.clusters.items()}
    (bn_cluster,) = [k for k, v in label_of.items() if v == "layers.1.bn"]
    assert [label_of[p] for p in d.clusters[bn_cluster][0]] == ["Net", "layers", "layers.1"]
    assert Counter(label_of.values())["batch_norm"] == 2  # one per BatchNorm1d
    assert names["batch"].scope == () and d.where[names["batch"].id] == ()


def test_show_values_prints_small_arrays_in_full_large_ones_as_statistics_and_grads_after_backward():
    v = tg.Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True, name="v")
    w = tg.Tensor(np.arange(12.0).reshape(4, 3), requires_grad=True, name="w")
    out = (v.sum() * w).sum()
    before = by_name(trace(out, show_values=True))
    assert before["v"].label == "v\\n(2, 2) f64\\n[[1., 2.], [3., 4.]]"
    assert before["w"].label.startswith("w\\n(4, 3) f64\\nmean 5.5  std 3.45\\nmin 0  max 11")
    assert "grad" not in before["w"].label and "grad" not in before["v"].label
    assert "mean" not in by_name(trace(out))["w"].label  # values only when asked
    out.backward(retain_graph=True)  # d out / d v = sum(w) = 66 everywhere; d out / d w = sum(v) = 10
    after = by_name(trace(out, show_values=True))
    assert after["v"].label.endswith("\\ngrad: [[66., 66.], [66., 66.]]")
    assert after["w"].label.endswith("\\ngrad: mean 10  std 0\\nmin 10  max 10")
    src = to_dot(out, show_values=True)
    assert "grad: [[66., 66.], [66., 66.]]" in src and "mean 5.5  std 3.45" in src
    assert "grad:" not in to_dot(out)


# ------------------------------------------------------------------------------ collapse

def test_collapse_replaces_a_scope_by_one_node_and_keeps_the_other_edges():
    b = bn_graph()
    g = trace(b.loss)
    inside = {n.id for n in g.nodes.values() if n.scope[:1] == ("batch_norm",)}
    d = parse_dot(to_dot(b.loss, collapse=["batch_norm"], compact=False))
    assert len(d.nodes) == len(g.nodes) - len(inside) + 1 < len(g.nodes)
    (cid,) = set(d.nodes) - set(g.nodes)
    assert d.nodes[cid]["label"] == f"batch_norm\\n({len(inside)} nodes collapsed)"
    assert d.nodes[cid]["shape"] == "box3d" and d.where[cid] == () and not d.clusters
    assert set(d.nodes) - {cid} == set(g.nodes) - inside
    # every edge survives, an end inside the scope moved to the collapsed node (no self-loops)
    moved = {(cid if a in inside else a, cid if c in inside else c) for a, c, _ in g.edges}
    moved = {(a, c) for a, c in moved if a != c}
    assert {(a, c) for a, c, _ in d.edges} == moved
    for a, c in [(f"t{id(b.x)}", cid), (f"t{id(b.gamma)}", cid), (cid, f"op{id(b.loss._ctx.parents[0]._ctx)}")]:
        assert (a, c) in moved


def test_collapse_of_a_nested_module_scope_stays_in_its_parent_cluster():
    n = net_graph()
    g = trace(n.loss)
    bn1 = ("Net", "layers", "layers.1", "layers.1.bn")
    inside = {x.id for x in g.nodes.values() if x.scope[:4] == bn1}
    d = parse_dot(to_dot(n.loss, collapse=["layers.1.bn"], compact=False))
    (cid,) = set(d.nodes) - set(g.nodes)
    assert d.nodes[cid]["label"] == f"layers.1.bn\\n({len(inside)} nodes collapsed)"
    assert d.where[cid] == ("Net", "layers", "layers.1")  # drawn inside layers.1
    assert f"t{id(n.net.layers[1].bn.weight)}" not in d.nodes  # its parameters went into it
    assert f"t{id(n.net.layers[0].bn.weight)}" in d.nodes  # the other block is untouched
    assert len(d.nodes) == len(g.nodes) - len(inside) + 1
    # both blocks collapsed: two nodes; everything collapsed at once: the counts add up
    blocks = parse_dot(to_dot(n.loss, collapse=["layers.0", "layers.1"], compact=False))
    collapsed = {k: v["label"] for k, v in blocks.nodes.items() if v["shape"] == "box3d"}
    assert sorted(lbl.split("\\n")[0] for lbl in collapsed.values()) == ["layers.0", "layers.1"]
    counts = [int(re.search(r"\((\d+) nodes collapsed\)", lbl)[1]) for lbl in collapsed.values()]
    assert len(blocks.nodes) - len(collapsed) + sum(counts) == len(g.nodes)
    # the blocks are chained: layers.0 -> (the ReLU output feeds) layers.1
    c0, c1 = (k for k, v in sorted(collapsed.items(), key=lambda kv: kv[1]))
    assert (c0, c1) in {(a, c) for a, c, _ in blocks.edges}


# ------------------------------------------------------------------------------ backward graphs

def test_backward_graph_shows_the_ops_of_the_backward_rules_and_the_forward_values_they_read():
    b = bn_staged_graph()
    b.loss.backward(create_graph=True)
    g = trace(b.x.grad, b.gamma.grad, backward=True)
    ops = [n for n in g.nodes.values() if n.kind == "op"]
    assert len(ops) > 15
    forward_ops = {type(b.stages[k]._ctx).__name__ for k in F.STAGES}  # Div, Sub, Sqrt
    # rules run on constants only (the seed through sum, times dy: dL/dy): no op recorded, one node per rule
    assert sorted(n.label for n in ops if n.ctx is None) == ["Mul.backward\\n(on constants)",
                                                             "Sum.backward\\n(on constants)"]
    for n in ops:
        if n.ctx is None:
            assert n.id.startswith("rule") and n.style == "grad_op"
            continue
        assert n.ctx.grad_of is not None and n.style == "grad_op"
        assert n.scope[:2] == ("backward", "batch_norm")  # under the scope of the forward op
        rule = type(n.ctx.grad_of).__name__
        if rule in forward_ops | {"Sum", "Mul"}:
            assert n.label.endswith(f"\\n(in {rule}.backward)")
    rules = {type(n.ctx.grad_of).__name__ for n in ops if n.ctx is not None}
    assert {"Sum", "Div", "Sub", "Mul", "Sqrt"} <= rules
    # the forward values it reads: outside the backward cluster, their edges dashed, and only theirs
    fwd = {n.id for n in g.nodes.values() if n.style == "forward"}
    fwd_names = {g.nodes[i].tensor.name for i in fwd}
    assert {"xc", "std", "x_hat"} <= fwd_names and "x" not in fwd_names  # x itself is never read
    assert all(g.nodes[i].scope == () for i in fwd)
    assert {(a, c) for a, c, s in g.edges if s == "dashed"} == {(a, c) for a, c, _ in g.edges if a in fwd}
    assert {g.nodes[i].style for i in (f"t{id(b.x.grad)}", f"t{id(b.gamma.grad)}")} == {"grad"}
    d = parse_dot(to_dot(b.x.grad, b.gamma.grad, backward=True, **FULL))
    for n in ops:  # the rules on constants belong to the loss's ops, outside batch_norm
        assert d.where[n.id] == (("backward",) if n.ctx is None else ("backward", "batch_norm"))
    for i in fwd:
        assert d.where[i] == () and "dashed" in d.nodes[i]["style"]
    (bw,) = [k for k, (parents, attrs) in d.clusters.items() if attrs.get("label") == "backward"]
    assert d.clusters[bw][0] == () and "dashed" in d.clusters[bw][1]["style"]
    dashed = [(a, c) for a, c, attrs in d.edges if attrs.get("style") == "dashed"]
    assert dashed and all(a in fwd for a, _ in dashed)
    assert "(in Sqrt.backward)" in to_dot(b.x.grad, backward=True, expand=True)


def test_backward_graph_of_x_grad_computes_dx():
    """The drawn backward graph is the real one: its output is dL/dx of the hand formula."""
    b = bn_staged_graph(seed=5)
    b.loss.backward(create_graph=True)
    g = trace(b.x.grad, backward=True)
    (out,) = [n for n in g.nodes.values() if n.style == "grad"]
    dx, _, _ = analytic.batchnorm_backward(b.dy, analytic.batchnorm_forward(b.x.data, b.gamma.data, b.beta.data)[1])
    np.testing.assert_allclose(out.tensor.data, dx, rtol=1e-10, atol=1e-12)


def test_backward_graph_of_a_module_parameter_has_only_backward_rule_ops():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    x = tg.Tensor(rng.standard_normal((4, 3)), requires_grad=True, name="x")
    (bn(x) ** 2).sum().backward(create_graph=True)
    g = trace(bn.weight.grad, backward=True)
    ops = [n for n in g.nodes.values() if n.kind == "op"]
    assert ops
    assert [(n.label, n.scope) for n in ops if n.ctx.grad_of is None or n.scope[:1] != ("backward",)] == []


def test_drawing_a_freed_graph_is_a_clear_error():
    b = bn_graph()
    b.loss.backward()
    with pytest.raises(ValueError, match=r"freed by backward\(\).*retain_graph=True"):
        draw(b.loss)
    kept = bn_graph()
    kept.loss.backward(retain_graph=True)
    assert "x_hat" in to_dot(kept.loss, expand=True)  # retained: still drawable
    # a backward graph freed by a backward through it
    s = bn_staged_graph()
    s.loss.backward(create_graph=True)
    gx = s.x.grad
    assert "(in Div.backward)" in to_dot(gx, backward=True, expand=True)
    (gx * gx).sum().backward()
    with pytest.raises(ValueError, match=r"freed.*create_graph=True"):
        draw(gx, backward=True)


# ------------------------------------------------------------------------------ comparison overlay

def _overlay_marks(src: str) -> dict[str, tuple[str, str]]:
    """node id -> (fill colour, label) of the nodes the overlay marked."""
    nodes = parse_dot(src).nodes
    return {k: (v["fillcolor"], v["label"]) for k, v in nodes.items() if "max rel err" in v.get("label", "")}


def test_overlay_of_analytic_gradients_colours_nodes_green_or_red():
    b = bn_staged_graph()
    for k in F.STAGES:
        b.stages[k].retain_grad()
    b.loss.backward(retain_graph=True)
    dx, dgamma, dbeta = analytic.batchnorm_backward(
        b.dy, analytic.batchnorm_forward(b.x.data, b.gamma.data, b.beta.data)[1])
    right = {b.x: dx, b.gamma: dgamma, b.beta: dbeta}
    marks = _overlay_marks(to_dot(b.loss, compare=right))
    assert set(marks) == {f"t{id(t)}" for t in right}
    assert all(fill == FILL["ok"] and label.endswith(" ok") for fill, label in marks.values())
    assert marks[f"t{id(b.gamma)}"][1].startswith("gamma\\n(3,) f64\\nmax rel err ")
    wrong = {**right, b.x: dx * (1 + 1e-6)}
    marks = _overlay_marks(to_dot(b.loss, compare=wrong))
    fill, label = marks[f"t{id(b.x)}"]
    assert fill == FILL["off"] and label.endswith("max rel err 1.0e-06 OFF")
    assert marks[f"t{id(b.gamma)}"][0] == FILL["ok"]
    # rtol decides the colour
    assert _overlay_marks(to_dot(b.loss, compare=wrong, rtol=1e-4))[f"t{id(b.x)}"][0] == FILL["ok"]
    # an intermediate that kept its grad is compared too; unmarked nodes keep their look
    staged = analytic.batchnorm_backward_staged(b.dy, analytic.batchnorm_forward(
        b.x.data, b.gamma.data, b.beta.data)[1])
    src = to_dot(b.loss, compare={b.stages["var"]: np.reshape(staged["var"], (1, 3)) * 2})
    assert _overlay_marks(src)[f"t{id(b.stages['var'])}"][0] == FILL["off"]
    assert parse_dot(src).nodes[f"t{id(b.stages['xc'])}"]["fillcolor"] == "white"


def test_overlay_from_a_check_report_matches_tensors_by_name():
    b = bn_staged_graph()
    b.loss.backward(retain_graph=True)
    audit = tg.check.audit_batch_norm(b.x.data, b.gamma.data, b.beta.data, b.dy)
    assert audit.ok
    names = {t.name: f"t{id(t)}" for t in [b.x, b.gamma, b.beta, *(b.stages[k] for k in F.STAGES)]}
    marks = _overlay_marks(to_dot(b.loss, compare=audit))
    assert set(marks) == set(names.values())  # x, gamma, beta and the five stages
    assert all(fill == FILL["ok"] for fill, _ in marks.values())
    # a report from compare(): "dgamma" names gamma, "x" names x; a failing row turns red
    dx, dgamma, _ = analytic.batchnorm_backward(b.dy, analytic.batchnorm_forward(b.x.data, b.gamma.data,
                                                                               b.beta.data)[1])
    report = tg.check.compare({"dgamma": b.gamma.grad.data, "x": b.x.grad.data}, {"dgamma": dgamma, "x": dx * 1.1})
    assert not report.ok
    marks = _overlay_marks(to_dot(b.loss, compare=report))
    assert set(marks) == {names["gamma"], names["x"]}
    assert marks[names["gamma"]][0] == FILL["ok"]
    fill, label = marks[names["x"]]
    assert fill == FILL["off"] and "max rel err 9.1e-02 OFF" in label  # |0.1 dx| / |1.1 dx|


# ------------------------------------------------------------------------------ size guard

def test_a_graph_over_max_nodes_is_an_error_naming_scopes_to_collapse():
    x, y = scoped_chain(blocks=20, per_block=100)  # 2000 ops, 4001 nodes
    n = len(trace(y).nodes)
    assert n == 4001
    with pytest.raises(GraphTooLargeError, match=r"4001 nodes \(max_nodes=500\).*collapse.*'block\d+' \(200 nodes\)"):
        draw(y)
    assert issubclass(GraphTooLargeError, ValueError)
    with pytest.raises(GraphTooLargeError):
        draw(y, max_nodes=n - 1)
    assert len(parse_dot(draw(y, max_nodes=n, compact=False).source).nodes) == n  # the limit itself is allowed
    # collapsed: one node per block, chained, plus x
    d = parse_dot(to_dot(y, collapse=[f"block{b}" for b in range(20)]))
    assert len(d.nodes) == 21
    assert sorted(v["label"] for k, v in d.nodes.items() if k != f"t{id(x)}") == sorted(
        f"block{b}\\n(200 nodes collapsed)" for b in range(20))
    assert len(d.edges) == 20


@requires_dot
def test_thousands_of_nodes_render_with_collapse_or_without_a_limit(tmp_path):
    x, y = scoped_chain(blocks=20, per_block=100)
    small = draw(y, collapse=[f"block{b}" for b in range(20)]).render(tmp_path / "collapsed", format="svg")
    titles = [g.find(SVG + "title").text for g in ET.parse(small).getroot().iter(SVG + "g") if g.get("class") == "node"]
    assert len(titles) == 21 and f"t{id(x)}" in titles
    for compact, n_nodes in ((False, 4001), (True, 2002)):  # compact: x, the 2000 ops, y (the tensors between: edges)
        big = draw(y, max_nodes=None, compact=compact).render(tmp_path / f"full{compact}", format="svg")
        root = ET.parse(big).getroot()
        nodes = [g for g in root.iter(SVG + "g") if g.get("class") == "node"]
        clusters = [g for g in root.iter(SVG + "g") if g.get("class") == "cluster"]
        assert len(nodes) == n_nodes and len(clusters) == 20


# ------------------------------------------------------------------------------ rendering with dot

@requires_dot
def test_svg_render_parses_and_holds_the_nodes_labels_and_clusters(tmp_path):
    b = bn_graph()
    g = trace(b.loss)
    path = draw(b.loss, title="batch norm", **FULL).render(tmp_path / "bn", format="svg", cleanup=True)
    assert path.endswith(".svg") and not (tmp_path / "bn").exists()  # cleanup removed the DOT file
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    groups = {cls: [e for e in root.iter(SVG + "g") if e.get("class") == cls] for cls in ("node", "edge", "cluster")}
    assert {e.find(SVG + "title").text for e in groups["node"]} == set(g.nodes)
    assert len(groups["edge"]) == len(g.edges)
    assert {e.find(SVG + "title").text for e in groups["edge"]} == {f"{a}->{c}" for a, c, _ in g.edges}
    assert [e.find(SVG + "title").text for e in groups["cluster"]] == ["cluster_batch_norm"]
    texts = [t.text for t in root.iter(SVG + "text")]
    for expected in ["x_hat", "mu", "xc", "var", "std", "(4, 3) f64", "(1, 3) f64", "Sqrt", "Sub", "· + 1e-05",
                     "batch_norm", "batch norm", "loss"]:
        assert expected in texts, expected
    x_node = next(e for e in groups["node"] if e.find(SVG + "title").text == f"t{id(b.x)}")
    assert [t.text for t in x_node.iter(SVG + "text")] == ["x", "(4, 3) f64"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")  # the first chunk, always
    return struct.unpack(">II", data[16:24])


@requires_dot
def test_png_render_is_a_real_image_whose_shape_follows_rankdir(tmp_path):
    b = bn_graph()
    tall = draw(b.loss, show_values=True, expand=True, rankdir="TB").render(tmp_path / "tb", format="png", cleanup=True)
    wide = draw(b.loss, expand=True, rankdir="LR").render(tmp_path / "lr", format="png", cleanup=True)
    sizes = {}
    for name, path in (("tb", tall), ("lr", wide)):
        data = Path(path).read_bytes()
        assert len(data) > 1024
        w, h = _png_size(data)
        assert 100 < w < 20000 and 100 < h < 20000
        sizes[name] = (w, h)
    assert sizes["tb"][1] > 2 * sizes["tb"][0]  # a chain of ~20 ranks drawn top to bottom is tall
    assert sizes["lr"][0] > 2 * sizes["lr"][1]  # and left to right, wide


@requires_dot
def test_render_gallery_writes_every_picture_and_an_index(tmp_path):
    from tinygrad_bn.gallery import render_gallery

    files = render_gallery(tmp_path)
    assert all(f.exists() and f.parent == tmp_path for f in files)
    svgs = {f.stem for f in files if f.suffix == ".svg"}
    pngs = {f.stem for f in files if f.suffix == ".png"}
    assert svgs == pngs and {"bn_forward", "bn_backward", "softmax_ce_forward", "softmax_ce_backward",
                             "mlp_collapsed", "bn_compare", "bn_compare_bug"} <= svgs
    for stem in svgs:
        root = ET.parse(tmp_path / f"{stem}.svg").getroot()
        assert sum(1 for g in root.iter(SVG + "g") if g.get("class") == "node") > 5, stem
        data = (tmp_path / f"{stem}.png").read_bytes()
        assert len(data) > 1024 and min(_png_size(data)) > 50, stem
    index = tmp_path / "index.html"
    assert index in files
    page = index.read_text()
    for stem in svgs:
        assert f'src="{stem}.svg"' in page
    assert "<pre>" in page and "max rel error" in page and "batch norm train" in page and "softmax-CE" in page
    assert "FAIL" not in page
    # the compare pictures really are coloured: green everywhere, then red where the slip is
    ok_svg = (tmp_path / "bn_compare.svg").read_text()
    bug_svg = (tmp_path / "bn_compare_bug.svg").read_text()
    assert FILL["ok"] in ok_svg and FILL["off"] not in ok_svg and FILL["off"] in bug_svg


# ------------------------------------------------------------------------------ to_dot

def test_to_dot_is_the_source_of_draw():
    b = bn_staged_graph()
    b.loss.backward(create_graph=True)
    for tensors, options in [((b.loss,), {}), ((b.loss,), {"show_values": True}),
                             ((b.loss,), {"collapse": ["batch_norm"], "rankdir": "LR"}),
                             ((b.x.grad, b.gamma.grad), {"backward": True}),
                             ((b.loss,), {"compare": {b.x: b.x.grad.data}, "title": "t"})]:
        src = to_dot(*tensors, **options)
        assert isinstance(src, str) and src.startswith("digraph {")
        assert src == draw(*tensors, **options).source
    assert to_dot(b.loss) != to_dot(b.loss, show_values=True)


# ------------------------------------------------------------------------------ bugs found

def test_collapse_keeps_apart_scopes_whose_paths_join_alike():
    a = tg.Tensor(np.ones(2), requires_grad=True, name="a")
    with tg.scope("a/b"):
        one = a * 2
    with tg.scope("a"):
        with tg.scope("b"):
            two = a * 3
    d = parse_dot(to_dot(one + two, collapse=["a/b", "b"]))
    collapsed = sorted(v["label"] for v in d.nodes.values() if v["shape"] == "box3d")
    assert collapsed == ["a/b\\n(2 nodes collapsed)", "b\\n(2 nodes collapsed)"]


def test_overlay_does_not_pass_a_reference_of_the_wrong_shape():
    a = tg.Tensor(np.full((1, 3), 2.0), requires_grad=True, name="a")
    loss = (a * 1.0).sum()
    loss.backward(retain_graph=True)  # a.grad = ones((1, 3))
    assert not tg.check.compare({"a": a.grad.data}, {"a": np.ones((5, 3))}).ok
    try:
        marks = _overlay_marks(to_dot(loss, compare={a: np.ones((5, 3))}))
    except ValueError as e:  # refusing the mismatch is as good as marking it
        assert "shape" in str(e)
        return
    assert marks[f"t{id(a)}"][0] == FILL["off"]


def test_collapse_accepts_one_scope_name_as_a_string():
    x = tg.Tensor(np.ones(3), requires_grad=True)
    with tg.scope("inner"):
        y = (x * 2).exp()
    total = y.sum()
    assert to_dot(total, collapse="inner") == to_dot(total, collapse=["inner"])
    assert "inner\\n(4 nodes collapsed)" in to_dot(total, collapse="inner")


def test_size_guard_without_scopes_says_how_to_make_some():
    y = tg.Tensor(np.ones(2), requires_grad=True)
    for _ in range(300):
        y = y + 1.0
    with pytest.raises(GraphTooLargeError, match=r"no scopes to collapse: record parts of it inside tg.scope"):
        draw(y)


def test_backward_drawing_of_a_gradient_without_graph_says_create_graph():
    x = tg.Tensor(np.ones(3), requires_grad=True)
    (x * x).sum().backward()
    with pytest.raises(ValueError, match=r"create_graph=True"):
        draw(x.grad, backward=True)


# ------------------------------------------------------------------------------ pictures that fit a slide (issue 13)

def bn_ce_loss(seed: int = 0):
    """The issue's case: an nn.BatchNorm1d layer on x (4, 3), then cross-entropy."""
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.standard_normal((4, 3)), requires_grad=True, name="x")
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    loss = F.cross_entropy(bn(x), np.array([0, 1, 2, 1]))
    loss.name = "loss"
    return x, bn, loss


@requires_dot
def test_default_forward_graph_of_batch_norm_and_cross_entropy_is_at_most_3_to_1(tmp_path):
    from tinygrad_bn import viz
    x, bn, loss = bn_ce_loss()
    assert sorted(viz.default_collapse(trace(loss))) == ["batch_norm", "cross_entropy"]  # the library's internals
    w, h = _png_size(Path(draw(loss).render(tmp_path / "bnce", format="png", cleanup=True)).read_bytes())
    assert h <= 3 * w, (w, h)
    d = parse_dot(to_dot(loss))
    assert sorted(v["label"].split("\\n")[0] for v in d.nodes.values() if v["shape"] == "box3d") == [
        "batch_norm", "cross_entropy"]
    assert d.where[f"t{id(bn.weight)}"] == ("BatchNorm1d",)  # the module's cluster stays open
    # the switch: expand=True draws every op (a collapse list says exactly which scopes close)
    assert "Sqrt" in to_dot(loss, expand=True) and "Sqrt" not in to_dot(loss)
    assert "Sqrt" in to_dot(loss, collapse=["cross_entropy"]) and "Log" not in to_dot(loss, collapse=["cross_entropy"])
    # expanded too, a long graph is cut into bands side by side (wrap) and fits
    w, h = _png_size(Path(draw(loss, expand=True, rankdir="TB", wrap=2).render(
        tmp_path / "bnce_open", format="png", cleanup=True)).read_bytes())
    assert h <= 3 * w, (w, h)


def test_user_scopes_module_paths_and_compared_scopes_stay_open_by_default():
    from tinygrad_bn import viz
    n = net_graph()
    g = trace(n.loss)
    assert sorted(viz.default_collapse(g)) == ["batch_norm", "cross_entropy"]
    x = tg.Tensor(np.arange(3.0), requires_grad=True, name="x")
    with tg.scope("mine"):
        y = (x.exp() * x).sum()
    assert viz.default_collapse(trace(y)) == [] and "cluster_mine" in to_dot(y)
    b = bn_graph()  # F.batch_norm's scope, yet a compared tensor inside it keeps it open
    mu = b.y._ctx.parents[0]  # any tensor of the scope: compare it and the scope stays drawn
    mu.retain_grad()
    b.loss.backward(retain_graph=True)
    assert "box3d" in to_dot(b.loss) and "box3d" not in to_dot(b.loss, compare={mu: np.zeros(mu.shape)})


def test_compact_draws_unnamed_intermediates_as_labelled_edges_and_keeps_named_ones():
    from tinygrad_bn import viz
    b = bn_graph()
    g = trace(b.loss, backward=False)
    c = viz._compact(g)
    names = by_name(g)
    for keep in ("x", "gamma", "mu", "xc", "var", "std", "x_hat", "y", "loss", "dy"):
        assert names[keep].id in c.nodes, keep  # named tensors, leaves and the output stay boxes
    gone = [n for n in g.nodes.values() if n.kind == "tensor" and n.id not in c.nodes]
    assert gone and all(n.tensor.name is None and n.style == "intermediate" for n in gone)
    assert {n.id for n in c.elided.values()} == {n.id for n in gone} and len(c.nodes) == len(g.nodes) - len(gone)
    # var = sum(xc * xc) / 4: the Mul -> Sum edge stands for the unnamed (4, 3) product
    mul = f"op{id(names['var'].tensor._ctx.parents[0]._ctx.parents[0]._ctx)}"
    (edge,) = [(a, c2) for a, c2, _ in c.edges if a == mul]
    assert c.nodes[edge[0]].kind == c.nodes[edge[1]].kind == "op" and c.elided[edge].tensor.shape == (4, 3)
    src = to_dot(b.loss, expand=True)
    assert re.search(rf'{mul} -> op\d+ \[label=" \(4, 3\)"\]', src)
    # a compared tensor stays a box
    prod = c.elided[edge]
    assert prod.id in viz._compact(g, keep={prod.id}).nodes


def test_backward_picture_names_gradients_and_connects_every_parameters_gradient():
    b = bn_staged_graph()
    b.y.name = "y"
    b.loss.backward(create_graph=True)
    g = trace(b.x.grad, b.gamma.grad, b.beta.grad, backward=True)
    into = {c: a for a, c, _ in g.edges}
    for t in (b.x, b.gamma, b.beta):  # dL/dbeta = sum over the batch of dL/dy: made of constants only, yet joined
        assert f"t{id(t.grad)}" in into, t.name
    beta_rule = g.nodes[into[f"t{id(b.beta.grad)}"]]
    assert beta_rule.label == "Add.backward\\n(on constants)" and beta_rule.style == "grad_op"
    labels = {n.label.split("\\n")[0]: n for n in g.nodes.values() if n.kind == "tensor"}
    assert {"dL/dy", "dL/dxc", "dL/dx_hat", "dL/dstd", "dL/dmu"} <= set(labels)  # named after what they differentiate
    assert not any(re.fullmatch(r"t\d+", k) for k in labels if labels[k].style in ("grad_mid", "seed"))
    assert labels["dL/dy"].style == "grad_mid" and labels["dL/dxc"].style == "grad_mid"
    # the seed is styled as what it is: the gradient backward starts from, not a dashed forward value
    (seed,) = [n for n in g.nodes.values() if n.style == "seed"]
    assert seed.label.startswith("seed dL/dL = 1")
    assert not any(s == "dashed" for a, _, s in g.edges if a == seed.id)
    assert "dashed" not in parse_dot(to_dot(b.x.grad, backward=True, expand=True)).nodes[seed.id].get("style", "")
    # xc feeds three ops: its gradient is the sum of the parts each sends back
    assert any(k.startswith("dL/dxc, part") for k in labels)
    assert "Add\\n(sum of the gradients\\nfrom several consumers)" in {n.label for n in g.nodes.values()}
    assert "grad from" not in to_dot(b.x.grad, b.gamma.grad, b.beta.grad, backward=True, expand=True)


def test_a_copy_into_grad_says_so_and_the_engine_records_facts_not_labels():
    from tinygrad_bn import engine
    a, c = (tg.Tensor(np.arange(3.0) + k, requires_grad=True, name=n) for k, n in ((1, "a"), (2, "c")))
    w = tg.Tensor(np.ones(3) * 2, requires_grad=True, name="w")
    ((a + c) * w * w).sum().backward(create_graph=True)  # Add.backward sends one tensor to a and c: one is copied
    copies = [t for t in (a, c) if t.grad._ctx is not None and isinstance(t.grad._ctx.grad_of, engine.Accumulate)]
    (t,) = copies
    mark = t.grad._ctx.grad_of
    assert (mark.kind, mark.of()) == ("into_grad", t) and not hasattr(mark, "why")
    g = trace(t.grad, backward=True)
    assert g.nodes[f"op{id(t.grad._ctx)}"].label == "copy into .grad"
    assert "Cast" not in to_dot(t.grad, backward=True)
    # facts: what each gradient is the gradient of; the engine names nothing
    for leaf in (a, c, w):
        assert leaf.grad.name is None and engine.grad_facts(leaf.grad).of() is leaf
    x = tg.Tensor(np.linspace(1, 2, 6).reshape(2, 3), requires_grad=True)
    (x.exp() * x).sum().backward(create_graph=True)  # x feeds Exp and Mul: their gradients are summed
    (sum_op,) = [n.ctx for n in trace(x.grad, backward=True).nodes.values()
                 if n.ctx is not None and isinstance(n.ctx.grad_of, engine.Accumulate)]
    assert sum_op.grad_of.kind == "sum" and sum_op.grad_of.of() is x
    # a module's parameters carry nothing for the renderer: viz finds their cluster from the ops reading them
    n = net_graph()
    assert all("scope" not in vars(p) for p in n.net.parameters())


def test_legend_shows_the_looks_a_picture_uses():
    from tinygrad_bn import viz
    b = bn_staged_graph()
    b.loss.backward(create_graph=True)
    fwd = parse_dot(to_dot(b.loss, legend=True))
    (leg,) = [k for k, (_, attrs) in fwd.clusters.items() if attrs.get("label") == "legend"]
    entries = {k[len("legend_"):] for k in fwd.nodes if k.startswith("legend_")}
    assert {"input", "const", "output", "op", "collapsed", "edge"} <= entries and "seed" not in entries
    assert all(fwd.where[f"legend_{e}"] == ("legend",) for e in entries)
    bwd = {k[len("legend_"):] for k in parse_dot(to_dot(b.x.grad, backward=True, legend=True, expand=True)).nodes
           if k.startswith("legend_")}
    assert {"seed", "grad_mid", "grad", "grad_op", "forward"} <= bwd
    cmp = {k[len("legend_"):] for k in parse_dot(to_dot(b.loss, compare={b.x: b.x.grad.data * 2},
                                                        legend=True)).nodes if k.startswith("legend_")}
    assert "off" in cmp and "ok" not in cmp
    full = parse_dot(viz.legend().source)
    assert {k[len("legend_"):] for k in full.nodes} == {k for k, _ in viz.LEGEND}
    assert "legend" not in to_dot(b.loss)  # only when asked
