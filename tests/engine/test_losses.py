"""Softmax and SVM losses: values, numerical gradients, stability, kinks, labels."""

import math

import numpy as np
import pytest

from babysit.engine.losses import SoftmaxLoss, SVMLoss, get_loss
from babysit.errors import BabysitError, DataError, ModelError
from tests.helpers import numerical_gradient, rel_error

LOSSES = [SoftmaxLoss, SVMLoss]


def problem(n, c, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((n, c)), rng.integers(0, c, size=n)


@pytest.mark.parametrize("cls", LOSSES)
@pytest.mark.parametrize("n, c", [(1, 3), (7, 5), (20, 10)])
def test_gradient_matches_numerical_gradient(cls, n, c):
    scores, y = problem(n, c, seed=n)
    loss = cls()
    _, dscores = loss(scores, y)
    num = numerical_gradient(lambda: loss(scores, y)[0], scores, h=1e-5)
    assert dscores.dtype == np.float64
    # entries of ~1e-4 limit the centered difference to ~1e-7 relative accuracy
    assert rel_error(dscores, num) < 1e-6


def test_softmax_value_by_hand():
    scores = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    first = -1.0 + math.log(math.e + math.e ** 2 + math.e ** 3)
    second = math.log(3)
    loss, dscores = SoftmaxLoss()(scores, y)
    assert loss == pytest.approx((first + second) / 2, rel=1e-12)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(dscores[0], (p - [1, 0, 0]) / 2, rtol=1e-12)
    np.testing.assert_allclose(dscores[1], (np.full(3, 1 / 3) - [0, 0, 1]) / 2, rtol=1e-12)


def test_svm_value_by_hand():
    # margins for row 0 (y=0): max(0, 2-1+1)=2, max(0, -1-1+1)=0 -> 2
    # row 1 (y=2): max(0, 0.5-0+1)=1.5, max(0, -3-0+1)=0 -> 1.5
    scores = np.array([[1.0, 2.0, -1.0], [0.5, -3.0, 0.0]])
    y = np.array([0, 2])
    loss, dscores = SVMLoss()(scores, y)
    assert loss == pytest.approx((2 + 1.5) / 2)
    np.testing.assert_allclose(dscores, [[-0.5, 0.5, 0.0], [0.5, 0.0, -0.5]])


def test_svm_excludes_the_correct_class_margin():
    # All other classes far below the correct one: zero loss (the correct class's
    # own margin of 1 would otherwise add 1 per example).
    scores = np.array([[10.0, 0.0, 0.0], [0.0, 0.0, 10.0]])
    loss, dscores = SVMLoss()(scores, np.array([0, 2]))
    assert loss == 0.0 and not dscores.any()


def test_svm_kink_state_is_the_active_margin_mask():
    scores = np.array([[1.0, 2.0, -1.0], [0.5, -3.0, 0.0]])
    loss = SVMLoss()
    assert loss.has_kinks and loss.kink_state() is None
    loss(scores, np.array([0, 2]))
    np.testing.assert_array_equal(loss.kink_state(), [[False, True, False], [True, False, False]])
    # Crossing the hinge of row 1 / class 1 (margin -3 + 1 = -2 -> +0.5) changes the state
    scores[1, 1] = -0.5
    loss(scores, np.array([0, 2]))
    np.testing.assert_array_equal(loss.kink_state(), [[False, True, False], [True, True, False]])
    assert not SoftmaxLoss.has_kinks and SoftmaxLoss().kink_state() is None


@pytest.mark.parametrize("cls", LOSSES)
@pytest.mark.parametrize("c", [2, 10, 100])
def test_expected_initial_loss_matches_small_random_scores(cls, c):
    scores, y = problem(500, c, seed=c, scale=1e-4)
    loss = cls()
    value, _ = loss(scores, y)
    assert value == pytest.approx(loss.expected_initial_loss(c), rel=1e-3)
    assert cls().expected_initial_loss(10) == pytest.approx(math.log(10) if cls is SoftmaxLoss else 9)


def test_softmax_is_stable_for_large_float64_scores():
    scores, y = problem(6, 4, seed=1, scale=1e4)
    loss = SoftmaxLoss()
    value, dscores = loss(scores, y)
    assert np.isfinite(value) and np.all(np.isfinite(dscores))
    # shifting every score by a constant changes nothing (the log-sum-exp identity)
    shifted_value, shifted_grad = loss(scores - 3e4, y)
    assert shifted_value == pytest.approx(value, rel=1e-9)
    np.testing.assert_allclose(shifted_grad, dscores, atol=1e-12)
    # expected value: the gap between the best and the correct score, averaged
    gaps = scores.max(axis=1) - scores[np.arange(6), y]
    assert value == pytest.approx(gaps.mean(), rel=1e-6)


@pytest.mark.parametrize("cls", LOSSES)
def test_float32_scores_of_1e30_give_finite_loss_and_gradient(cls):
    scores = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 3.0]], dtype=np.float32)
    y = np.array([1, 1])
    value, dscores = cls()(scores, y)
    assert np.isfinite(value) and value > 1e29  # first row is wrong by 2e30
    assert dscores.dtype == np.float32 and np.all(np.isfinite(dscores))


@pytest.mark.parametrize("cls", LOSSES)
def test_gradient_keeps_float32(cls):
    scores, y = problem(5, 4)
    _, dscores = cls()(scores.astype(np.float32), y)
    assert dscores.dtype == np.float32


@pytest.mark.parametrize("labels, match", [
    ([0, 3], "label 3 is outside 0..2"),
    ([-1, 0], "label -1 is outside 0..2"),
    ([0.0, 1.0], "integers"),
    ([0, 1, 2], r"shape \(2,\)"),
])
def test_bad_labels_are_rejected_clearly(labels, match):
    scores = np.zeros((2, 3))
    for cls in LOSSES:
        with pytest.raises(DataError, match=match):
            cls()(scores, np.array(labels))


def test_bad_scores_shape_is_rejected():
    with pytest.raises(ModelError, match=r"\(N, C\)"):
        SoftmaxLoss()(np.zeros(3), np.array([0, 1, 2]))


def test_get_loss():
    assert isinstance(get_loss("softmax"), SoftmaxLoss)
    assert isinstance(get_loss("svm"), SVMLoss)
    assert get_loss("svm") is not get_loss("svm")  # fresh state per model
    assert get_loss("softmax").kind == "softmax" and get_loss("svm").kind == "svm"
    for bad in ["hinge", "", None, 3]:
        with pytest.raises(ModelError, match="valid losses: softmax, svm") as info:
            get_loss(bad)
        assert isinstance(info.value, BabysitError)
