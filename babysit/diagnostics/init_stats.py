"""init-stats: one batch through the model at initialization, layer by layer.

The lecture's experiment (CS231n lecture 6, "weight initialization"): push one
batch through the freshly initialized network and look at each layer's output
(mean, std, histogram) and at the gradients flowing back. Too small an init
makes the activations shrink geometrically to zero with depth; too large an
init saturates tanh/sigmoid units; a negative bias (or a bad init) kills ReLUs.

Thresholds (documented in the README):

* ``activation_collapse``: along the hidden activations (outputs of the
  nonlinearities, after the input), from the largest std to the last layer
  (at least two layers), the std shrinks by more than ``SHRINK_RATIO`` per
  layer on (geometric) average and by a factor below ``COLLAPSE_WARN`` (warn)
  or ``COLLAPSE_FAIL`` (fail) in total;
* ``activation_explosion``: the same for growth from the smallest std
  (``GROW_RATIO`` per layer, ``EXPLOSION_WARN`` / ``EXPLOSION_FAIL`` in
  total), or non-finite outputs (fail);
* ``activation_saturation``: a tanh/sigmoid layer with more than
  ``SATURATION_WARN`` (warn) / ``SATURATION_FAIL`` (fail) of its outputs saturated;
* ``dead_relu``: more than ``DEAD_WARN`` (warn) / ``DEAD_FAIL`` (fail) of a
  ReLU layer's units never active over the batch;
* ``vanishing_gradient`` / ``exploding_gradient``: ratio of the RMS gradient at
  the first hidden activation to the RMS gradient at the last one, below
  ``VANISHING_WARN`` / ``VANISHING_FAIL`` or above ``EXPLODING_WARN`` /
  ``EXPLODING_FAIL`` (needs two hidden activation layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from babysit.diagnostics import common
from babysit.diagnostics.monitors import NONLINEAR_KINDS, LayerStats, model_layer_stats
from babysit.diagnostics.result import Finding
from babysit.errors import BabysitError
from babysit.recipes.schema import MODULE_INIT
from babysit.validation import POSITIVE_INT

SHRINK_RATIO = 0.75
COLLAPSE_WARN = 0.05
COLLAPSE_FAIL = 1e-3
GROW_RATIO = 1.33
EXPLOSION_WARN = 20.0
EXPLOSION_FAIL = 1e3
SATURATION_WARN = 0.10
SATURATION_FAIL = 0.50
DEAD_WARN = 0.20
DEAD_FAIL = 0.40
VANISHING_WARN = 1e-2
VANISHING_FAIL = 1e-4
EXPLODING_WARN = 1e2
EXPLODING_FAIL = 1e4

CHECKS = {
    "activation_scale": ["activation_collapse", "activation_explosion"],
    "saturation": ["activation_saturation"],
    "dead_relu": ["dead_relu"],
    "gradient_flow": ["vanishing_gradient", "exploding_gradient"],
}

FIX_INIT = "use Xavier (randn/sqrt(fan_in)) for tanh/sigmoid, He (randn*sqrt(2/fan_in)) for ReLU"
FIXES = {
    "activation_collapse": f"the init is too small: {FIX_INIT} (model.init), or add batchnorm",
    "activation_explosion": f"the init is too large: {FIX_INIT} (model.init), or add batchnorm",
    "activation_saturation": f"the init is too large (or the inputs are not standardized): "
                             f"{FIX_INIT}; standardize the data (data.preprocess: [standardize])",
    "dead_relu": "the units never fire: use a zero or slightly positive bias (e.g. bias: 0.01), He "
                 "init, a lower learning rate, or leaky_relu",
    "vanishing_gradient": f"{FIX_INIT}; avoid saturated units; add batchnorm",
    "exploding_gradient": f"{FIX_INIT}; lower the init scale; add batchnorm",
}


@dataclass
class InitMeasurement:
    """What one batch through one initialization showed."""

    label: str
    input_std: float
    layers: list  # [LayerStats] in model order
    findings: list = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Metrics rows: the spec's keys plus ``std_ratio`` (to the previous layer, input first)."""
        rows, previous = [], self.input_std
        for stats in self.layers:
            row = stats.to_dict()
            row["std_ratio"] = stats.std / previous if previous > 0 else None
            previous = stats.std
            rows.append(row)
        return rows


