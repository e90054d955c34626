"""Softmax regression on the digits, and its gradient (docs/course.md section 7).

A linear layer and softmax, trained with cross-entropy in float64. At every step, autograd's
gradient of the cost with respect to the logits z (kept with retain_grad) is compared with the
notes' formula dz = (y_hat - y) / m: they agree to round-off throughout training. Once per seed
(the seed draws the initial weights and the mini-batch order): the numbers are the median (min-max)
over the seeds."""
from __future__ import annotations

import numpy as np
from _common import band, computing, digits, over_seeds, parse_args, pyplot, report, save, seeds_label

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.data import minibatches
from tinygrad_bn.training import accuracy, progress


def run(epochs: int = 10, seed: int = 0, show_progress: bool = True) -> dict:
    data = digits(dtype=np.float64)
    model = nn.Linear(64, 10, dtype=np.float64, rng=np.random.default_rng(seed))
    opt = tg.optim.SGD(model.parameters(), lr=0.5)
    rng = np.random.default_rng(seed)
    losses, errors, accuracies = [], [], []
    for _ in progress(range(epochs), epochs, "softmax regression", show_progress):
        for xb, yb in minibatches(data.x_train, data.y_train, 64, rng):
            z = model(tg.Tensor(xb))
            z.retain_grad()
            loss = F.cross_entropy(z, yb)
            opt.zero_grad()
            loss.backward()
            dz = analytic.softmax_cross_entropy_backward(z.data, yb)  # (y_hat - y) / m
            errors.append(float(np.abs(z.grad.data - dz).max() / np.abs(dz).max()))
            losses.append(loss.item())
            opt.step()
        accuracies.append(accuracy(model, data.x_test, data.y_test))
    return {"loss": losses, "dz_rel_error": errors, "test_accuracy": accuracies}


def claims(runs: list[dict]) -> dict[str, list[float]]:
    """Per seed: the final training loss and test accuracy, and the largest relative difference,
    over all steps, between autograd's dz and (y_hat - y)/m."""
    return {"final training loss (last mini-batch)": [r["loss"][-1] for r in runs],
            "final test accuracy": [r["test_accuracy"][-1] for r in runs],
            "max over steps of max|autograd dz - (y_hat - y)/m| / max|(y_hat - y)/m|":
                [max(r["dz_rel_error"]) for r in runs]}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(__doc__, argv=argv)
    with computing(args):
        runs = over_seeds(run, args.seeds, epochs=3 if args.quick else 10)
    print(f"{len(runs[0]['loss'])} SGD steps per seed")
    report(claims(runs), args.seeds)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    band(axes[0], None, [r["loss"] for r in runs], f"median and range, {seeds_label(args.seeds)}", lw=0.8)
    axes[0].set(title="Softmax regression: training loss", xlabel="SGD step", ylabel="cross-entropy J", yscale="log")
    axes[0].legend()
    for r in runs:
        axes[1].semilogy(np.maximum(r["dz_rel_error"], 1e-18), ".", ms=3, alpha=0.6)
    axes[1].axhline(np.finfo(np.float64).eps, color="grey", lw=0.8, label="float64 machine epsilon")
    axes[1].set(title=f"autograd dz vs (y_hat - y)/m, every step\n(each color a seed: {seeds_label(args.seeds)})",
                xlabel="SGD step", ylabel="max relative difference", ylim=(1e-18, 1e-12))
    axes[1].legend()
    save(fig, args.out, "5_softmax_regression")
    return runs


if __name__ == "__main__":
    main()
