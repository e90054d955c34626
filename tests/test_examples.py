"""The course's claims, as short seeded runs of the examples (each example is also run whole, in
its --quick form, so every script and figure stays working)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the examples need the digits data set: pip install -e '.[examples]'")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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


def test_input_normalization_reaches_the_target_loss_in_fewer_steps():
    best = example("1_input_normalization.py").run(iterations=150, show_progress=False)
    steps = {name: example("1_input_normalization.py").steps_to(curve) for name, (_, curve) in best.items()}
    assert steps["normalized"] < steps["raw"]


@pytest.mark.parametrize("lr", [0.03, 0.1])
def test_batch_norm_reaches_the_target_accuracy_in_fewer_epochs_at_the_same_learning_rate(lr):
    results = example("2_batchnorm_speedup.py").run(epochs=6, learning_rates=(lr,), show_progress=False)
    with_bn, without = results[True, lr].epochs_to(0.9), results[False, lr].epochs_to(0.9)
    assert with_bn is not None and with_bn <= 4
    assert without is None or with_bn < without


def test_running_averages_serve_at_test_time_and_single_examples_equal_the_batch():
    r = example("3_bn_test_time.py").run(epochs=3, show_progress=False)
    assert r["single_vs_batched"] < 1e-12 and r["same_class"]  # float64: equal to round-off
    for (rm, rv), (pm, pv) in zip(r["running"], r["population"]):
        assert np.max(np.abs(rm - pm) / np.sqrt(pv)) < 0.25  # the EWA tracks the population statistics
        assert np.max(np.abs(rv / pv - 1)) < 0.25
    assert r["acc_running"] > 0.9 and abs(r["acc_running"] - r["acc_population"]) < 0.02


def test_batch_norm_noise_shrinks_as_the_mini_batch_grows():
    spread = example("4_bn_noise.py").run(draws=40, show_progress=False)
    values = [spread[m] for m in sorted(spread)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[0] / values[-1] > 5  # from m = 2 to m = 256


def test_softmax_regression_dz_equals_y_hat_minus_y_over_m_throughout_training():
    r = example("5_softmax_regression.py").run(epochs=2, show_progress=False)
    assert len(r["dz_rel_error"]) > 40 and max(r["dz_rel_error"]) <= 1e-12
    assert r["test_accuracy"][-1] > 0.9


def test_hessian_vector_product_through_batch_norm_matches_differences_of_the_gradient():
    r = example("6_hessian_vector.py").run()
    assert min(r["errors"]) < 1e-8
    assert abs(r["u_hv"] - r["v_hu"]) <= 1e-12 * abs(r["u_hv"])


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("[0-9]_*.py")))
def test_every_example_runs_and_saves_its_figure(script, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figure = tmp_path / script.replace(".py", ".png")
    assert figure.exists() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