def activation_rows(layers: list) -> list[int]:
    """Indexes of the hidden activations the depth-wise checks follow.

    Outputs of nonlinear layers; for a model without any, the outputs of every
    layer but the last. The last layer (the class scores) is never included.
    ``layers`` holds LayerStats or metrics rows (dicts with ``"layer"``, whose
    kind is the part of an engine layer name after the index when the row
    carries no ``"kind"``).
    """
    kinds = [s.kind if isinstance(s, LayerStats) else s.get("kind") or s["layer"].split(".", 1)[-1]
             for s in layers]
    hidden = list(range(len(kinds) - 1))
    chain = [i for i in hidden if kinds[i] in NONLINEAR_KINDS]
    return chain or hidden


def activation_chain(layers: list[LayerStats]) -> list[LayerStats]:
    """The LayerStats of :func:`activation_rows`."""
    return [layers[i] for i in activation_rows(layers)]


def scale_trend(stds: list[float], shrinking: bool):
    """The geometric trend of the std along the chain (``stds[0]`` is the input's).

    Looks from the peak (for shrinking; the trough for growth) to the last
    layer: returns ``(start, total, per_layer)`` where ``start`` is the first
    layer after the peak that shrinks (grows) by more than the ratio threshold,
    ``total`` the overall factor and ``per_layer`` its geometric mean per layer;
    None unless that stretch spans at least two layers (one step from the
    input is a scale, not a trend with depth).
    """
    values = np.asarray(stds, dtype=np.float64)
    origin = int(np.argmax(values) if shrinking else np.argmin(values))
    steps = len(values) - 1 - origin
    if steps < 2 or values[origin] <= 0:
        return None
    total = float(values[-1] / values[origin])
    per_layer = total ** (1.0 / steps)
    for i in range(origin + 1, len(values)):
        ratio = values[i] / values[i - 1] if values[i - 1] > 0 else float("inf")
        if (ratio < SHRINK_RATIO) if shrinking else (ratio > GROW_RATIO):
            return i, total, per_layer
    return None


def scale_findings(input_std: float, chain: list[LayerStats]) -> list[Finding]:
    """activation_collapse / activation_explosion along the chain of hidden activations."""
    findings = []
    bad = [s for s in chain if not (np.isfinite(s.mean) and np.isfinite(s.std))]
    if bad:
        return [Finding("activation_explosion", "fail",
                        f"{bad[0].layer} outputs non-finite values at initialization",
                        FIXES["activation_explosion"], bad[0].layer,
                        {"layers": [s.layer for s in bad]})]
    if not chain or input_std <= 0:
        return findings
    stds = [input_std] + [s.std for s in chain]
    names = ["input"] + [s.layer for s in chain]
    for shrinking in (True, False):
        trend = scale_trend(stds, shrinking)
        if trend is None:
            continue
        start, total, per_layer = trend
        if shrinking:
            if per_layer >= SHRINK_RATIO:
                continue
            severity = "fail" if total < COLLAPSE_FAIL else "warn" if total < COLLAPSE_WARN else None
            code, verb = "activation_collapse", "shrinks"
        else:
            if per_layer <= GROW_RATIO:
                continue
            severity = "fail" if total > EXPLOSION_FAIL else "warn" if total > EXPLOSION_WARN else None
            code, verb = "activation_explosion", "grows"
        if severity is None:
            continue
        layer = names[start]
        findings.append(Finding(
            code, severity,
            f"activation std {verb} geometrically from {layer} on: {stds[start - 1]:.3g} "
            f"({names[start - 1]}) -> {stds[-1]:.3g} ({names[-1]}), x{per_layer:.2g} per layer",
            FIXES[code], layer, {"stds": dict(zip(names, stds)), "total_ratio": total,
                                 "per_layer_ratio": per_layer}))
    return findings


