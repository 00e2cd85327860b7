"""Layer numerics on paths the small-layer checks of test_layers.py never reach, and
hand-computed references for what the gradient checks cannot see (values at a kink,
test-mode batchnorm)."""

import numpy as np
import pytest

from babysit.engine.conv import CHANNEL_MAJOR, CHANNELS_LAST
from babysit.engine.layers import ELU, BatchNorm, Conv, LeakyReLU, PReLU, ReLU
from tests.engine.test_layers import built, check_gradients


@pytest.mark.parametrize("layout", [CHANNELS_LAST, CHANNEL_MAJOR])
@pytest.mark.parametrize("x_shape, options", [
    ((4, 3, 6, 6), dict(filters=4, size=3)),                # stride 1 (channel-major: row-flat col2im)
    ((4, 2, 5, 7), dict(filters=3, size=3, stride=2, pad=1)),
])
def test_conv_input_gradient_in_groups_of_images(monkeypatch, layout, x_shape, options):
    # A large layer's input gradient is computed per group of images
    # (ConvPlan._image_groups), a path no small layer takes: the thresholds are
    # shrunk so that every image is its own group, on all three col2im paths.
    from babysit.engine import conv, parallel

    monkeypatch.setattr(parallel, "PRODUCT_GRAIN", 1)
    monkeypatch.setattr(conv, "COL2IM_GROUP_BYTES", 1)
    groups = []
    whole = conv.ConvPlan._image_groups
    monkeypatch.setattr(conv.ConvPlan, "_image_groups",
                        lambda plan, *args: groups.append(whole(plan, *args)) or groups[-1])
    layer = built(Conv(**options), x_shape[1:])
    layer.layout = layout
    check_gradients(layer, np.random.default_rng(5).standard_normal(x_shape))
    assert groups and all(len(g) == x_shape[0] for g in groups)


@pytest.mark.parametrize("layer, slope_at_zero", [
    (ReLU(), 0.0), (LeakyReLU(alpha=0.1), 0.1), (ELU(alpha=2.0), 2.0), ("prelu", 0.3)])
def test_kinked_activations_take_the_left_slope_at_exactly_zero(layer, slope_at_zero):
    # The numerical checks keep inputs away from the kink; an input of exactly
    # 0 (a zero-initialised net, a ReLU after a ReLU) takes the documented
    # slope, the same as the kink state x > 0 that the fused ReLU+pool path uses.
    if layer == "prelu":
        layer = built(PReLU(alpha=0.3), (3,))
    x = np.array([[-1.0, 0.0, 2.0]])
    layer.forward(x, True)
    dx = layer.backward(np.ones_like(x))
    assert dx[0, 1] == slope_at_zero and dx[0, 2] == 1.0
    assert layer.kink_state().tolist() == [[False, False, True]]


@pytest.mark.parametrize("x_shape", [(3, 2), (3, 2, 1, 2)])
def test_batchnorm_test_mode_values_by_hand(x_shape):
    # test mode: gamma * (x - running_mean) / sqrt(running_var + eps) + beta,
    # per feature (per channel for images), with gamma, beta and eps off their defaults
    layer = built(BatchNorm(eps=0.25), x_shape[1:])
    layer.params["gamma"][...] = [2.0, -1.0]
    layer.params["beta"][...] = [0.5, 3.0]
    layer.running_mean[...] = [1.0, -2.0]
    layer.running_var[...] = [3.75, 0.75]           # + eps: 4 and 1, roots 2 and 1
    x = np.array([[3.0, 0.0], [1.0, -2.0], [-1.0, 1.0]])
    expected = np.array([[2.5, 1.0], [0.5, 3.0], [-1.5, 0.0]])
    if len(x_shape) == 4:   # the same numbers as images: feature -> channel, two pixels each
        x, expected = (np.repeat(a[:, :, None, None], 2, axis=3) for a in (x, expected))
    np.testing.assert_allclose(layer.forward(x, False), expected, rtol=1e-15)
    np.testing.assert_array_equal(layer.running_var, [3.75, 0.75])   # test mode leaves them
