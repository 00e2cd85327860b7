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

im2col copies one kernel offset at a time straight from the input (the
windows that reach into the padding get zeros written there: no padded copy
of the input is made), multiplies once (the bias rides along as a row of
ones), and undoes im2col (col2im) by accumulating one kernel offset at a time:
a loop over ``HH*WW`` offsets, each a whole-batch strided add.

Both im2col and the input gradient work image by image in spans of the batch
(:mod:`babysit.engine.parallel`): im2col spans run on every free core; the
input gradient of a large layer is computed per fixed group of images (its
product and its col2im together, while the group's columns are still in
cache), the groups depending on the layer's shapes only, so the numbers never
depend on the thread count. Small layers make one product, as they always did.

Max pooling runs one whole-batch elementwise operation per window offset on
strided slices of the input, in any memory layout, in spans of the batch or
channel axis (whichever is outer in memory). Windows that tile the input
(size == stride, dividing H and W) take the fast path backward: every input
element is written exactly once (no zero fill, no accumulation); overlapping
windows accumulate into a zeroed gradient. A reduction over reshaped
``(..., Ho, k, Wo, k)`` window axes measured 4x (channels-last) to 40x
(NCHW, where the short window axis is innermost) slower than these sweeps.
"""

from __future__ import annotations

import numpy as np

from babysit.engine.parallel import for_outer, for_spans, is_large, matmul, run, spans

CHANNELS_LAST = "channels_last"
CHANNEL_MAJOR = "channel_major"

# The input gradient of a large convolution is computed for groups of images
# whose column gradients take about this many bytes (they stay in cache while
# col2im reads them back).
COL2IM_GROUP_BYTES = 2 ** 21


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


def _valid(offset: int, stride: int, pad: int, size: int, count: int) -> tuple[int, int, slice]:
    """Outputs ``[lo, hi)`` whose window element ``offset`` lies inside the input, and its input slice."""
    lo = min(count, max(0, -((offset - pad) // stride)))
    hi = max(lo, min(count, (size - 1 + pad - offset) // stride + 1))
    return lo, hi, _offset_slice(lo * stride + offset - pad, hi - lo, stride)


def copy_window(dst: np.ndarray, src: np.ndarray, axes: tuple[int, int], offset, stride, pad) -> None:
    """``dst[..., ho, wo] = padded src[..., ho*sh + i - ph, wo*sw + j - pw]`` (zero in the padding).

    ``axes`` are the (height, width) axes of both arrays; ``offset`` the kernel
    offset ``(i, j)``. Only the border strips of ``dst`` that read padding are zeroed.
    """
    (ah, aw), (i, j), (sh, sw), (ph, pw) = axes, offset, stride, pad
    Ho, Wo = dst.shape[ah], dst.shape[aw]
    h_lo, h_hi, rows = _valid(i, sh, ph, src.shape[ah], Ho)
    w_lo, w_hi, cols = _valid(j, sw, pw, src.shape[aw], Wo)

    def at(h, w):
        index = [slice(None)] * dst.ndim
        index[ah], index[aw] = h, w
        return tuple(index)

    if h_lo == h_hi or w_lo == w_hi:
        dst[...] = 0
        return
    dst[at(slice(h_lo, h_hi), slice(w_lo, w_hi))] = src[at(rows, cols)]
    for h, w in ((slice(0, h_lo), slice(0, Wo)), (slice(h_hi, Ho), slice(0, Wo)),
                 (slice(h_lo, h_hi), slice(0, w_lo)), (slice(h_lo, h_hi), slice(w_hi, Wo))):
        if h.start != h.stop and w.start != w.stop:
            dst[at(h, w)] = 0


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
    def cols(self, x: np.ndarray) -> np.ndarray:
        """The im2col matrix of ``x`` plus the row/column of ones, built in spans of the batch."""
        N, C = self.x_shape[:2]
        (kh, kw), (Ho, Wo), K = self.kernel, self.out_hw, self.K
        per_image = Ho * Wo
        offsets = [(i, j) for i in range(kh) for j in range(kw)]
        if self.layout == CHANNELS_LAST:
            src = x.transpose(0, 2, 3, 1)                       # (N, H, W, C)
            if C > 1 and src.strides[3] != src.itemsize:
                src = np.ascontiguousarray(src)                 # channel runs for the copies
            cols = np.empty((self.M, K + 1), dtype=x.dtype)
            windows = cols[:, :K].reshape(N, Ho, Wo, kh, kw, C)

            def fill(n0, n1):
                for i, j in offsets:
                    copy_window(windows[n0:n1, :, :, i, j], src[n0:n1], (1, 2), (i, j), self.stride, self.pad)
                cols[n0 * per_image:n1 * per_image, K] = 1
        else:
            src = x.transpose(1, 0, 2, 3)                       # (C, N, H, W)
            cols = np.empty((K + 1, self.M), dtype=x.dtype)
            windows = cols[:K].reshape(C, kh, kw, N, Ho, Wo)

            def fill(n0, n1):
                for i, j in offsets:
                    copy_window(windows[:, i, j, n0:n1], src[:, n0:n1], (2, 3), (i, j), self.stride, self.pad)
                cols[K, n0 * per_image:n1 * per_image] = 1
        for_spans(N, fill, per_index=(K + 1) * per_image)
        return cols

    # -- products --------------------------------------------------------------
    def forward(self, cols: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``conv(x, W) + b`` as an ``(N, F, Ho, Wo)`` view of the product's memory."""
        N = self.x_shape[0]
        (Ho, Wo), F = self.out_hw, W.shape[0]
        if self.layout == CHANNELS_LAST:
            # (M, K+1) @ (K+1, F); K ordered (HH, WW, C)
            weights = np.concatenate([W.transpose(2, 3, 1, 0).reshape(self.K, F), b[None, :]])
            return matmul(cols, weights).reshape(N, Ho, Wo, F).transpose(0, 3, 1, 2)
        # (F, K+1) @ (K+1, M); K ordered (C, HH, WW), W's own memory order
        weights = np.concatenate([W.reshape(F, self.K), b[:, None]], axis=1)
        return matmul(weights, cols).reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3)

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
            g = matmul(cols.T, d)                            # (K+1, F)
            dW = g[:self.K].reshape(kh, kw, C, F).transpose(3, 2, 0, 1)
            return np.ascontiguousarray(dW), g[self.K].copy()
        g = matmul(d, cols.T)                                # (F, K+1)
        return np.ascontiguousarray(g[:, :self.K]).reshape(F, C, kh, kw), g[:, self.K].copy()

    def _image_groups(self, columns_per_image: int, itemsize: int, F: int) -> list[tuple[int, int]]:
        """Groups of images for the input gradient: all at once for small layers, else cache-sized.

        A function of the shapes only, so the numbers never depend on the thread count.
        """
        N = self.x_shape[0]
        if not is_large(self.K * F * N * columns_per_image):
            return [(0, N)]
        per_group = max(1, COL2IM_GROUP_BYTES // (self.K * columns_per_image * itemsize))
        return spans(N, -(-N // per_group))

    def input_grad(self, dout: np.ndarray, W: np.ndarray) -> np.ndarray:
        """dLoss/dx ``(N, C, H, W)`` (a view) from dLoss/dout ``(N, F, Ho, Wo)``.

        Computed per group of images (:meth:`_image_groups`): the group's
        column gradients (one product) and their col2im, groups side by side.
        """
        N, C, H, Wd = self.x_shape
        F, (Ho, Wo), (Hp, Wp), (ph, pw) = W.shape[0], self.out_hw, self.padded_hw, self.pad
        if self.layout == CHANNELS_LAST:
            d = self.matrix_from_out(dout)                                  # (M, F)
            weights = W.transpose(2, 3, 1, 0).reshape(self.K, F).T          # (F, K)
            dxp = np.empty((N, Hp, Wp, C), dtype=dout.dtype)
            per_image = Ho * Wo

            def group(n0, n1):
                dxp[n0:n1] = 0
                self._col2im_into(dxp[n0:n1], d[n0 * per_image:n1 * per_image] @ weights)
            crop = (slice(None), slice(ph, ph + H), slice(pw, pw + Wd), slice(None))
            order = (0, 3, 1, 2)
        else:
            weights = W.reshape(F, self.K).T                                 # (K, F)
            source = dout.transpose(1, 0, 2, 3)                             # (F, N, Ho, Wo)
            if self.row_flat:
                flat = np.empty((C, N, (Hp + 1) * Wp), dtype=dout.dtype)

                def group(n0, n1):
                    wide = np.zeros((F, n1 - n0, Ho, Wp), dtype=dout.dtype)
                    wide[:, :, :, :Wo] = source[:, n0:n1]
                    flat[:, n0:n1] = 0
                    self._col2im_row_flat_into(flat[:, n0:n1], weights @ wide.reshape(F, -1))
                dxp = flat.reshape(C, N, Hp + 1, Wp)
            else:
                d = self.matrix_from_out(dout)                              # (F, M)
                dxp = np.empty((C, N, Hp, Wp), dtype=dout.dtype)
                per_image = Ho * Wo

                def group(n0, n1):
                    dxp[:, n0:n1] = 0
                    self._col2im_into(dxp[:, n0:n1], weights @ d[:, n0 * per_image:n1 * per_image])
            crop = (slice(None), slice(None), slice(ph, ph + H), slice(pw, pw + Wd))
            order = (1, 0, 2, 3)
        columns = Ho * (Wp if self.row_flat else Wo)
        groups = self._image_groups(columns, dout.dtype.itemsize, F)
        run(len(groups), lambda g: group(*groups[g]))
        return dxp[crop].transpose(order)

    # -- col2im ----------------------------------------------------------------
    def col2im(self, dcols: np.ndarray) -> np.ndarray:
        """Gradient of the input from the gradient of the (un-augmented) columns.

        ``dcols`` is ``(M, K)`` or ``(K, M)``; returns an ``(N, C, H, W)`` view.
        Overlapping windows add up; one strided whole-batch add per kernel offset.
        """
        N, C, H, W = self.x_shape
        (ph, pw), (Hp, Wp) = self.pad, self.padded_hw
        if self.layout == CHANNELS_LAST:
            dxp = np.zeros((N, Hp, Wp, C), dtype=dcols.dtype)
            self._col2im_into(dxp, dcols)
            return dxp[:, ph:ph + H, pw:pw + W, :].transpose(0, 3, 1, 2)
        dxp = np.zeros((C, N, Hp, Wp), dtype=dcols.dtype)
        self._col2im_into(dxp, dcols)
        return dxp[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)

    def _col2im_into(self, dxp: np.ndarray, dcols: np.ndarray) -> None:
        """Add the columns of some images into their zeroed padded gradient ``dxp``.

        ``dxp`` is ``(n, Hp, Wp, C)`` (channels-last) or ``(C, n, Hp, Wp)``;
        ``dcols`` the matching ``(n*Ho*Wo, K)`` or ``(K, n*Ho*Wo)`` columns.
        """
        C = self.x_shape[1]
        (kh, kw), (sh, sw), (Ho, Wo) = self.kernel, self.stride, self.out_hw
        if self.layout == CHANNELS_LAST:
            d = dcols.reshape(-1, Ho, Wo, kh, kw, C)
            for i in range(kh):
                rows = _offset_slice(i, Ho, sh)
                for j in range(kw):
                    dxp[:, rows, _offset_slice(j, Wo, sw), :] += d[:, :, :, i, j, :]
            return
        d = dcols.reshape(C, kh, kw, -1, Ho, Wo)
        for i in range(kh):
            rows = _offset_slice(i, Ho, sh)
            for j in range(kw):
                dxp[:, :, rows, _offset_slice(j, Wo, sw)] += d[:, i, j]

    def _col2im_row_flat_into(self, dxp: np.ndarray, dcols: np.ndarray) -> None:
        """col2im of ``(K, n*Ho*Wp)`` columns computed on Wp-wide output rows (stride 1).

        ``dxp`` is the zeroed ``(C, n, (Hp+1)*Wp)`` gradient of those images.
        Output (ho, wo) of offset (i, j) reads padded pixel (ho+i, wo+j), i.e.
        flat position ``ho*Wp + wo + (i*Wp + j)`` of a Wp-wide image: each offset
        is one shifted contiguous add. The extra columns (wo >= Wo) carry zero
        gradient, so what they add wraps around harmlessly; one spare zero row
        keeps the last offsets inside each image.
        """
        C = self.x_shape[1]
        (kh, kw), (Ho, _), Wp = self.kernel, self.out_hw, self.padded_hw[1]
        run_length = Ho * Wp
        d = dcols.reshape(C, kh, kw, dxp.shape[1], run_length)
        for i in range(kh):
            for j in range(kw):
                start = i * Wp + j
                dxp[:, :, start:start + run_length] += d[:, i, j]


# ---------------------------------------------------------------------------
# Max pooling


class MaxPoolWindows:
    """Max pooling of ``(N, C, H, W)`` inputs over ``kernel`` windows every ``stride``.

    The windows are visited one offset ``(i, j)`` at a time; for each offset
    ``x[:, :, i::sh, j::sw]`` (cut to ``Ho x Wo``) is a strided view holding
    that element of every window. ``argmax`` indices count offsets row-major
    within the window (``i*WW + j``) and pick the first maximum on ties, as
    PyTorch does. Every pass runs in spans of the axis (batch or channel)
    that is outer in the input's memory, side by side on the free cores.

    ``rectify=True`` pools ``x`` and then applies ReLU to the window maxima:
    equal, bit for bit, to pooling ``max(x, 0)`` (max commutes with
    ``max(., 0)``), at a quarter of the ReLU's work for 2x2 windows. Its
    ``argmax`` is that of ``x``; for windows that do not overlap, routing
    ``dout * (out > 0)`` through it (``backward(..., rectified=out)``) gives
    exactly the gradient of ReLU-then-pool with respect to ``x``.
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

    def max(self, x: np.ndarray, rectify: bool = False) -> np.ndarray:
        """Window maxima ``(N, C, Ho, Wo)``, in the memory layout of ``x``."""
        out = np.empty_like(self.views(x)[0])

        def part(span):
            views, best = self.views(x[span]), out[span]
            if len(views) == 1:
                best[...] = views[0]
            else:
                np.maximum(views[0], views[1], out=best)
                for v in views[2:]:
                    np.maximum(best, v, out=best)
            if rectify:
                np.maximum(best, 0, out=best)
        for_outer(x, part, axes=(0, 1))
        return out

    def argmax(self, x: np.ndarray, rectify: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Window maxima and the offset index of the first maximum of each window."""
        out = np.empty_like(self.views(x)[0])
        index = np.empty_like(out, dtype=self.index_dtype)

        def part(span):
            views, best, where = self.views(x[span]), out[span], index[span]
            best[...] = views[0]
            where[...] = 0
            for offset, v in enumerate(views[1:], start=1):
                better = np.greater(v, best)
                np.maximum(best, v, out=best)
                # offsets rise, so "offset where better, else keep" is a maximum
                # (a masked np.copyto measured 3x slower than these uint8 passes)
                marks = better.view(np.uint8).astype(self.index_dtype, copy=False)
                marks *= offset
                np.maximum(where, marks, out=where)
            if rectify:
                np.maximum(best, 0, out=best)
        for_outer(x, part, axes=(0, 1))
        return out, index

    def backward(self, dout: np.ndarray, index: np.ndarray, like: np.ndarray,
                 rectified: np.ndarray | None = None) -> np.ndarray:
        """Route ``dout`` to the arg-max of each window: ``dx`` shaped (and laid out) like ``like``.

        ``rectified``: the output of a ``rectify=True`` pass; ``dout`` is then
        first masked with ``rectified > 0`` (the ReLU's gradient).
        """
        if not same_layout(dout, index):
            # one copy into the layout of the forward pass beats every later
            # operation reading dout across its memory order
            converted = np.empty_like(index, dtype=dout.dtype)
            converted[...] = dout
            dout = converted
        dx = np.empty_like(like) if self.tiles else np.zeros_like(like)

        def part(span):
            d, where = dout[span], index[span]
            if rectified is not None:
                d = np.multiply(d, rectified[span] > 0)
            for offset, dv in enumerate(self.views(dx[span])):
                hit = where == offset
                if self.overlap:
                    dv += d * hit
                else:
                    np.multiply(d, hit, out=dv)
        for_outer(dx, part, axes=(0, 1))
        return dx


__all__ = ["CHANNELS_LAST", "CHANNEL_MAJOR", "COL2IM_GROUP_BYTES", "ConvPlan", "MaxPoolWindows",
           "choose_layout", "copy_window", "output_size", "same_layout"]
