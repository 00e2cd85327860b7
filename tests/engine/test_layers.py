"""Engine layers: gradients (float64 centered differences), references, modes, shapes, errors
(kink states: test_kinks.py)."""

import numpy as np
import pytest

from babysit.engine.base import Layer
from babysit.engine.conv import CHANNEL_MAJOR, CHANNELS_LAST
from babysit.engine.layers import (ELU, LAYERS, Affine, BatchNorm, Conv, Dropout, Flatten,
                                   LeakyReLU, Maxout, MaxPool, PReLU, ReLU, Sigmoid, Tanh)
from tests.engine.test_conv import naive_conv, naive_maxpool
from tests.helpers import numerical_gradient_array


class RecordingInit:
    """An initializer that records its calls: ``init(shape, fan_in, rng, dtype)``."""

    def __init__(self, scale=1.0):
        self.scale = scale
        self.calls = []

    def __call__(self, shape, fan_in, rng, dtype):
        self.calls.append((tuple(shape), fan_in, np.dtype(dtype)))
        return (self.scale * rng.standard_normal(shape)).astype(dtype)


def built(layer, input_shape, dtype=np.float64, bias=0.1, seed=0, scale=1.0):
    shape = layer.build(input_shape, np.random.default_rng(seed), dtype, RecordingInit(scale), bias)
    layer.out_shape = shape
    return layer


def away_from_zero(shape, rng, margin=0.05):
    """Standard normal values pushed at least ``margin`` away from 0 (no kink within h)."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)


def distinct(shape, rng):
    """Values all at least 1e-3 apart (no ties or near-ties in max pooling / maxout)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 1e-2 + rng.uniform(0, 1e-3, n)).reshape(shape) - n * 5e-3


H = 1e-5   # float64 step: truncation error ~H**2, rounding noise ~1e-16 / H


def grad_error(analytic, numeric):
    """Largest error relative to each entry, floored at 1e-4 of the largest entry.

    Centered differences in float64 are good to ~1e-10 absolute here; the floor
    keeps tiny entries from turning that noise into a large relative error.
    """
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(n), initial=0.0), 1e-8)
    return float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-4 * scale),
                        initial=0.0))


def check_gradients(layer, x, train=True, tol=1e-6, seed=0):
    """Compare backward() with centered differences for the input and every parameter."""
    rng = np.random.default_rng(seed)
    out = layer.forward(x, train)
    dout = rng.standard_normal(out.shape)

    def analytic():
        layer.forward(x, train)
        dx = layer.backward(dout)
        return dx, {name: g.copy() for name, g in layer.grads.items()}

    def f():
        return layer.forward(x, train)

    dx, grads = analytic()
    assert dx.shape == x.shape
    err = grad_error(dx, numerical_gradient_array(f, x, dout, h=H))
    assert err < tol, f"input: {err}"
    assert set(grads) == set(layer.params)
    for name, p in layer.params.items():
        assert grads[name].shape == p.shape, name
        err = grad_error(grads[name], numerical_gradient_array(f, p, dout, h=H))
        assert err < tol, f"{name}: {err}"


# ---------------------------------------------------------------------------
# gradient checks


@pytest.mark.parametrize("N", [1, 3])
def test_affine_gradients_and_values(N):
    rng = np.random.default_rng(1)
    layer = built(Affine(4), (2, 3))               # flattens (2, 3) -> 6
    x = rng.standard_normal((N, 2, 3))
    out = layer.forward(x, True)
    np.testing.assert_allclose(out, x.reshape(N, 6) @ layer.params["W"] + layer.params["b"])
    check_gradients(layer, x)


CONV_CASES = [  # input shape, options
    ((2, 3, 6, 6), dict(filters=4, size=3)),                      # "same" padding
    ((2, 2, 5, 7), dict(filters=3, size=3, stride=2, pad=1)),
    ((1, 2, 5, 7), dict(filters=2, size=[3, 2], stride=[2, 1], pad=[1, 0])),
    ((1, 1, 4, 4), dict(filters=2, size=4, pad=0)),
]


