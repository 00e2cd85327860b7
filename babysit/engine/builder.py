"""The builder: a recipe's ``model`` section -> a :class:`~babysit.engine.model.Model`.

Parameter names are ``"<layer index>.<param name>"`` (``"0.W"``, ``"3.gamma"``),
the index being the position in the recipe's layer list; layer names are
``"<index>.<kind>"`` (``"1.relu"``). User layers (``custom:`` entries) are imported, checked
against the layer contract before anything of them is called, and run fenced
(:mod:`babysit.engine.user_code`) and checked by the Model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from babysit.engine.model import Model
from babysit.engine.user_code import fenced, import_object, load_layer_class
from babysit.errors import ModelError
from babysit.validation import as_mapping


def split_layer_entry(entry):
    """``"relu"`` or ``{"affine": {"out": 50}}`` -> ``("affine", {"out": 50})``."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and len(entry) == 1:
        (kind, options), = entry.items()
        if options is None:
            options = {}
        if kind == "custom" and (isinstance(options, str) or isinstance(options, type)):
            options = {"class": options}
        if not isinstance(options, Mapping):
            raise ModelError(f"options of layer {kind!r} must be a mapping, got {options!r}")
        return str(kind), dict(options)
    raise ModelError(f"a layer must be a name or a one-key mapping, got {entry!r}")


def user_attribute(layer, name: str, where: str):
    """``getattr(layer, name, None)`` on a user's layer: a property or ``__getattr__``
    that raises (anything, not only AttributeError) is their error, a ModelError."""
    with fenced(f"{where}: reading its attribute {name!r} raised"):
        return getattr(layer, name, None)


def wants_rng(layer, where: str) -> bool:
    """Whether ``layer`` takes the model's generator (an ``rng`` attribute or ``uses_randomness``)."""
    with fenced(f"{where}: reading its attribute 'rng' raised"):
        has_rng = hasattr(layer, "rng")
    return has_rng or bool(user_attribute(layer, "uses_randomness", where))


def float64_param(value, where: str, key: str) -> np.ndarray:
    """A user layer's parameter as a float64 array; ModelError when it is not numbers."""
    with fenced(f"{where}: params[{key!r}] is not an array of numbers:"):
        return np.array(value, dtype=np.float64)


def check_layer_object(layer, where: str) -> None:
    """Raise ModelError unless ``layer`` follows the layer interface."""
    missing = [m for m in ("forward", "backward") if not callable(user_attribute(layer, m, where))]
    for attr in ("params", "grads"):
        if not isinstance(user_attribute(layer, attr, where), dict):
            missing.append(attr)
    if missing:
        raise ModelError(f"{where} is not a layer: it lacks {', '.join(missing)} "
                         "(a layer needs params and grads dicts, forward(x, train) and backward(dout))")
    if set(layer.params) != set(layer.grads) and layer.grads:
        raise ModelError(f"{where}: params and grads must have the same keys "
                         f"(params {sorted(layer.params)}, grads {sorted(layer.grads)})")


def infer_output_shape(layer, input_shape, dtype, where: str) -> tuple:
    """Output shape of a user layer without ``build``: run it on a small dummy batch."""
    with fenced(f"{where}: forward failed on input shape (2, {', '.join(map(str, input_shape))}):"):
        out = layer.forward(np.zeros((2,) + tuple(input_shape), dtype=dtype), False)
    out = np.asarray(out)
    if out.ndim < 1 or out.shape[0] != 2:
        raise ModelError(f"{where}: forward must keep the batch dimension first, got shape {out.shape}")
    return tuple(out.shape[1:])


