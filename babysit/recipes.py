"""Recipes: YAML files -> validated, frozen :class:`Recipe` objects.

A recipe has a top level ``name`` (default: the file's stem), ``description``,
``seed`` (default 0) and four sections, each a frozen dataclass whose
``to_dict()`` gives back the resolved YAML form (defaults filled in)::

    data:   source       builtin:digits | builtin:spiral | builtin:gaussian
                         | path.h5 | path.npz | cifar10:DIR | mnist:DIR, or a
                         builtin with parameters {builtin: spiral, n: 300, ...}
                         (see BUILTINS); required
            val_fraction 0.2, 0 <= x < 1 (used when the source has no val split)
            preprocess   [] ; mean_image | per_channel_mean | standardize | pca
                         | whiten, options as {pca: {components: 20}} (PREPROCESS)
            limit        null, or keep only the first N training examples
    model:  init         xavier | he | small | zeros | {normal: std} (default xavier)
            bias         0.0 (initial bias of every layer)
            layers       required, non-empty: "relu" or {kind: {options}};
                         options per kind in LAYERS, plus init and bias on every
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

import copy
import difflib
import math
import numbers
import re
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from babysit.errors import RecipeError

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled" / "recipes"
DEFAULT_RECIPE = "two-layer-digits"

# ---------------------------------------------------------------------------
# Schema tables (the single statement of what a recipe may contain)

REQUIRED = object()  # marks an option without a default


@dataclass(frozen=True)
class Rule:
    """A check on one scalar: ``phrase`` completes "<key> must be ...".

    Integers also accept integral floats (``1e3``), converted to int.
    """

    phrase: str
    test: Callable[[Any], bool]
    integer: bool = False
    nullable: bool = False


NUMBER = Rule("a finite number", lambda x: True)
POSITIVE = Rule("a positive number", lambda x: x > 0)
NON_NEGATIVE = Rule("a non-negative number", lambda x: x >= 0)
OPEN_UNIT = Rule("a number strictly between 0 and 1", lambda x: 0 < x < 1)
HALF_OPEN_UNIT = Rule("a number in [0, 1)", lambda x: 0 <= x < 1)
KEEP_PROB = Rule("a number in (0, 1]", lambda x: 0 < x <= 1)
POSITIVE_INT = Rule("a positive integer", lambda x: x >= 1, integer=True)
NON_NEGATIVE_INT = Rule("a non-negative integer", lambda x: x >= 0, integer=True)
CLASS_COUNT = Rule("an integer >= 2", lambda x: x >= 2, integer=True)
POSITIVE_INT_OR_NULL = Rule("a positive integer or null", lambda x: x >= 1, integer=True, nullable=True)
NON_NEGATIVE_INT_OR_NULL = Rule("a non-negative integer or null", lambda x: x >= 0, integer=True,
                                nullable=True)
OPEN_UNIT_OR_NULL = Rule("null or a number strictly between 0 and 1", lambda x: 0 < x < 1, nullable=True)
COMPONENTS = Rule("null, a positive integer, or a variance fraction strictly between 0 and 1",
                  lambda x: 0 < x < 1 or (x >= 1 and float(x).is_integer()), nullable=True)

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

# Layer kinds and their options, as the engine's constructors take them
# (DEVELOPING.md, layer table). Every layer also accepts `init` and `bias`.
LAYERS = {
    "affine": {"out": (REQUIRED, POSITIVE_INT)},
    "conv": {"filters": (REQUIRED, POSITIVE_INT), "size": (3, POSITIVE_INT), "stride": (1, POSITIVE_INT),
             "pad": (None, NON_NEGATIVE_INT_OR_NULL)},
    "maxpool": {"size": (2, POSITIVE_INT), "stride": (None, POSITIVE_INT_OR_NULL)},
    "flatten": {},
    "relu": {},
    "leaky_relu": {"alpha": (0.01, NUMBER)},
    "prelu": {"alpha": (0.25, NUMBER)},
    "elu": {"alpha": (1.0, POSITIVE)},
    "maxout": {"out": (REQUIRED, POSITIVE_INT), "pieces": (2, POSITIVE_INT)},
    "sigmoid": {},
    "tanh": {},
    "batchnorm": {"eps": (1e-5, POSITIVE), "momentum": (0.9, HALF_OPEN_UNIT)},
    "dropout": {"keep": (0.5, KEEP_PROB)},
}
CUSTOM = "custom"
INITS = ("xavier", "he", "small", "zeros")
INIT_WITH_STD = ("normal", "small")
LOSSES = ("softmax", "svm")
UPDATES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
DECAYS = {
    "step": {"every": (REQUIRED, POSITIVE_INT), "factor": (0.5, KEEP_PROB)},
    "exp": {"rate": (REQUIRED, NON_NEGATIVE)},
    "inv_t": {"rate": (REQUIRED, NON_NEGATIVE)},
}
DTYPES = ("float32", "float64")
_CLASS_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


# ---------------------------------------------------------------------------
# Immutable containers


class FrozenDict(dict):
    """A read-only, hashable, picklable dict (nested values frozen too)."""

    def _readonly(self, *args, **kwargs):
        raise TypeError("recipe sections are frozen: use recipe.with_overrides(...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore

    def __hash__(self):  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))

    def __reduce__(self):
        return FrozenDict, (dict(self),)

    def __deepcopy__(self, memo):
        return self


def freeze(value):
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value):
    """Plain dicts and lists (the YAML form) from frozen values."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Sections