@pytest.mark.parametrize("layout", [CHANNELS_LAST, CHANNEL_MAJOR])
@pytest.mark.parametrize("x_shape, options", CONV_CASES)
def test_conv_matches_naive_loops_and_gradients(layout, x_shape, options):
    rng = np.random.default_rng(2)
    layer = built(Conv(**options), x_shape[1:])
    layer.layout = layout                            # exercise both im2col layouts
    x = rng.standard_normal(x_shape)
    out = layer.forward(x, True)
    assert out.shape[1:] == layer.out_shape
    np.testing.assert_allclose(out, naive_conv(x, layer.params["W"], layer.params["b"],
                                               layer.stride, layer.pad), rtol=1e-10, atol=1e-12)
    check_gradients(layer, x)


@pytest.mark.parametrize("x_shape, size, stride", [
    ((2, 2, 4, 6), 2, None),
    ((1, 2, 7, 7), 3, 2),            # overlapping windows
    ((2, 1, 5, 7), [2, 3], [2, 1]),
])
def test_maxpool_matches_naive_loops_and_gradients(x_shape, size, stride):
    rng = np.random.default_rng(3)
    layer = built(MaxPool(size=size, stride=stride), x_shape[1:])
    x = distinct(x_shape, rng)
    out = layer.forward(x, True)
    assert out.shape[1:] == layer.out_shape
    expected, arg = naive_maxpool(x, layer.size, layer.stride)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(layer.kink_state(), arg)
    check_gradients(layer, x)
    # test mode computes the same maxima; the arg-max is found when needed
    np.testing.assert_array_equal(layer.forward(x, False), expected)
    np.testing.assert_array_equal(layer.kink_state(), arg)


@pytest.mark.parametrize("layer_cls, kwargs", [
    (ReLU, {}), (LeakyReLU, {"alpha": 0.1}), (LeakyReLU, {"alpha": -1.5}), (ELU, {}), (ELU, {"alpha": 0.5}),
    (Sigmoid, {}), (Tanh, {}), (PReLU, {"alpha": 0.2}),
])
@pytest.mark.parametrize("x_shape", [(1, 5), (3, 2, 3, 3)])
def test_activation_gradients(layer_cls, kwargs, x_shape):
    layer = built(layer_cls(**kwargs), x_shape[1:])
    x = away_from_zero(x_shape, np.random.default_rng(4)) * 2
    out = layer.forward(x, True)
    assert out.shape == x.shape
    check_gradients(layer, x)


