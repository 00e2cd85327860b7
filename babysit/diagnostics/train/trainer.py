"""train: mini-batch training with monitors, HDF5 run log, checkpoints and exact resume.

The loop is the engine's (:meth:`babysit.engine.solver.Solver.run`: the
recipe's optimizer, schedule, epochs and batch size, and its divergence rule).
What ``train`` adds rides on it as callbacks, each with one job:

* :class:`Monitor`: the history (loss and LR per step; per epoch: train
  accuracy on a fixed subset of the training set, validation loss and
  accuracy), update/weight ratios and gradient norms over each epoch's last
  step, and per-layer statistics (dead ReLUs, saturation, mean/std) of a
  recorded pass over the subset (:mod:`babysit.diagnostics.monitors`);
* :class:`Checkpointer`: ``last`` at every epoch end, ``best`` on validation
  accuracy, and the run log (:class:`babysit.store.RunLog`), rewritten
  atomically at the end of the first epoch, then at epoch ends at most every
  ``SAVE_INTERVAL`` seconds, and at the end;
* :class:`Progress`: events for a live display;
* :class:`StopOnSignal`: SIGINT/SIGTERM let the step in progress finish, save
  ``last`` at that step and raise :class:`TrainingInterrupted` (the CLI exits 130).

A loss that diverges (``loss_diverged``) stops the run. At the end come the
curve diagnosis and the monitor findings (:mod:`babysit.diagnostics.train.verdicts`).

Resuming restores parameters, buffers (batchnorm running statistics),
optimizer state, parameter average, the shuffling generator (as of the start
of the epoch in progress, plus the number of batches already done) and the
dropout generators, so 2 epochs + resume to 4 ends with the same bits as 4 epochs
(:mod:`babysit.diagnostics.train.resume`: the log is checked before any step).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from babysit.atomic import check_target, file_stem
from babysit.diagnostics import common
from babysit.diagnostics.monitors import model_layer_stats, param_grad_norms, update_ratios
from babysit.diagnostics.result import Finding
from babysit.diagnostics.train.history import History
from babysit.diagnostics.train.verdicts import CHECKS, history_findings
from babysit.engine.solver import Callback, Divergence, LoopState, Solver, evaluate
from babysit.diagnostics.train.resume import RESUME_USE, restore
from babysit.errors import BabysitError, Interrupted
from babysit.interrupts import Deferred
from babysit.locks import claimed
from babysit.store import Checkpoint, RunLog, read_run_log, rng_state_json
from babysit.validation import POSITIVE_INT

SAVE_INTERVAL = 5.0   # seconds between run-log rewrites at epoch ends (always at the end,
                      # on interruption and on divergence)
TRAIN_EVAL_SIZE = 1000


class TrainingInterrupted(Interrupted):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint (``resumable``
    False: an ensemble run, whose log keeps the finished members but cannot resume)."""

    def __init__(self, run_log: Path | None, epoch: int, iteration: int, resumable: bool = True):
        super().__init__(f"interrupted at epoch {epoch}, iteration {iteration}; "
                         f"checkpoint saved to {run_log}")
        self.run_log, self.epoch, self.iteration = run_log, epoch, iteration
        self.resumable = resumable


@dataclass
class ProgressEvent:
    """What a progress callback receives: ``kind`` is start, iteration, epoch or end.

    ``epoch`` counts from 1 (the epoch in progress); ``iteration`` is the
    number of steps taken so far in the whole run.
    """

    kind: str
    epoch: int
    epochs: int
    iteration: int
    iterations: int
    lr: float
    loss: float | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None


class StopRequests(Deferred):
    """While active, SIGINT/SIGTERM ask the loop to stop after the current step.

    Stopping mid-step would leave half-updated parameters, so the handler only
    records the request (``requested``); a second Ctrl-C stops at once.
    """

    def __init__(self):
        super().__init__(second_ctrl_c_stops=True)


def weight_norms(model) -> dict:
    """``{weight: ||W||}`` of the regularized weights (what the L2 term shrinks)."""
    norms = {}
    for name in model.weight_names:
        w = np.asarray(model.params[name], dtype=np.float64)
        norms[name] = float(np.sqrt(np.vdot(w, w)))
    return norms


def default_run_path(recipe) -> Path:
    """``runs/<name>-<time>.h5``, the recipe name made safe as a file name (never outside runs/)."""
    return Path("runs") / f"{file_stem(recipe.name)}-{time.strftime('%Y%m%d-%H%M%S')}.h5"


# ---------------------------------------------------------------------------
# the callbacks


