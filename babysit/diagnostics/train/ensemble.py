"""Model ensembles (``train --ensemble N``) and checkpoint ensembles.

The lecture: "train multiple independent models; at test time average their
results" (typically a couple of percent better), and, for a single model,
averaging the predictions of its last checkpoints, or its parameters
(Polyak averaging, ``train.average``).

Members: member ``k`` trains the recipe with seed ``s + k`` for its initial
weights and its batch order, so member 0 is exactly the run ``train`` makes
for seed ``s``; every member trains on the data of seed ``s`` (one
validation split, so predictions average example by example). Each keeps its
last ``K`` epoch checkpoints (``--checkpoint-ensemble K``) and a Polyak
average of its parameters: the recipe's ``train.average``, or
``POLYAK_BETA`` when the recipe has none (the recipe stored in the run log
says which).

Averaging: a model's prediction is its class probabilities (the softmax of
its scores); an SVM has no probabilities, so SVM scores are averaged instead.
An ensemble predicts the argmax of the mean prediction. A member whose loss
diverged is left out.

The comparison (``result.metrics["ensemble"]``, also stored in the run log's
``/ensemble`` group with every member's final weights and last K epoch
checkpoints): validation accuracy of the ensemble of the members' final
weights; of the members' final weights (best member and mean); of their
Polyak averages and of their checkpoint ensembles (best and mean); and the
gain of the ensemble over the best and over the mean member, in points.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.train.trainer import TRAIN_EVAL_SIZE, Trainer, TrainingInterrupted
from babysit.engine.losses import softmax
from babysit.locks import claimed
from babysit.store import Checkpoint, Ensemble, EnsembleMember
from babysit.validation import POSITIVE_INT

DEFAULT_CHECKPOINTS = 5    # K: the last K epoch checkpoints form the checkpoint ensemble
POLYAK_BETA = 0.99         # the Polyak average compared when the recipe sets no train.average
MEMBER_HISTORY = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def predictions(model, X, batch_size: int = 1000) -> np.ndarray:
    """``(N, C)`` float64: test-mode class probabilities of ``model`` (SVM: its scores)."""
    out = []
    with np.errstate(all="ignore"):
        for start in range(0, len(X), batch_size):
            scores = np.asarray(model.forward(X[start:start + batch_size]), dtype=np.float64)
            out.append(scores if model.loss_fn.kind == "svm" else softmax(scores))
    return np.concatenate(out) if out else np.zeros((0, model.num_classes))


def ensemble_predictions(model, states, X, batch_size: int = 1000) -> np.ndarray:
    """The mean of :func:`predictions` over ``states`` (checkpoints: ``params`` and
    ``buffers``) loaded in turn into ``model``, whose own state is restored afterwards."""
    params, buffers = model.copy_params(), model.buffers()
    try:
        total = None
        for state in states:
            model.set_params(state.params)
            model.load_buffers(state.buffers)
            member = predictions(model, X, batch_size)
            total = member if total is None else total + member
        return total / len(states)
    finally:
        model.set_params(params)
        model.load_buffers(buffers)


def accuracy(mean_predictions, y) -> float:
    """Fraction of rows whose argmax is the label (NaN for no rows)."""
    if len(y) == 0:
        return math.nan
    return float(np.mean(np.argmax(mean_predictions, axis=1) == np.asarray(y)))


def _spread(values) -> dict:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return {"best": max(finite) if finite else math.nan,
            "mean": float(np.mean(finite)) if finite else math.nan}


def _points(a, b) -> float:
    return 100.0 * (a - b) if math.isfinite(a) and math.isfinite(b) else math.nan


class EnsembleRun:
    """Trains the members one after the other and compares the ensembles (see the module doc)."""

    def __init__(self, recipe, members: int, checkpoints: int = DEFAULT_CHECKPOINTS, seed=None,
                 out=None, progress=None, train_eval_size: int = TRAIN_EVAL_SIZE):
        self.count = POSITIVE_INT.check(members, "--ensemble")
        self.checkpoints = POSITIVE_INT.check(checkpoints, "--checkpoint-ensemble")
        recipe = common.seeded(recipe, seed)
        if recipe.train.average is None:
            recipe = recipe.with_overrides({"train.average": POLYAK_BETA})
        self.recipe, self.seed = recipe, recipe.seed
        self.progress = progress   # None: the members build no events either
        self.first = Trainer(recipe, out=out, progress=self._progress(0),
                             train_eval_size=train_eval_size, keep_last=self.checkpoints)
        self.train_eval_size = train_eval_size
        self.members: list[EnsembleMember] = []
        self.outputs: list[np.ndarray] = []   # each member's final validation predictions

    def _progress(self, index: int):
        """Member ``index``'s events as steps of the whole ensemble's run (None: nobody listens)."""
        if self.progress is None:
            return None

        def forward(event):
            self.progress(dataclasses.replace(
                event, iteration=event.iteration + index * event.iterations,
                iterations=event.iterations * self.count))
        return forward

    def member_trainer(self, index: int) -> Trainer:
        if index == 0:
            return self.first
        return Trainer(self.recipe, progress=self._progress(index), train_eval_size=self.train_eval_size,
                       member_seed=self.seed + index, data=self.first.data, persist=False,
                       keep_last=self.checkpoints)

    def run(self):
        """Train every member, then compare -> the first member's Result plus
        ``metrics["ensemble"]`` (and the failing findings of the other members).

        The run log is locked from the first member to the last save
        (:func:`babysit.locks.claimed`: a default name taken by a run of the same
        second moves on to ``-2``, ...)."""
        with claimed(self.first.path, default_name=self.first.path_chosen_here) as path:
            self.first.path, self.first.path_chosen_here = path, False   # its run re-enters the lock
            return self._run()

    def _run(self):
        result = None
        for index in range(self.count):
            trainer = self.member_trainer(index)
            try:
                outcome = trainer.run()
            except TrainingInterrupted as stop:
                self.save("interrupted", None)
                raise TrainingInterrupted(self.first.path, stop.epoch, stop.iteration,
                                          resumable=False) from None
            self.members.append(self.record(index, trainer, outcome))
            if index == 0:
                result = outcome
            else:
                for finding in outcome.findings:
                    if finding.severity == "fail":
                        finding.message = f"ensemble member {index} (seed {trainer.member_seed}): " \
                                          f"{finding.message}"
                        result.findings.append(finding)
        result.metrics["ensemble"] = self.comparison()
        self.save("diverged" if self.first.state.diverged else "finished", result)
        return result

    def record(self, index: int, trainer: Trainer, outcome) -> EnsembleMember:
        """The member's final state, last K checkpoints, history and accuracies."""
        X_val, y_val = trainer.validation()
        model, metrics = trainer.model, outcome.metrics
        diverged = trainer.state.diverged
        snapshots = dict(trainer.snapshots)
        self.outputs.append(None if diverged else predictions(model, X_val))
        checkpoint_accuracy = math.nan if diverged or not snapshots else accuracy(
            ensemble_predictions(model, list(snapshots.values()), X_val), y_val)
        attrs = {"seed": trainer.member_seed, "status": "diverged" if diverged else "finished",
                 "epochs_run": metrics["epochs_run"], "val_accuracy": metrics["val_accuracy"],
                 "best_val_accuracy": metrics["best_val_accuracy"],
                 "average_val_accuracy": metrics.get("average_val_accuracy", math.nan),
                 "checkpoint_val_accuracy": checkpoint_accuracy}
        history = {key: np.asarray(trainer.history.epoch.get(key, []), dtype=np.float64)
                   for key in MEMBER_HISTORY}
        return EnsembleMember(attrs=attrs, final=Checkpoint(params=model.copy_params(),
                                                            buffers=model.buffers()),
                              snapshots=snapshots, history=history)

    def comparison(self) -> dict:
        """The numbers of the comparison (see the module doc); accuracies in [0, 1]."""
        _, y_val = self.first.validation()
        used = [output for output in self.outputs if output is not None]
        ensemble = accuracy(sum(used) / len(used), y_val) if used else math.nan
        attrs = [member.attrs for member in self.members]
        single = _spread([a["val_accuracy"] for a in attrs if a["status"] == "finished"])
        best_member = max(range(len(attrs)), key=lambda k: _rank(attrs[k]))
        return {"members": self.count, "used": len(used), "seeds": [a["seed"] for a in attrs],
                "checkpoint_ensemble": self.checkpoints, "polyak_beta": self.recipe.train.average,
                "val_accuracy": ensemble, "best_member": best_member,
                "single": single, "polyak": _spread([a["average_val_accuracy"] for a in attrs]),
                "checkpoints": _spread([a["checkpoint_val_accuracy"] for a in attrs]),
                "gain_points": _points(ensemble, single["best"]),
                "gain_points_over_mean": _points(ensemble, single["mean"]),
                "per_member": [dict(a) for a in attrs]}

    def save(self, status: str, result) -> None:
        record = Ensemble(members=self.members,
                          attrs={"members": self.count, "checkpoint_ensemble": self.checkpoints,
                                 "polyak_beta": self.recipe.train.average, "status": status},
                          comparison=result.metrics["ensemble"] if result is not None else {})
        self.first.save(status, result=result, ensemble=record)


