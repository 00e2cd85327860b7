"""Torch twins of NumPy recipes: the factory builds the engine's model for the recipe's seed
and copies its weights across, layer by layer (affine -> Linear with W transposed, conv ->
Conv2d, relu/tanh -> modules, maxpool -> MaxPool2d, flatten -> Flatten)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from babysit.engine.builder import build_model


def engine_twin(input_shape, num_classes, layers, init="xavier", seed=0):
    """nn.Sequential holding exactly the weights ``build_model`` gives ``layers`` for ``seed``
    (float64: the backend casts them to the model's dtype as the engine casts its draws)."""
    engine = build_model({"layers": layers, "init": init}, input_shape, num_classes,
                         np.random.default_rng(seed), np.float64)
    modules, shape = [], tuple(input_shape)
    for layer, name in zip(engine.layers, engine.names):
        kind = name.split(".", 1)[1]
        if kind == "affine":
            if len(shape) > 1:
                modules.append(nn.Flatten())
            W, b = layer.params["W"], layer.params["b"]
            module = nn.Linear(W.shape[0], W.shape[1])
            module.weight.data = torch.from_numpy(np.ascontiguousarray(W.T))
            module.bias.data = torch.from_numpy(b.copy())
            shape = (W.shape[1],)
        elif kind == "conv":
            W, b = layer.params["W"], layer.params["b"]
            pad, stride = layer.pad[0], layer.stride[0]   # (h, w) pairs once built
            module = nn.Conv2d(W.shape[1], W.shape[0], W.shape[2], stride=stride, padding=pad)
            module.weight.data = torch.from_numpy(W.copy())
            module.bias.data = torch.from_numpy(b.copy())
            size = (shape[1] + 2 * pad - W.shape[2]) // stride + 1
            shape = (W.shape[0], size, size)
        elif kind == "maxpool":
            module = nn.MaxPool2d(layer.size[0], layer.stride[0])
            size = (shape[1] - layer.size[0]) // layer.stride[0] + 1
            shape = (shape[0], size, size)
        elif kind in ("relu", "tanh"):
            module = nn.ReLU() if kind == "relu" else nn.Tanh()
        else:
            raise ValueError(f"no twin for {kind}")
        modules.append(module)
    assert math.prod(shape) == num_classes
    return nn.Sequential(*modules)