def _spec_to_yaml(name: str, options: Mapping, extra: Mapping | None = None):
    """``"relu"`` when there is nothing to say, else ``{name: {options}}``."""
    merged = {**thaw(options), **{k: thaw(v) for k, v in (extra or {}).items() if v is not None}}
    return {name: merged} if merged else name


@dataclass(frozen=True)
class DataSection:
    """Where the examples come from and how they are prepared.

    ``source`` is the canonical source string (``"builtin:spiral"``,
    ``"data/x.h5"``, ``"cifar10:DIR"``); ``params`` the builtin's resolved
    parameters; ``preprocess`` a tuple of ``(step name, options)``; ``seed``
    the recipe seed (val split, builtin generators); ``base_dir`` the recipe
    file's directory, searched for relative paths after the current directory.
    """

    source: str
    params: FrozenDict = field(default_factory=FrozenDict)
    val_fraction: float = 0.2
    preprocess: tuple = ()
    limit: int | None = None
    seed: int = 0
    base_dir: str | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        """``builtin``, ``hdf5``, ``npz``, ``cifar10`` or ``mnist``."""
        return source_kind(self.source)[0]

    @property
    def location(self) -> str:
        """The builtin's name, or the file or directory path as written."""
        return source_kind(self.source)[1]

    def to_dict(self) -> dict:
        if self.params:
            source: Any = {"builtin": self.location, **thaw(self.params)}
        else:
            source = self.source
        return {"source": source, "val_fraction": self.val_fraction,
                "preprocess": [_spec_to_yaml(name, options) for name, options in self.preprocess],
                "limit": self.limit}


@dataclass(frozen=True)
class LayerSpec:
    """One entry of ``model.layers``: ``kind``, resolved ``options``, optional ``init``/``bias``.

    For custom layers ``options`` is ``{"class": "pkg.mod:Class", "kwargs": {...}}``.
    """

    kind: str
    options: FrozenDict = field(default_factory=FrozenDict)
    init: Any = None
    bias: float | None = None

    def to_dict(self):
        options = dict(self.options)
        if self.kind == CUSTOM and not options.get("kwargs"):
            options.pop("kwargs", None)
        return _spec_to_yaml(self.kind, options, {"init": self.init, "bias": self.bias})


