"""Issue 11: no silently wrong result. Each test here failed on the main it was written against
(a wrong value, a NaN, a half-updated state, or no error) and names the item it pins."""
from __future__ import annotations

import numpy as np
import pytest

import tinygrad_bn as tg
import tinygrad_bn.nn.functional as F
from tinygrad_bn import Tensor


# ------------------------------------------------------------------ float32 normalization of a constant row

@pytest.mark.parametrize("value", [1000.1, -3.7e4, 0.3])
def test_float32_norms_of_a_constant_row_are_exactly_zero_as_pytorch(value):
    """The mean is accumulated in float64 (PyTorch's CPU kernels do), so a constant row has
    mu == its value, xc == 0 and x_hat == 0; a float32 mean was off by an ulp of the value,
    and x_hat = ulp / sqrt(eps) came out as large as 0.3."""
    x = np.full((4, 7), value, np.float32)
    assert np.array_equal(F.layer_norm(Tensor(x), 7).data, np.zeros_like(x))
    assert np.array_equal(F.batch_norm(Tensor(x), None, None, training=True).data, np.zeros_like(x))


def test_float32_batch_norm_matches_a_float64_evaluation_to_float32_round_off(rng):
    x = (rng.standard_normal((64, 5)) * 0.01 + 1e3).astype(np.float32)  # a small spread far from 0
    got = F.batch_norm(Tensor(x), None, None, training=True).data
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    # what is left: mu rounded to float32 moves xc by up to half an ulp of 1e3, so x_hat by that / std
    # (0.0029 here; a float32-accumulated mean was 0.0085 off)
    bound = np.spacing(np.float32(1e3)) / 2 / np.sqrt(x64.var(0) + 1e-5) * 1.05
    assert got.dtype == np.float32
    assert np.all(np.abs(got - want) <= bound + 1e-6)
