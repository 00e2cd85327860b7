"""lr-probe: which learning rates train this model, and is the recipe's among them?

Every probe trains the recipe's model exactly as ``babysit train`` starts it:
the same initial weights, the same mini-batches in the same order, the
recipe's update rule and L2 strength, at a constant LR (no decay). So the
first steps a probe sees at an LR *are* the first steps of ``train --set
optim.lr=LR``, and a verdict judged on them transfers to training.

``grid`` (the default): short runs (``steps``; by default half the recipe's
own training run, at least 20 and at most 300 steps, and never more than the
whole run) at LRs on a log lattice of ``per_decade`` points per decade (4 by
default) anchored on the recipe's LR, visited by a walk:

1. from the recipe's LR, strides of half a decade (doubling while the
   progress keeps growing) up and down to the peak,
2. the peak refined on the fine lattice (a quarter-decade on each side),
3. half-decade steps out from the best until each side fails.

A run is judged on every mini-batch loss by training's own divergence rule
(NaN/inf or above 3x the first mini-batch loss: ``too_high``) and on its
*progress*, the fall of the objective (data loss in test mode + L2 term) on a
fixed evaluation batch of training examples from the start to the end of the
run. An LR is ``good`` when it did not diverge and made at least
``PROGRESS_SHARE`` (75%) of the best LR's progress; short of that it is
``too_low`` below the best and ``unstable`` above it. The good range is the
run of good lattice points around the best; the suggested LR is its
geometric middle (steadier from seed to seed than the best point itself).

``sweep`` (the LR range test of L. Smith, cheaper): one run, the LR growing
exponentially from ``lr_min`` to ``lr_max`` over 200 steps, stopped by the
same divergence rule; the training loss is smoothed (EMA 0.9,
bias-corrected). The suggestion is a tenth of the LR at the smoothed
minimum; the good range is estimated as ``SWEEP_RANGE`` below that LR. The
recipe's LR, the suggestion and half a decade below the suggestion then get
a short run each, judged as in the grid (the best of the three as the best).

Pass/fail for CI: the recipe's LR must be good, judged on its own short run
(it is always probed), and stay good over the *long run*: its run and the
best LR's go on to the end of training (at most 600 steps) and the recipe's
LR is judged again there, by the same rule, against the better of the two (:mod:`.verdicts` says why the long run can fail an LR but never
pass one). The gate answers "does training at this LR make most of the
progress the best LR makes, without diverging?".
``lr_range_edge`` warns when the good range touches the probed limits.
``lr_marginal`` (grid) warns when the recipe's LR passes as the lowest or
highest point of the good range: the edge of the range is where training
most often ends below the best (calibration: every LR the gate passed that
trained 10 points or more below the best was an edge point; no LR strictly
inside the range did).

Calibration (benchmarks/README.md): ``PROGRESS_SHARE``, the steps and the
sweep's range were chosen against real training runs of seven recipes at 25-29
LRs and 3 seeds each, then checked, unchanged, on held-out seeds and recipes;
the long run was chosen on seeds 0-2 of the calibration recipes (every
lattice LR's run recorded once to the end of the long run, the rules replayed
on the records) and checked on seeds 3-4; the tables there give the agreement.

The package: :mod:`.prober` (the short runs), :mod:`.verdicts` (the rules),
:mod:`.grid` and :mod:`.sweep` (the two modes); this module is the command.
"""

from __future__ import annotations

import math

from babysit.diagnostics import common
from babysit.diagnostics.lr_probe.grid import WALK_STRIDE, lattice_lr, run_grid
from babysit.diagnostics.lr_probe.prober import (DEFAULT_EVAL_EXAMPLES, DEFAULT_SWEEP_STEPS,
                                                 SWEEP_SMOOTHING, Prober, Trial, same_lr)
from babysit.diagnostics.lr_probe.sweep import SWEEP_RANGE, SWEEP_SUGGESTION, run_sweep
from babysit.diagnostics.lr_probe.verdicts import LONG_RUN_MAX_STEPS, PROGRESS_SHARE, judge_trials
from babysit.engine.solver import resolve_batch_size
from babysit.errors import BabysitError
from babysit.validation import POSITIVE, POSITIVE_INT

DEFAULT_LR_MIN = 1e-7
DEFAULT_LR_MAX = 10.0
DEFAULT_PER_DECADE = 4
# a grid run lasts half the recipe's training (its low LRs catch up over a long
# run), within these bounds
STEPS_SHARE = 0.5
MIN_STEPS, MAX_STEPS = 20, 300
VERDICTS = ("too_low", "good", "unstable", "too_high")

CHECKS = {
    "recipe_lr": ["lr_too_low", "lr_too_high", "lr_marginal", "loss_not_finite"],
    "probed_range": ["lr_range_edge"],
}


def training_steps(recipe, data) -> int:
    """How many steps ``babysit train`` takes on this recipe (epochs x batches per epoch)."""
    train = common.section_dict(recipe.train)
    batch = resolve_batch_size(train.get("batch_size") or 100, len(data.X_train))
    return int(train.get("epochs") or 1) * math.ceil(len(data.X_train) / batch)


def default_steps(recipe, data) -> int:
    """The length of a short run: STEPS_SHARE of training, within MIN/MAX_STEPS, at most all of it."""
    total = training_steps(recipe, data)
    return int(min(total, MAX_STEPS, max(MIN_STEPS, round(STEPS_SHARE * total))))


