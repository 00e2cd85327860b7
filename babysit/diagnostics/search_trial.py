"""One search trial: a short training run of the recipe with sampled overrides.

:func:`run_trial` is what every execution backend calls (in this process, in a
pool worker, on a Dask worker). It depends only on its :class:`Trial`, so a
trial gives the same numbers wherever it runs:

* the batches come from ``stream(trial.seed, "batches")``, ``trial.seed`` being
  derived from the search seed and the trial index (:func:`trial_seed`),
* the model starts from ``np.random.default_rng(trial.init_seed)``, the search
  seed: every trial of a search starts from the same initial weights (as every
  command does for one seed), so two trials differ by their hyperparameters
  and batch order, not by a lucky initialization -- common random numbers make
  small accuracy differences between nearby values meaningful,
* the data split is the recipe's own (the recipe seed is not touched), so every
  trial is scored on the same validation set.

BLAS runs single-threaded during a trial (:func:`single_thread_blas`): a
multi-threaded matrix product may round differently from a single-threaded one,
and the pool workers (and Dask's) run single-threaded anyway, so this is what
makes a trial give the same bits in this process, in a pool and on a cluster.

A trial is aborted as ``"diverged"`` by the training loop's divergence rule
(:class:`babysit.engine.solver.Divergence`, the rule of ``train``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from babysit.diagnostics.common import build, data_key, load, section_dict, stream, subset
from babysit.engine.solver import Callback, Divergence, Solver

# Train accuracy is measured on at most this many training examples (cheap and
# plenty to compare with the validation accuracy).
TRAIN_ACCURACY_EXAMPLES = 1000


@dataclass(frozen=True)
class Trial:
    """What a worker needs: the base recipe, the sampled overrides, seeds and the budget."""

    index: int
    stage: int
    seed: int  # batch order
    init_seed: int  # initial weights (the search seed)
    params: dict
    recipe: object  # babysit.recipes.Recipe (picklable)
    epochs: int


def trial_seed(search_seed: int, index: int) -> int:
    """The seed of trial ``index``: independent streams per trial, fixed by the search seed."""
    state = np.random.SeedSequence([int(search_seed), int(index)]).generate_state(1, np.uint32)
    return int(state[0])


# Datasets already loaded in this process, keyed by the data section: a pool or
# Dask worker runs many trials and should read and preprocess the data once.
_DATA_CACHE: dict = {}


def _data(recipe):
    key = data_key(recipe)
    data = _DATA_CACHE.get(key)
    if data is None:
        data = _DATA_CACHE[key] = load(recipe)
    return data


_BLAS_LOCK = threading.Lock()
_BLAS_STATE = {"users": 0, "limiter": None}


@contextlib.contextmanager
def single_thread_blas():
    """Limit BLAS to one thread while any trial of this process runs.

    Reference-counted, so concurrent trials on threads (a threaded Dask worker)
    never see the limit lifted under them. Uses threadpoolctl when it is
    installed; without it BLAS keeps its thread count and a trial run in this
    process may differ from a pool worker's in the last bits.
    """
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                _BLAS_STATE["limiter"] = None
            else:
                _BLAS_STATE["limiter"] = threadpool_limits(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0 and _BLAS_STATE["limiter"] is not None:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None


def run_trial(trial: Trial) -> dict:
    """Train ``trial.epochs`` epochs; return the trial record (see :func:`train_trial`)."""
    with single_thread_blas():
        return train_trial(trial)


def train_trial(trial: Trial) -> dict:
    """Train ``trial.epochs`` epochs; return the trial record (see ``search_store``).

    Keys: index, stage, seed, params, status ("ok" | "diverged"), val_accuracy and
    train_accuracy (None when diverged), final_loss (mean loss of the last epoch,
    or the loss that triggered the abort), epochs_run, seconds.
    """
    start_time = time.perf_counter()
    recipe = trial.recipe.with_overrides(dict(trial.params))
    data = _data(recipe)
    model = build(recipe, data, trial.init_seed)
    train = section_dict(recipe.train)
    solver = Solver(model, section_dict(recipe.optim), train.get("batch_size", 100),
                    stream(trial.seed, "batches"))
    X, y = data.X_train, data.y_train
    epoch_losses = EpochLosses()
    state = solver.run(X, y, epochs=trial.epochs, divergence=Divergence(), callbacks=[epoch_losses])
    if state.diverged:
        status, final_loss, epochs_run = "diverged", state.loss, state.epoch + 1
    else:
        status, final_loss, epochs_run = "ok", epoch_losses.last_mean, state.epoch

    record = {"index": trial.index, "stage": trial.stage, "seed": trial.seed,
              "params": dict(trial.params), "status": status, "val_accuracy": None,
              "train_accuracy": None, "final_loss": final_loss, "epochs_run": epochs_run}
    if status == "ok":
        X_sub, y_sub = subset(X, y, TRAIN_ACCURACY_EXAMPLES, stream(trial.seed, "subset"))
        record["train_accuracy"] = model.accuracy(X_sub, y_sub)
        record["val_accuracy"] = model.accuracy(data.X_val, data.y_val)
    record["seconds"] = time.perf_counter() - start_time
    return record


class EpochLosses(Callback):
    """The mean mini-batch loss of the last finished epoch."""

    def __init__(self):
        self.losses: list[float] = []
        self.last_mean = math.nan

    def on_step_end(self, state):
        self.losses.append(state.loss)

    def on_epoch_end(self, state):
        self.last_mean = float(np.mean(self.losses))
        self.losses = []
