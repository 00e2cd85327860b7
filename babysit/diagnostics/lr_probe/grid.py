"""lr-probe's grid mode: a walk over a log lattice of LRs anchored on the recipe's LR."""

from __future__ import annotations

import math

from babysit.diagnostics.lr_probe.prober import Prober, Trial, same_lr
from babysit.diagnostics.lr_probe.verdicts import (PROGRESS_SHARE, judge_recipe_lr, judge_trials,
                                                       long_run_check, warn_if_marginal)

WALK_STRIDE = 2   # lattice points per step of the walk's outer phases (a half-decade)


def lattice_lr(k: int, per_decade: int, anchor: float = 1.0) -> float:
    """The ``k``-th point of the lattice ``anchor * 10 ** (k / per_decade)``, to 3 digits."""
    return float(f"{anchor * 10 ** (k / per_decade):.3g}")


class Lattice:
    """The LRs ``recipe_lr * 10 ** (k / per_decade)`` between ``lr_min`` and ``lr_max``.

    Anchored on the recipe's LR, so the recipe's own run is a lattice point.
    """

    def __init__(self, anchor: float, lr_min: float, lr_max: float, per_decade: int):
        self.anchor, self.per_decade = anchor, per_decade
        self.lo = math.ceil(math.log10(lr_min / anchor) * per_decade - 1e-9)
        self.hi = math.floor(math.log10(lr_max / anchor) * per_decade + 1e-9)

    def lr(self, k: int) -> float:
        return self.anchor if k == 0 else lattice_lr(k, self.per_decade, self.anchor)

    def __contains__(self, k: int) -> bool:
        return self.lo <= k <= self.hi


def walk(prober: Prober, lattice: Lattice) -> int:
    """Probe the lattice around the best LR (see the package doc); returns the best index.

    Three phases, each a few short runs: find the peak from the recipe's LR in
    strides that double while the progress grows; refine it on the fine lattice
    (one point on each side); then step out from it, ``WALK_STRIDE`` points at a
    time, until each side fails the progress share or diverges.
    """
    probe = lambda k: prober.trial(lattice.lr(k))  # noqa: E731
    better = lambda k, than: probe(k).progress > probe(than).progress  # noqa: E731
    best_k = min(max(0, lattice.lo), lattice.hi)   # the recipe's LR, or the nearest limit
    for direction in (+1, -1):
        stride = WALK_STRIDE
        while best_k + direction * stride in lattice and better(best_k + direction * stride, best_k):
            best_k += direction * stride
            stride *= 2
    for k in (best_k - 1, best_k + 1):
        if k in lattice and better(k, best_k):
            best_k = k
    for direction in (+1, -1):
        k = best_k
        while k + direction * WALK_STRIDE in lattice:
            k += direction * WALK_STRIDE
            if better(k, best_k):
                best_k = k
            elif not probe(k).progress >= PROGRESS_SHARE * probe(best_k).progress:
                break
    return best_k


def good_lattice_run(prober: Prober, best_k: int, lattice: Lattice) -> list[Trial]:
    """The good lattice trials around the best one, up to the first probed one that is not."""
    probed = sorted((k, t) for k in range(lattice.lo, lattice.hi + 1)
                    for lr, t in prober.trials.items() if same_lr(lr, lattice.lr(k)))
    index = next(i for i, (k, _) in enumerate(probed) if k == best_k)
    lo = hi = index
    while lo > 0 and probed[lo - 1][1].verdict == "good":
        lo -= 1
    while hi + 1 < len(probed) and probed[hi + 1][1].verdict == "good":
        hi += 1
    return [t for _, t in probed[lo:hi + 1]]


def run_grid(result, prober: Prober, recipe_lr: float, update: str, lr_min: float,
             lr_max: float, per_decade: int, training_steps: int):
    """The walk, the good range, the suggestion and the recipe's verdict (findings on
    ``result``); returns ``(good_range, suggested, long_run)``."""
    lattice = Lattice(recipe_lr, lr_min, lr_max, per_decade)
    recipe_trial = prober.trial(recipe_lr)
    if not math.isfinite(recipe_trial.loss_start):
        result.add("loss_not_finite", "fail",
                   f"the loss at init is {recipe_trial.loss_start}: no LR can be judged",
                   "run sanity-loss: the init or the data makes the loss blow up")
        judge_trials(list(prober.trials.values()))
        return None, None, None
    best_k = walk(prober, lattice)
    best = judge_trials(list(prober.trials.values()))
    run = good_lattice_run(prober, best_k, lattice) if best is not None else []
    good_range = [run[0].lr, run[-1].lr] if run else None
    suggested = (float(f"{math.sqrt(good_range[0] * good_range[1]):.3g}") if good_range else None)
    long_run = long_run_check(prober, recipe_trial, best, training_steps)
    verdict = judge_recipe_lr(result, recipe_lr, recipe_trial, good_range, update, (lr_min, lr_max),
                              long_run)
    if run:
        at_limit = (same_lr(run[0].lr, lattice.lr(lattice.lo)),
                    same_lr(run[-1].lr, lattice.lr(lattice.hi)))
        if verdict == "good":
            warn_if_marginal(result, recipe_lr, good_range, suggested, at_limit)
        edge = "lowest" if at_limit[0] else "highest" if at_limit[1] else None
        if edge:
            result.add("lr_range_edge", "warn",
                       f"the good range reaches the {edge} LR probed: it may extend beyond it",
                       "widen the probe with --lr-min/--lr-max", None, good_range=good_range)
    return good_range, suggested, long_run


__all__ = ["run_grid", "walk", "Lattice", "lattice_lr", "good_lattice_run", "WALK_STRIDE"]
