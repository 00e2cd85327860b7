"""``gradcheck --layer`` for a torch ``nn.Module`` or ``autograd.Function`` class.

The layer becomes a float64 :class:`~babysit.torch.model.TorchModel` whose
only top-level module is the layer (path ``layer``), so the check is the
engine's: the scalar ``sum(out * R)`` for a fixed random ``R`` (the
``ProjectionLoss`` the caller passes), every parameter and the input by
centered differences, kinks recorded as for any torch model.

* an ``nn.Module`` class is built as ``cls(**kwargs)`` (its own init, under a
  torch seed derived from the check's seed);
* an ``autograd.Function`` class is applied as ``cls.apply(x, *kwargs.values())``
  (the input first, then the ``--kwargs`` values in their order).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

from babysit.engine.user_code import fenced
from babysit.torch.builder import configure_torch, spawn_seeds, trace
from babysit.torch.model import TorchModel

LAYER = "layer"


class FunctionLayer(nn.Module):
    """An ``autograd.Function`` as a module: ``forward(x) = function.apply(x, *args)``."""

    def __init__(self, function, args: tuple):
        super().__init__()
        self.function, self.args = function, tuple(args)

    def forward(self, x):
        return self.function.apply(x, *self.args)


def make_module(cls, kwargs: dict, seed: int) -> nn.Module:
    label = cls.__name__
    if issubclass(cls, torch.autograd.Function):
        return FunctionLayer(cls, tuple(kwargs.values()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # the user's constructor failing is their input
        with fenced(f"{label}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed:"):
            return cls(**kwargs)


def torch_layer_model(cls, kwargs: dict, shape: tuple, rng: np.random.Generator, projection_loss):
    """``(model, label, X)``: the layer in a float64 TorchModel, its random input ``X``
    (drawn from ``rng`` first, as for a NumPy layer, then ``R``)."""
    configure_torch()
    label = cls.__name__
    (seed,) = spawn_seeds(rng, 1)
    wrapper = nn.Sequential(OrderedDict([(LAYER, make_module(cls, kwargs, seed))])).double()
    X = rng.standard_normal(shape)
    tap, output_layer, draws, out = trace(wrapper, tuple(shape[1:]), torch.float64, label)
    out_shape = tuple(out.shape[1:])
    projection = rng.standard_normal((shape[0],) + out_shape)
    generator = torch.Generator().manual_seed(seed).get_state()
    model = TorchModel(wrapper, projection_loss(projection), 0.0, shape[1:], math.prod(out_shape),
                       np.float64, tap.traced, output_layer=output_layer, has_kinks=bool(tap.kinks),
                       draws=draws, generator=generator, output_shape=out_shape)
    return model, label, X


__all__ = ["torch_layer_model", "FunctionLayer"]
