"""Recipes: YAML files -> validated, frozen :class:`Recipe` objects.

The package: ``schema`` (every table, the model/optim ones derived from the
engine), ``sections`` (FrozenDict, the frozen sections and Recipe), ``yaml12``
(YAML 1.2 loading with a line map, dumping), ``validate`` (located errors,
did-you-mean suggestions, section validators), ``overrides`` (``--set``);
this module holds the entry points and re-exports the public names.

A recipe has a top level ``name`` (default: the file's stem), ``description``,
``seed`` (default 0) and four sections, each a frozen dataclass whose
``to_dict()`` gives back the resolved YAML form (defaults filled in)::

    data:   source       builtin:digits | builtin:spiral | builtin:gaussian
                         | path.h5 | path.npz | cifar10:DIR | mnist:DIR, or a
                         builtin with parameters {builtin: spiral, n: 300, ...}
                         (see schema.BUILTINS); required
            val_fraction 0.2, 0 <= x < 1 (used when the source has no val split)
            preprocess   [] ; mean_image | per_channel_mean | standardize | pca
                         | whiten, options as {pca: {components: 20}} (schema.PREPROCESS)
            limit        null, or keep only the first N training examples
    model:  init         xavier | he | small | zeros | {normal: std} (default xavier)
            bias         0.0 (initial bias of every layer)
            layers       required, non-empty: "relu" or {kind: {options}};
                         options per kind in schema.LAYERS, plus init and bias on every
                         layer; custom layers as {custom: pkg.mod:Class} or
                         {custom: {class: pkg.mod:Class, kwargs: {...}}}
            loss         softmax | svm
            reg          0.0 (L2 strength, >= 0)
    optim:  update       sgd | momentum | nesterov | adagrad | rmsprop | adam
            lr 1e-3 (> 0), momentum 0.9, decay_rate 0.99, beta1 0.9,
            beta2 0.999, eps 1e-8, decay null | {kind: step, every, factor=0.5}
                         | {kind: exp, rate} | {kind: inv_t, rate}
    train:  epochs 10, batch_size 100, dtype float32 | float64,
            average null | 0 < beta < 1 (Polyak running average)

Numbers follow YAML 1.2: ``1e-3`` is a float (YAML 1.1 would read a string),
and only true/false are booleans. Every mistake raises a one-line
:class:`~babysit.errors.RecipeError` naming the file, the line, the key path,
and the nearest valid key or value. Overrides (``--set KEY=VALUE``) are dotted
paths into the recipe, list indexes included (``model.layers.0.affine.out=100``),
validated like the file; their errors name the override.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from babysit.errors import RecipeError
from babysit.recipes.overrides import apply_overrides
from babysit.recipes.schema import (BUILTINS, CLASS_COUNT, CLASS_PATH, COMPONENTS, CUSTOM, DECAYS,
                                    DTYPES, HALF_OPEN_UNIT, HDF5_SUFFIXES, INIT_STD, INIT_WITH_STD, INITS,
                                    KEEP_PROB, LAYER_EXTRAS, LAYERS, LOSSES, NON_NEGATIVE,
                                    NON_NEGATIVE_INT, NPZ_SUFFIXES, NUMBER, OPEN_UNIT, OPEN_UNIT_OR_NULL,
                                    OPTIM, POSITIVE, POSITIVE_INT, POSITIVE_INT_OR_NULL, PREPROCESS,
                                    REQUIRED, SOURCE_PREFIXES, TOP_LEVEL, UPDATES, source_kind)
from babysit.recipes.sections import (DataSection, FrozenDict, LayerSpec, ModelSection, OptimSection, Recipe,
                                      TrainSection, freeze, thaw)
from babysit.recipes.validate import Where, suggest, validate, validate_data
from babysit.recipes.yaml12 import compose

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled" / "recipes"
DEFAULT_RECIPE = "two-layer-digits"


def bundled_recipes() -> dict[str, Path]:
    """``{name: file}`` of the bundled recipes (broken ones as ``broken/<name>``)."""
    out = {}
    for file in sorted(BUNDLED_DIR.rglob("*.yaml")):
        out[file.relative_to(BUNDLED_DIR).with_suffix("").as_posix()] = file
    return out


def _resolve(path_or_name) -> tuple[Path, str]:
    """The file to read and the ``path`` to record (as given, or ``bundled:<name>``)."""
    text = str(path_or_name)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return candidate, text
    bundled = bundled_recipes()
    name = text[:-5] if text.endswith(".yaml") else text
    if name in bundled and not candidate.exists():
        return bundled[name], f"bundled:{name}"
    if candidate.exists():
        raise RecipeError(f"{text}: not a file")
    if text.endswith((".yaml", ".yml")) or candidate.is_absolute():
        raise RecipeError(f"{text}: no such recipe file")
    raise RecipeError(f"unknown recipe {text!r}: not a file and not a bundled recipe"
                      + suggest(text, bundled))


def load_recipe(path_or_name=DEFAULT_RECIPE, overrides=None) -> Recipe:
    """Read, override and validate a recipe.

    ``path_or_name``: a YAML file, or a bundled recipe name (``"two-layer-digits"``,
    ``"broken/lr-too-high"``; see :func:`list_recipes`). An existing file wins
    over a bundled name.

    ``overrides``: ``{"optim.lr": "1e-3", "model.layers.0.affine.out": 100}`` or
    a list of ``"KEY=VALUE"`` strings. String values are read as YAML
    (``"1e-3"`` -> 0.001, ``"none"`` stays a string, ``""`` -> null); other
    values are used as they are. Overrides apply before validation, so they
    can supply missing keys or fix bad ones.

    Raises RecipeError (one line: file, line, key path, suggestion).
    """
    file, recorded = _resolve(path_or_name)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        from babysit.data import describe_file  # a data file given as the recipe: say what it is
        known = describe_file(file)
        if known:
            raise RecipeError(f"{path_or_name} is {known[0]}, not a recipe (a YAML file or a bundled "
                              f"recipe name); to use it as data, {known[1]}") from None
        raise RecipeError(f"{path_or_name}: cannot read the recipe: {exc}") from None
    origin = str(path_or_name) if not recorded.startswith("bundled:") else str(file)
    return recipe_from_yaml(text, origin=origin, overrides=overrides, path=recorded,
                            base_dir=str(file.resolve().parent), default_name=file.stem)


def recipe_from_yaml(text: str, origin: str = "<recipe>", overrides=None, path=None, base_dir=None,
                     default_name: str = "recipe") -> Recipe:
    """Validate recipe YAML text (e.g. the ``recipe`` attribute of a run log).

    ``origin`` names the text in error messages; ``base_dir`` is searched for
    relative data paths after the current directory.
    """
    raw, lines = compose(text, origin)
    if raw is None and not overrides:
        raise RecipeError(f"{origin}: the recipe is empty; it needs at least data and model sections")
    if raw is None:
        raw = {}
    sources = apply_overrides(raw, overrides, lines) if isinstance(raw, dict) else {}
    return validate(raw, Where(origin, lines, sources), default_name=default_name, path=path,
                     base_dir=base_dir)


def data_section(value, seed: int | None = None, base_dir=None) -> DataSection:
    """A DataSection from a source string (``"builtin:digits"``, ``"x.h5"``), a ``data``
    mapping, or a DataSection (returned as is unless ``seed`` is given)."""
    if isinstance(value, DataSection):
        return value if seed is None or seed == value.seed else replace(value, seed=seed)
    return validate_data(value, 0 if seed is None else seed, base_dir)


def list_recipes() -> list[tuple[str, str, str]]:
    """``[(name, description, path)]`` of the bundled recipes, broken ones as ``broken/<name>``."""
    out = []
    for name, file in bundled_recipes().items():
        recipe = load_recipe(name)
        out.append((name, recipe.description or "", str(file)))
    return out


__all__ = ["Recipe", "DataSection", "ModelSection", "OptimSection", "TrainSection", "LayerSpec",
           "FrozenDict", "freeze", "thaw", "load_recipe", "recipe_from_yaml", "data_section",
           "list_recipes", "bundled_recipes", "BUNDLED_DIR", "DEFAULT_RECIPE",
           # the schema tables (babysit.recipes.schema)
           "TOP_LEVEL", "BUILTINS", "SOURCE_PREFIXES", "HDF5_SUFFIXES", "NPZ_SUFFIXES", "PREPROCESS",
           "COMPONENTS", "POSITIVE_INT_OR_NULL", "OPEN_UNIT_OR_NULL", "source_kind", "LAYERS",
           "LAYER_EXTRAS", "CUSTOM", "CLASS_PATH", "INITS", "INIT_WITH_STD", "INIT_STD", "LOSSES",
           "UPDATES", "OPTIM", "DECAYS", "DTYPES", "REQUIRED", "NUMBER", "POSITIVE", "NON_NEGATIVE",
           "OPEN_UNIT", "HALF_OPEN_UNIT", "KEEP_PROB", "POSITIVE_INT", "NON_NEGATIVE_INT", "CLASS_COUNT"]
