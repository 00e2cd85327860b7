"""What a finished (or stopped) training run's history says: train's findings.

A failing ``train`` must mean a bad outcome: the loss diverged, went flat, or
the run ended at chance; causes found along the way (dead units, saturation,
update ratios, a strong L2 term) are warnings that say why a run is worse
than it could be, and become the failing finding only when the run ended at
chance (calibrated on real runs: benchmarks/README.md).

* the curves (:mod:`babysit.diagnostics.curves`): loss shape, train/val gap;
* ``update_ratio_high`` / ``update_ratio_low``: a weight's median update/weight
  ratio over the epochs (``||lr * update|| / ||W||`` over each epoch's last
  step) above ``UPDATE_RATIO_HIGH`` or below ``UPDATE_RATIO_LOW``; healthy is
  about 1e-3 (the lecture's rule of thumb);
* ``dead_relu`` / ``activation_saturation``: the last epoch's layer statistics
  on the training subset, with init-stats' thresholds (warnings);
* ``reg_too_strong``: the lecture's "don't let the regularization overwhelm
  the data": with an L2 term, a weight array ended below ``REG_SHRINK`` of its
  norm at init (the L2 pull won over the data's);
* the outcome: a run whose final validation accuracy (train accuracy when
  there is no validation set) is within ``CHANCE_MARGIN`` of chance (1/C)
  learned nothing that generalizes: it fails with its most specific cause
  (``overfitting`` when it fitted its training set all the same: it memorized
  it, e.g. random labels; then ``reg_too_strong``, ``dead_relu``,
  ``activation_saturation``, ``loss_plateau``), else with ``underfitting``.
"""

from __future__ import annotations

import math

import numpy as np

from babysit.diagnostics.curves import diagnose_curves
from babysit.diagnostics.init_stats import DEAD_WARN, SATURATION_FAIL
from babysit.diagnostics.result import Finding, Result
from babysit.diagnostics.train.history import History
from babysit.store import StoreError

UPDATE_RATIO_LOW = 1e-5
UPDATE_RATIO_HIGH = 1e-1
REG_SHRINK = 0.25      # a weight array ending below a quarter of its init norm under L2
CHANCE_MARGIN = 0.05   # final accuracy within 5 points of 1/C: nothing learned
# the causes a chance-level run fails with, most specific first: a train accuracy
# far above a validation accuracy at chance says the net memorized its data,
# whatever else went wrong along the way
CHANCE_CAUSES = ("overfitting", "reg_too_strong", "dead_relu", "activation_saturation",
                 "loss_plateau", "underfitting")
# the fix of a cause that made the run end at chance, where it differs from the warning's
CHANCE_FIXES = {
    "overfitting": "the net fits its training data but learned nothing that carries over: "
                   "check that the labels can be predicted from the inputs and that train and "
                   "validation come from one distribution; then more regularization or more data",
}

CHECKS = {
    "divergence": ["loss_diverged"],
    "curves": ["loss_plateau", "late_start", "lr_too_high"],
    "generalization": ["overfitting", "underfitting"],
    "update_ratio": ["update_ratio_high", "update_ratio_low"],
    "activations": ["dead_relu", "activation_saturation"],
    "regularization": ["reg_too_strong"],
}


def history_findings(history: History, layer_of, chance: float, reg: float,
                     line_search: bool = False) -> list[Finding]:
    """Every finding of a run that did not diverge; ``layer_of(param) -> layer name``,
    ``chance`` the accuracy of guessing (1/C), ``reg`` the run's L2 strength.

    ``line_search``: the optimizer chooses its own step sizes (L-BFGS), so the
    update/weight ratio says nothing about the learning rate and is not judged.
    """
    findings = diagnose_curves(history.loss, history.last("train_accuracy"),
                               history.last("val_accuracy"))
    if not line_search:
        findings += update_ratio_findings(history.monitors.get("update_ratio", {}), layer_of)
    findings += activation_findings(history.layers, history.epochs)
    findings += reg_findings(history, layer_of, reg)
    return judge_outcome(findings, history, chance)


def final_accuracy(history: History) -> tuple[float, str]:
    """The run's outcome and what measured it: ``(validation accuracy, "validation")``,
    or ``(train accuracy, "train")`` without a validation set."""
    value = history.last("val_accuracy")
    if math.isfinite(value):
        return value, "validation"
    return history.last("train_accuracy"), "train"


