"""The diagram gallery: the graphs this project exists to show, rendered to SVG and PNG with an
index.html. Run by `tinygrad-bn demo` and by visualize/gallery.py."""
from __future__ import annotations

import contextlib
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.viz import draw, legend


def _batch_norm_graph(rng: np.random.Generator) -> dict[str, Any]:
    """A named batch norm over (4, 3) in float64, its loss sum(y * dy), and the gradients built
    with create_graph=True (so the backward graph exists to draw)."""
    x = tg.Tensor(rng.standard_normal((4, 3)) * 2 + 1, requires_grad=True, name="x")
    gamma = tg.Tensor(rng.standard_normal(3) + 1, requires_grad=True, name="gamma")
    beta = tg.Tensor(rng.standard_normal(3), requires_grad=True, name="beta")
    dy = rng.standard_normal((4, 3))
    with tg.scope("batch_norm"):
        s = F.standardize(x, (0,), 1e-5)
        y = s["x_hat"] * gamma + beta
    y.name = "y"
    loss = (y * tg.Tensor(dy, name="dy")).sum()
    loss.name = "loss = sum(y * dy)"
    for k in F.STAGES:
        s[k].retain_grad()
    loss.backward(create_graph=True)
    for t in (x, gamma, beta):
        _named_grad(t, f"dL/d{t.name}")
    staged = analytic.batchnorm_backward_staged(dy, analytic.batchnorm_forward(x._data, gamma._data, beta._data)[1])
    return {"x": x, "gamma": gamma, "beta": beta, "loss": loss, "stages": s, "staged": staged, "dy": dy}


def _named_grad(t: tg.Tensor, name: str) -> tg.Tensor:
    """t's gradient, which the backward before filled, named for the picture."""
    g = t.grad
    if g is None:
        raise RuntimeError(f"{t.name}: no gradient after backward")
    g.name = name
    return g


def _softmax_ce_graph(rng: np.random.Generator) -> tuple[tg.Tensor, tg.Tensor]:
    """The loss and its gradient with respect to the logits."""
    z = tg.Tensor(rng.standard_normal((3, 4)), requires_grad=True, name="logits z")
    loss = F.cross_entropy(z, np.array([1, 0, 3]))
    loss.name = "J"
    loss.backward(create_graph=True)
    return loss, _named_grad(z, "dJ/dz = (y_hat - y)/m")


class Block(nn.Module):
    """Linear (no bias: batch norm's beta replaces it) -> BatchNorm1d -> ReLU."""
    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator):
        self.fc = nn.Linear(n_in, n_out, bias=False, dtype=np.float64, rng=rng)
        self.bn = nn.BatchNorm1d(n_out, dtype=np.float64)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.bn(self.fc(x)).relu()


