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
``PROGRESS_SHARE`` (80%) of the best LR's progress; short of that it is
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
(it is always probed): the gate answers exactly "does training at this LR
make most of the progress the best LR makes, without diverging?".
``lr_range_edge`` warns when the good range touches the probed limits.
``lr_marginal`` (grid) warns when the recipe's LR passes as the lowest or
highest point of the good range: the edge of the range is where training
most often ends below the best (calibration: every LR the gate passed that
trained 10 points or more below the best was an edge point; no LR strictly
inside the range did).

Calibration (benchmarks/README.md): ``PROGRESS_SHARE``, the steps and the
sweep's range were chosen against real training runs of seven recipes at 25-29
LRs and 3 seeds each, then checked, unchanged, on held-out seeds and recipes;
the tables there give the agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.progress import SolverProgress, notify
from babysit.engine.solver import Callback, Divergence, Solver, resolve_batch_size
from babysit.errors import BabysitError
from babysit.validation import POSITIVE, POSITIVE_INT

DEFAULT_LR_MIN = 1e-7
DEFAULT_LR_MAX = 10.0
DEFAULT_PER_DECADE = 4
# a grid run lasts half the recipe's training (its low LRs catch up over a long
# run), within these bounds
STEPS_SHARE = 0.5
MIN_STEPS, MAX_STEPS = 20, 300
WALK_STRIDE = 2   # lattice points per step of the walk's outer phases (a half-decade)
DEFAULT_SWEEP_STEPS = 200
DEFAULT_EVAL_EXAMPLES = 500
PROGRESS_SHARE = 0.8
SWEEP_SMOOTHING = 0.9
SWEEP_SUGGESTION = 10.0         # suggested LR = LR at the smoothed minimum / this
SWEEP_RANGE = (100.0, 3.0)      # good range = that LR / these
VERDICTS = ("too_low", "good", "unstable", "too_high")

CHECKS = {
    "recipe_lr": ["lr_too_low", "lr_too_high", "lr_marginal", "loss_not_finite"],
    "probed_range": ["lr_range_edge"],
}


