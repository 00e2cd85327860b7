"""Layers over images (NCHW): Conv, MaxPool, and Flatten from images to vectors."""

from __future__ import annotations

import math

import numpy as np

from babysit.engine.conv import ConvPlan, MaxPoolWindows, choose_layout, output_size
from babysit.engine.layers._shared import EngineLayer, image_shape, make_weight, per_example
from babysit.validation import NON_NEGATIVE_INT, POSITIVE_INT, REQUIRED, show


def _square(value) -> tuple[int, int]:
    """An option value (an int or an ``(h, w)`` pair) as an ``(h, w)`` pair."""
    return value if isinstance(value, tuple) else (value, value)


class _Windowed(EngineLayer):
    """Conv and MaxPool: ``size``, ``stride`` and ``pad`` also take a pair ``[h, w]``.

    Decision: the pair is an extension of the Python API only. ``OPTIONS``
    (square windows, integers) is what recipes accept, as the spec's layer
    table says; a rectangular window is one constructor call away for Python
    users and costs nothing, since ``conv.py`` works on (h, w) pairs
    throughout. A pair is checked entry by entry with the option's rule.
    """

    PAIRED = ("size", "stride", "pad")

    def _resolve(self, given: dict) -> dict:
        pairs = {name: value for name, value in given.items()
                 if name in self.PAIRED and name in self.OPTIONS and isinstance(value, (list, tuple))}
        options = super()._resolve({name: value for name, value in given.items() if name not in pairs})
        for name, value in pairs.items():
            options[name] = self._pair(name, value)
        return options

    def _pair(self, name: str, value) -> tuple[int, int]:
        rule = self.OPTIONS[name][1]
        try:
            if len(value) != 2:
                raise ValueError(name)
            pair = tuple(rule.convert(item) for item in value)
            if None in pair:
                raise ValueError(name)
        except ValueError:
            raise ValueError(f"{self.kind}: {name} must be {rule.phrase}, or a pair [h, w] of such "
                             f"integers, got {show(value)}") from None
        return pair


