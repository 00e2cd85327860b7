"""Elementwise activations (output shape = input shape): ReLU, LeakyReLU, PReLU, ELU, Sigmoid, Tanh."""

from __future__ import annotations

import numpy as np

from babysit.engine.layers._shared import EngineLayer, channel_shape, per_example
from babysit.engine.parallel import for_outer
from babysit.validation import NUMBER, POSITIVE


class _Elementwise(EngineLayer):
    """Base of the elementwise activations: shape-preserving, kink state ``x > 0``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._x = None

    def kink_state(self):
        if not self.has_kinks or self._x is None:
            return None
        return self._x > 0


class ReLU(_Elementwise):
    """``max(x, 0)``; the gradient at 0 is 0. Kink state: ``x > 0``.

    Both passes run in spans of the outer axis on the free cores. A following
    max pooling may take the ReLU over (``MaxPool.forward_after_relu``): it
    then hands this layer its input with :meth:`keep_input`, for the kink state.
    """

    kind = "relu"
    has_kinks = True

    def forward(self, x, train):
        self._x = x
        out = np.empty_like(x)
        for_outer(x, lambda span: np.maximum(x[span], 0, out=out[span]))
        return out

    def keep_input(self, x):
        self._x = x

    def backward(self, dout):
        x = self._x
        dx = np.empty_like(dout)
        for_outer(dout, lambda span: np.multiply(dout[span], x[span] > 0, out=dx[span]))
        return dx


class LeakyReLU(_Elementwise):
    """``x`` for ``x > 0``, ``alpha * x`` otherwise (any finite ``alpha``). Kink state: ``x > 0``."""

    kind = "leaky_relu"
    has_kinks = True
    OPTIONS = {"alpha": (0.01, NUMBER)}

    def forward(self, x, train):
        self._x = x
        out = np.minimum(x, 0)
        out *= self.alpha
        out += np.maximum(x, 0)
        return out

    def backward(self, dout):
        slope = (self._x > 0).astype(dout.dtype)
        slope *= 1.0 - self.alpha
        slope += self.alpha
        slope *= dout
        return slope


class PReLU(_Elementwise):
    """Leaky ReLU with a learned slope: ``x`` for ``x > 0``, ``alpha * x`` otherwise.

    Param ``alpha``: one per feature ``(D,)`` on ``(N, D)`` inputs, one per
    channel ``(C,)`` on ``(N, C, H, W)`` inputs (in general one per index of
    the first per-example axis), all starting at the ``alpha`` option; ``init``
    and ``bias`` do not apply. Not L2-regularised. Kink state: ``x > 0``.
    """

    kind = "prelu"
    has_kinks = True
    OPTIONS = {"alpha": (0.25, NUMBER)}

    def build(self, input_shape, rng, dtype, init, bias):
        self._broadcast = channel_shape(self.kind, input_shape)
        self.params["alpha"] = np.full(self._broadcast[1], self.alpha, dtype=dtype)
        self.zero_grads()
        return per_example(input_shape)

    def forward(self, x, train):
        a = self.params["alpha"]
        x = x.astype(a.dtype, copy=False)
        self._x = x
        self._neg = neg = np.minimum(x, 0)
        out = neg * a.reshape(self._broadcast[:x.ndim])
        out += np.maximum(x, 0)
        return out

    def backward(self, dout):
        a = self.params["alpha"].reshape(self._broadcast[:dout.ndim])
        axes = (0,) + tuple(range(2, dout.ndim))
        self.grads["alpha"] = np.sum(dout * self._neg, axis=axes)
        slope = (self._x > 0).astype(dout.dtype)
        slope = slope * (1.0 - a) + a
        slope *= dout
        return slope


class ELU(_Elementwise):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise (``alpha > 0``).

    The derivative is continuous at 0 only for ``alpha == 1``; otherwise the
    layer has a kink there (kink state ``x > 0``).
    """

    kind = "elu"
    OPTIONS = {"alpha": (1.0, POSITIVE)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.has_kinks = self.alpha != 1.0

    def forward(self, x, train):
        self._x = x
        # expm1 of min(x, 0) never overflows, whatever the size of x
        self._neg = neg = np.expm1(np.minimum(x, 0))
        out = neg * self.alpha
        out += np.maximum(x, 0)
        return out

    def backward(self, dout):
        # slope: 1 for x > 0, alpha * exp(x) = alpha * (neg + 1) otherwise (neg = 0 for x > 0)
        slope = (self._x > 0).astype(dout.dtype)
        slope *= 1.0 - self.alpha
        slope += self._neg * self.alpha
        slope += self.alpha
        slope *= dout
        return slope


class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``, computed without overflow for any ``x``."""

    kind = "sigmoid"

    def forward(self, x, train):
        e = np.exp(-np.abs(x))          # in (0, 1]: never overflows
        r = 1.0 / (1.0 + e)             # sigmoid(|x|)
        # sigmoid(x) = r for x >= 0, e * r = 1 - r (without cancellation) for x < 0
        neg = x < 0
        e *= r
        out = r
        np.copyto(out, e, where=neg)
        self._out = out
        return out

    def backward(self, dout):
        out = self._out
        return dout * out * (1.0 - out)


class Tanh(_Elementwise):
    """``tanh(x)``."""

    kind = "tanh"

    def forward(self, x, train):
        self._out = np.tanh(x)
        return self._out

    def backward(self, dout):
        out = self._out
        return dout * (1.0 - out * out)


__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Sigmoid", "Tanh"]
