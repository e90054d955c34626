"""What each step of tg.fused()'s scheduler buys: batch norm forward + backward at (4096, 1024)
and softmax cross-entropy at (4096, 1000), float32, one thread, medians over repeats, with the
scheduler's steps (tinygrad_bn/fusion.py STEPS) turned on one at a time, and the passes over
full-size arrays each schedule makes.

    python benchmarks/fusion_steps.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # before NumPy loads its BLAS

import run  # noqa: E402  (benchmarks/run.py: the same inputs, timing and implementations)

import tinygrad_bn as tg  # noqa: E402
from tinygrad_bn import fusion  # noqa: E402

BN = [("eager", None, {}), ("fused, NumPy row tiles only", "numpy", {}), ("+ numba loop nests", "auto", {}),
      ("+ factors taken out of sums", "auto", {"factor_sums"}),
      ("+ groups sunk into later kernels", "auto", {"factor_sums", "sink"}),
      ("+ stores apart from sums (numba)", "auto", {"factor_sums", "sink", "split_stores"})]
CE = [("eager", None, {}), ("fused, no optional step", "auto", {}), ("+ picked logits gathered", "auto", {"gather"}),
      ("+ exp written once", "auto", {"gather", "keep_costly"}),
      ("+ scatter added into the gradient", "auto", {"gather", "keep_costly", "scatter_into"})]


def timer(fn, args: tuple, executor: str | None, steps: set):
    """A function that runs one step with the given configuration and returns (seconds, passes)."""
    def once() -> tuple[float, int | None]:
        for name in fusion.STEPS:
            fusion.STEPS[name] = name in steps
        start = time.perf_counter()
        if executor is None:
            fn(*args)
            return time.perf_counter() - start, None
        with tg.fused(executor=executor) as ctx:
            fn(*args)
        return time.perf_counter() - start, ctx.stats["passes"]
    return once


def interleaved(configs: list, fn, args: tuple, repeats: int) -> list[tuple[float, int | None]]:
    """Median milliseconds (and passes) of each configuration, timed in rounds that run every
    configuration once each, so a slow spell of this shared machine hits all of them alike."""
    runs = [timer(fn, args, executor, set(steps)) for _, executor, steps in configs]
    for run_once in runs:  # warm-up: numba compiles each configuration's kernels here
        run_once(), run_once()
    times: list[list[float]] = [[] for _ in runs]
    passes: list[int | None] = [None] * len(runs)
    for _ in range(repeats):
        for i, run_once in enumerate(runs):
            gc.collect()
            seconds, passes[i] = run_once()
            times[i].append(seconds)
    return [(statistics.median(t) * 1e3, p) for t, p in zip(times, passes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    saved = dict(fusion.STEPS)
    try:
        for case, fn, inputs, rows in (("batch norm (4096, 1024)", run.bn_tg, run.bn_inputs((4096, 1024)), BN),
                                       ("softmax cross-entropy (4096, 1000)", run.ce_tg, run.ce_inputs(), CE)):
            print(case)
            for (label, *_), (ms, passes) in zip(rows, interleaved(rows, fn, inputs, args.repeats)):
                print(f"  {label:<36} {ms:7.2f} ms" + (f"  {passes} passes" if passes is not None else ""))
    finally:
        fusion.STEPS.update(saved)
    print(f"one NumPy pass over a (4096, 1024) float32 array (a sum): {run.pass_time((4096, 1024)):.2f} ms")


if __name__ == "__main__":
    main()
