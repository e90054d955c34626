"""Modules: they hold parameters and state (running statistics) and call nn.functional."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from ..creation import default_rng
from ..engine import ShapeError, no_grad, scope
from ..tensor import DEFAULT_FLOAT, Tensor
from . import functional as F

_calls = threading.local()  # depth of nested module calls in this thread


class Parameter(Tensor):
    """A Tensor a Module trains: requires_grad=True. `data` may be an ndarray or a Tensor."""
    def __init__(self, data: Any, requires_grad: bool = True):
        super().__init__(np.asarray(data._data) if isinstance(data, Tensor) else data, requires_grad=requires_grad)


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Parameters are the attributes that are Parameters, submodules the attributes that are
    Modules (in assignment order), buffers the names given to register_buffer. Calling a module
    runs forward() inside a scope named after its attribute path (e.g. "layers.1.bn")."""
    training: bool = True
    _path: str = ""
    _buffer_names: list[str]  # set by register_buffer

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(_calls, "depth", 0)
        if depth == 0:  # an outermost call names every module (and unnamed parameter) by its path
            for path, m in self.named_modules():
                m._path = path or type(self).__name__
                for k, v in vars(m).items():
                    if isinstance(v, Parameter) and v.name is None:
                        v.name = f"{path}.{k}" if path else k
        _calls.depth = depth + 1
        try:
            with scope(self._path):
                return self.forward(*args, **kwargs)
        finally:
            _calls.depth = depth

    def register_buffer(self, name: str, value: Tensor | None) -> None:
        """State saved in state_dict but not trained (running statistics)."""
        self.__dict__.setdefault("_buffer_names", [])
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        setattr(self, name, value)

    # ------------------------------------------------------------------------- traversal
    def _children(self) -> Iterator[tuple[str, Module]]:
        return ((k, v) for k, v in vars(self).items() if isinstance(v, Module))

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for path, m in self.named_modules():
            for k, v in vars(m).items():
                if isinstance(v, Parameter) and id(v) not in seen:
                    seen.add(id(v))
                    yield (f"{path}.{k}" if path else k), v

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        for path, m in self.named_modules():
            for k in vars(m).get("_buffer_names", []):
                b = getattr(m, k)
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    yield (f"{path}.{k}" if path else k), b

    def buffers(self) -> list[Tensor]:
        return [b for _, b in self.named_buffers()]

    # ------------------------------------------------------------------------- state
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, dtype: Any) -> Module:
        """Cast parameters and floating buffers to `dtype` in place (integer buffers stay)."""
        dtype = np.dtype(dtype)
        # checked before anything is cast: parameters require grad, and only floating tensors can (PyTorch's
        # Module.to raises TypeError for integer and bool dtypes; complex too here, which has no autograd)
        if dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: only floating dtypes are accepted, got {dtype}; "
                            "use e.g. .to(np.float64), or cast a copy of the state_dict to other dtypes")
        for t in [*self.parameters(), *self.buffers()]:
            if t._data.dtype.kind == "f" and t._data.dtype != dtype:  # (already so: untouched, a graph stays valid)
                t._replace(t._data.astype(dtype))
                t.grad = None if t.grad is None else Tensor._wrap(t.grad._data.astype(dtype))
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def _state(self) -> dict[str, Tensor]:
        """PyTorch's order: each module's parameters, then its buffers, then its children."""
        out: dict[str, Tensor] = {}
        for path, m in self.named_modules():
            pre = f"{path}." if path else ""
            out.update({pre + k: v for k, v in vars(m).items() if isinstance(v, Parameter)})
            out.update({pre + k: getattr(m, k) for k in vars(m).get("_buffer_names", []) if getattr(m, k) is not None})
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """name -> a copy of the array (parameters and buffers, PyTorch-style names)."""
        return {k: v._data.copy() for k, v in self._state().items()}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (or Tensors) in, cast to each entry's dtype. Missing or unexpected names
        (when strict) and shape mismatches are an error naming them, and nothing is changed."""
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict expects a dict name -> array, got {type(state).__name__}")
        own = self._state()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        values = {k: np.asarray(v._data if isinstance(v, Tensor) else v) for k, v in state.items() if k in own}
        problems = [f"{k}: expected shape {own[k].shape}, got {v.shape}" for k, v in values.items()
                    if v.shape != own[k].shape]
        problems += [f"{k}: expected numbers, got dtype {v.dtype}" for k, v in values.items()
                     if v.dtype.kind not in "biuf"]
        if strict:
            problems += [f"missing key {k!r}" for k in missing] + [f"unexpected key {k!r}" for k in unexpected]
        if problems:
            raise RuntimeError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        cast = {}
        for k, v in values.items():  # cast everything first, so a value that cannot be cast changes nothing
            try:
                cast[k] = v.astype(own[k]._data.dtype, copy=True)
            except (ValueError, TypeError) as e:
                raise RuntimeError(f"load_state_dict for {type(self).__name__}: {k}: cannot cast {v.dtype} to "
                                   f"{own[k]._data.dtype} ({e})") from None
        for k, v in cast.items():
            own[k]._replace(v)
        return IncompatibleKeys(missing, unexpected)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = "".join(f"\n  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._children())
        return f"{type(self).__name__}({self.extra_repr()}{children}{chr(10) if children else ''})"


# ----------------------------------------------------------------------------------- layers

class Linear(Module):
    """y = x W^T + b, W: (out_features, in_features). PyTorch's default initialization:
    W and b ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5))."""
    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: Any = DEFAULT_FLOAT,
                 rng: np.random.Generator | None = None):
        # NumPy integers are accepted as PyTorch accepts them, and stored as Python ints
        in_features = F._size("Linear", "in_features", in_features)
        out_features = F._size("Linear", "out_features", out_features)
        rng = rng or default_rng()
        bound = 1 / np.sqrt(in_features) if in_features > 0 else 0.0
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_features).astype(dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """F.conv2d with a weight (out_channels, in_channels, KH, KW) and a bias (out_channels,). PyTorch's
    default initialization: both ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels * KH * KW
    (kaiming_uniform with a = sqrt(5))."""
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, bias: bool = True,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        self.in_channels = F._size("Conv2d", "in_channels", in_channels)
        self.out_channels = F._size("Conv2d", "out_channels", out_channels)
        self.kernel_size = F._pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = F._pair("Conv2d", "stride", stride, 1)
        self.padding = F._pair("Conv2d", "padding", padding, 0)
        rng = rng or default_rng()
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1 / np.sqrt(fan_in) if fan_in > 0 else 0.0
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, self.out_channels).astype(dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{'' if self.bias is not None else ', bias=False'}")


class _NoParameters(Module):
    """A module without parameters. It takes `dtype=` as every built-in module does, so models are
    built alike; with nothing to cast, its output keeps its input's dtype."""
    def __init__(self, dtype: Any = None):
        _check_dtype(type(self).__name__, dtype)


