"""Forward + backward of tinygrad_bn against three baselines measured in the same run: PyTorch's
fused kernels, PyTorch composed of primitives (the same graph tinygrad_bn records), and NumPy with
the hand-written formulas of tinygrad_bn.analytic. Medians over rounds after a warm-up; ratios
are tinygrad_bn / baseline (lower is better). One thread for every library. tinygrad_bn runs
twice: eager (the default) and under tg.fused() (the same graph, run as fused kernels).

    python benchmarks/run.py                  # 15 rounds
    python benchmarks/run.py --quick          # 5 rounds, shorter chains: under a minute
    python benchmarks/run.py --json out.json  # also write medians and ratios as JSON
    PYTHONPATH=. /tmp/torchenv/bin/python benchmarks/run.py   # with the PyTorch columns

Every case is validated once, outside timing: each implementation's gradients must match the
NumPy formulas (float32 tolerance), and the fused gradients eager's, so no wrong computation is
ever timed. Compiling the fused kernels (numba, once per kernel structure) happens in the warm-up
and is reported apart. In the MLP step,
tinygrad_bn and PyTorch fused also update BatchNorm's running statistics (two 512-vectors per
layer); the composed and NumPy versions do not.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from functools import partial

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # before NumPy (and torch) load their BLAS

import numpy as np  # noqa: E402

import tinygrad_bn as tg  # noqa: E402
import tinygrad_bn.nn.functional as F  # noqa: E402
from tinygrad_bn import analytic as A  # noqa: E402
from tinygrad_bn.optim import SGD  # noqa: E402
from tinygrad_bn.training import MLP  # noqa: E402

try:
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(1)
except ImportError:
    torch = TF = None
# Move every object the imports made out of the collector's view: otherwise each full collection
# during a long chain scans torch's ~150k module objects too and charges them to whoever runs.
gc.freeze()

COLUMNS = {"torch_fused": "PyTorch fused", "torch_composed": "PyTorch composed", "numpy": "NumPy formulas",
           "tinygrad_bn": "tinygrad_bn", "fused": "tg.fused()"}
BASELINES = ("torch_fused", "torch_composed", "numpy")
FUSED_BASELINES = ("torch_fused", "numpy", "tinygrad_bn")  # fused / these; tinygrad_bn (eager) too
FUSED_RUNS: dict[str, dict] = {}  # case -> the first fused run's stats (compile seconds, passes)
SAME = "= fused"  # the cell of a baseline that is the fused one (plain eager PyTorch)
EPS = 1e-5
MiB = 2**20


# ------------------------------------------------------------------------------ measuring

def median_time(run, repeats: int, setup=None, warmup: int = 1, min_repeat: float = 0.02) -> float:
    """Median seconds per run() over `repeats`, after `warmup` untimed runs. A call shorter than
    `min_repeat` is timed as a loop of calls lasting about that long (as timeit does), so a
    sub-millisecond case is not at the mercy of the timer and one interruption. With `setup`,
    time run(setup()) once per repeat, leaving setup out of the timing."""
    times, number = [], 1
    for i in range(warmup + repeats):
        arg = setup() if setup else None
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(number):
            run(arg) if setup else run()
        times.append((time.perf_counter() - t0) / number)
        if i == warmup - 1 and not setup:
            number = max(1, math.ceil(min_repeat / times[-1]))
    return statistics.median(times[warmup:])


def assert_close(got, want, what: str) -> None:
    """float32 agreement: summing thousands of terms in another order moves a result by up to a
    few 1e-6 of the largest term (2.3e-6 seen here), so the absolute tolerance scales with the
    expected array's magnitude. A wrong formula is off by O(1) of it."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = float(np.abs(want).max()) or 1.0
    if not np.allclose(got, want, rtol=1e-4, atol=1e-5 * scale):
        raise AssertionError(f"{what}: max |difference| {np.abs(got - want).max():.3g} (scale {scale:.3g})")


