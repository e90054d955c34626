"""The course's claims, as README.md's section "The course's claims, reproduced" quotes them.

A training run is chaotic (a change in round-off is, a few epochs in, like another seed), so each
training claim is the median (min-max) over the examples' seeds: a test checks that the README row
still says it, reruns the seeds (once per module, shared by its tests) and asserts the median lies
in the quoted range. Round-off figures are asserted against the bound the README quotes. Each
example is also run whole, in its --quick form, so every script and figure stays working."""
import contextlib
import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_dot

import tinygrad_bn as tg

pytest.importorskip("sklearn", reason="the examples need the digits data set: pip install -e '.[examples]'")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
README = EXAMPLES.parent / "README.md"


def example(name: str):
    """Import examples/NAME.py as a module (its folder on sys.path for _common)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(name.replace(".py", ""), EXAMPLES / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


SEEDS = example("_common.py").SEEDS


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """As the examples run their seeds: small matrices, the same results to the bit, and no waiting on a
    second BLAS thread (4x slower on 2 busy cores)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        yield


def quoted(script: str, *phrases: str) -> None:
    """README's table row for examples/SCRIPT says each phrase (so the numbers asserted are the ones quoted)."""
    row = next((line for line in README.read_text().splitlines() if line.startswith(f"| `python examples/{script}`")),
               None)
    assert row is not None, f"README has no row for examples/{script}"
    for phrase in phrases:
        assert phrase in row, f"README's row for {script} no longer says {phrase!r}"


def assert_median_within(values, lo: float, hi: float) -> None:
    """The median over seeds (None, a target never reached, counts as infinity) lies in [lo, hi]."""
    values = [np.inf if v is None else v for v in values]
    assert lo <= np.median(values) <= hi, f"median {np.median(values):g} of {values} is outside {lo:g}-{hi:g}"


def spread(median: float, lo: float, hi: float) -> str:
    """'median (min-max)' as the README writes it."""
    return f"{median:g} ({lo:g}-{hi:g})"


# Example 2: a 6-hidden-layer MLP, 15 epochs, with and without batch norm, at four learning rates.
BN_EPOCHS_TO_90 = {0.01: (7, 7, 10), 0.03: (3, 3, 5), 0.1: (2, 1, 2), 0.3: (2, 1, 3)}  # median, min, max
NO_BN_STUCK_ACCURACY = (0.131, 0.078, 0.22)  # final test accuracy without BN at lr 0.01, 0.03, 0.1, pooled
NO_BN_LR_03_REACHED, NO_BN_LR_03_ACCURACY = 2, (0.886, 0.513, 0.967)


@pytest.fixture(scope="module")
def speedup():
    ex = example("2_batchnorm_speedup.py")
    return ex, [ex.run(seed=s, show_progress=False) for s in SEEDS]


def test_with_batch_norm_90_percent_takes_the_quoted_epochs_at_every_learning_rate(speedup):
    _, runs = speedup
    quoted("2_batchnorm_speedup.py", "seeds 0-4", "with batch norm 90% test accuracy in "
           + " / ".join(spread(*v) for v in BN_EPOCHS_TO_90.values()) + " epochs at lr 0.01 / 0.03 / 0.1 / 0.3")
    for lr, (_, lo, hi) in BN_EPOCHS_TO_90.items():
        assert_median_within([r[True, lr].epochs_to(0.9) for r in runs], lo, hi)


def test_without_batch_norm_the_same_net_is_stuck_or_slow(speedup):
    ex, runs = speedup
    quoted("2_batchnorm_speedup.py", f"final test accuracy {spread(*NO_BN_STUCK_ACCURACY)}",
           f"at 0.3 only {NO_BN_LR_03_REACHED} of {len(SEEDS)} seeds get there",
           f"final accuracy {spread(*NO_BN_LR_03_ACCURACY)}")
    for lr in (0.01, 0.03, 0.1):
        assert [r[False, lr].epochs_to(0.9) for r in runs] == [None] * len(SEEDS), f"without BN, lr {lr}"
    assert_median_within(ex.stuck(runs), *NO_BN_STUCK_ACCURACY[1:])
    # a late, chaotic run can cross 90% or not with the round-off; the claim is that most seeds don't
    assert sum(r[False, 0.3].epochs_to(0.9) is not None for r in runs) <= NO_BN_LR_03_REACHED
    assert_median_within([r[False, 0.3].test_accuracy[-1] for r in runs], *NO_BN_LR_03_ACCURACY[1:])


