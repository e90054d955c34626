"""Batch norm at test time (SEED.md section 4).

Train an MLP with batch norm; its running (exponentially weighted, momentum 0.1 = the notes'
beta 0.9) statistics are what eval mode uses. Compare them with the exact population statistics
of each BN layer's input over the whole training set, compare test accuracy under each, and show
that eval-mode predictions for single examples equal the batched ones."""
from __future__ import annotations

import numpy as np
from _common import digits, parse_args, pyplot, save

import tinygrad_bn as tg
from tinygrad_bn.training import MLP, accuracy, fit


@tg.no_grad()
def population_statistics(model: MLP, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mean, unbiased variance) of every BN layer's input z over all of x, the earlier layers
    run in eval mode (as they are at test time)."""
    model.eval()
    stats, h = [], tg.Tensor(x)
    for block in model.layers:
        z = block.fc(h)
        stats.append((z.data.mean(axis=0), z.data.var(axis=0, ddof=1)))
        h = block(h)
    return stats


def run(epochs: int = 10, seed: int = 0, show_progress: bool = True) -> dict:
    data = digits(dtype=np.float64)  # float64, so "equal" below means equal to round-off, not to BLAS's float32
    model = MLP([64, 64, 64, 64], 10, batch_norm=True, seed=seed, dtype=np.float64)
    fit(model, tg.optim.SGD(model.parameters(), lr=0.1), data, epochs, 64, seed, "training with BN", show_progress)
    population = population_statistics(model, data.x_train)
    running = [(b.bn.running_mean.data.copy(), b.bn.running_var.data.copy()) for b in model.layers]
    acc_running = accuracy(model, data.x_test, data.y_test)
    for b, (mu, var) in zip(model.layers, population):  # serve with the exact statistics instead
        b.bn.running_mean.data[...], b.bn.running_var.data[...] = mu, var
    acc_population = accuracy(model, data.x_test, data.y_test)
    for b, (mu, var) in zip(model.layers, running):
        b.bn.running_mean.data[...], b.bn.running_var.data[...] = mu, var
    model.eval()
    with tg.no_grad():
        batched = model(tg.Tensor(data.x_test)).data
        single = np.concatenate([model(tg.Tensor(data.x_test[i:i + 1])).data for i in range(len(data.x_test))])
    same_class = bool((single.argmax(1) == batched.argmax(1)).all())
    return {"same_class": same_class, "running": running, "population": population, "acc_running": acc_running,
            "acc_population": acc_population, "single_vs_batched": float(np.abs(single - batched).max()),
            "n_test": len(data.x_test)}


def main() -> None:
    args = parse_args(__doc__)
    r = run(epochs=4 if args.quick else 10, seed=args.seed)
    print(f"{'layer':<6} {'max |running mean - population mean| / std':>44} "
          f"{'max |running var / population var - 1|':>40}")
    for i, ((rm, rv), (pm, pv)) in enumerate(zip(r["running"], r["population"])):
        print(f"{i:<6} {np.max(np.abs(rm - pm) / np.sqrt(pv)):>44.3f} {np.max(np.abs(rv / pv - 1)):>40.3f}")
    print(f"test accuracy, eval mode with running statistics:    {r['acc_running']:.4f}")
    print(f"test accuracy, eval mode with population statistics: {r['acc_population']:.4f}")
    print(f"eval mode, {r['n_test']} single examples vs one batch: max |logit difference| = "
          f"{r['single_vs_batched']:.1e}, same predicted class for all: {r['same_class']}")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, ((rm, rv), (pm, pv)) in enumerate(zip(r["running"], r["population"])):
        axes[0].scatter(pm, rm, s=10, label=f"BN layer {i}")
        axes[1].scatter(pv, rv, s=10, label=f"BN layer {i}")
    for ax, what in zip(axes, ("mean", "variance")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, label="running = population")
        ax.set(title=f"Running {what} vs population {what}, per unit",
               xlabel=f"population {what} (whole training set)", ylabel=f"running {what} (EWA, momentum 0.1)")
        ax.legend(fontsize=8)
    axes[1].set(xscale="log", yscale="log")
    save(fig, args.out, "3_bn_test_time")


if __name__ == "__main__":
    main()
