"""``train --resume``: a run log read back into a :class:`~babysit.diagnostics.train.trainer.Trainer`.

The log has passed :func:`babysit.store.read_run_log`'s checks (structure, types,
history shapes); what is checked here needs the recipe's model and optimizer:
the checkpoint's parameters, buffers and optimizer state must fit them, and the
loop state must be whole counts that add up and lie within the recorded history.
Every refusal is one BabysitError naming the log, raised before any training.
"""

from __future__ import annotations

import numpy as np

from babysit.diagnostics.train.history import History
from babysit.engine.solver import Divergence, LoopState
from babysit.errors import BabysitError, ModelError
from babysit.store import RunLog, read_run_log, rng_state_from_json

RESUME_USE = ("--resume continues a run log written by `babysit train` "
              "(`babysit report` shows any log)")


MAX_COUNT = 2 ** 53   # a step count far beyond any run, still exact in float64 and int64


def whole_count(value) -> int:
    """A step count stored in a run log: a whole number (not a bool, not 1.5), else ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"step count {value!r} is not a whole number")
    return int(value)


def restore(trainer, log: RunLog) -> None:
    """Set ``trainer``'s model, optimizer, average, loop state and history to the log's ``last``."""
    if log.ensemble is not None:
        raise BabysitError(f"{log.path}: an ensemble run ({len(log.ensemble.members)} members "
                           f"stored) cannot be resumed; train it again with --ensemble")
    last = log.checkpoints.get("last")
    if last is None or last.optimizer is None:
        raise BabysitError(f"{log.path}: the run log has no resumable 'last' checkpoint")
    model, solver = trainer.model, trainer.solver
    mismatch = set(last.params) ^ set(model.params)
    if mismatch:
        raise BabysitError(f"{log.path}: the checkpoint's parameters {sorted(last.params)} do not "
                           f"match this recipe's model {sorted(model.params)}")
    try:
        model.set_params(last.params)
        model.load_buffers(last.buffers)
    except ModelError as exc:  # e.g. --set changed a layer's size since the run started
        raise BabysitError(f"{log.path}: the checkpoint does not fit this recipe's model: {exc}") from None
    if solver.average is not None and last.average is None:
        raise BabysitError(f"{log.path}: train.average is set but the run log has no "
                           "parameter average to resume")
    try:
        solver.optimizer.load_state_dict(last.optimizer)
        if solver.average is not None:
            solver.average.load_state_dict(last.average)
    except (ModelError, ValueError, TypeError, OverflowError) as exc:   # a NaN or huge step count
        raise BabysitError(f"{log.path}: the checkpoint's optimizer state does not fit this "
                           f"recipe's optimizer: {exc}") from None
    # what was loaded must stay writable as training goes on: a step count of 2**64 - 1
    # loaded, trained one step past int64, then broke the first save and lost the work
    for name, value in solver.optimizer.state_dict().items():
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)) or (
                array.dtype.kind in "iu" and array.size and np.abs(array).max() > MAX_COUNT):
            raise BabysitError(f"{log.path}: the checkpoint's optimizer state {name!r} is not "
                               "finite numbers a run log can go on holding")
    history = History.from_tree(log.history)
    trainer.state = loop_state(trainer, log.path, last.attrs, history)
    history.cut(trainer.state.iteration, trainer.state.epoch)
    trainer.history = history
    trainer.divergence = Divergence(reference=log.attrs.get("start_loss"))
    trainer.best = log.checkpoints.get("best")
    trainer.last = last


def loop_state(trainer, path, attrs, history: History) -> LoopState:
    """Where the stored run stopped, its generators set back: a damaged entry is a BabysitError."""
    try:
        counts = {"epoch": whole_count(attrs["epoch"]),
                  "batch": whole_count(attrs.get("batch_in_epoch", 0)),
                  "iteration": whole_count(attrs["iteration"])}
        if min(counts.values()) < 0:
            raise ValueError(f"negative step counts {counts}")
        if counts["iteration"] < max(counts["epoch"], counts["batch"]):
            raise ValueError(f"step counts {counts} do not add up")
        # the checkpoint cannot lie past what the run recorded (this also bounds the counts)
        if counts["iteration"] > len(history.loss) or counts["epoch"] > history.epochs:
            raise ValueError(f"step counts {counts} go past the history's {len(history.loss)} "
                             f"steps and {history.epochs} epochs")
        state = LoopState(**counts, epoch_rng=rng_state_from_json(
            attrs["rng_batches"], type(trainer.solver.rng.bit_generator)))
        # the layers' generators are the model's own (numpy or torch): it parses them
        trainer.model.set_random_state({key.split(":", 1)[1]: value for key, value in attrs.items()
                                        if key.startswith("rng_layer:")})
    except KeyError as exc:
        raise BabysitError(f"{path}: the 'last' checkpoint lacks {exc}: it cannot be resumed") from None
    except (TypeError, ValueError, OverflowError, ModelError) as exc:
        raise BabysitError(f"{path}: the 'last' checkpoint's loop state is damaged ({exc}): "
                           f"it cannot be resumed") from None
    if state.batch > trainer.iterations_per_epoch:   # a changed batch size, or a damaged log
        raise BabysitError(f"{path}: the run stopped after step {state.batch} of an epoch, but "
                           f"an epoch of this recipe has {trainer.iterations_per_epoch} steps: "
                           f"resume with the run's own train.batch_size")
    return state


def recipe_for_resume(path, overrides=None):
    """The recipe stored in run log ``path``, with ``overrides`` (e.g. ``{"train.epochs": 4}``)."""
    from babysit.recipes import recipe_from_yaml

    log = read_run_log(path, RESUME_USE)
    return recipe_from_yaml(log.recipe_yaml, origin=f"{path} (its recipe)", overrides=overrides,
                            path=log.attrs.get("recipe_path") or None,
                            base_dir=log.attrs.get("recipe_base_dir") or None,
                            default_name=log.name or "recipe")


__all__ = ["restore", "loop_state", "whole_count", "recipe_for_resume", "RESUME_USE"]