def _check_dtype(module: str, dtype: Any) -> None:
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise TypeError(f"{module}: dtype must be a floating dtype, got {np.dtype(dtype)}")


class MaxPool2d(_NoParameters):
    """F.max_pool2d as a module; stride defaults to kernel_size. No parameters."""
    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 dtype: Any = None):
        super().__init__(dtype)
        F._pair("MaxPool2d", "kernel_size", kernel_size, 1)  # checked at once (PyTorch waits for the first call)
        if stride is not None:
            F._pair("MaxPool2d", "stride", stride, 1)
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class ReLU(_NoParameters):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Dropout(_NoParameters):
    """Training: zero each element with probability p and scale the rest by 1/(1 - p), so the
    expected output is the input (inverted dropout); eval: the identity."""
    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None, dtype: Any = None):
        super().__init__(dtype)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)):
            raise TypeError(f"Dropout: p must be a number in [0, 1], got {type(p).__name__} {p!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p, self.rng = p, rng

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        keep = (self.rng or default_rng()).random(x.shape) >= self.p
        return x * Tensor((keep / (1 - self.p)).astype(x.dtype))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Sequential(Module):
    """Calls its modules in order; their names are "0", "1", ..."""
    def __init__(self, *modules: Module):
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __getitem__(self, i: int | slice) -> Module:
        modules = [m for _, m in self._children()]
        return Sequential(*modules[i]) if isinstance(i, slice) else modules[i]

    def __len__(self) -> int:
        return len(list(self._children()))

    def forward(self, x: Any) -> Any:
        for _, m in self._children():
            x = m(x)
        return x


class _BatchNorm(Module):
    """Batch norm over channel axis 1 (docs/course.md sections 2 and 5), PyTorch's semantics: training mode
    normalizes with batch statistics and updates the running ones (momentum=None: a cumulative
    average, 1/num_batches_tracked); eval mode uses the running ones; without
    track_running_stats both modes use batch statistics."""
    ranks: tuple[int, ...] = ()
    running_mean: Tensor | None  # buffers: None without track_running_stats
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype: Any = DEFAULT_FLOAT):
        num_features = F._size(type(self).__name__, "num_features", num_features)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None    # gamma
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None     # beta
        track = track_running_stats
        self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype)) if track else None)
        self.register_buffer("running_var", Tensor(np.ones(num_features, dtype)) if track else None)
        self.register_buffer("num_batches_tracked", Tensor(np.array(0, np.int64)) if track else None)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: expected a Tensor, got {type(x).__name__} "
                            "(wrap arrays with tg.Tensor)")
        if x.ndim not in self.ranks or x.shape[1] != self.num_features:
            want = " or ".join(f"{r}-D" for r in self.ranks)
            raise ShapeError(f"{type(self).__name__}({self.num_features}) got input {x.shape}: expected {want} "
                             f"input with {self.num_features} channels in axis 1")
        use_batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        count = self.num_batches_tracked
        if update and count is None:
            raise RuntimeError(f"{type(self).__name__}: num_batches_tracked is None but track_running_stats=True; "
                               "give it a Tensor again, or construct the layer with track_running_stats=False")
        momentum = self.momentum
        if momentum is None:  # a cumulative moving average over all batches so far (used only to update)
            momentum = 1.0 / (int(count._data) + 1) if count is not None else 0.0
        y = F.batch_norm(x, self.running_mean if update or not use_batch_stats else None,
                         self.running_var if update or not use_batch_stats else None, self.weight, self.bias,
                         training=use_batch_stats, momentum=momentum, eps=self.eps)
        if update:  # only after batch_norm succeeded: an error leaves the state as it was
            # writable_data: a graph reading the counter holds its array read-only; a write into it would fail
            # here, after batch_norm updated the running statistics (that graph then refuses to backward)
            assert count is not None  # (checked above)
            count.writable_data()[...] += 1
        return y

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            mean, var, count = self.running_mean, self.running_var, self.num_batches_tracked
            if mean is None or var is None or count is None:
                raise RuntimeError(f"{type(self).__name__}.reset_running_stats: a running statistic is None but "
                                   "track_running_stats=True; give it a Tensor again")
            with no_grad():
                mean.writable_data()[...] = 0
                var.writable_data()[...] = 1
                count._replace(np.array(0, np.int64))

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Input (N, C) or (N, C, L); statistics per channel over N (and L)."""
    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Input (N, C, H, W); statistics per channel over N, H and W."""
    ranks = (4,)


