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
from collections.abc import Mapping

import numpy as np

from babysit.errors import ModelError
from babysit.validation import POSITIVE

# The registry the recipe schema uses too (babysit.recipes.schema derives its
# init choices from it). Named inits: {name: fan_in -> std}.
NAMED = {
    "xavier": lambda fan_in: 1.0 / math.sqrt(fan_in),
    "he": lambda fan_in: math.sqrt(2.0 / fan_in),
    "small": lambda fan_in: 0.01,
    "zeros": lambda fan_in: 0.0,
}
# Inits written {name: std}, and the rule for the std: positive, since a
# zero std is spelt "zeros" (one spelling per meaning, and {normal: 0} is
# more often a slip than a wish for symmetric weights).
WITH_STD = ("normal", "small")
STD_RULE = POSITIVE
VALID_SPECS = ", ".join(NAMED) + ", " + " or ".join(f"{{{name}: STD}}" for name in WITH_STD)


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


def get_initializer(spec) -> Initializer:
    """The initializer named by a recipe's ``init`` value (see module docstring)."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in NAMED:
            return Initializer(name, NAMED[name])
    elif isinstance(spec, Mapping) and len(spec) == 1:
        (key, value), = spec.items()
        if key in WITH_STD:
            std = float(STD_RULE.check(value, f"init {dict(spec)!r}: the std", ModelError))
            return Initializer(f"{key}({std:g})", lambda fan_in: std)
    raise ModelError(f"unknown init {spec!r}; valid inits: {VALID_SPECS}")


__all__ = ["NAMED", "STD_RULE", "WITH_STD", "Initializer", "get_initializer"]