class Monitor(Callback):
    """Records the history: every step's loss and LR, every epoch's metrics and monitors."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.before = None            # weights before an epoch's last step
        self.monitors: dict = {}
        self.first_iteration = 0      # the epoch's first step in the history

    def on_epoch_start(self, state):
        self.first_iteration = state.iteration - state.batch
        self.monitors = {"update_ratio": {}, "grad_norm": {}}

    def on_step_start(self, state):
        if state.last_in_epoch:
            model = self.trainer.model
            self.before = {n: model.params[n].copy() for n in model.weight_names}

    def on_step_end(self, state):
        self.trainer.history.add_iteration(state.loss, state.lr)
        if self.before is not None:
            model = self.trainer.model
            with np.errstate(over="ignore", invalid="ignore"):
                self.monitors["grad_norm"] = param_grad_norms(model)
                self.monitors["update_ratio"] = update_ratios(self.before, model.params)
            self.before = None

    def on_epoch_end(self, state):
        trainer, model = self.trainer, self.trainer.model
        with model.recording():  # a test-mode pass: layer statistics, no gradients
            _, train_accuracy = evaluate(model, trainer.X_eval, trainer.y_eval,
                                         batch_size=len(trainer.X_eval))
            with np.errstate(all="ignore"):
                layers = model_layer_stats(model)
        val_loss, val_accuracy = evaluate(model, *trainer.validation())
        epoch_losses = trainer.history.loss[self.first_iteration:state.iteration]
        metrics = {"epoch": state.epoch, "lr": state.lr, "train_loss": float(np.mean(epoch_losses)),
                   "train_accuracy": train_accuracy, "val_loss": val_loss,
                   "val_accuracy": val_accuracy, "reg_loss": float(model.reg_loss()[0])}
        self.monitors["weight_norm"] = weight_norms(model)
        trainer.history.add_epoch(metrics, self.monitors, layers)


class Checkpointer(Callback):
    """Keeps ``last`` and ``best`` and rewrites the run log (at most every SAVE_INTERVAL s)."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer

    def on_epoch_end(self, state):
        trainer = self.trainer
        trainer.last = trainer.checkpoint()
        val_accuracy = trainer.history.last("val_accuracy")
        score = val_accuracy if math.isfinite(val_accuracy) else trainer.history.last("train_accuracy")
        if trainer.best is None or score > trainer.best.attrs.get("score", -math.inf):
            trainer.best = Checkpoint(params=trainer.last.params, buffers=trainer.last.buffers,
                                      attrs={"epoch": state.epoch, "score": score,
                                             "val_accuracy": val_accuracy})
        if trainer.snapshots is not None:   # a checkpoint ensemble's members
            trainer.snapshots.append((state.epoch, Checkpoint(params=trainer.last.params,
                                                              buffers=trainer.last.buffers)))
        # Rewriting the whole log costs more than a short epoch: at most every
        # SAVE_INTERVAL seconds (the content of the final log does not depend on it).
        if trainer.saved_at is None or time.monotonic() - trainer.saved_at >= SAVE_INTERVAL:
            trainer.save("running")


