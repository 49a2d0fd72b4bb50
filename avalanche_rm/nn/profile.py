"""The digital work a network does outside its crossbar layers, counted once per input shape.

Norms, nonlinearities, residual adds, spiking-neuron updates, pooling,
embeddings and any matmul left unconverted all run in the digital unit. The
first forward pass with a given input shape runs under a dispatch mode that
counts every ATen operation outside hybrid layers (whose own work the layers
charge); the counts per sample are cached and charged on every later pass.
The count is structural: it assumes the network runs the same operations for
every input of that shape (no data-dependent control flow).
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_inside = threading.local()

#: one INT8 add or compare per output element
ADDS = frozenset({
    "add", "sub", "rsub", "neg", "relu", "threshold", "gt", "lt", "ge", "le", "eq", "ne", "maximum", "minimum",
    "clamp", "clamp_min", "clamp_max", "abs", "where", "sign", "hardtanh", "masked_fill", "logical_and", "logical_or",
    "logical_not", "bitwise_and", "bitwise_or", "relu6", "round", "floor", "ceil",
})
#: one INT8 multiply per output element
MULS = frozenset({"mul", "square", "leaky_relu"})
#: one INT8 multiply and one add per output element
MULADDS = frozenset({"addcmul", "lerp", "hardsigmoid", "hardswish"})
#: a transcendental (exp, log, division, square root, activation functions) per output element
TRANSCENDENTAL = frozenset({
    "exp", "log", "sqrt", "rsqrt", "div", "reciprocal", "pow", "tanh", "sigmoid", "gelu", "silu", "elu", "selu",
    "softplus", "_softmax", "_log_softmax", "erf", "sin", "cos", "logsumexp", "log1p", "expm1", "mish", "fmod",
    "remainder",
})
#: reductions: operations per input element, by kind (accumulating sums at INT32, maxima by INT8 compares)
REDUCTIONS = {
    **dict.fromkeys(("sum", "mean", "cumsum", "avg_pool2d", "avg_pool1d", "adaptive_avg_pool2d",
                     "_adaptive_avg_pool2d"), {"int32_adds": 1.0}),
    **dict.fromkeys(("amax", "amin", "max", "min", "max_pool2d_with_indices", "max_pool2d", "max_pool1d"),
                    {"int8_adds": 1.0}),
    **dict.fromkeys(("var", "std", "norm", "linalg_vector_norm"), {"int32_adds": 1.0, "int8_muls": 1.0}),
    "prod": {"int8_muls": 1.0},
}
#: normalisation layers, operations per element by kind: mean and variance sums (INT32), centring, square,
#: normalise, scale and shift, and one reciprocal square root
_FULL_NORM = {"int32_adds": 2.0, "int8_adds": 2.0, "int8_muls": 3.0, "transcendentals": 1.0}
NORMS = {"native_layer_norm": _FULL_NORM, "native_group_norm": _FULL_NORM, "_native_batch_norm_legit": _FULL_NORM,
         "native_batch_norm": {"int8_muls": 1.0, "int8_adds": 1.0},
         "_native_batch_norm_legit_no_training": {"int8_muls": 1.0, "int8_adds": 1.0}}
MATMULS = frozenset({"mm", "addmm", "bmm", "baddbmm", "matmul", "convolution", "linear"})
#: data movement and bookkeeping: no arithmetic
MOVES = frozenset({
    "view", "reshape", "_unsafe_view", "t", "transpose", "permute", "expand", "clone", "copy_", "_to_copy", "cat",
    "stack", "slice", "select", "unsqueeze", "squeeze", "contiguous", "empty", "empty_like", "empty_strided",
    "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "fill_", "detach", "alias", "lift_fresh",
    "lift_fresh_copy", "new_zeros", "new_empty", "new_ones", "new_full", "arange", "index_select", "gather",
    "split", "split_with_sizes", "chunk", "unbind", "as_strided", "narrow", "flatten", "unfold", "constant_pad_nd",
    "scalar_tensor", "lift", "_local_scalar_dense", "repeat", "repeat_interleave", "index", "index_put_", "roll",
    "flip", "masked_select", "nonzero", "randn", "rand", "randint", "randperm", "bernoulli", "normal", "uniform_",
    "normal_", "item", "is_nonzero", "equal", "dropout", "native_dropout", "sort", "topk", "argmax", "argmin",
    "_reshape_alias", "expand_copy", "view_copy", "zero_", "set_", "resize_",
})


def enter_layer() -> None:
    """A priced layer starts: its operations are charged by the layer, not the profile."""
    _inside.depth = getattr(_inside, "depth", 0) + 1


def exit_layer() -> None:
    _inside.depth = max(getattr(_inside, "depth", 0) - 1, 0)


@contextlib.contextmanager
def hybrid_layer_scope():
    """Marks a hybrid layer's own forward (see :func:`enter_layer`)."""
    enter_layer()
    try:
        yield
    finally:
        exit_layer()


