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
  defaults to 1e-3 here); ``FULL_BATCH_UPDATES``: the rules that declare
  ``full_batch`` (L-BFGS), and ``FULL_BATCH``, the ``train.batch_size`` that
  means the whole training set (babysit.engine.solver).

Option tables map ``{name: (default, Rule)}`` with rules from
:mod:`babysit.validation` (``REQUIRED`` for "no default"). The data-side
tables are the data package's (babysit.data): ``BUILTINS`` (the builtin sets'
option tables), ``SOURCE_PREFIXES``, the file suffixes, ``PREPROCESS`` (the
preprocessing steps' ``OPTIONS``) and :func:`source_kind`.
"""

from __future__ import annotations

import re

from babysit.data.builtins import BUILTINS
from babysit.data.preprocess import COMPONENTS, PREPROCESS
from babysit.data.sources import HDF5_SUFFIXES, NPZ_SUFFIXES, SOURCE_PREFIXES, source_kind
from babysit.engine import init as engine_init
from babysit.engine import losses as engine_losses
from babysit.engine import optim as engine_optim
from babysit.engine.layers import LAYERS as ENGINE_LAYERS
from babysit.engine.solver import FULL_BATCH
from babysit.validation import (CLASS_COUNT, HALF_OPEN_UNIT, KEEP_PROB, NON_NEGATIVE, NON_NEGATIVE_INT,
                                NUMBER, OPEN_UNIT, POSITIVE, POSITIVE_INT, REQUIRED)

POSITIVE_INT_OR_NULL = POSITIVE_INT.or_null()
OPEN_UNIT_OR_NULL = OPEN_UNIT.or_null()

TOP_LEVEL = ("name", "description", "seed", "data", "model", "optim", "train")

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
FULL_BATCH_UPDATES = tuple(name for name, rule in engine_optim.RULES.items() if rule.full_batch)
DTYPES = ("float32", "float64")

# A PyTorch model (extra babysit[torch]): ``torch: pkg.module:factory`` instead
# of ``layers``. ``init: module`` (the default) keeps the module's own init
# (babysit.torch.builder.MODULE_INIT: the same word, on the side that may import torch).
TORCH = "torch"
TORCH_MODEL_KEYS = ("torch", "kwargs", "init", "loss", "reg", "dropout")
MODULE_INIT = "module"

__all__ = ["TOP_LEVEL", "BUILTINS", "SOURCE_PREFIXES", "HDF5_SUFFIXES", "NPZ_SUFFIXES", "PREPROCESS",
           "COMPONENTS", "POSITIVE_INT_OR_NULL", "OPEN_UNIT_OR_NULL", "source_kind", "LAYERS",
           "LAYER_EXTRAS", "CUSTOM", "CLASS_PATH", "INITS", "INIT_WITH_STD", "INIT_STD", "LOSSES",
           "UPDATES", "OPTIM", "DECAYS", "FULL_BATCH", "FULL_BATCH_UPDATES", "DTYPES", "TORCH",
           "TORCH_MODEL_KEYS", "MODULE_INIT", "REQUIRED", "NUMBER", "POSITIVE", "NON_NEGATIVE",
           "OPEN_UNIT", "HALF_OPEN_UNIT", "KEEP_PROB", "POSITIVE_INT", "NON_NEGATIVE_INT",
           "CLASS_COUNT"]