@dataclass(frozen=True)
class ModelSection:
    """Layers, default init and bias, loss and L2 strength; ``to_dict()`` feeds ``build_model``."""

    layers: tuple
    init: Any = "xavier"
    bias: float = 0.0
    loss: str = "softmax"
    reg: float = 0.0

    def to_dict(self) -> dict:
        return {"init": thaw(self.init), "bias": self.bias,
                "layers": [layer.to_dict() for layer in self.layers],
                "loss": self.loss, "reg": self.reg}


@dataclass(frozen=True)
class OptimSection:
    """Update rule and its hyperparameters; ``decay`` is None or ``{kind, ...}``."""

    update: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    decay_rate: float = 0.99
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    decay: FrozenDict | None = None

    def to_dict(self) -> dict:
        return {"update": self.update, "lr": self.lr, "momentum": self.momentum,
                "decay_rate": self.decay_rate, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps, "decay": thaw(self.decay)}


@dataclass(frozen=True)
class TrainSection:
    """Training budget: ``epochs``, ``batch_size``, ``dtype``, ``average`` (Polyak beta or None)."""

    epochs: int = 10
    batch_size: int = 100
    dtype: str = "float32"
    average: float | None = None

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "dtype": self.dtype,
                "average": self.average}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. ``path`` is the file as given or ``bundled:<name>``."""

    name: str
    data: DataSection
    model: ModelSection
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    seed: int = 0
    description: str | None = None
    path: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        out: dict = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out.update(seed=self.seed, data=self.data.to_dict(), model=self.model.to_dict(),
                   optim=self.optim.to_dict(), train=self.train.to_dict())
        return out

    def to_yaml(self) -> str:
        """The resolved recipe as YAML text; ``recipe_from_yaml`` reads it back to an equal Recipe."""
        return yaml.dump(_flow_leaves(self.to_dict()), Dumper=_Dumper, sort_keys=False,
                         default_flow_style=False, allow_unicode=True, width=100)

    def with_seed(self, seed) -> "Recipe":
        """This recipe with ``seed`` as its seed (the data split follows it); None keeps it.

        The one way a command-line ``--seed`` or a ``seed=`` argument reaches a
        recipe, so the Python API and the CLI give the same numbers.
        """
        if seed is None or (not isinstance(seed, bool) and seed == self.seed):
            return self
        return self.with_overrides({"seed": seed})

    def with_overrides(self, overrides) -> "Recipe":
        """A new validated Recipe with dotted overrides applied (see :func:`load_recipe`)."""
        origin = self.path or self.name
        raw = self.to_dict()
        sources = _apply_overrides(raw, overrides, {})
        where = _Where(origin, {}, sources)
        return _validate(raw, where, default_name=self.name, path=self.path,
                         base_dir=self.data.base_dir)


# ---------------------------------------------------------------------------
# YAML with line numbers


_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
# YAML 1.2 core floats (1e-3 included); plain integers stay with the int resolver.
_FLOAT_RE = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                              |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                              |[0-9][0-9_]*[eE][-+]?[0-9]+)
                            |[-+]?\.(?:inf|Inf|INF)
                            |\.(?:nan|NaN|NAN))$""", re.X)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


