"""Batch norm at test time (docs/course.md section 5).

Train an MLP with batch norm; its running (exponentially weighted, momentum 0.1 = the notes'
beta 0.9) statistics are what eval mode uses. Compare them with the exact population statistics
of each BN layer's input over the whole training set, compare test accuracy under each, and show
that eval-mode predictions for single examples equal the batched ones. Once per seed (the seed
draws the initial weights and the mini-batch order): the numbers are the median (min-max) over
the seeds."""
from __future__ import annotations

import numpy as np
from _common import computing, digits, over_seeds, parse_args, pyplot, report, save, seeds_label

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


def claims(runs: list[dict]) -> dict[str, list[float]]:
    """Per seed: the worst gaps (over layers and units) between running and population statistics,
    the test accuracy under each, the test examples they classify differently, and the largest
    difference between eval on single examples and on one batch."""
    def worst(gap) -> list[float]:
        return [max(float(np.max(gap(rm, rv, pm, pv))) for (rm, rv), (pm, pv) in zip(r["running"], r["population"]))
                for r in runs]
    return {"max |running mean - population mean| / population std": worst(lambda rm, _, pm, pv: abs(rm - pm) / pv**.5),
            "max |running var / population var - 1|": worst(lambda _, rv, __, pv: abs(rv / pv - 1)),
            "test accuracy, running statistics": [r["acc_running"] for r in runs],
            "test accuracy, population statistics": [r["acc_population"] for r in runs],
            "test examples the two classify differently":
                [round(abs(r["acc_running"] - r["acc_population"]) * r["n_test"]) for r in runs],
            "max |logit difference|, single examples vs one batch": [r["single_vs_batched"] for r in runs]}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(__doc__, argv=argv)
    with computing(args):
        runs = over_seeds(run, args.seeds, epochs=4 if args.quick else 10)
    report(claims(runs), args.seeds)
    print(f"eval mode, {runs[0]['n_test']} single examples vs one batch: same predicted class for all, every seed: "
          f"{all(r['same_class'] for r in runs)}")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for i in range(len(runs[0]["running"])):
        for j in range(2):  # mean, variance
            population = np.concatenate([r["population"][i][j] for r in runs])
            running = np.concatenate([r["running"][i][j] for r in runs])
            axes[j].scatter(population, running, s=6, alpha=0.5, label=f"BN layer {i}")
    for ax, what in zip(axes, ("mean", "variance")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, label="running = population")
        ax.set(title=f"Running {what} vs population {what}, per unit\n({seeds_label(args.seeds)} pooled)",
               xlabel=f"population {what} (whole training set)", ylabel=f"running {what} (EWA, momentum 0.1)")
        ax.legend(fontsize=8)
    axes[1].set(xscale="log", yscale="log")
    save(fig, args.out, "3_bn_test_time")
    return runs


if __name__ == "__main__":
    main()
