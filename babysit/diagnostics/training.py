"""train: mini-batch training with monitors, HDF5 run log, checkpoints and exact resume.

The loop (:class:`Trainer`) is the recipe's optimizer, schedule, epochs and
batch size through the shared :class:`~babysit.engine.solver.Solver`. Around it:

* once per epoch, monitors (:mod:`babysit.diagnostics.monitors`): update/weight
  ratio and gradient norm per parameter over the epoch's last step, and per
  layer statistics (dead ReLUs, saturation, mean/std) on a fixed subset of the
  training set, whose accuracy is the epoch's train accuracy;
* an early abort when the loss is NaN/inf or above ``DIVERGENCE_FACTOR`` times
  its first value (``loss_diverged``);
* the run log (:class:`babysit.store.RunLog`), rewritten atomically at the end
  of the first epoch, then at epoch ends at most every ``SAVE_INTERVAL``
  seconds, and at the end: history, and checkpoints ``last`` (with the optimizer, average and
  random-generator states an exact resume needs), ``best`` (on validation
  accuracy) and ``average`` (Polyak, when ``train.average`` is set);
* SIGINT/SIGTERM: the step in progress finishes, ``last`` is saved at that
  step and :class:`TrainingInterrupted` is raised (the CLI exits 130);
* at the end, the curve diagnosis (:mod:`babysit.diagnostics.curves`) and the
  monitor findings.

Resuming restores parameters, batchnorm running statistics, optimizer state,
parameter average, the shuffling generator (as of the start of the epoch in
progress, plus the number of batches already done) and the dropout
generator, so 2 epochs + resume to 4 ends with the same bits as 4 epochs.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.curves import diagnose_curves
from babysit.diagnostics.init_stats import DEAD_FAIL, DEAD_WARN, SATURATION_FAIL
from babysit.diagnostics.monitors import model_layer_stats, param_grad_norms, update_ratios
from babysit.diagnostics.result import Finding
from babysit.errors import BabysitError, ModelError
from babysit.store import Checkpoint, RunLog, read_run_log, restore_rng, rng_state_json

DIVERGENCE_FACTOR = 3.0
SAVE_INTERVAL = 5.0   # seconds between run-log rewrites at epoch ends (always at the end,
                      # on interruption and on divergence)
TRAIN_EVAL_SIZE = 1000
UPDATE_RATIO_LOW = 1e-5
UPDATE_RATIO_HIGH = 1e-1
BUFFER_NAMES = ("running_mean", "running_var")  # layer state that is not a parameter

CHECKS = {
    "divergence": ["loss_diverged"],
    "curves": ["loss_plateau", "late_start", "lr_too_high"],
    "generalization": ["overfitting", "underfitting"],
    "update_ratio": ["update_ratio_high", "update_ratio_low"],
    "activations": ["dead_relu", "activation_saturation"],
}
LAYER_STATS = ("mean", "std", "near_zero", "saturated", "dead")


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT/SIGTERM after saving a resumable checkpoint."""

    def __init__(self, run_log: Path, epoch: int, iteration: int):
        super().__init__(f"interrupted at epoch {epoch}, iteration {iteration}; "
                         f"checkpoint saved to {run_log}")
        self.run_log, self.epoch, self.iteration = run_log, epoch, iteration


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


