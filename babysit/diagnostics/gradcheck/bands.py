"""Thresholds and the relative error every gradient check is judged by (see the package doc)."""

from __future__ import annotations

import numpy as np

FAIL_BAND = 1e-2
WARN_BAND = 1e-4
EXCELLENT_BAND = 1e-7
TINY = 1e-10
EPS = float(np.finfo(np.float64).eps)
RESOLUTION_ULPS = 8
DEFAULT_H = 1e-5
# Steps float64 centered differences can use: below H_MIN rounding swamps the
# difference (the estimate cannot resolve anything under 8 eps |f| / h, 4e-7
# for a loss of 2.3 at h = 1e-8), above H_MAX the curvature does.
H_MIN, H_MAX = 1e-8, 1e-2
# A failing entry is re-estimated with STABILITY_STEP x h: a float64 function's
# estimate then moves by O(h^2) (parts in 1e8); one that moves by at least
# STABILITY times its disagreement with the analytic value is rounding noise
# (float32 inside the function), not a gradient, and says nothing about the backward.
STABILITY_STEP = 10.0
STABILITY = 0.5
# An entry whose f(x+h) and f(x-h) took different sides of a kink is estimated
# again with h divided by these (in order) before it is set aside as crossed:
# close to a ReLU's zero a 10x smaller step usually stays on one side.
KINK_RETRIES = (10.0, 100.0)
DEFAULT_DATAPOINTS = 3
DEFAULT_ENTRIES = 10
# L2 strength for checking the regularization term when the recipe has none.
DEFAULT_REG_CHECK = 1.0

CHECKS = {
    "gradients": ["gradient_mismatch", "gradient_suspicious", "loss_not_finite"],
    "kinks": ["kink_crossed"],
    "float_range": ["gradient_tiny"],
    "precision": ["gradient_precision"],
}


def relative_error(analytic: float, numerical: float) -> float:
    """``|a - n| / max(|a|, |n|)``; 0 when both are exactly 0."""
    scale = max(abs(analytic), abs(numerical))
    return 0.0 if scale == 0.0 else abs(analytic - numerical) / scale


def band(rel_error: float | None, has_kinks: bool) -> str:
    """``excellent`` / ``good`` / ``suspicious`` / ``fail`` for a worst relative error."""
    if rel_error is None or rel_error < EXCELLENT_BAND:
        return "excellent"
    if rel_error <= WARN_BAND:
        return "good"
    if rel_error <= FAIL_BAND and has_kinks:
        return "suspicious"
    return "fail"


__all__ = ["relative_error", "band", "FAIL_BAND", "WARN_BAND", "EXCELLENT_BAND", "TINY", "EPS",
           "RESOLUTION_ULPS", "DEFAULT_H", "H_MIN", "H_MAX", "STABILITY_STEP", "STABILITY", "KINK_RETRIES", "DEFAULT_DATAPOINTS", "DEFAULT_ENTRIES", "DEFAULT_REG_CHECK",
           "CHECKS"]
