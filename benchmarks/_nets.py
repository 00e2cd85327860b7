"""The benchmarked networks, stated once, and their analytic FLOP counts.

Both workers build their model from these specs: the NumPy worker hands the
layer list to ``babysit.engine.model.build_model`` as it would a recipe's
``model`` section, the torch worker translates it into ``nn.Sequential``.
This module imports nothing heavy (the driver uses it without numpy or torch).

FLOP count (matmul and conv parts only; activations, pooling, loss and the
update are ignored)::

    MACs(affine D_in -> D_out) = N * D_in * D_out
    MACs(conv F filters of C x HH x WW, output H' x W') = N * F * H' * W' * C * HH * WW
    forward  = 2 * MACs                 (one multiply and one add per MAC)
    backward = 4 * MACs                 (dW and dx each cost one more product)
               - 2 * MACs(first layer)  (no one needs dLoss/dX of the data)
    step     = forward + backward = 6 * MACs - 2 * MACs(first layer)

Both libraries are credited with the same count, so their GFLOP/s ratio equals
their speed ratio. Torch skips dx of the first layer (its input does not
require grad); babysit does too when the model supports it
(``Model.loss(..., input_grad=False)``, which ``Solver.step`` uses). The
workers report whether babysit skipped it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NetSpec:
    """One benchmarked network: recipe-form layers, per-example input shape, batch size."""

    name: str
    title: str
    layers: tuple
    input_shape: tuple
    num_classes: int
    batch: int

    def model_section(self) -> dict:
        """The spec as a babysit recipe ``model`` section (no L2: torch's loss has none either)."""
        return {"init": "xavier", "loss": "softmax", "reg": 0.0, "layers": [dict(e) if isinstance(e, dict) else e
                                                                              for e in self.layers]}


NETS = {
    "mlp": NetSpec(
        name="mlp",
        title="MLP 3072-512-512-10, batch 256",
        layers=({"affine": {"out": 512}}, "relu", {"affine": {"out": 512}}, "relu", {"affine": {"out": 10}}),
        input_shape=(3072,),
        num_classes=10,
        batch=256,
    ),
    "convnet": NetSpec(
        name="convnet",
        title="ConvNet conv3x3x32-relu-pool-conv3x3x64-relu-pool-affine10, 3x32x32, batch 64",
        layers=(
            {"conv": {"filters": 32, "size": 3, "stride": 1, "pad": 1}}, "relu",
            {"maxpool": {"size": 2, "stride": 2}},
            {"conv": {"filters": 64, "size": 3, "stride": 1, "pad": 1}}, "relu",
            {"maxpool": {"size": 2, "stride": 2}},
            {"affine": {"out": 10}},
        ),
        input_shape=(3, 32, 32),
        num_classes=10,
        batch=64,
    ),
}


@dataclass(frozen=True)
class PlannedLayer:
    """A layer of a spec with its per-example input/output shapes and MACs for a whole batch."""

    kind: str
    options: dict
    in_shape: tuple
    out_shape: tuple
    macs: int


def split_entry(entry) -> tuple:
    """``"relu"`` -> ``("relu", {})``; ``{"affine": {"out": 10}}`` -> ``("affine", {"out": 10})``."""
    if isinstance(entry, str):
        return entry, {}
    (kind, options), = entry.items()
    return kind, dict(options or {})


def plan(spec: NetSpec) -> list:
    """Shapes and MACs of every layer of ``spec`` (the kinds used by NETS only)."""
    layers = []
    shape = tuple(spec.input_shape)
    for entry in spec.layers:
        kind, options = split_entry(entry)
        macs = 0
        if kind == "affine":
            d_in = math.prod(shape)
            out_shape = (options["out"],)
            macs = spec.batch * d_in * options["out"]
        elif kind == "conv":
            c, h, w = shape
            size, stride = options.get("size", 3), options.get("stride", 1)
            pad = options.get("pad")
            pad = (size - 1) // 2 if pad is None else pad
            h_out = (h + 2 * pad - size) // stride + 1
            w_out = (w + 2 * pad - size) // stride + 1
            out_shape = (options["filters"], h_out, w_out)
            macs = spec.batch * options["filters"] * h_out * w_out * c * size * size
        elif kind == "maxpool":
            c, h, w = shape
            size = options.get("size", 2)
            stride = options.get("stride") or size
            out_shape = (c, (h - size) // stride + 1, (w - size) // stride + 1)
        elif kind == "relu":
            out_shape = shape
        else:
            raise ValueError(f"benchmark nets use affine, conv, maxpool, relu; got {kind!r}")
        layers.append(PlannedLayer(kind, options, shape, out_shape, macs))
        shape = out_shape
    return layers


def flops(spec: NetSpec) -> dict:
    """FLOPs of one forward+backward pass that trains the net (see the module docstring)."""
    layers = plan(spec)
    macs = sum(layer.macs for layer in layers)
    first = next(layer.macs for layer in layers if layer.macs)
    return {
        "macs": macs,
        "forward": 2 * macs,
        "backward": 4 * macs - 2 * first,
        "total": 6 * macs - 2 * first,
        "first_layer_dx": 2 * first,   # not counted: dLoss/dX of the data, which training never needs
    }