def _numel(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (tuple, list)):
        return sum(_numel(v) for v in x)
    return 0


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


@dataclass
class DigitalProfile:
    """Digital work of one forward pass, per sample: element-wise operations by kind (``int8_adds``,
    ``int32_adds``, ``int8_muls``, ``transcendentals``), MACs of unconverted matmuls, values read."""

    ops: dict[str, float] = field(default_factory=dict)
    macs: float = 0.0
    weight_values: float = 0.0       # operands of unconverted matmuls (weights), read once per sample
    lookup_values: float = 0.0       # embedding rows read
    unclassified: dict[str, int] = field(default_factory=dict)

    def add(self, kinds: dict[str, float], n: float) -> None:
        for k, v in kinds.items():
            self.ops[k] = self.ops.get(k, 0.0) + v * n

    @property
    def simple_ops(self) -> float:
        """Adds, compares and multiplies."""
        return sum(v for k, v in self.ops.items() if k != "transcendentals")

    @property
    def transcendental_ops(self) -> float:
        return self.ops.get("transcendentals", 0.0)


class DigitalOpCounter(TorchDispatchMode):
    """Counts the arithmetic of ATen operations run outside hybrid layers."""

    def __init__(self) -> None:
        super().__init__()
        self.p = DigitalProfile()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(_inside, "depth", 0):
            return out
        name = func.overloadpacket.__name__
        p = self.p
        if name in MOVES or name.endswith("_backward"):
            return out
        if name in MATMULS:
            first = _first_tensor(out)
            if name == "convolution":
                w = args[1]
                p.macs += (first.numel() if first is not None else 0) * (w.numel() // w.shape[0])
                p.weight_values += w.numel()
            else:
                a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
                p.macs += (first.numel() if first is not None else 0) * a.shape[-1]
                p.weight_values += b.numel()
        elif name == "embedding":
            p.lookup_values += _numel(out)
        elif name in NORMS:
            p.add(NORMS[name], _numel(args[0]))
        elif name in REDUCTIONS:
            p.add(REDUCTIONS[name], _numel(args[0]))
        elif name in TRANSCENDENTAL:
            p.add({"transcendentals": 1.0}, _numel(_first_tensor(out)))
        elif name in MULS:
            p.add({"int8_muls": 1.0}, _numel(_first_tensor(out)))
        elif name in MULADDS:
            p.add({"int8_muls": 1.0, "int8_adds": 1.0}, _numel(_first_tensor(out)))
        else:
            p.add({"int8_adds": 1.0}, _numel(_first_tensor(out)))
            if name not in ADDS:
                p.unclassified[name] = p.unclassified.get(name, 0) + 1
        return out


def batch_size(args: tuple) -> int:
    first = _first_tensor(args)
    return int(first.shape[0]) if first is not None and first.dim() > 0 else 1


def profile_key(args: tuple, kwargs: dict, training: bool) -> tuple:
    """Cache key of a forward pass: input shapes without the batch dimension, dtypes, and the mode."""
    def sig(x):
        if isinstance(x, torch.Tensor):
            return ("T", tuple(x.shape[1:]), str(x.dtype))
        if isinstance(x, (tuple, list)):
            return tuple(sig(v) for v in x)
        return repr(x) if isinstance(x, (int, float, str, bool, type(None))) else type(x).__name__
    return (sig(args), tuple(sorted((k, sig(v)) for k, v in kwargs.items())), training)


def per_sample(profile: DigitalProfile, n: int) -> DigitalProfile:
    """Work per sample of a pass over ``n`` samples; weights are read once per sample, so they stay whole."""
    k = 1.0 / max(n, 1)
    return DigitalProfile({kind: v * k for kind, v in profile.ops.items()}, profile.macs * k, profile.weight_values,
                          profile.lookup_values * k, dict(profile.unclassified))