def judge_outcome(findings: list[Finding], history: History, chance: float) -> list[Finding]:
    """Fail a run that ended at chance with its most specific cause (see the module doc)."""
    accuracy, measured = final_accuracy(history)
    if not math.isfinite(accuracy) or accuracy > chance + CHANCE_MARGIN:
        return findings
    if any(f.severity == "fail" for f in findings):
        return findings
    outcome = (f"; the run ended at chance ({measured} accuracy {100 * accuracy:.1f}% for "
               f"{round(1 / chance)} classes, guessing gives {100 * chance:.1f}%)")
    for code in CHANCE_CAUSES:
        cause = next((f for f in findings if f.code == code), None)
        if cause is not None:
            cause.severity = "fail"
            cause.message += outcome
            cause.fix = CHANCE_FIXES.get(code, cause.fix)
            return findings
    return findings + [Finding(
        "underfitting", "fail",
        f"the run learned nothing that generalizes: final accuracy {100 * accuracy:.1f}% "
        f"for {round(1 / chance)} classes, guessing gives {100 * chance:.1f}%",
        "check the labels (are they learnable?), the learning rate (`babysit lr-probe`) "
        "and the model's capacity", None,
        {"accuracy": accuracy, "chance": chance})]


def reg_findings(history: History, layer_of, reg: float) -> list[Finding]:
    """``reg_too_strong``: the L2 term shrank a weight array below REG_SHRINK of its init norm."""
    norms = history.monitors.get("weight_norm", {})
    initial = history.initial.get("weight_norm", {})
    ratios = {name: values[-1] / initial[name] for name, values in norms.items()
              if values and initial.get(name, 0.0) > 0.0}
    if reg <= 0.0 or not ratios:
        return []
    worst = min(ratios, key=ratios.get)
    if ratios[worst] >= REG_SHRINK:
        return []
    share = history.last("reg_loss") / history.last("train_loss")
    return [Finding(
        "reg_too_strong", "warn",
        f"the L2 term (reg {reg:g}) shrank {worst} to {100 * ratios[worst]:.2g}% of its norm at "
        f"init: the regularization overwhelms the data",
        f"lower model.reg (try {reg / 10:g}); the lecture: don't let the regularization "
        "overwhelm the data", layer_of(worst),
        {"shrink": ratios, "reg": reg, "reg_share": share})]


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


# (code, layer statistic, threshold, what it says, fix) of the last epoch's activation checks
ACTIVATION_CHECKS = (
    ("dead_relu", "dead", DEAD_WARN, "units never fire on the training subset",
     "lower the learning rate; use a small positive bias, He init or leaky_relu"),
    ("activation_saturation", "saturated", SATURATION_FAIL, "outputs are saturated",
     "lower the learning rate or the init scale; standardize the inputs; add batchnorm"),
)


def activation_findings(layers: dict, epochs: int) -> list[Finding]:
    """dead_relu / activation_saturation (warnings) from the last epoch's layer statistics.

    Only layers recorded in the last of the ``epochs``: one that a resume's ``--set``
    replaced stops early, and its old records say nothing of the model trained."""
    findings = []
    for code, statistic, threshold, says, fix in ACTIVATION_CHECKS:
        values = {name: stats[statistic][-1] for name, stats in layers.items()
                  if len(stats.get(statistic, ())) == epochs and math.isfinite(stats[statistic][-1])}
        over = {name: value for name, value in values.items() if value > threshold}
        if over:
            first = next(iter(over))
            findings.append(Finding(code, "warn", f"after training {100 * over[first]:.0f}% of "
                                    f"{first}'s {says}", fix, first, {"fractions": values}))
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
        try:
            findings = [Finding(f["code"], f["severity"], f["message"], f.get("fix", ""),
                                f.get("layer"), f.get("evidence") or {}) for f in stored.get("findings", [])]
        except ValueError as exc:   # a code or severity this babysit does not know
            raise StoreError(f"{str(log.path)!r} is a damaged babysit run log: its result "
                             f"has a finding with {exc}") from None
        return Result(command=stored.get("command", "train"), recipe=stored.get("recipe", recipe),
                      seed=stored.get("seed"), findings=findings, metrics=dict(stored.get("metrics", {})),
                      checks=dict(CHECKS))
    history = History.from_tree(log.history)
    result = Result(command="train", recipe=recipe, seed=attrs.get("seed"), checks=dict(CHECKS))
    if history.epochs:
        chance = 1.0 / attrs["num_classes"] if attrs.get("num_classes") else 0.0
        result.findings.extend(history_findings(history, layer_by_index(list(history.layers)),
                                                chance, float(attrs.get("reg") or 0.0),
                                                bool(attrs.get("line_search"))))
    result.metrics.update(epochs_run=history.epochs, iterations=len(history.loss),
                          final_loss=history.last("train_loss"),
                          train_accuracy=history.last("train_accuracy"),
                          val_accuracy=history.last("val_accuracy"),
                          run_log=str(log.path) if log.path else None, partial=True)
    return result


__all__ = ["CHECKS", "UPDATE_RATIO_LOW", "UPDATE_RATIO_HIGH", "REG_SHRINK", "CHANCE_MARGIN",
           "CHANCE_CAUSES",
           "history_findings", "judge_outcome", "reg_findings",
           "update_ratio_findings", "activation_findings", "result_from_run_log"]
