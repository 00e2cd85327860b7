"""Engine layers' kink states: where a piecewise layer's gradient can jump (gradcheck reads them)."""

import numpy as np

from babysit.engine.layers import ELU, Affine, BatchNorm, LeakyReLU, Maxout, MaxPool, PReLU, ReLU, Sigmoid, Tanh
from tests.engine.test_layers import built


def test_relu_family_kink_state_changes_exactly_at_zero():
    for layer in (ReLU(), LeakyReLU(), built(PReLU(), (3,)), ELU(alpha=0.5)):
        assert layer.has_kinks
        x = np.array([[0.3, -0.2, 1e-3]])
        layer.forward(x, True)
        before = layer.kink_state()
        layer.forward(x * [[1.5, 1.5, 2.0]], True)     # same signs
        np.testing.assert_array_equal(layer.kink_state(), before)
        layer.forward(np.array([[0.3, -0.2, -1e-3]]), True)   # one input crossed 0
        assert not np.array_equal(layer.kink_state(), before)


def test_smooth_layers_have_no_kinks():
    for layer in (ELU(alpha=1.0), Sigmoid(), Tanh(), built(Affine(2), (3,)), built(BatchNorm(), (3,))):
        assert not layer.has_kinks
        layer.forward(np.ones((2, 3)), True)
        assert layer.kink_state() is None


def test_maxpool_kink_state_tracks_the_window_argmax():
    layer = built(MaxPool(2), (1, 2, 2))
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    layer.forward(x, True)
    before = layer.kink_state().copy()
    layer.forward(x + [[[[0.0, 0.5], [0.0, 0.0]]]], True)   # 2.5 < 4: same winner
    np.testing.assert_array_equal(layer.kink_state(), before)
    layer.forward(x + [[[[0.0, 2.5], [0.0, 0.0]]]], True)   # 4.5 > 4: new winner
    assert not np.array_equal(layer.kink_state(), before)


def test_maxout_kink_state_tracks_the_winning_piece():
    layer = built(Maxout(out=1, pieces=2), (1,), bias=0.0)
    layer.params["W"][:] = [[1.0, -1.0]]
    layer.forward(np.array([[0.5], [-0.5]]), True)
    np.testing.assert_array_equal(layer.kink_state(), [[0], [1]])
    layer.forward(np.array([[-0.1], [-0.5]]), True)
    np.testing.assert_array_equal(layer.kink_state(), [[1], [1]])
