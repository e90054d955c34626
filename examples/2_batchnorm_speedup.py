"""Batch norm speeds up training (docs/course.md section 4).

The same 6-hidden-layer ReLU MLP on the digits, from the same initial weights (PyTorch's
default initialization), trained with plain SGD with and without batch norm at several learning
rates, once per seed (the seed draws the weights and the mini-batch order). Prints the epochs each
needs to reach 90% test accuracy, as the median (min-max) over the seeds; plots the loss and
accuracy curves (median, with the seeds' range shaded)."""
from __future__ import annotations

from _common import band, computing, digits, header, over_seeds, parse_args, pyplot, report, save, seeds_label

from tinygrad_bn.training import History, bn_speedup, speedup_table

LEARNING_RATES = (0.01, 0.03, 0.1, 0.3)
TARGET = 0.9


def run(epochs: int = 15, learning_rates=LEARNING_RATES, seed: int = 0,
        show_progress: bool = True) -> dict[tuple[bool, float], History]:
    return bn_speedup(digits(), learning_rates, depth=6, width=64, epochs=epochs, seed=seed,
                      show_progress=show_progress)


def stuck(runs: list[dict[tuple[bool, float], History]]) -> list[float]:
    """Final test accuracy without batch norm at the three smaller learning rates, all seeds pooled."""
    return [r[False, lr].test_accuracy[-1] for r in runs for lr in LEARNING_RATES[:3]]


def main(argv: list[str] | None = None) -> list[dict[tuple[bool, float], History]]:
    args = parse_args(__doc__, argv=argv)
    with computing(args):
        runs = over_seeds(run, args.seeds, epochs=6 if args.quick else 15)
    print(header(args.seeds))
    print(speedup_table(runs, TARGET))
    report({f"final test accuracy without BN at lr {', '.join(map(str, LEARNING_RATES[:3]))}": stuck(runs)}, None)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for bn, lr in sorted(runs[0]):
        style = dict(color=plt.cm.viridis(LEARNING_RATES.index(lr) / len(LEARNING_RATES)), ls="-" if bn else "--")
        label = f"{'BN' if bn else 'no BN'}, lr={lr:g}"
        band(axes[0], None, [r[bn, lr].train_loss for r in runs], label, **style)
        band(axes[1], None, [r[bn, lr].test_accuracy for r in runs], label, **style)
    axes[0].set(title="Training loss (solid: with batch norm)", xlabel="epoch", ylabel="cross-entropy", yscale="log",
                ylim=(4e-3, None))  # room for the legend below the curves
    axes[1].set(title=f"Test accuracy (median and range over {seeds_label(args.seeds)})", xlabel="epoch",
                ylabel="accuracy", ylim=(0, 1))
    axes[1].axhline(TARGET, color="grey", lw=0.8, label=f"target {TARGET:.0%}")
    axes[0].legend(*axes[1].get_legend_handles_labels(), fontsize=7, ncol=2, loc="lower left")
    save(fig, args.out, "2_batchnorm_speedup")
    return runs


if __name__ == "__main__":
    main()
