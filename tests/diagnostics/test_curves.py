"""Curve diagnosis on curves shaped like the lecture's pictures."""

import numpy as np

from babysit.diagnostics.curves import diagnose_curves, diagnose_gap, diagnose_loss, smooth

T = 400
t = np.arange(T, dtype=np.float64)
noise = 0.02 * np.random.default_rng(0).standard_normal(T)


def codes(findings):
    return [f.code for f in findings]


def test_smooth_is_a_moving_average():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], window=2), [1.5, 2.5, 3.5])
    assert len(smooth(np.ones(100))) == 96


def test_healthy_exponential_decay_is_quiet():
    loss = 2.3 * np.exp(-t / 80) + 0.05 + noise
    assert diagnose_loss(loss) == []


def test_flat_loss_is_a_plateau():
    loss = 2.3 - 1e-5 * t + noise
    found = diagnose_loss(loss)
    assert codes(found) == ["loss_plateau"] and found[0].severity == "fail"


def test_rising_loss_diverged():
    loss = 2.3 * np.exp(t / 200) + noise
    found = diagnose_loss(loss)
    assert codes(found) == ["loss_diverged"] and found[0].severity == "fail"


def test_flat_then_sudden_drop_is_a_late_start():
    loss = np.where(t < 150, 2.3, 2.3 * np.exp(-(t - 150) / 30) + 0.05) + noise
    assert "late_start" in codes(diagnose_loss(loss))


def test_steep_then_high_plateau_means_lr_too_high():
    loss = 1.2 + 1.1 * np.exp(-t / 5) + 0.05 * np.random.default_rng(1).standard_normal(T)
    assert codes(diagnose_loss(loss)) == ["lr_too_high"]


def test_short_or_non_finite_runs_are_not_judged():
    assert diagnose_loss([2.3, 2.2, 2.1]) == []
    assert diagnose_loss(np.r_[np.ones(50), np.nan]) == []


def test_gap():
    assert codes(diagnose_gap(0.99, 0.70)) == ["overfitting"]
    assert codes(diagnose_gap(0.55, 0.55)) == ["underfitting"]
    assert diagnose_gap(0.98, 0.96) == []
    assert diagnose_gap(0.98, float("nan")) == []
    assert codes(diagnose_curves(2.3 * np.exp(-t / 80) + 0.05, 0.99, 0.6)) == ["overfitting"]