class Progress(Callback):
    """Turns the loop's steps and epochs into :class:`ProgressEvent`s."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer

    def on_step_end(self, state):
        self.trainer.event("iteration", state.lr, state.loss)

    def on_epoch_end(self, state):
        self.trainer.event("epoch", state.lr, self.trainer.history.last("train_loss"))


class StopOnSignal(Callback):
    """Saves ``last`` and raises TrainingInterrupted once SIGINT/SIGTERM was requested."""

    def __init__(self, trainer: "Trainer", requests: StopRequests):
        self.trainer, self.requests = trainer, requests

    def on_step_end(self, state):
        # the epoch's last step ends the epoch first (its checkpoint is the clean one)
        if self.requests.requested is not None and not state.diverged and state.batch < state.batches:
            self.trainer.interrupt()

    def on_epoch_end(self, state):
        if self.requests.requested is not None:
            self.trainer.interrupt()


# ---------------------------------------------------------------------------
# the run


class Trainer:
    """One training run of a recipe, resumable; :meth:`run` returns the Result.

    For ensembles (:mod:`babysit.diagnostics.train.ensemble`): ``member_seed``
    (default: the recipe seed) seeds the initial weights and the batch order
    while the recipe seed keeps the data split; ``data`` reuses loaded data;
    ``persist=False`` writes no file; ``keep_last=K`` keeps the last K epoch
    checkpoints in ``snapshots`` (``(epoch, Checkpoint)`` pairs).
    """

    def __init__(self, recipe, seed=None, out=None, resume=None,
                 progress: Callable | None = None, train_eval_size: int = TRAIN_EVAL_SIZE, *,
                 member_seed: int | None = None, data=None, persist: bool = True, keep_last: int = 0):
        self.recipe = common.seeded(recipe, seed)
        self.seed = self.recipe.seed
        self.member_seed = self.seed if member_seed is None else int(member_seed)
        self.persist = persist
        self.snapshots = deque(maxlen=keep_last) if keep_last else None
        self.progress = progress   # None: nobody listens (no event is built)
        self.data = data if data is not None else common.load(self.recipe)
        self.model = common.build(self.recipe, self.data, self.member_seed)
        train = self.recipe.train
        self.epochs = int(train.epochs)
        self.solver = Solver(self.model, self.recipe.optim.to_dict(), train.batch_size,
                             common.stream(self.member_seed, "batches"), average=train.average)
        self.X_eval, self.y_eval = common.subset(
            self.data.X_train, self.data.y_train,
            POSITIVE_INT.check(train_eval_size, "train eval size"), common.stream(self.seed, "subset"))
        self.history = History()
        self.state = LoopState()
        self.divergence = Divergence()
        self.best = None               # Checkpoint
        self.last = None               # Checkpoint of the last finished epoch
        self.recipe_yaml = self.recipe.to_yaml()
        self.saved_at = None           # time.monotonic() of the last save
        if resume is not None:
            restore(self, read_run_log(resume, RESUME_USE))
        self.path = Path(out) if out is not None else (
            Path(resume) if resume is not None else default_run_path(self.recipe))
        self.path_chosen_here = out is None and resume is None   # see _claimed_log
        # fail now, not when the first epoch's checkpoint is written (a default name that
        # is taken moves on instead, see _claimed_log)
        if persist and not self.path_chosen_here:
            if self.path.is_dir():
                raise BabysitError(f"cannot write the run log to {self.path}: it is a directory; "
                                   f"give a file name such as {self.path / 'run.h5'}")
            check_target(self.path, stream_ok=False)   # /dev/null, a FIFO: refused before any work

    @property
    def line_search(self) -> bool:
        """The optimizer picks its own steps (L-BFGS): the LR-based checks do not apply."""
        return bool(getattr(self.solver.optimizer, "needs_closure", False))

    @property
    def iterations_per_epoch(self) -> int:
        return self.solver.batches_per_epoch(len(self.data.X_train))

    # -- checkpoints -------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The resumable state right now (after ``state.iteration`` steps)."""
        state = self.state
        # the shuffling generator from which the epoch in progress draws its batches
        # (before the first epoch: the generator as it stands)
        shuffling = state.epoch_rng if state.epoch_rng is not None else self.solver.rng.bit_generator.state
        attrs = {"epoch": state.epoch, "iteration": state.iteration,
                 "batch_in_epoch": state.batch, "rng_batches": rng_state_json(shuffling)}
        for name, text in self.model.random_state().items():
            attrs[f"rng_layer:{name}"] = text
        average = self.solver.average
        return Checkpoint(params=self.model.copy_params(), buffers=self.model.buffers(),
                          attrs=attrs, optimizer=self.solver.optimizer.state_dict(),
                          average=average.state_dict() if average is not None else None)

    def save(self, status: str, last: Checkpoint | None = None, result=None,
             ensemble=None) -> Path | None:
        if not self.persist:
            return None
        checkpoints = {"last": last or self.last, "best": self.best}
        if self.solver.average is not None:
            checkpoints["average"] = Checkpoint(params={k: v.copy() for k, v in
                                                        self.solver.average.params.items()},
                                                buffers=self.model.buffers())
        attrs = {"name": self.recipe.name, "seed": self.seed, "status": status,
                 "epochs": self.epochs, "epochs_run": self.history.epochs,
                 "iterations": self.state.iteration, "start_loss": self.divergence.reference,
                 "iterations_per_epoch": self.iterations_per_epoch,
                 "num_classes": self.data.num_classes, "reg": self.model.reg,
                 "line_search": self.line_search,
                 "recipe_path": common.recipe_label(self.recipe) or "",
                 "recipe_base_dir": self.recipe.data.base_dir or ""}
        log = RunLog(recipe_yaml=self.recipe_yaml, attrs=attrs, history=self.history.to_tree(),
                     checkpoints=checkpoints, result=result.to_dict() if result is not None else None,
                     ensemble=ensemble)
        path = log.save(self.path)
        self.saved_at = time.monotonic()
        return path

    def interrupt(self):
        path = self.save("interrupted", last=self.checkpoint())
        state = self.state
        raise TrainingInterrupted(path, state.epoch + (1 if state.batch else 0), state.iteration,
                                  resumable=self.persist)

    # -- the loop --------------------------------------------------------------
    def event(self, kind: str, lr: float, loss=None) -> None:
        if self.progress is None:   # every step calls this: a small net's step is a millisecond
            return
        state = self.state
        self.progress(ProgressEvent(
            kind, min(state.epoch + 1, self.epochs), self.epochs, state.iteration,
            self.iterations_per_epoch * self.epochs, lr, loss,
            self.history.last("train_accuracy", None), self.history.last("val_accuracy", None)))

    def validation(self):
        """The validation split (0 rows when the recipe's val_fraction is 0: never None)."""
        return self.data.X_val, self.data.y_val

    def run(self):
        """Train to ``train.epochs`` (from where a resumed log left off) -> Result.

        The run log is locked for the whole run (:func:`babysit.locks.claimed`):
        a second writer of the same file fails with OutputLocked (exit 2).
        """
        if not self.persist:  # writes no file, locks none
            return self._run()
        with self._claimed_log():
            return self._run()

    @contextlib.contextmanager
    def _claimed_log(self):
        """Hold the run log's lock (:func:`babysit.locks.claimed`): a default name moves
        on to ``-2``, ``-3`` ... when a run of the same second holds or wrote it."""
        with claimed(self.path, default_name=self.path_chosen_here) as self.path:
            yield

    def _run(self):
        result = common.new_result("train", self.recipe, self.seed, CHECKS)
        if self.last is None:
            self.last = self.checkpoint()  # the initial state, for a log saved before epoch 1 ends
        if not self.history.initial:
            self.history.initial["weight_norm"] = weight_norms(self.model)
        self.event("start", self.solver.lr_at(self.state.epoch))
        with StopRequests() as requests:
            self.solver.run(self.data.X_train, self.data.y_train, epochs=self.epochs,
                            divergence=self.divergence, state=self.state,
                            callbacks=[Monitor(self), Checkpointer(self), Progress(self),
                                       StopOnSignal(self, requests)])
        status = "diverged" if self.state.diverged else "finished"
        result.findings.extend(self.findings())
        result.metrics.update(self.metrics())
        self.save(status, result=result)
        self.event("end", self.solver.lr_at(max(self.state.epoch - 1, 0)))
        return result

    # -- verdicts ------------------------------------------------------------
    def diverged_finding(self) -> Finding:
        state, lr = self.state, self.state.lr
        return Finding(
            "loss_diverged", "fail",
            f"{self.divergence.describe(state.loss)} at iteration {state.iteration} "
            f"(epoch {state.epoch + 1}); training stopped",
            f"the learning rate {lr:g} is too high: lower it (try {lr / 10:g}) or run `babysit lr-probe`",
            None, {"iteration": state.iteration, "epoch": state.epoch + 1, "loss": state.loss,
                   "start_loss": self.divergence.reference, "lr": lr})

    def findings(self) -> list[Finding]:
        if self.state.diverged:
            return [self.diverged_finding()]
        return history_findings(self.history, self.model.layer_of, 1.0 / self.data.num_classes,
                                self.model.reg, self.line_search)

    def metrics(self) -> dict:
        history = self.history
        metrics = {"epochs_run": history.epochs,
                   "iterations": self.state.iteration,
                   "diverged": bool(self.state.diverged),
                   "final_loss": (history.loss[-1] if self.state.diverged
                                  else history.last("train_loss")),
                   "train_accuracy": history.last("train_accuracy"),
                   "val_accuracy": history.last("val_accuracy"),
                   "best_val_accuracy": self.best.attrs.get("val_accuracy") if self.best else None,
                   "best_epoch": self.best.attrs.get("epoch") if self.best else None,
                   "run_log": str(self.path)}
        average = self.solver.average
        if average is not None and history.epochs:
            current = self.model.copy_params()
            self.model.set_params(average.params)
            metrics["average_val_accuracy"] = evaluate(self.model, *self.validation())[1]
            self.model.set_params(current)
        if self.solver.optimizer.full_batch:   # L-BFGS: whether it reached its convergence test
            metrics["converged"] = bool(self.solver.optimizer.converged)
        return metrics


