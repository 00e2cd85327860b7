"""Factories of the bundled torch recipes (``torch-two-layer-digits``, ``torch-convnet-digits``).

A factory takes the per-example input shape and the class count (plus the
recipe's ``kwargs``) and returns an ``nn.Module``; these are also the
templates for your own.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch.nn as nn


def two_layer(input_shape, num_classes, hidden: int = 50, dropout: float = 0.0) -> nn.Module:
    """The lecture's two-layer net: flatten - Linear(hidden) - ReLU - Linear(classes).

    ``dropout`` > 0 adds ``nn.Dropout(dropout)`` after the ReLU (the probability of
    dropping a unit, torch's convention; babysit's engine speaks of keeping one).
    """
    layers = [("flatten", nn.Flatten()), ("fc1", nn.Linear(math.prod(input_shape), hidden)),
              ("relu", nn.ReLU())]
    if dropout > 0:
        layers.append(("dropout", nn.Dropout(dropout)))
    layers.append(("fc2", nn.Linear(hidden, num_classes)))
    return nn.Sequential(OrderedDict(layers))


def convnet(input_shape, num_classes, filters: int = 16, hidden: int = 64) -> nn.Module:
    """conv 3x3 (same padding) - ReLU - 2x2 max pool, then Linear(hidden) - ReLU - Linear(classes).

    Layers are named by module path: ``features.0`` (the conv) ... ``classifier.3``.
    """
    channels, height, width = input_shape
    features = nn.Sequential(nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(filters * (height // 2) * (width // 2), hidden),
                               nn.ReLU(), nn.Linear(hidden, num_classes))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


__all__ = ["two_layer", "convnet"]