class Conv(_Windowed):
    """2-D convolution (cross-correlation, as in CS231n and PyTorch).

    Input ``(N, C, H, W)``; output ``(N, F, Ho, Wo)`` with
    ``Ho = (H + 2*pad - HH) // stride + 1`` (likewise ``Wo``).
    Params ``W (F, C, HH, WW)`` (fan_in ``C*HH*WW``), ``b (F,)``.
    ``pad=None`` means ``(size - 1) // 2`` ("same" for odd sizes at stride 1).
    ``size``, ``stride`` and ``pad`` are integers in recipes; the Python API
    also takes a pair ``[h, w]`` (see ``_Windowed``), and the attributes
    ``size``, ``stride``, ``pad`` are always ``(h, w)`` pairs.
    The output is an NCHW-shaped view of the product's memory. ``layout``
    (channel-major or channels-last im2col, see ``conv.choose_layout``) is
    picked by ``build`` for the input shape; setting it forces one.
    """

    kind = "conv"
    weight_names = ("W",)
    OPTIONS = {"filters": (REQUIRED, POSITIVE_INT), "size": (3, POSITIVE_INT),
               "stride": (1, POSITIVE_INT), "pad": (None, NON_NEGATIVE_INT.or_null())}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.size = _square(self.size)
        self.stride = _square(self.stride)
        self.pad = ((self.size[0] - 1) // 2, (self.size[1] - 1) // 2) if self.pad is None else \
            _square(self.pad)
        self.layout = None

    def build(self, input_shape, rng, dtype, init, bias):
        C, H, W = image_shape(self.kind, input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.size, self.stride, self.pad
        if kh > H + 2 * ph or kw > W + 2 * pw:
            raise ValueError(f"conv: kernel {kh}x{kw} is larger than the padded input "
                             f"{H + 2 * ph}x{W + 2 * pw}")
        Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
        self.layout = choose_layout(C, kw, Wo)
        fan_in = C * kh * kw
        self.params["W"] = make_weight(init, (self.filters, C, kh, kw), fan_in, rng, dtype)
        self.params["b"] = np.full(self.filters, bias, dtype=dtype)
        self.zero_grads()
        return (self.filters, Ho, Wo)

    def forward(self, x, train):
        W, b = self.params["W"], self.params["b"]
        if x.ndim != 4 or x.shape[1] != W.shape[1]:
            raise ValueError(f"conv expects input (N, {W.shape[1]}, H, W), got {x.shape}")
        x = x.astype(W.dtype, copy=False)
        layout = self.layout or choose_layout(x.shape[1], self.size[1], x.shape[3])
        self._plan = plan = ConvPlan(x.shape, self.size, self.stride, self.pad, layout)
        self._cols = plan.cols(x)
        return plan.forward(self._cols, W, b)

    def backward(self, dout):
        W = self.params["W"]
        dout = dout.astype(W.dtype, copy=False)
        self.grads["W"], self.grads["b"] = self._plan.weight_grads(self._cols, dout)
        if not self.needs_input_grad:
            return None
        return self._plan.input_grad(dout, W)


class MaxPool(_Windowed):
    """Max pooling over ``size`` windows every ``stride`` (None = ``size``), no padding.

    Input ``(N, C, H, W)``; output ``(N, C, Ho, Wo)`` with ``Ho = (H - size) // stride + 1``.
    The gradient goes to the first maximum of each window. ``kink_state`` is
    the arg-max offset inside each window. ``size`` and ``stride`` are
    integers in recipes; the Python API also takes ``[h, w]`` pairs.

    ``fuses_relu`` (windows that do not overlap): the model may run a ReLU
    and this pooling as :meth:`forward_after_relu` / :meth:`backward_after_relu`,
    pooling first and rectifying the maxima; outputs, gradients and both
    layers' kink states are bit for bit those of the two layers run one after
    the other (see ``conv.MaxPoolWindows``), for a quarter of the ReLU's work.
    """

    kind = "maxpool"
    has_kinks = True
    OPTIONS = {"size": (2, POSITIVE_INT), "stride": (None, POSITIVE_INT.or_null())}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.size = _square(self.size)
        self.stride = self.size if self.stride is None else _square(self.stride)
        self.fuses_relu = self.stride[0] >= self.size[0] and self.stride[1] >= self.size[1]
        self._x = self._index = self._rectified = self._kinks = None

    def build(self, input_shape, rng, dtype, init, bias):
        C, H, W = image_shape(self.kind, input_shape)
        (kh, kw), (sh, sw) = self.size, self.stride
        if kh > H or kw > W:
            raise ValueError(f"maxpool: window {kh}x{kw} is larger than the input {H}x{W}")
        return (C, output_size(H, kh, sh, 0), output_size(W, kw, sw, 0))

    def forward(self, x, train):
        return self._pool(x, train, rectify=False)

    def forward_after_relu(self, x, train, relu):
        """``self.forward(relu.forward(x))``, computed as ReLU of the pooled ``x``."""
        relu.keep_input(x)
        return self._pool(x, train, rectify=True)

    def _pool(self, x, train, rectify):
        if x.ndim != 4 or x.shape[2] < self.size[0] or x.shape[3] < self.size[1]:
            raise ValueError(f"maxpool {self.size[0]}x{self.size[1]} expects input (N, C, H, W) "
                             f"at least that large, got {x.shape}")
        self._windows = MaxPoolWindows(x.shape, self.size, self.stride)
        self._x, self._kinks = x, None
        if train:  # a backward pass follows: find the arg-max now, in the same sweep
            out, self._index = self._windows.argmax(x, rectify)
        else:
            out, self._index = self._windows.max(x, rectify), None
        self._rectified = out if rectify else None
        return out

    def _argmax(self) -> np.ndarray:
        if self._index is None:
            self._index = self._windows.argmax(self._x)[1]
        return self._index

    def backward(self, dout):
        return self._windows.backward(dout, self._argmax(), self._x)

    def backward_after_relu(self, dout):
        """Gradient with respect to the ReLU's input, after :meth:`forward_after_relu`."""
        return self._windows.backward(dout, self._argmax(), self._x, rectified=self._rectified)

    def kink_state(self):
        if self._x is None:
            return None
        if self._rectified is None:
            return self._argmax()
        if self._kinks is None:  # the arg-max over the ReLU's output, as unfused
            self._kinks = self._windows.argmax(np.maximum(self._x, 0))[1]
        return self._kinks


class Flatten(EngineLayer):
    """``(N, *shape) -> (N, prod(shape))`` in C order (NCHW: channel, row, column)."""

    kind = "flatten"

    def build(self, input_shape, rng, dtype, init, bias):
        return (math.prod(per_example(input_shape)),)

    def forward(self, x, train):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._x_shape)


__all__ = ["Conv", "MaxPool", "Flatten"]
