"""The frozen recipe: FrozenDict and freeze/thaw, the section dataclasses and Recipe.

Every section is a frozen dataclass whose ``to_dict()`` is the resolved YAML
form (defaults filled in, plain dicts and lists); ``Recipe.to_yaml()`` writes
it and ``recipe_from_yaml`` reads it back to an equal Recipe. The sections are
built only by :mod:`babysit.recipes.validate`, so their fields always hold
checked values; their defaults come from the schema tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from babysit.recipes.schema import CUSTOM, OPTIM, source_kind
from babysit.recipes.yaml12 import dump


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
class TorchModelSection:
    """A PyTorch model (extra ``babysit[torch]``): ``torch`` names a factory
    ``pkg.module:factory(input_shape, num_classes, **kwargs) -> nn.Module``.

    ``init`` is ``module`` (keep the module's own) or one of babysit's inits;
    ``dropout: false`` turns the module's dropout modules off. ``to_dict()``
    feeds ``babysit.torch.builder.build_torch_model``. ``layers`` is empty:
    there is no babysit layer list to edit.
    """

    torch: str
    kwargs: FrozenDict = field(default_factory=FrozenDict)
    init: Any = "module"
    loss: str = "softmax"
    reg: float = 0.0
    dropout: bool = True
    layers = ()

    def to_dict(self) -> dict:
        return {"torch": self.torch, "kwargs": thaw(self.kwargs), "init": thaw(self.init),
                "loss": self.loss, "reg": self.reg, "dropout": self.dropout}


@dataclass(frozen=True)
class OptimSection:
    """Update rule and its hyperparameters; ``decay`` is None or ``{kind, ...}``."""

    update: str = "sgd"
    lr: float = OPTIM["lr"][0]
    momentum: float = OPTIM["momentum"][0]
    decay_rate: float = OPTIM["decay_rate"][0]
    beta1: float = OPTIM["beta1"][0]
    beta2: float = OPTIM["beta2"][0]
    eps: float = OPTIM["eps"][0]
    memory: int = OPTIM["memory"][0]
    decay: FrozenDict | None = None

    def to_dict(self) -> dict:
        return {"update": self.update, "lr": self.lr, "momentum": self.momentum,
                "decay_rate": self.decay_rate, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps, "memory": self.memory, "decay": thaw(self.decay)}


@dataclass(frozen=True)
class TrainSection:
    """Training budget: ``epochs``, ``batch_size`` (an int, or ``"full"``: the whole
    training set, one step per epoch), ``dtype``, ``average`` (Polyak beta or None)."""

    epochs: int = 10
    batch_size: int | str = 100
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
        return dump(self.to_dict())

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
        from babysit.recipes.overrides import apply_overrides
        from babysit.recipes.validate import Where, validate

        raw = self.to_dict()
        sources = apply_overrides(raw, overrides, {})
        return validate(raw, Where(self.path or self.name, {}, sources), default_name=self.name,
                        path=self.path, base_dir=self.data.base_dir)


__all__ = ["FrozenDict", "freeze", "thaw", "DataSection", "LayerSpec", "ModelSection", "TorchModelSection",
           "OptimSection",
           "TrainSection", "Recipe"]