# Example 1: softmax regression, raw vs normalized pixels, each at its best SGD learning rate.
STEPS_TO_LOSS_01 = {"raw": (124, 117, 134), "normalized": (38, 33, 58)}  # median, min, max
BEST_LR = {"raw": 0.03, "normalized": 3}


def test_input_normalization_reaches_the_target_loss_in_fewer_steps():
    ex = example("1_input_normalization.py")
    runs = [ex.run(iterations=200, seed=s, show_progress=False) for s in SEEDS]  # every quoted count is < 200
    raw, normalized = (f"{spread(*STEPS_TO_LOSS_01[k])} steps on {k} pixels (lr {BEST_LR[k]:g})" for k in BEST_LR)
    quoted("1_input_normalization.py", f"training loss 0.1 after {raw}, {normalized.replace(' steps', '')}")
    claims = ex.claims(runs)
    for name, (_, lo, hi) in STEPS_TO_LOSS_01.items():
        assert ex.best_lrs(runs, name) == [BEST_LR[name]] * len(SEEDS)
        assert_median_within(claims[f"steps to loss 0.1, {name} pixels"], lo, hi)


# Example 3: batch norm's running statistics against the population ones, and eval on single examples.
RUNNING_VS_POPULATION = {  # example 3's claims: (median, min, max)
    "max |running mean - population mean| / population std": (0.0659, 0.0597, 0.0827),
    "max |running var / population var - 1|": (0.113, 0.0964, 0.234),
    "test accuracy, running statistics": (0.981, 0.969, 0.992),
    "test accuracy, population statistics": (0.978, 0.969, 0.992),
    "test examples the two classify differently": (1, 0, 1)}
SINGLE_VS_BATCH_BOUND = 1e-13  # float64 round-off on logits of order 10: the largest difference over seeds is ~2e-14


def test_running_averages_serve_at_test_time_and_single_examples_equal_the_batch():
    ex = example("3_bn_test_time.py")
    runs = [ex.run(seed=s, show_progress=False) for s in SEEDS]
    quoted("3_bn_test_time.py", *(spread(*v) for v in RUNNING_VS_POPULATION.values()),
           "359 test examples", f"(bound {SINGLE_VS_BATCH_BOUND:g})")
    claims = ex.claims(runs)
    for name, (_, lo, hi) in RUNNING_VS_POPULATION.items():
        assert_median_within(claims[name], lo, hi)
    assert all(r["n_test"] == 359 and r["same_class"] for r in runs)
    assert max(claims["max |logit difference|, single examples vs one batch"]) <= SINGLE_VS_BATCH_BOUND


# Example 4: the std of one example's z_tilde across random mini-batches of size m.
NOISE_STD = {2: (0.812, 0.777, 0.827), 64: (0.154, 0.145, 0.16), 256: (0.0726, 0.0707, 0.076)}  # median, min, max
NOISE_POWER = (0.493, 0.477, 0.508)  # p of a fitted std ~ m^-p


def test_batch_norm_noise_shrinks_as_the_mini_batch_grows():
    ex = example("4_bn_noise.py")
    runs = [ex.run(seed=s, show_progress=False) for s in SEEDS]
    quoted("4_bn_noise.py", ", ".join(f"{spread(*v)} at {'m = ' * (m == 2)}{m}" for m, v in NOISE_STD.items()),
           f"p = {spread(*NOISE_POWER)}")
    claims = ex.claims(runs)
    for m, (_, lo, hi) in NOISE_STD.items():
        assert_median_within(claims[f"std of z_tilde across mini-batches of {m}"], lo, hi)
    assert_median_within(claims["p of a fitted std ~ m^-p"], *NOISE_POWER[1:])
    medians = [np.median(claims[f"std of z_tilde across mini-batches of {m}"]) for m in ex.BATCH_SIZES]
    assert all(a > b for a, b in zip(medians, medians[1:]))  # every larger batch, less noise


# Example 5: softmax regression in float64, autograd's dz against (y_hat - y)/m at every step.
SOFTMAX_ACCURACY = (0.967, 0.961, 0.972)  # final test accuracy: median, min, max
DZ_BOUND = 4e-15  # relative round-off, 18 float64 epsilons; the worst step of any seed is ~1e-15


