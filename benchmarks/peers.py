"""tinygrad_bn against the NumPy autodiff libraries of the speed issue's table, HIPS autograd and
MyGrad, on run.py's batch norm, softmax cross-entropy and per-op chain cases: the same graphs
composed of each library's primitives, validated against the NumPy formulas before timing,
medians of 7, one thread. Optional (not a dependency): pip install autograd mygrad.

    python benchmarks/peers.py
"""
from __future__ import annotations

from functools import partial

import run  # run.py beside this file: pins one BLAS thread before NumPy loads, and the shared cases

# isort: split
import numpy as np

try:
    import autograd.numpy as anp
    from autograd import grad as agrad
except ImportError:
    anp = agrad = None
try:
    import mygrad as mg
except ImportError:
    mg = None


def bn_hips(x, gamma, beta, dy):
    def loss(x, gamma, beta):
        xc = x - anp.mean(x, axis=0, keepdims=True)
        var = anp.mean(xc * xc, axis=0, keepdims=True)
        return anp.sum((xc / anp.sqrt(var + run.EPS) * gamma + beta) * dy)
    return list(agrad(loss, argnum=(0, 1, 2))(x, gamma, beta))


def bn_mygrad(x, gamma, beta, dy):
    ts = [mg.tensor(a) for a in (x, gamma, beta)]
    xc = ts[0] - mg.mean(ts[0], axis=0, keepdims=True)
    var = mg.mean(xc * xc, axis=0, keepdims=True)
    (xc / mg.sqrt(var + run.EPS) * ts[1] + ts[2]).backward(dy)
    return [t.grad for t in ts]


def ce_hips(z, t):
    m = np.max(z, axis=1, keepdims=True)  # the max as a constant, as in the other implementations

    def loss(logits):
        shifted = logits - m
        return anp.mean(anp.log(anp.sum(anp.exp(shifted), axis=1)) - shifted[np.arange(len(t)), t])
    return [agrad(loss)(z)]


def ce_mygrad(z, t):
    zt = mg.tensor(z)
    shifted = zt - np.max(z, axis=1, keepdims=True)
    mg.mean(mg.log(mg.sum(mg.exp(shifted), axis=1)) - shifted[np.arange(len(t)), t]).backward()
    return [zt.grad]


def chain_hips(n: int):
    def f(x):
        y = x
        for _ in range(n // 2):
            y = y * np.float32(1.0001) + x
        return anp.sum(y)
    return [agrad(f)(np.ones((4, 4), np.float32))]


def chain_mygrad(n: int):
    x = mg.tensor(np.ones((4, 4), np.float32))
    y = x
    for _ in range(n // 2):
        y = y * np.float32(1.0001) + x
    y.sum().backward()
    return [x.grad]


def main() -> None:
    have = {"HIPS autograd": anp is not None, "MyGrad": mg is not None}
    print("peers installed: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in have.items()))
    n = 20_000
    cases = [(f"batch norm {s}", "ms", 1e3, run.bn_inputs(s), ("x", "gamma", "beta"),
              {"NumPy formulas": run.bn_numpy, "tinygrad_bn": run.bn_tg, "HIPS autograd": anp and bn_hips,
               "MyGrad": mg and bn_mygrad}) for s in ((4096, 1024), (256, 1024), (64, 256))]
    cases.append(("softmax cross-entropy (4096, 1000)", "ms", 1e3, run.ce_inputs(), ("logits",),
                  {"NumPy formulas": lambda z, t: run.ce_numpy(z, t)[0], "tinygrad_bn": run.ce_tg,
                   "HIPS autograd": anp and ce_hips, "MyGrad": mg and ce_mygrad}))
    cases.append((f"per-op overhead, chain of {n:,} adds/muls (4, 4)", "us/op", 1e6 / n, (n,), ("x",),
                  {"NumPy formulas": run.chain_numpy,
                   "tinygrad_bn": lambda n: run.chain_backward(run.chain_graph_tg(n)),
                   "HIPS autograd": anp and chain_hips, "MyGrad": mg and chain_mygrad}))
    cols = list(cases[0][5])
    print(f"{'forward + backward':<48} {'unit':>5}" + "".join(f"{c:>16}" for c in cols) + "   tinygrad_bn / peer")
    for name, unit, scale, args, names, impls in cases:
        want = impls["NumPy formulas"](*args)
        for col, fn in impls.items():
            if fn:
                for what, g, w in zip(names, fn(*args), want, strict=True):
                    run.assert_close(g, w, f"{name}: {col} d{what}")
        t = {col: fn and run.median_time(partial(fn, *args), 7) * scale for col, fn in impls.items()}
        ratios = "  ".join(f"/{c.split()[0]} {t['tinygrad_bn'] / t[c]:.2f}" for c in ("HIPS autograd", "MyGrad")
                           if t[c])
        print(f"{name:<48} {unit:>5}" + "".join(f"{run.fmt(v):>16}" for v in t.values()) + f"   {ratios}")


if __name__ == "__main__":
    main()