class StopRequests:
    """While active, SIGINT/SIGTERM ask the loop to stop after the current step.

    Stopping mid-step would leave half-updated parameters, so the handler only
    records the request; a second Ctrl-C stops at once. Handlers can only be
    installed from the main thread; elsewhere (a worker thread) this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


class History:
    """Per-iteration and per-epoch records, laid out as the run log's ``history/`` group."""

    def __init__(self):
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.epoch: dict[str, list] = {}
        self.monitors: dict[str, dict[str, list]] = {"update_ratio": {}, "grad_norm": {}}
        self.layers: dict[str, dict[str, list]] = {}

    def add_iteration(self, loss: float, lr: float) -> None:
        self.loss.append(float(loss))
        self.lr.append(float(lr))

    def add_epoch(self, metrics: dict, monitors: dict, layers: list) -> None:
        for key, value in metrics.items():
            self.epoch.setdefault(key, []).append(value)
        for monitor, values in monitors.items():
            for name, value in values.items():
                self.monitors.setdefault(monitor, {}).setdefault(name, []).append(value)
        for stats in layers:
            record = self.layers.setdefault(stats.layer, {})
            for key in LAYER_STATS:
                value = getattr(stats, key)
                record.setdefault(key, []).append(math.nan if value is None else value)

    @property
    def epochs(self) -> int:
        return len(self.epoch.get("epoch", []))

    def last(self, key: str, default=math.nan):
        values = self.epoch.get(key)
        return values[-1] if values else default

    def to_tree(self) -> dict:
        def arrays(tree):
            return {k: arrays(v) if isinstance(v, dict) else np.asarray(v, dtype=np.float64)
                    for k, v in tree.items()}

        return {"iteration": {"loss": np.asarray(self.loss, dtype=np.float64),
                              "lr": np.asarray(self.lr, dtype=np.float64)},
                "epoch": arrays(self.epoch), "monitors": arrays(self.monitors),
                "layers": arrays(self.layers)}

    @classmethod
    def from_tree(cls, tree: dict) -> "History":
        def lists(node):
            return {k: lists(v) if isinstance(v, dict) else np.asarray(v).tolist()
                    for k, v in node.items()}

        history = cls()
        iteration = tree.get("iteration", {})
        history.loss = np.asarray(iteration.get("loss", [])).tolist()
        history.lr = np.asarray(iteration.get("lr", [])).tolist()
        history.epoch = lists(tree.get("epoch", {}))
        history.monitors.update(lists(tree.get("monitors", {})))
        history.layers = lists(tree.get("layers", {}))
        return history


# ---------------------------------------------------------------------------
# model state <-> checkpoints


def layer_buffers(model) -> dict:
    """``{"<i>.running_mean": array, ...}``: layer state resuming needs besides params."""
    buffers = {}
    for name, layer in zip(model.names, model.layers):
        index = name.split(".", 1)[0]
        for attr in BUFFER_NAMES:
            value = getattr(layer, attr, None)
            if isinstance(value, np.ndarray):
                buffers[f"{index}.{attr}"] = value.copy()
    return buffers


def restore_buffers(model, buffers: dict) -> None:
    by_index = {name.split(".", 1)[0]: layer for name, layer in zip(model.names, model.layers)}
    for key, value in buffers.items():
        index, attr = key.split(".", 1)
        target = getattr(by_index.get(index), attr, None)
        if not isinstance(target, np.ndarray) or target.shape != np.shape(value):
            raise BabysitError(f"the run log's layer state {key!r} does not fit this model")
        target[...] = value


def random_layers(model) -> dict:
    """``{layer name: generator}`` of the layers that draw random numbers (dropout)."""
    return {name: layer.rng for name, layer in zip(model.names, model.layers)
            if getattr(layer, "uses_randomness", False) and getattr(layer, "rng", None) is not None}


def evaluate(model, X, y, batch_size: int = 1000) -> tuple[float, float]:
    """Test-mode ``(mean data loss, accuracy)`` over ``X`` in batches; NaNs for an empty set."""
    if len(X) == 0:
        return math.nan, math.nan
    total_loss, correct = 0.0, 0
    with np.errstate(all="ignore"):
        for start in range(0, len(X), batch_size):
            scores = model.forward(X[start:start + batch_size])
            yb = y[start:start + batch_size]
            loss, _ = model.loss_fn(scores, yb)
            total_loss += float(loss) * len(yb)
            correct += int(np.sum(np.argmax(scores, axis=1) == yb))
    return total_loss / len(X), correct / len(X)


def default_run_path(recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}.h5"


# ---------------------------------------------------------------------------
# the loop