def test_softmax_regression_dz_equals_y_hat_minus_y_over_m_throughout_training():
    ex = example("5_softmax_regression.py")
    runs = [ex.run(seed=s, show_progress=False) for s in SEEDS]
    quoted("5_softmax_regression.py", "230 SGD steps", f"test accuracy {spread(*SOFTMAX_ACCURACY)}",
           f"(relative; bound {DZ_BOUND:g})")
    claims = ex.claims(runs)
    assert all(len(r["dz_rel_error"]) == 230 for r in runs)
    assert_median_within(claims["final test accuracy"], *SOFTMAX_ACCURACY[1:])
    assert max(claims["max over steps of max|autograd dz - (y_hat - y)/m| / max|(y_hat - y)/m|"]) <= DZ_BOUND


# Example 6 (deterministic, seed 0): the figures are round-off, so the test asserts bounds with room for
# a change in summation order (over seeds 0-9 the best difference is 1.3e-10 to 2.8e-10, the symmetry up to 9e-15).
HV_PARAMETERS, HV_ERROR, HV_ERROR_BOUND, HV_SYMMETRY, HV_SYMMETRY_BOUND = 3530, 1.5e-10, 5e-10, 5.2e-16, 2e-14


def test_hessian_vector_product_through_batch_norm_matches_differences_of_the_gradient():
    r = example("6_hessian_vector.py").run()
    quoted("6_hessian_vector.py", f"({HV_PARAMETERS} parameters)", f"to {HV_ERROR:g} at the best step (bound "
           f"{HV_ERROR_BOUND:g})", f"to {HV_SYMMETRY:g} relative (bound {HV_SYMMETRY_BOUND:g})")
    assert r["n_params"] == HV_PARAMETERS
    assert min(r["errors"]) <= HV_ERROR_BOUND
    assert abs(r["u_hv"] - r["v_hu"]) <= HV_SYMMETRY_BOUND * abs(r["u_hv"])


# Example 7 (makemore part 4): a hand derivation audited node by node, a planted slip located, and training
# on the hand gradients alone. Hand and autograd differ by round-off only: the staged derivation repeats
# autograd's arithmetic (0 difference), the compact formulas regroup it (<= 6.2e-16 relative over seeds
# 0-9). Training on the compact gradients adds that per-step difference to the parameters (lr 0.1): after
# 1000 steps they are <= 1.3e-15 relative from autograd's over seeds 0-9, no chaotic growth, so 1e-14
# (45 float64 epsilons) leaves room for a change in summation order.
NINJA_NODES, NINJA_STEPS, NINJA_SLIP_FAILS = 27, 1000, {"bndiff", "hprebn", "embcat", "emb", "C", "W1"}
NINJA_HAND_BOUND, NINJA_TRAIN_BOUND = 4e-15, 1e-14
NINJA_TRAIN_LOSS = (2.36, 2.34, 2.38)  # whole training set after 1000 steps: median, min, max (hand and autograd)


@pytest.fixture(scope="module")
def ninja():
    ex = example("7_backprop_ninja.py")
    return ex, [ex.run(seed=s, steps=NINJA_STEPS, show_progress=False) for s in SEEDS]


def test_backprop_ninja_readme_quotes_the_pinned_numbers():
    quoted("7_backprop_ninja.py", "seeds 0-4", f"all {NINJA_NODES} nodes", f"bound {NINJA_HAND_BOUND:g})",
           "located at `bndiff`", f"{len(NINJA_SLIP_FAILS)} nodes fail", f"{NINJA_STEPS} SGD steps",
           f"(relative; bound {NINJA_TRAIN_BOUND:g})", f"training loss {spread(*NINJA_TRAIN_LOSS)}")


def test_generated_names_are_a_reproducible_stand_in_for_names_txt():
    from tinygrad_bn.data import generated_names
    words = generated_names(4000, seed=0)
    assert words == generated_names(4000, seed=0) != generated_names(4000, seed=1)
    assert len(set(words)) == 4000 and all(3 <= len(w) <= 10 and w.isascii() and w.isalpha() and w.islower()
                                           for w in words)
    assert generated_names(10, seed=0) == words[:10]


