"""Plumbing every diagnosis shares: the data and the model it looks at, and seeds.

Every command builds its model with ``np.random.default_rng(seed)`` so that, for
one seed, all commands see the same initial weights. Any other randomness (batch
order, example subsets, probes) comes from ``stream(seed, purpose)``, a separate
generator per purpose, so adding a draw in one place never shifts another.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from babysit.diagnostics.result import Result

# ``np.random.default_rng([seed, k])``: one fixed k per purpose (never reuse a k
# for something else, or old JSON results stop reproducing).
STREAMS = {
    "batches": 1,      # order of training mini-batches
    "subset": 2,       # which examples form an evaluation batch / datapoints
    "gradcheck": 3,    # which parameter entries a gradient check samples
    "projection": 4,   # random inputs and projections for standalone layers
}


def stream(seed: int, purpose: str) -> np.random.Generator:
    """The generator for one purpose (a key of ``STREAMS``) under ``seed``."""
    return np.random.default_rng([int(seed), STREAMS[purpose]])


def section_dict(section) -> dict:
    """A recipe section (frozen object with ``to_dict()``, or a mapping) as a dict."""
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return dict(section)
    return dict(section.to_dict())


def resolve_seed(recipe, seed: int | None) -> int:
    """``seed`` when given, else the recipe's own seed (0 when it has none)."""
    if seed is not None:
        return int(seed)
    return int(getattr(recipe, "seed", 0) or 0)


def recipe_dtype(recipe) -> np.dtype:
    """The training dtype the recipe asks for (float32 by default)."""
    return np.dtype(section_dict(getattr(recipe, "train", None)).get("dtype") or "float32")


def recipe_label(recipe) -> str | None:
    """How results name the recipe: its file path, or ``bundled:<name>``."""
    return getattr(recipe, "path", None) or getattr(recipe, "name", None)


def new_result(command: str, recipe, seed: int, checks: Mapping | None = None) -> Result:
    return Result(command=command, recipe=recipe_label(recipe), seed=seed,
                  checks={name: list(codes) for name, codes in (checks or {}).items()})


def load(recipe):
    """The recipe's dataset (preprocessing fitted on its training split)."""
    from babysit.data import load_data

    return load_data(recipe.data)


def build(recipe, data, seed: int, dtype=None):
    """A fresh model for ``data`` with the weights every command sees for ``seed``."""
    from babysit.engine.model import build_model

    return build_model(recipe.model, input_shape=data.input_shape,
                       num_classes=data.num_classes, rng=np.random.default_rng(seed),
                       dtype=recipe_dtype(recipe) if dtype is None else np.dtype(dtype))


def prepare(recipe, seed: int | None = None, dtype=None):
    """``(data, model)`` for a recipe: its dataset and its model at initialization.

    ``seed`` defaults to the recipe's seed; ``dtype`` to the recipe's training
    dtype (gradient checks pass float64).
    """
    data = load(recipe)
    return data, build(recipe, data, resolve_seed(recipe, seed), dtype)


def subset(X, y, size: int, rng: np.random.Generator):
    """``size`` examples drawn without replacement (all of them, in order, if fewer)."""
    if size >= len(X):
        return X, y
    index = np.sort(rng.choice(len(X), size=size, replace=False))
    return X[index], y[index]


def layer_of(param_name: str, model) -> str | None:
    """The layer name (``"<i>.<kind>"``) a parameter ``"<i>.<name>"`` belongs to."""
    index = param_name.split(".", 1)[0]
    for name in model.names:
        if name.split(".", 1)[0] == index:
            return name
    return None


def all_finite(*values) -> bool:
    return all(bool(np.all(np.isfinite(v))) for v in values)


def positive_int(name: str, value) -> int:
    """Validate an option that must be a whole number >= 1 (BabysitError otherwise)."""
    from babysit.errors import BabysitError

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BabysitError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def positive_float(name: str, value) -> float:
    """Validate an option that must be a finite number > 0 (BabysitError otherwise)."""
    from babysit.errors import BabysitError

    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BabysitError(f"{name} must be a number > 0, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise BabysitError(f"{name} must be a finite number > 0, got {value!r}")
    return number


__all__ = ["STREAMS", "stream", "section_dict", "resolve_seed", "recipe_dtype", "recipe_label",
           "new_result", "load", "build", "prepare", "subset", "layer_of", "all_finite",
           "positive_int", "positive_float"]
