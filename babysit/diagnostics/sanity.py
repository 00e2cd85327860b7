"""sanity-loss: is the loss at initialization what it should be?

The first check of the CS231n protocol. With reg=0 and small random weights
every class gets about the same score, so

* softmax: the loss is ``ln C`` (every probability is 1/C);
* multiclass SVM: the loss is ``C - 1`` (every margin is 1).

A real init's scores are small but not zero, and their spread raises the loss
above ``ln C`` by an amount that varies from seed to seed (about ``ln C +
var/2`` for small spreads; a Xavier-initialized output layer adds 3-17% to
``ln C`` on the digits depending on the seed). Judging the loss against ``ln C``
alone would flip with the seed, so the two questions are asked apart, each
against a quantity that does not move with the seed:

* ``initial_loss``: is the loss what *these scores* give when the labels are
  independent of them? That value, ``given_scores``, is the loss averaged over
  every label weighted by the batch's class frequencies (``sum_c p_c *
  L(scores, c)``). A random init is a random function of the inputs, so its
  scores line up with the labels a little by chance: by up to 0.36 times the
  score spread on the digits and 0.8 times on the spiral (the worst of 40
  seeds, He or Xavier output layers). The measured loss must be finite and
  within ``tolerance * given_scores + CHANCE_ALIGNMENT * spread`` of it
  (default tolerance 10%), else ``initial_loss_unexpected``: the model already
  knows the labels (leakage) or the loss is computed wrong
  (``loss_not_finite`` when it is NaN/inf);
* ``score_scale``: how far the init's scale lifts the loss above ``ln C``
  (C - 1 for the SVM): ``scores_too_large`` warns when the per-example spread
  of the scores is above ``SCORE_SPREAD_LIMIT`` (1) and fails when the scores
  lift the expected loss by more than ``EXCESS_FAIL`` (it more than doubles);
  it names the layer whose init multiplies the scale up, or the
  preprocessing when the input itself is large;
* ``uniform_predictions``: the average softmax distribution gives no class more
  than twice its share 1/C (``predictions_not_uniform``);
* ``symmetry``: no hidden layer has all its units identical (zero or constant
  init: they get identical gradients forever, ``symmetric_weights``). The
  output layer may start symmetric: the labels break its symmetry;
* ``regularization``: with the L2 strength cranked up the loss must rise by a
  visible amount (``reg_no_effect``). The lecture cranks it to 1e3; here
  ``reg_used`` is the smallest power of ten making ``0.5*reg*sum(W**2)`` at
  least 10x the expected loss (1e3 when the weights are all zero), so the
  term dominates whatever the model's size.

Calibration (benchmarks/README.md): on every bundled recipe the verdict is the
same for seeds 0-9; the deviation from ``given_scores`` stays below 1.3% and
the spread below 0.2 on the healthy ones.
"""

from __future__ import annotations

import math

import numpy as np

from babysit.diagnostics import common
from babysit.engine.losses import softmax
from babysit.validation import POSITIVE, POSITIVE_INT

DEFAULT_TOLERANCE = 0.1   # relative deviation of the initial loss from what its scores give
DEFAULT_EXAMPLES = 1000   # size of the evaluation batch
SCORE_SPREAD_LIMIT = 1.0  # per-example std of the class scores (warn above)
EXCESS_FAIL = 1.0         # scores lifting the expected loss over 2x ln C (C - 1): fail
CHANCE_ALIGNMENT = 1.0    # nats per unit of score spread a random init may line up with labels
CLASS_SHARE_LIMIT = 2.0   # a class taking > 2/C of the probability mass
INPUT_RMS_LIMIT = 3.0     # preprocessed inputs should be about unit scale
GAIN_LIMIT = 2.0          # a layer multiplying the activation scale by more than this
LECTURE_REG = 1e3
MAX_REG = 1e12
REG_RISE_FRACTION = 0.1   # the loss must rise by at least 10% of the expected loss

