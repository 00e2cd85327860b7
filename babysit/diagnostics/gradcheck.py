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

import functools
import json
import math
from dataclasses import dataclass, field

import numpy as np

from babysit.diagnostics import common
from babysit.errors import BabysitError, ModelError
from babysit.validation import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT

FAIL_BAND = 1e-2
WARN_BAND = 1e-4
EXCELLENT_BAND = 1e-7
TINY = 1e-10
EPS = float(np.finfo(np.float64).eps)
RESOLUTION_ULPS = 8
DEFAULT_H = 1e-5
DEFAULT_DATAPOINTS = 3
DEFAULT_ENTRIES = 10
# L2 strength for checking the regularization term when the recipe has none.
DEFAULT_REG_CHECK = 1.0

CHECKS = {
    "gradients": ["gradient_mismatch", "gradient_suspicious", "loss_not_finite"],
    "kinks": ["kink_crossed"],
    "float_range": ["gradient_tiny"],
}


def relative_error(analytic: float, numerical: float) -> float:
    """``|a - n| / max(|a|, |n|)``; 0 when both are exactly 0."""
    scale = max(abs(analytic), abs(numerical))
    return 0.0 if scale == 0.0 else abs(analytic - numerical) / scale


def band(rel_error: float | None, has_kinks: bool) -> str:
    """``excellent`` / ``good`` / ``suspicious`` / ``fail`` for a worst relative error."""
    if rel_error is None or rel_error < EXCELLENT_BAND:
        return "excellent"
    if rel_error <= WARN_BAND:
        return "good"
    if rel_error <= FAIL_BAND and has_kinks:
        return "suspicious"
    return "fail"


# ---------------------------------------------------------------------------
# One checked array


@dataclass
class Entry:
    """One sampled entry: where, both gradients, and how it was judged.

    ``floor`` is the float64 resolution of the numerical estimate,
    ``RESOLUTION_ULPS * eps * |f| / h``: f(x+h) and f(x-h) each carry a rounding
    error of about an ulp of |f|, which the difference divides by 2h. The
    judged error discounts it, ``max(0, |a - n| - floor) / max(|a|, |n|)``:
    without that, a structurally zero gradient (a bias right before a
    batchnorm: 1e-16 analytically, 1e-10 of rounding noise numerically), a
    saturated tanh net's 1e-9 gradients, or one weight's share of a large L2
    term would fail a correct backward. Bugs differ by far more than it.
    """

    index: tuple
    analytic: float
    numerical: float
    kink: bool = False
    floor: float = 0.0

    @property
    def scale(self) -> float:
        return max(abs(self.analytic), abs(self.numerical))

    @property
    def zero(self) -> bool:
        """Both gradients are 0 as far as float64 can tell."""
        return self.scale <= self.floor

    @property
    def tiny(self) -> bool:
        """Resolvable but below ``TINY``: float range trouble, not judged."""
        return not self.zero and self.scale < TINY

    @property
    def judged(self) -> bool:
        return not (self.kink or self.tiny)

    @property
    def raw_error(self) -> float:
        """The textbook ``|a - n| / max(|a|, |n|)``, 0 when both are 0 to float64's resolution."""
        if self.zero:
            return 0.0
        return relative_error(self.analytic, self.numerical)

    @property
    def rel_error(self) -> float:
        """The judged error: the textbook one beyond the numerical resolution."""
        if self.zero:
            return 0.0
        return max(0.0, abs(self.analytic - self.numerical) - self.floor) / self.scale