def lr_probe(recipe, seed=None, mode="grid", *, lr_min=DEFAULT_LR_MIN, lr_max=DEFAULT_LR_MAX,
             per_decade=DEFAULT_PER_DECADE, steps=None, sweep_steps=DEFAULT_SWEEP_STEPS,
             eval_examples=DEFAULT_EVAL_EXAMPLES, progress=None):
    """Probe the learning-rate range of a recipe (see the module doc). Returns a Result.

    ``progress`` (optional) gets a :class:`babysit.diagnostics.progress.Step` per
    short run, and per step of the range test.

    Metrics: ``mode``, ``update``, ``recipe_lr``, ``steps``, ``batch_size``,
    ``reg_used``, ``good_range`` ([lo, hi] or None), ``suggested_lr``,
    ``trials`` (one row per short run, ascending LR: lr, verdict, loss_start,
    loss_end, steps, diverged_at), ``training_steps``, ``lr_min``, ``lr_max``;
    grid: ``per_decade``, ``eval_examples``; sweep: ``sweep_steps`` and
    ``sweep`` (one row per step: lr, verdict, loss_start, loss_end (smoothed), loss);
    ``long_run`` (the gate's judgement, None without one: ``steps``, ``verdict``,
    ``share`` of the better run's progress, and the ``recipe`` and ``best`` runs
    as trial rows).
    """
    if mode not in ("grid", "sweep"):
        raise BabysitError(f"lr-probe mode must be 'grid' or 'sweep', got {mode!r}")
    lr_min = POSITIVE.check(lr_min, "lr_min")
    lr_max = POSITIVE.check(lr_max, "lr_max")
    if lr_min >= lr_max:
        raise BabysitError(f"lr_min ({lr_min:g}) must be below lr_max ({lr_max:g})")
    per_decade = POSITIVE_INT.check(per_decade, "per_decade")
    eval_examples = POSITIVE_INT.check(eval_examples, "eval_examples")
    recipe = common.seeded(recipe, seed)
    seed = recipe.seed
    recipe_lr = POSITIVE.check(common.section_dict(recipe.optim).get("lr"), "the recipe's optim.lr")
    update = str(common.section_dict(recipe.optim).get("update") or "sgd")
    result = common.new_result("lr-probe", recipe, seed, CHECKS)
    if update == "lbfgs":
        # L-BFGS's line search sets its own steps; the LR only scales the first one
        result.metrics = {"mode": mode, "update": update, "recipe_lr": recipe_lr,
                          "good_range": None, "suggested_lr": None, "trials": [],
                          "note": "L-BFGS chooses every step by its line search (optim.lr only "
                                  "scales the first): there is no learning-rate range to probe"}
        return result
    data = common.load(recipe)
    steps = POSITIVE_INT.check(steps if steps is not None else default_steps(recipe, data), "steps")
    sweep_steps = POSITIVE_INT.check(sweep_steps, "sweep_steps")
    prober = Prober(recipe, data, seed, steps, eval_examples, sweep_steps, progress)
    total_steps = training_steps(recipe, data)
    metrics = {"mode": mode, "update": update, "recipe_lr": recipe_lr, "steps": steps,
               "training_steps": total_steps,
               "batch_size": resolve_batch_size(prober.batch_size, len(data.X_train)),
               "reg_used": float(common.section_dict(recipe.model).get("reg") or 0.0)}
    if mode == "grid":
        good_range, suggested, long_run = run_grid(result, prober, recipe_lr, update, lr_min,
                                                   lr_max, per_decade, total_steps)
        trials = sorted(prober.trials.values(), key=lambda t: t.lr)
        metrics.update(good_range=good_range, suggested_lr=suggested,
                       trials=[t.to_metrics() for t in trials], lr_min=lr_min, lr_max=lr_max,
                       per_decade=per_decade, eval_examples=int(len(prober.X_eval)))
    else:
        points, good_range, suggested, long_run = run_sweep(result, prober, lr_min, lr_max,
                                                            recipe_lr, update, total_steps)
        start = points[0]["smoothed"]
        metrics.update(good_range=good_range, suggested_lr=suggested, lr_min=lr_min, lr_max=lr_max,
                       sweep_steps=sweep_steps,
                       sweep=[{"lr": p["lr"], "verdict": p["verdict"], "loss_start": start,
                               "loss_end": p["smoothed"], "loss": p["loss"]} for p in points],
                       trials=[t.to_metrics() for t in sorted(prober.trials.values(),
                                                              key=lambda t: t.lr)])
    metrics["long_run"] = long_run.to_metrics() if long_run is not None else None
    result.metrics = metrics
    return result


__all__ = ["lr_probe", "Prober", "Trial", "VERDICTS", "CHECKS", "PROGRESS_SHARE", "LONG_RUN_MAX_STEPS",
           "same_lr", "lattice_lr", "training_steps", "default_steps", "judge_trials",
           "DEFAULT_LR_MIN", "DEFAULT_LR_MAX", "DEFAULT_PER_DECADE", "DEFAULT_SWEEP_STEPS",
           "DEFAULT_EVAL_EXAMPLES", "SWEEP_SMOOTHING", "SWEEP_SUGGESTION", "SWEEP_RANGE",
           "WALK_STRIDE", "MIN_STEPS", "MAX_STEPS"]
