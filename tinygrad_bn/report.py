"""What `tinygrad-bn check` and `demo` print: autograd against the hand-derived formulas over a grid
of cases, against finite differences on a small network (first and second order), and the
node-by-node audits of hand derivations (check.audit) for the layers the library ships."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.check import Audit, Report, audit, audit_batch_norm, compare, node, numerical_grad

RTOL64 = 1e-12  # autograd against the formulas in float64: round-off only
RTOL32 = 1e-5   # float32: autograd against the float64 truth, allowed this or twice the formula's own error

Grads = Callable[..., dict[str, np.ndarray]]  # arrays -> gradients by name (autograd's, or a formula's)


def _grad(t: tg.Tensor) -> np.ndarray:
    """t's gradient, which the backward before filled, as an array."""
    if t.grad is None:
        raise RuntimeError(f"no gradient reached {t.name or 'an input'} {t.shape}")
    return t.grad._data


def _bn(training: bool) -> tuple[Grads, Grads]:
    """Batch norm over channel axis 1: (x, gamma, beta, dy[, running_mean, running_var]) -> dx, dgamma, dbeta."""
    def autograd(x, gamma, beta, dy, *running):
        xt, gt, bt = (tg.Tensor(v, requires_grad=True) for v in (x, gamma, beta))
        rm, rv = (tg.Tensor(v) for v in running) if running else (None, None)
        F.batch_norm(xt, rm, rv, gt, bt, training=training).backward(tg.Tensor(dy))
        return {"dx": _grad(xt), "dgamma": _grad(gt), "dbeta": _grad(bt)}

    def formula(x, gamma, beta, dy, *running):
        axes = (0,) + tuple(range(2, x.ndim))
        if training:
            grads = analytic.batchnorm_backward(dy, analytic.batchnorm_forward(x, gamma, beta, 1e-5, axes)[1])
        else:
            running_mean, running_var = running
            cache = analytic.batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, 1e-5, axes)[1]
            grads = analytic.batchnorm_eval_backward(dy, cache)
        return dict(zip(("dx", "dgamma", "dbeta"), grads))
    return autograd, formula


def _ln_autograd(x, gamma, beta, dy):
    xt, gt, bt = (tg.Tensor(v, requires_grad=True) for v in (x, gamma, beta))
    F.layer_norm(xt, x.shape[-1], gt, bt).backward(tg.Tensor(dy))
    return {"dx": _grad(xt), "dgamma": _grad(gt), "dbeta": _grad(bt)}


def _ln_formula(x, gamma, beta, dy):
    cache = analytic.layernorm_forward(x, gamma, beta)[1]
    return dict(zip(("dx", "dgamma", "dbeta"), analytic.layernorm_backward(dy, cache)))


def _ce_autograd(logits, target):
    z = tg.Tensor(logits, requires_grad=True)
    F.cross_entropy(z, target).backward()
    return {"dlogits": _grad(z)}


def _ce_formula(logits, target):
    return {"dlogits": analytic.softmax_cross_entropy_backward(logits, target)}


def _mlp_autograd(x, w, b, dy):
    xt, wt, bt = (tg.Tensor(v, requires_grad=True) for v in (x, w, b))
    F.linear(xt, wt, bt).relu().backward(tg.Tensor(dy))
    return {"dx": _grad(xt), "dW": _grad(wt), "db": _grad(bt)}


def _mlp_formula(x, w, b, dy):
    dz = analytic.relu_backward(dy, x @ w.T + b)
    return dict(zip(("dx", "dW", "db"), analytic.linear_backward(dz, x, w)))


