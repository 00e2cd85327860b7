"""Recipe validation: raw YAML values -> a frozen :class:`~babysit.recipes.sections.Recipe`.

Every check is located: :class:`Where` turns a key path into a one-line
RecipeError naming the file and line (or the ``--set`` override that put the
value there), the key path, and the nearest valid key or value ("did you
mean 'lr'?", from aliases people bring from other tools, difflib, or a
prefix). Scalars are checked with :mod:`babysit.validation` rules taken from
the schema tables (:mod:`babysit.recipes.schema`); the section validators
below say only how a section is laid out.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from babysit.errors import RecipeError
from babysit.recipes.schema import (BUILTINS, CLASS_PATH, CUSTOM, DECAYS, DTYPES, FULL_BATCH,
                                    FULL_BATCH_UPDATES, HALF_OPEN_UNIT, INIT_STD,
                                    INIT_WITH_STD, INITS, LAYER_EXTRAS, LAYERS, LOSSES, NON_NEGATIVE,
                                    NUMBER, OPEN_UNIT_OR_NULL, OPTIM, POSITIVE_INT,
                                    POSITIVE_INT_OR_NULL, PREPROCESS, REQUIRED, TOP_LEVEL, UPDATES,
                                    MODULE_INIT, TORCH, TORCH_MODEL_KEYS, source_kind)
from babysit.recipes.sections import (DataSection, FrozenDict, LayerSpec, ModelSection, OptimSection,
                                      Recipe, TorchModelSection, TrainSection, freeze)
from babysit.recipes.yaml12 import at, dotted
from babysit.validation import SEED, Rule, show

# ---------------------------------------------------------------------------
# Error locations


class Where:
    """Turns a key path into a message naming the file and line, or the --set override."""

    def __init__(self, origin: str, lines: dict, overrides: dict):
        self.origin = origin
        self.lines = lines
        self.overrides = overrides

    def error(self, path, message: str, candidates: Iterable[str] = (), word=None) -> RecipeError:
        """``message`` located at ``path``; ``word`` (default: the last key) is matched
        against ``candidates`` for a "did you mean" suggestion."""
        text = f"{self.origin}: {message}"
        path = tuple(path)
        if word is None:
            word = path[-1] if path else ""
        # an override at, inside or above the failing key is what the user must fix
        for key, label in reversed(self.overrides.items()):
            if key[:len(path)] == path or path[:len(key)] == key:
                return RecipeError(f"{label}: {message}" + suggest(word, candidates))
        for n in range(len(path), -1, -1):
            prefix = path[:n]
            if prefix in self.lines:
                text = f"{text} (line {self.lines[prefix]})"
                break
        return RecipeError(text + suggest(word, candidates))


# Names people bring from other tools, mapped to this schema's keys.
_ALIASES = {"learning_rate": "lr", "lr_decay": "decay", "optimizer": "update", "weight_decay": "reg",
            "l2": "reg", "num_epochs": "epochs", "batch": "batch_size", "mom": "momentum",
            "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps", "fc": "affine",
            "linear": "affine", "dense": "affine", "conv2d": "conv", "pool": "maxpool",
            "max_pool": "maxpool", "bn": "batchnorm", "batch_norm": "batchnorm"}


def suggest(word, candidates) -> str:
    """``"; did you mean 'lr'?"`` (alias, prefix or difflib match), else the valid choices."""
    candidates = [str(c) for c in candidates]
    if not candidates:
        return ""
    word = str(word)
    close = [_ALIASES[word]] if _ALIASES.get(word) in candidates else []
    close = close or difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    close = close or [c for c in candidates if len(c) >= 2 and word.startswith(c)
                      or len(word) >= 2 and c.startswith(word)][:1]
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(candidates)}"


# ---------------------------------------------------------------------------
# Checks of one value


def _mapping(value, path, where: Where, keys, required=(), what=None) -> dict:
    """Check a mapping: only ``keys``, all of ``required``. None counts as empty."""
    what = what or at(path)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise where.error(path, f"{what} must be a mapping, got {show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise where.error(path, f"keys must be names, got {show(key)} at {what}")
        if key not in keys:
            raise where.error(tuple(path) + (key,), f"unknown key {key!r} at {what}", keys)
    for key in required:
        if key not in value:
            if not path:
                raise where.error(path, f"the recipe has no {key!r} section (data and model are required)")
            raise where.error(path, f"{what} needs the key {key!r}")
    return dict(value)


def _check(value, rule: Rule, path, where: Where):
    """``value`` as ``rule`` converts it (int/float, or None), else a located RecipeError."""
    try:
        return rule.convert(value)
    except ValueError:
        raise where.error(path, f"{dotted(path)} must be {rule.phrase}, got {show(value)}") from None


def _choice(value, choices, path, where: Where) -> str:
    if isinstance(value, str) and value in choices:
        return value
    if isinstance(value, str):
        raise where.error(path, f"unknown value {value!r} for {dotted(path)}", choices, word=value)
    raise where.error(path, f"{dotted(path)} must be one of {', '.join(choices)}, got {show(value)}")


def _options(value, schema: Mapping, path, where: Where, extra=(), what=None) -> dict:
    """Resolve a mapping of options against ``{name: (default, rule)}`` (plus ``extra`` keys)."""
    keys = list(schema) + list(extra)
    given = _mapping(value, path, where, keys,
                     required=[k for k, (default, _) in schema.items() if default is REQUIRED], what=what)
    out = {}
    for key, (default, rule) in schema.items():
        out[key] = _check(given[key], rule, tuple(path) + (key,), where) if key in given else default
    for key in extra:
        if key in given:
            out[key] = given[key]
    return out


def _name_and_options(entry, path, where: Where, what: str):
    """``"relu"`` or ``{"affine": {...}}`` -> ``("affine", options or None)``."""
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, Mapping) and len(entry) == 1:
        (name, options), = entry.items()
        if isinstance(name, str):
            return name, options
    if isinstance(entry, Mapping) and len(entry) > 1:
        names = ", ".join(repr(k) for k in entry)
        raise where.error(path, f"{dotted(path)} must be one {what} with its options, got the keys "
                                f"{names}: put options such as init inside, e.g. "
                                f"{{affine: {{out: 10, init: small}}}}")
    raise where.error(path, f"{dotted(path)} must be a {what} name or a one-key mapping "
                            f"{{{what}: {{options}}}}, got {show(entry)}")


def _init_spec(value, path, where: Where):
    if isinstance(value, str):
        return _choice(value, INITS, path, where)
    if isinstance(value, Mapping) and len(value) == 1:
        (name, std), = value.items()
        if name in INIT_WITH_STD:
            return FrozenDict({name: _check(std, INIT_STD, tuple(path) + (name,), where)})
        raise where.error(tuple(path) + (name,), f"unknown init {name!r} at {dotted(path)}", INIT_WITH_STD)
    raise where.error(path, f"{dotted(path)} must be one of {', '.join(INITS)} or {{normal: std}}, "
                            f"got {show(value)}")


# ---------------------------------------------------------------------------
# Sections


def _source(value, path, where: Where) -> tuple[str, FrozenDict]:
    """Canonical source string plus resolved builtin parameters."""
    if isinstance(value, Mapping):
        if "builtin" not in value:
            raise where.error(path, f"{dotted(path)} as a mapping needs the key 'builtin' "
                                    f"(e.g. {{builtin: spiral, n: 300}})")
        name = _choice(value["builtin"], list(BUILTINS), tuple(path) + ("builtin",), where)
        params = {k: v for k, v in value.items() if k != "builtin"}
        resolved = _options(params, BUILTINS[name], path, where, what=f"{dotted(path)} ({name})")
        return f"builtin:{name}", FrozenDict(resolved)
    if not isinstance(value, str) or not value.strip():
        raise where.error(path, f"{dotted(path)} must be a string such as builtin:digits or a "
                                f"mapping {{builtin: spiral, ...}}, got {show(value)}")
    try:
        kind, location = source_kind(value)
    except ValueError as exc:
        raise where.error(path, str(exc)) from None
    if kind == "builtin":
        if location not in BUILTINS:
            raise where.error(path, f"unknown builtin data set {location!r} at {dotted(path)}",
                              [f"builtin:{b}" for b in BUILTINS], word=value)
        defaults = {k: default for k, (default, _) in BUILTINS[location].items()}
        return value, FrozenDict(defaults)
    return value, FrozenDict()


def _data_section(raw, where: Where, seed: int, base_dir) -> DataSection:
    path = ("data",)
    given = _mapping(raw, path, where, ["source", "val_fraction", "preprocess", "limit"],
                     required=["source"], what="data")
    source, params = _source(given["source"], path + ("source",), where)
    val_fraction = _check(given.get("val_fraction", 0.2), HALF_OPEN_UNIT, path + ("val_fraction",), where)
    steps = given.get("preprocess") or []
    if isinstance(steps, str):
        steps = [steps]
    if not isinstance(steps, list):
        raise where.error(path + ("preprocess",),
                          f"data.preprocess must be a list of steps, got {show(steps)}")
    preprocess = []
    for i, entry in enumerate(steps):
        entry_path = path + ("preprocess", i)
        name, options = _name_and_options(entry, entry_path, where, "preprocessing step")
        if name not in PREPROCESS:
            raise where.error(entry_path, f"unknown preprocessing step {name!r} at {dotted(entry_path)}",
                              PREPROCESS, word=name)
        resolved = _options(options, PREPROCESS[name], entry_path + (name,), where)
        preprocess.append((name, FrozenDict(resolved)))
    limit = _check(given.get("limit"), POSITIVE_INT_OR_NULL, path + ("limit",), where)
    return DataSection(source=source, params=params, val_fraction=float(val_fraction),
                       preprocess=tuple(preprocess), limit=limit, seed=seed, base_dir=base_dir)


def _layer(entry, path, where: Where) -> LayerSpec:
    kind, options = _name_and_options(entry, path, where, "layer")
    kind_path = tuple(path) + (kind,)
    if kind == CUSTOM:
        if isinstance(options, str):
            options = {"class": options}
        given = _mapping(options, kind_path, where, ["class", "kwargs", "init", "bias"],
                         required=["class"])
        cls = given["class"]
        if not isinstance(cls, str) or not CLASS_PATH.match(cls):
            raise where.error(kind_path + ("class",), f"{dotted(kind_path)} must name a class as "
                                                      f"'pkg.module:Class', got {show(cls)}")
        kwargs = _mapping(given.get("kwargs"), kind_path + ("kwargs",), where,
                          [k for k in (given.get("kwargs") or {}) if isinstance(k, str)])
        resolved = {"class": cls, "kwargs": kwargs}
    elif kind in LAYERS:
        given = _options(options, LAYERS[kind], kind_path, where, extra=LAYER_EXTRAS)
        resolved = {k: v for k, v in given.items() if k not in LAYER_EXTRAS}
    else:
        raise where.error(path, f"unknown layer kind {kind!r} at {dotted(path)}", [*LAYERS, CUSTOM],
                          word=kind)
    init = _init_spec(given["init"], kind_path + ("init",), where) if "init" in given else None
    bias = _check(given["bias"], NUMBER, kind_path + ("bias",), where) if "bias" in given else None
    return LayerSpec(kind=kind, options=freeze(resolved), init=init,
                     bias=None if bias is None else float(bias))


def _torch_model_section(raw, where: Where) -> TorchModelSection:
    path = ("model",)
    given = _mapping(raw, path, where, TORCH_MODEL_KEYS, what="model (a torch model)")
    factory = given[TORCH]
    if not isinstance(factory, str) or not CLASS_PATH.match(factory):
        raise where.error(path + (TORCH,), f"model.torch must name a factory as 'pkg.module:factory', "
                                           f"got {show(factory)}")
    kwargs = _mapping(given.get("kwargs"), path + ("kwargs",), where,
                      [k for k in (given.get("kwargs") or {}) if isinstance(k, str)])
    init = given.get("init", MODULE_INIT)
    if init != MODULE_INIT:
        if isinstance(init, str) and init not in INITS:
            raise where.error(path + ("init",), f"unknown value {init!r} for model.init",
                              (MODULE_INIT, *INITS), word=init)
        init = _init_spec(init, path + ("init",), where)
    dropout = given.get("dropout", True)
    if not isinstance(dropout, bool):
        raise where.error(path + ("dropout",), f"model.dropout must be true or false, got {show(dropout)}")
    return TorchModelSection(
        torch=factory, kwargs=freeze(kwargs), init=init, dropout=dropout,
        loss=_choice(given.get("loss", "softmax"), LOSSES, path + ("loss",), where),
        reg=float(_check(given.get("reg", 0.0), NON_NEGATIVE, path + ("reg",), where)))


def _model_section(raw, where: Where) -> ModelSection | TorchModelSection:
    path = ("model",)
    if isinstance(raw, Mapping) and TORCH in raw:
        if "layers" in raw:
            raise where.error(path + ("layers",), "a model is either a list of layers or a torch "
                                                  "factory (model.torch), not both")
        return _torch_model_section(raw, where)
    given = _mapping(raw, path, where, ["init", "bias", "layers", "loss", "reg"], required=["layers"],
                     what="model")
    layers = given["layers"]
    if not isinstance(layers, list) or not layers:
        raise where.error(path + ("layers",), f"model.layers must be a non-empty list of layers, "
                                              f"got {show(layers)}")
    specs = tuple(_layer(entry, path + ("layers", i), where) for i, entry in enumerate(layers))
    return ModelSection(
        layers=specs,
        init=_init_spec(given.get("init", "xavier"), path + ("init",), where),
        bias=float(_check(given.get("bias", 0.0), NUMBER, path + ("bias",), where)),
        loss=_choice(given.get("loss", "softmax"), LOSSES, path + ("loss",), where),
        reg=float(_check(given.get("reg", 0.0), NON_NEGATIVE, path + ("reg",), where)))


def _optim_section(raw, where: Where) -> OptimSection:
    path = ("optim",)
    given = _mapping(raw, path, where, ["update", *OPTIM, "decay"], what="optim")
    values = {key: _check(given[key], rule, path + (key,), where) if key in given else default
              for key, (default, rule) in OPTIM.items()}
    values = {key: value if OPTIM[key][1].integer else float(value) for key, value in values.items()}
    update = _choice(given.get("update", "sgd"), UPDATES, path + ("update",), where)
    decay = given.get("decay")
    if decay is None or decay == "none":
        decay = None
    else:
        decay_path = path + ("decay",)
        if not isinstance(decay, Mapping) or "kind" not in decay:
            raise where.error(decay_path, "optim.decay must be none or a mapping such as "
                                          f"{{kind: step, every: 5, factor: 0.5}}, got {show(decay)}")
        kind = _choice(decay["kind"], list(DECAYS), decay_path + ("kind",), where)
        rest = {k: v for k, v in decay.items() if k != "kind"}
        decay = FrozenDict({"kind": kind, **_options(rest, DECAYS[kind], decay_path, where,
                                                     what=f"optim.decay ({kind})")})
    return OptimSection(update=update, decay=decay, **values)


def _train_section(raw, where: Where) -> TrainSection:
    path = ("train",)
    given = _mapping(raw, path, where, ["epochs", "batch_size", "dtype", "average"], what="train")
    batch_size = given.get("batch_size", 100)
    if batch_size != FULL_BATCH:
        if not POSITIVE_INT.accepts(batch_size):
            raise where.error(path + ("batch_size",), f"train.batch_size must be a positive integer "
                                                      f"or {FULL_BATCH!r}, got {show(batch_size)}")
        batch_size = POSITIVE_INT.convert(batch_size)
    return TrainSection(
        epochs=_check(given.get("epochs", 10), POSITIVE_INT, path + ("epochs",), where),
        batch_size=batch_size,
        dtype=_choice(given.get("dtype", "float32"), DTYPES, path + ("dtype",), where),
        average=_check(given.get("average"), OPEN_UNIT_OR_NULL, path + ("average",), where))


def _check_full_batch_update(optim: OptimSection, model: ModelSection, train: TrainSection,
                             where: Where) -> None:
    """L-BFGS (any rule declaring ``full_batch``) needs one deterministic loss: the whole
    training set in every step, no dropout, no learning-rate decay. Errors say why."""
    if optim.update not in FULL_BATCH_UPDATES:
        return
    asks = f"optim.update {optim.update}"
    if train.batch_size != FULL_BATCH:
        raise where.error(("train", "batch_size"),
                          f"{asks} needs train.batch_size: {FULL_BATCH}, got {train.batch_size}: "
                          f"L-BFGS's curvature estimate and line search compare losses of one "
                          f"deterministic function, and every mini-batch is a different one")
    for index, layer in enumerate(model.layers):
        if layer.kind == "dropout" and layer.options["keep"] < 1.0:
            raise where.error(("model", "layers", index),
                              f"{asks} cannot train through dropout (model.layers.{index}, keep "
                              f"{layer.options['keep']:g}): its random mask changes the loss at "
                              f"every evaluation, and L-BFGS needs one deterministic function; "
                              f"remove the layer or set keep: 1.0")
    if optim.decay is not None:
        raise where.error(("optim", "decay"),
                          f"{asks} takes no learning-rate decay: its line search chooses every "
                          f"step length (lr only sizes its very first trial); set optim.decay: none")


def validate(raw, where: Where, default_name: str, path, base_dir) -> Recipe:
    """The Recipe of raw YAML values (``where`` locates errors; ``default_name`` when the
    recipe has no name; ``path`` is recorded; ``base_dir`` is searched for data files)."""
    if raw is None:
        raise RecipeError(f"{where.origin}: the recipe is empty; it needs at least data and model sections")
    if not isinstance(raw, Mapping):
        raise where.error((), f"a recipe must be a mapping of sections ({', '.join(TOP_LEVEL)}), "
                              f"got {show(raw)}")
    given = _mapping(raw, (), where, TOP_LEVEL, required=["data", "model"])
    name = given.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or "\0" in name:   # HDF5 text holds no NUL
        raise where.error(("name",), f"name must be a non-empty string without NUL characters, "
                                     f"got {show(name)}")
    description = given.get("description")
    if description is not None and not isinstance(description, str):
        raise where.error(("description",), f"description must be a string, got {show(description)}")
    seed = _check(given.get("seed", 0), SEED, ("seed",), where)
    data = _data_section(given["data"], where, seed, base_dir)
    model = _model_section(given["model"], where)
    optim = _optim_section(given.get("optim"), where)
    train = _train_section(given.get("train"), where)
    _check_full_batch_update(optim, model, train, where)
    return Recipe(name=name, description=description, seed=seed, path=path, data=data,
                  model=model, optim=optim, train=train)


def validate_data(value, seed, base_dir) -> DataSection:
    """A DataSection from a ``data`` mapping or a source string, outside any recipe
    (errors are located at "data")."""
    where = Where("data", {}, {})
    seed = _check(seed, SEED, ("seed",), where)
    raw = value if isinstance(value, Mapping) else {"source": value}
    return _data_section(dict(raw), where, seed, base_dir)


__all__ = ["Where", "suggest", "validate", "validate_data"]