def fraction_findings(layers: list[LayerStats], code: str, attribute: str, warn: float,
                      fail: float, describe: str) -> list[Finding]:
    """One finding for the layers whose ``attribute`` fraction exceeds ``warn`` (first one named)."""
    values = {s.layer: getattr(s, attribute) for s in layers[:-1]
              if getattr(s, attribute) is not None}
    over = {name: value for name, value in values.items() if value > warn}
    if not over:
        return []
    first = next(iter(over))
    severity = "fail" if max(over.values()) > fail else "warn"
    others = f" (also {', '.join(list(over)[1:])})" if len(over) > 1 else ""
    return [Finding(code, severity,
                    f"{100 * over[first]:.0f}% of {first}'s {describe}{others}",
                    FIXES[code], first, {"fractions": values, "warn": warn, "fail": fail})]


def gradient_findings(chain: list[LayerStats]) -> list[Finding]:
    """vanishing/exploding_gradient: RMS gradient at the first vs the last hidden activation."""
    with_grads = [s for s in chain if s.grad_rms is not None]
    if len(with_grads) < 2:
        return []
    first, last = with_grads[0], with_grads[-1]
    if not (np.isfinite(first.grad_rms) and np.isfinite(last.grad_rms)):
        return [Finding("exploding_gradient", "fail", "non-finite gradients in the backward pass",
                        FIXES["exploding_gradient"], first.layer, {})]
    ratio = first.grad_rms / last.grad_rms if last.grad_rms > 0 else float("inf")
    evidence = {"first": first.layer, "last": last.layer, "ratio": ratio,
                "grad_rms": {s.layer: s.grad_rms for s in with_grads}}
    if ratio < VANISHING_WARN:
        severity = "fail" if ratio < VANISHING_FAIL else "warn"
        start = next((s.layer for s in reversed(with_grads)
                      if s.grad_rms < last.grad_rms * VANISHING_WARN ** 0.5), first.layer)
        return [Finding("vanishing_gradient", severity,
                        f"the gradient vanishes on the way back: at {first.layer} it is {ratio:.2g} "
                        f"times the gradient at {last.layer} (under a tenth of it from {start} down)",
                        FIXES["vanishing_gradient"], start, evidence)]
    if ratio > EXPLODING_WARN:
        severity = "fail" if ratio > EXPLODING_FAIL else "warn"
        return [Finding("exploding_gradient", severity,
                        f"the gradient at {first.layer} is {ratio:.3g} times the gradient at "
                        f"{last.layer}: it explodes on the way back",
                        FIXES["exploding_gradient"], first.layer, evidence)]
    return []


def judge(input_std: float, layers: list[LayerStats]) -> list[Finding]:
    """Every init-stats finding for one measurement."""
    chain = activation_chain(layers)
    return (scale_findings(input_std, chain)
            + fraction_findings(layers, "activation_saturation", "saturated", SATURATION_WARN,
                                SATURATION_FAIL, "outputs are saturated")
            + fraction_findings(layers, "dead_relu", "dead", DEAD_WARN, DEAD_FAIL,
                                "units never fire over the batch")
            + gradient_findings(chain))


def measure(model, X, y, label: str) -> InitMeasurement:
    """One train-mode forward and backward pass (data loss only) with recording on."""
    # Non-finite activations are a finding here, not a warning to print.
    with model.recording(), np.errstate(all="ignore"):
        model.loss(X, y, reg=0.0)
        layers = model_layer_stats(model, with_histograms=True)
        input_std = float(np.std(np.asarray(X, dtype=np.float64)))
    with np.errstate(all="ignore"):
        findings = judge(input_std, layers)
    return InitMeasurement(label, input_std, layers, findings)