CHECKS = {
    "initial_loss": ["loss_not_finite", "initial_loss_unexpected"],
    "score_scale": ["scores_too_large"],
    "uniform_predictions": ["predictions_not_uniform"],
    "symmetry": ["symmetric_weights"],
    "regularization": ["reg_no_effect"],
}


def rms(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def pick_reg(weight_sq: float, expected: float) -> float:
    """Smallest power of ten with ``reg * weight_sq >= 10 * expected`` (see module doc)."""
    if weight_sq <= 0.0 or not math.isfinite(weight_sq):
        return LECTURE_REG
    return float(min(MAX_REG, 10.0 ** math.ceil(math.log10(10.0 * expected / weight_sq))))


def identical_units(params: dict, weight_key: str, axis: int) -> bool:
    """All units of a layer (its ``params``) compute the same function (same weights and bias).

    ``axis`` indexes the units in the weight (the model protocol's ``units_axis``).
    """
    W = np.asarray(params[weight_key])
    if W.ndim < 2 or W.shape[axis] < 2:
        return False
    units = np.moveaxis(W, axis, 0)
    if not np.all(units == units[:1]):
        return False
    b = params.get("b", params.get("bias"))  # the engine's name, torch's name
    return b is None or np.ndim(b) != 1 or bool(np.all(b == b[0]))


class ScaleTrace:
    """Activation scale through the network: input rms, then each layer's rms and gain."""

    def __init__(self, model, X):
        self.input_rms = rms(X)
        self.rows = []
        previous = self.input_rms
        weighted = {model.layer_of(name) for name in model.weight_names}
        for name in model.names:
            out = model.outputs.get(name)
            if out is None:
                continue
            scale = rms(out)
            # 0 -> 0 has no gain (None); 0 -> something (a bias) is an infinite one.
            gain = scale / previous if previous > 0 else (None if scale == 0 else float("inf"))
            self.rows.append({"layer": name, "rms": scale, "gain": gain,
                              "weights": name in weighted
                              or any(np.ndim(p) >= 2 for p in model.params_of(name).values())})
            previous = scale

    def culprits(self) -> tuple[list, str | None]:
        """(reasons, layer to name): preprocessing and/or layers whose init blows the scale up."""
        reasons = []
        if self.input_rms > INPUT_RMS_LIMIT:
            reasons.append(f"the input has rms {self.input_rms:.3g} (want about 1: preprocessing "
                           "such as standardize is missing)")
        loud = [row for row in self.rows if row["weights"] and (row["gain"] or 0) > GAIN_LIMIT]
        for row in loud:
            reasons.append(f"{row['layer']} multiplies the activation scale by {row['gain']:.3g} "
                           "(its init is too large for its fan-in)")
        layer = loud[0]["layer"] if loud else None
        if not reasons:
            last = [row for row in self.rows if row["weights"]]
            if last:
                layer = last[-1]["layer"]
                reasons.append(f"{layer} passes a unit-scale signal on unchanged (gain "
                               f"{last[-1]['gain'] or 0:.3g}): the output layer should start with "
                               "small weights")
        return reasons, layer

    def metrics(self) -> list:
        return [{"layer": r["layer"], "rms": r["rms"], "gain": r["gain"]} for r in self.rows]


def softmax_mean(scores: np.ndarray) -> np.ndarray:
    """The average softmax distribution over the batch ``(C,)``."""
    return softmax(scores).mean(axis=0)


def loss_given_scores(loss_fn, scores: np.ndarray, y: np.ndarray) -> float:
    """The loss these scores give when the labels are independent of them.

    ``sum_c p_c * L(scores, every label = c)`` with ``p_c`` the batch's class
    frequencies: the init's own expected loss, whatever the spread of its scores.
    """
    num_classes = scores.shape[1]
    frequencies = np.bincount(y, minlength=num_classes) / len(y)
    return float(sum(frequencies[c] * loss_fn(scores, np.full(len(y), c))[0]
                     for c in range(num_classes) if frequencies[c] > 0))


def allowed_deviation(tolerance: float, spread: float, given: float) -> float:
    """The relative deviation from ``given`` (the loss the init's scores give) that
    passes: the tolerance, plus what scores of this spread line up with labels by chance."""
    return tolerance + CHANCE_ALIGNMENT * spread / given


def check_loss(result, loss: float, given: float | None, spread: float | None, tolerance: float,
               trace: ScaleTrace) -> None:
    if not math.isfinite(loss) or given is None:
        reasons, layer = trace.culprits()
        result.add("loss_not_finite", "fail", f"the initial loss is {loss} (reg=0)",
                   "; ".join(reasons) + ": fix the init scale or the preprocessing", layer,
                   loss=loss)
        return
    deviation = abs(loss - given) / given
    allowed = allowed_deviation(tolerance, spread, given)
    if deviation > allowed:
        direction = "above" if loss > given else "below"
        fix = ("the labels make the loss worse than these scores can explain: check that "
               "the labels line up with the inputs and that the loss is the recipe's" if loss > given else
               "a loss below what the init's scores give for unrelated labels means the model "
               "already knows the labels: check for label leakage in the inputs or a "
               "non-random init of the output layer")
        result.add("initial_loss_unexpected", "fail",
                   f"initial loss {loss:.4g} is {deviation:.0%} {direction} {given:.4g}, what the "
                   f"init's scores give for labels independent of them (allowed {allowed:.0%})",
                   fix, None, loss=loss, expected=given, deviation=deviation, allowed=allowed)


def score_spread(scores: np.ndarray) -> float:
    """The mean over examples of the per-example std of the class scores."""
    return float(np.mean(np.std(scores, axis=1)))


def check_scores(result, spread: float, trace: ScaleTrace, given: float, base: float) -> None:
    excess = given / base - 1.0
    if spread > SCORE_SPREAD_LIMIT or excess > EXCESS_FAIL:
        reasons, layer = trace.culprits()
        result.add("scores_too_large", "fail" if excess > EXCESS_FAIL else "warn",
                   f"class scores at init have a spread of {spread:.3g} per example "
                   f"(want < {SCORE_SPREAD_LIMIT:g}), which lifts the expected loss to "
                   f"{given:.4g} from {base:.4g}: " + "; ".join(reasons),
                   "scale the inputs to about unit variance and start the last layer with "
                   "small weights (init: small), the other layers with xavier/he",
                   layer, spread=spread, input_rms=trace.input_rms, excess=excess)


def check_uniform(result, scores: np.ndarray, y: np.ndarray) -> float:
    num_classes = scores.shape[1]
    mean = softmax_mean(scores)
    top = int(np.argmax(mean))
    share = float(mean[top])
    if share > CLASS_SHARE_LIMIT / num_classes:
        counts = np.bincount(np.argmax(scores, axis=1), minlength=num_classes)
        result.add("predictions_not_uniform", "warn",
                   f"class {top} takes {share:.0%} of the predicted probability at init "
                   f"(uniform: {1 / num_classes:.0%}); it is the argmax for "
                   f"{counts[top] / len(y):.0%} of the examples",
                   "every class should start equally likely: center the inputs (a shared "
                   "positive input drives one class up for every example) and keep the "
                   "output layer's bias at 0", None, share=share, argmax_counts=counts)
    return share


def check_symmetry(result, model) -> list:
    layer_params = {name: model.params_of(name) for name in model.names}
    weighted = [(name, params) for name, params in layer_params.items()
                if any(np.ndim(p) >= 2 for p in params.values())]
    regularized = {}
    axes = {}
    for param in model.weight_names:
        layer = model.layer_of(param)
        # the weight's key within its layer (params_of holds the same arrays)
        key = next((k for k, v in layer_params.get(layer, {}).items() if v is model.params[param]),
                   None)
        if key is not None:
            regularized.setdefault(layer, []).append(key)
            axes[(layer, key)] = model.units_axis(param)
    symmetric = []
    for name, params in weighted[:-1]:  # the labels break the output layer's symmetry
        keys = [k for k in regularized.get(name) or params if np.ndim(params[k]) >= 2]
        if keys and all(identical_units(params, k, axes.get((name, k), 0)) for k in keys):
            value = float(np.asarray(params[keys[0]]).flat[0])
            symmetric.append(name)
            result.add("symmetric_weights", "fail",
                       f"all units of {name} have identical weights (every entry {value:g}"
                       + (")" if np.all(params[keys[0]] == value) else " per unit)")
                       + ": they get identical gradients and stay copies of each other",
                       "break the symmetry with a random init (xavier or he) for hidden layers",
                       name, value=value)
    return symmetric


def check_reg(result, model, X, y, loss: float, expected: float, reg: float | None):
    weight_sq = sum(0.5 * float(np.sum(np.asarray(model.params[n], np.float64) ** 2))
                    for n in model.weight_names)
    reg_used = pick_reg(weight_sq, expected) if reg is None else POSITIVE.check(reg, "reg")
    with model.replay_randomness():  # same dropout mask: only the L2 term differs
        loss_with_reg, _ = model.loss(X, y, reg=reg_used)
    rise = loss_with_reg - loss
    if math.isfinite(loss) and not (rise >= REG_RISE_FRACTION * expected):
        if not model.weight_names:
            why = "no parameter is regularized (no layer declares weight_names)"
        elif weight_sq == 0.0:
            why = "every regularized weight is 0, so the L2 term is 0"
        else:
            why = f"sum(W**2)/2 is only {weight_sq:.3g}"
        result.add("reg_no_effect", "fail",
                   f"raising reg to {reg_used:g} moved the loss from {loss:.4g} to "
                   f"{loss_with_reg:.4g}: {why}",
                   "initialize the weights randomly and make sure every weight matrix is in "
                   "the L2 term (weight_names)", None, rise=rise, weight_sq=weight_sq)
    return loss_with_reg, reg_used


def sanity_loss(recipe, seed=None, *, examples=DEFAULT_EXAMPLES, tolerance=DEFAULT_TOLERANCE,
                reg=None):
    """The initial-loss sanity check (see the module doc). Returns a Result."""
    examples = POSITIVE_INT.check(examples, "examples")
    tolerance = POSITIVE.check(tolerance, "tolerance")
    recipe = common.seeded(recipe, seed)
    seed = recipe.seed
    result = common.new_result("sanity-loss", recipe, seed, CHECKS)
    data, model = common.prepare(recipe)
    X, y = common.subset(data.X_train, data.y_train, examples, common.stream(seed, "subset"))
    expected = float(model.loss_fn.expected_initial_loss(model.num_classes))
    with np.errstate(all="ignore"):  # a blown-up init is a finding, not a warning
        with model.recording():
            loss, _ = model.loss(X, y, reg=0.0)
            scores = np.asarray(model.outputs[model.names[-1]], dtype=np.float64)
            trace = ScaleTrace(model, X)
        given = spread = share = None
        if common.all_finite(scores):
            given, spread = loss_given_scores(model.loss_fn, scores, y), score_spread(scores)
            given = given if math.isfinite(given) else None
        check_loss(result, loss, given, spread, tolerance, trace)
        if given is not None:
            check_scores(result, spread, trace, given, expected)
            share = check_uniform(result, scores, y)
        check_symmetry(result, model)
        loss_with_reg, reg_used = check_reg(result, model, X, y, loss, expected, reg)
    result.metrics = {
        "initial_loss": loss, "expected_loss": expected, "loss_with_reg": loss_with_reg,
        "reg_used": reg_used, "loss_kind": getattr(model.loss_fn, "kind", None),
        "num_classes": model.num_classes, "tolerance": tolerance, "given_scores": given,
        "deviation": abs(loss - given) / given if math.isfinite(loss) and given else None,
        "score_spread": spread, "max_class_share": share, "input_rms": trace.input_rms,
        "examples": int(len(X)), "layers": trace.metrics(),
    }
    return result


__all__ = ["sanity_loss", "pick_reg", "allowed_deviation", "CHECKS", "DEFAULT_TOLERANCE"]
