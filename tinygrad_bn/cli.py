"""`tinygrad-bn demo` (also `python -m tinygrad_bn demo`): the main job of the README."""
from __future__ import annotations

import argparse
import sys

import numpy as np

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.check import Report, audit_batch_norm, compare, numerical_grad

RTOL64 = 1e-12  # autograd against the formulas in float64: round-off only
RTOL32 = 1e-5   # float32: autograd against the float64 truth, allowed this or twice the formula's own error


def _bn(training: bool):
    """Batch norm over channel axis 1: (x, gamma, beta, dy[, running_mean, running_var]) -> dx, dgamma, dbeta."""
    def autograd(x, gamma, beta, dy, *running):
        xt, gt, bt = (tg.Tensor(v, requires_grad=True) for v in (x, gamma, beta))
        rm, rv = (tg.Tensor(v) for v in running) if running else (None, None)
        F.batch_norm(xt, rm, rv, gt, bt, training=training).backward(tg.Tensor(dy))
        return {"dx": xt.grad._data, "dgamma": gt.grad._data, "dbeta": bt.grad._data}

    def formula(x, gamma, beta, dy, *running):
        axes = (0,) + tuple(range(2, x.ndim))
        if training:
            grads = analytic.batchnorm_backward(dy, analytic.batchnorm_forward(x, gamma, beta, 1e-5, axes)[1])
        else:
            cache = analytic.batchnorm_eval_forward(x, gamma, beta, *running, 1e-5, axes)[1]
            grads = analytic.batchnorm_eval_backward(dy, cache)
        return dict(zip(("dx", "dgamma", "dbeta"), grads))
    return autograd, formula


def _ln_autograd(x, gamma, beta, dy):
    xt, gt, bt = (tg.Tensor(v, requires_grad=True) for v in (x, gamma, beta))
    F.layer_norm(xt, x.shape[-1], gt, bt).backward(tg.Tensor(dy))
    return {"dx": xt.grad._data, "dgamma": gt.grad._data, "dbeta": bt.grad._data}


def _ln_formula(x, gamma, beta, dy):
    cache = analytic.layernorm_forward(x, gamma, beta)[1]
    return dict(zip(("dx", "dgamma", "dbeta"), analytic.layernorm_backward(dy, cache)))


def _ce_autograd(logits, target):
    z = tg.Tensor(logits, requires_grad=True)
    F.cross_entropy(z, target).backward()
    return {"dlogits": z.grad._data}


def _ce_formula(logits, target):
    return {"dlogits": analytic.softmax_cross_entropy_backward(logits, target)}


def _mlp_autograd(x, w, b, dy):
    xt, wt, bt = (tg.Tensor(v, requires_grad=True) for v in (x, w, b))
    F.linear(xt, wt, bt).relu().backward(tg.Tensor(dy))
    return {"dx": xt.grad._data, "dW": wt.grad._data, "db": bt.grad._data}


def _mlp_formula(x, w, b, dy):
    dz = analytic.relu_backward(dy, x @ w.T + b)
    return dict(zip(("dx", "dW", "db"), analytic.linear_backward(dz, x, w)))


def gradient_cases(seed: int = 0, quick: bool = False):
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


def run_case(inputs: tuple, autograd, formula, dtype) -> tuple[Report, bool]:
    """Autograd in `dtype` against the formulas. float64: against the formula at RTOL64. float32:
    both against the float64 formula on the same (rounded) inputs; autograd passes at RTOL32 or
    when it is at most twice as far from the truth as the float32 formula (an ill-conditioned
    case, e.g. batch norm over 2 examples, where dx is a tiny difference of large terms)."""
    cast = [v.astype(dtype) if v.dtype.kind == "f" else v for v in inputs]
    got = autograd(*cast)
    if np.dtype(dtype) == np.float64:
        report = compare(got, formula(*cast), rtol=RTOL64)
        return report, report.ok
    truth = formula(*[v.astype(np.float64) if v.dtype.kind == "f" else v for v in cast])
    report = compare(got, truth, rtol=RTOL32)
    own = compare(formula(*cast), truth)
    return report, all(r.ok or r.max_rel <= 2 * o.max_rel for r, o in zip(report.rows, own.rows))


