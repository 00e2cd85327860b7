"""What babysit calls the pieces of a torch module: layer kinds, weights and kinks.

* :func:`kind_of_module`: a leaf module's babysit kind, what the activation
  statistics key on (``nn.ReLU -> relu``, ``nn.Linear -> affine``, ...).
  Modules without a babysit counterpart are their class name in lower case
  (``gelu``, ``layernorm``); custom ``autograd.Function`` calls are ``custom``.
* :func:`is_weight`: what the L2 term ``0.5 * reg * sum(W**2)`` covers: the
  parameters with two or more dimensions (Linear and Conv weights,
  embeddings), never biases or the gains of normalization modules.
* :data:`KINK_RULES`: for every torch function with a point of
  non-differentiability (ReLU family, clamps, abs, max/min, max pooling), the
  branch record of one call, computed from its arguments *before* the call (an
  in-place ReLU overwrites its input). Two records differ iff some input
  crossed a kink, as the engine's ``kink_state`` (DEVELOPING.md). They are
  taken by :class:`babysit.torch.passes.KinkRecorder` through a
  ``TorchFunctionMode``, so they cover functional calls in a custom
  ``forward`` too, not only modules.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Module classes with a babysit kind; subclasses inherit it (checked in order).
MODULE_KINDS = (
    (nn.Linear, "affine"), (nn.Bilinear, "affine"),
    (nn.modules.conv._ConvNd, "conv"),
    (nn.ReLU, "relu"), (nn.LeakyReLU, "leaky_relu"), (nn.PReLU, "prelu"), (nn.ELU, "elu"),
    (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"),
    (nn.modules.pooling._MaxPoolNd, "maxpool"),
    (nn.modules.batchnorm._BatchNorm, "batchnorm"),
    (nn.modules.dropout._DropoutNd, "dropout"),
    (nn.Flatten, "flatten"),
)
FUNCTION_KIND = "custom"
OUTPUT_KIND = "output"


def kind_of_module(module: nn.Module) -> str:
    """babysit's kind for a leaf module (class name in lower case when it has none)."""
    for cls, kind in MODULE_KINDS:
        if isinstance(module, cls):
            return kind
    return type(module).__name__.lower()


def is_norm(module: nn.Module) -> bool:
    """Normalization modules (BatchNorm, LayerNorm, GroupNorm, ...): their gains are not weights."""
    return isinstance(module, nn.modules.batchnorm._NormBase) or "Norm" in type(module).__name__


def is_weight(param: torch.Tensor, owner: nn.Module) -> bool:
    """A parameter the L2 term covers: two or more dimensions, not in a normalization module."""
    return param.dim() >= 2 and not is_norm(owner)


def is_dropout(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.dropout._DropoutNd)


# -- kinks -----------------------------------------------------------------------------


def _positive(args, kwargs):
    return args[0] > 0


def _threshold(args, kwargs):
    threshold = args[1] if len(args) > 1 else kwargs.get("threshold", 0.0)
    return args[0] > threshold


def _between(lo_name, hi_name, lo_default, hi_default):
    def rule(args, kwargs):
        x = args[0]
        lo = args[1] if len(args) > 1 else kwargs.get(lo_name, lo_default)
        hi = args[2] if len(args) > 2 else kwargs.get(hi_name, hi_default)
        sides = [x > lo if lo is not None else None, x < hi if hi is not None else None]
        return torch.stack([s for s in sides if s is not None]) if any(
            s is not None for s in sides) else torch.zeros(0, dtype=torch.bool)
    return rule


def _greater(args, kwargs):
    other = args[1] if len(args) > 1 else kwargs.get("other")
    return args[0] > other


def _arg(select):
    def rule(args, kwargs):
        x = args[0]
        dim = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("dim")
        if len(args) > 1 and isinstance(args[1], torch.Tensor):   # max(a, b): elementwise
            return x > args[1]
        if dim is None:
            return select(x.reshape(-1), 0)
        if isinstance(dim, (tuple, list)):                          # amax over several dims
            dims = [d % x.dim() for d in dim]
            keep = [d for d in range(x.dim()) if d not in dims]
            x = x.permute(*keep, *dims).reshape(*[x.shape[d] for d in keep], -1)
            dim = -1
        return select(x, dim)
    return rule


def _pool_indices(pool):
    def rule(args, kwargs):
        options = {key: value for key, value in kwargs.items() if key != "return_indices"}
        return pool(*args, **options, return_indices=True)[1]
    return rule


KINK_RULES = {
    "relu": _positive, "relu_": _positive, "leaky_relu": _positive, "leaky_relu_": _positive,
    "prelu": _positive, "rrelu": _positive, "rrelu_": _positive, "abs": _positive,
    "threshold": _threshold, "threshold_": _threshold,
    "hardtanh": _between("min_val", "max_val", -1.0, 1.0),
    "hardtanh_": _between("min_val", "max_val", -1.0, 1.0),
    "relu6": _between("min_val", "max_val", 0.0, 6.0),
    "clamp": _between("min", "max", None, None), "clamp_": _between("min", "max", None, None),
    "clip": _between("min", "max", None, None), "clip_": _between("min", "max", None, None),
    "clamp_min": _between("min", "max", None, None), "clamp_max": _between("max", "min", None, None),
    "maximum": _greater, "minimum": _greater, "fmax": _greater, "fmin": _greater,
    "max": _arg(torch.argmax), "amax": _arg(torch.argmax),
    "min": _arg(torch.argmin), "amin": _arg(torch.argmin),
    "max_pool1d": _pool_indices(F.max_pool1d), "max_pool2d": _pool_indices(F.max_pool2d),
    "max_pool3d": _pool_indices(F.max_pool3d),
    "adaptive_max_pool1d": _pool_indices(F.adaptive_max_pool1d),
    "adaptive_max_pool2d": _pool_indices(F.adaptive_max_pool2d),
    "adaptive_max_pool3d": _pool_indices(F.adaptive_max_pool3d),
}


def kink_rule(func):
    """The rule for a torch function (None when it is smooth or unknown)."""
    name = getattr(func, "__name__", None)
    rule = KINK_RULES.get(name)
    if rule is None and name == "elu":   # ELU is smooth only for alpha = 1 (as the engine's)
        return _elu_rule
    return rule


def _elu_rule(args, kwargs):
    alpha = args[1] if len(args) > 1 else kwargs.get("alpha", 1.0)
    return args[0] > 0 if alpha != 1.0 else None


__all__ = ["kind_of_module", "is_weight", "is_norm", "is_dropout", "kink_rule", "KINK_RULES",
           "FUNCTION_KIND", "OUTPUT_KIND"]
