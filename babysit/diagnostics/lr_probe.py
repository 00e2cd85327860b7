"""lr-probe: which learning rates train this model, and is the recipe's among them?

Two modes.

``grid`` (default, the CS231n coarse search): log-spaced LRs (default 1e-7 .. 10,
two per decade, plus the recipe's own LR). Every LR trains a fresh copy of the
model from the same initial weights, on the same mini-batches, for the same
small budget (``steps``), with the recipe's update rule (adam and sgd have very
different ranges) and the recipe's L2 strength, at a constant LR (no decay).
Every ``eval_every`` steps the objective (data loss + L2 term, test mode) is
measured on one fixed evaluation batch of training examples, so verdicts do
not hang on the noise of a single mini-batch. Verdicts:

* ``too_high``: the loss became NaN/inf or exceeded 3x its start at any point;
* ``too_low``: over the budget it fell by less than 1% of its start;
* ``unstable``: it fell, then climbed back by more than 25% of what it had
  gained (``(end - min) > 0.25 * (start - min)``);
* ``good``: otherwise.

The good range is the run of consecutive ``good`` LRs around the best one (the
lowest final loss), which is also the suggested LR.

``sweep`` (the LR range test of L. Smith): one run, the LR growing
exponentially from ``lr_min`` to ``lr_max`` over ``steps`` steps; the training
loss is smoothed (EMA 0.9, bias-corrected) and the run stops at divergence
(NaN or 4x the best smoothed loss). The good range goes from the LR where the
smoothed loss has fallen 1% below its start to the LR of its minimum; the
suggestion is a tenth of the latter (the usual rule of thumb).

Pass/fail for CI: the recipe's LR must lie inside the good range
(``lr_too_low`` / ``lr_too_high``); ``lr_range_edge`` warns when the best LR is
at the edge of the probed range (widen it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.progress import SolverProgress, notify
from babysit.engine.solver import Callback, Solver, resolve_batch_size
from babysit.errors import BabysitError
from babysit.validation import POSITIVE, POSITIVE_INT

DEFAULT_LR_MIN = 1e-7
DEFAULT_LR_MAX = 10.0
DEFAULT_PER_DECADE = 2
DEFAULT_STEPS = 100
DEFAULT_SWEEP_STEPS = 200
DEFAULT_EVAL_EVERY = 10
DEFAULT_EVAL_EXAMPLES = 500
TOO_HIGH_FACTOR = 3.0
TOO_LOW_FRACTION = 0.01
REBOUND_FRACTION = 0.25
SWEEP_SMOOTHING = 0.9
SWEEP_DIVERGENCE = 4.0
VERDICTS = ("too_low", "good", "unstable", "too_high")

CHECKS = {
    "recipe_lr": ["lr_too_low", "lr_too_high", "loss_not_finite"],
    "probed_range": ["lr_range_edge"],
}


def lr_grid(lr_min: float, lr_max: float, per_decade: int) -> list[float]:
    """Log-spaced LRs from ``lr_min`` to ``lr_max``, ``per_decade`` per decade, 3 digits."""
    lo, hi = math.log10(lr_min), math.log10(lr_max)
    count = int(math.floor((hi - lo) * per_decade + 1e-9)) + 1
    return [float(f"{10 ** (lo + k / per_decade):.3g}") for k in range(count)]


def same_lr(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


@dataclass
class Trial:
    """One LR: its eval-loss curve (every ``eval_every`` steps) and the verdict."""

    lr: float
    curve: list = field(default_factory=list)
    steps: int = 0
    verdict: str = ""

    @property
    def loss_start(self) -> float:
        return self.curve[0]

    @property
    def loss_end(self) -> float:
        return self.curve[-1]

    def to_metrics(self) -> dict:
        return {"lr": self.lr, "verdict": self.verdict, "loss_start": self.loss_start,
                "loss_end": self.loss_end, "loss_min": min(self.curve), "steps": self.steps,
                "curve": list(self.curve)}


def classify(curve: list) -> str:
    """The verdict for one eval-loss curve (see the module doc)."""
    start, end = curve[0], curve[-1]
    if not all(math.isfinite(v) for v in curve) or max(curve) > TOO_HIGH_FACTOR * start:
        return "too_high"
    lowest = min(curve)
    gained = start - lowest
    if gained < TOO_LOW_FRACTION * start:
        return "too_low"
    if end - lowest > REBOUND_FRACTION * gained:
        return "unstable"
    if start - end < TOO_LOW_FRACTION * start:  # a small, slightly noisy fall
        return "too_low"
    return "good"


class Prober:
    """Trains fresh copies of a recipe's model at chosen LRs, all else equal."""

    def __init__(self, recipe, data, seed: int, steps: int, eval_every: int, eval_examples: int):
        self.recipe = recipe
        self.data = data
        self.seed = seed
        self.optim = common.section_dict(recipe.optim)
        train = common.section_dict(recipe.train)
        self.batch_size = train.get("batch_size") or 100   # an int or "full"
        self.steps = steps
        self.eval_every = eval_every
        self.X_eval, self.y_eval = common.subset(data.X_train, data.y_train, eval_examples,
                                                 common.stream(seed, "subset"))

    def fresh(self):
        """The model at its initial weights and an optimizer with empty state.

        Every LR gets the same initial weights and, from the same shuffling
        stream, the same sequence of mini-batches.
        """
        model = common.build(self.recipe, self.data, self.seed)
        return model, Solver(model, self.optim, self.batch_size, common.stream(self.seed, "batches"))

    def objective(self, model) -> float:
        """Data loss (test mode) + L2 term on the fixed evaluation batch.

        Evaluated in chunks of the training batch size: the same matrix shapes
        as the training steps. A bigger product can wake OpenBLAS's threads,
        which on a busy machine costs up to 100x more than it saves.
        """
        total, n = 0.0, len(self.X_eval)
        chunk = resolve_batch_size(self.batch_size, len(self.data.X_train))
        with np.errstate(all="ignore"):
            for start in range(0, n, chunk):
                X = self.X_eval[start:start + chunk]
                scores = model.forward(X, train=False)
                total += float(model.loss_fn(scores, self.y_eval[start:start + chunk])[0]) * len(X)
            return total / n + model.reg_loss()[0]

    def grid_trial(self, lr: float) -> Trial:
        model, solver = self.fresh()
        trial = Trial(lr)
        trial.curve.append(self.objective(model))
        solver.run(self.data.X_train, self.data.y_train, steps=self.steps, lr=lr,
                   callbacks=[EvalCurve(self, model, trial)])
        trial.verdict = classify(trial.curve)
        return trial

    def sweep(self, lr_min: float, lr_max: float, progress=None) -> list[dict]:
        """One run with exponentially growing LR; a point per step until divergence."""
        model, solver = self.fresh()
        lrs = np.geomspace(lr_min, lr_max, self.steps)
        watch = SmoothedSweep()
        steps = SolverProgress(progress, self.steps, label=lambda state: f"lr {state.lr:.3g}")
        solver.run(self.data.X_train, self.data.y_train, steps=self.steps,
                   lr=lambda state: float(lrs[state.iteration]), callbacks=[watch, steps])
        return watch.points


