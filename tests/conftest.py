"""Shared test helpers: seeded inputs in float64, tight tolerances."""
import shutil

import numpy as np
import pytest

import tinygrad_bn as tg

# tests that render through Graphviz's dot program skip, saying so, on a machine without it
requires_dot = pytest.mark.skipif(shutil.which("dot") is None, reason=(
    "Graphviz's dot program is not installed (sudo apt-get install graphviz, brew install graphviz "
    "or conda install graphviz; bash run.sh installs it)"))

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


# ------------------------------------------------------------------ state that a failed call must not change

def both(*words: str) -> str:
    """A regex matching a message that contains every one of `words` (literally), in any order."""
    import re
    return "(?s)" + "".join(f"(?=.*{re.escape(w)})" for w in words)


class Same:
    """Compared by identity: a failed call must not swap a tensor's array (or graph) for another."""
    def __init__(self, obj):
        self.obj = obj


def snap(obj):
    """Everything a call could change: values, dtypes, arrays, graph, .grad, buffers, optimizer state.
    (Reads t._data, not t.data: watching must not hand arrays out, which changes what graphs check.)"""
    import copy
    if isinstance(obj, tg.Tensor):
        return {"data": obj._data.copy(), "array": Same(obj._data), "requires_grad": obj.requires_grad,
                "graph": Same(obj._ctx),  # (a test may plant a non-Tensor .grad past the setter: copied as it is)
                "grad": copy.deepcopy(obj.grad._data if isinstance(obj.grad, tg.Tensor) else obj.grad)}
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, tg.nn.Module):
        return {"training": [m.training for m in obj.modules()],
                **{f"parameter {k}": snap(p) for k, p in obj.named_parameters()},
                **{f"buffer {k}": snap(b) for k, b in obj.named_buffers()}}
    if isinstance(obj, tg.optim.Optimizer):
        hyper = ("lr", *getattr(obj, "hyper", ()))
        return {"hyper": {k: getattr(obj, k) for k in hyper}, "params": [snap(p) for p in obj.params],
                "state": copy.deepcopy(obj.state)}
    raise TypeError(f"cannot snapshot {type(obj).__name__}")


def assert_same(after, before, where: str = "") -> None:
    if isinstance(before, Same):
        assert after.obj is before.obj, f"{where}: replaced"
    elif isinstance(before, dict):
        assert after.keys() == before.keys(), where
        for k in before:
            assert_same(after[k], before[k], f"{where}.{k}")
    elif isinstance(before, (list, tuple)):
        assert len(after) == len(before), where
        for i, (a, b) in enumerate(zip(after, before)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(before, np.ndarray):
        assert isinstance(after, np.ndarray) and after.dtype == before.dtype and after.shape == before.shape, where
        np.testing.assert_array_equal(after, before, err_msg=where)
    else:
        assert after == before, where
