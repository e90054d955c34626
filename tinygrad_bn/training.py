"""A small training loop and the batch norm speed-up experiment (docs/course.md section 4), shared by
examples/ and `tinygrad-bn train`."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn.data import Split, minibatches


def progress(items: Iterable[Any], total: int, desc: str, enabled: bool = True) -> Iterator[Any]:
    """Yield items while drawing a one-line progress bar on stderr (nothing when not enabled)."""
    start = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        if enabled:
            done = int(30 * i / total)
            sys.stderr.write(f"\r{desc:<28} [{'#' * done}{'.' * (30 - done)}] {i}/{total} "
                             f"{time.perf_counter() - start:5.1f}s")
            sys.stderr.flush()
    if enabled:
        sys.stderr.write("\n")


class Block(nn.Module):
    """z = x W^T (+ b) -> [BatchNorm1d] -> ReLU. With batch norm the Linear has no bias: the
    mean subtraction cancels it and beta takes its place (docs/course.md section 2)."""
    def __init__(self, n_in: int, n_out: int, batch_norm: bool, rng: np.random.Generator, dtype: Any):
        self.fc = nn.Linear(n_in, n_out, bias=not batch_norm, dtype=dtype, rng=rng)
        self.bn = nn.BatchNorm1d(n_out, dtype=dtype) if batch_norm else None

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        z = self.fc(x)
        return (self.bn(z) if self.bn is not None else z).relu()


class MLP(nn.Module):
    """sizes[0] inputs -> hidden layers sizes[1:] (Blocks) -> n_classes logits."""
    def __init__(self, sizes: list[int], n_classes: int, batch_norm: bool, seed: int = 0, dtype: Any = np.float32):
        rng = np.random.default_rng(seed)
        self.layers = nn.Sequential(*[Block(a, b, batch_norm, rng, dtype) for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nn.Linear(sizes[-1], n_classes, dtype=dtype, rng=rng)

    def forward(self, x: tg.Tensor) -> tg.Tensor:
        return self.head(self.layers(x))


@tg.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction classified right, in eval mode (batch norm uses its running statistics)."""
    was_training = model.training
    model.eval()
    pred = model(tg.Tensor(x)).argmax(axis=1)
    model.train(was_training)
    return float((pred == y).mean())


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)   # mean over each epoch's mini-batches
    test_accuracy: list[float] = field(default_factory=list)

    def epochs_to(self, target_accuracy: float) -> int | None:
        """The first epoch (1-based) whose test accuracy reaches the target, None if none does."""
        return next((i + 1 for i, a in enumerate(self.test_accuracy) if a >= target_accuracy), None)


def fit(model: nn.Module, opt: tg.optim.Optimizer, data: Split, epochs: int, batch_size: int, seed: int = 0,
        desc: str = "training", show_progress: bool = True) -> History:
    """Mini-batch training with cross-entropy; a diverged loss (nan/inf) ends training early."""
    rng, hist = np.random.default_rng(seed), History()
    for _ in progress(range(epochs), epochs, desc, show_progress):
        model.train()
        losses = []
        for xb, yb in minibatches(data.x_train, data.y_train, batch_size, rng, drop_last=True):
            loss = F.cross_entropy(model(tg.Tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        hist.train_loss.append(float(np.mean(losses)))
        hist.test_accuracy.append(accuracy(model, data.x_test, data.y_test) if np.isfinite(losses).all() else 0.0)
        if not np.isfinite(losses).all():
            break
    return hist


def bn_speedup(data: Split, learning_rates: Iterable[float], depth: int = 6, width: int = 64, epochs: int = 15,
               batch_size: int = 64, seed: int = 0, show_progress: bool = True) -> dict[tuple[bool, float], History]:
    """The same deep MLP (same initial weights) trained with plain SGD with and without batch
    norm at each learning rate: {(batch_norm, lr): History}."""
    results = {}
    for lr in learning_rates:
        for bn in (False, True):
            model = MLP([data.x_train.shape[1]] + [width] * depth, 10, batch_norm=bn, seed=seed)
            opt = tg.optim.SGD(model.parameters(), lr=lr)
            results[bn, lr] = fit(model, opt, data, epochs, batch_size, seed,
                                  f"{'with' if bn else 'without'} BN, lr={lr:g}", show_progress)
    return results


def median_range(values: Iterable[float]) -> tuple[float, float, float]:
    """(median, min, max) of one number over seeds (inf, e.g. a target never reached, sorts last)."""
    v = np.asarray(list(values), dtype=float)
    return float(np.median(v)), float(v.min()), float(v.max())


def spread(values: Iterable[float], fmt: str = ".3g") -> str:
    """A number over seeds as the examples and README quote it: 'median (min-max)'; one seed, one number."""
    values = list(values)
    med, lo, hi = median_range(values)
    return format(med, fmt) if len(values) == 1 else f"{med:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def epochs_cell(runs: Sequence[History], target: float) -> str:
    """Epochs to `target` over seeds: 'median (min-max)', '-' when no seed gets there, and how many
    seeds do when only some do (the median counts the others as never)."""
    epochs = [h.epochs_to(target) for h in runs]
    reached = [e for e in epochs if e is not None]
    if len(reached) in (0, len(epochs)):
        return spread(reached) if reached else "-"
    med, lo, hi = median_range(e or np.inf for e in epochs)[0], min(reached), max(reached)
    return f"{med:g} ({len(reached)}/{len(epochs)} seeds, in {lo}{f'-{hi}' * (hi > lo)})".replace("inf", "-")


def speedup_table(results: dict[tuple[bool, float], History] | Sequence[dict[tuple[bool, float], History]],
                  target: float) -> str:
    """One row per learning rate: epochs to reach `target` test accuracy and the final accuracy. Given
    one result per seed (a list of bn_speedup's dicts), each cell is the median (min-max) over seeds."""
    runs = [results] if isinstance(results, dict) else list(results)
    rows = [["lr", f"epochs to {target:.0%} (no BN)", "(BN)", "final acc (no BN)", "(BN)"]]
    for lr in sorted({lr for _, lr in runs[0]}):
        plain, bn = [r[False, lr] for r in runs], [r[True, lr] for r in runs]
        rows.append([f"{lr:g}", epochs_cell(plain, target), epochs_cell(bn, target),
                     *(spread((h.test_accuracy[-1] for h in hs), ".3f") for hs in (plain, bn))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)
