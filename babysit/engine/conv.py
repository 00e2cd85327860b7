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
multiply once, and undo im2col (col2im) by accumulating one kernel offset at a
time: a loop over ``HH*WW`` offsets, each a whole-batch strided add.

Max pooling runs one whole-batch elementwise operation per window offset on
strided slices of the input (works in any memory layout; much faster than
reducing over reshaped window axes, whose innermost axis is the short window).
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


class Im2col:
    """im2col / col2im for one input shape, kernel, stride, padding and layout.

    ``x`` is ``(N, C, H, W)`` (any memory layout); ``kernel``, ``stride``,
    ``pad`` are ``(h, w)`` pairs. With ``K = C*HH*WW`` and ``M = N*Ho*Wo``:

    * channels-last: ``cols`` is ``(M, K)`` with K ordered (HH, WW, C); the
      product ``cols @ Wmat`` is ``(M, F)``.
    * channel-major: ``cols`` is ``(K, M)`` with K ordered (C, HH, WW); the
      product ``Wmat @ cols`` is ``(F, M)``.
    """

    def __init__(self, x_shape, kernel, stride, pad, layout: str):
        self.x_shape = tuple(x_shape)
        N, C, H, W = self.x_shape
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)
        self.layout = layout
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        self.out_hw = (output_size(H, kh, sh, ph), output_size(W, kw, sw, pw))
        self.padded_hw = (H + 2 * ph, W + 2 * pw)

    # -- padded copies in the working layout --------------------------------
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
        """The im2col matrix of ``x`` (one copy of the window view)."""
        N, C = self.x_shape[:2]
        (kh, kw), (Ho, Wo) = self.kernel, self.out_hw
        windows = self._windows(self._padded(x))
        if self.layout == CHANNELS_LAST:
            return windows.reshape(N * Ho * Wo, kh * kw * C)
        return windows.reshape(C * kh * kw, N * Ho * Wo)

    def col2im(self, dcols: np.ndarray) -> np.ndarray:
        """Gradient of the input from the gradient of ``cols``: ``(N, C, H, W)`` view.

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

    # -- matrices of the output, in the layout of the product ----------------
    def out_from_matrix(self, out: np.ndarray) -> np.ndarray:
        """``(M, F)`` or ``(F, M)`` product -> ``(N, F, Ho, Wo)`` view."""
        N = self.x_shape[0]
        Ho, Wo = self.out_hw
        if self.layout == CHANNELS_LAST:
            return out.reshape(N, Ho, Wo, -1).transpose(0, 3, 1, 2)
        return out.reshape(-1, N, Ho, Wo).transpose(1, 0, 2, 3)

    def matrix_from_out(self, dout: np.ndarray) -> np.ndarray:
        """``(N, F, Ho, Wo)`` -> ``(M, F)`` or ``(F, M)`` (free when the memory matches)."""
        F = dout.shape[1]
        if self.layout == CHANNELS_LAST:
            return dout.transpose(0, 2, 3, 1).reshape(-1, F)
        return dout.transpose(1, 0, 2, 3).reshape(F, -1)


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


__all__ = ["CHANNELS_LAST", "CHANNEL_MAJOR", "Im2col", "MaxPoolWindows",
           "choose_layout", "output_size", "same_layout"]
