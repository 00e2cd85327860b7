"""Batch normalisation (per feature, or spatial per channel after a convolution)."""

from __future__ import annotations

import numpy as np

from babysit.engine.layers._shared import EngineLayer, per_example
from babysit.validation import HALF_OPEN_UNIT, POSITIVE


class BatchNorm(EngineLayer):
    """Batch normalisation, ``out = gamma * (x - mean) / sqrt(var + eps) + beta``.

    Input ``(N, D)`` (statistics per feature) or ``(N, C, H, W)`` (spatial:
    per channel over N, H, W); output has the input's shape. Params ``gamma``
    (ones) and ``beta`` (zeros), shaped ``(D,)`` or ``(C,)``: the model's
    ``init`` and ``bias`` do not apply, and neither is L2-regularised.

    Train mode uses the batch statistics (biased variance) and updates
    ``running_mean``/``running_var`` (not params) as
    ``running = momentum * running + (1 - momentum) * batch``; test mode
    normalises with the running averages.
    """

    kind = "batchnorm"
    OPTIONS = {"eps": (1e-5, POSITIVE), "momentum": (0.9, HALF_OPEN_UNIT)}

    def build(self, input_shape, rng, dtype, init, bias):
        shape = per_example(input_shape)
        if len(shape) not in (1, 3):
            raise ValueError(f"batchnorm needs (D,) or (C, H, W) input, got per-example shape {shape}")
        n = shape[0]
        self.params["gamma"] = np.ones(n, dtype=dtype)
        self.params["beta"] = np.zeros(n, dtype=dtype)
        self.running_mean = np.zeros(n, dtype=dtype)
        self.running_var = np.ones(n, dtype=dtype)
        self.zero_grads()
        return shape

    @staticmethod
    def _axes(x) -> tuple:
        return (0,) if x.ndim == 2 else (0, 2, 3)

    def forward(self, x, train):
        gamma, beta = self.params["gamma"], self.params["beta"]
        if x.ndim not in (2, 4) or x.shape[1] != len(gamma):
            raise ValueError(f"batchnorm expects input (N, {len(gamma)}) or (N, {len(gamma)}, H, W), "
                             f"got {x.shape}")
        x = x.astype(gamma.dtype, copy=False)
        axes = self._axes(x)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        self._train = train
        if train:
            mean = x.mean(axis=axes, keepdims=True)
            xhat = x - mean
            var = np.mean(np.square(xhat), axis=axes, keepdims=True)
            m = self.momentum
            self.running_mean *= m
            self.running_mean += (1.0 - m) * mean.reshape(-1)
            self.running_var *= m
            self.running_var += (1.0 - m) * var.reshape(-1)
        else:
            xhat = x - self.running_mean.reshape(shape)
            var = self.running_var.reshape(shape)
        self._inv_std = inv_std = 1.0 / np.sqrt(var + self.eps)
        xhat *= inv_std
        self._xhat = xhat
        out = xhat * gamma.reshape(shape)
        out += beta.reshape(shape)
        return out

    def backward(self, dout):
        gamma, xhat = self.params["gamma"], self._xhat
        axes = self._axes(dout)
        shape = (1, -1) + (1,) * (dout.ndim - 2)
        dbeta = dout.sum(axis=axes)
        dgamma = np.sum(dout * xhat, axis=axes)
        self.grads["beta"], self.grads["gamma"] = dbeta, dgamma
        scale = gamma.reshape(shape) * self._inv_std
        if not self._train:  # running statistics are constants
            return dout * scale
        # closed form of the batch-statistics gradient:
        # dx = gamma/std/M * (M*dout - sum(dout) - xhat*sum(dout*xhat))
        M = dout.size // len(gamma)
        dx = xhat * dgamma.reshape(shape)
        dx += dbeta.reshape(shape)
        dx *= -1.0 / M
        dx += dout
        dx *= scale
        return dx


__all__ = ["BatchNorm"]
