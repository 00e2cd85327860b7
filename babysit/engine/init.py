"""Weight initializers: ``get_initializer(spec) -> init(shape, fan_in, rng, dtype)``.

Specs (the recipe's ``init`` value):

* ``"xavier"``: ``randn / sqrt(fan_in)`` (the lecture's "Xavier" for tanh nets),
* ``"he"``: ``randn * sqrt(2 / fan_in)`` (for ReLU nets),
* ``"small"``: ``0.01 * randn``,
* ``"zeros"``: all zeros (symmetric: what sanity checks should flag),
* ``{"normal": std}`` and ``{"small": std}``: ``std * randn``.

Draws are made in float64 and cast to ``dtype``, so a float32 training model and
the float64 gradient-check model built from the same seed hold the same weights
(up to rounding).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from babysit.errors import ModelError

NAMED = ("xavier", "he", "small", "zeros")
SCALED = ("normal", "small")
VALID_SPECS = "xavier, he, small, zeros, {normal: STD} or {small: STD}"


class Initializer:
    """``init(shape, fan_in, rng, dtype) -> ndarray``; ``scale(fan_in)`` is the std used."""

    def __init__(self, name: str, scale):
        self.name = name
        self._scale = scale

    def scale(self, fan_in: int) -> float:
        return float(self._scale(int(fan_in)))

    def __call__(self, shape, fan_in, rng, dtype=np.float32) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        if int(fan_in) <= 0:
            raise ModelError(f"init {self.name}: fan_in must be positive, got {fan_in}")
        std = self.scale(fan_in)
        if std == 0.0:
            return np.zeros(shape, dtype=dtype)
        return (rng.standard_normal(shape) * std).astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"Initializer({self.name})"


def _std(value, spec) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ModelError(f"init {spec!r}: the std must be a number, got {value!r}")
    std = float(value)
    if not math.isfinite(std) or std < 0:
        raise ModelError(f"init {spec!r}: the std must be a finite number >= 0, got {value!r}")
    return std


def get_initializer(spec) -> Initializer:
    """The initializer named by a recipe's ``init`` value (see module docstring)."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name == "xavier":
            return Initializer("xavier", lambda fan_in: 1.0 / math.sqrt(fan_in))
        if name == "he":
            return Initializer("he", lambda fan_in: math.sqrt(2.0 / fan_in))
        if name == "small":
            return Initializer("small", lambda fan_in: 0.01)
        if name == "zeros":
            return Initializer("zeros", lambda fan_in: 0.0)
    elif isinstance(spec, Mapping) and len(spec) == 1:
        (key, value), = spec.items()
        if key in SCALED:
            std = _std(value, dict(spec))
            return Initializer(f"{key}({std:g})", lambda fan_in: std)
    raise ModelError(f"unknown init {spec!r}; valid inits: {VALID_SPECS}")


__all__ = ["Initializer", "get_initializer"]
