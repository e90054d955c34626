"""A small CNN on the digits, and its whole backward derived by hand and audited (cs231n assignment 2).

conv 3x3 (8 filters, padding 1) -> spatial batch norm -> ReLU -> 2x2 max-pool -> flatten -> linear, on
the 8x8 digits as (N, 1, 8, 8) images (standardized pixels), trained with SGD (momentum) in float64;
a softmax-regression baseline is trained alongside on the same seeds and batches. After the first
epoch, on the next mini-batch, the network's backward is derived as a cs231n student would, in plain
NumPy: softmax_cross_entropy_backward -> linear_backward -> reshape -> maxpool_backward ->
relu_backward -> batchnorm_backward over the axes (0, 2, 3) (spatial batch norm, the batch's own
statistics) -> conv2d_backward, and tg.check.audit compares every stage with autograd and with finite
differences. Then a classic slip is planted: the batch norm dx of BatchNorm1d (statistics over axis 0
only: each pixel position its own batch) reused on the (N, C, H, W) activations; the audit names the
conv output, the input of that step, as the first wrong node, and its drawing shows where. (The pool's
input gets no row: where a 2x2 window is all 0 after ReLU its max is a 4-way tie, not differentiable;
through ReLU the gradient is defined again, so d bn is audited.) The seed draws the initial weights and
the mini-batch order: the numbers are the median (min-max) over the seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import EXTRAS, band, computing, digits, over_seeds, parse_args, pyplot, report, save, seeds_label

import tinygrad_bn as tg
import tinygrad_bn.nn as nn
import tinygrad_bn.nn.functional as F
from tinygrad_bn import analytic
from tinygrad_bn.check import Audit, audit, node
from tinygrad_bn.data import minibatches
from tinygrad_bn.training import accuracy, progress

CHANNELS, BATCH, LR, MOMENTUM = 8, 64, 0.03, 0.9  # lr: of 0.01, 0.03, 0.1, the best for both models at 15 epochs
AUDIT_EPOCH = 1  # the audit runs on the first mini-batch after this many epochs
PARAMS = ("conv_w", "conv_b", "gamma", "beta", "fc_w", "fc_b")  # the audit's inputs: the modules' own parameters
SLIP = "conv"  # the node whose hand gradient the planted slip gets wrong (the batch norm step's input)
# batch norm subtracts the batch mean, which takes the conv bias with it: its gradient is 0 in exact
# arithmetic and both sides give round-off (~1e-17), so a relative error between them says nothing
ZERO_GRADIENTS = ("conv_b",)


def cnn(seed: int) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, CHANNELS, 3, padding=1, dtype=np.float64, rng=rng),
                         nn.BatchNorm2d(CHANNELS, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(CHANNELS * 4 * 4, 10, dtype=np.float64, rng=rng))


def images(x: np.ndarray) -> np.ndarray:
    """(N, 64) pixel rows as (N, 1, 8, 8) one-channel images."""
    return x.reshape(-1, 1, 8, 8)


def staged_loss(x: np.ndarray, y: np.ndarray, eps: float):
    """The model's forward written out stage by stage, every stage marked with tg.check.node, as a
    function of its parameters (the audit's inputs); the batch x, y is a constant. Functional ops
    only (F.standardize with the batch's statistics), so the audit's many re-runs change no state."""
    def loss(conv_w: tg.Tensor, conv_b: tg.Tensor, gamma: tg.Tensor, beta: tg.Tensor, fc_w: tg.Tensor,
             fc_b: tg.Tensor) -> tg.Tensor:
        # the bias added outside F.conv2d (the same sum): the drawing collapses the conv's 54 nodes, not its output
        conv = node("conv", F.conv2d(tg.Tensor(x, name="x"), conv_w, padding=1) + conv_b.reshape(1, -1, 1, 1))
        with tg.scope("spatial batch norm"):  # statistics over N, H, W per channel: mu, xc, var, std, x_hat marked
            x_hat = F.standardize(conv, (0, 2, 3), eps, mark=node)["x_hat"]
            bn = node("bn", x_hat * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1))
        relu = node("relu", bn.relu())
        pool = node("pool", F.max_pool2d(relu, 2))
        flat = node("flat", pool.reshape(len(x), -1))
        logits = node("logits", F.linear(flat, fc_w, fc_b))
        return F.cross_entropy(logits, y)
    return loss


def bn_dx_as_if_1d(dy: np.ndarray, cache: dict) -> np.ndarray:
    """The slip: BatchNorm1d's compact dx (sums over axis 0, m = N) applied to (N, C, H, W), as if every
    pixel position had its own batch statistics; the forward normalized each channel over N, H and W."""
    m, x_hat = dy.shape[0], cache["x_hat"]
    return cache["gamma"] / (m * cache["std"]) * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))


def derivation(x: np.ndarray, y: np.ndarray, eps: float, slip: bool = False):
    """The backward by hand, in plain NumPy (tinygrad_bn.analytic), from the loss to the parameters;
    the batch norm stages (mu ... x_hat) from the staged formula, d conv from the compact one."""
    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = {"logits": analytic.softmax_cross_entropy_backward(v["logits"], y)}        # (y_hat - y) / m
        d["flat"], d["fc_w"], d["fc_b"] = analytic.linear_backward(d["logits"], v["flat"], v["fc_w"])
        d["pool"] = d["flat"].reshape(v["pool"].shape)                                  # flatten is a reshape
        pool_cache = analytic.maxpool_forward(v["relu"], 2)[1]
        # d relu = maxpool_backward(...) is not audited on its own: where a window is all 0 (every input
        # negative) its max is a 4-way tie, not differentiable (a step up on one element makes it the max,
        # a step down leaves the others: central differences give 1/2, the subgradient 1/4). Through relu
        # the gradient is defined again (near a negative input relu is flat), so d bn is audited instead.
        d["bn"] = analytic.relu_backward(analytic.maxpool_backward(d["pool"], pool_cache), v["bn"])
        _, cache = analytic.batchnorm_forward(v["conv"], v["gamma"], v["beta"], eps, axis=(0, 2, 3))
        d["conv"], d["gamma"], d["beta"] = analytic.batchnorm_backward(d["bn"], cache)
        if slip:
            d["conv"] = bn_dx_as_if_1d(d["bn"], cache)
        stages = analytic.batchnorm_backward_staged(d["bn"], cache)
        d.update({k: stages[k] for k in F.STAGES})
        _, conv_cache = analytic.conv2d_forward(x, v["conv_w"], v["conv_b"], padding=1)
        _, d["conv_w"], d["conv_b"] = analytic.conv2d_backward(d["conv"], conv_cache)
        return d
    return derive


def all_zero_windows(model: nn.Sequential, x: np.ndarray) -> float:
    """The fraction of the batch's 2x2 pool windows that are all 0 after ReLU (by the analytic forward: the
    module's batch norm would update its running statistics)."""
    conv, bn = model[0], model[1]
    h = analytic.conv2d_forward(x, conv.weight.data, conv.bias.data, padding=1)[0]
    h = analytic.batchnorm_forward(h, bn.weight.data, bn.bias.data, bn.eps, axis=(0, 2, 3))[0]
    return float((analytic.maxpool_forward(np.maximum(h, 0), 2)[0] == 0).mean())


def audit_step(model: nn.Sequential, x: np.ndarray, y: np.ndarray, slip: bool = False) -> Audit:
    """Audit the hand derivation at the model's current parameters on the batch (x, y)."""
    conv, bn, fc = model[0], model[1], model[5]
    inputs = [tg.Tensor(p.data, name=n) for p, n in zip(
        (conv.weight, conv.bias, bn.weight, bn.bias, fc.weight, fc.bias), PARAMS)]
    what = "with a planted slip (BatchNorm1d's dx)" if slip else "of the whole CNN"
    return audit(staged_loss(x, y, bn.eps), inputs, derivation(x, y, bn.eps, slip),
                 title=f"node-by-node audit {what}, a mini-batch {x.shape} float64")


def train(model: nn.Module, data, epochs: int, seed: int, audit_at: int | None = None) -> dict:
    opt = tg.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    rng, result = np.random.default_rng(seed), {"test_accuracy": [], "loss": []}
    for epoch in range(epochs):
        model.train()
        for i, (xb, yb) in enumerate(minibatches(data.x_train, data.y_train, BATCH, rng, drop_last=True)):
            if epoch == audit_at and i == 0:
                result["audit"], result["slip"] = audit_step(model, xb, yb), audit_step(model, xb, yb, slip=True)
                result["zero_windows"] = all_zero_windows(model, xb)
            loss = F.cross_entropy(model(tg.Tensor(xb)), yb)
            if "audit" in result and "loss_gap" not in result:  # the audited forward is the model's forward
                result["loss_gap"] = abs(float(result["audit"].loss.data) - loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
            result["loss"].append(loss.item())
        result["test_accuracy"].append(accuracy(model, data.x_test, data.y_test))
    return result


def run(epochs: int = 15, seed: int = 0, show_progress: bool = True) -> dict:
    d = digits(dtype=np.float64)
    data = type(d)(images(d.x_train), d.y_train, images(d.x_test), d.y_test)
    out = {}
    for name in progress(("cnn", "softmax"), 2, "CNN and softmax regression", show_progress):
        model = cnn(seed) if name == "cnn" else nn.Sequential(
            nn.Flatten(), nn.Linear(64, 10, dtype=np.float64, rng=np.random.default_rng(seed)))
        out[name] = train(model, data, epochs, seed, AUDIT_EPOCH if name == "cnn" else None)
    return out


def claims(runs: list[dict]) -> dict[str, list[float]]:
    """Per seed: the final test accuracy of each model; the audit's largest relative errors over its
    nodes (all but conv_b, whose gradient is 0), conv_b's absolute ones; the all-zero pool windows."""
    def rows(r: dict) -> list:
        return [row for row in r["cnn"]["audit"].rows if row.name not in ZERO_GRADIENTS]
    return {"CNN final test accuracy": [r["cnn"]["test_accuracy"][-1] for r in runs],
            "softmax regression final test accuracy (same epochs, batches, optimizer)":
                [r["softmax"]["test_accuracy"][-1] for r in runs],
            "audit, hand vs autograd: max relative error over the nodes": [
                max(row.vs_hand.max_rel for row in rows(r)) for r in runs],
            "audit, autograd vs finite differences: max relative error": [
                max(row.vs_fd.max_rel for row in rows(r)) for r in runs],
            "audit, the staged forward's loss vs the model's on that batch: |difference|": [
                r["cnn"]["loss_gap"] for r in runs],
            "audit, d conv_b (0 in exact arithmetic): max |hand - autograd|": [
                r["cnn"]["audit"]["conv_b"].vs_hand.max_abs for r in runs],
            "fraction of the audited batch's pool windows all 0 after ReLU (a 4-way tie)": [
                r["cnn"]["zero_windows"] for r in runs]}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(__doc__, needs=(*EXTRAS, "dot"), argv=argv)
    epochs = 3 if args.quick else 15
    with computing(args):
        runs = over_seeds(run, args.seeds, epochs=epochs)
    first = runs[0]["cnn"]
    print(f"{epochs} epochs of SGD (lr {LR:g}, momentum {MOMENTUM:g}), mini-batches of {BATCH}; audited after "
          f"epoch {AUDIT_EPOCH}, {seeds_label(args.seeds[:1])}:\n{first['audit']}\n\n{first['slip']}\n")
    print(f"No row for relu (the pool's input): where a 2x2 window is all 0 its max is a 4-way tie, not "
          f"differentiable\n({first['zero_windows']:.0%} of the windows here); d bn, through relu, is audited "
          "instead.\n")
    every = all(r["cnn"]["audit"].ok for r in runs)
    print(f"the audit passes at every node for {'every seed' if every else 'NOT every seed'}; the planted slip is "
          f"located at {sorted({r['cnn']['slip'].first_wrong for r in runs})} (planted at {SLIP!r})")
    report(claims(runs), args.seeds)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the conv's 54 inner nodes (9 kernel offsets) and cross-entropy's 16 drawn as one box each
    graph = first["slip"].draw(collapse=["conv2d", "cross_entropy"], title=(
        f"The CNN's loss, {seeds_label(args.seeds[:1])}: the hand derivation with BatchNorm1d's dx planted\n"
        f"green: hand = autograd = finite differences; red: the hand gradient is off; "
        f"first wrong: {first['slip'].first_wrong!r}"))
    print(f"figure: {graph.render(out / '8_cnn_digits_audit', format='png', cleanup=True)}")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(1, epochs + 1)
    band(ax, x, [r["cnn"]["test_accuracy"] for r in runs], "CNN (conv-BN-ReLU-pool-linear)")
    band(ax, x, [r["softmax"]["test_accuracy"] for r in runs], "softmax regression")
    ax.axvline(AUDIT_EPOCH, color="grey", lw=0.8, ls=":", label="the audit (first batch after this epoch)")
    spread_of = "median and range over " if len(args.seeds) > 1 else ""
    ax.set(title=f"Test accuracy, {spread_of}{seeds_label(args.seeds)}", xlabel="epoch", ylabel="test accuracy",
           xticks=x[::max(1, epochs // 8)])
    ax.legend()
    save(fig, args.out, "8_cnn_digits")
    return runs


if __name__ == "__main__":
    main()