def test_activation_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(ReLU().forward(x, True), [[0, 0, 0, 0.5, 3]])
    np.testing.assert_allclose(LeakyReLU(alpha=0.1).forward(x, True), [[-0.2, -0.05, 0, 0.5, 3]])
    np.testing.assert_allclose(ELU(alpha=2.0).forward(x, True),
                               [[2 * np.expm1(-2), 2 * np.expm1(-0.5), 0, 0.5, 3]])
    np.testing.assert_allclose(Sigmoid().forward(x, True), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(Tanh().forward(x, True), np.sinh(x) / np.cosh(x), rtol=1e-15)
    prelu = built(PReLU(alpha=0.3), (5,))
    np.testing.assert_allclose(prelu.forward(x, True), [[-0.6, -0.15, 0, 0.5, 3]])


def test_sigmoid_and_elu_survive_huge_inputs():
    x = np.array([[-1e4, -100.0, 100.0, 1e4]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no overflow anywhere
        s = Sigmoid().forward(x, True)
        e = ELU(alpha=0.5).forward(x, True)
    np.testing.assert_array_equal(s, [[0, np.float32(1 / (1 + np.exp(100.0))), 1, 1]])
    np.testing.assert_array_equal(e, [[-0.5, -0.5, 100, 1e4]])
    assert Sigmoid().forward(np.array([[-30.0]]), True)[0, 0] == pytest.approx(np.exp(-30.0), rel=1e-12)


def test_prelu_has_one_slope_per_feature_or_channel():
    assert built(PReLU(alpha=0.3), (7,)).params["alpha"].tolist() == [0.3] * 7
    layer = built(PReLU(), (3, 4, 4))
    assert layer.params["alpha"].shape == (3,) and np.all(layer.params["alpha"] == 0.25)
    assert layer.weight_names == ()


@pytest.mark.parametrize("N, pieces", [(1, 3), (4, 2)])
def test_maxout_gradients_and_piece_major_columns(N, pieces):
    rng = np.random.default_rng(5)
    layer = built(Maxout(out=3, pieces=pieces), (2, 2))
    x = rng.standard_normal((N, 2, 2))
    out = layer.forward(x, True)
    z = x.reshape(N, -1) @ layer.params["W"] + layer.params["b"]
    for j in range(3):   # unit j: columns j*pieces .. j*pieces + pieces - 1
        np.testing.assert_allclose(out[:, j], z[:, j * pieces:(j + 1) * pieces].max(axis=1))
    np.testing.assert_array_equal(layer.kink_state(), z.reshape(N, 3, pieces).argmax(axis=2))
    check_gradients(layer, x)


@pytest.mark.parametrize("x_shape", [(4, 3), (3, 2, 3, 2)])
def test_batchnorm_gradients_train_and_test(x_shape):
    rng = np.random.default_rng(6)
    layer = built(BatchNorm(), x_shape[1:])
    layer.params["gamma"][:] = rng.uniform(0.5, 2.0, x_shape[1])
    layer.params["beta"][:] = rng.standard_normal(x_shape[1])
    x = rng.standard_normal(x_shape) * 3 + 1
    check_gradients(layer, x, train=True)
    layer.running_var[:] = rng.uniform(0.5, 2.0, x_shape[1])
    check_gradients(layer, x, train=False)


def test_batchnorm_batch_of_one_is_finite():
    layer = built(BatchNorm(), (3,))
    out = layer.forward(np.array([[1.0, 2.0, 3.0]]), True)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 0.0]])   # beta
    assert np.all(np.isfinite(layer.backward(np.ones((1, 3)))))


def test_dropout_gradients_under_replay():
    layer = Dropout(keep=0.6)
    layer.rng = np.random.default_rng(7)
    layer.replay = True
    check_gradients(layer, np.random.default_rng(8).standard_normal((3, 4, 2)))


def test_flatten_round_trip():
    layer = built(Flatten(), (2, 3, 4))
    assert layer.out_shape == (24,)
    x = np.random.default_rng(9).standard_normal((2, 2, 3, 4))
    out = layer.forward(x, True)
    np.testing.assert_array_equal(out, x.reshape(2, 24))
    np.testing.assert_array_equal(layer.backward(out), x)


# ---------------------------------------------------------------------------
# batch normalisation and dropout behaviour


@pytest.mark.parametrize("x_shape, axes", [((64, 5), (0,)), ((16, 3, 4, 5), (0, 2, 3))])
def test_batchnorm_train_output_is_normalised(x_shape, axes):
    rng = np.random.default_rng(10)
    layer = built(BatchNorm(), x_shape[1:])
    scale = rng.uniform(0.1, 10, x_shape[1]).reshape((1, -1) + (1,) * (len(x_shape) - 2))
    x = rng.standard_normal(x_shape) * scale + 5 * scale
    out = layer.forward(x, True)
    np.testing.assert_allclose(out.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=axes), 1, rtol=1e-3)


