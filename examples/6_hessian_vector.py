"""Second derivatives through batch norm (create_graph=True).

The gradient autograd builds with create_graph=True is itself a graph, so it can be
differentiated again: a Hessian-vector product H v = d(g . v)/dw of a batch-norm network's loss
(tanh activations: ReLU's kinks would break the finite differences, not the Hessian),
checked against central differences of the gradient, (g(w + h v) - g(w - h v)) / 2h, over a
range of steps h, and the symmetry u^T H v = v^T H u."""
from __future__ import annotations

import numpy as np
from _common import computing, digits, parse_args, pyplot, save

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F

STEPS = np.logspace(-9, -1, 17)


class TanhBNNet(nn.Module):
    """64 -> [Linear -> BatchNorm1d -> tanh] x 2 -> 10: smooth, so its Hessian exists everywhere."""
    def __init__(self, rng: np.random.Generator):
        f64 = np.float64
        self.fc1, self.bn1 = nn.Linear(64, 32, bias=False, dtype=f64, rng=rng), nn.BatchNorm1d(32, dtype=f64)
        self.fc2, self.bn2 = nn.Linear(32, 32, bias=False, dtype=f64, rng=rng), nn.BatchNorm1d(32, dtype=f64)
        self.head = nn.Linear(32, 10, dtype=np.float64, rng=rng)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.head(self.bn2(self.fc2(self.bn1(self.fc1(x)).tanh())).tanh())


def run(seed: int = 0) -> dict:
    data = digits(dtype=np.float64)
    model = TanhBNNet(np.random.default_rng(seed))
    x, y = tg.Tensor(data.x_train[:128]), data.y_train[:128]
    params = model.parameters()
    rng = np.random.default_rng(seed)
    u, v = ([rng.standard_normal(p.shape) for p in params] for _ in range(2))

    def grads(shift: list[np.ndarray] | None = None, create_graph: bool = False):
        saved = [p.data for p in params]  # the arrays themselves: graphs built on them stay valid
        if shift is not None:
            for p, s in zip(params, shift):
                p.data = p.data + s
        gs = tg.grad(F.cross_entropy(model(x), y), params, create_graph=create_graph)
        for p, d in zip(params, saved):
            p.data = d
        return gs

    def hvp(vec: list[np.ndarray]) -> list[np.ndarray]:
        gs = grads(create_graph=True)
        dot = sum((g * tg.Tensor(w)).sum() for g, w in zip(gs, vec))
        return [h.data for h in tg.grad(dot, params)]

    hv = hvp(v)
    flat_hv = np.concatenate([h.ravel() for h in hv])
    errors = []
    for h in STEPS:
        plus = grads([h * w for w in v])
        minus = grads([-h * w for w in v])
        fd = np.concatenate([((a.data - b.data) / (2 * h)).ravel() for a, b in zip(plus, minus)])
        errors.append(float(np.abs(fd - flat_hv).max() / np.abs(flat_hv).max()))
    u_hv = sum(float((a * b).sum()) for a, b in zip(u, hv))
    v_hu = sum(float((a * b).sum()) for a, b in zip(v, hvp(u)))
    return {"steps": STEPS, "errors": errors, "u_hv": u_hv, "v_hu": v_hu, "n_params": flat_hv.size}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(__doc__, several_seeds=False, argv=argv)
    with computing(args):
        r = run(seed=args.seed)
    best = int(np.argmin(r["errors"]))
    print(f"Hessian-vector product over {r['n_params']} parameters of a 2-block BN tanh MLP (float64, batch 128)")
    print(f"best agreement with central differences: {r['errors'][best]:.1e} relative, at h = {r['steps'][best]:.0e}")
    print(f"symmetry: u^T H v = {r['u_hv']:.12f}, v^T H u = {r['v_hu']:.12f} "
          f"(relative difference {abs(r['u_hv'] - r['v_hu']) / abs(r['u_hv']):.1e})")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(r["steps"], r["errors"], "o-")
    ax.set(xlabel="finite-difference step h", ylabel="max relative difference from autograd's H v",
           title="H v: double backward vs differences of the gradient")
    ax.annotate("truncation error ~ h^2", (r["steps"][11], r["errors"][11]), textcoords="offset points",
                xytext=(8, -12), fontsize=8)
    ax.annotate("round-off ~ 1/h", (r["steps"][1], r["errors"][1]), textcoords="offset points", xytext=(10, 0),
                fontsize=8)
    save(fig, args.out, "6_hessian_vector")
    return r


if __name__ == "__main__":
    main()