class EvalCurve(Callback):
    """A grid trial's curve: the objective every ``eval_every`` steps and at the end.

    Stops at a non-finite mini-batch loss, or when the objective is non-finite
    or above ``TOO_HIGH_FACTOR`` times its start.
    """

    def __init__(self, prober: Prober, model, trial: Trial):
        self.prober, self.model, self.trial = prober, model, trial

    def on_step_end(self, state):
        trial, step = self.trial, state.iteration
        trial.steps = step
        if not math.isfinite(state.loss):
            trial.curve.append(float("nan"))
            return True
        if step % self.prober.eval_every == 0 or step == self.prober.steps:
            value = self.prober.objective(self.model)
            trial.curve.append(value)
            return not math.isfinite(value) or value > TOO_HIGH_FACTOR * trial.curve[0]
        return False


class SmoothedSweep(Callback):
    """The range test's points: the loss smoothed (EMA, bias-corrected) per step.

    Stops when the smoothed loss is non-finite or above ``SWEEP_DIVERGENCE``
    times its lowest value so far.
    """

    def __init__(self):
        self.points: list[dict] = []
        self.average = 0.0
        self.best = math.inf

    def on_step_end(self, state):
        loss = state.loss
        self.average = SWEEP_SMOOTHING * self.average + (1 - SWEEP_SMOOTHING) * loss
        smoothed = self.average / (1 - SWEEP_SMOOTHING ** state.iteration)
        self.points.append({"lr": state.lr, "loss": loss, "smoothed": smoothed})
        if not math.isfinite(smoothed) or smoothed > SWEEP_DIVERGENCE * self.best:
            return True
        self.best = min(self.best, smoothed)
        return False


# ---------------------------------------------------------------------------
# Judging a set of trials


def good_run(trials: list[Trial]) -> tuple[list[Trial], Trial | None]:
    """The consecutive good trials around the best one (lowest final loss), and the best."""
    good = [i for i, t in enumerate(trials) if t.verdict == "good"]
    if not good:
        return [], None
    best = min(good, key=lambda i: (trials[i].loss_end, trials[i].lr))
    lo = hi = best
    while lo > 0 and trials[lo - 1].verdict == "good":
        lo -= 1
    while hi + 1 < len(trials) and trials[hi + 1].verdict == "good":
        hi += 1
    return trials[lo:hi + 1], trials[best]


