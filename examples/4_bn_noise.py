"""The regularization noise of batch norm (SEED.md section 3).

In training mode an example is normalized with the mean and variance of whatever mini-batch it
lands in, so its z_tilde jitters from batch to batch (multiplicative and additive noise, like
dropout). Hold one example fixed, put it in many random mini-batches of each size, and measure
how much its z_tilde at the first BN layer varies: a larger mini-batch, less noise."""
from __future__ import annotations

import numpy as np
from _common import digits, parse_args, pyplot, save

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


def main() -> None:
    args = parse_args(__doc__)
    spread = run(draws=50 if args.quick else 200, seed=args.seed)
    print(f"{'batch size':>10} {'std of z_tilde across mini-batches':>36}")
    for m, s in spread.items():
        print(f"{m:>10} {s:>36.4f}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ms = np.array(list(spread))
    ax.plot(ms, list(spread.values()), "o-", label="measured (mean over the 64 units)")
    ax.plot(ms, spread[ms[2]] * np.sqrt(ms[2] / ms), "--", color="grey", label=r"$\propto 1/\sqrt{m}$")
    ax.set(xscale="log", yscale="log", xlabel="mini-batch size m", ylabel="std of z_tilde of one fixed example",
           title="Batch norm's noise shrinks as the mini-batch grows")
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.legend()
    save(fig, args.out, "4_bn_noise")


if __name__ == "__main__":
    main()
