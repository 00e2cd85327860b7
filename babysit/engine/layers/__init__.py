"""The engine's layers and the ``LAYERS`` registry ``{recipe kind: class}``.

One module per family: ``linear`` (Affine, Maxout), ``spatial`` (Conv,
MaxPool, Flatten), ``activations`` (ReLU, LeakyReLU, PReLU, ELU, Sigmoid,
Tanh), ``normalization`` (BatchNorm), ``dropout`` (Dropout); ``_shared`` holds
EngineLayer (options from each class's ``OPTIONS`` table, see there) and the
shape helpers.

Shapes: ``x`` is ``(N, *input_shape)``; images are NCHW. A layer may return an
NCHW-shaped view of another memory layout (convolution returns channel-major
or channels-last memory, see ``conv.py``); every layer accepts inputs in any
memory layout, and elementwise layers keep the layout they are given.

Every layer computes in the dtype of its parameters (parameter-free layers: of
their input) and never upcasts: float32 in, float32 out. Constants enter as
Python floats, which NumPy keeps at the array's precision.

Constructors check their options against ``OPTIONS`` (unknown or missing:
TypeError; bad value: ValueError, naming the layer and the option); ``build``
raises ``ValueError`` when the input shape does not fit. (The model builder
turns all of them into ``ModelError``.) ``LAYERS`` and the classes' ``OPTIONS``
are the source the recipe schema derives its layer table from.
"""

from __future__ import annotations

from babysit.engine.base import Layer
from babysit.engine.layers._shared import EngineLayer
from babysit.engine.layers.activations import ELU, LeakyReLU, PReLU, ReLU, Sigmoid, Tanh
from babysit.engine.layers.dropout import Dropout
from babysit.engine.layers.linear import Affine, Maxout
from babysit.engine.layers.normalization import BatchNorm
from babysit.engine.layers.spatial import Conv, Flatten, MaxPool

LAYERS: dict[str, type[Layer]] = {cls.kind: cls for cls in (
    Affine, Conv, MaxPool, Flatten, ReLU, LeakyReLU, PReLU, ELU, Maxout,
    Sigmoid, Tanh, BatchNorm, Dropout)}

__all__ = ["LAYERS", "EngineLayer", "Affine", "Conv", "MaxPool", "Flatten", "ReLU", "LeakyReLU", "PReLU",
           "ELU", "Maxout", "Sigmoid", "Tanh", "BatchNorm", "Dropout"]