def check(args: argparse.Namespace) -> int:
    """Autograd against the hand-derived formulas over the grid; exit status 1 if a case fails."""
    print(f"{'case':<44} {'shape':<14} {'dtype':<8} {'max abs error':>13} {'max rel error':>13}  result")
    failed = 0
    for dtype in (np.float64, np.float32):
        for case, inputs, autograd, formula in gradient_cases(args.seed, args.quick):
            report, ok = run_case(inputs, autograd, formula, dtype)
            failed += not ok
            worst = max(report.rows, key=lambda r: r.max_rel)
            print(f"{case:<44} {str(inputs[0].shape):<14} {np.dtype(dtype).name:<8} "
                  f"{max(r.max_abs for r in report.rows):>13.3e} {worst.max_rel:>13.3e}  {'pass' if ok else 'FAIL'}")
    print(f"\nrelative error = max |autograd - analytic| / max |analytic|, worst of dx, dgamma, ... per case.\n"
          f"float64: against the formulas, pass <= {RTOL64:g}. float32: against the formulas evaluated in float64,\n"
          f"pass <= {RTOL32:g} or within 2x of the float32 formula's own error (ill-conditioned cases).")
    if args.audit:
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((8, 3)) * 2 + 1
        report = audit_batch_norm(x, rng.standard_normal(3) + 1, rng.standard_normal(3), rng.standard_normal(x.shape))
        print("\n" + str(report))
        failed += not report.ok
    print(f"\n{'FAIL' if failed else 'PASS'}: {failed} failing case(s)")
    return 1 if failed else 0


def _tanh_mlp_loss(x: tg.Tensor, w1: tg.Tensor, b1: tg.Tensor, w2: tg.Tensor) -> tg.Tensor:
    """mean((tanh(x W1 + b1) W2)^2): a small network whose every gradient we can check."""
    return ((x @ w1 + b1).tanh() @ w2).square().mean()


def demo(args: argparse.Namespace) -> int:
    """The main job: the gradient report and the graphs. Part 1, autograd against the hand-derived
    formulas for batch norm, softmax cross-entropy and friends (`check --audit`); part 2, against
    finite differences on a small tanh network, first and second order; part 3, the gallery of
    rendered graphs (SVG, PNG, index.html) in --out."""
    print("== 1. autograd against the hand-derived formulas (tinygrad-bn check --quick --audit) ==\n")
    status = check(argparse.Namespace(seed=args.seed, quick=True, audit=True))
    print("\n== 2. autograd against finite differences, first and second order ==\n")
    status = max(status, finite_difference_report(args))
    if args.out:
        from tinygrad_bn.gallery import render_gallery
        files = render_gallery(args.out, seed=args.seed)
        print(f"\n== 3. graphs: {len(files)} files rendered into {args.out}/ (open {files[-1]}) ==")
    return status


def finite_difference_report(args: argparse.Namespace) -> int:
    """Autograd against float64 central differences on a small tanh network, first and second order."""
    rng = np.random.default_rng(args.seed)
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
    return 0 if ok else 1


def train(args: argparse.Namespace) -> int:
    """Example 2 with defaults: a deep MLP on the digits with and without batch norm, several
    learning rates, plain SGD; prints the epochs each needs to reach the target test accuracy."""
    from tinygrad_bn.data import Split, load_digits, standardize
    from tinygrad_bn.training import bn_speedup, speedup_table

    d = load_digits(seed=args.seed)
    x_train, x_test = standardize(d.x_train, d.x_test)
    print(f"digits: {len(x_train)} train / {len(x_test)} test; MLP 64 -> {args.depth} x {args.width} -> 10, "
          f"SGD, batch 64, {args.epochs} epochs")
    results = bn_speedup(Split(x_train, d.y_train, x_test, d.y_test), args.lr, args.depth, args.width, args.epochs,
                         seed=args.seed, show_progress=not args.no_progress)
    print(speedup_table(results, args.target))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinygrad-bn", description="tinygrad_bn: exact autodiff on NumPy")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the gradient report and the rendered graphs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/gallery", help="folder for the rendered graphs ('' to skip them)")
    p.set_defaults(run=demo)
    p = sub.add_parser("check", help="autograd against the hand-derived formulas over a grid of cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="skip the largest batch")
    p.add_argument("--audit", action="store_true", help="add the node-by-node batch norm audit")
    p.set_defaults(run=check)
    p = sub.add_parser("train", help="batch norm speed-up on the digits (example 2), as a summary table")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    p.add_argument("--depth", type=int, default=6, help="hidden layers")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--target", type=float, default=0.9, help="test accuracy to reach")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=train)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