@dataclass
class Report:
    """The entries checked for one array (a parameter, an input, a regularized weight).

    ``kind`` is ``param``, ``input`` (the gradient a layer's backward returns
    for its input) or ``reg`` (the L2 term alone).
    """

    name: str
    kind: str
    layer: str | None
    entries: list = field(default_factory=list)
    grad_max: float = 0.0  # max |analytic| over the whole array, not just the sample

    @property
    def vanishing(self) -> bool:
        """Nothing verified: the whole analytic gradient is below ``TINY`` and no
        sampled entry had a numerical gradient float64 could resolve either."""
        return (bool(self.entries) and self.grad_max < TINY
                and all(e.zero or e.tiny for e in self.entries))

    @property
    def judged(self) -> list:
        return [e for e in self.entries if e.judged]

    @property
    def worst(self) -> Entry | None:
        judged = self.judged
        return max(judged, key=lambda e: (e.rel_error, e.raw_error)) if judged else None

    @property
    def judged_rel_error(self) -> float | None:
        """The worst judged error (beyond the numerical resolution): what the bands apply to."""
        worst = self.worst
        return None if worst is None else worst.rel_error

    @property
    def max_rel_error(self) -> float | None:
        """The worst textbook relative error over the judged entries (what people compare)."""
        judged = self.judged
        return max(e.raw_error for e in judged) if judged else None

    @property
    def kinks(self) -> int:
        return sum(e.kink for e in self.entries)

    @property
    def tiny(self) -> int:
        return sum(e.tiny for e in self.entries if not e.kink)

    def verdict(self, has_kinks: bool) -> str:
        return band(self.judged_rel_error, has_kinks)

    def to_metrics(self) -> dict:
        worst = self.worst
        return {"max_rel_error": self.max_rel_error,
                "judged_rel_error": self.judged_rel_error,
                "checked": len(self.entries), "kinks": self.kinks, "tiny": self.tiny,
                "grad_max": self.grad_max,
                "analytic": None if worst is None else worst.analytic,
                "numerical": None if worst is None else worst.numerical,
                "index": None if worst is None else list(worst.index)}


def same_state(a, b) -> bool:
    """Two ``Model.kink_state()`` lists took the same branch everywhere."""
    return all((x is None and y is None) or (x is not None and y is not None
                                              and np.array_equal(x, y))
               for x, y in zip(a, b))


def snapshot(state) -> list:
    return [None if s is None else np.array(s, copy=True) for s in state]


class Differencer:
    """Centered differences of a scalar function, one sampled entry at a time.

    ``loss()`` recomputes the function from the current value of ``array``;
    ``kinks()`` returns the branch record of the last evaluation (or None when
    the function is smooth).
    """

    def __init__(self, h: float, rng: np.random.Generator, entries: int | None):
        self.h = h
        self.rng = rng
        self.entries = entries  # None: every entry

    def sample(self, shape) -> list[tuple]:
        size = int(math.prod(shape))
        if self.entries is None or self.entries >= size:
            flat = np.arange(size)
        else:
            flat = np.sort(self.rng.choice(size, size=self.entries, replace=False))
        return [tuple(int(i) for i in idx) for idx in zip(*np.unravel_index(flat, shape))]

    def check(self, report: Report, array: np.ndarray, analytic: np.ndarray, loss,
              kinks=None) -> Report:
        h = self.h
        report.grad_max = float(np.max(np.abs(analytic))) if analytic.size else 0.0
        for idx in self.sample(array.shape):
            old = array[idx]
            array[idx] = old + h
            plus = loss()
            state_plus = snapshot(kinks()) if kinks else None
            array[idx] = old - h
            minus = loss()
            state_minus = kinks() if kinks else None
            array[idx] = old
            # Only x+h against x-h: layers before a layer-input check keep the
            # (identical) state of an earlier pass, so a third reference would lie.
            crossed = kinks is not None and not same_state(state_plus, state_minus)
            floor = RESOLUTION_ULPS * EPS * max(abs(plus), abs(minus)) / h
            report.entries.append(Entry(idx, float(analytic[idx]), (plus - minus) / (2 * h),
                                        crossed, floor))
        return report


# ---------------------------------------------------------------------------
# Checking a model


class ProjectionLoss:
    """``sum(out * R)`` for a fixed random ``R``: turns any layer into a scalar function.

    Its gradient with respect to ``out`` is ``R`` itself, so ``backward(R)`` must
    equal the numerical gradient of the projection.
    """

    kind = "projection"
    has_kinks = False

    def __init__(self, projection: np.ndarray):
        self.projection = projection

    def __call__(self, out, y=None):
        out = np.asarray(out)
        if out.shape != self.projection.shape:
            raise ModelError(f"forward returned shape {out.shape}, but the same input gave "
                             f"{self.projection.shape} before")
        return float(np.sum(out * self.projection)), self.projection.copy()

    def kink_state(self):
        return None


def _suffix(index: tuple) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


