"""Plumbing every diagnosis shares: the seed, the data and the model it looks at.

The seed is resolved once, into the recipe (:func:`seeded`): a diagnosis
called with ``seed=5`` looks at exactly what ``recipe.with_seed(5)`` (and the
command line's ``--seed 5``) looks at, the validation split included. Every
command builds its model with ``np.random.default_rng(recipe.seed)`` so that,
for one seed, all commands see the same initial weights. Any other randomness
(batch order, example subsets, probes) comes from ``stream(seed, purpose)``
(:mod:`babysit.streams`), a separate generator per purpose.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Mapping

import numpy as np

from babysit.diagnostics.result import Result
from babysit.streams import STREAMS, stream


def section_dict(section) -> dict:
    """A recipe section (frozen object with ``to_dict()``, or a mapping) as a dict."""
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return dict(section)
    return dict(section.to_dict())


def seeded(recipe, seed: int | None):
    """``recipe`` with ``seed`` resolved into it (None keeps the recipe's own seed)."""
    return recipe.with_seed(seed)


def recipe_dtype(recipe) -> np.dtype:
    """The training dtype the recipe asks for (float32 by default)."""
    return np.dtype(section_dict(getattr(recipe, "train", None)).get("dtype") or "float32")


def recipe_label(recipe) -> str | None:
    """How results name the recipe: its file path, or ``bundled:<name>``."""
    return getattr(recipe, "path", None) or getattr(recipe, "name", None)


def new_result(command: str, recipe, seed: int, checks: Mapping | None = None) -> Result:
    return Result(command=command, recipe=recipe_label(recipe), seed=seed,
                  checks={name: list(codes) for name, codes in (checks or {}).items()})


# Within shared_data(): data key -> Dataset, so that the parts of one doctor run
# read (and preprocess) a data set once. None: every load() reads it afresh.
_SHARED_DATA: contextvars.ContextVar[dict | None] = contextvars.ContextVar("babysit_shared_data",
                                                                            default=None)


def data_key(recipe) -> str:
    """What decides a recipe's Dataset: its data section and seed (the seed picks the
    validation split but is not part of the section's YAML form)."""
    return json.dumps([section_dict(recipe.data), recipe.data.seed], sort_keys=True, default=str)


def shareable(recipe) -> bool:
    """Whether diagnoses of ``recipe`` may share one Dataset: the engine's own layers
    never write into their input, but a custom layer or a torch module (an in-place
    ReLU first) may, and the data a later part sees would change."""
    from babysit.torch import is_torch_section

    return not is_torch_section(recipe.model) and all(
        layer.kind != "custom" for layer in recipe.model.layers)


@contextlib.contextmanager
def shared_data():
    """Within the block, :func:`load` returns one Dataset per :func:`data_key`.

    For commands that run several diagnoses on one recipe (doctor): a
    CIFAR-sized file is read and preprocessed once, not once per part. The
    diagnoses only read a Dataset's arrays, but some hand them to the model
    uncopied (a full batch, a subset as large as the set), so only a model of
    the engine's own layers shares (:func:`shareable`); sharing then changes
    no number.
    """
    token = _SHARED_DATA.set({})
    try:
        yield
    finally:
        _SHARED_DATA.reset(token)


def load(recipe):
    """The recipe's dataset (preprocessing fitted on its training split)."""
    from babysit.data import load_data

    shared = _SHARED_DATA.get()
    if shared is None or not shareable(recipe):
        return load_data(recipe.data)
    key = data_key(recipe)
    if key not in shared:
        shared[key] = load_data(recipe.data)
    return shared[key]


def build(recipe, data, seed: int, dtype=None):
    """A fresh model for ``data`` with the weights every command sees for ``seed``.

    The backend follows the model section: layers go to the NumPy engine, a
    ``torch:`` factory to :mod:`babysit.torch` (imported only then).
    """
    from babysit.torch import is_torch_section, require_torch  # torch itself only when needed

    if is_torch_section(recipe.model):
        require_torch()
        from babysit.torch.builder import build_torch_model as build_model
    else:
        from babysit.engine.builder import build_model

    return build_model(recipe.model, input_shape=data.input_shape,
                       num_classes=data.num_classes, rng=np.random.default_rng(seed),
                       dtype=recipe_dtype(recipe) if dtype is None else np.dtype(dtype))


def prepare(recipe, dtype=None):
    """``(data, model)`` for a (seeded) recipe: its dataset and its model at initialization.

    ``dtype`` defaults to the recipe's training dtype (gradient checks pass float64).
    """
    data = load(recipe)
    return data, build(recipe, data, recipe.seed, dtype)


def subset_index(count: int, size: int, rng: np.random.Generator):
    """Sorted indexes of ``size`` of ``count`` examples drawn without replacement (None: all)."""
    if size >= count:
        return None
    return np.sort(rng.choice(count, size=size, replace=False))


def subset(X, y, size: int, rng: np.random.Generator):
    """``size`` examples drawn without replacement (all of them, in order, if fewer)."""
    index = subset_index(len(X), size, rng)
    return (X, y) if index is None else (X[index], y[index])


def all_finite(*values) -> bool:
    return all(bool(np.all(np.isfinite(v))) for v in values)


__all__ = ["STREAMS", "stream", "section_dict", "seeded", "recipe_dtype", "recipe_label",
           "new_result", "load", "build", "prepare", "subset", "subset_index", "all_finite"]