class LayerNorm(Module):
    """Normalize each example over its trailing `normalized_shape` axes; weight 1, bias 0 initially."""
    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 dtype: Any = DEFAULT_FLOAT):
        self.normalized_shape = F._shape("LayerNorm", "normalized_shape", normalized_shape)
        self.eps = eps
        self.weight = Parameter(np.ones(self.normalized_shape, dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class GroupNorm(Module):
    """F.group_norm: each example's channels normalized in num_groups groups of num_channels / num_groups
    (statistics over a group's channels and the trailing axes); weight 1 and bias 0, shape (C,), initially."""
    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype: Any = DEFAULT_FLOAT):
        self.num_groups = F._size("GroupNorm", "num_groups", num_groups)
        self.num_channels = F._size("GroupNorm", "num_channels", num_channels)
        if self.num_groups == 0 or self.num_channels % self.num_groups:  # PyTorch's ValueError, at once
            raise ValueError(f"GroupNorm: num_channels={self.num_channels} must be divisible by "
                             f"num_groups={self.num_groups}")
        self.eps, self.affine = eps, affine
        self.weight = Parameter(np.ones(self.num_channels, dtype)) if affine else None    # gamma
        self.bias = Parameter(np.zeros(self.num_channels, dtype)) if affine else None     # beta

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class Embedding(Module):
    """A lookup table, F.embedding: row i of weight (num_embeddings, embedding_dim) for index i.
    PyTorch's initialization: weight ~ N(0, 1)."""
    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = DEFAULT_FLOAT,
                 rng: np.random.Generator | None = None):
        self.num_embeddings = F._size("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = F._size("Embedding", "embedding_dim", embedding_dim)
        rng = rng or default_rng()
        self.weight = Parameter(rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype))

    def forward(self, indices: Any) -> Tensor:
        return F.embedding(indices, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class CrossEntropyLoss(Module):
    """F.cross_entropy as a module: loss(logits, target). `weight` (C,), if given, is a buffer (state_dict
    key "weight"), as in PyTorch, stored in `dtype` if given; it is used in the logits' dtype."""
    weight: Tensor | None  # a buffer

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, dtype: Any = None):
        _check_dtype("CrossEntropyLoss", dtype)
        if isinstance(weight, str):  # PyTorch's signature: weight comes first, reduction by keyword
            raise TypeError(f"CrossEntropyLoss: weight must be a (C,) array of class weights, got the string "
                            f"{weight!r}; pass reduction={weight!r} by keyword")
        F._check_reduction("CrossEntropyLoss", reduction)  # at once (PyTorch only checks it on the first call)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.register_buffer("weight", None if weight is None else Tensor(
            np.array(weight._data if isinstance(weight, Tensor) else weight, dtype)))

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(logits, target, None if self.weight is None else self.weight._data, self.ignore_index,
                               self.reduction, self.label_smoothing)

    def extra_repr(self) -> str:
        return ", ".join(s for s in (f"ignore_index={self.ignore_index}" if self.ignore_index != -100 else "",
                                     f"reduction={self.reduction!r}" if self.reduction != "mean" else "",
                                     f"label_smoothing={self.label_smoothing}" if self.label_smoothing else "") if s)