class ModelChecker:
    """Runs every check on one float64 model and one batch ``(X, y)``."""

    def __init__(self, model, X, y, differencer: Differencer, layer_inputs: bool = True):
        self.model = model
        self.X = np.array(X, dtype=np.float64)
        self.y = y
        self.diff = differencer
        self.layer_inputs = layer_inputs

    def analytic_pass(self):
        """Train-mode loss and gradients with reg=0 (this draws the dropout masks)."""
        model = self.model
        with model.recording():
            loss, grads = model.loss(self.X, self.y, reg=0.0)
            # inputs[p] / input_grads[p]: what enters layer p and dLoss/d(that).
            self.inputs = [self.X] + [np.array(model.outputs[name], dtype=np.float64)
                                      for name in model.names[:-1]]
            self.input_grads = [np.array(model.input_grad, dtype=np.float64)] + [
                np.array(model.output_grads[name], dtype=np.float64) for name in model.names[:-1]]
        self.loss = loss
        self.grads = {name: np.array(g, dtype=np.float64) for name, g in grads.items()}
        return loss

    def loss_from(self, start: int) -> float:
        """The data loss computed from layer ``start``'s input (train mode, replayed).

        Layers before ``start`` are not rerun: nothing they depend on changes.
        """
        out = self.model.forward_from(start, self.inputs[start], True)
        return self.model.loss_fn(out, self.y)[0]

    def data_reports(self) -> list[Report]:
        """Layer inputs and parameters, in layer order (the model's input first)."""
        model, diff = self.model, self.diff
        kinks = model.kink_state if model.has_kinks else None
        reports = []
        with model.replay_randomness():
            for position, (name, layer) in enumerate(zip(model.names, model.layers)):
                loss = functools.partial(self.loss_from, position)
                if position == 0 or self.layer_inputs:
                    report = Report("input" if position == 0 else f"{name} input", "input", name)
                    reports.append(diff.check(report, self.inputs[position],
                                              self.input_grads[position], loss, kinks))
                index = name.split(".", 1)[0]
                for key in layer.params:
                    param = f"{index}.{key}"
                    reports.append(diff.check(Report(param, "param", name), model.params[param],
                                              self.grads[param], loss, kinks))
        return reports

    def reg_reports(self, reg: float) -> list[Report]:
        """The L2 term ``0.5 * reg * sum(W**2)`` alone, against its gradient ``reg * W``.

        The term is a sum over weights, so each weight is checked against its own
        share (the sum narrowed to it): the same derivative, a value small
        enough for float64 to resolve one entry's change, and no pass over
        every weight of a large model per evaluation.
        """
        model = self.model
        _, grads = model.reg_loss(reg)
        reports = []
        for param in model.weight_names:
            report = Report(param, "reg", model.layer_of(param))
            reports.append(self.diff.check(report, model.params[param], grads[param],
                                           functools.partial(self.reg_share, reg, param)))
        return reports

    def reg_share(self, reg: float, param: str) -> float:
        """The L2 term of one weight array alone."""
        return self.model.reg_loss(reg, names=[param])[0]


# ---------------------------------------------------------------------------
# Findings


def _diagnose(report: Report) -> str:
    """What a wrong gradient looks like: missing, wrong sign, off by a factor."""
    bad = [e for e in report.judged if e.rel_error > WARN_BAND]
    if bad and all(e.analytic == 0.0 for e in bad):
        return "the analytic gradient is 0 where the numerical one is not: backward never writes it"
    ratios = np.array([e.analytic / e.numerical for e in bad if e.numerical != 0.0])
    if len(ratios) and np.all(np.abs(ratios - ratios[0]) <= 0.05 * abs(ratios[0])):
        ratio = float(np.median(ratios))
        if abs(ratio + 1) < 0.05:
            return "the analytic gradient has the wrong sign"
        if abs(ratio - 1) < 0.01:
            return "close but not within the band (a small missing term, or float precision)"
        return f"the analytic gradient is {ratio:.3g} times the numerical one (a wrong factor)"
    some = len(bad) < len(report.judged)
    if len(ratios) and np.any(ratios < 0):
        return ("the sign is wrong on some entries" + (", others agree" if some else "")
                + " (a wrong branch, e.g. one side of a kink)")
    if some:
        return "some entries agree and others do not (a wrong branch or a wrong index)"
    return "the entries are off by varying factors (a wrong formula or a wrong index)"