def test_batchnorm_running_averages_and_test_mode():
    rng = np.random.default_rng(11)
    layer = built(BatchNorm(momentum=0.9), (2, 3, 3))
    mean = np.array([3.0, -1.0]).reshape(1, 2, 1, 1)
    std = np.array([2.0, 0.5]).reshape(1, 2, 1, 1)
    x = rng.standard_normal((8, 2, 3, 3)) * std + mean
    first_mean = x.mean(axis=(0, 2, 3))
    layer.forward(x, True)
    np.testing.assert_allclose(layer.running_mean, 0.1 * first_mean)      # 0.9 * 0 + 0.1 * mean
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * x.var(axis=(0, 2, 3)))
    assert "running_mean" not in layer.params
    for _ in range(200):                  # many train passes on a fixed distribution
        layer.forward(rng.standard_normal((64, 2, 3, 3)) * std + mean, True)
    x = rng.standard_normal((256, 2, 3, 3)) * std + mean
    train_out = layer.forward(x, True)
    test_out = layer.forward(x, False)
    assert np.mean(np.abs(test_out - train_out)) < 0.05
    assert np.max(np.abs(test_out - train_out)) < 0.3
    np.testing.assert_allclose(layer.running_mean, mean.ravel(), atol=0.05)


def test_dropout_expectation_replay_and_seed():
    x = np.random.default_rng(12).standard_normal((20, 30))
    layer = Dropout(keep=0.7)
    layer.rng = np.random.default_rng(13)
    np.testing.assert_array_equal(layer.forward(x, False), x)        # identity at test time
    outs = [layer.forward(x, True) for _ in range(400)]
    assert not np.array_equal(outs[0], outs[1])                      # fresh masks
    dropped = np.mean([np.mean(o == 0) for o in outs])
    assert abs(dropped - 0.3) < 0.01
    # inverted dropout: the mean over many train passes is the test output
    assert np.max(np.abs(np.mean(outs, axis=0) - x)) < 0.2 * np.max(np.abs(x))
    kept = outs[-1] != 0
    np.testing.assert_allclose(outs[-1][kept], x[kept] / 0.7)
    # replay reuses the last mask, in forward and backward
    layer.replay = True
    np.testing.assert_array_equal(layer.forward(x, True), outs[-1])
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.where(kept, 1 / 0.7, 0))
    # the same seed draws the same mask
    a, b = Dropout(keep=0.5), Dropout(keep=0.5)
    a.rng, b.rng = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(a.forward(x, True), b.forward(x, True))


def test_dropout_needs_a_generator_and_keep_one_is_identity():
    with pytest.raises(RuntimeError, match="layer.rng"):
        Dropout().forward(np.ones((2, 2)), True)
    layer = Dropout(keep=1.0)
    x = np.ones((2, 3))
    assert layer.forward(x, True) is x
    assert Dropout.uses_randomness


# ---------------------------------------------------------------------------
# build: shapes, initialisation, errors


def test_build_shapes_fan_in_and_bias():
    rng = np.random.default_rng(0)
    init = RecordingInit()
    affine = Affine(5)
    assert affine.build((2, 3), rng, np.float32, init, 0.25) == (5,)
    assert init.calls[-1] == ((6, 5), 6, np.dtype(np.float32))
    assert affine.params["b"].dtype == np.float32 and np.all(affine.params["b"] == 0.25)
    conv = Conv(8, size=[3, 5], stride=2)
    assert conv.pad == (1, 2)
    assert conv.build((3, 9, 11), rng, np.float32, init, 0.0) == (8, 5, 6)
    assert init.calls[-1] == ((8, 3, 3, 5), 45, np.dtype(np.float32))
    maxout = Maxout(4, pieces=3)
    assert maxout.build((7,), rng, np.float64, init, 0.0) == (4,)
    assert init.calls[-1] == ((7, 12), 7, np.dtype(np.float64))
    assert MaxPool(3, stride=2).build((4, 7, 8), rng, np.float32, init, 0.0) == (4, 3, 3)
    assert MaxPool().build((4, 5, 5), rng, np.float32, init, 0.0) == (4, 2, 2)
    bn = BatchNorm()
    assert bn.build((6, 4, 4), rng, np.float32, init, 3.0) == (6, 4, 4)
    assert bn.params["gamma"].tolist() == [1] * 6 and bn.params["beta"].tolist() == [0] * 6
    assert len(init.calls) == 3                  # batchnorm, pooling: no initializer call
    for layer in (ReLU(), Tanh(), Dropout(), LeakyReLU()):
        assert layer.build((3, 4), rng, np.float32, init, 0.0) == (3, 4)
        assert layer.params == {}