def validate(impls: dict, args: tuple, names: tuple[str, ...], case: str) -> None:
    """Every implementation's gradients (a list, in `names` order) against the NumPy formulas, and
    the fused ones against eager's (float32 round-off: the same graph, other summation orders)."""
    want = impls["numpy"](*args)
    for col, fn in impls.items():
        if fn is not None and col != "numpy":
            for name, g, w in zip(names, fn(*args), want, strict=True):
                assert_close(g, w, f"{case}: {COLUMNS[col]} d{name}")
    if impls.get("fused") is not None:
        for name, g, w in zip(names, impls["fused"](*args), impls["tinygrad_bn"](*args), strict=True):
            assert_close(g, w, f"{case}: tg.fused() d{name} against eager")


def in_fused(fn, case: str):
    """fn run under tg.fused(); the first run's statistics (compile time, passes) kept for the notes."""
    def run(*args):
        with tg.fused() as ctx:
            out = fn(*args)
        FUSED_RUNS.setdefault(case, {**ctx.stats, "compile_seconds": ctx.compile_seconds})
        return out
    return run


def time_all(impls: dict, args: tuple, repeats: int, scale: float, min_repeat: float = 0.02) -> dict:
    """Median seconds per call of each implementation (times `scale`), timed in rounds that call
    every implementation once each (a case under `min_repeat` as a loop lasting about that long), so
    a slow spell of this shared machine, or a library's first-call costs, hit all of them alike:
    timed one after the other, PyTorch's batch norm once measured 16.6 ms here and 4.9 ms in rounds."""
    runs = {col: partial(fn, *args) for col, fn in impls.items() if fn is not None}
    number = {}
    for col, run in runs.items():  # warm-up (numba compiles here), then the loop length
        run()
        start = time.perf_counter()
        run()
        number[col] = max(1, math.ceil(min_repeat / max(time.perf_counter() - start, 1e-9)))
    times: dict[str, list[float]] = {col: [] for col in runs}
    for _ in range(repeats):
        for col, run in runs.items():
            gc.collect()
            start = time.perf_counter()
            for _ in range(number[col]):
                run()
            times[col].append((time.perf_counter() - start) / number[col])
    return {col: statistics.median(times[col]) * scale if col in times else None for col in impls}


