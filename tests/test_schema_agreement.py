"""The recipe schema and the engine agree, table by table.

The recipe side derives its model and optim tables from the engine's
registries; these tests check the result at the boundaries: for every layer
option, optimizer hyperparameter, decay option and init std, each probe value
(every rule's boundaries, just inside and just beyond, and values of the
wrong type) is accepted by a recipe exactly when the engine's constructor
accepts it, with the same resolved value. A recipe using every layer kind
with explicit options builds a model whose layers carry those options.
"""

import math

import numpy as np
import pytest

import babysit
from babysit.engine import init as engine_init
from babysit.engine import losses as engine_losses
from babysit.engine import optim as engine_optim
from babysit.engine.layers import LAYERS as ENGINE_LAYERS
from babysit.errors import ModelError, RecipeError
from babysit.recipes import recipe_from_yaml, schema
from babysit.validation import REQUIRED

TINY = 1e-9
# Every rule in the tables has its boundaries at 0 and 1 (or none): probe both,
# from either side, plus ordinary values and values of the wrong type (a string
# that YAML also reads as a string: override strings are read as YAML).
PROBES = [-1, -0.5, -TINY, 0, 0.0, TINY, 0.5, 1 - TINY, 1, 1.0, 1 + TINY, 1.5, 2, 2.5, 7, 1e3,
          math.inf, -math.inf, math.nan, None, True, False, "fast", [1], {"a": 1}]

BASE = """\
data: {source: builtin:digits}
model:
  layers: [{affine: {out: 10}}]
"""

# Values for the options without a default, so that one option can be probed alone.
REQUIRED_VALUES = {("affine", "out"): 10, ("conv", "filters"): 2, ("maxout", "out"): 3,
                   ("step", "every"): 2, ("exp", "rate"): 0.1, ("inv_t", "rate"): 0.1}


def recipe_outcome(overrides):
    """``("ok", recipe)`` or ``("rejected", None)`` for BASE with typed overrides."""
    try:
        return "ok", recipe_from_yaml(BASE, overrides=overrides)
    except RecipeError:
        return "rejected", None


def option_cases(tables):
    for owner, table in tables.items():
        for option in table:
            for probe in PROBES:
                yield pytest.param(owner, option, probe, id=f"{owner}.{option}={probe!r}")


def required_options(owner, table, skip):
    return {name: REQUIRED_VALUES[owner, name] for name, (default, _) in table.items()
            if default is REQUIRED and name != skip}


# -- tables derived, not restated --------------------------------------------------


def test_every_table_is_the_engines():
    assert list(schema.LAYERS) == list(ENGINE_LAYERS)
    assert all(schema.LAYERS[kind] is cls.OPTIONS for kind, cls in ENGINE_LAYERS.items())
    assert schema.UPDATES == tuple(engine_optim.RULES)
    assert schema.DECAYS is engine_optim.DECAYS
    assert {k: v for k, v in schema.OPTIM.items() if k != "lr"} == engine_optim.HYPERPARAMETERS
    assert schema.OPTIM["lr"] == (1e-3, engine_optim.LR_RULE)
    assert schema.INITS == tuple(engine_init.NAMED) and schema.INIT_WITH_STD == engine_init.WITH_STD
    assert schema.INIT_STD is engine_init.STD_RULE
    assert schema.LOSSES == tuple(engine_losses.LOSSES)


# -- layers ---------------------------------------------------------------------


@pytest.mark.parametrize("kind, option, probe", list(option_cases(schema.LAYERS)))
def test_layer_option_accepted_by_recipe_iff_by_engine(kind, option, probe):
    options = {**required_options(kind, schema.LAYERS[kind], option), option: probe}
    verdict, recipe = recipe_outcome({"model.layers.0": {kind: options}})
    try:
        layer = ENGINE_LAYERS[kind](**options)
        engine = "ok"
    except (TypeError, ValueError):
        engine = "rejected"
    assert verdict == engine
    if engine == "ok":
        assert recipe.model.layers[0].options[option] == layer.options[option]


def test_unknown_and_missing_layer_options_are_rejected_by_both():
    for kind, table in schema.LAYERS.items():
        extra = {**required_options(kind, table, None), "bogus": 1}
        assert recipe_outcome({"model.layers.0": {kind: extra}})[0] == "rejected"
        with pytest.raises(TypeError, match=f"unknown key 'bogus' in {kind}"):
            ENGINE_LAYERS[kind](**extra)
        for name, (default, _) in table.items():
            if default is REQUIRED:
                assert recipe_outcome({"model.layers.0": {kind: {}}})[0] == "rejected"
                with pytest.raises(TypeError, match=f"{kind} needs the option '{name}'"):
                    ENGINE_LAYERS[kind]()


def test_window_pairs_are_the_one_documented_python_only_extension():
    from babysit.engine.layers import Conv, MaxPool

    assert Conv(2, size=[3, 5]).size == (3, 5) and MaxPool(size=(2, 3)).stride == (2, 3)
    assert recipe_outcome({"model.layers.0": {"conv": {"filters": 2, "size": [3, 5]}}})[0] == "rejected"
    assert recipe_outcome({"model.layers.0": {"maxpool": {"size": [2, 3]}}})[0] == "rejected"


EXPLICIT = {  # every kind, every option given, none at its default
    "conv": {"filters": 2, "size": 2, "stride": 2, "pad": 1},
    "batchnorm": {"eps": 1e-4, "momentum": 0.8},
    "prelu": {"alpha": 0.2},
    "maxpool": {"size": 3, "stride": 1},
    "leaky_relu": {"alpha": 0.05},
    "elu": {"alpha": 0.9},
    "dropout": {"keep": 0.9},
    "flatten": {},
    "maxout": {"out": 6, "pieces": 3},
    "sigmoid": {},
    "relu": {},
    "tanh": {},
    "affine": {"out": 3},
}


