"""Becoming a backprop ninja (makemore part 4), every step of the hand derivation audited.

A character-level MLP language model in float64: 3 characters of context, a 10-d embedding per
character, 64 tanh units after batch norm, 27 logits ('.' is 0). The words are name-like ones from
tinygrad_bn.data.generated_names (a stand-in for makemore's names.txt). The forward is staged as in
the lecture, each intermediate marked with tg.check.node under the lecture's name, and:
exercise 1, the backward derived by hand in NumPy stage by stage; exercises 2 and 3, the compact
dlogits = (softmax - onehot)/n and dhprebn; each audited node by node (autograd against the hand
value and against finite differences). Then a classic slip planted (dbndiff without its second
path, through bndiff2): the audit names that node and the figure shows where. Exercise 4: training
on the hand-derived (compact) gradients alone against training with autograd, from the same start
on the same batches. The seed draws the initial parameters and the batches (one audited); the
training figures are the median (min-max) over the seeds."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import computing, over_seeds, parse_args, report, seeds_label

import tinygrad_bn as tg
from tinygrad_bn.check import Audit, audit, node
from tinygrad_bn.data import generated_names

BLOCK_SIZE, VOCAB, N_EMBD, N_HIDDEN, BATCH = 3, 27, 10, 64, 32
PARAMS = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
SLIP = "bndiff"  # the node whose hand gradient the planted slip gets wrong
# gradients that are 0 in exact arithmetic: softmax is shift-invariant (logit_maxes), and batch norm
# subtracts the batch mean, which takes b1 with it; both sides give round-off (~1e-18), so a relative
# error between them says nothing and the audit judges them against its round-off floor
ZERO_GRADIENTS = ("logit_maxes", "b1")
BN_EPS = 1e-5


def dataset(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every (3 characters of context, next character) pair of the words, '.' (0) padding the start
    and ending each word: X (m, 3), Y (m,) int64."""
    X, Y = [], []
    for w in words:
        context = [0] * BLOCK_SIZE
        for ch in w + ".":
            ix = 0 if ch == "." else ord(ch) - ord("a") + 1
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return np.array(X, np.int64), np.array(Y, np.int64)


def splits(n_words: int = 4000) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """90% of the words for training, 10% for dev (the words come in a random order)."""
    words = generated_names(n_words, seed=0)
    n = int(0.9 * len(words))
    return {"train": dataset(words[:n]), "dev": dataset(words[n:])}