def same_lr(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def lattice_lr(k: int, per_decade: int, anchor: float = 1.0) -> float:
    """The ``k``-th point of the lattice ``anchor * 10 ** (k / per_decade)``, to 3 digits."""
    return float(f"{anchor * 10 ** (k / per_decade):.3g}")


def _fmt(lr: float) -> str:
    return f"{lr:.3g}"


@dataclass
class Trial:
    """One short run at one LR: the objective before and after, divergence, the verdict."""

    lr: float
    loss_start: float
    loss_end: float
    steps: int
    diverged_at: int | None = None   # the step whose mini-batch loss broke the rule
    verdict: str = ""

    @property
    def progress(self) -> float:
        """How far the objective fell (-inf for a diverged run: never the best)."""
        if self.diverged_at is not None or not math.isfinite(self.loss_end):
            return -math.inf
        return self.loss_start - self.loss_end

    def to_metrics(self) -> dict:
        return {"lr": self.lr, "verdict": self.verdict, "loss_start": self.loss_start,
                "loss_end": self.loss_end, "steps": self.steps, "diverged_at": self.diverged_at}


class Prober:
    """Trains fresh copies of a recipe's model at chosen LRs, all else equal."""

    def __init__(self, recipe, data, seed: int, steps: int, eval_examples: int,
                 sweep_steps: int = DEFAULT_SWEEP_STEPS, progress=None):
        self.recipe = recipe
        self.data = data
        self.seed = seed
        self.sweep_steps = sweep_steps
        self.optim = common.section_dict(recipe.optim)
        self.batch_size = common.section_dict(recipe.train).get("batch_size") or 100  # int or "full"
        self.steps = steps
        self.progress = progress
        self.X_eval, self.y_eval = common.subset(data.X_train, data.y_train, eval_examples,
                                                 common.stream(seed, "subset"))
        self.trials: dict[float, Trial] = {}
        self.start: float | None = None   # the objective at the initial weights

    def fresh(self):
        """The model at its initial weights and an optimizer with empty state.

        Every LR gets the same initial weights and, from the same shuffling
        stream, the same sequence of mini-batches (those ``train`` would use).
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

    def trial(self, lr: float) -> Trial:
        """The short run at ``lr`` (each LR runs once; later calls reuse it)."""
        for known, trial in self.trials.items():
            if same_lr(known, lr):
                return trial
        model, solver = self.fresh()
        if self.start is None:  # every run starts from the same weights: measure it once
            self.start = self.objective(model)
        start = self.start
        state = solver.run(self.data.X_train, self.data.y_train, steps=self.steps, lr=lr,
                           divergence=Divergence())
        end = self.objective(model) if not state.diverged else math.nan
        trial = Trial(lr, start, end, state.iteration, state.iteration if state.diverged else None)
        self.trials[lr] = trial
        # the walk's length is not known ahead: at least one more run per open side
        notify(self.progress, len(self.trials), len(self.trials) + 2, f"lr {lr:.3g}")
        return trial

    def sweep(self, lr_min: float, lr_max: float) -> list[dict]:
        """One run with exponentially growing LR; a point per step until divergence."""
        model, solver = self.fresh()
        lrs = np.geomspace(lr_min, lr_max, self.sweep_steps)
        watch = SmoothedSweep()
        steps = SolverProgress(self.progress, self.sweep_steps,
                               label=lambda state: f"range test: lr {state.lr:.3g}")
        solver.run(self.data.X_train, self.data.y_train, steps=self.sweep_steps,
                   lr=lambda state: float(lrs[state.iteration]), divergence=Divergence(),
                   callbacks=[watch, steps])
        return watch.points


class SmoothedSweep(Callback):
    """The range test's points: each step's LR, loss and the loss smoothed (EMA, bias-corrected)."""

    def __init__(self):
        self.points: list[dict] = []
        self.average = 0.0

    def on_step_end(self, state):
        loss = state.loss
        self.average = SWEEP_SMOOTHING * self.average + (1 - SWEEP_SMOOTHING) * loss
        smoothed = self.average / (1 - SWEEP_SMOOTHING ** state.iteration)
        self.points.append({"lr": state.lr, "loss": loss, "smoothed": smoothed})


# ---------------------------------------------------------------------------
# grid: the lattice walk


def judge_trials(trials: list[Trial]) -> Trial | None:
    """Give every trial its verdict against the best; the best trial (None when none progressed)."""
    best = max(trials, key=lambda t: (t.progress, -t.lr))
    if not best.progress > 0:
        best = None
    for trial in trials:
        if trial.diverged_at is not None or not math.isfinite(trial.loss_end):
            trial.verdict = "too_high"
        elif best is not None and trial.progress >= PROGRESS_SHARE * best.progress:
            trial.verdict = "good"
        else:
            trial.verdict = "too_low" if best is None or trial.lr < best.lr else "unstable"
    return best


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
    """Probe the lattice around the best LR (see the module doc); returns the best index.

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
             lr_max: float, per_decade: int):
    lattice = Lattice(recipe_lr, lr_min, lr_max, per_decade)
    recipe_trial = prober.trial(recipe_lr)
    if not math.isfinite(recipe_trial.loss_start):
        result.add("loss_not_finite", "fail",
                   f"the loss at init is {recipe_trial.loss_start}: no LR can be judged",
                   "run sanity-loss: the init or the data makes the loss blow up")
        judge_trials(list(prober.trials.values()))
        return None, None
    best_k = walk(prober, lattice)
    best = judge_trials(list(prober.trials.values()))
    run = good_lattice_run(prober, best_k, lattice) if best is not None else []
    good_range = [run[0].lr, run[-1].lr] if run else None
    suggested = (float(f"{math.sqrt(good_range[0] * good_range[1]):.3g}") if good_range else None)
    judge_recipe_lr(result, recipe_lr, recipe_trial, good_range, update, (lr_min, lr_max))
    if run:
        at_limit = (same_lr(run[0].lr, lattice.lr(lattice.lo)),
                    same_lr(run[-1].lr, lattice.lr(lattice.hi)))
        if recipe_trial.verdict == "good":
            warn_if_marginal(result, recipe_lr, good_range, suggested, at_limit)
        edge = "lowest" if at_limit[0] else "highest" if at_limit[1] else None
        if edge:
            result.add("lr_range_edge", "warn",
                       f"the good range reaches the {edge} LR probed: it may extend beyond it",
                       "widen the probe with --lr-min/--lr-max", None, good_range=good_range)
    return good_range, suggested


def warn_if_marginal(result, recipe_lr: float, good_range, suggested: float,
                     at_limit: tuple[bool, bool]) -> None:
    """``lr_marginal``: the recipe's (good) LR is the lowest or highest point of the
    good range. An end of the range at a probed limit (``at_limit``: low, high) is
    no edge: the range may go on beyond it (``lr_range_edge`` says so)."""
    lo, hi = good_range
    at_low = not at_limit[0] and (recipe_lr <= lo or same_lr(recipe_lr, lo))
    at_high = not at_limit[1] and (recipe_lr >= hi or same_lr(recipe_lr, hi))
    if not (at_low or at_high):
        return
    where = ("the only good LR" if at_low and at_high else
             "the lowest good LR" if at_low else "the highest good LR")
    result.add("lr_marginal", "warn",
               f"the recipe's LR {_fmt(recipe_lr)} passes as {where} (good range "
               f"{_fmt(lo)} .. {_fmt(hi)}): at the edge of the range training most often ends "
               "below the best LR's accuracy, and the verdict may flip with the seed",
               f"move optim.lr toward the middle of the range (suggested {_fmt(suggested)})", None,
               recipe_lr=recipe_lr, good_range=good_range, suggested_lr=suggested)