class Blame:
    """Where a wrong gradient enters, from the layer-input checks around it.

    The gradient arriving at layer p's output is checked as the input of layer
    p+1 (the last layer's comes from the loss). When that one is right and
    something of layer p is wrong, layer p's own backward is the culprit;
    otherwise layer p merely inherits an error from deeper down.
    """

    def __init__(self, reports: list[Report], order: list[str], has_kinks: bool):
        self.order = order
        self.input_ok = {r.layer: r.verdict(has_kinks) not in ("suspicious", "fail")
                         for r in reports if r.kind == "input"}

    def output_ok(self, layer: str) -> bool | None:
        """Whether the gradient arriving at ``layer``'s output checks out (None: unknown)."""
        if layer not in self.order:
            return None
        position = self.order.index(layer)
        if position == len(self.order) - 1:
            return True
        return self.input_ok.get(self.order[position + 1])

    def culprit(self) -> str | None:
        """The deepest layer whose returned dx is wrong while its dout is right."""
        for layer in reversed(self.order):
            if self.input_ok.get(layer) is False and self.output_ok(layer):
                return layer
        return None

    def fix(self, report: Report) -> str:
        if report.kind == "reg":
            return ("the L2 gradient of every weight in weight_names must be reg * W (and the "
                    "term 0.5 * reg * sum(W**2))")
        layer = report.layer
        ok = self.output_ok(layer)
        if ok is False:
            deeper = self.culprit()
            return (f"not {layer}'s fault: the gradient arriving at its output is already "
                    "wrong" + (f"; correct the backward of {deeper} first" if deeper else ""))
        what = "the dx it returns" if report.kind == "input" else \
            f"the gradient of {report.name.split('.', 1)[-1]} it writes into grads"
        sure = " (the gradient arriving at its output checks out)" if ok else ""
        return f"correct the backward of {layer}: {what} is wrong{sure}"


def add_findings(result, reports: list[Report], has_kinks: bool, order: list[str]) -> None:
    blame = Blame(reports, order, has_kinks)
    for report in reports:
        worst = report.worst
        verdict = report.verdict(has_kinks)
        if worst is None or verdict not in ("suspicious", "fail"):
            continue
        what = {"param": "gradient", "input": "input gradient", "reg": "L2 gradient"}[report.kind]
        message = (f"{report.name}: {what} relative error {worst.rel_error:.3g} at "
                   f"{_suffix(worst.index)} (analytic {worst.analytic:.6g}, "
                   f"numerical {worst.numerical:.6g}); {_diagnose(report)}")
        evidence = dict(report.to_metrics(), check=report.kind, name=report.name)
        if verdict == "fail":
            code = "gradient_mismatch" if worst.rel_error > FAIL_BAND else "gradient_suspicious"
            if code == "gradient_suspicious":
                message += " (the model has no kinks, so errors above 1e-4 are bugs)"
            result.add(code, "fail", message, blame.fix(report), report.layer, **evidence)
        else:
            result.add("gradient_suspicious", "warn", message,
                       "rerun with --h 1e-6 or fewer --datapoints; if it persists, "
                       + blame.fix(report), report.layer, **evidence)
    crossed = {r.name: r.kinks for r in reports if r.kinks}
    if crossed:
        blind = [r.name for r in reports if r.entries and not r.judged and r.kinks]
        listing = ", ".join(f"{name} ({count})" for name, count in crossed.items())
        message = f"kinks crossed by x+h/x-h, entries excluded: {listing}"
        if blind:
            message += f"; nothing left to judge for {', '.join(blind)}"
        result.add("kink_crossed", "warn" if blind else "info", message,
                   "expected near ReLU/max boundaries; use fewer --datapoints or a smaller --h "
                   "to cross fewer kinks", None, crossed=crossed)
    vanishing = {r.name: r.grad_max for r in reports if r.vanishing}
    tiny = {r.name: r.tiny for r in reports if r.tiny}
    if vanishing or tiny:
        # Float range trouble shows as whole arrays of tiny gradients; a stray
        # tiny entry (a nearly dead unit) is only worth a note.
        # A whole array below 1e-10 is usually structural (a bias right before a
        # batchnorm, an SVM bias on a class-balanced batch): nothing verified, a note.
        mostly = [r.name for r in reports if r.tiny and 2 * r.tiny >= len(r.entries)]
        parts = []
        if vanishing:
            parts.append("nothing verified, the whole gradient is below %g: %s" % (TINY, ", ".join(
                f"{name} (max {value:.2g})" for name, value in vanishing.items())))
        if tiny:
            parts.append(f"entries with both gradients below {TINY:g}, not judged: "
                         + ", ".join(f"{name} ({count})" for name, count in tiny.items()))
        result.add("gradient_tiny", "warn" if mostly else "info", "; ".join(parts),
                   "gradients this small lose their digits or mean the array hardly affects "
                   "the loss: check the scale of the inputs, the init and the loss (a bias "
                   "right before a batchnorm gets no gradient at all: drop it)",
                   None, tiny=tiny, vanishing=vanishing)