class Tanh(_NoParameters):
    """tanh element-wise, any shape (integer input gives float32)."""
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(_NoParameters):
    """1 / (1 + exp(-x)) element-wise, any shape (integer input gives float32)."""
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Flatten(_NoParameters):
    """Merge axes start_axis..end_axis into one: (N, C, H, W) -> (N, C*H*W) by default (PyTorch's
    start_dim=1, so the batch axis stays)."""
    def __init__(self, start_axis: int = 1, end_axis: int = -1, dtype: Any = None):
        super().__init__(dtype)
        self.start_axis, self.end_axis = start_axis, end_axis

    def forward(self, x: Tensor) -> Tensor:
        return x._merge_axes(self.start_axis, self.end_axis, "Flatten")  # Tensor.flatten, its errors named Flatten

    def extra_repr(self) -> str:
        return f"start_axis={self.start_axis}, end_axis={self.end_axis}"


class MSELoss(_NoParameters):
    """F.mse_loss as a module: loss(input, target), reduction "mean" | "sum" | "none"."""
    def __init__(self, reduction: str = "mean", dtype: Any = None):
        super().__init__(dtype)
        F._check_reduction("MSELoss", reduction)  # at once (PyTorch only checks it on the first call)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.mse_loss(input, target, self.reduction)


__all__ = ["Module", "Parameter", "Linear", "ReLU", "Dropout", "Sequential", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
           "GroupNorm", "Embedding",
           "CrossEntropyLoss", "Tanh", "Sigmoid", "Flatten", "MSELoss", "Conv2d", "MaxPool2d", "functional"]
functional = F