def build_model(model, input_shape, num_classes, rng=None, dtype=np.float32) -> Model:
    """Build a :class:`Model` from a recipe's ``model`` section.

    ``model`` is the validated recipe section (anything with ``to_dict()``) or a
    plain mapping in the recipe's YAML form::

        {"init": "xavier", "bias": 0.0, "loss": "softmax", "reg": 1e-6,
         "layers": [{"affine": {"out": 50}}, "relu", {"affine": {"out": 10, "init": "small"}}]}

    ``input_shape`` is the per-example shape (``(64,)`` or ``(C, H, W)``). The
    last layer must produce ``num_classes`` scores. All randomness (weights,
    dropout masks) comes from ``rng``.
    """
    from babysit.engine.init import get_initializer
    from babysit.engine.layers import LAYERS
    from babysit.engine.losses import get_loss

    section = as_mapping(model, "the model section", ModelError)
    if rng is None:
        rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    default_init = section.get("init", "xavier")
    default_bias = float(section.get("bias", 0.0) or 0.0)
    entries = section.get("layers") or []
    if isinstance(entries, (str, bytes, Mapping)) or not hasattr(entries, "__iter__"):
        raise ModelError(f"model layers must be a list of layers, got {entries!r}")
    entries = list(entries)
    if not entries:
        raise ModelError("the model has no layers")
    layers, names, user_layers = [], [], {}
    shape = tuple(int(s) for s in input_shape)
    for index, entry in enumerate(entries):
        kind, options = split_layer_entry(entry)
        init_spec = options.pop("init", None)
        bias = options.pop("bias", None)
        where = f"layer {index} ({kind})"
        if kind == "custom":
            cls = options.pop("class", None)
            kwargs = options.pop("kwargs", None) or {}
            kwargs.update(options)
            if cls is None:
                raise ModelError(f"layer {index} (custom) names no class: use "
                                 "{custom: 'pkg.module:Class'} or {custom: {class: ..., kwargs: {...}}}")
            cls = load_layer_class(cls)
            where = f"layer {index} (custom {cls.__name__})"
            with fenced(f"{where}: constructor failed:"):
                layer = cls(**kwargs)
            check_layer_object(layer, where)
        else:
            cls = LAYERS.get(kind)
            if cls is None:
                raise ModelError(f"unknown layer {kind!r}; known layers: {', '.join(sorted(LAYERS))}")
            try:
                layer = cls(**options)
            except (TypeError, ValueError) as exc:   # unknown option / bad option value
                raise ModelError(f"{where}: {exc}") from None
        init = get_initializer(init_spec if init_spec is not None else default_init)
        bias_value = default_bias if bias is None else float(bias)
        if wants_rng(layer, where):
            with fenced(f"{where}: setting rng failed:"):
                layer.rng = rng
        build = getattr(layer, "build", None)
        if build is not None and kind == "custom":
            with fenced(f"{where}: build failed:"):
                shape = tuple(int(s) for s in build(shape, rng, dtype, init, bias_value))
        elif build is not None:
            try:  # an engine layer's build fails only on bad shapes/options
                shape = tuple(int(s) for s in build(shape, rng, dtype, init, bias_value))
            except (ValueError, TypeError) as exc:
                raise ModelError(f"{where}: {exc}") from None
        else:
            shape = infer_output_shape(layer, shape, dtype, where)
        if any(s <= 0 for s in shape):
            raise ModelError(f"{where}: output shape {shape} is empty (input too small for this layer)")
        if kind == "custom":
            user_layers[index] = shape
        layers.append(layer)
        names.append(f"{index}.{kind}")
    if int(math.prod(shape)) != int(num_classes) or len(shape) != 1:
        raise ModelError(f"the last layer outputs shape {shape} but the data has {num_classes} classes: "
                         f"make the last layer an affine with out: {num_classes}")
    loss = get_loss(section.get("loss", "softmax"))
    model = Model(layers, loss, section.get("reg", 0.0) or 0.0, input_shape, num_classes, dtype, names,
                  user_layers=user_layers)
    if dtype == np.float64:
        promote_user_params(model)
    return model


def promote_user_params(model: Model) -> None:
    """Give user layers float64 copies of parameters they hold in another dtype.

    A float64 model is what gradient checks run on: every parameter must be
    float64 there, whatever dtype a user's layer chose for its own arrays.
    """
    for index in model.user_layers:
        layer = model.layers[index]
        for key, value in list(layer.params.items()):
            if not (isinstance(value, np.ndarray) and value.dtype == np.float64):
                layer.params[key] = float64_param(value, f"layer {index} (custom "
                                                  f"{type(layer).__name__})", key)
                model.params[f"{index}.{key}"] = layer.params[key]


__all__ = ["build_model", "import_object", "split_layer_entry", "check_layer_object", "user_attribute",
           "wants_rng", "float64_param",
           "infer_output_shape", "promote_user_params"]