def test_backprop_ninja_the_hand_derivation_passes_the_audit_at_every_node(ninja):
    ex, runs = ninja
    for r in runs:
        stepwise, compact, _ = r["audits"].values()
        assert stepwise.ok and compact.ok, f"\n{stepwise}\n{compact}"
        assert len(stepwise.rows) == NINJA_NODES and {row.name for row in compact.rows} == {"logits", "hprebn"}
    claims = ex.claims(runs)
    assert max(claims["exercise 1, hand vs autograd: max relative error over the nodes"]) <= NINJA_HAND_BOUND
    assert max(claims["exercises 2-3, hand vs autograd: max relative error"]) <= NINJA_HAND_BOUND
    # the lecture's point about logit_maxes: in the graph, and its gradient is round-off
    assert max(claims["max |dlogit_maxes| / max |dlogits| (autograd; exactly 0 in exact arithmetic)"]) <= 1e-14


def test_backprop_ninja_the_planted_slip_is_located_at_its_node(ninja):
    ex, runs = ninja
    for r in runs:
        slip = ex.slip_audit(r)
        assert slip.first_wrong == ex.SLIP == "bndiff", str(slip)
        assert {row.name for row in slip.rows if not row.ok} == NINJA_SLIP_FAILS
        assert all(row.vs_fd.ok for row in slip.rows), "autograd itself stays right against finite differences"


def test_backprop_ninja_training_on_hand_gradients_equals_autograd_to_round_off(ninja):
    ex, runs = ninja
    claims = ex.claims(runs)
    assert max(claims["parameters after training, hand vs autograd: max relative difference"]) <= NINJA_TRAIN_BOUND
    for who in ("hand", "autograd"):
        assert_median_within(claims[f"final training loss (whole training set), {who}"], *NINJA_TRAIN_LOSS[1:])
    assert all(abs(r["hand"]["train loss"] - r["autograd"]["train loss"]) <= 1e-12 for r in runs)


# Example 8 (cs231n assignment 2): a conv-BN-ReLU-pool-linear CNN's backward derived by hand and audited after
# epoch 1, a planted slip (BatchNorm1d's dx on (N, C, H, W)) located, and test accuracy after 15 epochs. The
# full configuration: the audits cost the same in --quick (~3.6 s a seed of ~4.5), and it is what the README
# quotes. Hand against autograd is round-off (<= 8.9e-16 relative over seeds 0-4), so 4e-15 (18 float64
# epsilons) leaves room for a change in summation order; conv_b's gradient is 0 in exact arithmetic (~3e-17).
CNN_ACCURACY, CNN_SOFTMAX_ACCURACY = (0.983, 0.981, 0.992), (0.969, 0.964, 0.972)  # final test accuracy
CNN_HAND_BOUND, CNN_ZERO_GRADIENT_BOUND, CNN_EPOCHS = 4e-15, 1e-15, 15
CNN_SLIP_FAILS = {"conv", "conv_w", "conv_b"}  # the planted node, and the conv's parameters that inherit it


@pytest.fixture(scope="module")
def cnn():
    ex = example("8_cnn_digits.py")
    return ex, [ex.run(epochs=CNN_EPOCHS, seed=s, show_progress=False) for s in SEEDS]


def test_cnn_readme_quotes_the_pinned_numbers():
    quoted("8_cnn_digits.py", "seeds 0-4", f"{CNN_EPOCHS} epochs", f"test accuracy {spread(*CNN_ACCURACY)}",
           f"softmax regression {spread(*CNN_SOFTMAX_ACCURACY)}", f"bound {CNN_HAND_BOUND:g})", "located at `conv`")


def test_cnn_the_hand_derivation_passes_the_audit_at_every_node(cnn):
    ex, runs = cnn
    for r in runs:
        a = r["cnn"]["audit"]
        assert a.ok, str(a)
        assert {row.name for row in a.rows} == set(ex.PARAMS) | set(ex.F.STAGES) | {"conv", "bn", "pool", "flat",
                                                                                "logits"}
        assert r["cnn"]["loss_gap"] == 0, "the audited forward is the model's own forward"
    claims = ex.claims(runs)
    assert max(claims["audit, hand vs autograd: max relative error over the nodes"]) <= CNN_HAND_BOUND
    assert max(claims["audit, d conv_b (0 in exact arithmetic): max |hand - autograd|"]) <= CNN_ZERO_GRADIENT_BOUND