def peak_tracemalloc(fn) -> int:
    """Peak bytes traced (Python objects and NumPy buffers) while fn runs, above what existed before."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def peak_torch(fn) -> int | None:
    """Peak bytes held by PyTorch's CPU allocator while fn runs: the running sum of the allocation
    and free events torch.profiler(profile_memory=True) records, in time order. None when the
    profiler gives no such events (then there is no reliable number)."""
    from torch.profiler import ProfilerActivity, profile
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                        key=lambda e: e.start_ns())
    except AttributeError:  # the (semi-private) results API moved
        return None
    running = peak = 0
    for e in events:
        running += e.nbytes()
        peak = max(peak, running)
    return peak if events else None


def torch_memory_is_reliable() -> bool:
    """The profiler must see a known allocation exactly: 4 MiB, held, then a second 4 MiB."""
    def alloc():
        a = torch.ones(MiB)  # noqa: F841  (kept alive while b is allocated)
        b = torch.ones(MiB)
        return b
    return peak_torch(alloc) == 8 * MiB


# ------------------------------------------------------------------------------ batch norm

def bn_inputs(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32) * 2 + 0.5
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    beta = rng.standard_normal(shape[1], dtype=np.float32)
    return x, gamma, beta, rng.standard_normal(shape, dtype=np.float32)  # dy: the upstream gradient


def bn_numpy(x, gamma, beta, dy):
    _, cache = A.batchnorm_forward(x, gamma, beta, EPS)
    return A.batchnorm_backward(dy, cache)


def bn_tg(x, gamma, beta, dy):
    ts = [tg.from_numpy(a, requires_grad=True) for a in (x, gamma, beta)]
    F.batch_norm(ts[0], None, None, ts[1], ts[2], training=True, eps=EPS).backward(dy)
    return [t.grad.data for t in ts]


def bn_composed(x, gamma, beta):
    """Batch norm in torch primitives, the graph of F.standardize: mean, subtract, square, mean,
    add eps, sqrt, divide, scale, shift."""
    mu = x.mean(0, keepdim=True)
    xc = x - mu
    var = (xc * xc).mean(0, keepdim=True)
    return xc / (var + EPS).sqrt() * gamma + beta


def bn_fused(x, gamma, beta):
    return TF.batch_norm(x, None, None, gamma, beta, training=True, eps=EPS)


def bn_torch(forward, x, gamma, beta, dy):
    ts = [torch.from_numpy(a).requires_grad_() for a in (x, gamma, beta)]
    forward(*ts).backward(torch.from_numpy(dy))
    return [t.grad.numpy() for t in ts]


def bn_impls(case: str = "") -> dict:
    return {"torch_fused": torch and partial(bn_torch, bn_fused),
            "torch_composed": torch and partial(bn_torch, bn_composed), "numpy": bn_numpy, "tinygrad_bn": bn_tg,
            "fused": in_fused(bn_tg, case)}


def case_batch_norm(shape, repeats: int) -> dict:
    args, impls = bn_inputs(shape), bn_impls(f"batch norm {shape}")
    validate(impls, args, ("x", "gamma", "beta"), f"batch norm {shape}")
    return row(f"batch norm {shape}", "ms", time_all(impls, args, repeats, 1e3))


def case_memory(shape) -> tuple[dict, str]:
    args, impls = bn_inputs(shape), bn_impls()
    def fused(*a):
        with tg.fused():
            return bn_tg(*a)
    values = {"numpy": peak_tracemalloc(partial(bn_numpy, *args)) / MiB,
              "tinygrad_bn": peak_tracemalloc(partial(bn_tg, *args)) / MiB,
              "fused": peak_tracemalloc(partial(fused, *args)) / MiB}
    note = "peak memory: tracemalloc (NumPy buffers are traced) for NumPy and tinygrad_bn"
    if torch and torch_memory_is_reliable():
        for col in ("torch_fused", "torch_composed"):
            peak = peak_torch(partial(impls[col], *args))
            values[col] = None if peak is None else peak / MiB
        note += "; for PyTorch, its CPU allocator's events in torch.profiler(profile_memory=True), checked first " \
                "on a known allocation"
    elif torch:
        note += "; no reliable way to measure PyTorch's CPU allocations here (the profiler check failed)"
    return row(f"batch norm {shape} peak memory above inputs", "MiB", values), note


# ---------------------------------------------------------------- softmax cross-entropy

def ce_inputs(n=4096, c=1000):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, c), dtype=np.float32) * 3, rng.integers(0, c, n)


def ce_numpy(z, t):
    """J = mean_i (logsumexp(z_i) - z_{i,t_i}); dJ/dz = (softmax(z) - onehot(t)) / n (docs/course.md
    section 7), reusing the forward's exponentials. Returns [dz] and J."""
    rows = np.arange(len(t))
    shifted = z - z.max(axis=1, keepdims=True)  # softmax is shift-invariant: exp never overflows
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(s[:, 0]) - shifted[rows, t])
    dz = e / s
    dz[rows, t] -= 1
    dz /= len(t)
    return [dz], loss


def ce_tg(z, t):
    logits = tg.from_numpy(z, requires_grad=True)
    F.cross_entropy(logits, t).backward()
    return [logits.grad.data]


def ce_composed(z, t):
    """log_softmax through logsumexp in primitives, then gather and mean."""
    m = z.max(dim=1, keepdim=True).values.detach()  # logsumexp is shift-invariant: detaching the max is exact
    logp = z - (m + (z - m).exp().sum(dim=1, keepdim=True).log())
    return -logp.gather(1, t[:, None]).mean()


def ce_torch(loss_fn, z, t):
    logits = torch.from_numpy(z).requires_grad_()
    loss_fn(logits, torch.from_numpy(t)).backward()
    return [logits.grad.numpy()]


