"""Deliberately broken custom layers, for the ``broken/`` recipes.

They show what ``babysit gradcheck`` catches; they are imported from recipes as
``custom: babysit.bundled.broken_layers:<Class>``. Never use them for training.
"""

from __future__ import annotations

import numpy as np

from babysit.engine.base import Layer


class WrongSlopeLeakyReLU(Layer):
    """Leaky ReLU whose backward pass forgets the slope on the negative side.

    forward: ``x if x > 0 else alpha * x`` (correct). backward: passes ``dout``
    through unchanged where ``x <= 0`` instead of ``alpha * dout`` - the slip
    of copying the ReLU's "positive side" code. Analytic and numerical input
    gradients differ by a factor 1/alpha on negative inputs, so gradcheck
    reports ``gradient_mismatch`` at this layer and every parameter below it.
    """

    kind = "wrong_slope_leaky_relu"
    has_kinks = True

    def __init__(self, alpha: float = 0.1):
        super().__init__()
        self.alpha = float(alpha)
        self._positive = None

    def forward(self, x, train):
        self._positive = x > 0
        return np.where(self._positive, x, x * x.dtype.type(self.alpha))

    def backward(self, dout):
        # BUG (on purpose): the negative side's slope should be self.alpha, not 1.0.
        slope = np.where(self._positive, 1.0, 1.0).astype(dout.dtype)
        return dout * slope

    def kink_state(self):
        return self._positive

    def __repr__(self):
        return f"WrongSlopeLeakyReLU(alpha={self.alpha})"
