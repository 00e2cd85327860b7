"""The engine's layers and the ``LAYERS`` registry ``{recipe kind: class}``.

Shapes: ``x`` is ``(N, *input_shape)``; images are NCHW. A layer may return an
NCHW-shaped view of another memory layout (convolution returns channel-major
or channels-last memory, see ``conv.py``); every layer accepts inputs in any
memory layout, and elementwise layers keep the layout they are given.

Every layer computes in the dtype of its parameters (parameter-free layers: of
their input) and never upcasts: float32 in, float32 out. Constants enter as
Python floats, which NumPy keeps at the array's precision.

Constructors validate their options and raise ``ValueError`` naming the layer
and the option; ``build`` raises ``ValueError`` when the input shape does not
fit. (The model builder turns both into ``ModelError``.)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from babysit.engine.base import Layer
from babysit.engine.conv import ConvPlan, MaxPoolWindows, choose_layout, output_size

# ---------------------------------------------------------------------------
# option validation


def _positive_int(kind: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{kind}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _int_pair(kind: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints ``(h, w)``, each at least ``minimum``."""
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                              or v < minimum for v in items):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{kind}: {name} must be a {what} integer or a pair [h, w] of them, "
                         f"got {value!r}")
    return int(items[0]), int(items[1])


def _number(kind: str, name: str, value, low=-math.inf, high=math.inf,
            low_open=False, high_open=False) -> float:
    """A finite real number inside the given interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        number = float(value)
        ok = (number > low if low_open else number >= low) and (number < high if high_open else number <= high)
    if not ok:
        if math.isinf(low) and math.isinf(high):
            what = "a finite number"
        else:
            what = (f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                    .replace("inf]", "inf)"))
        raise ValueError(f"{kind}: {name} must be {what}, got {value!r}")
    return number


def _per_example(shape) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _image_shape(kind: str, input_shape) -> tuple[int, int, int]:
    shape = _per_example(input_shape)
    if len(shape) != 3:
        raise ValueError(f"{kind} needs image input (C, H, W), got per-example shape {shape}")
    return shape


def _channel_shape(kind: str, input_shape) -> tuple[int, ...]:
    """Broadcast shape of a per-feature / per-channel parameter: ``(1, C)`` or ``(1, C, 1, 1)``."""
    shape = _per_example(input_shape)
    if not shape:
        raise ValueError(f"{kind} needs at least one feature axis, got per-example shape ()")
    return (1, shape[0]) + (1,) * (len(shape) - 1)


def _make_weight(init, shape, fan_in, rng, dtype) -> np.ndarray:
    return np.ascontiguousarray(init(tuple(shape), int(fan_in), rng, dtype), dtype=dtype)


class EngineLayer(Layer):
    """Base of the engine's layers: remembers its options (for ``repr``) and
    lets the model skip the input gradient.

    ``needs_input_grad``: when the model sets it to False (on its first layer,
    during training steps, where nobody reads dLoss/dX), ``backward`` still
    fills ``grads`` but skips computing ``dx`` and returns None. Only layers
    whose ``dx`` costs a matrix product (affine, conv, maxout) act on it;
    PyTorch skips the same work for inputs that do not require grad.
    """

    needs_input_grad = True

    def _remember(self, **options) -> None:
        self.options = options

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "options", {}).items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------
# Affine, convolution, pooling, reshaping


class _Linear(EngineLayer):
    """Shared by Affine and Maxout: ``z = x.reshape(N, D) @ W + b`` and its backward."""

    weight_names = ("W",)

    def _build_linear(self, input_shape, columns, rng, dtype, init, bias):
        D = math.prod(_per_example(input_shape))
        self.params["W"] = _make_weight(init, (D, columns), D, rng, dtype)
        self.params["b"] = np.full(columns, bias, dtype=dtype)
        self.zero_grads()

    def _linear_forward(self, x):
        W = self.params["W"]
        self._x_shape = x.shape
        self._x2d = x2d = x.reshape(x.shape[0], -1).astype(W.dtype, copy=False)
        z = x2d @ W
        z += self.params["b"]
        return z

    def _linear_backward(self, dz):
        """Fill ``grads`` from ``dz = dLoss/dz (N, columns)``; return dx (None when not needed)."""
        W, x2d = self.params["W"], self._x2d
        self.grads["W"] = x2d.T @ dz
        self.grads["b"] = dz.sum(axis=0)
        if not self.needs_input_grad:
            return None
        return (dz @ W.T).reshape(self._x_shape)


class Affine(_Linear):
    """Fully connected layer ``out = x.reshape(N, D) @ W + b``.

    Input ``(N, *shape)`` with ``D = prod(shape)``; output ``(N, out)``.
    Params ``W (D, out)`` (initialised with fan_in D), ``b (out,)``.
    """

    kind = "affine"

    def __init__(self, out):
        super().__init__()
        self.out = _positive_int(self.kind, "out", out)
        self._remember(out=self.out)

    def build(self, input_shape, rng, dtype, init, bias):
        self._build_linear(input_shape, self.out, rng, dtype, init, bias)
        return (self.out,)

    def forward(self, x, train):
        return self._linear_forward(x)

    def backward(self, dout):
        return self._linear_backward(dout)


class Conv(EngineLayer):
    """2-D convolution (cross-correlation, as in CS231n and PyTorch).

    Input ``(N, C, H, W)``; output ``(N, F, Ho, Wo)`` with
    ``Ho = (H + 2*pad - HH) // stride + 1`` (likewise ``Wo``).
    Params ``W (F, C, HH, WW)`` (fan_in ``C*HH*WW``), ``b (F,)``.
    ``size``, ``stride`` and ``pad`` take an int or a pair ``[h, w]``;
    ``pad=None`` means ``(size - 1) // 2`` ("same" for odd sizes at stride 1).
    The output is an NCHW-shaped view of the product's memory. ``layout``
    (channel-major or channels-last im2col, see ``conv.choose_layout``) is
    picked by ``build`` for the input shape; setting it forces one.
    """

    kind = "conv"
    weight_names = ("W",)

    def __init__(self, filters, size=3, stride=1, pad=None):
        super().__init__()
        self.filters = _positive_int(self.kind, "filters", filters)
        self.size = _int_pair(self.kind, "size", size, 1)
        self.stride = _int_pair(self.kind, "stride", stride, 1)
        self.pad = ((self.size[0] - 1) // 2, (self.size[1] - 1) // 2) if pad is None else \
            _int_pair(self.kind, "pad", pad, 0)
        self._remember(filters=self.filters, size=size, stride=stride, pad=pad)
        self.layout = None

    def build(self, input_shape, rng, dtype, init, bias):
        C, H, W = _image_shape(self.kind, input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.size, self.stride, self.pad
        if kh > H + 2 * ph or kw > W + 2 * pw:
            raise ValueError(f"conv: kernel {kh}x{kw} is larger than the padded input "
                             f"{H + 2 * ph}x{W + 2 * pw}")
        Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
        self.layout = choose_layout(C, kw, Wo)
        fan_in = C * kh * kw
        self.params["W"] = _make_weight(init, (self.filters, C, kh, kw), fan_in, rng, dtype)
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


class MaxPool(EngineLayer):
    """Max pooling over ``size`` windows every ``stride`` (None = ``size``), no padding.

    Input ``(N, C, H, W)``; output ``(N, C, Ho, Wo)`` with ``Ho = (H - size) // stride + 1``.
    The gradient goes to the first maximum of each window. ``kink_state`` is
    the arg-max offset inside each window.
    """

    kind = "maxpool"
    has_kinks = True

    def __init__(self, size=2, stride=None):
        super().__init__()
        self.size = _int_pair(self.kind, "size", size, 1)
        self.stride = self.size if stride is None else _int_pair(self.kind, "stride", stride, 1)
        self._remember(size=size, stride=stride)
        self._x = self._index = None

    def build(self, input_shape, rng, dtype, init, bias):
        C, H, W = _image_shape(self.kind, input_shape)
        (kh, kw), (sh, sw) = self.size, self.stride
        if kh > H or kw > W:
            raise ValueError(f"maxpool: window {kh}x{kw} is larger than the input {H}x{W}")
        return (C, output_size(H, kh, sh, 0), output_size(W, kw, sw, 0))

    def forward(self, x, train):
        if x.ndim != 4 or x.shape[2] < self.size[0] or x.shape[3] < self.size[1]:
            raise ValueError(f"maxpool {self.size[0]}x{self.size[1]} expects input (N, C, H, W) "
                             f"at least that large, got {x.shape}")
        self._windows = MaxPoolWindows(x.shape, self.size, self.stride)
        self._x = x
        if train:  # a backward pass follows: find the arg-max now, in the same sweep
            out, self._index = self._windows.argmax(x)
        else:
            out, self._index = self._windows.max(x), None
        return out

    def _argmax(self) -> np.ndarray:
        if self._index is None:
            self._index = self._windows.argmax(self._x)[1]
        return self._index

    def backward(self, dout):
        return self._windows.backward(dout, self._argmax(), self._x)

    def kink_state(self):
        return None if self._x is None else self._argmax()


class Flatten(EngineLayer):
    """``(N, *shape) -> (N, prod(shape))`` in C order (NCHW: channel, row, column)."""

    kind = "flatten"

    def build(self, input_shape, rng, dtype, init, bias):
        return (math.prod(_per_example(input_shape)),)

    def forward(self, x, train):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._x_shape)


# ---------------------------------------------------------------------------
# Activations (elementwise; output shape = input shape)


class _Elementwise(EngineLayer):
    """Base of the elementwise activations: shape-preserving, kink state ``x > 0``."""

    def __init__(self):
        super().__init__()
        self._x = None
        self._remember()

    def kink_state(self):
        if not self.has_kinks or self._x is None:
            return None
        return self._x > 0


class ReLU(_Elementwise):
    """``max(x, 0)``; the gradient at 0 is 0. Kink state: ``x > 0``."""

    kind = "relu"
    has_kinks = True

    def forward(self, x, train):
        self._x = x
        return np.maximum(x, 0)

    def backward(self, dout):
        return np.multiply(dout, self._x > 0)


class LeakyReLU(_Elementwise):
    """``x`` for ``x > 0``, ``alpha * x`` otherwise (any finite ``alpha``). Kink state: ``x > 0``."""

    kind = "leaky_relu"
    has_kinks = True

    def __init__(self, alpha=0.01):
        super().__init__()
        self.alpha = _number(self.kind, "alpha", alpha)
        self._remember(alpha=self.alpha)

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

    def __init__(self, alpha=0.25):
        super().__init__()
        self.alpha = _number(self.kind, "alpha", alpha)
        self._remember(alpha=self.alpha)

    def build(self, input_shape, rng, dtype, init, bias):
        self._broadcast = _channel_shape(self.kind, input_shape)
        self.params["alpha"] = np.full(self._broadcast[1], self.alpha, dtype=dtype)
        self.zero_grads()
        return _per_example(input_shape)

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

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = _number(self.kind, "alpha", alpha, 0.0, low_open=True)
        self.has_kinks = self.alpha != 1.0
        self._remember(alpha=self.alpha)

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


# ---------------------------------------------------------------------------
# Maxout, batch normalisation, dropout


class Maxout(_Linear):
    """Maxout units: ``out[:, j] = max_p (x @ W + b)[:, j*pieces + p]``.

    Input ``(N, *shape)`` flattened to ``(N, D)``; output ``(N, out)``. Params
    ``W (D, pieces*out)`` (fan_in D) and ``b (pieces*out,)``, piece-major: unit
    ``j`` uses columns ``j*pieces .. j*pieces + pieces - 1``. Kink state: the
    arg-max piece of every unit (first maximum on ties).
    """

    kind = "maxout"
    has_kinks = True

    def __init__(self, out, pieces=2):
        super().__init__()
        self.out = _positive_int(self.kind, "out", out)
        self.pieces = _positive_int(self.kind, "pieces", pieces)
        self._remember(out=self.out, pieces=self.pieces)
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

    def __init__(self, eps=1e-5, momentum=0.9):
        super().__init__()
        self.eps = _number(self.kind, "eps", eps, 0.0, low_open=True)
        self.momentum = _number(self.kind, "momentum", momentum, 0.0, 1.0, high_open=True)
        self._remember(eps=self.eps, momentum=self.momentum)

    def build(self, input_shape, rng, dtype, init, bias):
        shape = _per_example(input_shape)
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


class Dropout(EngineLayer):
    """Inverted dropout: in train mode keep each unit with probability ``keep``
    and scale the kept ones by ``1/keep``; identity at test time.

    Shape-preserving. The mask comes from ``self.rng`` (a ``np.random.Generator``
    the model builder sets). With ``replay`` True the last mask is reused, so a
    gradient check sees one fixed function.
    """

    kind = "dropout"
    uses_randomness = True

    def __init__(self, keep=0.5):
        super().__init__()
        self.keep = _number(self.kind, "keep", keep, 0.0, 1.0, low_open=True)
        self._remember(keep=self.keep)
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


LAYERS: dict[str, type[Layer]] = {cls.kind: cls for cls in (
    Affine, Conv, MaxPool, Flatten, ReLU, LeakyReLU, PReLU, ELU, Maxout,
    Sigmoid, Tanh, BatchNorm, Dropout)}

__all__ = ["LAYERS", "EngineLayer", "Affine", "Conv", "MaxPool", "Flatten", "ReLU", "LeakyReLU", "PReLU",
           "ELU", "Maxout", "Sigmoid", "Tanh", "BatchNorm", "Dropout"]
