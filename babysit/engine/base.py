"""The layer interface every engine layer (and every user layer) follows.

A layer is any object with

* ``params``: dict ``name -> ndarray`` (learnable arrays, updated in place),
* ``grads``: dict with the same keys, filled by ``backward``,
* ``forward(x, train: bool) -> out``,
* ``backward(dout) -> dx`` (uses what ``forward`` cached; fills ``grads``).

Engine layers derive from :class:`Layer` and add what the model builder and the
diagnostics use; a user's layer needs only the four members above.

Shapes: ``x`` is ``(N, *input_shape)``; images are NCHW.
"""

from __future__ import annotations

import numpy as np


class Layer:
    """Base class of the engine's layers.

    Class attributes:

    * ``kind``: the recipe name of the layer (``"affine"``, ``"relu"`` ...).
    * ``weight_names``: names in ``params`` that L2 regularization applies to
      (weights only, never biases, gains or slopes).
    * ``has_kinks``: True when the function has points where it is not
      differentiable (ReLU, max pooling ...). Such layers implement
      :meth:`kink_state`.
    * ``uses_randomness``: True for layers that draw random numbers in the
      forward pass (dropout). They get an ``rng`` from the model builder and
      honour ``replay`` (reuse the last draw instead of drawing a new one) so a
      gradient check can evaluate f(x+h), f(x-h) and the analytic gradient under
      the same mask.
    """

    kind = "layer"
    weight_names: tuple = ()
    has_kinks = False
    uses_randomness = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.rng: np.random.Generator | None = None
        self.replay = False

    def build(self, input_shape, rng, dtype, init, bias) -> tuple:
        """Create the parameters for inputs of per-example shape ``input_shape``.

        ``init(shape, fan_in, rng, dtype) -> ndarray`` draws weights; ``bias`` is
        the constant initial bias value. Returns the per-example output shape.
        Parameter-free layers return their output shape and create nothing.
        """
        return tuple(input_shape)

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def kink_state(self) -> np.ndarray | None:
        """Which side of each kink the last forward pass was on.

        Returns an array (any dtype, any shape, compared with ``array_equal``)
        that changes if and only if some input crossed a point of
        non-differentiability between two forward passes; ``None`` for smooth
        layers. Gradient checking compares it between f(x+h) and f(x-h).
        """
        return None

    def zero_grads(self) -> None:
        for name, value in self.params.items():
            self.grads[name] = np.zeros_like(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
