"""Inverted dropout, the engine's one layer that draws random numbers."""

from __future__ import annotations

import numpy as np

from babysit.engine.layers._shared import EngineLayer
from babysit.validation import KEEP_PROB


class Dropout(EngineLayer):
    """Inverted dropout: in train mode keep each unit with probability ``keep``
    and scale the kept ones by ``1/keep``; identity at test time.

    Shape-preserving. The mask comes from ``self.rng`` (a ``np.random.Generator``
    the model builder sets). With ``replay`` True the last mask is reused, so a
    gradient check sees one fixed function.
    """

    kind = "dropout"
    uses_randomness = True
    OPTIONS = {"keep": (0.5, KEEP_PROB)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._mask = None
        self._train = False

    def _draw(self, shape, dtype) -> np.ndarray:
        if self.rng is None:
            raise RuntimeError("dropout layer has no random generator: set layer.rng to a "
                               "np.random.Generator before a train-mode forward pass")
        mask = self.rng.random(shape, dtype=dtype)
        np.less(mask, self.keep, out=mask)       # 1.0 where kept, 0.0 where dropped
        mask *= 1.0 / self.keep
        return mask

    def forward(self, x, train):
        self._train = train and self.keep < 1.0
        if not self._train:
            return x
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
        reuse = self.replay and self._mask is not None
        if reuse and self._mask.shape != x.shape:
            raise RuntimeError(f"dropout replay: the last mask has shape {self._mask.shape}, "
                               f"the input has shape {x.shape}")
        if not reuse:
            self._mask = self._draw(x.shape, dtype)
        return x * self._mask.astype(x.dtype, copy=False)

    def backward(self, dout):
        if not self._train:
            return dout
        return dout * self._mask.astype(dout.dtype, copy=False)


__all__ = ["Dropout"]
