"""gradcheck: analytic gradients against centered differences, in float64.

For a recipe's model (:func:`gradcheck_recipe`) or a user's layer
(:func:`gradcheck_layer`). The protocol of the CS231n notes:

* float64 always (the model is rebuilt in float64 whatever the recipe says);
* a few datapoints (default 3), so a kink is rarely crossed;
* centered differences ``(f(x+h) - f(x-h)) / 2h`` with ``h = 1e-5``;
* relative error ``|a - n| / max(|a|, |n|)``, 0 when both are 0, or both
  below the float64 resolution of the numerical estimate (``8 eps |f| / h``,
  4e-10 for a loss of 2.3: a structural zero shows as rounding noise);
* every parameter gets sampled entries (default 10, biases included), and so do
  the model's input and the input of every layer (the ``dx`` each backward
  returns), which tells *which* layer's backward is wrong;
* the data loss is checked first with reg=0, then the L2 term on its own;
* dropout and any randomness replay the same draw for f(x+h), f(x-h) and the
  analytic pass (``Model.replay_randomness``);
* kinks: every max/ReLU/maxpool/SVM margin records which branch won
  (``Model.kink_state``); an entry whose f(x+h) and f(x-h) took different
  branches is reported as ``kink_crossed`` and excluded, never a failure.

Bands (relative error of the worst entry of a parameter):

* ``> 1e-2``: fail (``gradient_mismatch``);
* ``1e-4 .. 1e-2``: warn (``gradient_suspicious``), fail for a kink-free model,
  where nothing but a bug gives such errors;
* ``< 1e-7``: excellent; ``1e-7 .. 1e-4``: good.

``gradient_tiny`` warns when most sampled entries of an array have both
gradients below 1e-10 yet above that resolution (float range trouble: they
are not judged); a stray such entry, or a whole analytic gradient below 1e-10
(usually structural: a bias right before a batchnorm), is a note.
"""

from __future__ import annotations

import math

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.gradcheck.bands import (CHECKS, DEFAULT_DATAPOINTS, DEFAULT_ENTRIES,
                                                 DEFAULT_H, DEFAULT_REG_CHECK, EXCELLENT_BAND,
                                                 FAIL_BAND, TINY, WARN_BAND, band, relative_error)
from babysit.diagnostics.gradcheck.findings import add_findings, check_options, report_metrics
from babysit.diagnostics.gradcheck.layer import gradcheck_layer, parse_kwargs, parse_shape
from babysit.diagnostics.gradcheck.model_check import ModelChecker
from babysit.diagnostics.gradcheck.numerical import Differencer
from babysit.validation import NON_NEGATIVE_INT

def _not_finite(result, loss: float, when: str) -> None:
    result.add("loss_not_finite", "fail", f"the loss is {loss} {when}: nothing can be checked",
               "run sanity-loss and lr-probe first (the init or the LR makes the loss blow up)",
               None, loss=loss)


def burn_in(model, recipe, data, steps: int, seed: int) -> float:
    """``steps`` training steps with the recipe's optimizer at its first LR; the last loss."""
    from babysit.engine.solver import Solver

    optim = common.section_dict(recipe.optim)
    train = common.section_dict(recipe.train)
    solver = Solver(model, optim, train.get("batch_size") or 100, common.stream(seed, "batches"))
    state = solver.run(data.X_train, data.y_train, steps=steps, lr=float(solver.lr_at(0)))
    return float(state.loss)


def checkable_datapoints(X, y, count: int, rng):
    """``count`` training examples to check on, all-zero inputs left out when there are others.

    An all-zero input meets a zero-bias ReLU exactly at its kink in every
    unit (every arm of the spiral starts at the origin): every entry of the
    first layer's bias would cross a kink, leaving nothing to judge.
    """
    nonzero = np.flatnonzero(np.any(np.asarray(X).reshape(len(X), -1) != 0, axis=1))
    if len(nonzero) == len(X) or len(nonzero) < count:
        return common.subset(X, y, count, rng)
    return common.subset(X[nonzero], y[nonzero], count, rng)


def gradcheck_recipe(recipe, seed=None, *, datapoints=DEFAULT_DATAPOINTS, entries=DEFAULT_ENTRIES,
                     all_entries=False, h=DEFAULT_H, burn_in_steps=0, reg=None,
                     layer_inputs=True):
    """Check the gradients of a recipe's model (rebuilt in float64).

    ``datapoints`` training examples form the batch; ``entries`` entries of
    every parameter, of the input and of every layer's input are compared
    (``all_entries`` compares all); ``burn_in_steps`` training steps come first;
    the L2 term is checked with ``reg`` (default: the recipe's reg, or 1.0 when
    the recipe has none). Returns a Result (command ``gradcheck``).
    """
    datapoints, entries, h = check_options(datapoints, entries, all_entries, h)
    burn_in_steps = NON_NEGATIVE_INT.check(burn_in_steps, "burn-in")
    recipe = common.seeded(recipe, seed)
    seed = recipe.seed
    result = common.new_result("gradcheck", recipe, seed, CHECKS)
    data, model = common.prepare(recipe, dtype=np.float64)
    if burn_in_steps:
        last = burn_in(model, recipe, data, int(burn_in_steps), seed)
        if not math.isfinite(last):
            _not_finite(result, last, f"after {burn_in_steps} burn-in steps")
            result.metrics = {"dtype": "float64", "burn_in": int(burn_in_steps)}
            return result
    X, y = checkable_datapoints(data.X_train, data.y_train, datapoints, common.stream(seed, "subset"))
    checker = ModelChecker(model, X, y, Differencer(h, common.stream(seed, "gradcheck"), entries),
                           layer_inputs)
    with np.errstate(all="ignore"):
        loss = checker.analytic_pass()
        if not math.isfinite(loss):
            _not_finite(result, loss, "at the checked parameters")
            result.metrics = {"dtype": "float64", "burn_in": int(burn_in_steps)}
            return result
        reports = checker.data_reports()
        if reg is None:
            reg = model.reg if model.reg > 0 else DEFAULT_REG_CHECK
        reports += checker.reg_reports(float(reg))
    add_findings(result, reports, model.has_kinks, model.names, checker.low_precision)
    result.metrics = report_metrics(reports, model.has_kinks, h, entries)
    result.metrics.update(datapoints=int(len(X)), burn_in=int(burn_in_steps), reg_checked=float(reg),
                          loss=loss)
    return result


__all__ = ["gradcheck_recipe", "gradcheck_layer", "relative_error", "band", "parse_shape",
           "parse_kwargs", "FAIL_BAND", "WARN_BAND", "EXCELLENT_BAND", "TINY", "CHECKS"]