# ---------------------------------------------------------------------------
# Entry points


def _options(datapoints, entries, all_entries, h) -> tuple:
    datapoints = POSITIVE_INT.check(datapoints, "datapoints")
    entries = None if all_entries else POSITIVE_INT.check(entries, "entries")
    return datapoints, entries, POSITIVE.check(h, "h")


def _metrics(reports: list[Report], has_kinks: bool, h: float, entries) -> dict:
    params = {r.name: r.to_metrics() for r in reports if r.kind == "param"}
    inputs = [r for r in reports if r.kind == "input"]
    return {"dtype": "float64", "h": h, "entries": entries if entries is not None else "all",
            "has_kinks": has_kinks, "params": params,
            "input": inputs[0].to_metrics() if inputs else None,
            "layer_inputs": {r.layer: r.to_metrics() for r in inputs[1:]},
            "reg": {r.name: r.to_metrics() for r in reports if r.kind == "reg"}}


def _not_finite(result, loss: float, when: str) -> None:
    result.add("loss_not_finite", "fail", f"the loss is {loss} {when}: nothing can be checked",
               "run sanity-loss and lr-probe first (the init or the LR makes the loss blow up)",
               None, loss=loss)


def burn_in(model, recipe, data, steps: int, seed: int) -> float:
    """``steps`` training steps with the recipe's optimizer at its first LR; the last loss."""
    from babysit.engine.solver import Solver

    optim = common.section_dict(recipe.optim)
    train = common.section_dict(recipe.train)
    solver = Solver(model, optim, int(train.get("batch_size") or 100), common.stream(seed, "batches"))
    state = solver.run(data.X_train, data.y_train, steps=steps, lr=float(solver.lr_at(0)))
    return float(state.loss)


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
    datapoints, entries, h = _options(datapoints, entries, all_entries, h)
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
    X, y = common.subset(data.X_train, data.y_train, datapoints, common.stream(seed, "subset"))
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
    add_findings(result, reports, model.has_kinks, model.names)
    result.metrics = _metrics(reports, model.has_kinks, h, entries)
    result.metrics.update(datapoints=int(len(X)), burn_in=int(burn_in_steps), reg_checked=float(reg),
                          loss=loss)
    return result


def parse_shape(text) -> tuple:
    """``"4,10"`` -> ``(4, 10)``: a batch size and a per-example shape, all >= 1."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise BabysitError(f"--input-shape must be whole numbers separated by commas "
                               f"(N,D or N,C,H,W), got {text!r}") from None
    else:
        try:
            shape = tuple(int(p) for p in text)
        except (TypeError, ValueError):
            raise BabysitError(f"input shape must be a sequence of whole numbers, got {text!r}") from None
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise BabysitError(f"input shape needs a batch size and at least one dimension, all >= 1 "
                           f"(e.g. 4,10 or 2,3,8,8), got {text!r}")
    return shape


def parse_kwargs(text) -> dict:
    """``--kwargs`` JSON object -> dict (BabysitError naming the problem otherwise)."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BabysitError(f"--kwargs is not valid JSON ({exc.msg} at character {exc.pos}): "
                           f"{text!r}") from None
    if not isinstance(value, dict):
        raise BabysitError(f"--kwargs must be a JSON object like '{{\"out\": 5}}', got {text!r}")
    return value


def make_layer(layer_cls, kwargs, input_shape, rng):
    """Instantiate and (when it can) build a user's layer with float64 parameters."""
    from babysit.engine.init import get_initializer
    from babysit.engine.model import check_layer_object, import_object

    if isinstance(layer_cls, str):
        layer_cls = import_object(layer_cls)
    label = getattr(layer_cls, "__name__", repr(layer_cls))
    if not callable(layer_cls):
        raise ModelError(f"{label} is not a class (expected pkg.module:Class)")
    try:
        layer = layer_cls(**kwargs)
    except Exception as exc:  # anything the user's constructor raises is their input
        raise ModelError(f"{label}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
                         f"{type(exc).__name__}: {exc}") from None
    check_layer_object(layer, label)
    if hasattr(layer, "rng") or getattr(layer, "uses_randomness", False):
        layer.rng = rng
    build = getattr(layer, "build", None)
    if callable(build):
        try:
            build(tuple(input_shape[1:]), rng, np.float64, get_initializer("xavier"), 0.0)
        except Exception as exc:
            raise ModelError(f"{label}.build(input shape {tuple(input_shape[1:])}) failed: "
                             f"{type(exc).__name__}: {exc}") from None
    for key, value in list(layer.params.items()):
        layer.params[key] = np.array(value, dtype=np.float64)
        layer.grads[key] = np.zeros_like(layer.params[key])
    return layer, label


