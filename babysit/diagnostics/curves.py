"""Diagnosis of a finished run's curves: loss shape and the train/val gap.

The shapes are the lecture's (CS231n lecture 6, "babysitting"; Karpathy's
recipe): the per-iteration loss is smoothed with a moving average, then

* exploding: the smoothed loss ends more than ``FLAT_DROP`` above where it
  started -> ``loss_diverged`` (fail);
* flat: it ends within ``FLAT_DROP`` of its start -> ``loss_plateau`` (fail:
  nothing was learned; the LR is too low);
* it fell substantially, then climbed back over half of its progress ->
  ``loss_diverged`` (warn);
* slow and linear: it fell by less than ``SLOW_DROP`` of its start and the
  second half of the run still made ``LINEAR_SHARE`` of the progress ->
  ``loss_plateau`` (warn: the LR is too low, far from converged);
* flat-then-sudden-drop: it sat near its start for the first ``LATE_FRACTION``
  of the run (and at least ``LATE_ITERATIONS`` iterations) before falling ->
  ``late_start`` (warn: bad initialization);
* steep-then-plateau: 90% of its progress came in the first ``STEEP_FRACTION``
  of the run, the second half barely moved and the loss is still high ->
  ``lr_too_high`` (warn);
* train/val accuracy gap above ``GAP_OVERFIT`` -> ``overfitting`` (warn: more
  regularization); no gap (below ``GAP_NONE``) while train accuracy is below
  ``UNDERFIT_ACCURACY`` -> ``underfitting`` (warn: more capacity).
"""

from __future__ import annotations

import math

import numpy as np

from babysit.diagnostics.result import Finding

MIN_ITERATIONS = 10
FLAT_DROP = 0.02
SLOW_DROP = 0.50          # a run that lost less than half its loss ...
LINEAR_SHARE = 0.35       # ... and still made this share of that progress in its second half
LATE_FRACTION = 0.15
LATE_ITERATIONS = 50      # shorter flat starts are momentum warming up, not a bad init
STEEP_FRACTION = 0.10
HIGH_PLATEAU = 0.30       # final loss above 30% of the initial one counts as "still high"
GAP_OVERFIT = 0.10
GAP_NONE = 0.02
UNDERFIT_ACCURACY = 0.90


def smooth(values, window: int | None = None) -> np.ndarray:
    """Moving average (``window`` defaults to a twentieth of the run; 'valid' part only)."""
    values = np.asarray(values, dtype=np.float64)
    if window is None:
        window = max(1, len(values) // 20)
    window = max(1, min(int(window), len(values)))
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    return (cumulative[window:] - cumulative[:-window]) / window


def first_index(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def diagnose_loss(loss) -> list[Finding]:
    """Findings about the shape of a per-iteration loss curve (all of a run's iterations)."""
    loss = np.asarray(loss, dtype=np.float64)
    if len(loss) < MIN_ITERATIONS or not np.all(np.isfinite(loss)):
        return []  # too short to judge; non-finite losses are caught while training
    s = smooth(loss)
    n = len(s)
    start, end, lowest = float(s[0]), float(s[-1]), float(s.min())
    scale = max(abs(start), 1e-12)
    progress = start - lowest
    evidence = {"loss_start": start, "loss_end": end, "loss_min": lowest, "iterations": len(loss)}
    findings = []
    drop = (start - end) / scale
    if drop < -FLAT_DROP:
        findings.append(Finding(
            "loss_diverged", "fail",
            f"the loss rose over the run (smoothed {start:.4g} -> {end:.4g})",
            "lower the learning rate (try 10x lower; run `babysit lr-probe`)", None, evidence))
        return findings
    if drop < FLAT_DROP:
        findings.append(Finding(
            "loss_plateau", "fail",
            f"the loss barely moved: {start:.4g} -> {end:.4g} "
            f"({'fell' if drop >= 0 else 'rose'} by {100 * abs(drop):.2g}%)",
            "raise the learning rate (run `babysit lr-probe`); check for dead units with "
            "`babysit init-stats`", None, evidence))
        return findings
    if progress > 10 * FLAT_DROP * scale and end - lowest > 0.5 * progress:
        findings.append(Finding(
            "loss_diverged", "warn",
            f"the loss climbed back from its minimum {lowest:.4g} to {end:.4g}, losing over half "
            "of its progress",
            "lower the learning rate or decay it faster (optim.decay)", None, evidence))
        return findings
    t10 = first_index(s <= start - 0.10 * progress)
    if t10 is not None and t10 >= LATE_FRACTION * n and t10 >= LATE_ITERATIONS:
        findings.append(Finding(
            "late_start", "warn",
            f"the loss stayed flat for the first {100 * t10 / n:.0f}% of the run, then dropped "
            f"({start:.4g} -> {end:.4g})",
            "bad initialization: use Xavier for tanh, He for ReLU (check `babysit init-stats`)",
            None, {**evidence, "flat_fraction": t10 / n}))
    second_half = float(s[n // 2]) - end
    if not findings and drop < SLOW_DROP and second_half >= LINEAR_SHARE * (start - end):
        findings.append(Finding(
            "loss_plateau", "warn",
            f"the loss is falling slowly and steadily ({start:.4g} -> {end:.4g}, "
            f"{100 * drop:.2g}% lower, {100 * second_half / (start - end):.0f}% of that in the "
            "second half): it is far from converged",
            "raise the learning rate (run `babysit lr-probe`) or train longer", None, evidence))
        return findings
    t90 = first_index(s <= start - 0.90 * progress)
    if (t90 is not None and t90 <= STEEP_FRACTION * n and end > HIGH_PLATEAU * start
            and second_half < 0.05 * progress):
        findings.append(Finding(
            "lr_too_high", "warn",
            f"the loss fell steeply in the first {100 * max(t90, 1) / n:.0f}% of the run, then "
            f"plateaued at {end:.4g} ({100 * end / scale:.0f}% of its start)",
            "the learning rate is too high to settle: lower it or add a decay schedule",
            None, {**evidence, "steep_fraction": t90 / n}))
    return findings


def diagnose_gap(train_accuracy: float, val_accuracy: float) -> list[Finding]:
    """Overfitting / underfitting from the final train and validation accuracies."""
    if not (math.isfinite(train_accuracy) and math.isfinite(val_accuracy)):
        return []
    gap = train_accuracy - val_accuracy
    evidence = {"train_accuracy": train_accuracy, "val_accuracy": val_accuracy, "gap": gap}
    if gap > GAP_OVERFIT:
        return [Finding(
            "overfitting", "warn",
            f"train accuracy {train_accuracy:.3f} vs validation {val_accuracy:.3f}: a gap of "
            f"{100 * gap:.1f} points",
            "more regularization (raise model.reg, add dropout), more data, or keep the "
            "best-on-validation checkpoint", None, evidence)]
    if gap < GAP_NONE and train_accuracy < UNDERFIT_ACCURACY:
        return [Finding(
            "underfitting", "warn",
            f"no train/validation gap ({100 * gap:.1f} points) at a train accuracy of only "
            f"{train_accuracy:.3f}",
            "more capacity (wider or deeper layers), less regularization, or more epochs",
            None, evidence)]
    return []


def diagnose_curves(loss, train_accuracy: float, val_accuracy: float) -> list[Finding]:
    """All curve findings: loss shape, then the accuracy gap."""
    return diagnose_loss(loss) + diagnose_gap(float(train_accuracy), float(val_accuracy))


__all__ = ["smooth", "diagnose_loss", "diagnose_gap", "diagnose_curves"]
