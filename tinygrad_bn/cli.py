"""`tinygrad-bn demo` (also `python -m tinygrad_bn demo`): the main job of the README."""
from __future__ import annotations

import argparse
import sys

import numpy as np

import tinygrad_bn as tg
from tinygrad_bn.check import numerical_grad


def _tanh_mlp_loss(x: tg.Tensor, w1: tg.Tensor, b1: tg.Tensor, w2: tg.Tensor) -> tg.Tensor:
    """mean((tanh(x W1 + b1) W2)^2): a small network whose every gradient we can check."""
    return ((x @ w1 + b1).tanh() @ w2).square().mean()


def demo(args: argparse.Namespace) -> int:
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
        rel = np.abs(g.data - n).max() / np.abs(n).max()
        worst = max(worst, rel)
        print(f"{'d/d' + name:<10} {str(p.shape):<8} {np.abs(g.data - n).max():>30.3e} {rel:>14.3e}")
    # second order: a Hessian-vector product H v = d(g . v)/dW1, against differences of the gradient
    v = rng.standard_normal(params["W1"].shape)
    hv = tg.grad((grads[0] * tg.Tensor(v)).sum(), params["W1"])[0].data
    eps = 1e-6

    def grad_at(w1: np.ndarray) -> np.ndarray:
        w = tg.Tensor(w1, requires_grad=True)
        return tg.grad(_tanh_mlp_loss(x, w, params["b1"], params["W2"]), w)[0].data
    hv_fd = (grad_at(params["W1"].data + eps * v) - grad_at(params["W1"].data - eps * v)) / (2 * eps)
    rel = np.abs(hv - hv_fd).max() / np.abs(hv_fd).max()
    worst = max(worst, rel)
    print(f"{'H v (W1)':<10} {str(hv.shape):<8} {np.abs(hv - hv_fd).max():>30.3e} {rel:>14.3e}")
    ok = worst < 1e-6
    print(f"\n{'PASS' if ok else 'FAIL'}: autograd agrees with finite differences (worst relative error {worst:.1e})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinygrad-bn", description="tinygrad_bn: exact autodiff on NumPy")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="gradient report: autograd against finite differences")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