def gradient_cases(seed: int = 0, quick: bool = False) -> Iterator[tuple[str, tuple, Grads, Grads]]:
    """The grid `tinygrad-bn check` runs: (case, inputs as float64 arrays, autograd fn, formula fn).
    Integer arrays among the inputs (class labels) are passed through unchanged in every dtype."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
        return rng.standard_normal(shape) * scale + shift

    def bn(x: np.ndarray, training: bool = True) -> tuple:
        c = x.shape[1]
        extra = (normal(c), rng.uniform(0.5, 2, c)) if not training else ()
        return (x, normal(c, shift=1), normal(c), normal(*x.shape), *extra), *_bn(training)

    # a batch of 2 is well-conditioned only while var is not >> eps: for m = 2 the true dx is
    # eps / (var + eps) times the size of its terms, so x ~ 3 would measure round-off, not the formula
    yield "batch norm train, batch of 2 (x ~ 1e-2)", *bn(normal(2, 8, scale=1e-2))
    for n in (3, 16, 256) + (() if quick else (4096,)):
        yield "batch norm train", *bn(normal(n, 8, scale=3, shift=1))
    yield "batch norm train, tiny variance (x ~ 1e-4)", *bn(normal(64, 8, scale=1e-4))
    yield "batch norm train, huge variance (x ~ 1e4)", *bn(normal(64, 8, scale=1e4, shift=1e3))
    yield "batch norm train (N, C, L)", *bn(normal(8, 4, 6))
    yield "batch norm train (N, C, H, W)", *bn(normal(4, 3, 5, 5))
    yield "batch norm eval", *bn(normal(16, 8), training=False)
    yield "batch norm eval, batch of 1", *bn(normal(1, 8), training=False)
    yield "batch norm eval (N, C, H, W)", *bn(normal(4, 3, 5, 5), training=False)
    yield "layer norm", (normal(16, 10), normal(10, shift=1), normal(10), normal(16, 10)), _ln_autograd, _ln_formula
    for n, c in ((4, 4), (256, 10)):
        yield "softmax-CE, class indices", (normal(n, c, scale=3), rng.integers(0, c, n)), _ce_autograd, _ce_formula
    yield "softmax-CE, one-hot", (normal(32, 10), np.eye(10)[rng.integers(0, 10, 32)]), _ce_autograd, _ce_formula
    yield "softmax-CE, probabilities", (normal(32, 10), rng.dirichlet(np.ones(10), 32)), _ce_autograd, _ce_formula
    yield "softmax-CE, logits ~ 1e4", (normal(32, 10, scale=1e4), rng.integers(0, 10, 32)), _ce_autograd, _ce_formula
    yield "linear + relu", (normal(16, 7), normal(5, 7), normal(5), normal(16, 5)), _mlp_autograd, _mlp_formula


def _flush(arrays: dict[str, np.ndarray], dtype: Any) -> dict[str, np.ndarray]:
    """Values below `dtype`'s smallest normal number set to 0: what a float32 result can mean. (The
    float64 truth of softmax-CE at logits ~ 1e4 holds probabilities like 1e-101, far below float32's
    range, where float32 rightly gives 0; without this the error would read 3.7e-101 instead of 0.)"""
    tiny = np.finfo(dtype).tiny
    return {k: np.where(np.abs(v) < tiny, 0.0, v).astype(v.dtype) for k, v in arrays.items()}


def run_case(inputs: tuple, autograd: Grads, formula: Grads, dtype: Any) -> tuple[Report, bool]:
    """Autograd in `dtype` against the formulas. float64: against the formula at RTOL64. float32:
    both against the float64 formula on the same (rounded) inputs; autograd passes at RTOL32 or
    when it is at most twice as far from the truth as the float32 formula (an ill-conditioned
    case, e.g. batch norm over 2 examples, where dx is a tiny difference of large terms). In
    float32, values below its smallest normal number count as 0 on every side (_flush)."""
    cast = [v.astype(dtype) if v.dtype.kind == "f" else v for v in inputs]
    got = autograd(*cast)
    if np.dtype(dtype) == np.float64:
        report = compare(got, formula(*cast), rtol=RTOL64)
        return report, report.ok
    truth = _flush(formula(*[v.astype(np.float64) if v.dtype.kind == "f" else v for v in cast]), dtype)
    report = compare(_flush(got, dtype), truth, rtol=RTOL32)
    own = compare(_flush(formula(*cast), dtype), truth)
    return report, all(r.ok or r.max_rel <= 2 * o.max_rel for r, o in zip(report.rows, own.rows))


def check(seed: int = 0, quick: bool = False, audit: bool = False) -> int:
    """Print autograd against the hand-derived formulas over the grid (and, with audit, the
    node-by-node audits); the number of failing cases."""
    print(f"{'case':<42} {'shape':<13} {'dtype':<7} {'max abs error':>13} {'max rel error':>13}  result")
    failed = 0
    for dtype in (np.float64, np.float32):
        for case, inputs, autograd, formula in gradient_cases(seed, quick):
            report, ok = run_case(inputs, autograd, formula, dtype)
            failed += not ok
            worst = max(report.rows, key=lambda r: r.max_rel)
            print(f"{case:<42} {str(inputs[0].shape):<13} {np.dtype(dtype).name:<7} "
                  f"{max(r.max_abs for r in report.rows):>13.3e} {worst.max_rel:>13.3e}  {'pass' if ok else 'FAIL'}")
    print(f"\nrelative error = max |autograd - analytic| / max |analytic|, worst of dx, dgamma, ... per case.\n"
          f"float64: against the formulas, pass <= {RTOL64:g}. float32: against the formulas evaluated in float64,\n"
          f"pass <= {RTOL32:g} or within 2x of the float32 formula's own error (ill-conditioned cases).")
    for a in audits(seed) if audit else []:
        print("\n" + str(a))
        failed += not a.ok
    print(f"\n{'FAIL' if failed else 'PASS'}: {failed} failing case(s)")
    return failed


def _tanh_mlp_loss(x: tg.Tensor, w1: tg.Tensor, b1: tg.Tensor, w2: tg.Tensor) -> tg.Tensor:
    """mean((tanh(x W1 + b1) W2)^2): a small network whose every gradient we can check."""
    return ((x @ w1 + b1).tanh() @ w2).square().mean()


def finite_difference_report(seed: int = 0) -> bool:
    """Print autograd against float64 central differences on a small tanh network, first and
    second order; whether all agree."""
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.standard_normal((8, 5)))
    params = {"W1": tg.Tensor(rng.standard_normal((5, 6)) * 0.5, requires_grad=True),
              "b1": tg.Tensor(rng.standard_normal(6) * 0.1, requires_grad=True),
              "W2": tg.Tensor(rng.standard_normal((6, 3)) * 0.5, requires_grad=True)}
    loss = _tanh_mlp_loss(x, *params.values())
    grads = tg.grad(loss, list(params.values()), create_graph=True)
    numeric = numerical_grad(lambda *p: _tanh_mlp_loss(x, *p), list(params.values()))
    print(f"loss = {loss.item():.6f}  (8 examples, tanh MLP 5-6-3, float64)\n")
    print(f"{'gradient':<10} {'shape':<8} {'max |autograd - finite diff|':>30} {'max rel error':>14}")
    worst = 0.0
    for (name, p), g, n in zip(params.items(), grads, numeric):
        assert n is not None  # (None only for a non-floating input)
        rel = np.abs(g._data - n).max() / np.abs(n).max()
        worst = max(worst, rel)
        print(f"{'d/d' + name:<10} {str(p.shape):<8} {np.abs(g._data - n).max():>30.3e} {rel:>14.3e}")
    # second order: a Hessian-vector product H v = d(g . v)/dW1, against differences of the gradient
    v = rng.standard_normal(params["W1"].shape)
    hv = tg.grad((grads[0] * tg.Tensor(v)).sum(), params["W1"])[0]._data
    eps = 1e-6

    def grad_at(w1: np.ndarray) -> np.ndarray:
        w = tg.Tensor(w1, requires_grad=True)
        return tg.grad(_tanh_mlp_loss(x, w, params["b1"], params["W2"]), w)[0]._data
    hv_fd = (grad_at(params["W1"]._data + eps * v) - grad_at(params["W1"]._data - eps * v)) / (2 * eps)
    rel = np.abs(hv - hv_fd).max() / np.abs(hv_fd).max()
    worst = max(worst, rel)
    print(f"{'H v (W1)':<10} {str(hv.shape):<8} {np.abs(hv - hv_fd).max():>30.3e} {rel:>14.3e}")
    ok = worst < 1e-6
    print(f"\n{'PASS' if ok else 'FAIL'}: autograd agrees with finite differences (worst relative error {worst:.1e})")
    return ok


# ------------------------------------------------------------------------- node-by-node audits

def _staged_from(group: dict, d_x_hat: np.ndarray) -> dict[str, np.ndarray]:
    """standardize_backward_staged fed from a layer norm cache (statistics over its trailing axes)."""
    cache = {"axes": group["axes"], "m": group["d"], "xc": group["x_hat"] * group["std"], "std": group["std"]}
    return analytic.standardize_backward_staged(d_x_hat, cache)


def audit_layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray, eps: float = 1e-5) -> Audit:
    """Layer norm over the last axis, loss = sum(y * dy): the normalization graph's stages against
    analytic.standardize_backward_staged with the statistics over each example's features, and
    dx, dgamma, dbeta against the compact analytic.layernorm_backward."""
    def loss(x: tg.Tensor, gamma: tg.Tensor, beta: tg.Tensor) -> tg.Tensor:
        x_hat = F.standardize(x, (x.ndim - 1,), eps, mark=node)["x_hat"]
        return ((x_hat * gamma + beta) * tg.Tensor(dy, name="dy")).sum()

    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cache = analytic.layernorm_forward(v["x"], v["gamma"], v["beta"], eps)[1]
        d = _staged_from(cache, dy * v["gamma"])
        dx, dgamma, dbeta = analytic.layernorm_backward(dy, cache)
        return {**{k: d[k] for k in F.STAGES}, "x": dx, "gamma": dgamma, "beta": dbeta}
    return audit(loss, [tg.Tensor(x, name="x"), tg.Tensor(gamma, name="gamma"), tg.Tensor(beta, name="beta")], derive,
                 title=f"node-by-node audit of layer norm, x {x.shape} float64")


def audit_group_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dy: np.ndarray, num_groups: int,
                     eps: float = 1e-5) -> Audit:
    """Group norm (F.group_norm's graph: x (N, C, *) seen as (N, G, D), standardized per row, a
    per-channel affine), loss = sum(y * dy): the stages on the (N, G, D) view against the shared
    staged steps, and dx, dgamma, dbeta against the compact analytic.groupnorm_backward."""
    view = (x.shape[0], num_groups, x.size // (x.shape[0] * num_groups))

    def loss(x: tg.Tensor, gamma: tg.Tensor, beta: tg.Tensor) -> tg.Tensor:
        x_hat = F.standardize(x.reshape(view), (2,), eps, mark=node)["x_hat"].reshape(x.shape)
        return (F._affine(x_hat, F._channel(gamma, x.ndim), F._channel(beta, x.ndim)) * tg.Tensor(dy, name="dy")).sum()

    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cache = analytic.groupnorm_forward(v["x"], v["gamma"], v["beta"], num_groups, eps)[1]
        d = _staged_from(cache["group"], (dy * cache["gamma"]).reshape(view))
        dx, dgamma, dbeta = analytic.groupnorm_backward(dy, cache)
        return {**{k: d[k] for k in F.STAGES}, "x": dx, "gamma": dgamma, "beta": dbeta}
    return audit(loss, [tg.Tensor(x, name="x"), tg.Tensor(gamma, name="gamma"), tg.Tensor(beta, name="beta")], derive,
                 title=f"node-by-node audit of group norm, {num_groups} groups, x {x.shape} float64")


def audit_conv_pool_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray, dout: np.ndarray, stride: int = 1,
                        padding: int = 1, pool: int = 2) -> Audit:
    """conv2d -> max_pool2d -> relu, loss = sum(out * dout), derived backward in the cs231n manner:
    d relu = dout, d pool = relu_backward, d conv = maxpool_backward (the gradient to each window's
    arg-max), and dx, dw, db = conv2d_backward (dw from the windows, dx by col2im). Pooling before
    the relu computes the same function, and keeps the pooled values apart: relu first would make
    windows of tied zeros, where the loss has a kink and finite differences disagree with any gradient."""
    def loss(x: tg.Tensor, w: tg.Tensor, b: tg.Tensor) -> tg.Tensor:
        conv = node("conv", F.conv2d(x, w, b, stride=stride, padding=padding))
        pooled = node("pool", F.max_pool2d(conv, pool))
        return (node("relu", pooled.relu()) * tg.Tensor(dout, name="dout")).sum()

    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = {"relu": dout, "pool": analytic.relu_backward(dout, v["pool"])}
        d["conv"] = analytic.maxpool_backward(d["pool"], analytic.maxpool_forward(v["conv"], pool)[1])
        cache = analytic.conv2d_forward(v["x"], v["w"], v["b"], stride, padding)[1]
        d["x"], d["w"], db = analytic.conv2d_backward(d["conv"], cache)
        assert db is not None  # (the conv has a bias)
        d["b"] = db
        return d
    return audit(loss, [tg.Tensor(x, name="x"), tg.Tensor(w, name="w"), tg.Tensor(b, name="b")], derive,
                 title=f"node-by-node audit of conv2d -> max_pool2d -> relu, x {x.shape} w {w.shape} float64")


def softmax_ce_loss(z: tg.Tensor, y: np.ndarray) -> tg.Tensor:
    """Softmax cross-entropy staged as log-softmax: shifted = z - max(z) (detached: softmax is
    shift-invariant), counts = exp(shifted), total = sum counts, logp = shifted - log total,
    loss = -sum(y * logp) / m, for targets y (one-hot or probabilities, (m, C))."""
    shifted = node("shifted", z - tg.Tensor(z.data.max(axis=1, keepdims=True)))
    counts = node("counts", shifted.exp())
    total = node("total", counts.sum(axis=1, keepdims=True))
    logp = node("logp", shifted - total.log())
    return -(logp * tg.Tensor(y)).sum() / y.shape[0]


def softmax_ce_derivation(y: np.ndarray) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Its backward stage by stage (logp = shifted - log total has two paths to shifted), and dz
    from the compact formula (y_hat - y) / m of analytic, so the staged and the compact agree."""
    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = {"logp": -y / y.shape[0]}
        d["total"] = -d["logp"].sum(axis=1, keepdims=True) / v["total"]
        d["counts"] = np.broadcast_to(d["total"], v["counts"].shape)
        d["shifted"] = d["logp"] + d["counts"] * v["counts"]
        d["z"] = analytic.softmax_cross_entropy_backward(v["z"], y)
        return d
    return derive