def _rank(attrs) -> float:
    value = attrs["val_accuracy"]
    return value if attrs["status"] == "finished" and math.isfinite(value) else -math.inf


def train_ensemble(recipe, members: int, checkpoints: int = DEFAULT_CHECKPOINTS, seed=None,
                   out=None, progress=None, train_eval_size: int = TRAIN_EVAL_SIZE):
    """Train ``members`` independent models of ``recipe`` and compare ensembles -> Result.

    The Result is member 0's (``train``'s findings and metrics) plus
    ``metrics["ensemble"]``: ``val_accuracy`` (the ensemble of the members'
    final weights), ``single``/``polyak``/``checkpoints`` (``{"best", "mean"}``
    over members), ``gain_points`` (ensemble minus best member, in points),
    ``gain_points_over_mean``, ``best_member``, ``seeds``, ``per_member``.
    The run log (``out``) stores every member (:class:`babysit.store.Ensemble`).
    Ctrl-C raises :class:`TrainingInterrupted` (not resumable) after saving the
    finished members.
    """
    return EnsembleRun(recipe, members, checkpoints, seed, out, progress, train_eval_size).run()


__all__ = ["train_ensemble", "EnsembleRun", "predictions", "ensemble_predictions", "accuracy",
           "DEFAULT_CHECKPOINTS", "POLYAK_BETA"]
