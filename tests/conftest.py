"""Shared test helpers: seeded inputs in float64, tight tolerances."""
import numpy as np
import pytest

import tinygrad_bn as tg

# float64 central differences with eps=1e-6 are good to ~1e-9 here; the tolerance keeps a wide margin
# below any real error (a wrong rule is off by O(1)) while staying far from the rounding noise.
GRAD_TOL = {"eps": 1e-6, "atol": 1e-7, "rtol": 1e-6}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def leaf(rng: np.random.Generator, shape: tuple, domain: str = "any", name: str | None = None) -> tg.Tensor:
    """A float64 leaf that requires grad, with values drawn from `domain`:
    'any' N(0, 1); 'pos' in [0.5, 2]; 'nonzero' |x| in [0.5, 2] with random signs."""
    x = rng.standard_normal(shape)
    if domain == "pos":
        x = rng.uniform(0.5, 2.0, shape)
    elif domain == "nonzero":
        x = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return tg.Tensor(np.asarray(x, np.float64), requires_grad=True, name=name)


def assert_close(actual, expected, rtol: float = 1e-12, atol: float = 0.0) -> None:
    a = actual.data if isinstance(actual, tg.Tensor) else np.asarray(actual)
    e = expected.data if isinstance(expected, tg.Tensor) else np.asarray(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
