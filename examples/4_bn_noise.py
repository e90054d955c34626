"""The regularization noise of batch norm (docs/course.md section 6).

In training mode an example is normalized with the mean and variance of whatever mini-batch it
lands in, so its z_tilde jitters from batch to batch (multiplicative and additive noise, like
dropout). Hold one example fixed, put it in many random mini-batches of each size, and measure
how much its z_tilde at the first BN layer varies: a larger mini-batch, less noise, about as
1/sqrt(m). Once per seed (the seed draws the weights, the training order and the mini-batches):
the numbers are the median (min-max) over the seeds."""
from __future__ import annotations

import numpy as np
from _common import band, computing, digits, over_seeds, parse_args, pyplot, report, save, seeds_label

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn.training import MLP, fit, progress

BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)


@tg.no_grad()
def z_tilde_spread(model: MLP, x: np.ndarray, example: int, batch_size: int, draws: int, rng) -> float:
    """Mean over units of the std, across `draws` random mini-batches that contain x[example],
    of that example's z_tilde at the first BN layer (training-mode normalization)."""
    block = model.layers[0]
    others = np.delete(np.arange(len(x)), example)
    values = []
    for _ in range(draws):
        batch = np.concatenate([[example], rng.choice(others, batch_size - 1, replace=False)])
        z = block.fc(tg.Tensor(x[batch]))
        z_tilde = F.batch_norm(z, None, None, block.bn.weight, block.bn.bias, training=True)
        values.append(z_tilde.data[0])
    return float(np.std(values, axis=0).mean())


def run(draws: int = 200, seed: int = 0, show_progress: bool = True) -> dict[int, float]:
    data = digits()
    model = MLP([64, 64, 64], 10, batch_norm=True, seed=seed)
    fit(model, tg.optim.SGD(model.parameters(), lr=0.1), data, 3, 64, seed, "training with BN", show_progress)
    rng = np.random.default_rng(seed)
    return {m: z_tilde_spread(model, data.x_train, 0, m, draws, rng)
            for m in progress(BATCH_SIZES, len(BATCH_SIZES), "mini-batch sizes", show_progress)}


def power(spread: dict[int, float]) -> float:
    """p of a fitted std ~ m^-p (minus the slope of log(std) against log(m)): 0.5 for 1/sqrt(m)."""
    return -float(np.polyfit(np.log(list(spread)), np.log(list(spread.values())), 1)[0])


def claims(runs: list[dict[int, float]]) -> dict[str, list[float]]:
    """Per seed: the std of z_tilde at every mini-batch size, and the power p of a fitted m^-p."""
    return {**{f"std of z_tilde across mini-batches of {m}": [r[m] for r in runs] for m in BATCH_SIZES},
            "p of a fitted std ~ m^-p": [power(r) for r in runs]}


def main(argv: list[str] | None = None) -> list[dict[int, float]]:
    args = parse_args(__doc__, argv=argv)
    with computing(args):
        runs = over_seeds(run, args.seeds, draws=50 if args.quick else 200)
    report(claims(runs), args.seeds)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ms = np.array(BATCH_SIZES)
    band(ax, ms, [list(r.values()) for r in runs], f"measured (mean over the 64 units;\nmedian and range, "
         f"{seeds_label(args.seeds)})", marker="o")
    middle = float(np.median([r[ms[2]] for r in runs]))
    ax.plot(ms, middle * np.sqrt(ms[2] / ms), "--", color="grey", label=r"$\propto 1/\sqrt{m}$")
    ax.set(xscale="log", yscale="log", xlabel="mini-batch size m", ylabel="std of z_tilde of one fixed example",
           title="Batch norm's noise shrinks as the mini-batch grows")
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_yticks(ticks := [0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8], [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_formatter("")
    ax.legend(loc="lower left")
    save(fig, args.out, "4_bn_noise")
    return runs


if __name__ == "__main__":
    main()