def _fmt(lr: float) -> str:
    return f"{lr:.3g}"


def judge_recipe_lr(result, recipe_lr: float, good_range, recipe_verdict: str | None,
                    update: str, probed: tuple) -> None:
    """Fail unless the recipe's LR is inside the good range."""
    if good_range is None:
        code = "lr_too_low" if recipe_verdict == "too_low" else "lr_too_high"
        result.add(code, "fail",
                   f"no probed LR between {_fmt(probed[0])} and {_fmt(probed[1])} trained "
                   f"well with {update}; the recipe's {_fmt(recipe_lr)} is {recipe_verdict}",
                   "check the other diagnostics (sanity-loss, gradcheck, init-stats): when no "
                   "LR works, the model or the data is broken, not the LR", None,
                   recipe_lr=recipe_lr, good_range=None)
        return
    lo, hi = good_range
    range_text = f"good range {_fmt(lo)} .. {_fmt(hi)} for {update}"
    if recipe_lr < lo and not same_lr(recipe_lr, lo):
        result.add("lr_too_low", "fail",
                   f"the recipe's LR {_fmt(recipe_lr)} is below the {range_text}"
                   + (f" (at it the loss is {recipe_verdict})" if recipe_verdict else ""),
                   f"raise optim.lr into {_fmt(lo)} .. {_fmt(hi)}", None,
                   recipe_lr=recipe_lr, good_range=[lo, hi])
    elif recipe_lr > hi and not same_lr(recipe_lr, hi):
        result.add("lr_too_high", "fail",
                   f"the recipe's LR {_fmt(recipe_lr)} is above the {range_text}"
                   + (f" (at it the loss is {recipe_verdict})" if recipe_verdict else ""),
                   f"lower optim.lr into {_fmt(lo)} .. {_fmt(hi)}", None,
                   recipe_lr=recipe_lr, good_range=[lo, hi])


def _recipe_lr(recipe) -> float:
    return POSITIVE.check(common.section_dict(recipe.optim).get("lr"), "the recipe's optim.lr")


def _run_grid(result, prober: Prober, lrs: list[float], recipe_lr: float, update: str,
              progress=None):
    if not any(same_lr(lr, recipe_lr) for lr in lrs):
        lrs = sorted(lrs + [recipe_lr])
    trials = []
    for lr in lrs:
        trials.append(prober.grid_trial(lr))
        notify(progress, len(trials), len(lrs), f"lr {lr:.3g}: {trials[-1].verdict}")
    if not math.isfinite(trials[0].loss_start):
        result.add("loss_not_finite", "fail",
                   f"the loss at init is {trials[0].loss_start}: no LR can be judged",
                   "run sanity-loss: the init or the data makes the loss blow up")
        return trials, None, None
    run, best = good_run(trials)
    good_range = [run[0].lr, run[-1].lr] if run else None
    recipe_trial = next(t for t in trials if same_lr(t.lr, recipe_lr))
    judge_recipe_lr(result, recipe_lr, good_range, recipe_trial.verdict, update,
                    (trials[0].lr, trials[-1].lr))
    if best is not None and (best is trials[0] or best is trials[-1]):
        side = "lowest" if best is trials[0] else "highest"
        result.add("lr_range_edge", "warn",
                   f"the best LR {_fmt(best.lr)} is the {side} one probed: the good range may "
                   "extend beyond it", "widen the probe with --lr-min/--lr-max", None,
                   best_lr=best.lr)
    return trials, good_range, None if best is None else best.lr


def _sweep_verdicts(points: list[dict]) -> tuple:
    """Per-step verdicts, the good range and the suggestion of a range test."""
    start = points[0]["smoothed"]
    finite = [i for i, p in enumerate(points) if math.isfinite(p["smoothed"])]
    lowest = min(finite, key=lambda i: points[i]["smoothed"])
    falling = next((i for i in finite if points[i]["smoothed"] < (1 - TOO_LOW_FRACTION) * start
                    and i <= lowest), None)
    for i, point in enumerate(points):
        if falling is None or i < falling:
            point["verdict"] = "too_low"
        elif i <= lowest:
            point["verdict"] = "good"
        else:
            point["verdict"] = "too_high"
    if falling is None:
        return None, None, lowest
    lo, hi = points[falling]["lr"], points[lowest]["lr"]
    return [lo, hi], max(lo, hi / 10), lowest