class Trainer:
    """One training run of a recipe, resumable; :meth:`run` returns the Result."""

    def __init__(self, recipe, seed=None, out=None, resume=None,
                 progress: Callable | None = None, train_eval_size: int = TRAIN_EVAL_SIZE):
        self.recipe = recipe
        self.seed = common.resolve_seed(recipe, seed)
        self.progress = progress or (lambda event: None)
        self.data = common.load(recipe)
        self.model = common.build(recipe, self.data, self.seed)
        train = recipe.train
        self.epochs = int(train.epochs)
        self.solver = make_solver(self.model, recipe, common.stream(self.seed, "batches"))
        self.X_eval, self.y_eval = common.subset(
            self.data.X_train, self.data.y_train, common.positive_int("train eval size", train_eval_size),
            common.stream(self.seed, "subset"))
        self.history = History()
        self.epoch = 0                 # completed epochs
        self.iteration = 0             # steps taken
        self.batch_in_epoch = 0        # steps taken in the epoch in progress
        self.epoch_rng = rng_state_json(self.solver.rng)  # shuffler state at that epoch's start
        self.start_loss = None
        self.best = None               # Checkpoint
        self.last = None               # Checkpoint of the last finished epoch
        self.diverged = None           # Finding
        self.recipe_yaml = recipe.to_yaml()
        self.saved_at = None           # time.monotonic() of the last save
        if resume is not None:
            self._restore(read_run_log(resume))
        self.path = Path(out) if out is not None else (
            Path(resume) if resume is not None else default_run_path(recipe))
        if self.path.is_dir():  # fail now, not when the first epoch's checkpoint is written
            raise BabysitError(f"cannot write the run log to {self.path}: it is a directory; "
                               f"give a file name such as {self.path / 'run.h5'}")

    # -- checkpoints -------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The resumable state right now (after ``self.iteration`` steps)."""
        attrs = {"epoch": self.epoch, "iteration": self.iteration,
                 "batch_in_epoch": self.batch_in_epoch, "rng_batches": self.epoch_rng}
        for name, rng in random_layers(self.model).items():
            attrs[f"rng_layer:{name}"] = rng_state_json(rng)
        average = self.solver.average
        return Checkpoint(params=self.model.copy_params(), buffers=layer_buffers(self.model),
                          attrs=attrs, optimizer=self.solver.optimizer.state_dict(),
                          average=average.state_dict() if average is not None else None)

    def _restore(self, log: RunLog) -> None:
        last = log.checkpoints.get("last")
        if last is None or last.optimizer is None:
            raise BabysitError(f"{log.path}: the run log has no resumable 'last' checkpoint")
        mismatch = set(last.params) ^ set(self.model.params)
        if mismatch:
            raise BabysitError(f"{log.path}: the checkpoint's parameters {sorted(last.params)} do not "
                               f"match this recipe's model {sorted(self.model.params)}")
        try:
            self.model.set_params(last.params)
        except ModelError as exc:  # e.g. --set changed a layer's size since the run started
            raise BabysitError(f"{log.path}: the checkpoint does not fit this recipe's model: {exc}") from None
        restore_buffers(self.model, last.buffers)
        self.solver.optimizer.load_state_dict(last.optimizer)
        if self.solver.average is not None:
            if last.average is None:
                raise BabysitError(f"{log.path}: train.average is set but the run log has no "
                                   "parameter average to resume")
            self.solver.average.load_state_dict(last.average)
        attrs = last.attrs
        self.epoch, self.iteration = int(attrs["epoch"]), int(attrs["iteration"])
        self.batch_in_epoch = int(attrs.get("batch_in_epoch", 0))
        self.epoch_rng = attrs["rng_batches"]
        restore_rng(self.solver.rng, self.epoch_rng)
        for name, rng in random_layers(self.model).items():
            if f"rng_layer:{name}" in attrs:
                restore_rng(rng, attrs[f"rng_layer:{name}"])
        self.history = History.from_tree(log.history)
        self.start_loss = log.attrs.get("start_loss")
        self.best = log.checkpoints.get("best")
        self.last = last

    def save(self, status: str, last: Checkpoint | None = None, result=None) -> Path:
        checkpoints = {"last": last or self.last, "best": self.best}
        if self.solver.average is not None:
            checkpoints["average"] = Checkpoint(params={k: v.copy() for k, v in
                                                        self.solver.average.params.items()},
                                                buffers=layer_buffers(self.model))
        attrs = {"name": self.recipe.name, "seed": self.seed, "status": status,
                 "epochs": self.epochs, "epochs_run": self.history.epochs,
                 "iterations": self.iteration, "start_loss": self.start_loss,
                 "iterations_per_epoch": math.ceil(len(self.data.X_train) / self.solver.batch_size),
                 "recipe_path": common.recipe_label(self.recipe) or "",
                 "recipe_base_dir": self.recipe.data.base_dir or ""}
        log = RunLog(recipe_yaml=self.recipe_yaml, attrs=attrs, history=self.history.to_tree(),
                     checkpoints=checkpoints, result=result.to_dict() if result is not None else None)
        path = log.save(self.path)
        self.saved_at = time.monotonic()
        return path

    # -- steps ---------------------------------------------------------------
    def _event(self, kind: str, lr: float, loss=None) -> None:
        per_epoch = math.ceil(len(self.data.X_train) / self.solver.batch_size)
        self.progress(ProgressEvent(
            kind, min(self.epoch + 1, self.epochs), self.epochs, self.iteration,
            per_epoch * self.epochs, lr, loss, self.history.last("train_accuracy", None),
            self.history.last("val_accuracy", None)))

    def _check_divergence(self, loss: float, lr: float) -> bool:
        if self.start_loss is None:
            self.start_loss = loss
        if math.isfinite(loss) and loss <= DIVERGENCE_FACTOR * max(self.start_loss, 1e-12):
            return False
        why = (f"the loss became {loss}" if not math.isfinite(loss) else
               f"the loss reached {loss:.4g}, over {DIVERGENCE_FACTOR:g}x its start {self.start_loss:.4g}")
        self.diverged = Finding(
            "loss_diverged", "fail",
            f"{why} at iteration {self.iteration} (epoch {self.epoch + 1}); training stopped",
            f"the learning rate {lr:g} is too high: lower it (try {lr / 10:g}) or run `babysit lr-probe`",
            None, {"iteration": self.iteration, "epoch": self.epoch + 1, "loss": loss,
                   "start_loss": self.start_loss, "lr": lr})
        return True

    def _run_epoch(self, stop: StopRequests) -> bool:
        """Train the epoch in progress; False when the loss diverged."""
        X, y = self.data.X_train, self.data.y_train
        lr = self.solver.lr_at(self.epoch)
        restore_rng(self.solver.rng, self.epoch_rng)
        batches = self.solver.batches(len(X))
        monitors = {"update_ratio": {}, "grad_norm": {}}
        first_iteration = self.iteration - self.batch_in_epoch
        for b in range(self.batch_in_epoch, len(batches)):
            index = batches[b]
            is_last = b == len(batches) - 1
            before = {n: self.model.params[n].copy() for n in self.model.weight_names} if is_last else None
            # Overflow on the way to NaN is reported as loss_diverged, not as numpy warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss = float(self.solver.step(X[index], y[index], lr))
            self.iteration += 1
            self.batch_in_epoch = b + 1
            self.history.add_iteration(loss, lr)
            if is_last:
                with np.errstate(over="ignore", invalid="ignore"):
                    monitors["grad_norm"] = param_grad_norms(self.model)
                    monitors["update_ratio"] = update_ratios(before, self.model.params)
            self._event("iteration", lr, loss)
            if self._check_divergence(loss, lr):
                return False
            if stop.requested is not None and not is_last:
                self._interrupt()
        self._end_epoch(lr, first_iteration, monitors)
        if stop.requested is not None:
            self._interrupt()
        return True

    def _end_epoch(self, lr: float, first_iteration: int, monitors: dict) -> None:
        model = self.model
        model.record = True
        model.output_grads = {}  # a test-mode pass has no backward: no gradients to report
        try:
            train_loss_eval, train_accuracy = evaluate(model, self.X_eval, self.y_eval,
                                                       batch_size=len(self.X_eval))
            with np.errstate(all="ignore"):
                layers = model_layer_stats(model)
        finally:
            model.record = False
            model.outputs, model.output_grads = {}, {}
        val_loss, val_accuracy = evaluate(model, *self.validation())
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_rng = rng_state_json(self.solver.rng)
        epoch_losses = self.history.loss[first_iteration:self.iteration]
        metrics = {"epoch": self.epoch, "lr": lr, "train_loss": float(np.mean(epoch_losses)),
                   "train_accuracy": train_accuracy, "val_loss": val_loss,
                   "val_accuracy": val_accuracy}
        self.history.add_epoch(metrics, monitors, layers)
        self.last = self.checkpoint()
        score = val_accuracy if math.isfinite(val_accuracy) else train_accuracy
        if self.best is None or score > self.best.attrs.get("score", -math.inf):
            self.best = Checkpoint(params=self.last.params, buffers=self.last.buffers,
                                   attrs={"epoch": self.epoch, "score": score,
                                          "val_accuracy": val_accuracy})
        # Rewriting the whole log costs more than a short epoch: at most every
        # SAVE_INTERVAL seconds (the content of the final log does not depend on it).
        if self.saved_at is None or time.monotonic() - self.saved_at >= SAVE_INTERVAL:
            self.save("running")
        self._event("epoch", lr, metrics["train_loss"])

    def validation(self):
        X, y = self.data.X_val, self.data.y_val
        if X is None:
            return np.zeros((0,) + tuple(self.data.input_shape), np.float32), np.zeros(0, np.int64)
        return X, y

    def _interrupt(self):
        path = self.save("interrupted", last=self.checkpoint())
        raise TrainingInterrupted(path, self.epoch + (1 if self.batch_in_epoch else 0), self.iteration)

    def run(self):
        """Train to ``train.epochs`` (from where a resumed log left off) -> Result."""
        result = common.new_result("train", self.recipe, self.seed, CHECKS)
        if self.last is None:
            self.last = self.checkpoint()  # the initial state, for a log saved before epoch 1 ends
        self._event("start", self.solver.lr_at(self.epoch))
        with StopRequests() as stop:
            while self.epoch < self.epochs and self.diverged is None:
                self._run_epoch(stop)
        status = "diverged" if self.diverged is not None else "finished"
        result.findings.extend(self.findings())
        result.metrics.update(self.metrics())
        self.save(status, result=result)
        self._event("end", self.solver.lr_at(max(self.epoch - 1, 0)))
        return result

    # -- verdicts ------------------------------------------------------------
    def findings(self) -> list[Finding]:
        if self.diverged is not None:
            return [self.diverged]
        history = self.history
        findings = diagnose_curves(history.loss, history.last("train_accuracy"),
                                   history.last("val_accuracy"))
        findings += update_ratio_findings(history.monitors.get("update_ratio", {}), self.model.names)
        findings += activation_findings(history.layers)
        return findings

    def metrics(self) -> dict:
        history = self.history
        metrics = {"epochs_run": history.epochs,
                   "iterations": self.iteration,
                   "final_loss": (history.loss[-1] if self.diverged is not None
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
        return metrics


def make_solver(model, recipe, rng):
    from babysit.engine.solver import Solver

    train = recipe.train
    return Solver(model, recipe.optim.to_dict(), int(train.batch_size), rng,
                  average=train.average)


def layer_of(param: str, layer_names) -> str | None:
    """``"2.W"`` -> ``"2.affine"`` given the model's layer names."""
    index = param.split(".", 1)[0]
    return next((name for name in layer_names if name.split(".", 1)[0] == index), None)


def update_ratio_findings(ratios: dict, layer_names) -> list[Finding]:
    """update_ratio_high/low from each weight's median ratio over the epochs."""
    medians = {name: float(np.median(values)) for name, values in ratios.items() if len(values)}
    findings = []
    for code, test, word, fix in (
            ("update_ratio_high", lambda r: r > UPDATE_RATIO_HIGH, "above",
             "lower the learning rate (updates this large overwrite the weights)"),
            ("update_ratio_low", lambda r: r < UPDATE_RATIO_LOW, "below",
             "raise the learning rate (updates this small barely move the weights)")):
        bad = {name: r for name, r in medians.items() if test(r)}
        if bad:
            first = next(iter(bad))
            bound = UPDATE_RATIO_HIGH if code.endswith("high") else UPDATE_RATIO_LOW
            findings.append(Finding(
                code, "warn",
                f"update/weight ratio of {first} is {bad[first]:.2g} (median over epochs), "
                f"{word} {bound:g}; healthy is about 1e-3",
                fix, layer_of(first, layer_names), {"ratios": medians, "bound": bound}))
    return findings


def activation_findings(layers: dict) -> list[Finding]:
    """dead_relu / activation_saturation from the last epoch's layer statistics."""
    findings = []
    dead = {name: stats["dead"][-1] for name, stats in layers.items()
            if stats.get("dead") and math.isfinite(stats["dead"][-1])}
    over = {name: value for name, value in dead.items() if value > DEAD_WARN}
    if over:
        first = next(iter(over))
        findings.append(Finding(
            "dead_relu", "fail" if max(over.values()) > DEAD_FAIL else "warn",
            f"after training {100 * over[first]:.0f}% of {first}'s units never fire on the "
            "training subset", "lower the learning rate; use a small positive bias, He init "
            "or leaky_relu", first, {"fractions": dead}))
    saturated = {name: stats["saturated"][-1] for name, stats in layers.items()
                 if stats.get("saturated") and math.isfinite(stats["saturated"][-1])}
    over = {name: value for name, value in saturated.items() if value > SATURATION_FAIL}
    if over:
        first = next(iter(over))
        findings.append(Finding(
            "activation_saturation", "warn",
            f"after training {100 * over[first]:.0f}% of {first}'s outputs are saturated",
            "lower the learning rate or the init scale; standardize the inputs; add batchnorm",
            first, {"fractions": saturated}))
    return findings


def result_from_run_log(log: RunLog):
    """The Result a run log records; for a log without one (interrupted or still
    running) a diagnosis of the history so far, noting that it is partial."""
    from babysit.diagnostics.result import Result

    attrs = log.attrs
    recipe = attrs.get("recipe_path") or attrs.get("name")
    if log.result is not None:
        stored = log.result
        findings = [Finding(f["code"], f["severity"], f["message"], f.get("fix", ""),
                            f.get("layer"), f.get("evidence") or {}) for f in stored.get("findings", [])]
        return Result(command=stored.get("command", "train"), recipe=stored.get("recipe", recipe),
                      seed=stored.get("seed"), findings=findings, metrics=dict(stored.get("metrics", {})),
                      checks=dict(CHECKS))
    history = History.from_tree(log.history)
    result = Result(command="train", recipe=recipe, seed=attrs.get("seed"), checks=dict(CHECKS))
    if history.epochs:
        result.findings.extend(diagnose_curves(history.loss, history.last("train_accuracy"),
                                               history.last("val_accuracy")))
        result.findings.extend(update_ratio_findings(history.monitors.get("update_ratio", {}),
                                                     list(history.layers)))
        result.findings.extend(activation_findings(history.layers))
    result.metrics.update(epochs_run=history.epochs, iterations=len(history.loss),
                          final_loss=history.last("train_loss"),
                          train_accuracy=history.last("train_accuracy"),
                          val_accuracy=history.last("val_accuracy"),
                          run_log=str(log.path) if log.path else None, partial=True)
    return result


def recipe_for_resume(path, overrides=None):
    """The recipe stored in run log ``path``, with ``overrides`` (e.g. ``{"train.epochs": 4}``)."""
    from babysit.recipes import recipe_from_yaml

    log = read_run_log(path)
    return recipe_from_yaml(log.recipe_yaml, origin=f"{path} (its recipe)", overrides=overrides,
                            path=log.attrs.get("recipe_path") or None,
                            base_dir=log.attrs.get("recipe_base_dir") or None,
                            default_name=log.name or "recipe")


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
    examples), val_accuracy, best_val_accuracy, best_epoch, run_log, and
    average_val_accuracy when ``train.average`` is set.
    """
    return Trainer(recipe, seed, out, resume, progress, train_eval_size).run()


__all__ = ["train", "Trainer", "TrainingInterrupted", "ProgressEvent", "History", "evaluate",
           "result_from_run_log", "recipe_for_resume", "DIVERGENCE_FACTOR"]