def init(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The lecture's initialization (small, non-zero biases so no gradient is trivially right)."""
    fan_in = N_EMBD * BLOCK_SIZE
    return {"C": rng.standard_normal((VOCAB, N_EMBD)),
            "W1": rng.standard_normal((fan_in, N_HIDDEN)) * (5 / 3) / fan_in ** 0.5,  # tanh's gain / sqrt(fan_in)
            "b1": rng.standard_normal(N_HIDDEN) * 0.1,  # useless before batch norm: its gradient is ~0
            "W2": rng.standard_normal((N_HIDDEN, VOCAB)) * 0.1,
            "b2": rng.standard_normal(VOCAB) * 0.1,
            "bngain": rng.standard_normal((1, N_HIDDEN)) * 0.1 + 1.0,
            "bnbias": rng.standard_normal((1, N_HIDDEN)) * 0.1}


def forward(p: dict[str, tg.Tensor], Xb: np.ndarray, Yb: np.ndarray) -> dict[str, tg.Tensor]:
    """The lecture's forward, one small step at a time, each step marked: {name: Tensor}."""
    n, v = len(Xb), {}

    def mark(name: str, t: tg.Tensor) -> tg.Tensor:
        v[name] = node(name, t)
        return v[name]
    with tg.scope("1. embedding, linear 1"):
        emb = mark("emb", p["C"][Xb])  # (n, 3, 10)
        embcat = mark("embcat", emb.reshape(n, -1))  # (n, 30)
        hprebn = mark("hprebn", embcat @ p["W1"] + p["b1"])  # (n, 64)
    with tg.scope("2. batch norm"):
        bnmeani = mark("bnmeani", hprebn.sum(axis=0, keepdims=True) * (1 / n))
        bndiff = mark("bndiff", hprebn - bnmeani)
        bndiff2 = mark("bndiff2", bndiff ** 2)
        bnvar = mark("bnvar", bndiff2.sum(axis=0, keepdims=True) * (1 / (n - 1)))  # Bessel's correction, as the lecture
        bnvar_inv = mark("bnvar_inv", (bnvar + BN_EPS) ** -0.5)
        bnraw = mark("bnraw", bndiff * bnvar_inv)
        hpreact = mark("hpreact", p["bngain"] * bnraw + p["bnbias"])
    with tg.scope("3. tanh, linear 2"):
        h = mark("h", hpreact.tanh())
        logits = mark("logits", h @ p["W2"] + p["b2"])  # (n, 27)
    with tg.scope("4. softmax cross-entropy"):
        # subtracting the row max changes no probability (softmax is shift-invariant): its gradient is ~0,
        # and it stays in the graph, as in the lecture, so the audit shows it
        logit_maxes = mark("logit_maxes", logits.max(axis=1, keepdims=True))
        norm_logits = mark("norm_logits", logits - logit_maxes)
        counts = mark("counts", norm_logits.exp())
        counts_sum = mark("counts_sum", counts.sum(axis=1, keepdims=True))
        counts_sum_inv = mark("counts_sum_inv", counts_sum ** -1)
        probs = mark("probs", counts * counts_sum_inv)
        logprobs = mark("logprobs", probs.log())
        mark("loss", -logprobs[np.arange(n), Yb].mean())
    return v


def loss_fn(Xb: np.ndarray, Yb: np.ndarray) -> Callable[..., tg.Tensor]:
    """f(C, W1, b1, W2, b2, bngain, bnbias) -> loss, as check.audit calls it."""
    return lambda *ps: forward(dict(zip(PARAMS, ps)), Xb, Yb)["loss"]


# ------------------------------------------------------------------- exercise 1: stage by stage

def stepwise(Xb: np.ndarray, Yb: np.ndarray, slip: str | None = None) -> Callable[[dict], dict]:
    """The hand backward, from the loss to the parameters, one d<name> per forward step (plain NumPy).
    slip=SLIP plants the classic mistake: dbndiff without its second path (through bndiff2)."""
    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, r = len(Xb), np.arange(len(Xb))
        d = {"loss": np.float64(1.0)}
        d["logprobs"] = np.zeros_like(v["logprobs"])
        d["logprobs"][r, Yb] = -1.0 / n  # loss = -mean of the picked log-probabilities
        d["probs"] = d["logprobs"] / v["probs"]
        d["counts_sum_inv"] = (v["counts"] * d["probs"]).sum(axis=1, keepdims=True)  # broadcast in forward: sum
        d["counts_sum"] = -v["counts_sum"] ** -2 * d["counts_sum_inv"]
        d["counts"] = v["counts_sum_inv"] * d["probs"] + d["counts_sum"]  # two paths: probs and counts_sum
        d["norm_logits"] = v["counts"] * d["counts"]  # exp' = exp
        d["logit_maxes"] = -d["norm_logits"].sum(axis=1, keepdims=True)  # ~0: the shift changes nothing
        d["logits"] = d["norm_logits"].copy()
        d["logits"][r, v["logits"].argmax(axis=1)] += d["logit_maxes"][:, 0]  # max routes to the argmax
        d["h"] = d["logits"] @ v["W2"].T
        d["W2"] = v["h"].T @ d["logits"]
        d["b2"] = d["logits"].sum(axis=0)
        d["hpreact"] = (1 - v["h"] ** 2) * d["h"]  # tanh' = 1 - tanh^2
        d["bngain"] = (v["bnraw"] * d["hpreact"]).sum(axis=0, keepdims=True)
        d["bnbias"] = d["hpreact"].sum(axis=0, keepdims=True)
        d["bnraw"] = v["bngain"] * d["hpreact"]
        d["bnvar_inv"] = (v["bndiff"] * d["bnraw"]).sum(axis=0, keepdims=True)
        d["bnvar"] = -0.5 * (v["bnvar"] + BN_EPS) ** -1.5 * d["bnvar_inv"]
        d["bndiff2"] = np.ones_like(v["bndiff2"]) / (n - 1) * d["bnvar"]
        d["bndiff"] = v["bnvar_inv"] * d["bnraw"]  # path 1: through bnraw
        if slip != SLIP:
            d["bndiff"] = d["bndiff"] + 2 * v["bndiff"] * d["bndiff2"]  # path 2: through bndiff2 (the variance)
        d["bnmeani"] = -d["bndiff"].sum(axis=0, keepdims=True)
        d["hprebn"] = d["bndiff"] + d["bnmeani"] / n  # two paths: bndiff and the mean
        d["embcat"] = d["hprebn"] @ v["W1"].T
        d["W1"] = v["embcat"].T @ d["hprebn"]
        d["b1"] = d["hprebn"].sum(axis=0)
        d["emb"] = d["embcat"].reshape(v["emb"].shape)
        d["C"] = np.zeros_like(v["C"])
        np.add.at(d["C"], Xb, d["emb"])  # a row used k times in the batch collects k gradients
        return d
    return derive


# ------------------------------------------------------------------- exercises 2-4: compact

def compact(Xb: np.ndarray, Yb: np.ndarray) -> Callable[[dict], dict]:
    """Exercise 4's backward: dlogits and dhprebn in one formula each (exercises 2 and 3), then the
    layers: the gradients of the logits, hprebn and every parameter."""
    def derive(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(Xb)
        d = {}
        # exercise 2: d loss / d logits = (softmax(logits) - onehot(Yb)) / n
        e = np.exp(v["logits"] - v["logits"].max(axis=1, keepdims=True))
        d["logits"] = e / e.sum(axis=1, keepdims=True)
        d["logits"][np.arange(n), Yb] -= 1
        d["logits"] /= n
        d["W2"], d["b2"] = v["h"].T @ d["logits"], d["logits"].sum(axis=0)
        dhpreact = (1 - v["h"] ** 2) * (d["logits"] @ v["W2"].T)
        d["bngain"] = (v["bnraw"] * dhpreact).sum(axis=0, keepdims=True)
        d["bnbias"] = dhpreact.sum(axis=0, keepdims=True)
        # exercise 3: batch norm's backward in one line (the unbiased variance brings n / (n - 1))
        d["hprebn"] = v["bngain"] * v["bnvar_inv"] / n * (
            n * dhpreact - dhpreact.sum(axis=0) - n / (n - 1) * v["bnraw"] * (dhpreact * v["bnraw"]).sum(axis=0))
        d["W1"], d["b1"] = v["embcat"].T @ d["hprebn"], d["hprebn"].sum(axis=0)
        d["C"] = np.zeros_like(v["C"])
        np.add.at(d["C"], Xb, (d["hprebn"] @ v["W1"].T).reshape(v["emb"].shape))
        return d
    return derive


def batch(rng: np.random.Generator, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.integers(0, len(X), BATCH)
    return X[idx], Y[idx]


def split_loss(p: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, bnmean: np.ndarray,
               bnvar: np.ndarray) -> float:
    """The cross-entropy of a whole split in NumPy, batch norm with the given (calibrated) statistics."""
    hprebn = p["C"][X].reshape(len(X), -1) @ p["W1"] + p["b1"]
    h = np.tanh(p["bngain"] * (hprebn - bnmean) / np.sqrt(bnvar + BN_EPS) + p["bnbias"])
    logits = h @ p["W2"] + p["b2"]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(Y)), Y].mean())