def test_cnn_the_planted_batch_norm_slip_is_located_at_the_conv_output(cnn):
    ex, runs = cnn
    for r in runs:
        slip = r["cnn"]["slip"]
        assert slip.first_wrong == ex.SLIP == "conv", str(slip)
        assert {row.name for row in slip.rows if not row.ok} == CNN_SLIP_FAILS
        assert all(row.vs_fd.ok for row in slip.rows), "autograd itself stays right against finite differences"


def test_cnn_beats_softmax_regression_on_every_seed(cnn):
    ex, runs = cnn
    claims = ex.claims(runs)
    cnn_acc = claims["CNN final test accuracy"]
    softmax_acc = claims["softmax regression final test accuracy (same epochs, batches, optimizer)"]
    assert_median_within(cnn_acc, *CNN_ACCURACY[1:])
    assert_median_within(softmax_acc, *CNN_SOFTMAX_ACCURACY[1:])
    assert all(c > s for c, s in zip(cnn_acc, softmax_acc)), f"CNN {cnn_acc} vs softmax regression {softmax_acc}"


SCRIPTS = [pytest.param(p.name, marks=requires_dot if ".render(" in p.read_text() else ())
           for p in sorted(EXAMPLES.glob("[0-9]_*.py"))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_example_runs_and_saves_its_figure(script, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figure = tmp_path / script.replace(".py", ".png")
    assert figure.exists() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000


# --fused (issue 15: the examples run under tg.fused() with the same results). Each example's main runs in-process
# in its --quick form (as above: the same seeds and sizes), eagerly and with --fused. What it prints must be the
# same word for word, the numbers aside (every verdict, node name, slip location, True/False); the numbers it prints
# are its runs' (main returns them), compared below at full precision, each as its nature allows. Fused kernels
# may add in another order than NumPy, so a number may move by round-off and by what training makes of it; how far
# is measured in eager mode by moving one initial weight by 1 ulp ("a 1-ulp change" below), and:
# - a number round-off does not grow in (convex or stable training, statistics) is compared to a tolerance far
#   above what a 1-ulp change does and far below any wrong result (a wrong op is off by O(1));
# - a number that *is* round-off (hand vs autograd, single vs batched, dz vs its formula) has to stay within the
#   bound the README quotes, which leaves room for a change in summation order;
# - a chaotic training run (example 2) within the spread a 1-ulp change gives; the claims it makes, equal.
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?")


def quick_main(script: str, out: Path, *flags: str):
    """examples/SCRIPT's main(["--quick", *flags]) in-process: (the module, what it printed, the runs it returned,
    how many tg.fused() contexts it entered)."""
    ex = example(script)
    entered = []
    enter = tg.fused.__enter__
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()) as printed:
        mp.setattr(tg.fused, "__enter__", lambda self: entered.append(self) or enter(self))
        runs = ex.main(["--quick", "--out", str(out), *flags])
    return ex, printed.getvalue(), runs, len(entered)


def words(text: str) -> list[str]:
    """The printed text with every number masked (and any run of spaces one: tables align on the numbers)."""
    return [" ".join(NUMBER.sub("#", line).split()) for line in text.splitlines()]


def close(eager, fused, rtol: float, what: str) -> None:
    np.testing.assert_allclose(np.asarray(fused, float), np.asarray(eager, float), rtol=rtol, atol=0, err_msg=what)


def same_1(ex, eager: list, fused: list) -> None:
    # float32 softmax regression: a convex loss at a stable learning rate, where a round-off difference does not
    # grow. The steps to the target and the best learning rates are the claims: equal; the curves to 1e-5 (~170
    # float32 epsilons; with --fused 1 every op runs in kernels)
    assert ex.claims(fused) == ex.claims(eager)
    for name in ("raw", "normalized"):
        assert ex.best_lrs(fused, name) == ex.best_lrs(eager, name)
        for e, f in zip(eager, fused):
            close(e[name][1], f[name][1], 1e-5, f"{name} pixels' loss curve")


# Example 2 trains in float32, and with batch norm a round-off change grows: in eager mode, one initial weight
# moved by 1 ulp (3 weights a seed, seeds 0-4, --quick's 6 epochs) moves the first epoch's mean loss by up to 1e-4
# at lr 0.01-0.1 and 1.1e-2 at lr 0.3 (seed 1: 2e-4 after 5 steps, 1e-1 after 13), the final test accuracy by up
# to 0.0195 (7 of 359 test examples), and the epochs to 90% never. So: the epochs to 90% (the README's claim)
# equal, the first epoch's loss to 10x / 3x what a 1-ulp change gives, the final accuracy to 0.03 (11 examples).
CHAOS_FIRST_EPOCH_LOSS = {0.3: 3e-2}  # by learning rate, with batch norm; 1e-3 otherwise
CHAOS_FINAL_ACCURACY = 0.03


def same_2(ex, eager: list, fused: list) -> None:
    for e, f in zip(eager, fused):
        assert e.keys() == f.keys()
        for (bn, lr), h in e.items():
            what = f"{'with' if bn else 'without'} BN, lr {lr:g}"
            rtol = CHAOS_FIRST_EPOCH_LOSS.get(lr, 1e-3) if bn else 1e-3
            close(h.train_loss[0], f[bn, lr].train_loss[0], rtol, f"{what}: the first epoch's loss")
            assert f[bn, lr].epochs_to(ex.TARGET) == h.epochs_to(ex.TARGET), what
            assert abs(f[bn, lr].test_accuracy[-1] - h.test_accuracy[-1]) <= CHAOS_FINAL_ACCURACY, what


def same_3(ex, eager: list, fused: list) -> None:
    # float64 training at lr 0.1: a 1-ulp change moves the statistics' gaps by <= 4e-15 (3e-15 when these ops ran in
    # kernels): to 1e-12; the accuracies and the examples the two classify differently equal
    ce, cf = ex.claims(eager), ex.claims(fused)
    for name in ("max |running mean - population mean| / population std", "max |running var / population var - 1|"):
        close(ce[name], cf[name], 1e-12, name)
    for name in ("test accuracy, running statistics", "test accuracy, population statistics",
                 "test examples the two classify differently"):
        assert cf[name] == ce[name], name
    assert all(r["n_test"] == 359 and r["same_class"] for r in fused)
    assert max(cf["max |logit difference|, single examples vs one batch"]) <= SINGLE_VS_BATCH_BOUND


def same_4(ex, eager: list, fused: list) -> None:
    # float32: the std of z_tilde over 50 mini-batches after 3 epochs at lr 0.1. A 1-ulp change of the input moves
    # it by <= 1e-7, but another evaluation order moves it more: at m = 2, batch norm's input gradient is
    # (1 - x_hat^2)(dy_1 - dy_2) / ... with x_hat^2 = var / (var + eps), a difference of nearly equal numbers whose
    # float32 rounding is ~1e-2 of it in eager and fused alike, in another pattern (the kernels sum in float64, with
    # factors taken out of the sums); the training below it then differs by 1.8e-4 (measured). The claims are quoted
    # to three digits: equal to 1e-3
    ce, cf = ex.claims(eager), ex.claims(fused)
    for name in ce:
        close(ce[name], cf[name], 1e-3, name)


def same_5(ex, eager: list, fused: list) -> None:
    # float64 softmax regression (convex): every step's loss to 1e-12, the accuracies equal; dz vs (y_hat - y)/m is
    # round-off, within the README's bound
    for e, f in zip(eager, fused):
        close(e["loss"], f["loss"], 1e-12, "the loss at every step")
        assert f["test_accuracy"] == e["test_accuracy"] and len(f["dz_rel_error"]) == len(e["dz_rel_error"])
    assert max(ex.claims(fused)["max over steps of max|autograd dz - (y_hat - y)/m| / max|(y_hat - y)/m|"]) <= DZ_BOUND


def same_6(ex, eager: dict, fused: dict) -> None:
    # float64: u^T H v to 1e-12; the differences from central differences at steps h >= 1e-5, where truncation
    # (~h^2, >= 1.9e-7) outweighs round-off (~1/h: 1.7e-8 at h = 1e-9, so ~2e-12), to 1e-3; the best one and the
    # symmetry are round-off: within the README's bounds
    assert fused["n_params"] == eager["n_params"] == HV_PARAMETERS
    close(eager["u_hv"], fused["u_hv"], 1e-12, "u^T H v")
    truncation = eager["steps"] >= 1e-5
    close(np.asarray(eager["errors"])[truncation], np.asarray(fused["errors"])[truncation], 1e-3, "H v vs differences")
    assert min(fused["errors"]) <= HV_ERROR_BOUND
    assert abs(fused["u_hv"] - fused["v_hu"]) <= HV_SYMMETRY_BOUND * abs(fused["u_hv"])


def same_7(ex, eager: list, fused: list) -> None:
    # float64: the audits' verdicts and the slip's location equal; hand vs autograd is round-off (0 at the staged
    # nodes in eager mode, which repeats autograd's arithmetic; a fused sum may add in another order): within the
    # README's bounds; training has no chaotic growth (see NINJA_TRAIN_BOUND): the losses to 1e-12
    for e, f in zip(eager, fused):
        for (title, a), b in zip(f["audits"].items(), e["audits"].values()):
            assert [(row.name, row.ok) for row in a.rows] == [(row.name, row.ok) for row in b.rows], title
            assert a.first_wrong == b.first_wrong, title
        slip = ex.slip_audit(f)
        assert slip.first_wrong == ex.SLIP and {row.name for row in slip.rows if not row.ok} == NINJA_SLIP_FAILS
        for who in ("hand", "autograd"):
            for split in ("train", "dev"):
                close(e[who][f"{split} loss"], f[who][f"{split} loss"], 1e-12, f"{who}: {split} loss")
    claims = ex.claims(fused)
    assert max(claims["exercise 1, hand vs autograd: max relative error over the nodes"]) <= NINJA_HAND_BOUND
    assert max(claims["exercises 2-3, hand vs autograd: max relative error"]) <= NINJA_HAND_BOUND
    assert max(claims["max |dlogit_maxes| / max |dlogits| (autograd; exactly 0 in exact arithmetic)"]) <= 1e-14
    assert max(claims["parameters after training, hand vs autograd: max relative difference"]) <= NINJA_TRAIN_BOUND


def same_8(ex, eager: list, fused: list) -> None:
    # float64 training: a 1-ulp change moves the losses by ~1e-15 after 3 epochs (2e-15 when these ops ran in
    # kernels): the accuracies and the all-0 pool windows equal; the audit's verdicts and the slip's location equal,
    # hand vs autograd within the README's bounds. In eager mode the audited forward and the model's give the same
    # loss to the bit (the same ops); fused, they may be scheduled into other kernels, so the gap is round-off: at
    # most 4 float64 epsilons of the loss
    ce, cf = ex.claims(eager), ex.claims(fused)
    for name in ("CNN final test accuracy", "softmax regression final test accuracy (same epochs, batches, optimizer)",
                 "fraction of the audited batch's pool windows all 0 after ReLU (a 4-way tie)"):
        assert cf[name] == ce[name], name
    for e, f in zip(eager, fused):
        for kind in ("audit", "slip"):
            a, b = f["cnn"][kind], e["cnn"][kind]
            assert [(row.name, row.ok) for row in a.rows] == [(row.name, row.ok) for row in b.rows], kind
        assert f["cnn"]["slip"].first_wrong == ex.SLIP == "conv"
        assert f["cnn"]["loss_gap"] <= 4 * np.finfo(np.float64).eps * float(f["cnn"]["audit"].loss.data)
    assert max(cf["audit, hand vs autograd: max relative error over the nodes"]) <= CNN_HAND_BOUND
    assert max(cf["audit, d conv_b (0 in exact arithmetic): max |hand - autograd|"]) <= CNN_ZERO_GRADIENT_BOUND


SAME_RESULTS = {"1_input_normalization.py": same_1, "2_batchnorm_speedup.py": same_2, "3_bn_test_time.py": same_3,
                "4_bn_noise.py": same_4, "5_softmax_regression.py": same_5, "6_hessian_vector.py": same_6,
                "7_backprop_ninja.py": same_7, "8_cnn_digits.py": same_8}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_example_gives_the_same_results_with_fused(script, tmp_path):
    ex, eager_text, eager, entered = quick_main(script, tmp_path)
    assert entered == 0, "without --fused, main computes eagerly"
    _, fused_text, fused, entered = quick_main(script, tmp_path, "--fused", "1")  # 1: every op in kernels
    assert entered == 1, "--fused: main computes under tg.fused()"
    assert words(fused_text) == words(eager_text)
    SAME_RESULTS[script](ex, eager, fused)