def _call(label: str, what: str, fn):
    try:
        return fn()
    except BabysitError:
        raise
    except Exception as exc:  # a user's layer failing is bad input, not our bug
        raise ModelError(f"{label}.{what} raised {type(exc).__name__}: {exc}") from None


def gradcheck_layer(layer_cls, kwargs, input_shape, seed=0, *, entries=DEFAULT_ENTRIES,
                    all_entries=False, h=DEFAULT_H):
    """Check a standalone layer: ``layer_cls(**kwargs)`` on a random input of ``input_shape``.

    ``layer_cls`` is a class or ``"pkg.module:Class"``; ``input_shape`` is
    ``(N, *per_example_shape)``. The layer is wrapped in the scalar function
    ``sum(forward(x) * R)`` for a fixed random ``R`` in float64; its parameters
    are float64 copies (built with xavier weights and zero bias when the layer
    has ``build``). Returns a Result (command ``gradcheck``).
    """
    from babysit.engine.model import Model

    _, entries, h = _options(1, entries, all_entries, h)
    seed = 0 if seed is None else int(seed)
    shape = parse_shape(input_shape)
    kwargs = parse_kwargs(kwargs)
    rng = common.stream(seed, "projection")
    layer, label = make_layer(layer_cls, kwargs, shape, rng)
    X = rng.standard_normal(shape)
    out = _call(label, "forward", lambda: layer.forward(X.copy(), True))
    out = np.asarray(out)
    if out.ndim < 1 or out.shape[0] != shape[0]:
        raise ModelError(f"{label}.forward must keep the batch dimension first: input {shape}, "
                         f"output {out.shape}")
    if not np.issubdtype(out.dtype, np.floating) or not np.all(np.isfinite(out)):
        raise ModelError(f"{label}.forward returned non-finite or non-float values "
                         f"(dtype {out.dtype}) for a standard normal input")
    projection = rng.standard_normal(out.shape)
    kind = getattr(layer, "kind", None) or label
    model = Model([layer], ProjectionLoss(projection), 0.0, shape[1:], int(math.prod(out.shape[1:])),
                  np.float64, names=[f"0.{kind}"])
    y = np.zeros(shape[0], dtype=np.int64)
    checker = ModelChecker(model, X, y, Differencer(h, common.stream(seed, "gradcheck"), entries))
    with np.errstate(all="ignore"):
        _call(label, "backward", checker.analytic_pass)
        _check_layer_grads(layer, label, checker, X)
        reports = _call(label, "forward", checker.data_reports)
    for report in reports:  # the wrapper's "0." prefix means nothing to the user
        report.name = report.name.split(".", 1)[1] if report.kind == "param" else report.name
        report.layer = label
    result = common.new_result("gradcheck", None, seed, CHECKS)
    has_kinks = model.has_kinks
    add_findings(result, reports, has_kinks, [label])
    result.metrics = _metrics(reports, has_kinks, h, entries)
    result.metrics.update(layer=label, kwargs=kwargs, input_shape=list(shape))
    return result


def _check_layer_grads(layer, label: str, checker: ModelChecker, X) -> None:
    dx = checker.model.input_grad
    if dx is None or np.shape(dx) != X.shape:
        raise ModelError(f"{label}.backward returned dx of shape {np.shape(dx) if dx is not None else None}, "
                         f"but the input has shape {X.shape}")
    for key, value in layer.params.items():
        grad = layer.grads.get(key)
        if grad is None or np.shape(grad) != value.shape:
            raise ModelError(f"{label}.backward must fill grads[{key!r}] with shape {value.shape}, "
                             f"got {None if grad is None else np.shape(grad)}")


__all__ = ["gradcheck_recipe", "gradcheck_layer", "relative_error", "band", "parse_shape",
           "parse_kwargs", "FAIL_BAND", "WARN_BAND", "EXCELLENT_BAND", "TINY", "CHECKS"]
