"""Initializers: scales, dtypes, determinism, bad specs."""

import math

import numpy as np
import pytest

from babysit.engine.init import get_initializer
from babysit.errors import BabysitError, ModelError

FAN_IN = 400
SHAPE = (FAN_IN, 300)  # 120,000 draws: sample std within ~0.5% of the true one


@pytest.mark.parametrize("spec, std", [
    ("xavier", 1 / math.sqrt(FAN_IN)),
    ("he", math.sqrt(2 / FAN_IN)),
    ("small", 0.01),
    ({"normal": 0.05}, 0.05),
    ({"small": 0.003}, 0.003),
])
def test_std_follows_the_spec(spec, std):
    W = get_initializer(spec)(SHAPE, FAN_IN, np.random.default_rng(0), np.float64)
    assert W.shape == SHAPE
    assert abs(W.std() - std) < 0.02 * std
    assert abs(W.mean()) < 0.02 * std


def test_zeros():
    W = get_initializer("zeros")((3, 4), 3, np.random.default_rng(0), np.float32)
    assert W.dtype == np.float32 and not W.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_honoured(dtype):
    W = get_initializer("he")((8, 3, 3, 3), 27, np.random.default_rng(0), dtype)
    assert W.dtype == dtype and W.shape == (8, 3, 3, 3)


def test_same_seed_same_weights_in_every_dtype():
    init = get_initializer("xavier")
    a = init((5, 7), 5, np.random.default_rng(3), np.float64)
    b = init((5, 7), 5, np.random.default_rng(3), np.float64)
    c = init((5, 7), 5, np.random.default_rng(3), np.float32)
    np.testing.assert_array_equal(a, b)
    # float32 training and float64 gradient checks look at the same initial weights
    np.testing.assert_allclose(c, a, rtol=1e-6)
    assert not np.array_equal(a, init((5, 7), 5, np.random.default_rng(4), np.float64))


def test_draws_come_from_the_generator_given():
    rng = np.random.default_rng(11)
    W = get_initializer({"normal": 1.0})((4, 5), 4, rng, np.float64)
    np.testing.assert_array_equal(W, np.random.default_rng(11).standard_normal((4, 5)))


@pytest.mark.parametrize("spec", ["glorot", "", None, 0.01, {"normal": -1}, {"normal": "big"},
                                  {"uniform": 0.1}, {"normal": 0.1, "small": 0.1}, ["he"],
                                  {"normal": float("nan")}, {"small": True}])
def test_unknown_or_bad_specs_are_rejected(spec):
    with pytest.raises(ModelError) as info:
        get_initializer(spec)
    assert isinstance(info.value, BabysitError)
    message = str(info.value)
    assert "init" in message


def test_a_zero_std_is_spelt_zeros():
    with pytest.raises(ModelError, match=r"init \{'normal': 0\}: the std must be a positive number, got 0"):
        get_initializer({"normal": 0})
    assert get_initializer("zeros").scale(10) == 0.0


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ModelError, match="xavier, he, small, zeros"):
        get_initializer("glorot")
