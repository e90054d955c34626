"""Batch norm speeds up training (SEED.md section 3).

The same 6-hidden-layer ReLU MLP on the digits, from the same initial weights (PyTorch's
default initialization), trained with plain SGD with and without batch norm at several learning
rates. Prints the epochs each needs to reach 90% test accuracy; plots loss and accuracy curves."""
from __future__ import annotations

from _common import digits, parse_args, pyplot, save

from tinygrad_bn.training import bn_speedup, speedup_table

LEARNING_RATES = (0.01, 0.03, 0.1, 0.3)
TARGET = 0.9


def run(epochs: int = 15, learning_rates=LEARNING_RATES, seed: int = 0, show_progress: bool = True):
    return bn_speedup(digits(), learning_rates, depth=6, width=64, epochs=epochs, seed=seed,
                      show_progress=show_progress)


def main() -> None:
    args = parse_args(__doc__)
    results = run(epochs=6 if args.quick else 15, seed=args.seed)
    print(speedup_table(results, TARGET))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (bn, lr), hist in sorted(results.items()):
        style = dict(color=plt.cm.viridis(LEARNING_RATES.index(lr) / len(LEARNING_RATES)), ls="-" if bn else "--")
        label = f"{'BN' if bn else 'no BN'}, lr={lr:g}"
        epochs = range(1, len(hist.train_loss) + 1)
        axes[0].plot(epochs, hist.train_loss, label=label, **style)
        axes[1].plot(epochs, hist.test_accuracy, label=label, **style)
    axes[0].set(title="Training loss (solid: with batch norm)", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    axes[1].set(title="Test accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    axes[1].axhline(TARGET, color="grey", lw=0.8)
    axes[1].text(1, TARGET + 0.01, f"target {TARGET:.0%}", fontsize=8, color="grey")
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    save(fig, args.out, "2_batchnorm_speedup")


if __name__ == "__main__":
    main()