def train(recipe, seed=None, out=None, resume=None, progress: Callable | None = None,
          train_eval_size: int = TRAIN_EVAL_SIZE):
    """Train ``recipe`` and diagnose the run -> Result (see :class:`Trainer`).

    ``out``: the run log (default ``runs/<name>-<time>.h5``, or ``resume``'s
    file when resuming). ``resume``: a run log to continue; ``recipe`` should
    be its stored recipe (``RunLog.recipe_yaml``) with any overrides, e.g. more
    epochs. ``progress(ProgressEvent)`` is called at the start, after every
    step and every epoch, and at the end. Raises :class:`TrainingInterrupted`
    (after saving) on SIGINT/SIGTERM.

    Metrics: epochs_run, iterations, final_loss (mean training loss of the last
    epoch), train_accuracy (on a fixed subset of ``train_eval_size`` training
    examples), val_accuracy, best_val_accuracy, best_epoch, run_log,
    average_val_accuracy when ``train.average`` is set, and converged for a
    full-batch optimizer (L-BFGS). Ensembles: :func:`train_ensemble`.
    """
    return Trainer(recipe, seed, out, resume, progress, train_eval_size).run()


__all__ = ["train", "Trainer", "TrainingInterrupted", "ProgressEvent",
           "StopRequests", "default_run_path"]