class MLP(nn.Module):
    def __init__(self, sizes: list[int], n_classes: int, rng: np.random.Generator):
        self.layers = nn.Sequential(*[Block(a, b, rng) for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nn.Linear(sizes[-1], n_classes, dtype=np.float64, rng=rng)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.head(self.layers(x))


def _rms_norm_slip(rng: np.random.Generator) -> Any:
    """The audit of README's "Prove your own derivation": an RMS norm with a slip at ms."""
    from tinygrad_bn.report import audit_rms_norm
    x, g = rng.standard_normal((6, 5)), rng.standard_normal(5) + 1
    return audit_rms_norm(x, g, rng.standard_normal((6, 5)), slip="ms")


def pictures(seed: int = 0) -> list[tuple[str, str, Any]]:
    """(file stem, caption, graphviz.Digraph) for every picture of the gallery."""
    rng = np.random.default_rng(seed)
    bn = _batch_norm_graph(rng)
    x, gamma, beta, s = bn["x"], bn["gamma"], bn["beta"], bn["stages"]
    loss_ce, dz = _softmax_ce_graph(rng)
    mlp = MLP([8, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16], 4, rng)
    xb = tg.Tensor(rng.standard_normal((32, 8)), name="x batch")
    mlp_loss = F.cross_entropy(mlp(xb), rng.integers(0, 4, 32))
    mlp_loss.name = "loss"
    tensors = {**{k: s[k] for k in F.STAGES}, "x": x, "gamma": gamma, "beta": beta}
    right = {t: np.reshape(bn["staged"][k], t.shape) for k, t in tensors.items()}
    # a classic slip in the hand derivation: d var = d std / std, forgetting the 1/2 of sqrt's
    # derivative; the steps after it (the staged backward, docs/course.md 3.1) carry the error on
    d, cache = bn["staged"], analytic.batchnorm_forward(x._data, gamma._data, beta._data)[1]
    slip = {"var": d["std"] / cache["std"]}
    slip["xc"] = d["x_hat"] / cache["std"] + slip["var"] * 2 * cache["xc"] / cache["m"]
    slip["mu"] = -slip["xc"].sum(axis=0, keepdims=True)
    slip["x"] = slip["xc"] + slip["mu"] / cache["m"]
    wrong = {**right, **{tensors[k]: np.reshape(v, tensors[k].shape) for k, v in slip.items()}}
    blocks = [f"layers.{i}" for i in range(len(mlp.layers))]
    # the batch norm pictures open the user's scope "batch_norm" (a name the library's own uses too, so
    # draw would collapse it by default): expand=True; a long chain is cut into bands side by side (wrap)
    return [
        ("bn_forward", "Batch norm (training mode) as autograd records it: mean, subtract, square, mean, "
         "add eps, sqrt, divide, scale, shift, then the loss sum(y * dy). Values shown; an arrow labelled "
         "with a shape is an unnamed intermediate tensor.",
         draw(bn["loss"], show_values=True, expand=True, rankdir="TB", wrap=3)),
        ("bn_backward", "The graph autograd builds for dL/dx, dL/dgamma, dL/dbeta (create_graph=True): each "
         "purple ellipse is an op of a backward rule (the rule in brackets), dashed boxes are the forward "
         "values it reads. It starts from the seed dL/dL = 1 (top); the Adds marked 'sum of the "
         "gradients' are the multivariate chain rule: xc and x feed several ops, so their gradients add up.",
         draw(x.grad, gamma.grad, beta.grad, backward=True, expand=True, rankdir="TB", wrap=3)),
        ("softmax_ce_forward", "Softmax cross-entropy with class indices: shift by the detached row max, "
         "log-sum-exp, minus the true class's shifted logit, mean (= -log y_hat of the true class).",
         draw(loss_ce, show_values=True, expand=True, rankdir="LR")),
        ("softmax_ce_backward", "Its backward graph, which computes exactly (y_hat - y) / m.",
         draw(dz, backward=True, expand=True, rankdir="TB", wrap=2)),
        ("mlp_collapsed", "A 10-block MLP with batch norm, each block (Linear -> BatchNorm1d -> ReLU) "
         "collapsed to one node with collapse=[...] (the loss too), in two rows.",
         draw(mlp_loss, collapse=[*blocks, "cross_entropy"], rankdir="LR", wrap=2)),
        ("mlp_block", "One block of that MLP opened, the rest collapsed: clusters follow the module paths "
         "(layers.0.fc, layers.0.bn); the library's batch_norm and cross_entropy stay collapsed, as by default.",
         draw(mlp_loss, collapse=[*blocks[1:], "batch_norm", "cross_entropy"], rankdir="LR", wrap=2)),
        ("bn_compare", "Autograd against the staged hand-derived formula, node by node: green within "
         "1e-12 relative.", draw(bn["loss"], compare=right, rankdir="TB", wrap=3)),
        ("audit_rms_norm", "tg.check.audit of a user's RMS norm whose hand backward forgot the 1/2 of sqrt's "
         "derivative at ms: each audited node shows its error against the hand value and against finite "
         "differences; ms, the failing node nearest the loss, is marked FIRST WRONG (x inherits the slip).",
         _rms_norm_slip(rng).draw(rankdir="LR", wrap=2)),
        ("bn_compare_bug", "The same with a classic slip in the hand derivation (d var = d std / std, the 1/2 "
         "of sqrt's derivative forgotten): red marks the mistake (var) and the nodes it feeds (xc, x); mu stays "
         "green, since d mu = -sum d xc and the var term drops out because the centred values sum to 0.",
         draw(bn["loss"], compare=wrong, rankdir="TB", wrap=3)),
    ]


def render_gallery(out: str | Path, seed: int = 0, formats: tuple[str, ...] = ("svg", "png")) -> list[Path]:
    """Render every picture into `out` as SVG and PNG, plus index.html with captions and the
    `tinygrad-bn check` table. Returns the files written. Without Graphviz's `dot`, a DotNotFoundError
    (saying how to install it) before anything is written."""
    from tinygrad_bn._missing import require_dot
    from tinygrad_bn.report import check

    require_dot("rendering the gallery")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    items = []
    for stem, caption, dot in [("legend", "", legend()), *pictures(seed)]:
        for fmt in formats:
            written.append(Path(dot.render(out / stem, format=fmt, cleanup=True)))
        if stem != "legend":
            items.append(f'<figure><img src="{stem}.svg" alt="{html.escape(stem)}"><figcaption>'
                         f"{html.escape(caption)}</figcaption></figure>")
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        check(seed, quick=True)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>tinygrad_bn gallery</title><style>"
        "body{font-family:sans-serif;max-width:1360px;margin:auto;padding:0 1em;line-height:1.4}"
        "figure{margin:1.5em 0;border-top:1px solid #ddd;padding-top:1em}"
        "img{max-width:100%;max-height:92vh;display:block;margin:auto}figcaption{max-width:60em}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}.legend img{max-height:none}"
        "</style></head><body><h1>tinygrad_bn: backpropagation, drawn</h1>"
        + '<p><b><a href="interactive.html">The interactive page</a></b> (<code>tg.viz.to_html</code>): the '
        "graph of a batch norm layer and cross-entropy to pan, zoom, click, collapse, and step through "
        "backward op by op, watching each gradient arrive and add up.</p>" + _INTRO
        + '<div class="legend"><img src="legend.svg" alt="legend"></div>'
        + "".join(items)
        + "<h2>Autograd against the hand-derived formulas (tinygrad-bn check --quick)</h2><pre>"
        + html.escape(table.getvalue()) + "</pre></body></html>")
    index = out / "index.html"
    index.write_text(page)
    interactive = out / "interactive.html"
    interactive.write_text(interactive_page(seed))
    return written + [index, interactive]


def interactive_page(seed: int = 0) -> str:
    """tg.viz.to_html of a BatchNorm1d layer and cross-entropy (x requires grad, so the whole
    normalization graph is recorded): the page README's first picture shows."""
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.standard_normal((4, 3)) * 2 + 1, requires_grad=True, name="x")
    loss = F.cross_entropy(nn.BatchNorm1d(3, dtype=np.float64)(x), rng.integers(0, 3, 4))
    loss.name = "loss"
    return tg.viz.to_html(loss, title="BatchNorm1d + cross-entropy: click, collapse, step through backward")


_INTRO = (
    "<p>Each picture is a graph that autograd recorded, drawn by <code>tg.viz.draw</code>. In a forward "
    "graph, boxes are tensors (name, shape, dtype; with <code>show_values=True</code> their values and, after "
    "backward, their gradients) and grey ellipses the ops that made them; an arrow labelled only with a shape "
    "is an unnamed intermediate tensor. Read them in the direction of the arrows, from the inputs (blue) and "
    "parameters (yellow) to the output (green). A backward graph (<code>backward=True</code>, after "
    "<code>backward(create_graph=True)</code>) is the graph of the gradients: it starts from the seed "
    "dL/dL = 1, its purple ellipses are the ops of the backward rules, dashed boxes the forward values "
    "those rules read, and purple boxes the gradients, named dL/d(what they are the gradient of). Clusters "
    "are <code>tg.scope</code>s and module paths; the library's own (batch_norm, cross_entropy, ...) are "
    "collapsed by default (<code>expand=True</code> opens them). In the comparison pictures each checked "
    "tensor is green or red by its error against a hand derivation.</p>"
    "<p><b>Legend</b> (<code>draw(..., legend=True)</code> adds the entries a picture uses):</p>")