def test_a_recipe_with_every_layer_kind_builds_a_model_with_those_options():
    assert set(EXPLICIT) == set(ENGINE_LAYERS)
    for kind, options in EXPLICIT.items():
        assert set(options) == set(schema.LAYERS[kind]), kind
        assert all(options[k] != default for k, (default, _) in schema.LAYERS[kind].items()), kind
    layers = [{kind: options} if options else kind for kind, options in EXPLICIT.items()]
    recipe = recipe_from_yaml(BASE, overrides={"model.layers": layers})
    model = babysit.build_model(recipe.model, input_shape=(1, 8, 8), num_classes=3,
                                rng=np.random.default_rng(0), dtype=np.float64)
    assert [type(layer) for layer in model.layers] == [ENGINE_LAYERS[kind] for kind in EXPLICIT]
    for layer, (kind, options) in zip(model.layers, EXPLICIT.items()):
        assert layer.options == options, kind
    assert model.forward(np.zeros((2, 1, 8, 8))).shape == (2, 3)


# -- optimizer and schedule --------------------------------------------------------


def with_update(update, overrides=None):
    """Overrides selecting ``update``; a full-batch rule (lbfgs) also gets train.batch_size full."""
    full = {"train.batch_size": schema.FULL_BATCH} if update in schema.FULL_BATCH_UPDATES else {}
    return {"optim.update": update, **full, **(overrides or {})}


@pytest.mark.parametrize("update", ["momentum", "rmsprop", "adam", "lbfgs"])   # between them, every key
@pytest.mark.parametrize("key, probe", [(key, probe) for key in engine_optim.HYPERPARAMETERS
                                        for probe in PROBES])
def test_hyperparameter_accepted_by_recipe_iff_by_engine(update, key, probe):
    verdict, recipe = recipe_outcome(with_update(update, {f"optim.{key}": probe}))
    try:
        optimizer = engine_optim.make_optimizer({"update": update, key: probe}, {"w": np.zeros(2)})
        engine = "ok"
    except ModelError:
        engine = "rejected"
    assert verdict == engine
    if engine == "ok" and key in optimizer.hyper:
        assert getattr(recipe.optim, key) == getattr(optimizer, key)


@pytest.mark.parametrize("probe", PROBES)
def test_lr_accepted_by_recipe_iff_by_engine(probe):
    verdict, recipe = recipe_outcome({"optim.lr": probe})
    try:
        schedule = engine_optim.make_schedule({"lr": probe})
        engine = "ok"
    except ModelError:
        engine = "rejected"
    assert verdict == engine
    if engine == "ok":
        assert recipe.optim.lr == schedule.lr


@pytest.mark.parametrize("kind, option, probe", list(option_cases(schema.DECAYS)))
def test_decay_option_accepted_by_recipe_iff_by_engine(kind, option, probe):
    decay = {"kind": kind, **required_options(kind, schema.DECAYS[kind], option), option: probe}
    verdict, recipe = recipe_outcome({"optim.lr": 0.1, "optim.decay": decay})
    try:
        schedule = engine_optim.make_schedule({"lr": 0.1, "decay": decay})
        engine = "ok"
    except ModelError:
        engine = "rejected"
    assert verdict == engine
    if engine == "ok":
        assert recipe.optim.decay[option] == getattr(schedule, option)
        assert engine_optim.make_schedule(recipe.optim.to_dict())(7) == schedule(7)


def test_update_and_decay_names():
    for update in engine_optim.RULES:
        assert recipe_outcome(with_update(update))[0] == "ok"
    assert schema.FULL_BATCH_UPDATES == ("lbfgs",)
    for kind in engine_optim.DECAYS:
        decay = {"kind": kind, **required_options(kind, schema.DECAYS[kind], None)}
        assert recipe_outcome({"optim.decay": decay})[0] == "ok"
    assert recipe_outcome({"optim.update": "adamw"})[0] == "rejected"
    with pytest.raises(ModelError):
        engine_optim.make_optimizer({"update": "adamw"}, {})
    assert recipe_outcome({"optim.decay": {"kind": "cosine"}})[0] == "rejected"
    with pytest.raises(ModelError):
        engine_optim.make_schedule({"lr": 1.0, "decay": {"kind": "cosine"}})


# -- inits and losses ------------------------------------------------------------


@pytest.mark.parametrize("name", engine_init.WITH_STD)
@pytest.mark.parametrize("probe", PROBES)
def test_init_std_accepted_by_recipe_iff_by_engine(name, probe):
    verdict, recipe = recipe_outcome({"model.init": {name: probe}})
    try:
        initializer = engine_init.get_initializer({name: probe})
        engine = "ok"
    except ModelError:
        engine = "rejected"
    assert verdict == engine
    if engine == "ok":
        assert initializer.scale(10) == recipe.model.init[name]


def test_init_and_loss_names():
    for name in engine_init.NAMED:
        assert recipe_outcome({"model.init": name})[0] == "ok"
        engine_init.get_initializer(name)
    for name in engine_losses.LOSSES:
        assert recipe_outcome({"model.loss": name})[0] == "ok"
        engine_losses.get_loss(name)
    assert recipe_outcome({"model.init": "glorot"})[0] == "rejected"
    assert recipe_outcome({"model.loss": "hinge"})[0] == "rejected"
