"""tinygrad_bn: a small, exact reverse-mode autodiff on NumPy, for checking hand-derived gradients."""
from . import engine  # noqa: I001  (first: tensor.py and ops.py build on it)
from .engine import enable_grad, grad, is_grad_enabled, no_grad, scope
from .guards import AnomalyError, detect_anomaly
from .tensor import Tensor, manual_seed, maximum, ones, randn, tensor, zeros
from . import analytic, check, nn, optim, viz

__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "maximum", "manual_seed", "grad", "no_grad",
           "enable_grad", "is_grad_enabled", "scope",
           "detect_anomaly", "AnomalyError", "analytic", "check", "nn", "optim", "viz", "engine"]