def judge_recipe_lr(result, recipe_lr: float, trial: Trial, good_range, update: str,
                    probed: tuple) -> None:
    """Fail unless the recipe's own run is good (see the module doc)."""
    if trial.verdict == "good":
        return
    range_text = (f"good range {_fmt(good_range[0])} .. {_fmt(good_range[1])} for {update}"
                  if good_range else f"no LR between {_fmt(probed[0])} and {_fmt(probed[1])} "
                  f"trained well with {update}")
    if trial.verdict == "too_high":
        why = (f"a mini-batch loss broke the divergence rule (NaN or over 3x the first) at "
               f"step {trial.diverged_at}: training at this LR diverges")
    elif trial.verdict == "unstable":
        why = "above the best LR, it makes less than {:.0%} of the best progress".format(PROGRESS_SHARE)
    else:
        why = ("in {} steps it makes less than {:.0%} of the best LR's progress".format(
            trial.steps, PROGRESS_SHARE) if good_range else "the loss barely moves")
    code = "lr_too_low" if trial.verdict == "too_low" else "lr_too_high"
    fix = (f"{'raise' if code == 'lr_too_low' else 'lower'} optim.lr into "
           f"{_fmt(good_range[0])} .. {_fmt(good_range[1])}" if good_range else
           "check the other diagnostics (sanity-loss, gradcheck, init-stats): when no LR "
           "works, the model or the data is broken, not the LR")
    result.add(code, "fail", f"the recipe's LR {_fmt(recipe_lr)}: {why} ({range_text})", fix, None,
               recipe_lr=recipe_lr, good_range=good_range, verdict=trial.verdict,
               progress=trial.progress if math.isfinite(trial.progress) else None)


# ---------------------------------------------------------------------------
# sweep


def run_sweep(result, prober: Prober, lr_min: float, lr_max: float, recipe_lr: float, update: str):
    points = prober.sweep(lr_min, lr_max)
    if not math.isfinite(points[0]["smoothed"]):
        result.add("loss_not_finite", "fail",
                   f"the loss at the first step is {points[0]['loss']}: no LR can be judged",
                   "run sanity-loss: the init or the data makes the loss blow up")
        return points, None, None
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
    judge_trials(list(prober.trials.values()))
    judge_recipe_lr(result, recipe_lr, recipe_trial, good_range, update, (lr_min, lr_max))
    if good_range is not None and len(points) == prober.sweep_steps and lowest is points[-1]:
        result.add("lr_range_edge", "warn",
                   f"the loss was still falling at the largest LR {_fmt(points[-1]['lr'])}: "
                   "the range test never reached divergence", "raise --lr-max", None,
                   best_lr=lowest["lr"])
    elif good_range is not None and good_range[0] <= points[0]["lr"]:
        result.add("lr_range_edge", "warn",
                   f"the good range starts below the first LR {_fmt(points[0]['lr'])}",
                   "lower --lr-min", None, best_lr=lowest["lr"])
    return points, good_range, suggested


# ---------------------------------------------------------------------------


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
    ``sweep`` (one row per step: lr, verdict, loss_start, loss_end (smoothed), loss).
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
    metrics = {"mode": mode, "update": update, "recipe_lr": recipe_lr, "steps": steps,
               "training_steps": training_steps(recipe, data),
               "batch_size": resolve_batch_size(prober.batch_size, len(data.X_train)),
               "reg_used": float(common.section_dict(recipe.model).get("reg") or 0.0)}
    if mode == "grid":
        good_range, suggested = run_grid(result, prober, recipe_lr, update, lr_min, lr_max, per_decade)
        trials = sorted(prober.trials.values(), key=lambda t: t.lr)
        metrics.update(good_range=good_range, suggested_lr=suggested,
                       trials=[t.to_metrics() for t in trials], lr_min=lr_min, lr_max=lr_max,
                       per_decade=per_decade, eval_examples=int(len(prober.X_eval)))
    else:
        points, good_range, suggested = run_sweep(result, prober, lr_min, lr_max, recipe_lr, update)
        start = points[0]["smoothed"]
        metrics.update(good_range=good_range, suggested_lr=suggested, lr_min=lr_min, lr_max=lr_max,
                       sweep_steps=sweep_steps,
                       sweep=[{"lr": p["lr"], "verdict": p["verdict"], "loss_start": start,
                               "loss_end": p["smoothed"], "loss": p["loss"]} for p in points],
                       trials=[t.to_metrics() for t in sorted(prober.trials.values(),
                                                              key=lambda t: t.lr)])
    result.metrics = metrics
    return result


__all__ = ["lr_probe", "Prober", "Trial", "VERDICTS", "CHECKS", "PROGRESS_SHARE", "same_lr",
           "lattice_lr", "training_steps"]