@pytest.mark.parametrize("layer, shape, message", [
    (Conv(4), (10,), r"image input \(C, H, W\)"),
    (Conv(4, size=5, pad=0), (1, 3, 3), "larger than the padded input"),
    (MaxPool(3), (2, 2, 5), "larger than the input"),
    (MaxPool(2), (8,), r"image input"),
    (BatchNorm(), (2, 3), r"\(D,\) or \(C, H, W\)"),
])
def test_build_rejects_input_shapes_that_do_not_fit(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer.build(shape, np.random.default_rng(0), np.float32, RecordingInit(), 0.0)


@pytest.mark.parametrize("make, message", [
    (lambda: Affine(0), "affine: out must be a positive integer"),
    (lambda: Affine(2.5), "out must be a positive integer"),
    (lambda: Affine(True), "out must be a positive integer"),
    (lambda: Conv(0), "filters must be a positive integer"),
    (lambda: Conv(3, size=0), "size must be a positive integer"),
    (lambda: Conv(3, size=[3, 3, 3]), r"pair \[h, w\]"),
    (lambda: Conv(3, stride=-1), "stride"),
    (lambda: Conv(3, pad=-1), "conv: pad must be null or a non-negative integer, got -1"),
    (lambda: Conv(3, pad=[1, None]), r"pad must be .*or a pair \[h, w\]"),
    (lambda: MaxPool(size=0), "maxpool: size"),
    (lambda: MaxPool(stride="2"), "maxpool: stride"),
    (lambda: Maxout(3, pieces=0), "pieces"),
    (lambda: LeakyReLU(alpha=float("inf")), "leaky_relu: alpha must be a finite number"),
    (lambda: LeakyReLU(alpha=None), "alpha"),
    (lambda: PReLU(alpha=float("nan")), "alpha"),
    (lambda: ELU(alpha=0), "elu: alpha must be a positive number, got 0"),
    (lambda: BatchNorm(eps=0), "eps"),
    (lambda: BatchNorm(momentum=1.0), "momentum"),
    (lambda: Dropout(keep=0), r"keep must be a number in \(0, 1\]"),
    (lambda: Dropout(keep=1.5), "keep"),
    (lambda: Dropout(keep="half"), "keep"),
])
def test_constructors_validate_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_options_are_rejected():
    for cls, kwargs in [(Affine, {"out": 3, "outs": 3}), (ReLU, {"alpha": 0.1}),
                        (Dropout, {"p": 0.5}), (Conv, {"filters": 3, "kernel": 3})]:
        with pytest.raises(TypeError):
            cls(**kwargs)


def test_options_by_position_or_name_from_the_options_table():
    import inspect

    assert str(inspect.signature(Conv)) == "(filters, size=3, stride=1, pad=None)"
    assert str(inspect.signature(ReLU)) == "()"
    assert Affine(3).options == Affine(out=3.0).options == {"out": 3}   # integral floats, as recipes
    assert isinstance(Affine(out=3.0).out, int)
    assert LeakyReLU(0).alpha == 0.0 and isinstance(LeakyReLU(0).alpha, float)
    assert Maxout(4, 3).pieces == 3
    with pytest.raises(TypeError, match="affine: option 'out' given both by position and by name"):
        Affine(3, out=3)
    with pytest.raises(TypeError, match=r"relu takes at most 0 options by position \(none\), got 1"):
        ReLU(1)
    with pytest.raises(TypeError, match="affine needs the option 'out'"):
        Affine()
    with pytest.raises(TypeError, match="unknown key 'outs' in affine; valid keys: out"):
        Affine(out=3, outs=3)


def test_registry_covers_every_recipe_kind():
    assert set(LAYERS) == {"affine", "conv", "maxpool", "flatten", "relu", "leaky_relu", "prelu",
                           "elu", "maxout", "sigmoid", "tanh", "batchnorm", "dropout"}
    for kind, cls in LAYERS.items():
        assert issubclass(cls, Layer) and cls.kind == kind
    assert Affine.weight_names == Conv.weight_names == Maxout.weight_names == ("W",)
    assert BatchNorm.weight_names == PReLU.weight_names == ()
    assert repr(Conv(4, stride=2)) == "Conv(filters=4, size=3, stride=2, pad=None)"


# ---------------------------------------------------------------------------
# dtypes


def float32_stack():
    """Every layer kind, built in float32, with a matching input."""
    image = (2, 6, 6)
    return [
        (built(Affine(3), (4,), np.float32), (4,)),
        (built(Conv(3), image, np.float32), image),
        (built(MaxPool(3, stride=2), image, np.float32), image),
        (built(Flatten(), image, np.float32), image),
        (built(ReLU(), image, np.float32), image),
        (built(LeakyReLU(), image, np.float32), image),
        (built(PReLU(), image, np.float32), image),
        (built(ELU(alpha=0.5), image, np.float32), image),
        (built(Maxout(3, pieces=3), (4,), np.float32), (4,)),
        (built(Sigmoid(), (4,), np.float32), (4,)),
        (built(Tanh(), (4,), np.float32), (4,)),
        (built(BatchNorm(), image, np.float32), image),
        (built(BatchNorm(), (4,), np.float32), (4,)),
        (built(Dropout(), image, np.float32), image),
    ]


@pytest.mark.parametrize("train", [True, False])
def test_float32_in_float32_out(train):
    rng = np.random.default_rng(14)
    for layer, shape in float32_stack():
        layer.rng = np.random.default_rng(0)
        x = rng.standard_normal((3,) + shape).astype(np.float32)
        out = layer.forward(x, train)
        assert out.dtype == np.float32, layer
        dx = layer.backward(np.ones_like(out))
        assert dx.dtype == np.float32, layer
        for name, g in layer.grads.items():
            assert g.dtype == np.float32, (layer, name)


@pytest.mark.parametrize("make, shape", [
    (lambda: Affine(3), (2, 4)), (lambda: Conv(3), (2, 5, 5)), (lambda: Maxout(3, pieces=2), (4,))])
def test_skipping_the_input_gradient_keeps_parameter_gradients(make, shape):
    layer = built(make(), shape)
    x = np.random.default_rng(15).standard_normal((3,) + shape)
    dout = np.random.default_rng(16).standard_normal((3,) + layer.out_shape)
    layer.forward(x, True)
    assert layer.backward(dout).shape == x.shape
    expected = {name: g.copy() for name, g in layer.grads.items()}
    layer.needs_input_grad = False
    layer.forward(x, True)
    assert layer.backward(dout) is None
    for name, g in layer.grads.items():
        np.testing.assert_array_equal(g, expected[name])


def test_model_training_loss_skips_only_the_input_gradient():
    from babysit.engine.builder import build_model

    section = {"layers": [{"conv": {"filters": 3}}, "relu", {"maxpool": {"size": 2}}, {"affine": {"out": 4}}]}
    model = build_model(section, (2, 6, 6), 4, np.random.default_rng(0), np.float64)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((5, 2, 6, 6)), rng.integers(0, 4, 5)
    loss, grads = model.loss(X, y)
    assert model.input_grad.shape == X.shape
    grads = {k: v.copy() for k, v in grads.items()}
    loss_skip, grads_skip = model.loss(X, y, input_grad=False)
    assert model.input_grad is None and loss_skip == loss
    for name in grads:
        np.testing.assert_array_equal(grads_skip[name], grads[name])
    assert model.layers[0].needs_input_grad          # restored for the next caller
    model.loss(X, y)
    assert model.input_grad.shape == X.shape
