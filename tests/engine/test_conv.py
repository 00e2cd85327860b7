"""Convolution plans (im2col, products, col2im) and max pooling against naive loop references."""

import numpy as np
import pytest

from babysit.engine.conv import (CHANNEL_MAJOR, CHANNELS_LAST, ConvPlan, MaxPoolWindows,
                                 choose_layout, output_size)

LAYOUTS = [CHANNELS_LAST, CHANNEL_MAJOR]


def naive_conv(x, w, b, stride, pad):
    """Direct loops over examples, filters and output positions (the reference)."""
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, pad
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho = (H + 2 * ph - kh) // sh + 1
    Wo = (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[n, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    out[n, f, i, j] = np.sum(patch * w[f]) + b[f]
    return out


def naive_maxpool(x, size, stride):
    """Window maxima and first-argmax offsets by direct loops."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw) = size, stride
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    out = np.zeros((N, C, Ho, Wo))
    arg = np.zeros((N, C, Ho, Wo), dtype=int)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw].ravel()
                    arg[n, c, i, j] = int(np.argmax(window))   # first maximum on ties
                    out[n, c, i, j] = window[arg[n, c, i, j]]
    return out, arg


def naive_maxpool_backward(dout, arg, x_shape, size, stride):
    dx = np.zeros(x_shape)
    (kh, kw), (sh, sw) = size, stride
    N, C, Ho, Wo = dout.shape
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    di, dj = divmod(arg[n, c, i, j], kw)
                    dx[n, c, i * sh + di, j * sw + dj] += dout[n, c, i, j]
    return dx


def as_layout(x, layout):
    """The same NCHW values stored channels-last or channel-major in memory."""
    if layout == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "cnhw":
        return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    return x


CASES = [  # x shape, kernel, stride, pad
    ((2, 3, 6, 6), (3, 3), (1, 1), (1, 1)),
    ((1, 2, 5, 7), (3, 2), (2, 2), (1, 1)),
    ((2, 4, 7, 5), (2, 3), (1, 2), (0, 1)),
    ((3, 1, 4, 4), (4, 4), (1, 1), (0, 0)),
    ((1, 2, 5, 5), (1, 1), (3, 3), (2, 0)),
    ((2, 2, 5, 6), (2, 4), (1, 1), (2, 1)),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("x_shape, kernel, stride, pad", CASES)
def test_plan_forward_matches_naive_convolution(layout, x_shape, kernel, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((3, x_shape[1]) + kernel)
    b = rng.standard_normal(3)
    plan = ConvPlan(x.shape, kernel, stride, pad, layout)
    expected = naive_conv(x, w, b, stride, pad)
    assert plan.out_hw == expected.shape[2:]
    for memory in ("nchw", "nhwc", "cnhw"):  # the input's memory layout must not matter
        out = plan.forward(plan.cols(as_layout(x, memory)), w, b)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("x_shape, kernel, stride, pad", CASES)
def test_plan_gradients_are_the_adjoint_products(layout, x_shape, kernel, stride, pad):
    # conv is linear in x and in (W, b): for every dout,
    # <conv(x, W, 0), dout> == <x, input_grad(dout)> and
    # <conv(x, W, b), dout> == <W, dW> + <b, db>
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((3, x_shape[1]) + kernel)
    b = rng.standard_normal(3)
    plan = ConvPlan(x.shape, kernel, stride, pad, layout)
    cols = plan.cols(x)
    dout = rng.standard_normal((x_shape[0], 3) + plan.out_hw)
    for memory in ("nchw", "nhwc", "cnhw"):
        d = as_layout(dout, memory)
        dx = plan.input_grad(d, w)
        assert dx.shape == x.shape
        assert np.isclose(np.sum(plan.forward(cols, w, 0 * b) * dout), np.sum(x * dx), rtol=1e-12)
        dW, db = plan.weight_grads(cols, d)
        assert dW.shape == w.shape and db.shape == b.shape
        assert np.isclose(np.sum(plan.forward(cols, w, b) * dout),
                          np.sum(w * dW) + np.sum(b * db), rtol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("x_shape, kernel, stride, pad", CASES)
def test_col2im_is_the_adjoint_of_im2col(layout, x_shape, kernel, stride, pad):
    # <cols(x), D> == <x, col2im(D)> for all x, D (the bias's ones left out)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape)
    plan = ConvPlan(x.shape, kernel, stride, pad, layout)
    cols = plan.cols(x)
    cols = cols[:, :plan.K] if layout == CHANNELS_LAST else cols[:plan.K]
    D = rng.standard_normal(cols.shape)
    dx = plan.col2im(D)
    assert dx.shape == x.shape
    assert np.isclose(np.sum(cols * D), np.sum(x * dx), rtol=1e-12)


def test_columns_carry_ones_for_the_bias():
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 4))
    cols = ConvPlan(x.shape, (3, 3), (1, 1), (1, 1), CHANNEL_MAJOR).cols(x)
    assert cols.shape == (28, 32) and np.all(cols[27] == 1)
    cols = ConvPlan(x.shape, (3, 3), (1, 1), (1, 1), CHANNELS_LAST).cols(x)
    assert cols.shape == (32, 28) and np.all(cols[:, 27] == 1)


def test_col2im_adds_overlapping_windows():
    # all-ones column gradient: each input pixel receives the number of windows covering it
    x = np.zeros((1, 1, 4, 4))
    expected = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    plan = ConvPlan(x.shape, (3, 3), (1, 1), (0, 0), CHANNELS_LAST)
    np.testing.assert_array_equal(plan.col2im(np.ones((plan.M, plan.K)))[0, 0], expected)
    # the row-flat input gradient of a stride-1 channel-major plan counts the same
    plan = ConvPlan(x.shape, (3, 3), (1, 1), (0, 0), CHANNEL_MAJOR)
    assert plan.row_flat
    dx = plan.input_grad(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_plan_keeps_float32():
    x = np.ones((2, 3, 5, 5), dtype=np.float32)
    w = np.ones((4, 3, 3, 3), dtype=np.float32)
    b = np.ones(4, dtype=np.float32)
    for layout in LAYOUTS:
        plan = ConvPlan(x.shape, (3, 3), (1, 1), (1, 1), layout)
        cols = plan.cols(x)
        out = plan.forward(cols, w, b)
        assert cols.dtype == out.dtype == np.float32
        dout = np.ones_like(out)
        assert plan.input_grad(dout, w).dtype == np.float32
        assert all(g.dtype == np.float32 for g in plan.weight_grads(cols, dout))


def test_output_size_and_layout_choice():
    assert output_size(32, 3, 1, 1) == 32
    assert output_size(7, 3, 2, 1) == 4
    assert output_size(5, 2, 2, 0) == 2          # floor, like PyTorch
    assert choose_layout(3, 3, 32) == CHANNEL_MAJOR   # RGB input: short channel runs
    assert choose_layout(32, 3, 16) == CHANNEL_MAJOR  # wide enough outputs
    assert choose_layout(64, 3, 8) == CHANNELS_LAST   # narrow outputs, many channels
    assert choose_layout(1, 3, 8) == CHANNEL_MAJOR    # one channel: runs of 3 would be worse


POOL_CASES = [  # x shape, size, stride
    ((2, 3, 4, 6), (2, 2), (2, 2)),   # tiles exactly
    ((2, 2, 7, 7), (3, 3), (2, 2)),   # overlapping
    ((1, 2, 5, 7), (2, 2), (2, 2)),   # non-overlapping, leftover rows/columns
    ((1, 2, 7, 8), (2, 3), (3, 2)),   # gaps in one axis, overlap in the other
    ((2, 1, 3, 3), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("memory", ["nchw", "nhwc", "cnhw"])
@pytest.mark.parametrize("x_shape, size, stride", POOL_CASES)
def test_maxpool_matches_naive_loops(memory, x_shape, size, stride):
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal(x_shape)
    x = as_layout(x0, memory)
    pool = MaxPoolWindows(x.shape, size, stride)
    expected, arg = naive_maxpool(x0, size, stride)
    out, index = pool.argmax(x)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(pool.max(x), expected)
    np.testing.assert_array_equal(index, arg)
    dout = rng.standard_normal(out.shape)
    dx = pool.backward(dout, index, x)
    np.testing.assert_allclose(dx, naive_maxpool_backward(dout, arg, x.shape, size, stride),
                               rtol=1e-12, atol=0)


def test_maxpool_ties_go_to_the_first_maximum():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 3] = 1.0                      # right window: a unique max at offset 3
    pool = MaxPoolWindows(x.shape, (2, 2), (2, 2))
    out, index = pool.argmax(x)
    np.testing.assert_array_equal(index[0, 0], [[0, 3]])   # left window: all tied -> offset 0
    dx = pool.backward(np.ones_like(out), index, x)
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_maxpool_keeps_float32_and_memory_layout():
    x = as_layout(np.random.default_rng(3).standard_normal((2, 4, 6, 6)).astype(np.float32), "nhwc")
    pool = MaxPoolWindows(x.shape, (2, 2), (2, 2))
    out, index = pool.argmax(x)
    assert out.dtype == np.float32 and index.dtype == np.uint8
    assert out.transpose(0, 2, 3, 1).flags.c_contiguous      # still channels-last
    dx = pool.backward(np.ones_like(out), index, x)
    assert dx.dtype == np.float32 and dx.transpose(0, 2, 3, 1).flags.c_contiguous


def test_maxpool_large_window_index_dtype():
    x = np.arange(2 * 300, dtype=np.float64).reshape(1, 1, 2, 300)
    pool = MaxPoolWindows(x.shape, (2, 150), (2, 150))
    out, index = pool.argmax(x)
    np.testing.assert_array_equal(index[0, 0], [[299, 299]])
    np.testing.assert_array_equal(out[0, 0], [[449, 599]])
