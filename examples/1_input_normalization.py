"""Normalizing the inputs speeds up learning (docs/course.md section 1).

Softmax regression on the digits, raw pixels (0..16) against standardized ones (mean 0, variance
1 per pixel, with the training statistics). For each, plain SGD at the best of a grid of
learning rates (the grid brackets each best) how many iterations until the training loss reaches the
target; once per seed (the seed draws the initial weights and the mini-batch order)."""
from __future__ import annotations

import numpy as np
from _common import band, computing, digits, over_seeds, parse_args, pyplot, report, save, seeds_label

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn.data import minibatches
from tinygrad_bn.training import progress

LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
TARGET_LOSS = 0.1


def curve(data, lr: float, iterations: int, seed: int) -> list[float]:
    """Training loss (over the whole training set) after each SGD step on batches of 64."""
    model = nn.Linear(data.x_train.shape[1], 10, rng=np.random.default_rng(seed))
    opt = tg.optim.SGD(model.parameters(), lr=lr)
    rng, losses = np.random.default_rng(seed), []
    x_all = tg.Tensor(data.x_train)
    while len(losses) < iterations:
        for xb, yb in minibatches(data.x_train, data.y_train, 64, rng):
            opt.zero_grad()
            F.cross_entropy(model(tg.Tensor(xb)), yb).backward()
            opt.step()
            with tg.no_grad():
                losses.append(F.cross_entropy(model(x_all), data.y_train).item())
            if len(losses) == iterations or not np.isfinite(losses[-1]):
                return losses
    return losses


def run(iterations: int = 400, seed: int = 0, show_progress: bool = True) -> dict[str, tuple[float, list[float]]]:
    """{"raw" | "normalized": (best learning rate, loss curve)}, best = fewest steps to the target."""
    best = {}
    for name, data in progress([("raw", digits(normalize=False)), ("normalized", digits())], 2,
                               "lr grid search", show_progress):
        curves = {lr: curve(data, lr, iterations, seed) for lr in LEARNING_RATES}
        best[name] = min(curves.items(), key=lambda kv: steps_to(kv[1]))
    return best


def steps_to(losses: list[float], target: float = TARGET_LOSS) -> float:
    return next((i + 1 for i, v in enumerate(losses) if v <= target), float("inf"))


def claims(runs: list[dict[str, tuple[float, list[float]]]]) -> dict[str, list[float]]:
    """Per seed: the steps to the target loss at the best learning rate, raw and normalized."""
    return {f"steps to loss {TARGET_LOSS:g}, {name} pixels": [steps_to(r[name][1]) for r in runs]
            for name in ("raw", "normalized")}


def best_lrs(runs: list[dict[str, tuple[float, list[float]]]], name: str) -> list[float]:
    return [r[name][0] for r in runs]


def main(argv: list[str] | None = None) -> list[dict[str, tuple[float, list[float]]]]:
    args = parse_args(__doc__, argv=argv)
    with computing(args):
        runs = over_seeds(run, args.seeds, iterations=200 if args.quick else 400)
    for name in ("raw", "normalized"):
        print(f"best learning rate, {name} pixels, per seed: {' '.join(f'{lr:g}' for lr in best_lrs(runs, name))}")
    report(claims(runs), args.seeds)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("raw", "normalized"):
        lrs = " / ".join(f"{lr:g}" for lr in sorted(set(best_lrs(runs, name))))
        band(ax, None, [r[name][1] for r in runs], f"{name} pixels (best lr {lrs})")
    ax.axhline(TARGET_LOSS, color="grey", lw=0.8, label=f"target {TARGET_LOSS:g}")
    ax.set(title="Softmax regression on digits: raw vs normalized inputs\n"
           f"(median and range over {seeds_label(args.seeds)})", xlabel="SGD step", ylabel="training cross-entropy",
           yscale="log")
    ax.legend()
    save(fig, args.out, "1_input_normalization")
    return runs


if __name__ == "__main__":
    main()
