"""Vectorised building blocks for convolution and max pooling.

Public arrays are NCHW. Internally a convolution works in whichever memory
layout gives its im2col copy the longest contiguous runs, and it hands back an
NCHW-shaped *view* of that memory (``out.transpose(...)``), so the next layer
reads it without a copy:

* channels-last (NHWC): ``cols`` is ``(N*Ho*Wo, HH*WW*C)``; each window row is
  one contiguous run of ``WW*C`` numbers. Best when ``WW*C`` is long (inner
  layers with many channels).
* channel-major (CNHW): ``cols`` is ``(C*HH*WW, N*Ho*Wo)``; each row is a
  shifted copy of the whole batch, with runs of ``Wo`` numbers. Best for few
  channels (the first layer on RGB or grey images), where channels-last would
  copy runs of 3 numbers.

Both build the columns from a strided window view (``as_strided``) in one copy,
multiply once (the bias rides along as a row of ones), and undo im2col
(col2im) by accumulating one kernel offset at a time: a loop over ``HH*WW``
offsets, each a whole-batch strided add.

Max pooling runs one whole-batch elementwise operation per window offset on
strided slices of the input, in any memory layout. Windows that tile the input
(size == stride, dividing H and W) take the fast path backward: every input
element is written exactly once (no zero fill, no accumulation); overlapping
windows accumulate into a zeroed gradient. A reduction over reshaped
``(..., Ho, k, Wo, k)`` window axes measured 4x (channels-last) to 40x
(NCHW, where the short window axis is innermost) slower than these sweeps.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

CHANNELS_LAST = "channels_last"
CHANNEL_MAJOR = "channel_major"


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Number of window positions along one axis (floor, as in PyTorch)."""
    return (size + 2 * pad - kernel) // stride + 1


def choose_layout(channels: int, kernel_w: int, out_w: int) -> str:
    """The faster im2col layout for a layer (see module doc).

    Channel-major copies runs of ``out_w`` numbers, channels-last runs of
    ``kernel_w * channels``. Measured on im2col + col2im + the three products
    (batch 64, 3x3): channel-major wins from 16-wide outputs up (3x32x32 by 2x,
    32x16x16 and 16x16x16 by ~10%), channels-last on narrow ones (64x8x8 by
    1.5x, 128x4x4 by 1.7x, 16x8x8 by 1.6x). Images reach the first layer as
    NCHW, which channel-major reads with long runs too.
    """
    if out_w < 12 and kernel_w * channels > out_w:
        return CHANNELS_LAST
    return CHANNEL_MAJOR


