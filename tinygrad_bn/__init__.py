"""tinygrad_bn: a small, exact reverse-mode autodiff on NumPy, for checking hand-derived gradients."""
__version__ = "0.3.0"  # the one place the version is written (pyproject.toml reads it from here)

from . import analytic, check, engine, nn, optim, viz
from .creation import (
    arange,
    eye,
    from_numpy,
    full,
    manual_seed,
    multinomial,
    ones,
    ones_like,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .engine import AxisError, Function, ShapeError, enable_grad, grad, is_grad_enabled, no_grad, scope
from .fusion import fused
from .guards import AnomalyError, detect_anomaly
from .serialize import load, save
from .tensor import Tensor, cat, maximum, minimum, stack, where

__all__ = ["Tensor", "Function", "tensor", "from_numpy", "zeros", "ones", "randn", "full", "eye", "arange",
           "zeros_like", "ones_like", "randint", "multinomial", "maximum", "minimum", "where", "cat", "stack",
           "manual_seed", "grad", "no_grad", "enable_grad", "is_grad_enabled", "scope", "ShapeError", "AxisError",
           "detect_anomaly", "AnomalyError", "analytic", "check", "nn", "optim", "viz", "engine", "save", "load",
           "fused", "__version__"]
