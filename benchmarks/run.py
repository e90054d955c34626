"""Timing of tinygrad_bn against baselines measured in the same run: medians over repeats, and
ratios (tinygrad_bn time / baseline time). One thread for every library.

    python benchmarks/run.py            # full: more repeats
    python benchmarks/run.py --quick    # under a minute

Baselines: NumPy with the backward written by hand (always), PyTorch (when installed).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # before NumPy loads its BLAS

import numpy as np  # noqa: E402

import tinygrad_bn as tg  # noqa: E402

try:
    import torch  # noqa: E402
    torch.set_num_threads(1)
except ImportError:
    torch = None


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------- per-op overhead

def chain_tg(n: int):
    def run():
        x = tg.Tensor(np.ones((4, 4), np.float32), requires_grad=True)
        y = x
        for _ in range(n // 2):
            y = y * 1.0001 + x
        y.sum().backward()
    return run


def chain_numpy(n: int):
    """The same chain by hand: forward keeps nothing (the multiplier is a constant), backward
    walks it in reverse: dy/dx accumulates 1.0001 * g + g per step."""
    def run():
        x = np.ones((4, 4), np.float32)
        y = x
        for _ in range(n // 2):
            y = y * np.float32(1.0001) + x
        g = np.ones((4, 4), np.float32)
        gx = np.zeros((4, 4), np.float32)
        for _ in range(n // 2):
            gx = gx + g
            g = g * np.float32(1.0001)
        return gx + g
    return run


def chain_torch(n: int):
    def run():
        x = torch.ones((4, 4), requires_grad=True)
        y = x
        for _ in range(n // 2):
            y = y * 1.0001 + x
        y.sum().backward()
    return run


# ----------------------------------------------------- one big element-wise expression

def elementwise_inputs(shape):
    rng = np.random.default_rng(0)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def elementwise_tg(shape):
    a, b = elementwise_inputs(shape)

    def run():
        x, y = tg.Tensor(a, requires_grad=True), tg.Tensor(b, requires_grad=True)
        ((x * y + x).tanh() * y).sum().backward()
    return run


def elementwise_numpy(shape):
    """f = sum(tanh(x*y + x) * y) with its backward by hand."""
    a, b = elementwise_inputs(shape)

    def run():
        u = a * b + a
        t = np.tanh(u)
        _ = np.sum(t * b)
        du = b * (1 - t * t)
        return du * (b + 1), du * a + t
    return run


def elementwise_torch(shape):
    a, b = elementwise_inputs(shape)

    def run():
        x, y = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        ((x * y + x).tanh() * y).sum().backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (finishes in under a minute)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    chain_ops = 4000 if args.quick else 20000

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"NumPy {np.__version__}" + (f", PyTorch {torch.__version__}" if torch else ", PyTorch not installed"))
    print(f"medians of {repeats}, one thread each; ratio = tinygrad_bn / baseline (lower is better)\n")
    cases = [
        (f"per-op overhead, chain of {chain_ops} adds/muls on (4, 4) [us/op]", chain_ops,
         chain_tg(chain_ops), chain_numpy(chain_ops), chain_torch(chain_ops) if torch else None),
        ("element-wise fwd+bwd, sum(tanh(x*y+x)*y), (4096, 1024) float32 [ms]", None,
         elementwise_tg((4096, 1024)), elementwise_numpy((4096, 1024)),
         elementwise_torch((4096, 1024)) if torch else None),
    ]
    header = f"{'case':<72} {'tinygrad_bn':>12} {'numpy':>10} {'torch':>10} {'/numpy':>8} {'/torch':>8}"
    print(header)
    print("-" * len(header))
    for name, per, ours, base_np, base_torch in cases:
        scale = 1e6 / per if per else 1e3
        t_ours = median_seconds(ours, repeats) * scale
        t_np = median_seconds(base_np, repeats) * scale
        t_torch = median_seconds(base_torch, repeats) * scale if base_torch else float("nan")
        print(f"{name:<72} {t_ours:12.2f} {t_np:10.2f} {t_torch:10.2f} {t_ours / t_np:8.2f} {t_ours / t_torch:8.2f}")


if __name__ == "__main__":
    main()
