"""The recipe schema: every table of what a recipe may contain, stated once.

The model and optim tables are derived from the engine's registries, which
are the source of truth (the recipe side imports the engine, never the other
way round), so a recipe accepts exactly what the engine's constructors do:

* ``LAYERS`` ``{kind: {option: (default, Rule)}}``: each engine layer class's
  ``OPTIONS`` (babysit.engine.layers); every layer also takes ``init`` and
  ``bias``, and ``custom`` layers name a class;
* ``INITS``, ``INIT_WITH_STD``, ``INIT_STD``: babysit.engine.init's registry;
* ``LOSSES``: babysit.engine.losses.LOSSES;
* ``UPDATES``, ``OPTIM`` (``lr`` plus the update rules' hyperparameters) and
  ``DECAYS``: babysit.engine.optim's tables (``lr`` is required there and
  defaults to 1e-3 here).

Option tables map ``{name: (default, Rule)}`` with rules from
:mod:`babysit.validation` (``REQUIRED`` for "no default"). The data-side
tables (``BUILTINS``, ``SOURCE_PREFIXES``, the file suffixes, ``PREPROCESS``,
:func:`source_kind`) are the recipe's own for now.
"""

from __future__ import annotations

import re

from babysit.engine import init as engine_init
from babysit.engine import losses as engine_losses
from babysit.engine import optim as engine_optim
from babysit.engine.layers import LAYERS as ENGINE_LAYERS
from babysit.validation import (CLASS_COUNT, HALF_OPEN_UNIT, KEEP_PROB, NON_NEGATIVE, NON_NEGATIVE_INT,
                                NUMBER, OPEN_UNIT, POSITIVE, POSITIVE_INT, REQUIRED, Rule)

POSITIVE_INT_OR_NULL = POSITIVE_INT.or_null()
OPEN_UNIT_OR_NULL = OPEN_UNIT.or_null()
COMPONENTS = Rule("null, a positive integer, or a variance fraction strictly between 0 and 1",
                  lambda x: 0 < x < 1 or (x >= 1 and float(x).is_integer()), nullable=True)

TOP_LEVEL = ("name", "description", "seed", "data", "model", "optim", "train")

# ---------------------------------------------------------------------------
# Data

# Builtin data sets and their parameters: {name: {parameter: (default, rule)}}.
# spiral: n points in total (split evenly over the classes), 2-D, angular noise.
# gaussian: n unit-Gaussian vectors of dimension dim with uniformly random labels.
BUILTINS = {
    "digits": {},
    "spiral": {"n": (300, POSITIVE_INT), "classes": (3, CLASS_COUNT), "noise": (0.2, NON_NEGATIVE)},
    "gaussian": {"n": (1000, POSITIVE_INT), "dim": (500, POSITIVE_INT), "classes": (10, CLASS_COUNT)},
}
SOURCE_PREFIXES = ("builtin", "cifar10", "mnist")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NPZ_SUFFIXES = (".npz",)

# Preprocessing steps (applied in order, fitted on the training split).
# pca/whiten components: null keeps every component, an integer k keeps the top
# k, a fraction f keeps the fewest components explaining that share of variance.
PREPROCESS = {
    "mean_image": {},
    "per_channel_mean": {},
    "standardize": {},
    "pca": {"components": (None, COMPONENTS)},
    "whiten": {"components": (None, COMPONENTS), "eps": (1e-5, POSITIVE)},
}


def source_kind(source: str) -> tuple[str, str]:
    """``"cifar10:DIR"`` -> ``("cifar10", "DIR")``; ``"x.h5"`` -> ``("hdf5", "x.h5")``.

    Raises ValueError for strings that name no known kind of source.
    """
    prefix, sep, rest = source.partition(":")
    if sep and prefix in SOURCE_PREFIXES:
        if not rest:
            raise ValueError(f"{source!r} needs a {'name' if prefix == 'builtin' else 'directory'} "
                             f"after '{prefix}:'")
        return prefix, rest
    lower = source.lower()
    if lower.endswith(HDF5_SUFFIXES):
        return "hdf5", source
    if lower.endswith(NPZ_SUFFIXES):
        return "npz", source
    raise ValueError(f"unknown data source {source!r}: use builtin:NAME ({', '.join(BUILTINS)}), "
                     f"a .h5 or .npz file, cifar10:DIR or mnist:DIR")


# ---------------------------------------------------------------------------
# Model and optim: derived from the engine

LAYERS = {kind: cls.OPTIONS for kind, cls in ENGINE_LAYERS.items()}
LAYER_EXTRAS = ("init", "bias")   # accepted by every layer besides its options
CUSTOM = "custom"
CLASS_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
INITS = tuple(engine_init.NAMED)
INIT_WITH_STD = engine_init.WITH_STD
INIT_STD = engine_init.STD_RULE
LOSSES = tuple(engine_losses.LOSSES)
UPDATES = tuple(engine_optim.RULES)
OPTIM = {"lr": (1e-3, engine_optim.LR_RULE), **engine_optim.HYPERPARAMETERS}
DECAYS = engine_optim.DECAYS
DTYPES = ("float32", "float64")

__all__ = ["TOP_LEVEL", "BUILTINS", "SOURCE_PREFIXES", "HDF5_SUFFIXES", "NPZ_SUFFIXES", "PREPROCESS",
           "COMPONENTS", "POSITIVE_INT_OR_NULL", "OPEN_UNIT_OR_NULL", "source_kind", "LAYERS",
           "LAYER_EXTRAS", "CUSTOM", "CLASS_PATH", "INITS", "INIT_WITH_STD", "INIT_STD", "LOSSES",
           "UPDATES", "OPTIM", "DECAYS", "DTYPES", "REQUIRED", "NUMBER", "POSITIVE", "NON_NEGATIVE",
           "OPEN_UNIT", "HALF_OPEN_UNIT", "KEEP_PROB", "POSITIVE_INT", "NON_NEGATIVE_INT",
           "CLASS_COUNT"]