def _run_sweep(result, prober: Prober, lr_min: float, lr_max: float, recipe_lr: float,
               update: str, progress=None):
    points = prober.sweep(lr_min, lr_max, progress)
    if not math.isfinite(points[0]["smoothed"]):
        result.add("loss_not_finite", "fail",
                   f"the loss at the first step is {points[0]['loss']}: no LR can be judged",
                   "run sanity-loss: the init or the data makes the loss blow up")
        return points, None, None
    good_range, suggested, lowest = _sweep_verdicts(points)
    verdict = None
    if recipe_lr < points[0]["lr"]:
        verdict = "too_low"
    elif recipe_lr > points[-1]["lr"]:
        verdict = "too_high"
    else:
        verdict = next(p["verdict"] for p in points if p["lr"] >= recipe_lr * (1 - 1e-9))
    judge_recipe_lr(result, recipe_lr, good_range, verdict, update, (lr_min, lr_max))
    diverged = len(points) < prober.steps or not math.isfinite(points[-1]["smoothed"])
    if good_range is not None and (not diverged and lowest == len(points) - 1):
        result.add("lr_range_edge", "warn",
                   f"the loss was still falling at the largest LR {_fmt(points[-1]['lr'])}: "
                   "the range test never reached divergence", "raise --lr-max", None,
                   best_lr=points[lowest]["lr"])
    elif good_range is not None and good_range[0] == points[0]["lr"]:
        result.add("lr_range_edge", "warn",
                   f"the loss fell from the very first LR {_fmt(points[0]['lr'])}",
                   "lower --lr-min", None, best_lr=points[lowest]["lr"])
    return points, good_range, suggested


def lr_probe(recipe, seed=None, mode="grid", *, lr_min=DEFAULT_LR_MIN, lr_max=DEFAULT_LR_MAX,
             per_decade=DEFAULT_PER_DECADE, steps=None, eval_every=DEFAULT_EVAL_EVERY,
             eval_examples=DEFAULT_EVAL_EXAMPLES, progress=None):
    """Probe the learning-rate range of a recipe (see the module doc). Returns a Result.

    ``progress`` (optional) gets a :class:`babysit.diagnostics.progress.Step` per
    probed LR (grid) or per step (sweep).
    """
    if mode not in ("grid", "sweep"):
        raise BabysitError(f"lr-probe mode must be 'grid' or 'sweep', got {mode!r}")
    lr_min = POSITIVE.check(lr_min, "lr_min")
    lr_max = POSITIVE.check(lr_max, "lr_max")
    if lr_min >= lr_max:
        raise BabysitError(f"lr_min ({lr_min:g}) must be below lr_max ({lr_max:g})")
    per_decade = POSITIVE_INT.check(per_decade, "per_decade")
    steps = POSITIVE_INT.check(steps if steps is not None else
                               DEFAULT_STEPS if mode == "grid" else DEFAULT_SWEEP_STEPS, "steps")
    eval_every = POSITIVE_INT.check(eval_every, "eval_every")
    eval_examples = POSITIVE_INT.check(eval_examples, "eval_examples")
    recipe = common.seeded(recipe, seed)
    seed = recipe.seed
    recipe_lr = _recipe_lr(recipe)
    update = str(common.section_dict(recipe.optim).get("update") or "sgd")
    result = common.new_result("lr-probe", recipe, seed, CHECKS)
    data = common.load(recipe)
    prober = Prober(recipe, data, seed, steps, eval_every, eval_examples)
    metrics = {"mode": mode, "update": update, "recipe_lr": recipe_lr, "steps": steps,
               "batch_size": prober.batch_size, "reg_used": float(
                   common.section_dict(recipe.model).get("reg") or 0.0)}
    if mode == "grid":
        trials, good_range, suggested = _run_grid(result, prober, lr_grid(lr_min, lr_max, per_decade),
                                                  recipe_lr, update, progress)
        metrics.update(good_range=good_range, suggested_lr=suggested,
                       trials=[t.to_metrics() for t in trials], eval_every=eval_every,
                       eval_examples=int(len(prober.X_eval)), lr_min=lr_min, lr_max=lr_max,
                       per_decade=per_decade)
    else:
        points, good_range, suggested = _run_sweep(result, prober, lr_min, lr_max, recipe_lr, update,
                                                   progress)
        start = points[0]["smoothed"]
        metrics.update(good_range=good_range, suggested_lr=suggested, lr_min=lr_min, lr_max=lr_max,
                       trials=[{"lr": p["lr"], "verdict": p.get("verdict", "too_high"),
                                "loss_start": start, "loss_end": p["smoothed"], "loss": p["loss"]}
                               for p in points])
    result.metrics = metrics
    return result


__all__ = ["lr_probe", "lr_grid", "classify", "VERDICTS", "CHECKS"]
