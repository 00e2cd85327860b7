"""overfit-tiny: a healthy model and optimizer must memorize a handful of examples.

The lecture's second sanity check: with regularization off and dropout off,
train on ``examples`` training examples (default 20) until train accuracy is
1.0 and the loss is near zero. The recipe's optimizer and learning rate are
used at a constant rate (its decay schedule is written for full-data epochs);
each epoch is one pass over the tiny set in the recipe's batch size.

Passes when train accuracy reaches 1.0 and the loss falls below
``LOSS_NEAR_ZERO`` times its initial value. On failure, ``cannot_overfit``
says why, with evidence:

* the loss became NaN/inf -> the learning rate is too high;
* identical inputs carry different labels -> a data problem (no model can
  separate them);
* the loss stayed flat (fell by less than ``FLAT_DROP`` of its start) -> the
  learning rate is too low, or units are dead (dead ReLU fractions attached);
* more than ``DEAD_UNITS`` of a ReLU layer never fires on the tiny set -> dead
  units (bias/init);
* otherwise it was still going down -> more epochs or a larger learning rate.
"""

from __future__ import annotations

import math

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.monitors import model_layer_stats
from babysit.engine.solver import Callback, Divergence, Solver, evaluate
from babysit.validation import POSITIVE_INT

LOSS_NEAR_ZERO = 0.05
FLAT_DROP = 0.01
DEAD_UNITS = 0.40      # a ReLU layer with more dead units than this explains a failure
DEFAULT_EXAMPLES = 20
DEFAULT_MAX_EPOCHS = 500

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


def overfit_tiny(recipe, seed=None, examples: int = DEFAULT_EXAMPLES,
                 max_epochs: int = DEFAULT_MAX_EPOCHS):
    """Train on ``examples`` training examples with reg 0 and no dropout -> Result.

    Stops as soon as accuracy is 1.0 and the loss is near zero. Metrics:
    ``train_accuracy``, ``final_loss``, ``epochs_run``, ``initial_loss``,
    ``loss_target``, ``examples``, ``lr``, ``max_epochs``.
    """
    examples = POSITIVE_INT.check(examples, "examples")
    max_epochs = POSITIVE_INT.check(max_epochs, "max epochs")
    recipe = common.seeded(recipe, seed)
    seed = recipe.seed
    result = common.new_result("overfit-tiny", recipe, seed, CHECKS)
    tiny = tiny_recipe(recipe)
    data = common.load(tiny)
    X, y = common.subset(data.X_train, data.y_train, examples, common.stream(seed, "subset"))
    model = common.build(tiny, data, seed)
    solver = Solver(model, tiny.optim.to_dict(), min(int(tiny.train.batch_size), len(X)),
                    common.stream(seed, "batches"))
    lr = float(tiny.optim.lr)

    initial_loss, accuracy = evaluate(model, X, y, batch_size=len(X))
    target = LOSS_NEAR_ZERO * initial_loss
    watch = UntilMemorized(model, X, y, initial_loss, accuracy, target)
    # Only a non-finite step loss counts as blowing up here: a memorizing run
    # may pass through losses above its start.
    state = solver.run(X, y, epochs=max_epochs, lr=lr, divergence=Divergence(math.inf),
                       callbacks=[watch])
    if state.diverged:
        blew_up, loss, epochs_run = (state.epoch + 1, state.loss), state.loss, state.epoch + 1
    else:
        blew_up, loss, epochs_run = watch.blew_up, watch.loss, state.epoch
    accuracy = watch.accuracy  # on a blow-up mid-epoch: the last one measured

    result.metrics.update(train_accuracy=accuracy, final_loss=loss, epochs_run=epochs_run,
                          initial_loss=initial_loss, loss_target=target, examples=int(len(X)),
                          lr=lr, max_epochs=max_epochs)
    if blew_up is None and accuracy == 1.0 and loss <= target:
        return result
    diagnose_failure(result, model, X, y, lr, initial_loss, loss, accuracy, target, epochs_run,
                     blew_up)
    return result


def diagnose_failure(result, model, X, y, lr, initial_loss, loss, accuracy, target, epochs_run,
                     blew_up) -> None:
    """Add the cannot_overfit finding with the most likely cause."""
    evidence = {"initial_loss": initial_loss, "final_loss": loss, "train_accuracy": accuracy,
                "epochs_run": epochs_run, "lr": lr, "loss_target": target}
    if blew_up is not None:
        result.add("cannot_overfit", "fail",
                   f"the loss became {blew_up[1]} in epoch {blew_up[0]}: the learning rate {lr:g} "
                   "is too high",
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
    dead = dead_fractions(model, X)
    worst = max(dead, key=dead.get) if dead else None
    dying = worst is not None and dead[worst] > DEAD_UNITS
    units = f"; {100 * dead[worst]:.0f}% of {worst}'s units never fire" if dying else ""
    drop = (initial_loss - loss) / max(abs(initial_loss), 1e-12)
    if drop < FLAT_DROP:
        result.add("cannot_overfit", "fail",
                   f"the loss stayed flat ({initial_loss:.4g} -> {loss:.4g}) over {epochs_run} "
                   f"epochs at lr {lr:g}{units}",
                   "fix the bias/init so the units fire (run `babysit init-stats`)" if dying else
                   "raise the learning rate (run `babysit lr-probe`); check for dead units "
                   "(`babysit init-stats`)",
                   layer=worst if dying else None, dead=dead, **evidence)
    elif dying:
        result.add("cannot_overfit", "fail",
                   f"dead units: {100 * dead[worst]:.0f}% of {worst}'s units never fire on the "
                   f"tiny set, and the loss only fell {initial_loss:.4g} -> {loss:.4g} in "
                   f"{epochs_run} epochs",
                   "fix the bias/init so the units fire (zero or slightly positive bias, He init; "
                   "run `babysit init-stats`), or lower the learning rate",
                   layer=worst, dead=dead, **evidence)
    else:
        result.add("cannot_overfit", "fail",
                   f"after {epochs_run} epochs train accuracy is {accuracy:.3f} and the loss "
                   f"{loss:.4g} (target {target:.3g}, from {initial_loss:.4g}): still not memorized",
                   "raise the learning rate or --max-epochs; if the loss creeps, the model may lack "
                   "capacity or the gradient may be wrong (run `babysit gradcheck`)",
                   dead=dead, **evidence)


__all__ = ["overfit_tiny", "tiny_recipe", "conflicting_duplicates", "CHECKS"]