def _yaml12_resolvers():
    table = {first: [(tag, rx) for tag, rx in resolvers if tag not in (_FLOAT_TAG, _BOOL_TAG)]
             for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    for first in "tTfF":
        table.setdefault(first, []).insert(0, (_BOOL_TAG, _BOOL_RE))
    for first in "-+0123456789.":
        table.setdefault(first, []).insert(0, (_FLOAT_TAG, _FLOAT_RE))
    return table


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when present
    """Safe loader reading numbers and booleans the YAML 1.2 way."""

    yaml_implicit_resolvers = _yaml12_resolvers()


class _Dumper(yaml.SafeDumper):
    """Quotes exactly the strings that :class:`_Loader` would read as non-strings."""

    yaml_implicit_resolvers = _yaml12_resolvers()


class _FlowDict(dict):
    """Written in flow style: ``{out: 50}``."""


class _FlowList(list):
    """Written in flow style: ``[mean_image]``."""


_Dumper.add_representer(_FlowDict, lambda d, v: d.represent_mapping(
    "tag:yaml.org,2002:map", v.items(), flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence(
    "tag:yaml.org,2002:seq", v, flow_style=True))


def _flow_leaves(value, depth=0):
    """Sections and lists of layers in block style, small leaf collections in flow style."""
    if isinstance(value, dict):
        inner = {k: _flow_leaves(v, depth + 1) for k, v in value.items()}
        leaf = depth >= 2 and not any(isinstance(v, (dict, list)) for v in value.values())
        return _FlowDict(inner) if leaf else inner
    if isinstance(value, list):
        inner = [_flow_leaves(v, depth + 1) for v in value]
        leaf = depth >= 2 and not any(isinstance(v, (dict, list)) for v in value)
        return _FlowList(inner) if leaf else inner
    return value


_MAX_NODES = 100_000
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_MAX_DEPTH = 64
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def _show(value) -> str:
    """Short printable form of a user's value for messages."""
    return _repr.repr(value)


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _at(path) -> str:
    return _dotted(path) if path else "the top level"


def _yaml_problem(exc: yaml.YAMLError) -> tuple[str, int | None]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context and "could not determine" not in problem else problem
    return " ".join(text.split()), (mark.line + 1 if mark is not None else None)


def _compose(text: str, origin: str):
    """Parse YAML text into plain values plus ``{key path: line}``."""
    loader = None
    lines: dict = {(): 1}
    budget = [_MAX_NODES]

    def build(node, path):
        budget[0] -= 1
        if budget[0] < 0 or len(path) > _MAX_DEPTH:
            raise RecipeError(f"{origin}: the YAML is nested too deeply or too large "
                              f"(line {node.start_mark.line + 1})")
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise RecipeError(f"{origin}: unsupported YAML tag {node.tag!r} at {_at(path)} "
                              f"(line {node.start_mark.line + 1})")
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # merge keys (<<: *anchor)
            out = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                key = loader.construct_object(key_node, deep=True) \
                    if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    raise RecipeError(f"{origin}: keys must be names, got {_show(key)} at "
                                      f"{_at(path)} (line {line})")
                if key in out:
                    raise RecipeError(f"{origin}: duplicate key {key!r} at {_at(path)} (line {line})")
                lines[path + (key,)] = line
                out[key] = build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, path + (i,)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        loader = _Loader(text)  # the reader already rejects control characters
        node = loader.get_single_node()
        value = None if node is None else build(node, ())
    except yaml.YAMLError as exc:
        problem, line = _yaml_problem(exc)
        where = f" (line {line})" if line is not None else ""
        raise RecipeError(f"{origin}: YAML syntax error{where}: {problem}") from None
    except RecursionError:
        raise RecipeError(f"{origin}: the YAML is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, lines


# ---------------------------------------------------------------------------
# Error locations


class _Where:
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
                return RecipeError(f"{label}: {message}" + _suggest(word, candidates))
        for n in range(len(path), -1, -1):
            prefix = path[:n]
            if prefix in self.lines:
                text = f"{text} (line {self.lines[prefix]})"
                break
        return RecipeError(text + _suggest(word, candidates))


# Names people bring from other tools, mapped to this schema's keys.
_ALIASES = {"learning_rate": "lr", "lr_decay": "decay", "optimizer": "update", "weight_decay": "reg",
            "l2": "reg", "num_epochs": "epochs", "batch": "batch_size", "mom": "momentum",
            "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps", "fc": "affine",
            "linear": "affine", "dense": "affine", "conv2d": "conv", "pool": "maxpool",
            "max_pool": "maxpool", "bn": "batchnorm", "batch_norm": "batchnorm"}


def _suggest(word, candidates) -> str:
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
# Validation helpers


def _mapping(value, path, where: _Where, keys, required=(), what=None) -> dict:
    """Check a mapping: only ``keys``, all of ``required``. None counts as empty."""
    what = what or _at(path)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise where.error(path, f"{what} must be a mapping, got {_show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise where.error(path, f"keys must be names, got {_show(key)} at {what}")
        if key not in keys:
            raise where.error(tuple(path) + (key,), f"unknown key {key!r} at {what}", keys)
    for key in required:
        if key not in value:
            if not path:
                raise where.error(path, f"the recipe has no {key!r} section (data and model are required)")
            raise where.error(path, f"{what} needs the key {key!r}")
    return dict(value)


def _check(value, rule: Rule, path, where: _Where):
    """Validate a scalar against ``rule``; returns it as int/float (or None)."""
    if value is None and rule.nullable:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for any float
            number = math.inf
        if math.isfinite(number):
            if rule.integer and number.is_integer():
                number = int(value) if isinstance(value, numbers.Integral) else int(number)
                if rule.test(number):
                    return number
            elif not rule.integer and rule.test(number):
                # keep integers integral (pca components: 20 stays 20)
                return int(value) if isinstance(value, numbers.Integral) else number
    raise where.error(path, f"{_dotted(path)} must be {rule.phrase}, got {_show(value)}")


def _choice(value, choices, path, where: _Where) -> str:
    if isinstance(value, str) and value in choices:
        return value
    if isinstance(value, str):
        raise where.error(path, f"unknown value {value!r} for {_dotted(path)}", choices, word=value)
    raise where.error(path, f"{_dotted(path)} must be one of {', '.join(choices)}, got {_show(value)}")


def _options(value, schema: Mapping, path, where: _Where, extra=(), what=None) -> dict:
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


def _name_and_options(entry, path, where: _Where, what: str):
    """``"relu"`` or ``{"affine": {...}}`` -> ``("affine", options or None)``."""
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, Mapping) and len(entry) == 1:
        (name, options), = entry.items()
        if isinstance(name, str):
            return name, options
    if isinstance(entry, Mapping) and len(entry) > 1:
        names = ", ".join(repr(k) for k in entry)
        raise where.error(path, f"{_dotted(path)} must be one {what} with its options, got the keys "
                                f"{names}: put options such as init inside, e.g. "
                                f"{{affine: {{out: 10, init: small}}}}")
    raise where.error(path, f"{_dotted(path)} must be a {what} name or a one-key mapping "
                            f"{{{what}: {{options}}}}, got {_show(entry)}")


def _init_spec(value, path, where: _Where):
    if isinstance(value, str):
        return _choice(value, INITS, path, where)
    if isinstance(value, Mapping) and len(value) == 1:
        (name, std), = value.items()
        if name in INIT_WITH_STD:
            return FrozenDict({name: _check(std, POSITIVE, tuple(path) + (name,), where)})
        raise where.error(tuple(path) + (name,), f"unknown init {name!r} at {_dotted(path)}", INIT_WITH_STD)
    raise where.error(path, f"{_dotted(path)} must be one of {', '.join(INITS)} or {{normal: std}}, "
                            f"got {_show(value)}")


# ---------------------------------------------------------------------------
# Sections


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


def _source(value, path, where: _Where) -> tuple[str, FrozenDict]:
    """Canonical source string plus resolved builtin parameters."""
    if isinstance(value, Mapping):
        if "builtin" not in value:
            raise where.error(path, f"{_dotted(path)} as a mapping needs the key 'builtin' "
                                    f"(e.g. {{builtin: spiral, n: 300}})")
        name = _choice(value["builtin"], list(BUILTINS), tuple(path) + ("builtin",), where)
        params = {k: v for k, v in value.items() if k != "builtin"}
        resolved = _options(params, BUILTINS[name], path, where, what=f"{_dotted(path)} ({name})")
        return f"builtin:{name}", FrozenDict(resolved)
    if not isinstance(value, str) or not value.strip():
        raise where.error(path, f"{_dotted(path)} must be a string such as builtin:digits or a "
                                f"mapping {{builtin: spiral, ...}}, got {_show(value)}")
    try:
        kind, location = source_kind(value)
    except ValueError as exc:
        raise where.error(path, str(exc)) from None
    if kind == "builtin":
        if location not in BUILTINS:
            raise where.error(path, f"unknown builtin data set {location!r} at {_dotted(path)}",
                              [f"builtin:{b}" for b in BUILTINS], word=value)
        defaults = {k: default for k, (default, _) in BUILTINS[location].items()}
        return value, FrozenDict(defaults)
    return value, FrozenDict()


def _data_section(raw, where: _Where, seed: int, base_dir) -> DataSection:
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
                          f"data.preprocess must be a list of steps, got {_show(steps)}")
    preprocess = []
    for i, entry in enumerate(steps):
        entry_path = path + ("preprocess", i)
        name, options = _name_and_options(entry, entry_path, where, "preprocessing step")
        if name not in PREPROCESS:
            raise where.error(entry_path, f"unknown preprocessing step {name!r} at {_dotted(entry_path)}",
                              PREPROCESS, word=name)
        resolved = _options(options, PREPROCESS[name], entry_path + (name,), where)
        preprocess.append((name, FrozenDict(resolved)))
    limit = _check(given.get("limit"), POSITIVE_INT_OR_NULL, path + ("limit",), where)
    return DataSection(source=source, params=params, val_fraction=float(val_fraction),
                       preprocess=tuple(preprocess), limit=limit, seed=seed, base_dir=base_dir)


def _layer(entry, path, where: _Where) -> LayerSpec:
    kind, options = _name_and_options(entry, path, where, "layer")
    kind_path = tuple(path) + (kind,)
    if kind == CUSTOM:
        if isinstance(options, str):
            options = {"class": options}
        given = _mapping(options, kind_path, where, ["class", "kwargs", "init", "bias"],
                         required=["class"])
        cls = given["class"]
        if not isinstance(cls, str) or not _CLASS_PATH.match(cls):
            raise where.error(kind_path + ("class",), f"{_dotted(kind_path)} must name a class as "
                                                      f"'pkg.module:Class', got {_show(cls)}")
        kwargs = _mapping(given.get("kwargs"), kind_path + ("kwargs",), where,
                          [k for k in (given.get("kwargs") or {}) if isinstance(k, str)])
        resolved = {"class": cls, "kwargs": kwargs}
    elif kind in LAYERS:
        given = _options(options, LAYERS[kind], kind_path, where, extra=("init", "bias"))
        resolved = {k: v for k, v in given.items() if k not in ("init", "bias")}
    else:
        raise where.error(path, f"unknown layer kind {kind!r} at {_dotted(path)}", [*LAYERS, CUSTOM],
                          word=kind)
    init = _init_spec(given["init"], kind_path + ("init",), where) if "init" in given else None
    bias = _check(given["bias"], NUMBER, kind_path + ("bias",), where) if "bias" in given else None
    return LayerSpec(kind=kind, options=freeze(resolved), init=init,
                     bias=None if bias is None else float(bias))


def _model_section(raw, where: _Where) -> ModelSection:
    path = ("model",)
    given = _mapping(raw, path, where, ["init", "bias", "layers", "loss", "reg"], required=["layers"],
                     what="model")
    layers = given["layers"]
    if not isinstance(layers, list) or not layers:
        raise where.error(path + ("layers",), f"model.layers must be a non-empty list of layers, "
                                              f"got {_show(layers)}")
    specs = tuple(_layer(entry, path + ("layers", i), where) for i, entry in enumerate(layers))
    return ModelSection(
        layers=specs,
        init=_init_spec(given.get("init", "xavier"), path + ("init",), where),
        bias=float(_check(given.get("bias", 0.0), NUMBER, path + ("bias",), where)),
        loss=_choice(given.get("loss", "softmax"), LOSSES, path + ("loss",), where),
        reg=float(_check(given.get("reg", 0.0), NON_NEGATIVE, path + ("reg",), where)))


def _optim_section(raw, where: _Where) -> OptimSection:
    path = ("optim",)
    rules = {"lr": POSITIVE, "momentum": HALF_OPEN_UNIT, "decay_rate": OPEN_UNIT,
             "beta1": HALF_OPEN_UNIT, "beta2": HALF_OPEN_UNIT, "eps": POSITIVE}
    given = _mapping(raw, path, where, ["update", *rules, "decay"], what="optim")
    values = {key: float(_check(given[key], rule, path + (key,), where))
              for key, rule in rules.items() if key in given}
    update = _choice(given.get("update", "sgd"), UPDATES, path + ("update",), where)
    decay = given.get("decay")
    if decay is None or decay == "none":
        decay = None
    else:
        decay_path = path + ("decay",)
        if not isinstance(decay, Mapping) or "kind" not in decay:
            raise where.error(decay_path, "optim.decay must be none or a mapping such as "
                                          f"{{kind: step, every: 5, factor: 0.5}}, got {_show(decay)}")
        kind = _choice(decay["kind"], list(DECAYS), decay_path + ("kind",), where)
        rest = {k: v for k, v in decay.items() if k != "kind"}
        decay = FrozenDict({"kind": kind, **_options(rest, DECAYS[kind], decay_path, where,
                                                     what=f"optim.decay ({kind})")})
    return OptimSection(update=update, decay=decay, **values)


def _train_section(raw, where: _Where) -> TrainSection:
    path = ("train",)
    given = _mapping(raw, path, where, ["epochs", "batch_size", "dtype", "average"], what="train")
    return TrainSection(
        epochs=_check(given.get("epochs", 10), POSITIVE_INT, path + ("epochs",), where),
        batch_size=_check(given.get("batch_size", 100), POSITIVE_INT, path + ("batch_size",), where),
        dtype=_choice(given.get("dtype", "float32"), DTYPES, path + ("dtype",), where),
        average=_check(given.get("average"), OPEN_UNIT_OR_NULL, path + ("average",), where))


TOP_LEVEL = ("name", "description", "seed", "data", "model", "optim", "train")


def _validate(raw, where: _Where, default_name: str, path, base_dir) -> Recipe:
    if raw is None:
        raise RecipeError(f"{where.origin}: the recipe is empty; it needs at least data and model sections")
    if not isinstance(raw, Mapping):
        raise where.error((), f"a recipe must be a mapping of sections ({', '.join(TOP_LEVEL)}), "
                              f"got {_show(raw)}")
    given = _mapping(raw, (), where, TOP_LEVEL, required=["data", "model"])
    name = given.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise where.error(("name",), f"name must be a non-empty string, got {_show(name)}")
    description = given.get("description")
    if description is not None and not isinstance(description, str):
        raise where.error(("description",), f"description must be a string, got {_show(description)}")
    seed = _check(given.get("seed", 0), NON_NEGATIVE_INT, ("seed",), where)
    return Recipe(name=name, description=description, seed=seed, path=path,
                  data=_data_section(given["data"], where, seed, base_dir),
                  model=_model_section(given["model"], where),
                  optim=_optim_section(given.get("optim"), where),
                  train=_train_section(given.get("train"), where))


# ---------------------------------------------------------------------------
# Overrides


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)


def _override_items(overrides) -> list[tuple[str, Any, str]]:
    """``{"a.b": v}`` or ``["a.b=v", ...]`` -> ``[(key, value, "--set a.b=v")]``."""
    if overrides is None:
        return []
    items = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            shown = _printable(value) if isinstance(value, str) else _show(value)
            items.append((key, value, f"--set {_printable(str(key))}={shown}"))
        return items
    if isinstance(overrides, str):
        overrides = [overrides]
    for text in overrides:
        if not isinstance(text, str) or "=" not in text:
            raise RecipeError(f"--set expects KEY=VALUE (e.g. optim.lr=1e-3), got {_show(text)}")
        key, _, value = text.partition("=")
        items.append((key.strip(), value, f"--set {_printable(key.strip())}={_printable(value)}"))
    return items


def _override_value(value, label: str):
    if not isinstance(value, str):
        return copy.deepcopy(value)
    value = value.strip()
    if not value:
        return None
    parsed, _ = _compose(value, label)
    return parsed


def _apply_overrides(raw, overrides, lines: dict) -> dict:
    """Set each dotted key in ``raw`` (in place); returns ``{path: label}`` for error messages.

    Missing mapping keys are created (validation then names them if unknown);
    list indexes must exist. A layer or step written as a bare name (``relu``)
    is expanded when the path goes into it (``model.layers.1.relu.init``).
    """
    sources: dict = {}
    for key, value, label in _override_items(overrides):
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise RecipeError(f"{label}: the key must be a dotted path such as optim.lr")
        value = _override_value(value, label)
        parts = key.split(".")
        if not isinstance(raw, dict):
            raise RecipeError(f"{label}: the recipe is not a mapping")
        container, walked = raw, []
        for i, part in enumerate(parts):
            if isinstance(container, list):
                if not part.isdigit() or int(part) >= len(container):
                    raise RecipeError(f"{label}: {_dotted(walked)} is a list of {len(container)} entries; "
                                      f"use an index 0..{len(container) - 1}, got {part!r}")
                step: Any = int(part)
            elif isinstance(container, dict):
                step = part
            else:
                raise RecipeError(f"{label}: {_dotted(walked)} is {_show(container)}, "
                                  f"not a mapping or a list")
            walked.append(step)
            if i == len(parts) - 1:
                container[step] = value
                break
            child = container.get(step) if isinstance(container, dict) else container[step]
            if child is None:
                child = {}
            elif isinstance(child, str) and parts[i + 1] == child:
                child = {child: {}}
            container[step] = child
            container = child
        path = tuple(walked)
        for known in [p for p in lines if p[:len(path)] == path]:
            del lines[known]
        sources = {p: s for p, s in sources.items() if p[:len(path)] != path}
        sources[path] = label
    return sources


# ---------------------------------------------------------------------------
# Public entry points


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
                      + _suggest(text, bundled))


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
    raw, lines = _compose(text, origin)
    if raw is None and not overrides:
        raise RecipeError(f"{origin}: the recipe is empty; it needs at least data and model sections")
    if raw is None:
        raw = {}
    sources = _apply_overrides(raw, overrides, lines) if isinstance(raw, dict) else {}
    return _validate(raw, _Where(origin, lines, sources), default_name=default_name, path=path,
                     base_dir=base_dir)


def data_section(value, seed: int | None = None, base_dir=None) -> DataSection:
    """A DataSection from a source string (``"builtin:digits"``, ``"x.h5"``), a ``data``
    mapping, or a DataSection (returned as is unless ``seed`` is given)."""
    if isinstance(value, DataSection):
        return value if seed is None or seed == value.seed else replace(value, seed=seed)
    where = _Where("data", {}, {})
    seed = _check(0 if seed is None else seed, NON_NEGATIVE_INT, ("seed",), where)
    raw = value if isinstance(value, Mapping) else {"source": value}
    return _data_section(dict(raw), where, seed, base_dir)


def list_recipes() -> list[tuple[str, str, str]]:
    """``[(name, description, path)]`` of the bundled recipes, broken ones as ``broken/<name>``."""
    out = []
    for name, file in bundled_recipes().items():
        recipe = load_recipe(name)
        out.append((name, recipe.description or "", str(file)))
    return out


__all__ = ["Recipe", "DataSection", "ModelSection", "OptimSection", "TrainSection", "LayerSpec",
           "load_recipe", "recipe_from_yaml", "data_section", "list_recipes", "bundled_recipes",
           "source_kind", "BUILTINS", "PREPROCESS", "LAYERS", "DEFAULT_RECIPE"]