def train(p0: dict[str, np.ndarray], data: dict, steps: int, seed: int, hand: bool, lr: float = 0.1) -> dict:
    """SGD from p0 on the seed's batches, with the compact hand gradients (hand) or autograd's.
    Then, as the lecture, batch norm calibrated on the whole training set, and each split's loss."""
    X, Y = data["train"]
    rng = np.random.default_rng(1000 + seed)  # the batches: the same for both runs
    p, losses = {k: a.copy() for k, a in p0.items()}, []
    for _ in range(steps):
        Xb, Yb = batch(rng, X, Y)
        ts = [tg.Tensor(p[k], requires_grad=not hand, name=k) for k in PARAMS]
        if hand:
            with tg.no_grad():
                v = forward(dict(zip(PARAMS, ts)), Xb, Yb)
            values = {**{k: t.data for k, t in v.items()}, **p}
            grads = [compact(Xb, Yb)(values)[k] for k in PARAMS]
            loss = float(v["loss"].data)
        else:
            out = forward(dict(zip(PARAMS, ts)), Xb, Yb)["loss"]
            grads = [g.data for g in tg.grad(out, ts)]
            loss = out.item()
        losses.append(loss)
        p = {k: p[k] - lr * g for k, g in zip(PARAMS, grads)}
    hpre = p["C"][X].reshape(len(X), -1) @ p["W1"] + p["b1"]
    bnmean, bnvar = hpre.mean(axis=0, keepdims=True), hpre.var(axis=0, keepdims=True, ddof=1)
    return {"params": p, "losses": losses,
            **{f"{k} loss": split_loss(p, *data[k], bnmean, bnvar) for k in ("train", "dev")}}


