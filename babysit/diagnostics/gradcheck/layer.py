"""gradcheck --layer: a user's layer on its own, as the scalar sum(forward(x) * R)."""

from __future__ import annotations

import json
import math

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.gradcheck.bands import CHECKS, DEFAULT_ENTRIES, DEFAULT_H
from babysit.diagnostics.gradcheck.findings import add_findings, check_options, report_metrics
from babysit.diagnostics.gradcheck.model_check import ModelChecker, ProjectionLoss
from babysit.diagnostics.gradcheck.numerical import Differencer
from babysit.errors import BabysitError, ModelError
from babysit.torch import is_torch_layer

MAX_DIMS = 32


def parse_shape(text) -> tuple:
    """``"4,10"`` -> ``(4, 10)``: a batch size and a per-example shape, all >= 1."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise BabysitError(f"--input-shape must be whole numbers separated by commas "
                               f"(N,D or N,C,H,W), got {text!r}") from None
    else:
        try:
            shape = tuple(int(p) for p in text)
        except (TypeError, ValueError):
            raise BabysitError(f"input shape must be a sequence of whole numbers, got {text!r}") from None
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise BabysitError(f"input shape needs a batch size and at least one dimension, all >= 1 "
                           f"(e.g. 4,10 or 2,3,8,8), got {text!r}")
    if len(shape) > MAX_DIMS:   # NumPy's own limit is 64; no layer takes more than a few
        raise BabysitError(f"input shape has {len(shape)} dimensions; at most {MAX_DIMS} "
                           f"(a batch size and the example's shape, e.g. 2,3,8,8)")
    return shape


def parse_kwargs(text) -> dict:
    """``--kwargs`` JSON object -> dict (BabysitError naming the problem otherwise)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BabysitError(f"--kwargs is not valid JSON ({exc.msg} at character {exc.pos}): "
                           f"{text!r}") from None
    if not isinstance(value, dict):
        raise BabysitError(f"--kwargs must be a JSON object like '{{\"out\": 5}}', got {text!r}")
    return value


def make_layer(layer_cls, kwargs, input_shape, rng):
    """Instantiate and (when it can) build a user's layer with float64 parameters."""
    from babysit.engine.builder import check_layer_object, float64_param, wants_rng
    from babysit.engine.init import get_initializer
    from babysit.engine.user_code import fenced, load_layer_class

    layer_cls = load_layer_class(layer_cls)  # a layer class, checked before it is called
    label = layer_cls.__name__
    # anything the user's constructor raises (SystemExit too) is their input
    with fenced(f"{label}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed:"):
        layer = layer_cls(**kwargs)
    check_layer_object(layer, label)
    if wants_rng(layer, label):
        with fenced(f"{label}: setting rng failed:"):
            layer.rng = rng
    build = getattr(layer, "build", None)
    if callable(build):
        with fenced(f"{label}.build(input shape {tuple(input_shape[1:])}) failed:"):
            build(tuple(input_shape[1:]), rng, np.float64, get_initializer("xavier"), 0.0)
    for key, value in list(layer.params.items()):
        layer.params[key] = float64_param(value, label, key)
        layer.grads[key] = np.zeros_like(layer.params[key])
    return layer, label


def _call(label: str, what: str, fn):
    from babysit.engine.user_code import fenced

    with fenced(f"{label}.{what} raised"):  # a user's layer failing (or exiting) is bad input, not our bug
        return fn()


def gradcheck_layer(layer_cls, kwargs, input_shape, seed=0, *, entries=DEFAULT_ENTRIES,
                    all_entries=False, h=DEFAULT_H):
    """Check a standalone layer: ``layer_cls(**kwargs)`` on a random input of ``input_shape``.

    ``layer_cls`` is a class or ``"pkg.module:Class"`` (a NumPy layer, or a torch
    ``nn.Module`` / ``autograd.Function``: see :mod:`babysit.torch.layer`); ``input_shape`` is
    ``(N, *per_example_shape)``. The layer is wrapped in the scalar function
    ``sum(forward(x) * R)`` for a fixed random ``R`` in float64; its parameters
    are float64 copies (built with xavier weights and zero bias when the layer
    has ``build``). Returns a Result (command ``gradcheck``).
    """
    from babysit.engine.model import Model

    _, entries, h = check_options(1, entries, all_entries, h)
    seed = 0 if seed is None else int(seed)
    shape = parse_shape(input_shape)
    kwargs = parse_kwargs(kwargs)
    rng = common.stream(seed, "projection")
    if isinstance(layer_cls, str):
        from babysit.engine.user_code import import_object

        layer_cls = import_object(layer_cls)
    layer = None
    if is_torch_layer(layer_cls):   # an nn.Module or autograd.Function: the torch backend
        from babysit.torch.layer import torch_layer_model

        model, label, X = torch_layer_model(layer_cls, kwargs, shape, rng, ProjectionLoss)
    else:
        layer, label = make_layer(layer_cls, kwargs, shape, rng)
        X = rng.standard_normal(shape)
        out = _call(label, "forward", lambda: layer.forward(X.copy(), True))
        out = np.asarray(out)
        if out.ndim < 1 or out.shape[0] != shape[0]:
            raise ModelError(f"{label}.forward must keep the batch dimension first: input {shape}, "
                             f"output {out.shape}")
        if not np.issubdtype(out.dtype, np.floating) or not np.all(np.isfinite(out)):
            raise ModelError(f"{label}.forward returned non-finite or non-float values "
                             f"(dtype {out.dtype}) for a standard normal input")
        projection = rng.standard_normal(out.shape)
        kind = getattr(layer, "kind", None) or label
        model = Model([layer], ProjectionLoss(projection), 0.0, shape[1:],
                      int(math.prod(out.shape[1:])), np.float64, names=[f"0.{kind}"])
    y = np.zeros(shape[0], dtype=np.int64)
    checker = ModelChecker(model, X, y, Differencer(h, common.stream(seed, "gradcheck"), entries))
    with np.errstate(all="ignore"):
        _call(label, "backward", checker.analytic_pass)
        if layer is not None:
            _check_layer_grads(layer, label, checker, X)
        reports = _call(label, "forward", checker.data_reports)
    for report in reports:  # the wrapper's "0." prefix means nothing to the user
        report.name = report.name.split(".", 1)[1] if report.kind == "param" else report.name
        report.layer = label
    result = common.new_result("gradcheck", None, seed, CHECKS)
    has_kinks = model.has_kinks
    add_findings(result, reports, has_kinks, [label], checker.low_precision)
    result.metrics = report_metrics(reports, has_kinks, h, entries)
    result.metrics.update(layer=label, kwargs=kwargs, input_shape=list(shape))
    return result


def _check_layer_grads(layer, label: str, checker: ModelChecker, X) -> None:
    dx = checker.model.input_grad
    if dx is None or np.shape(dx) != X.shape:
        raise ModelError(f"{label}.backward returned dx of shape {np.shape(dx) if dx is not None else None}, "
                         f"but the input has shape {X.shape}")
    for key, value in layer.params.items():
        grad = layer.grads.get(key)
        if grad is None or np.shape(grad) != value.shape:
            raise ModelError(f"{label}.backward must fill grads[{key!r}] with shape {value.shape}, "
                             f"got {None if grad is None else np.shape(grad)}")


__all__ = ["gradcheck_layer", "parse_shape", "parse_kwargs", "make_layer"]