def check_compare_spec(spec):
    """``spec`` if it names an init (``"he"``, ``{"normal": 1.0}``), else a BabysitError
    in the ``--compare`` spelling (``normal:STD``) with the nearest valid name."""
    from babysit.engine.init import NAMED, WITH_STD, get_initializer
    from babysit.errors import ModelError
    from babysit.recipes.validate import suggest

    spellings = list(NAMED) + [f"{name}:STD" for name in WITH_STD]
    name = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else spec
    if not isinstance(name, str) or (name not in NAMED and name not in WITH_STD):
        hint = suggest(str(name), list(NAMED) + list(WITH_STD))
        hint = hint if "did you mean" in hint else ""
        raise BabysitError(f"--compare: unknown init {init_label(spec)!r}{hint}; valid inits: "
                           f"{', '.join(spellings)} (e.g. --compare xavier,he,normal:0.01)")
    if name in WITH_STD and name not in NAMED and not isinstance(spec, dict):
        raise BabysitError(f"--compare: {name} needs a std, e.g. {name}:0.01")
    try:
        get_initializer(spec)
    except ModelError as exc:
        raise BabysitError(f"--compare: bad init {init_label(spec)!r}: {exc}") from None
    return spec


def init_label(spec) -> str:
    """``"xavier"``, ``{"normal": 1.0}`` -> ``"normal:1"``."""
    if isinstance(spec, dict) and len(spec) == 1:
        (key, value), = spec.items()
        return f"{key}:{value:g}" if isinstance(value, (int, float)) else f"{key}:{value}"
    return str(spec)


def init_stats(recipe, seed=None, batch_size: int = 1000, compare=None):
    """Per-layer statistics at initialization -> Result.

    ``compare``: a list of init specs (``"xavier"``, ``"he"``, ``"small"``,
    ``{"normal": 1.0}``, and ``"module"`` for a torch model's own init); each replaces
    ``model.init`` (layers with their own
    ``init`` keep it) and is measured on the same batch. The Result's findings
    are those of the recipe's own init; each comparison carries its own in
    ``metrics["compare"]``.

    Metrics: ``layers`` (one row per layer output, in order: layer, mean, std,
    near_zero, saturated, dead, grad_norm, std_ratio, histogram), ``batch_size``,
    ``input_std``, ``init``, and ``compare`` (``[{init, status, findings, layers}]``).
    """
    batch_size = POSITIVE_INT.check(batch_size, "batch size")
    recipe = common.seeded(recipe, seed)
    seed = recipe.seed
    result = common.new_result("init-stats", recipe, seed, CHECKS)
    data = common.load(recipe)
    X, y = common.subset(data.X_train, data.y_train, batch_size, common.stream(seed, "subset"))
    own = measure(common.build(recipe, data, seed), X, y, init_label(recipe.model.to_dict()["init"]))
    result.findings.extend(own.findings)
    result.metrics.update(init=own.label, batch_size=int(len(X)), input_std=own.input_std,
                          layers=own.rows())
    if compare:
        rows = []
        torch_model = getattr(recipe.model, "torch", None) is not None
        for spec in compare:
            if not (torch_model and spec == MODULE_INIT):   # a torch module's own init
                check_compare_spec(spec)
            try:
                variant = recipe.with_overrides({"model.init": spec})
            except BabysitError as exc:
                raise BabysitError(f"--compare: bad init {init_label(spec)!r}: {exc}") from None
            other = measure(common.build(variant, data, seed), X, y, init_label(spec))
            worst = max((f.severity for f in other.findings),
                        key=("info", "warn", "fail").index, default=None)
            rows.append({"init": other.label,
                         "status": {"fail": "fail", "warn": "warn"}.get(worst, "pass"),
                         "findings": [f.to_dict() for f in other.findings],
                         "layers": other.rows()})
        result.metrics["compare"] = rows
    return result


__all__ = ["init_stats", "measure", "judge", "InitMeasurement", "CHECKS", "init_label",
           "activation_rows"]
