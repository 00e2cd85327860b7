"""The babysitting protocol on a module and arrays, from Python (notebooks)::

    import babysit.torch
    result = babysit.torch.diagnose(net, X, y)                      # doctor: every part
    result = babysit.torch.diagnose(net, X, y, command="lr-probe", optim={"update": "adam"})
    result.status, result.findings, result.to_dict()               # what --json writes

:func:`diagnose` runs exactly what the CLI runs: it turns its arguments into a
recipe whose data source is the arrays (written to a temporary NPZ file, so
preprocessing, the validation split and every diagnosis read them as they
read a file) and whose model is ``net`` (registered in this process for the
duration of the call; every command builds its own deep copy, so ``net``
itself is never trained or modified). The returned object is the Result the
command's ``--json`` writes.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
from pathlib import Path

import numpy as np
import torch.nn as nn

from babysit.diagnostics.doctor import PARTS
from babysit.errors import BabysitError, ModelError
from babysit.torch.builder import deterministic_torch

# command -> (module, function): doctor, its parts, and train
COMMANDS = {"doctor": ("babysit.diagnostics.doctor", "doctor"), **PARTS,
            "train": ("babysit.diagnostics.train", "train")}
FACTORY = "babysit.torch.api:registered"

_REGISTRY: dict[str, object] = {}
_KEYS = itertools.count(1)


def registered(input_shape, num_classes, key: str) -> nn.Module:
    """The factory of :func:`diagnose`'s recipes: a fresh copy of the registered module."""
    entry = _REGISTRY.get(key)
    if entry is None:
        raise ModelError(f"no module is registered as {key!r} in this process: a recipe written by "
                         "babysit.torch.diagnose only runs inside that call")
    if isinstance(entry, nn.Module):
        return copy.deepcopy(entry)
    return entry(tuple(input_shape), int(num_classes))


def _arrays(X, y, X_val, y_val, folder: Path) -> Path:
    arrays = {"X_train": np.asarray(X), "y_train": np.asarray(y)}
    if (X_val is None) != (y_val is None):
        raise BabysitError("give both X_val and y_val, or neither")
    if X_val is not None:
        arrays.update(X_val=np.asarray(X_val), y_val=np.asarray(y_val))
    path = folder / "arrays.npz"
    np.savez(path, **arrays)
    return path


def diagnose(module, X, y, *, command: str = "doctor", X_val=None, y_val=None,
             loss: str = "softmax", reg: float = 0.0, init="module", optim=None, train=None,
             preprocess=(), val_fraction: float = 0.2, seed: int = 0, name: str = "notebook",
             **options):
    """Run ``command`` (default ``doctor``: the whole protocol) on ``module`` -> Result.

    ``module``: an ``nn.Module`` (copied for every model a command builds) or a
    factory ``(input_shape, num_classes) -> nn.Module``. ``X (N, ...)`` and
    ``y (N,)`` (integer labels 0..C-1) are the training examples; without
    ``X_val``/``y_val`` a ``val_fraction`` of them is held out. ``loss``,
    ``reg``, ``init``, ``optim`` (a recipe's optim mapping), ``train`` (its
    train mapping: epochs, batch_size ...) and ``preprocess`` (steps, e.g.
    ``["standardize"]``) mean what they mean in a recipe. ``options`` go to the
    diagnosis (``examples=50`` for overfit-tiny, ``out="run.h5"`` for train ...).

    Torch runs deterministically (one thread) during the call; the caller's
    thread count and determinism setting come back afterwards.
    """
    import importlib

    from babysit.recipes import recipe_from_yaml
    from babysit.recipes.yaml12 import dump

    if command not in COMMANDS:
        raise BabysitError(f"unknown command {command!r}; diagnose runs: {', '.join(COMMANDS)}")
    if not (isinstance(module, nn.Module) or callable(module)):
        raise ModelError(f"module must be an nn.Module or a factory, got {type(module).__name__}")
    key = f"module-{next(_KEYS)}"
    _REGISTRY[key] = module
    try:
        with tempfile.TemporaryDirectory(prefix="babysit-") as folder, deterministic_torch():
            source = _arrays(X, y, X_val, y_val, Path(folder))
            raw = {"name": name, "seed": int(seed),
                   "data": {"source": str(source), "val_fraction": val_fraction,
                            "preprocess": list(preprocess)},
                   "model": {"torch": FACTORY, "kwargs": {"key": key}, "init": init, "loss": loss,
                             "reg": reg},
                   "optim": dict(optim or {}), "train": dict(train or {})}
            recipe = recipe_from_yaml(dump(raw), origin="babysit.torch.diagnose")
            module_name, function = COMMANDS[command]
            return getattr(importlib.import_module(module_name), function)(recipe, **options)
    finally:
        del _REGISTRY[key]


__all__ = ["diagnose", "registered", "COMMANDS"]
