"""lr-probe's sweep mode: one LR range test (L. Smith), then short runs to judge the recipe's LR."""

from __future__ import annotations

import math

from babysit.diagnostics.lr_probe.prober import Prober
from babysit.diagnostics.lr_probe.verdicts import fmt_lr, judge_recipe_lr, judge_trials, long_run_check

SWEEP_SUGGESTION = 10.0         # suggested LR = LR at the smoothed minimum / this
SWEEP_RANGE = (100.0, 3.0)      # good range = that LR / these


def run_sweep(result, prober: Prober, lr_min: float, lr_max: float, recipe_lr: float, update: str,
              training_steps: int):
    """The range test, its good range and suggestion, and the recipe's verdict (findings on
    ``result``); returns ``(points, good_range, suggested, long_run)``."""
    points = prober.sweep(lr_min, lr_max)
    if not math.isfinite(points[0]["smoothed"]):
        result.add("loss_not_finite", "fail",
                   f"the loss at the first step is {points[0]['loss']}: no LR can be judged",
                   "run sanity-loss: the init or the data makes the loss blow up")
        return points, None, None, None
    finite = [p for p in points if math.isfinite(p["smoothed"])]
    lowest = min(finite, key=lambda p: p["smoothed"])
    start = points[0]["smoothed"]
    fell = lowest["smoothed"] < start - 0.01 * abs(start)
    good_range = ([float(f"{lowest['lr'] / SWEEP_RANGE[0]:.3g}"),
                   float(f"{lowest['lr'] / SWEEP_RANGE[1]:.3g}")] if fell else None)
    suggested = float(f"{lowest['lr'] / SWEEP_SUGGESTION:.3g}") if fell else None
    for point in points:
        point["verdict"] = ("too_low" if good_range is None or point["lr"] < good_range[0] else
                            "good" if point["lr"] <= good_range[1] else "unstable")
    if len(points) < prober.sweep_steps:  # stopped by the divergence rule
        points[-1]["verdict"] = "too_high"
    recipe_trial = prober.trial(recipe_lr)
    if suggested is not None:
        # the reference, what a good LR achieves in as many steps: the better of
        # the suggestion and half a decade below it (one run alone can land where
        # training is erratic, and a weak reference passes slow LRs)
        prober.trial(suggested)
        prober.trial(float(f"{suggested / math.sqrt(10):.3g}"))
    best = judge_trials(list(prober.trials.values()))
    long_run = long_run_check(prober, recipe_trial, best, training_steps)
    judge_recipe_lr(result, recipe_lr, recipe_trial, good_range, update, (lr_min, lr_max), long_run)
    if good_range is not None and len(points) == prober.sweep_steps and lowest is points[-1]:
        result.add("lr_range_edge", "warn",
                   f"the loss was still falling at the largest LR {fmt_lr(points[-1]['lr'])}: "
                   "the range test never reached divergence", "raise --lr-max", None,
                   best_lr=lowest["lr"])
    elif good_range is not None and good_range[0] <= points[0]["lr"]:
        result.add("lr_range_edge", "warn",
                   f"the good range starts below the first LR {fmt_lr(points[0]['lr'])}",
                   "lower --lr-min", None, best_lr=lowest["lr"])
    return points, good_range, suggested, long_run


__all__ = ["run_sweep", "SWEEP_SUGGESTION", "SWEEP_RANGE"]