def case_cross_entropy(repeats: int) -> dict:
    args = ce_inputs()
    assert_close(ce_numpy(*args)[0][0], A.softmax_cross_entropy_backward(*args), "cross-entropy: inline vs analytic")
    impls = {"torch_fused": torch and partial(ce_torch, TF.cross_entropy),
             "torch_composed": torch and partial(ce_torch, ce_composed),
             "numpy": lambda z, t: ce_numpy(z, t)[0], "tinygrad_bn": ce_tg,
             "fused": in_fused(ce_tg, "softmax cross-entropy")}
    validate(impls, args, ("logits",), "cross-entropy")
    return row("softmax cross-entropy (4096, 1000)", "ms", time_all(impls, args, repeats, 1e3))


# ------------------------------------------------------------- per-op overhead and linearity

def chain_graph_tg(n: int):
    """n ops: y <- y * 1.0001 + x, n/2 times, on (4, 4); returns x and sum(y)."""
    x = tg.Tensor(np.ones((4, 4), np.float32), requires_grad=True)
    y = x
    for _ in range(n // 2):
        y = y * 1.0001 + x
    return x, y.sum()


def chain_graph_torch(n: int):
    x = torch.ones((4, 4), requires_grad=True)
    y = x
    for _ in range(n // 2):
        y = y * 1.0001 + x
    return x, y.sum()


def chain_backward(graph):
    x, out = graph
    out.backward()
    return [x.grad.data if isinstance(x, tg.Tensor) else x.grad.numpy()]


def chain_backward_numpy(n: int):
    """The chain's backward by hand: the forward keeps nothing (the multiplier is a constant);
    walking back, each step adds g to dx and multiplies g by 1.0001."""
    g, gx = np.ones((4, 4), np.float32), np.zeros((4, 4), np.float32)
    for _ in range(n // 2):
        gx = gx + g
        g = g * np.float32(1.0001)
    return [gx + g]


def chain_numpy(n: int):
    x = y = np.ones((4, 4), np.float32)
    for _ in range(n // 2):
        y = y * np.float32(1.0001) + x
    return chain_backward_numpy(n)


def case_overhead(n: int, repeats: int) -> dict:
    impls = {"torch_fused": torch and (lambda n: chain_backward(chain_graph_torch(n))), "torch_composed": None,
             "numpy": chain_numpy, "tinygrad_bn": lambda n: chain_backward(chain_graph_tg(n)),
             "fused": in_fused(lambda n: chain_backward(chain_graph_tg(n)), "chain")}
    validate(impls, (n,), ("x",), "chain")
    values = time_all(impls, (n,), repeats, 1e6 / n)
    values["torch_composed"] = SAME if torch else None
    return row(f"per-op overhead, chain of {n:,} adds/muls (4, 4)", "us/op", values)


def case_chain_linearity(n_small: int, n_big: int, repeats: int) -> dict:
    """Backward alone (the graph is built outside the timing): time(n_big) / time(n_small)."""
    def ratio(run, setup):  # run(setup(n)), only run timed
        return median_time(run, repeats, partial(setup, n_big)) / median_time(run, repeats, partial(setup, n_small))
    values = {"numpy": ratio(chain_backward_numpy, lambda n: n), "tinygrad_bn": ratio(chain_backward, chain_graph_tg)}
    if torch:
        values.update(torch_fused=ratio(chain_backward, chain_graph_torch), torch_composed=SAME)
    return row(f"chain backward time, {n_big:,} / {n_small:,} ops (ideal {n_big / n_small:g})", "ratio", values,
               ratios=False)


def bn_linearity(small: dict, big: dict, n_small: int, n_big: int) -> dict:
    values = {col: small["values"][col] / n_small / (big["values"][col] / n_big)
              for col in COLUMNS if small["values"].get(col) is not None}
    return row("batch norm time/element, (256, 1024) / (4096, 1024)", "ratio", values, ratios=False)


# ------------------------------------------------------------------------------ MLP step

MLP_SIZES, BATCH, LR = [784, 512, 512], 256, 0.01


def mlp_inputs():
    """Seeded batch and the initial weights every implementation starts from, in the order
    [W1, gamma1, beta1, W2, gamma2, beta2, W3, b3] (tinygrad_bn's and PyTorch's parameter order)."""
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((BATCH, MLP_SIZES[0]), dtype=np.float32), rng.integers(0, 10, BATCH)
    weights = [p.data.copy() for p in MLP(MLP_SIZES, 10, batch_norm=True, seed=0).parameters()]
    for i in (1, 2, 4, 5):  # gamma, beta away from 1, 0, so their gradients are tested in general position
        weights[i] = weights[i] + np.random.default_rng(i).uniform(-0.3, 0.3, weights[i].shape).astype(np.float32)
    return weights, x, t


def mlp_tg(weights, x, t, fused: bool = False):
    """A step function: zero_grad, forward, backward, SGD step; returns the gradients. With
    `fused`, the step runs under tg.fused()."""
    model = MLP(MLP_SIZES, 10, batch_norm=True, seed=0)
    for p, w in zip(model.parameters(), weights, strict=True):
        p.data = w.copy()
    opt = SGD(model.parameters(), lr=LR)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(tg.from_numpy(x)), t).backward()
        opt.step()
        return [p.grad.data for p in model.parameters()]
    return in_fused(step, "MLP step") if fused else step


def mlp_numpy(weights, x, t):
    """The same step by hand: analytic.py's formulas for batch norm, linear and ReLU backward."""
    w = [a.copy() for a in weights]

    def step():
        W1, g1, b1, W2, g2, b2, W3, b3 = w
        y1, c1 = A.batchnorm_forward(x @ W1.T, g1, b1, EPS)
        h1 = np.maximum(y1, 0)
        y2, c2 = A.batchnorm_forward(h1 @ W2.T, g2, b2, EPS)
        h2 = np.maximum(y2, 0)
        (dlogits,), _ = ce_numpy(h2 @ W3.T + b3, t)
        dh2, dW3, db3 = A.linear_backward(dlogits, h2, W3)
        dz2, dg2, db2 = A.batchnorm_backward(A.relu_backward(dh2, y2), c2)
        dh1, dW2 = dz2 @ W2, dz2.T @ h1
        dz1, dg1, db1 = A.batchnorm_backward(A.relu_backward(dh1, y1), c1)
        grads = [dz1.T @ x, dg1, db1, dW2, dg2, db2, dW3, db3]  # the input needs no gradient
        for p, g in zip(w, grads):
            p -= LR * g
        return grads
    return step


def mlp_torch(composed: bool, weights, x, t):
    nn = torch.nn
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    if composed:
        W1, g1, b1, W2, g2, b2, W3, b3 = params

        def forward(x):
            h = torch.relu(bn_composed(x @ W1.T, g1, b1))
            return torch.relu(bn_composed(h @ W2.T, g2, b2)) @ W3.T + b3
        loss_fn = ce_composed
    else:
        forward = nn.Sequential(nn.Linear(784, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
                                nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 10))
        with torch.no_grad():
            for p, w in zip(forward.parameters(), weights, strict=True):
                p.copy_(torch.from_numpy(w))
        params, loss_fn = list(forward.parameters()), TF.cross_entropy
    opt = torch.optim.SGD(params, lr=LR)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def step():
        opt.zero_grad()
        loss_fn(forward(xt), tt).backward()
        opt.step()
        return [p.grad.numpy() for p in params]
    return step


def case_mlp(repeats: int) -> dict:
    weights, x, t = mlp_inputs()
    makers = {"torch_fused": torch and partial(mlp_torch, False), "torch_composed": torch and partial(mlp_torch, True),
              "numpy": mlp_numpy, "tinygrad_bn": mlp_tg, "fused": partial(mlp_tg, fused=True)}
    names = ("W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3")
    validate({col: m and (lambda m=m: m(weights, x, t)()) for col, m in makers.items()}, (), names, "MLP step")
    steps = {col: m and m(weights, x, t) for col, m in makers.items()}
    return row("MLP 784-512-512-10 + BN, batch 256, SGD step", "ms", time_all(steps, (), repeats, 1e3))


# ------------------------------------------------------------------------------ report

def row(case: str, unit: str, values: dict, ratios: bool = True) -> dict:
    values = {col: values.get(col) for col in COLUMNS}

    def ratio(ours, col):
        return ours / values[col] if ratios and isinstance(ours, float) and isinstance(values[col], float) else None
    return {"case": case, "unit": unit, "values": values,
            "ratios": {col: ratio(values["tinygrad_bn"], col) for col in BASELINES},
            "fused_ratios": {col: ratio(values["fused"], col) for col in FUSED_BASELINES}}


def fmt(v) -> str:
    """Three significant digits, no exponent; "-" for missing."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f}" if v else "0"


def print_table(rows: list[dict]) -> None:
    """The medians, then tinygrad_bn's ratios (eager: /fused /composed /numpy; fused: /fused
    /numpy /eager)."""
    width = max(len(r["case"]) for r in rows)
    short = {"torch_fused": "/fused", "torch_composed": "/composed", "numpy": "/numpy", "tinygrad_bn": "/eager"}
    head = f"{'forward + backward':<{width}}  {'unit':>5}" + "".join(f"  {h:>16}" for h in COLUMNS.values()) \
        + "".join(f"  {short[c]:>9}" for c in BASELINES) + "  |" + "".join(f"  {short[c]:>7}" for c in FUSED_BASELINES)
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['case']:<{width}}  {r['unit']:>5}" + "".join(f"  {fmt(v):>16}" for v in r["values"].values())
              + "".join(f"  {fmt(v) if v is not None else '':>9}" for v in r["ratios"].values()) + "  |"
              + "".join(f"  {fmt(v) if v is not None else '':>7}" for v in r["fused_ratios"].values()))


def pass_time(shape) -> float:
    """Milliseconds for one NumPy pass over a float32 array of `shape` (a sum: reads it once)."""
    a = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    return median_time(a.sum, 7) * 1e3


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__ if torch else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 rounds and shorter chains (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the medians and ratios as JSON")
    args = parser.parse_args()
    repeats = 5 if args.quick else 15
    chain_n, (lin_small, lin_big) = (2_000, (2_000, 20_000)) if args.quick else (20_000, (10_000, 100_000))
    start = time.perf_counter()

    info = machine()
    print(f"machine: {info['platform']}, {info['cpu']}, {info['cores']} cores; Python {info['python']}, "
          f"NumPy {info['numpy']}, PyTorch {info['torch'] or 'not installed'}")
    print(f"medians of {repeats} rounds (each implementation once per round) after a warm-up, one thread each; "
          "ratio = tinygrad_bn / baseline (lower is better)\n")
    sys.stdout.flush()

    bn = [case_batch_norm(s, repeats) for s in ((4096, 1024), (256, 1024), (64, 256))]
    timed = [case_cross_entropy(repeats), case_overhead(chain_n, repeats), case_mlp(repeats),
             case_chain_linearity(lin_small, lin_big, repeats)]
    # memory last: after torch.profiler has run, pure-Python code in this process runs ~40% slower
    # (per-op overhead measured 7.6 -> 11.2 us), which would be charged to tinygrad_bn alone
    memory, memory_note = case_memory((4096, 1024))
    rows = [*bn, *timed[:3], memory, bn_linearity(bn[1], bn[0], 256 * 1024, 4096 * 1024), timed[3]]
    print_table(rows)
    notes = [memory_note, "composed and fused PyTorch are the same thing for adds/muls: shown once"]
    floor = FUSED_RUNS.get("batch norm (4096, 1024)")
    if floor:
        one = pass_time((4096, 1024))
        notes.append(f"tg.fused() batch norm (4096, 1024): {floor['passes']} passes over (4096, 1024) float32 arrays "
                     f"(reads and writes); one NumPy pass (a sum) takes {one:.3g} ms here, so the floor is about "
                     f"{floor['passes'] * one:.3g} ms")
    notes.append("tg.fused() compile time (numba, first run only): " + ", ".join(
        f"{case} {run['compile_seconds']:.2f} s" for case, run in FUSED_RUNS.items()))
    print("\n" + "\n".join(notes))
    print(f"total time {time.perf_counter() - start:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "repeats": repeats, "quick": args.quick, "rows": rows, "notes": notes,
                       "fused_runs": FUSED_RUNS}, f, indent=1)


if __name__ == "__main__":
    main()
