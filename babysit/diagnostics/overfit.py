"""overfit-tiny: a healthy model and optimizer must memorize a handful of examples.

The lecture's second sanity check: with regularization off and dropout off,
train on ``examples`` training examples (default 20) until train accuracy is
1.0 and the loss is near zero. The recipe's optimizer and learning rate are
used at a constant rate (its decay schedule is written for full-data epochs);
each epoch is one pass over the tiny set in the recipe's batch size.

The question is the model's (can it memorize? are its gradients right?),
not the learning rate's: lr-probe judges the LR for the real training. So
when the recipe's LR has not memorized the set within ``max_epochs`` and the
loss did not blow up, the check tries again from the same init at
``RETRY_FACTOR`` (10x) the LR, up to ``RETRIES`` times: a model that memorizes
at a larger LR passes (the LR that did it is in the metrics). Without this,
a slow but sound LR (Adam at 1e-3 on overlapping blobs) failed here with
"raise the learning rate" while lr-probe passed the same LR as good.

The tiny set never holds identical inputs with different labels: the
generators and real data sets have some (every arm of the spiral starts at the
origin), no model can fit them, and they would fail a healthy model, so such
examples are swapped for others (``metrics.left_out``).

Passes when train accuracy reaches 1.0 and the loss falls below
``LOSS_NEAR_ZERO`` times its initial value. On failure, ``cannot_overfit``
says why, with evidence (from the attempt at the recipe's LR):

* the loss became NaN/inf -> the learning rate is too high;
* identical inputs carry different labels -> a data problem (only when the
  training set has nothing else to choose);
* the loss stayed flat (fell by less than ``FLAT_DROP`` of its start) at every
  LR tried -> the learning rate is too low, or units are dead (dead ReLU
  fractions attached);
* it fell further with every larger LR tried (in all by more than
  ``FLAT_DROP`` of its start) but never memorized -> the learning rate is far
  too low;
* more than ``DEAD_UNITS`` of a ReLU layer never fires on the tiny set -> dead
  units (bias/init);
* otherwise it did not memorize at any LR tried -> capacity or a wrong gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.monitors import model_layer_stats
from babysit.diagnostics.progress import SolverProgress
from babysit.engine.solver import Callback, Divergence, Solver, evaluate
from babysit.validation import POSITIVE_INT

LOSS_NEAR_ZERO = 0.05
FLAT_DROP = 0.01
DEAD_UNITS = 0.40      # a ReLU layer with more dead units than this explains a failure
DEFAULT_EXAMPLES = 20
DEFAULT_MAX_EPOCHS = 500
RETRY_FACTOR = 10.0
RETRIES = 2

CHECKS = {"overfit": ["cannot_overfit"]}


def tiny_recipe(recipe):
    """The recipe with L2 off and every dropout layer keeping all units."""
    overrides = {"model.reg": 0.0}
    if getattr(recipe.model, "torch", None):   # a torch model: its dropout modules off
        overrides["model.dropout"] = False
    for index, layer in enumerate(recipe.model.layers):
        if layer.kind == "dropout":
            overrides[f"model.layers.{index}.dropout.keep"] = 1.0
    return recipe.with_overrides(overrides)


def conflicting_duplicates(X, y) -> list[list[int]]:
    """Groups of example indexes with identical inputs but more than one label."""
    flat = np.ascontiguousarray(np.asarray(X).reshape(len(X), -1))
    _, group = np.unique(flat, axis=0, return_inverse=True)
    group = group.reshape(-1)
    pairs = np.unique(np.stack([group, np.asarray(y)], axis=1), axis=0)
    labels_per_group = np.bincount(pairs[:, 0], minlength=group.max() + 1 if len(group) else 0)
    bad_groups = np.flatnonzero(labels_per_group > 1)
    return [np.flatnonzero(group == g).tolist() for g in bad_groups]


def dead_fractions(model, X) -> dict:
    """Dead ReLU fraction per layer on ``X`` (test mode)."""
    with model.recording(), np.errstate(all="ignore"):
        model.forward(X)
        stats = model_layer_stats(model)
    return {s.layer: s.dead for s in stats if s.dead is not None}


class UntilMemorized(Callback):
    """After every epoch, scores the tiny set; stops once it is memorized or the loss blew up."""

    def __init__(self, model, X, y, loss, accuracy, target):
        self.model, self.X, self.y = model, X, y
        self.loss, self.accuracy, self.target = loss, accuracy, target
        self.blew_up = None

    def on_epoch_end(self, state):
        self.loss, self.accuracy = evaluate(self.model, self.X, self.y, batch_size=len(self.X))
        if not math.isfinite(self.loss):
            self.blew_up = (state.epoch, self.loss)
            return True
        return self.accuracy == 1.0 and self.loss <= self.target


@dataclass
class Attempt:
    """One training run on the tiny set at one learning rate."""

    lr: float
    model: object
    initial_loss: float
    loss: float
    accuracy: float
    target: float
    epochs_run: int
    blew_up: tuple | None

    @property
    def memorized(self) -> bool:
        return self.blew_up is None and self.accuracy == 1.0 and self.loss <= self.target

    def to_metrics(self) -> dict:
        return {"lr": self.lr, "epochs_run": self.epochs_run, "final_loss": self.loss,
                "train_accuracy": self.accuracy, "memorized": self.memorized}


def attempt(tiny, data, X, y, seed: int, lr: float, max_epochs: int, progress=None) -> Attempt:
    """Train a fresh model (the seed's init) on ``(X, y)`` at ``lr`` until memorized."""
    model = common.build(tiny, data, seed)
    # a batch size above len(X) (or "full") draws the same one shuffled batch as len(X) does
    solver = Solver(model, tiny.optim.to_dict(), tiny.train.batch_size, common.stream(seed, "batches"))
    initial_loss, accuracy = evaluate(model, X, y, batch_size=len(X))
    target = LOSS_NEAR_ZERO * initial_loss
    watch = UntilMemorized(model, X, y, initial_loss, accuracy, target)
    # Only a non-finite step loss counts as blowing up here: a memorizing run
    # may pass through losses above its start.
    epochs = SolverProgress(progress, max_epochs, per="epoch",
                            label=lambda state: f"lr {lr:g}, epoch {state.epoch}: loss "
                                                f"{watch.loss:.3g}, accuracy {watch.accuracy:.0%}",
                            values=lambda state: {"loss": watch.loss, "accuracy": watch.accuracy})
    state = solver.run(X, y, epochs=max_epochs, lr=lr, divergence=Divergence(math.inf),
                       callbacks=[watch, epochs])
    if state.diverged:
        blew_up, loss, epochs_run = (state.epoch + 1, state.loss), state.loss, state.epoch + 1
    else:
        blew_up, loss, epochs_run = watch.blew_up, watch.loss, state.epoch
    # on a blow-up mid-epoch the accuracy is the last one measured
    return Attempt(lr, model, initial_loss, loss, watch.accuracy, target, epochs_run, blew_up)


def tiny_set(data, examples: int, seed: int):
    """``examples`` training examples, none an identical input with another label.

    ``(X, y, left_out)``: the draw of ``common.subset``; members of conflicting
    groups are swapped for the next examples of a fixed shuffle of the rest.
    ``left_out`` lists the training indexes swapped out.
    """
    rng = common.stream(seed, "subset")
    X_all, y_all = data.X_train, data.y_train
    index = common.subset_index(len(X_all), examples, rng)
    if index is None:
        return X_all, y_all, []
    conflicts = conflicting_duplicates(X_all[index], y_all[index])
    if not conflicts:
        return X_all[index], y_all[index], []
    bad = {int(index[i]) for group in conflicts for i in group}
    keep = [int(i) for i in index if int(i) not in bad]
    chosen = set(index.tolist())
    spare = [int(i) for i in rng.permutation(len(X_all)) if int(i) not in chosen]
    for candidate in spare:
        if len(keep) == examples:
            break
        if not conflicting_duplicates(X_all[keep + [candidate]], y_all[keep + [candidate]]):
            keep.append(candidate)
    keep = np.sort(np.asarray(keep, dtype=np.int64))
    return X_all[keep], y_all[keep], sorted(bad)


def overfit_tiny(recipe, seed=None, examples: int = DEFAULT_EXAMPLES,
                 max_epochs: int = DEFAULT_MAX_EPOCHS, progress=None):
    """Train on ``examples`` training examples with reg 0 and no dropout -> Result.

    ``progress`` (optional) gets a :class:`babysit.diagnostics.progress.Step` per
    epoch, with the tiny set's ``loss`` and ``accuracy`` in its values.

    Stops as soon as accuracy is 1.0 and the loss is near zero. Metrics:
    ``train_accuracy``, ``final_loss``, ``epochs_run``, ``initial_loss``,
    ``loss_target`` (of the attempt at the recipe's LR), ``examples``, ``lr``
    (the recipe's), ``lr_memorized`` (the LR that memorized, or None),
    ``attempts`` (one row per LR tried), ``left_out``, ``max_epochs``.
    """
    examples = POSITIVE_INT.check(examples, "examples")
    max_epochs = POSITIVE_INT.check(max_epochs, "max epochs")
    recipe = common.seeded(recipe, seed)
    seed = recipe.seed
    result = common.new_result("overfit-tiny", recipe, seed, CHECKS)
    tiny = tiny_recipe(recipe)
    data = common.load(tiny)
    X, y, left_out = tiny_set(data, examples, seed)
    lr = float(tiny.optim.lr)
    attempts = [attempt(tiny, data, X, y, seed, lr, max_epochs, progress)]
    while (not attempts[-1].memorized and attempts[-1].blew_up is None
           and len(attempts) <= RETRIES):
        attempts.append(attempt(tiny, data, X, y, seed, attempts[-1].lr * RETRY_FACTOR, max_epochs,
                                progress))
    first, memorized = attempts[0], next((a for a in attempts if a.memorized), None)
    result.metrics.update(train_accuracy=first.accuracy, final_loss=first.loss,
                          epochs_run=first.epochs_run, initial_loss=first.initial_loss,
                          loss_target=first.target, examples=int(len(X)), lr=lr,
                          lr_memorized=memorized.lr if memorized else None,
                          attempts=[a.to_metrics() for a in attempts], left_out=left_out,
                          max_epochs=max_epochs)
    if memorized is None:
        diagnose_failure(result, first, X, y, attempts)
    return result


def tried(attempts: list[Attempt]) -> str:
    """``"; retried from the same init at lr 0.01, 0.1: 45% accuracy, loss 1.2, blew up"`` for messages."""
    retries = attempts[1:]
    if not retries:
        return ""
    how = ", ".join("blew up" if a.blew_up else f"{100 * a.accuracy:.0f}% accuracy, loss {a.loss:.3g}"
                    for a in retries)
    lrs = ", ".join(f"{a.lr:g}" for a in retries)
    return f"; retried from the same init at lr {lrs}: {how}"


def diagnose_failure(result, first: Attempt, X, y, attempts: list[Attempt]) -> None:
    """Add the cannot_overfit finding with the most likely cause (from the recipe's LR)."""
    lr, initial_loss, loss = first.lr, first.initial_loss, first.loss
    evidence = {"initial_loss": initial_loss, "final_loss": loss, "train_accuracy": first.accuracy,
                "epochs_run": first.epochs_run, "lr": lr, "loss_target": first.target,
                "attempts": [a.to_metrics() for a in attempts]}
    if first.blew_up is not None:
        result.add("cannot_overfit", "fail",
                   f"the loss became {first.blew_up[1]} in epoch {first.blew_up[0]}: the learning "
                   f"rate {lr:g} is too high",
                   f"lower the learning rate (try {lr / 10:g}; run `babysit lr-probe`)",
                   **evidence)
        return
    conflicts = conflicting_duplicates(X, y)
    if conflicts:
        shown = "; ".join(f"examples {group} have labels {sorted(set(np.asarray(y)[group].tolist()))}"
                          for group in conflicts[:3])
        result.add("cannot_overfit", "fail",
                   f"{len(conflicts)} group(s) of identical inputs carry different labels ({shown}): "
                   "no model can fit them",
                   "fix the data: duplicated inputs with conflicting labels (check the loader and "
                   "the label alignment; run `babysit data`)",
                   conflicts=conflicts[:10], **evidence)
        return
    dead = dead_fractions(first.model, X)
    worst = max(dead, key=dead.get) if dead else None
    dying = worst is not None and dead[worst] > DEAD_UNITS
    units = f"; {100 * dead[worst]:.0f}% of {worst}'s units never fire" if dying else ""
    flat = all((a.initial_loss - a.loss) / max(abs(a.initial_loss), 1e-12) < FLAT_DROP
               for a in attempts if a.blew_up is None)
    if flat:
        result.add("cannot_overfit", "fail",
                   f"the loss stayed flat ({initial_loss:.4g} -> {loss:.4g}) over "
                   f"{first.epochs_run} epochs at lr {lr:g}{units}{tried(attempts)}",
                   "fix the bias/init so the units fire (run `babysit init-stats`)" if dying else
                   "raise the learning rate (run `babysit lr-probe`); check for dead units "
                   "(`babysit init-stats`)",
                   layer=worst if dying else None, dead=dead, **evidence)
    elif dying:
        result.add("cannot_overfit", "fail",
                   f"dead units: {100 * dead[worst]:.0f}% of {worst}'s units never fire on the "
                   f"tiny set, and the loss only fell {initial_loss:.4g} -> {loss:.4g} in "
                   f"{first.epochs_run} epochs{tried(attempts)}",
                   "fix the bias/init so the units fire (zero or slightly positive bias, He init; "
                   "run `babysit init-stats`), or lower the learning rate",
                   layer=worst, dead=dead, **evidence)
    elif (len(attempts) > 1 and all(b.blew_up is None and b.loss <= a.loss
                                    for a, b in zip(attempts, attempts[1:]))
          and first.loss - attempts[-1].loss > FLAT_DROP * first.initial_loss):
        steps = ", ".join(f"{a.lr:g}: {a.loss:.3g}" for a in attempts)
        result.add("cannot_overfit", "fail",
                   f"the loss fell further with every larger LR (lr {steps}) and never reached "
                   f"{first.target:.3g} in {first.epochs_run} epochs: the learning rate {lr:g} is "
                   "far too low",
                   "raise the learning rate (run `babysit lr-probe` for its range)",
                   layer=worst if dying else None, dead=dead, **evidence)
    else:
        result.add("cannot_overfit", "fail",
                   f"after {first.epochs_run} epochs train accuracy is {first.accuracy:.3f} and the "
                   f"loss {loss:.4g} (target {first.target:.3g}, from {initial_loss:.4g}): not "
                   f"memorized{tried(attempts)}",
                   "the model may lack capacity or a gradient may be wrong (run `babysit "
                   "gradcheck`); or give it more steps (--max-epochs)",
                   dead=dead, **evidence)


__all__ = ["overfit_tiny", "tiny_recipe", "conflicting_duplicates", "CHECKS"]
