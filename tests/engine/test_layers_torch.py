"""Layers against torch.nn.functional, value by value: forward outputs, input and parameter gradients."""

import numpy as np
import pytest

from babysit.engine.conv import CHANNEL_MAJOR, CHANNELS_LAST
from babysit.engine.layers import (ELU, Affine, BatchNorm, Conv, LeakyReLU, MaxPool, PReLU, ReLU,
                                   Sigmoid, Tanh)

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.torch

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def build(layer, input_shape, dtype=np.float64):
    def init(shape, fan_in, rng, dtype):
        return rng.standard_normal(shape).astype(dtype)
    layer.build(input_shape, np.random.default_rng(0), dtype, init, 0.0)
    for name, p in layer.params.items():   # non-trivial biases, gains and slopes
        if name != "W":
            p[...] = np.random.default_rng(1).uniform(-1, 1, p.shape) + (1.5 if name == "gamma" else 0)
    return layer


def run_both(layer, torch_fn, x, train=True, seed=2):
    """Forward and backward through ``layer`` and ``torch_fn(x_t, **params_t)``.

    Returns ((out, dx, grads) of babysit, (out, dx, grads) of torch).
    """
    dtype = x.dtype.type
    out = layer.forward(x, train)
    dout = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
    dx = layer.backward(dout)
    grads = {name: layer.grads[name] for name in layer.params}

    x_t = torch.tensor(x, requires_grad=True)
    params_t = {name: torch.tensor(p, requires_grad=True) for name, p in layer.params.items()}
    out_t = torch_fn(x_t, **params_t)
    out_t.backward(torch.tensor(dout))
    grads_t = {name: t.grad.numpy() for name, t in params_t.items()}
    return (out, dx, grads), (out_t.detach().numpy(), x_t.grad.numpy(), grads_t)


def assert_same(ours, theirs, dtype=np.float64):
    tol = TOL[dtype]
    (out, dx, grads), (out_t, dx_t, grads_t) = ours, theirs
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(out, out_t, **tol)
    np.testing.assert_allclose(dx, dx_t, **tol)
    for name in grads:
        assert grads[name].dtype == dtype
        np.testing.assert_allclose(grads[name], grads_t[name], err_msg=name, **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_affine_matches_linear(dtype):
    layer = build(Affine(7), (3, 4), dtype)
    x = np.random.default_rng(3).standard_normal((5, 3, 4)).astype(dtype)
    ours, theirs = run_both(layer, lambda x, W, b: F.linear(x.reshape(5, -1), W.T, b), x)
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("layout", [CHANNELS_LAST, CHANNEL_MAJOR])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape, filters, size, stride, pad", [
    ((4, 3, 8, 8), 5, 3, 1, 1),
    ((2, 4, 9, 7), 3, 3, 2, 1),
    ((2, 2, 5, 7), 4, (3, 2), (2, 1), (1, 0)),
    ((3, 6, 6, 6), 2, 5, 1, 2),
])
def test_conv_matches_conv2d(layout, dtype, x_shape, filters, size, stride, pad):
    layer = build(Conv(filters, size=list(size) if isinstance(size, tuple) else size,
                       stride=list(stride) if isinstance(stride, tuple) else stride,
                       pad=list(pad) if isinstance(pad, tuple) else pad), x_shape[1:], dtype)
    layer.layout = layout
    x = np.random.default_rng(4).standard_normal(x_shape).astype(dtype)
    ours, theirs = run_both(layer, lambda x, W, b: F.conv2d(x, W, b, stride=stride, padding=pad), x)
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("x_shape, size, stride", [
    ((2, 3, 8, 8), 2, 2), ((2, 2, 9, 7), 3, 2), ((1, 2, 7, 9), (2, 3), (3, 2)), ((2, 2, 5, 5), 2, 2)])
def test_maxpool_matches_max_pool2d(x_shape, size, stride):
    layer = MaxPool(size=list(size) if isinstance(size, tuple) else size,
                    stride=list(stride) if isinstance(stride, tuple) else stride)
    # after a ReLU many windows tie at 0: the gradient must go where torch sends it
    x = np.maximum(np.random.default_rng(5).standard_normal(x_shape), 0)
    ours, theirs = run_both(layer, lambda x: F.max_pool2d(x, size, stride), x)
    assert_same(ours, theirs)


@pytest.mark.parametrize("make, torch_fn", [
    (ReLU, F.relu),
    (lambda: LeakyReLU(alpha=0.1), lambda x: F.leaky_relu(x, 0.1)),
    (lambda: ELU(alpha=1.0), lambda x: F.elu(x, 1.0)),
    (lambda: ELU(alpha=0.7), lambda x: F.elu(x, 0.7)),
    (Sigmoid, torch.sigmoid),
    (Tanh, torch.tanh),
])
@pytest.mark.parametrize("x_shape", [(6, 5), (2, 3, 4, 4)])
def test_activations_match(make, torch_fn, x_shape):
    x = np.random.default_rng(6).standard_normal(x_shape) * 3
    ours, theirs = run_both(make(), torch_fn, x)
    assert_same(ours, theirs)


@pytest.mark.parametrize("x_shape", [(6, 5), (2, 3, 4, 4)])
def test_prelu_matches(x_shape):
    layer = build(PReLU(), x_shape[1:])
    x = np.random.default_rng(7).standard_normal(x_shape)
    ours, theirs = run_both(layer, lambda x, alpha: F.prelu(x, alpha), x)
    assert_same(ours, theirs)


@pytest.mark.parametrize("x_shape", [(8, 5), (4, 3, 5, 5)])
def test_batchnorm_train_matches(x_shape):
    layer = build(BatchNorm(eps=1e-3, momentum=0.8), x_shape[1:])
    x = np.random.default_rng(8).standard_normal(x_shape) * 2 + 1
    running_mean = torch.zeros(x_shape[1], dtype=torch.float64)
    running_var = torch.ones(x_shape[1], dtype=torch.float64)
    ours, theirs = run_both(layer, lambda x, gamma, beta: F.batch_norm(
        x, running_mean, running_var, gamma, beta, training=True, momentum=0.2, eps=1e-3), x)
    assert_same(ours, theirs)
    np.testing.assert_allclose(layer.running_mean, running_mean.numpy(), rtol=1e-12)
    # torch keeps the unbiased variance in its running average; babysit the biased one (CS231n)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    np.testing.assert_allclose(layer.running_var, 0.8 + 0.2 * x.var(axis=axes), rtol=1e-12)


@pytest.mark.parametrize("x_shape", [(8, 5), (4, 3, 5, 5)])
def test_batchnorm_eval_matches(x_shape):
    rng = np.random.default_rng(9)
    layer = build(BatchNorm(eps=1e-4), x_shape[1:])
    layer.running_mean[:] = rng.standard_normal(x_shape[1])
    layer.running_var[:] = rng.uniform(0.5, 2, x_shape[1])
    rm, rv = torch.tensor(layer.running_mean), torch.tensor(layer.running_var)
    x = rng.standard_normal(x_shape)
    ours, theirs = run_both(layer, lambda x, gamma, beta: F.batch_norm(
        x, rm, rv, gamma, beta, training=False, eps=1e-4), x, train=False)
    assert_same(ours, theirs)
