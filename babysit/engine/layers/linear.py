"""Layers built on one matrix product ``z = x.reshape(N, D) @ W + b``: Affine and Maxout."""

from __future__ import annotations

import math

import numpy as np

from babysit.engine.layers._shared import EngineLayer, make_weight, per_example
from babysit.engine.parallel import matmul, matmuls
from babysit.validation import POSITIVE_INT, REQUIRED


class _Linear(EngineLayer):
    """Shared by Affine and Maxout: ``z = x.reshape(N, D) @ W + b`` and its backward."""

    weight_names = ("W",)

    def _build_linear(self, input_shape, columns, rng, dtype, init, bias):
        D = math.prod(per_example(input_shape))
        self.params["W"] = make_weight(init, (D, columns), D, rng, dtype)
        self.params["b"] = np.full(columns, bias, dtype=dtype)
        self.zero_grads()

    def _linear_forward(self, x):
        W = self.params["W"]
        self._x_shape = x.shape
        self._x2d = x2d = x.reshape(x.shape[0], -1).astype(W.dtype, copy=False)
        z = matmul(x2d, W)
        z += self.params["b"]
        return z

    def _linear_backward(self, dz):
        """Fill ``grads`` from ``dz = dLoss/dz (N, columns)``; return dx (None when not needed)."""
        W, x2d = self.params["W"], self._x2d
        # dW and dx are independent products: side by side when neither is split
        products = matmuls((x2d.T, dz), *([(dz, W.T)] if self.needs_input_grad else []))
        self.grads["W"] = products[0]
        self.grads["b"] = dz.sum(axis=0)
        return products[1].reshape(self._x_shape) if self.needs_input_grad else None


class Affine(_Linear):
    """Fully connected layer ``out = x.reshape(N, D) @ W + b``.

    Input ``(N, *shape)`` with ``D = prod(shape)``; output ``(N, out)``.
    Params ``W (D, out)`` (initialised with fan_in D), ``b (out,)``.
    """

    kind = "affine"
    OPTIONS = {"out": (REQUIRED, POSITIVE_INT)}

    def build(self, input_shape, rng, dtype, init, bias):
        self._build_linear(input_shape, self.out, rng, dtype, init, bias)
        return (self.out,)

    def forward(self, x, train):
        return self._linear_forward(x)

    def backward(self, dout):
        return self._linear_backward(dout)


class Maxout(_Linear):
    """Maxout units: ``out[:, j] = max_p (x @ W + b)[:, j*pieces + p]``.

    Input ``(N, *shape)`` flattened to ``(N, D)``; output ``(N, out)``. Params
    ``W (D, pieces*out)`` (fan_in D) and ``b (pieces*out,)``, piece-major: unit
    ``j`` uses columns ``j*pieces .. j*pieces + pieces - 1``. Kink state: the
    arg-max piece of every unit (first maximum on ties).
    """

    kind = "maxout"
    has_kinks = True
    OPTIONS = {"out": (REQUIRED, POSITIVE_INT), "pieces": (2, POSITIVE_INT)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._index = None

    def build(self, input_shape, rng, dtype, init, bias):
        self._build_linear(input_shape, self.pieces * self.out, rng, dtype, init, bias)
        return (self.out,)

    def forward(self, x, train):
        z = self._linear_forward(x)
        z = z.reshape(len(z), self.out, self.pieces)
        best = z[:, :, 0].copy()
        index = np.zeros(best.shape, dtype=np.min_scalar_type(self.pieces - 1))
        for p in range(1, self.pieces):     # a handful of pieces: one whole-batch op each
            better = z[:, :, p] > best
            np.maximum(best, z[:, :, p], out=best)
            marks = better.astype(index.dtype)
            marks *= p
            np.maximum(index, marks, out=index)
        self._index = index
        return best

    def backward(self, dout):
        index = self._index
        dz = np.empty((len(dout), self.out, self.pieces), dtype=dout.dtype)
        for p in range(self.pieces):
            np.multiply(dout, index == p, out=dz[:, :, p])
        return self._linear_backward(dz.reshape(len(dout), -1))

    def kink_state(self):
        return self._index


__all__ = ["Affine", "Maxout"]