def rms_norm_loss(x: tg.Tensor, g: tg.Tensor, dy: np.ndarray, eps: float = 1e-6) -> tg.Tensor:
    """loss = sum(dy * g * x / rms(x)), rms = sqrt(mean(x^2 over the last axis) + eps), staged."""
    ms = node("ms", (x * x).mean(axis=-1, keepdims=True))
    rms = node("rms", (ms + eps).sqrt())
    inv = node("inv", 1 / rms)
    x_hat = node("x_hat", x * inv)
    y = node("y", x_hat * g)
    return (y * tg.Tensor(dy, name="dy")).sum()


def rms_norm_derivation(dy: np.ndarray, slip: str | None = None,
                        ) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A user's hand backward of rms_norm_loss, stage by stage from the loss. `slip` plants a
    classic mistake at one stage ("rms": a sign; "ms": sqrt's 1/2 forgotten; "x": the direct path
    through x_hat forgotten), and the stages after it inherit it: what an audit must locate."""
    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x, g, n = v["x"], v["g"], v["x"].shape[-1]
        d = {"y": dy}
        d["x_hat"] = d["y"] * g
        d["g"] = (d["y"] * v["x_hat"]).sum(axis=0)
        d["inv"] = (d["x_hat"] * x).sum(axis=-1, keepdims=True)
        d["rms"] = -d["inv"] / v["rms"] ** 2 if slip != "rms" else d["inv"] / v["rms"] ** 2  # sign slip
        d["ms"] = d["rms"] / (2 * v["rms"]) if slip != "ms" else d["rms"] / v["rms"]  # d sqrt without its 1/2
        d["x"] = d["x_hat"] * v["inv"] + d["ms"] * 2 * x / n
        if slip == "x":  # the direct path through x_hat forgotten
            d["x"] = d["ms"] * 2 * x / n
        return d
    return derive


def audit_rms_norm(x: np.ndarray, g: np.ndarray, dy: np.ndarray, slip: str | None = None) -> Audit:
    """rms_norm_loss audited against rms_norm_derivation (with `slip` planted, if given)."""
    return audit(lambda x, g: rms_norm_loss(x, g, dy), [tg.Tensor(x, name="x"), tg.Tensor(g, name="g")],
                 rms_norm_derivation(dy, slip), title=f"node-by-node audit of a user layer, RMS norm, x {x.shape} "
                 "float64")


def audits(seed: int = 0) -> list[Audit]:
    """The audits `tinygrad-bn check --audit` prints: batch norm, layer norm, group norm, a conv2d ->
    max-pool -> relu block, softmax cross-entropy and a user's layer (RMS norm), each a hand
    derivation checked node by node."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 3)) * 2 + 1
    result = [audit_batch_norm(x, rng.standard_normal(3) + 1, rng.standard_normal(3), rng.standard_normal(x.shape))]
    x = rng.standard_normal((4, 6)) * 2 + 1
    result.append(audit_layer_norm(x, rng.standard_normal(6) + 1, rng.standard_normal(6), rng.standard_normal(x.shape)))
    x = rng.standard_normal((3, 4, 2, 3)) * 2 + 1
    result.append(audit_group_norm(x, rng.standard_normal(4) + 1, rng.standard_normal(4), rng.standard_normal(x.shape),
                                   num_groups=2))
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)) * 0.3
    result.append(audit_conv_pool_relu(x, w, rng.standard_normal(4) * 0.1, rng.standard_normal((2, 4, 3, 3))))
    y = rng.dirichlet(np.ones(5), 6)
    z = tg.Tensor(rng.standard_normal((6, 5)) * 3, name="z")
    result.append(audit(lambda z: softmax_ce_loss(z, y), [z], softmax_ce_derivation(y),
                        title="node-by-node audit of softmax cross-entropy, z (6, 5) float64"))
    x = rng.standard_normal((6, 5)) * 2 + 0.5
    result.append(audit_rms_norm(x, rng.standard_normal(5) + 1, rng.standard_normal(x.shape)))
    z = tg.Tensor(rng.standard_normal((4, 5, 3)) * 2, name="z")  # (N, C, d1): the classes on axis 1
    labels, weight = rng.integers(0, 5, (4, 3)), rng.uniform(0.5, 2, 5)
    labels[0, 1] = labels[2, 0] = -100
    options: dict[str, Any] = {"weight": weight, "ignore_index": -100, "label_smoothing": 0.1}
    result.append(audit(lambda z: F.cross_entropy(z, labels, **options), [z],
                        lambda v: {"z": analytic.softmax_cross_entropy_backward(v["z"], labels, **options)},
                        title="audit of F.cross_entropy with weight, ignore_index, label_smoothing 0.1, "
                              "z (4, 5, 3) float64"))
    return result