def same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two arrays of one shape order their axes alike in memory."""
    return np.array_equal(np.argsort(a.strides, kind="stable"), np.argsort(b.strides, kind="stable"))


def _offset_slice(start: int, count: int, step: int) -> slice:
    """Positions start, start+step, ... (count of them) as a slice."""
    return slice(start, start + step * (count - 1) + 1, step)


class ConvPlan:
    """Convolution of one input shape with one kernel, stride, padding and layout.

    ``x`` is ``(N, C, H, W)`` (any memory layout); ``kernel``, ``stride``,
    ``pad`` are ``(h, w)`` pairs; ``W`` is ``(F, C, HH, WW)``, ``b`` ``(F,)``.
    With ``K = C*HH*WW`` and ``M = N*Ho*Wo`` the im2col matrix carries one
    extra row (channel-major, ``(K+1, M)``, K ordered (C, HH, WW)) or column
    (channels-last, ``(M, K+1)``, K ordered (HH, WW, C)) of ones, so one
    product adds the bias and one product yields ``dW`` and ``db`` together.

    The input gradient of a stride-1 channel-major plan is accumulated on
    "row-flat" images: the output gradient is widened to the padded width Wp
    (zeros in the extra ``Wp - Wo`` columns), which turns every kernel offset
    of col2im into one contiguous run of ``Ho*Wp`` numbers per image instead
    of ``Ho`` runs of ``Wo`` (2x faster on 16-wide maps, for 1.1x the work in
    that one product).
    """

    def __init__(self, x_shape, kernel, stride, pad, layout: str):
        self.x_shape = tuple(x_shape)
        N, C, H, W = self.x_shape
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)
        self.layout = layout
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        self.out_hw = (output_size(H, kh, sh, ph), output_size(W, kw, sw, pw))
        self.padded_hw = (H + 2 * ph, W + 2 * pw)
        self.K = C * kh * kw
        self.M = N * self.out_hw[0] * self.out_hw[1]
        self.row_flat = layout == CHANNEL_MAJOR and self.stride == (1, 1)

    # -- im2col ----------------------------------------------------------------
    def _padded(self, x: np.ndarray) -> np.ndarray:
        """The input padded with zeros, as ``(N, Hp, Wp, C)`` or ``(C, N, Hp, Wp)``."""
        N, C, H, W = self.x_shape
        (ph, pw), (Hp, Wp) = self.pad, self.padded_hw
        if self.layout == CHANNELS_LAST:
            src = x.transpose(0, 2, 3, 1)
            if ph == 0 and pw == 0 and src.flags.c_contiguous:
                return src  # already NHWC memory (output of a channels-last conv)
            xp = np.zeros((N, Hp, Wp, C), dtype=x.dtype)
            xp[:, ph:ph + H, pw:pw + W, :] = src
        else:
            src = x.transpose(1, 0, 2, 3)
            if ph == 0 and pw == 0 and src.flags.c_contiguous:
                return src
            xp = np.zeros((C, N, Hp, Wp), dtype=x.dtype)
            xp[:, :, ph:ph + H, pw:pw + W] = src
        return xp

    def _windows(self, xp: np.ndarray) -> np.ndarray:
        """Read-only strided view of every window: 6-D, no copy."""
        N, C = self.x_shape[:2]
        (kh, kw), (sh, sw), (Ho, Wo) = self.kernel, self.stride, self.out_hw
        if self.layout == CHANNELS_LAST:
            sN, sH, sW, sC = xp.strides
            return as_strided(xp, (N, Ho, Wo, kh, kw, C),
                              (sN, sH * sh, sW * sw, sH, sW, sC), writeable=False)
        sC, sN, sH, sW = xp.strides
        return as_strided(xp, (C, kh, kw, N, Ho, Wo),
                          (sC, sH, sW, sN, sH * sh, sW * sw), writeable=False)

    def cols(self, x: np.ndarray) -> np.ndarray:
        """The im2col matrix of ``x`` plus the row/column of ones (one copy of the window view)."""
        windows = self._windows(self._padded(x))
        K, M = self.K, self.M
        if self.layout == CHANNELS_LAST:
            cols = np.empty((M, K + 1), dtype=x.dtype)
            np.copyto(cols[:, :K].reshape(windows.shape), windows)
            cols[:, K] = 1
        else:
            cols = np.empty((K + 1, M), dtype=x.dtype)
            np.copyto(cols[:K].reshape(windows.shape), windows)
            cols[K] = 1
        return cols

    # -- products --------------------------------------------------------------
    def forward(self, cols: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``conv(x, W) + b`` as an ``(N, F, Ho, Wo)`` view of the product's memory."""
        N = self.x_shape[0]
        (Ho, Wo), F = self.out_hw, W.shape[0]
        if self.layout == CHANNELS_LAST:
            # (M, K+1) @ (K+1, F); K ordered (HH, WW, C)
            weights = np.concatenate([W.transpose(2, 3, 1, 0).reshape(self.K, F), b[None, :]])
            return (cols @ weights).reshape(N, Ho, Wo, F).transpose(0, 3, 1, 2)
        # (F, K+1) @ (K+1, M); K ordered (C, HH, WW), W's own memory order
        weights = np.concatenate([W.reshape(F, self.K), b[:, None]], axis=1)
        return (weights @ cols).reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3)

    def matrix_from_out(self, dout: np.ndarray) -> np.ndarray:
        """``(N, F, Ho, Wo)`` -> ``(M, F)`` or ``(F, M)`` (free when the memory matches)."""
        F = dout.shape[1]
        if self.layout == CHANNELS_LAST:
            return dout.transpose(0, 2, 3, 1).reshape(-1, F)
        return dout.transpose(1, 0, 2, 3).reshape(F, -1)

    def weight_grads(self, cols: np.ndarray, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(dW (F, C, HH, WW), db (F,))`` from one product with the augmented columns."""
        C, (kh, kw), F = self.x_shape[1], self.kernel, dout.shape[1]
        d = self.matrix_from_out(dout)
        if self.layout == CHANNELS_LAST:
            g = cols.T @ d                                   # (K+1, F)
            dW = g[:self.K].reshape(kh, kw, C, F).transpose(3, 2, 0, 1)
            return np.ascontiguousarray(dW), g[self.K].copy()
        g = d @ cols.T                                       # (F, K+1)
        return np.ascontiguousarray(g[:, :self.K]).reshape(F, C, kh, kw), g[:, self.K].copy()

    def input_grad(self, dout: np.ndarray, W: np.ndarray) -> np.ndarray:
        """dLoss/dx ``(N, C, H, W)`` (a view) from dLoss/dout ``(N, F, Ho, Wo)``."""
        F = W.shape[0]
        if self.layout == CHANNELS_LAST:
            d = self.matrix_from_out(dout)
            return self.col2im(d @ W.transpose(2, 3, 1, 0).reshape(self.K, F).T)   # (M, K)
        if not self.row_flat:
            return self.col2im(W.reshape(F, self.K).T @ self.matrix_from_out(dout))  # (K, M)
        N, (Ho, Wo), Wp = self.x_shape[0], self.out_hw, self.padded_hw[1]
        wide = np.zeros((F, N, Ho, Wp), dtype=dout.dtype)
        wide[:, :, :, :Wo] = dout.transpose(1, 0, 2, 3)
        return self._col2im_row_flat(W.reshape(F, self.K).T @ wide.reshape(F, -1))

    # -- col2im ----------------------------------------------------------------
    def col2im(self, dcols: np.ndarray) -> np.ndarray:
        """Gradient of the input from the gradient of the (un-augmented) columns.

        ``dcols`` is ``(M, K)`` or ``(K, M)``; returns an ``(N, C, H, W)`` view.
        Overlapping windows add up; one strided whole-batch add per kernel offset.
        """
        N, C, H, W = self.x_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        (Ho, Wo), (Hp, Wp) = self.out_hw, self.padded_hw
        if self.layout == CHANNELS_LAST:
            d = dcols.reshape(N, Ho, Wo, kh, kw, C)
            dxp = np.zeros((N, Hp, Wp, C), dtype=dcols.dtype)
            for i in range(kh):
                rows = _offset_slice(i, Ho, sh)
                for j in range(kw):
                    dxp[:, rows, _offset_slice(j, Wo, sw), :] += d[:, :, :, i, j, :]
            return dxp[:, ph:ph + H, pw:pw + W, :].transpose(0, 3, 1, 2)
        d = dcols.reshape(C, kh, kw, N, Ho, Wo)
        dxp = np.zeros((C, N, Hp, Wp), dtype=dcols.dtype)
        for i in range(kh):
            rows = _offset_slice(i, Ho, sh)
            for j in range(kw):
                dxp[:, :, rows, _offset_slice(j, Wo, sw)] += d[:, i, j]
        return dxp[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)

    def _col2im_row_flat(self, dcols: np.ndarray) -> np.ndarray:
        """col2im of ``(K, N*Ho*Wp)`` columns computed on Wp-wide output rows (stride 1).

        Output (ho, wo) of offset (i, j) reads padded pixel (ho+i, wo+j), i.e.
        flat position ``ho*Wp + wo + (i*Wp + j)`` of a Wp-wide image: each offset
        is one shifted contiguous add. The extra columns (wo >= Wo) carry zero
        gradient, so what they add wraps around harmlessly; one spare zero row
        keeps the last offsets inside each image.
        """
        N, C, H, W = self.x_shape
        (kh, kw), (ph, pw) = self.kernel, self.pad
        (Ho, _), (Hp, Wp) = self.out_hw, self.padded_hw
        run = Ho * Wp
        d = dcols.reshape(C, kh, kw, N, run)
        dxp = np.zeros((C, N, (Hp + 1) * Wp), dtype=dcols.dtype)
        for i in range(kh):
            for j in range(kw):
                start = i * Wp + j
                dxp[:, :, start:start + run] += d[:, i, j]
        return dxp.reshape(C, N, Hp + 1, Wp)[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)


# ---------------------------------------------------------------------------
# Max pooling


class MaxPoolWindows:
    """Max pooling of ``(N, C, H, W)`` inputs over ``kernel`` windows every ``stride``.

    The windows are visited one offset ``(i, j)`` at a time; for each offset
    ``x[:, :, i::sh, j::sw]`` (cut to ``Ho x Wo``) is a strided view holding
    that element of every window. ``argmax`` indices count offsets row-major
    within the window (``i*WW + j``) and pick the first maximum on ties, as
    PyTorch does.
    """

    def __init__(self, x_shape, kernel, stride):
        self.x_shape = tuple(x_shape)
        H, W = self.x_shape[2:]
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        self.out_hw = (output_size(H, kh, sh, 0), output_size(W, kw, sw, 0))
        self.overlap = sh < kh or sw < kw
        # windows that tile the input exactly: every input element gets written
        self.tiles = (sh == kh and sw == kw and self.out_hw[0] * kh == H
                      and self.out_hw[1] * kw == W)
        self.index_dtype = np.min_scalar_type(kh * kw - 1)

    def views(self, x: np.ndarray) -> list:
        (kh, kw), (sh, sw), (Ho, Wo) = self.kernel, self.stride, self.out_hw
        return [x[:, :, _offset_slice(i, Ho, sh), _offset_slice(j, Wo, sw)]
                for i in range(kh) for j in range(kw)]

    def max(self, x: np.ndarray) -> np.ndarray:
        """Window maxima ``(N, C, Ho, Wo)``, in the memory layout of ``x``."""
        views = self.views(x)
        if len(views) == 1:
            return views[0].copy(order="K")
        best = np.maximum(views[0], views[1])
        for v in views[2:]:
            np.maximum(best, v, out=best)
        return best

    def argmax(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window maxima and the offset index of the first maximum of each window."""
        views = self.views(x)
        best = views[0].copy(order="K")
        index = np.zeros_like(best, dtype=self.index_dtype)
        for offset, v in enumerate(views[1:], start=1):
            better = np.greater(v, best)
            np.maximum(best, v, out=best)
            # offsets rise, so "offset where better, else keep" is a maximum
            marks = better.view(np.uint8).astype(self.index_dtype, copy=False)
            marks *= offset
            np.maximum(index, marks, out=index)
        return best, index

    def backward(self, dout: np.ndarray, index: np.ndarray, like: np.ndarray) -> np.ndarray:
        """Route ``dout`` to the arg-max of each window: ``dx`` shaped (and laid out) like ``like``."""
        if not same_layout(dout, index):
            # one copy into the layout of the forward pass beats every later
            # operation reading dout across its memory order
            converted = np.empty_like(index, dtype=dout.dtype)
            converted[...] = dout
            dout = converted
        dx = np.empty_like(like) if self.tiles else np.zeros_like(like)
        for offset, dv in enumerate(self.views(dx)):
            hit = index == offset
            if self.overlap:
                dv += dout * hit
            else:
                np.multiply(dout, hit, out=dv)
        return dx


__all__ = ["CHANNELS_LAST", "CHANNEL_MAJOR", "ConvPlan", "MaxPoolWindows",
           "choose_layout", "output_size", "same_layout"]
