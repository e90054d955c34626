"""tg.viz.to_html: one self-contained page, opened in a real headless browser (Chromium, skipped with
a reason where it is missing). The page drives itself through its own DOM events when opened at
#selftest (a click on a node, a cluster collapsed or expanded, every backward step) and writes what
it saw into the DOM, which the test reads back from Chromium's --dump-dom."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import requires_dot

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn.engine import _toposort
from tinygrad_bn.html import page_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def bn_ce(rng):
    x = tg.Tensor(rng.standard_normal((4, 3)), requires_grad=True, name="x")
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    loss = F.cross_entropy(bn(x), rng.integers(0, 3, 4))
    loss.name = "loss"
    return x, loss


def selftest(page: str, tmp_path) -> dict:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (bash run.sh test installs Debian's chromium when it can)")
    path = tmp_path / "page.html"
    path.write_text(page)
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          "--virtual-time-budget=10000", f"file://{path}#selftest"],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the page's self-test wrote nothing:\n" + dom[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


@requires_dot
def test_the_page_is_one_file_that_names_no_network_address(rng):
    page = tg.viz.to_html(bn_ce(rng)[1])
    assert page.startswith("<!doctype html>") and "</html>" in page
    for pattern in (r"""(src|href)\s*=\s*["']?(https?:)?//""", r"url\(\s*['\"]?https?:", r"@import", r"<link\b",
                    r"\bfetch\(", r"XMLHttpRequest", r"<!DOCTYPE svg", r"<\?xml"):
        assert not re.search(pattern, page, re.I), pattern
    assert "<script src" not in page


@requires_dot
def test_in_a_browser_the_page_draws_clicks_collapses_and_steps_through_backward(rng, tmp_path):
    x, loss = bn_ce(rng)
    page = tg.viz.to_html(loss)
    seen = selftest(page, tmp_path)
    data = page_data(page)
    assert seen["nodes"] == data["views"][data["start"]]["svg"].count('class="node"') >= 4  # drawn, as laid out
    clicked = page_data(page)["nodes"][seen["clicked"]]
    assert seen["panel"].startswith(f"{clicked['name']} (tensor") and "value" in seen["panel"]
    assert seen["collapse"]["after"] != seen["collapse"]["before"], seen["collapse"]
    ops = [t for t in _toposort([loss]) if t._ctx is not None]
    visited = seen["visited"]
    assert sorted(visited) == sorted(f"op{id(t._ctx)}" for t in ops), "every op once"
    where = {op: i for i, op in enumerate(visited)}
    for t in ops:  # reverse topological: an op's rule runs after the rules of every op that consumed its output
        for p in t._ctx.parents:
            if p._ctx is not None and p.requires_grad:
                assert where[f"op{id(t._ctx)}"] < where[f"op{id(p._ctx)}"]
    assert "every rule has run" in seen["done"]


def test_the_steps_show_the_chain_rule_sum(rng):
    """x used twice: its second gradient's step says the two add up, to x's gradient."""
    from tinygrad_bn.html import _backward_steps
    from tinygrad_bn.viz import trace
    x = tg.Tensor(rng.standard_normal(3), requires_grad=True, name="x")
    y = (x * x.exp()).sum()
    steps = _backward_steps((y,), trace(y))
    to_x = [e for s in steps for e in s["sends"] if e["to"] == f"t{id(x)}"]
    assert [e["arrived"] for e in to_x] == [1, 2] and all(e["of"] == 2 for e in to_x)
    y.backward()
    np.testing.assert_allclose(to_x[-1]["total"]["values"], np.round(x.grad.data, 6))
    grads = [np.array(e["grad"]["values"]) for e in to_x]
    np.testing.assert_allclose(grads[0] + grads[1], x.grad.data, atol=2e-6)


@requires_dot
def test_node_facts_carry_values_gradients_and_the_overlay(rng):
    x, loss = bn_ce(rng)
    loss.backward(retain_graph=True)
    page = tg.viz.to_html(loss, compare={x: x.grad.data * 1.5})
    data = page_data(page)
    fx = data["nodes"][f"t{id(x)}"]
    assert fx["name"] == "x" and fx["value"]["shape"] == [4, 3] and "grad" in fx
    assert fx["check"]["ok"] is False and "OFF" in fx["check"]["text"]
    assert len(data["steps"]) == sum(t._ctx is not None for t in _toposort([loss]))


@requires_dot
def test_a_backward_graph_page_and_the_jupyter_display(rng):
    x, loss = bn_ce(rng)
    loss.backward(create_graph=True)
    page = tg.viz.to_html(x.grad, backward=True)
    assert "backward graph" in page and isinstance(page, str)
    assert page._repr_html_().startswith("<iframe srcdoc=")
    with pytest.raises(TypeError, match="expected Tensors"):
        tg.viz.to_html(np.ones(3))


def mlp_loss(rng, blocks=3):
    layers = []
    for _ in range(blocks):
        layers += [nn.Linear(4, 4, dtype=np.float64, rng=rng), nn.BatchNorm1d(4, dtype=np.float64), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(4, 3, dtype=np.float64, rng=rng))
    x = tg.Tensor(rng.standard_normal((6, 4)), name="x")
    return F.cross_entropy(model(x), rng.integers(0, 3, 6))


def test_with_many_clusters_a_second_toggle_keeps_the_first(rng, tmp_path):
    """More than 6 cluster names: not every state is laid out; toggling one, then another, must not
    silently undo the first (the page picks the nearest laid-out state that makes the change)."""
    page = tg.viz.to_html(mlp_loss(rng))
    data = page_data(page)
    assert len(data["names"]) > 6 and len(data["views"]) < 2 ** len(data["names"])
    seen = selftest(page, tmp_path)
    k0, k1, k2 = (set(k.split("|")) - {""} for k in seen["toggles"])
    first, second = data["names"][:2]
    assert (first in k1) != (first in k0) and (second in k2) != (second in k1)
    if (first in k2) != (first in k1):  # the asked-for state was not laid out: the page must say what it undid
        assert "Not laid out" in seen["toggle_note"] and first in seen["toggle_note"], seen["toggle_note"]


def test_names_are_text_not_markup(rng, tmp_path):
    x = tg.Tensor(rng.standard_normal(3), requires_grad=True, name='<img src=x onerror="document.title=1">')
    y = (x * 2).sum()
    y.name = "<b>loss</b>"
    page = tg.viz.to_html(y)
    seen = selftest(page, tmp_path)
    assert "<b>loss</b>" in seen["panel"] or "<img" in seen["panel"]  # shown as text, not turned into elements
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          "--virtual-time-budget=5000", f"file://{tmp_path / 'page.html'}#step=2&pick=" +
                          '%3Cimg%20src%3Dx%20onerror%3D%22document.title%3D1%22%3E'],
                         capture_output=True, text=True, timeout=120).stdout
    head = dom.split("</head>", 1)[0]
    assert "<title>1</title>" not in head, "a name's markup ran as code"
    assert "<img" not in dom.split('id="side"', 1)[1].split("<script", 1)[0], "a name became an element"


def test_a_sum_of_outputs_says_so_and_a_backward_page_has_no_steps(rng):
    x = tg.Tensor(rng.standard_normal(3), requires_grad=True, name="x")
    assert "not one scalar" in page_data(tg.viz.to_html(x * 2))["seed_note"]
    assert page_data(tg.viz.to_html((x * 2).sum()))["seed_note"] == ""
    with pytest.raises(TypeError, match="give the tensors"):
        tg.viz.to_html()