def run(seed: int = 0, steps: int = 1000, show_progress: bool = True) -> dict:
    """The three audits on one batch at the seed's initial parameters, then both training runs."""
    data = splits()
    rng = np.random.default_rng(seed)
    p0 = init(rng)
    Xb, Yb = batch(rng, *data["train"])
    params = [tg.Tensor(p0[k], name=k) for k in PARAMS]
    f = loss_fn(Xb, Yb)
    audits = {
        "exercise 1: every step by hand": audit(f, params, stepwise(Xb, Yb)),
        "exercises 2 and 3: compact dlogits and dhprebn": audit(
            f, params, lambda v: {k: g for k, g in compact(Xb, Yb)(v).items() if k in ("logits", "hprebn")}),
        f"a planted slip: d{SLIP} without its path through bndiff2": audit(f, params, stepwise(Xb, Yb, slip=SLIP)),
    }
    v = forward({k: tg.Tensor(p0[k], requires_grad=True) for k in PARAMS}, Xb, Yb)
    d_maxes, d_logits = tg.grad(v["loss"], [v["logit_maxes"], v["logits"]])  # the lecture's check: dlogit_maxes ~ 0
    runs = {hand: train(p0, data, steps, seed, hand) for hand in (True, False)}
    diff = max(float(np.abs(runs[True]["params"][k] - runs[False]["params"][k]).max()
                   / np.abs(runs[False]["params"][k]).max()) for k in PARAMS)
    return {"audits": audits, "hand": runs[True], "autograd": runs[False], "param_rel_diff": diff,
            "logit_maxes_ratio": float(np.abs(d_maxes.data).max() / np.abs(d_logits.data).max()),
            "steps": steps, "n_train": len(data["train"][1]), "n_dev": len(data["dev"][1])}


def slip_audit(r: dict) -> Audit:
    return list(r["audits"].values())[-1]


def claims(runs: list[dict]) -> dict[str, list[float]]:
    """Per seed: the hand-vs-autograd errors of the right derivations, and the training figures."""
    def worst(r: dict, i: int) -> float:
        a = list(r["audits"].values())[i]
        return max(row.vs_hand.max_rel for row in a.rows if row.name not in ZERO_GRADIENTS)
    return {"exercise 1, hand vs autograd: max relative error over the nodes": [worst(r, 0) for r in runs],
            "exercises 2-3, hand vs autograd: max relative error": [worst(r, 1) for r in runs],
            "max |dlogit_maxes| / max |dlogits| (autograd; exactly 0 in exact arithmetic)":
                [r["logit_maxes_ratio"] for r in runs],
            "parameters after training, hand vs autograd: max relative difference": [r["param_rel_diff"] for r in runs],
            "final training loss (whole training set), hand": [r["hand"]["train loss"] for r in runs],
            "final training loss (whole training set), autograd": [r["autograd"]["train loss"] for r in runs],
            "final dev loss, hand": [r["hand"]["dev loss"] for r in runs],
            "final dev loss, autograd": [r["autograd"]["dev loss"] for r in runs]}


def draw(a: Audit, out: str, name: str = "7_backprop_ninja", breaks: tuple[str, ...] = ("hprebn", "hpreact")) -> Path:
    """The slip's audit on the forward graph, rendered to out/name.png. The graph is one long chain, so
    it is drawn in columns, left to right: the edges leaving each node of `breaks` do not constrain the
    ranks (Graphviz's constraint=false), so the ops they feed start a new column at the top: embedding and
    linear 1, batch norm, then the rest (the graph drawn in one column is 5000 pixels tall)."""
    g = a.draw(max_nodes=None, title=f"audit of the hand derivation with the slip planted at d{SLIP} "
               "(green: right, red: wrong; the thick border is the first wrong)")
    ids = {f"t{id(a[k].tensor)}" for k in breaks}
    g.body = [line.rstrip("\n") + " [constraint=false]\n" if " -> " in line and line.split()[0] in ids else line
              for line in g.body]
    # the parameters (declared first, from the loss back) after the clusters: the columns then come in forward order
    first = next(i for i, line in enumerate(g.body) if line.startswith("\tsubgraph"))
    g.body = g.body[first:] + g.body[:first]
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    g.render(str(path), format="png", cleanup=True)
    print(f"figure: {path}.png")
    return path.with_suffix(".png")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(__doc__, needs=("dot",), argv=argv)
    with computing(args):
        runs = over_seeds(run, args.seeds, steps=200 if args.quick else 1000)
    first = runs[0]
    print(f"{first['n_train']} training and {first['n_dev']} dev examples (block size {BLOCK_SIZE}); "
          f"batch {BATCH}, float64; tables for seed {args.seeds[0]}")
    for title, a in first["audits"].items():
        print(f"\n{title}\n{a}")
    right = all(a.ok for r in runs for a in list(r["audits"].values())[:2])
    print(f"\n{seeds_label(args.seeds)}: the right derivations pass every node: {right}; the slip's first wrong node: "
          f"{[slip_audit(r).first_wrong for r in runs]} (planted at {SLIP!r})")
    print(f"seed {args.seeds[0]}: the slip fails at {[row.name for row in slip_audit(first).rows if not row.ok]}; "
          "bnmeani stays right, since the forgotten 2 bndiff dbndiff2 sums to 0 over the centred batch")
    print(f"\nexercise 4: {first['steps']} SGD steps (lr 0.1), the compact hand gradients vs autograd's, from the "
          "same start on the same batches")
    report(claims(runs), args.seeds)
    draw(slip_audit(first), args.out)
    return runs


if __name__ == "__main__":
    main()
