"""What every engine layer shares: the option table contract, EngineLayer, shape helpers.

Every engine layer class declares its options once, as a table
``OPTIONS = {name: (default, Rule)}`` (rules from :mod:`babysit.validation`,
``REQUIRED`` for "no default"). That table is the whole truth about the
options: the constructor checks its arguments with it, ``inspect.signature``
shows it, and the recipe schema (``babysit.recipes.schema.LAYERS``) is
derived from it. Options are given by keyword, or by position in the table's
order (``Affine(10) == Affine(out=10)``); each resolved option is also an
attribute of the same name. Options of non-integer rules are floats.

An unknown or missing option raises TypeError (as Python does for a bad
keyword argument), a bad value ValueError; both messages name the layer kind
and the option (``"affine: out must be a positive integer, got 0"``). The
model builder turns both into ModelError.
"""

from __future__ import annotations

import inspect
import math
import sys

import numpy as np

from babysit.engine.base import Layer
from babysit.validation import REQUIRED, resolve_options, size_text


def options_signature(table) -> inspect.Signature:
    """The Python signature an option table stands for (defaults included)."""
    return inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=inspect.Parameter.empty if default is REQUIRED else default)
        for name, (default, _) in table.items()])


class EngineLayer(Layer):
    """Base of the engine's layers: options from ``OPTIONS``, ``repr``, input-gradient skipping.

    ``needs_input_grad``: when the model sets it to False (on its first layer,
    during training steps, where nobody reads dLoss/dX), ``backward`` still
    fills ``grads`` but skips computing ``dx`` and returns None. Only layers
    whose ``dx`` costs a matrix product (affine, conv, maxout) act on it;
    PyTorch skips the same work for inputs that do not require grad.
    """

    OPTIONS: dict = {}
    needs_input_grad = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__signature__ = options_signature(cls.OPTIONS)

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.options = self._resolve(self._by_name(args, kwargs))
        for name, value in self.options.items():
            setattr(self, name, value)

    def _by_name(self, args, kwargs) -> dict:
        """Positional options named in the table's order, merged with the keyword ones."""
        names = list(self.OPTIONS)
        if len(args) > len(names):
            raise TypeError(f"{self.kind} takes at most {len(names)} options by position "
                            f"({', '.join(names) or 'none'}), got {len(args)}")
        given = dict(zip(names, args))
        for name in kwargs:
            if name in given:
                raise TypeError(f"{self.kind}: option {name!r} given both by position and by name")
        given.update(kwargs)
        return given

    def _resolve(self, given: dict) -> dict:
        """The checked options in table order, defaults filled in; non-integer ones as floats."""
        options = resolve_options(given, self.OPTIONS, self.kind, ValueError, key_error=TypeError)
        for name, (_, rule) in self.OPTIONS.items():
            if not rule.integer and isinstance(options[name], int):
                options[name] = float(options[name])
        return options

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "options", {}).items())
        return f"{type(self).__name__}({args})"


def per_example(shape) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def image_shape(kind: str, input_shape) -> tuple[int, int, int]:
    """``(C, H, W)``, or ValueError naming ``kind`` for inputs that are not images."""
    shape = per_example(input_shape)
    if len(shape) != 3:
        raise ValueError(f"{kind} needs image input (C, H, W), got per-example shape {shape}")
    return shape


def channel_shape(kind: str, input_shape) -> tuple[int, ...]:
    """Broadcast shape of a per-feature / per-channel parameter: ``(1, C)`` or ``(1, C, 1, 1)``."""
    shape = per_example(input_shape)
    if not shape:
        raise ValueError(f"{kind} needs at least one feature axis, got per-example shape ()")
    return (1, shape[0]) + (1,) * (len(shape) - 1)


def make_weight(init, shape, fan_in, rng, dtype) -> np.ndarray:
    """``init(shape, fan_in, rng, dtype)`` as a C-contiguous array of ``dtype``.

    A shape too large to allocate (``out: 10**30``, or more than the memory)
    is a ValueError saying so, rather than NumPy's "Maximum allowed dimension
    exceeded" (the builder adds the layer's name).
    """
    shape = tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    too_large = ValueError(f"weights of shape {shape} would need {size_text(nbytes)} of memory: "
                           f"too large (is the layer's size what you meant?)")
    if nbytes > sys.maxsize:  # more than NumPy can describe, let alone allocate
        raise too_large
    try:
        return np.ascontiguousarray(init(shape, int(fan_in), rng, dtype), dtype=dtype)
    except MemoryError:
        raise too_large from None


__all__ = ["EngineLayer", "options_signature", "per_example", "image_shape", "channel_shape",
           "make_weight"]
