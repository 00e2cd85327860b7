"""What a finished (or stopped) training run's history says: train's findings.

* the curves (:mod:`babysit.diagnostics.curves`): loss shape, train/val gap;
* ``update_ratio_high`` / ``update_ratio_low``: a weight's median update/weight
  ratio over the epochs (``||lr * update|| / ||W||`` over each epoch's last
  step) above ``UPDATE_RATIO_HIGH`` or below ``UPDATE_RATIO_LOW``; healthy is
  about 1e-3 (the lecture's rule of thumb);
* ``dead_relu`` / ``activation_saturation``: the last epoch's layer statistics
  on the training subset, with init-stats' thresholds.
"""

from __future__ import annotations

import math

import numpy as np

from babysit.diagnostics.curves import diagnose_curves
from babysit.diagnostics.init_stats import DEAD_FAIL, DEAD_WARN, SATURATION_FAIL
from babysit.diagnostics.result import Finding, Result
from babysit.diagnostics.train.history import History

UPDATE_RATIO_LOW = 1e-5
UPDATE_RATIO_HIGH = 1e-1

CHECKS = {
    "divergence": ["loss_diverged"],
    "curves": ["loss_plateau", "late_start", "lr_too_high"],
    "generalization": ["overfitting", "underfitting"],
    "update_ratio": ["update_ratio_high", "update_ratio_low"],
    "activations": ["dead_relu", "activation_saturation"],
}


def history_findings(history: History, layer_of) -> list[Finding]:
    """Every finding of a run that did not diverge; ``layer_of(param) -> layer name``."""
    findings = diagnose_curves(history.loss, history.last("train_accuracy"),
                               history.last("val_accuracy"))
    findings += update_ratio_findings(history.monitors.get("update_ratio", {}), layer_of)
    findings += activation_findings(history.layers)
    return findings


def update_ratio_findings(ratios: dict, layer_of) -> list[Finding]:
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
                fix, layer_of(first), {"ratios": medians, "bound": bound}))
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


def layer_by_index(layer_names):
    """``layer_of`` for engine names without a model: ``"2.W"`` -> the layer ``"2.<kind>"``."""
    def layer_of(param: str) -> str | None:
        index = param.split(".", 1)[0]
        return next((name for name in layer_names if name.split(".", 1)[0] == index), None)
    return layer_of


def result_from_run_log(log) -> Result:
    """The Result a run log records; for a log without one (interrupted or still
    running) a diagnosis of the history so far, noting that it is partial."""
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
        result.findings.extend(history_findings(history, layer_by_index(list(history.layers))))
    result.metrics.update(epochs_run=history.epochs, iterations=len(history.loss),
                          final_loss=history.last("train_loss"),
                          train_accuracy=history.last("train_accuracy"),
                          val_accuracy=history.last("val_accuracy"),
                          run_log=str(log.path) if log.path else None, partial=True)
    return result


__all__ = ["CHECKS", "UPDATE_RATIO_LOW", "UPDATE_RATIO_HIGH", "history_findings",
           "update_ratio_findings", "activation_findings", "result_from_run_log"]
