"""The short runs of lr-probe: fresh copies of a recipe's model trained at chosen LRs.

Every run trains the model exactly as ``babysit train`` starts it (the same
initial weights, the same mini-batches in the same order, the recipe's update
rule and L2 strength) at a constant LR, stopped by training's divergence rule.
A run is measured by its *progress*: how far the objective (data loss in test
mode + L2 term) on a fixed evaluation batch of training examples fell from the
start to the end of the run.

The prober keeps two runs alive after they end, the recipe's LR and the best
so far, so that :meth:`Prober.extend` can run them on for the long-run check
(:mod:`.verdicts`) without starting again: a run continued from step ``n`` to
``m`` takes exactly the steps a run of ``m`` steps takes (the Solver
continues a stopped ``LoopState`` where it was, as ``train --resume`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.progress import SolverProgress, notify
from babysit.engine.solver import Callback, Divergence, LoopState, Solver, resolve_batch_size

DEFAULT_SWEEP_STEPS = 200
DEFAULT_EVAL_EXAMPLES = 500
SWEEP_SMOOTHING = 0.9


def same_lr(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


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

    def ranking(self) -> tuple:
        """The order of "best": the most progress, then the lower LR."""
        return (self.progress, -self.lr)

    def to_metrics(self) -> dict:
        return {"lr": self.lr, "verdict": self.verdict, "loss_start": self.loss_start,
                "loss_end": self.loss_end, "steps": self.steps, "diverged_at": self.diverged_at}


@dataclass
class LiveRun:
    """A finished short run that can be run on: its model, solver, loop state and rule."""

    model: object
    solver: Solver
    state: LoopState
    divergence: Divergence


class ShortRuns:
    """Short runs by LR, each LR run once: :meth:`trial` makes it (:meth:`run_short`)
    the first time and returns the same :class:`Trial` after; :meth:`extend` runs a
    kept one on. :class:`Prober` trains; calibration's replay reads recorded runs."""

    def __init__(self, steps: int):
        self.steps = steps
        self.trials: dict[float, Trial] = {}

    def known(self, lr: float) -> Trial | None:
        return next((t for known, t in self.trials.items() if same_lr(known, lr)), None)

    def trial(self, lr: float) -> Trial:
        """The short run at ``lr`` (each LR runs once; later calls reuse it)."""
        known = self.known(lr)
        if known is None:
            known = self.trials[lr] = self.run_short(lr)
        return known

    def run_short(self, lr: float) -> Trial:
        raise NotImplementedError

    def extend(self, trial: Trial, steps: int) -> Trial:
        """``trial``'s run continued to ``steps`` steps in all: the long run."""
        raise NotImplementedError


class Prober(ShortRuns):
    """Trains fresh copies of a recipe's model at chosen LRs, all else equal."""

    def __init__(self, recipe, data, seed: int, steps: int, eval_examples: int,
                 sweep_steps: int = DEFAULT_SWEEP_STEPS, progress=None):
        super().__init__(steps)
        self.recipe = recipe
        self.data = data
        self.seed = seed
        self.sweep_steps = sweep_steps
        self.optim = common.section_dict(recipe.optim)
        self.recipe_lr = float(self.optim.get("lr"))
        self.batch_size = common.section_dict(recipe.train).get("batch_size") or 100  # int or "full"
        self.progress = progress
        self.X_eval, self.y_eval = common.subset(data.X_train, data.y_train, eval_examples,
                                                 common.stream(seed, "subset"))
        self.start: float | None = None   # the objective at the initial weights
        self.live: dict[float, LiveRun] = {}   # the recipe's run and the best so far

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

    def run_short(self, lr: float) -> Trial:
        model, solver = self.fresh()
        if self.start is None:  # every run starts from the same weights: measure it once
            self.start = self.objective(model)
        divergence = Divergence()
        state = solver.run(self.data.X_train, self.data.y_train, steps=self.steps, lr=lr,
                           divergence=divergence)
        trial = self.ended(lr, model, state)
        self.keep_if_needed(trial, LiveRun(model, solver, state, divergence))
        # the walk's length is not known ahead: at least one more run per open side
        notify(self.progress, len(self.trials) + 1, len(self.trials) + 3, f"lr {lr:.3g}")
        return trial

    def ended(self, lr: float, model, state: LoopState) -> Trial:
        """The trial of a run at ``lr`` that stopped in ``state`` (diverged or not)."""
        end = self.objective(model) if not state.diverged else math.nan
        return Trial(lr, self.start, end, state.iteration, state.iteration if state.diverged else None)

    def keep_if_needed(self, trial: Trial, run: LiveRun) -> None:
        """Keep the recipe's run and the best run so far alive (the long-run check's two)."""
        best = max(self.trials.values(), key=Trial.ranking, default=None)
        if same_lr(trial.lr, self.recipe_lr):
            self.live[trial.lr] = run
        elif best is None or trial.ranking() > best.ranking():
            for lr in [lr for lr in self.live if not same_lr(lr, self.recipe_lr)]:
                del self.live[lr]
            self.live[trial.lr] = run

    def extend(self, trial: Trial, steps: int) -> Trial:
        """``trial``'s run (a kept one) continued to ``steps`` steps in all: the long run."""
        if trial.diverged_at is not None:
            return trial
        run = next(run for lr, run in self.live.items() if same_lr(lr, trial.lr))
        notify(self.progress, len(self.trials), len(self.trials) + 1,
               f"lr {trial.lr:.3g}: on to {steps} steps")
        state = run.solver.run(self.data.X_train, self.data.y_train, steps=steps, lr=trial.lr,
                               divergence=run.divergence, state=run.state)
        return self.ended(trial.lr, run.model, state)

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


__all__ = ["Prober", "ShortRuns", "Trial", "LiveRun", "SmoothedSweep", "same_lr", "DEFAULT_SWEEP_STEPS",
           "DEFAULT_EVAL_EXAMPLES", "SWEEP_SMOOTHING"]
