"""From reports to findings: which array is wrong, how, and whose backward to fix."""

from __future__ import annotations

import numpy as np

from babysit.diagnostics.gradcheck.bands import FAIL_BAND, H_MAX, H_MIN, TINY, WARN_BAND
from babysit.diagnostics.gradcheck.numerical import Report
from babysit.validation import POSITIVE_INT, Rule

STEP = Rule(f"a step between {H_MIN:g} and {H_MAX:g} (float64 centered differences resolve "
            "nothing useful outside it)", lambda h: H_MIN <= h <= H_MAX)

def _suffix(index: tuple) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


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


def add_findings(result, reports: list[Report], has_kinks: bool, order: list[str],
                 low_precision=()) -> None:
    """Every finding of a check; ``low_precision`` names layers whose output was not float64."""
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
    precision_findings(result, reports, low_precision, order)
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


def precision_findings(result, reports: list[Report], low_precision, order: list[str]) -> None:
    """``gradient_precision``: estimates that are rounding noise, and layers that compute below float64.

    Entries whose numerical gradient moves with the step size were not judged:
    their backward is unverified, which is a failure of the check, named as
    precision (not as a wrong backward). A layer whose output is not float64 in
    the float64 check explains it.
    """
    unstable = {r.name: r.unstable for r in reports if r.unstable}
    if not unstable and not low_precision:
        return
    parts = []
    if low_precision:
        parts.append(f"{', '.join(low_precision)} computes below float64 (its output in the "
                     "float64 check is not float64)")
    if unstable:
        parts.append("the numerical gradient changes with the step size, so it is rounding "
                     "noise and the backward cannot be verified for: "
                     + ", ".join(f"{name} ({count})" for name, count in unstable.items()))
    # the noise enters at the deepest layer whose own input gives unstable estimates:
    # everything upstream of it inherits the noise, nothing downstream sees it
    noisy_inputs = [r.layer for r in reports if r.kind == "input" and r.unstable]
    if low_precision:
        layer = low_precision[0]
    elif noisy_inputs:
        layer = max(noisy_inputs, key=lambda name: order.index(name) if name in order else -1)
        parts.append(f"the noise enters at {layer} (arrays after it give steady estimates)")
    else:
        layer = next((r.layer for r in reports if r.unstable), None)
    result.add("gradient_precision", "fail" if unstable else "warn", "; ".join(parts),
               "make every layer compute in the dtype of its input (no float32 casts inside "
               "forward); the backward may be right, but a check cannot tell until then",
               layer, unstable=unstable, low_precision=list(low_precision))


def check_options(datapoints, entries, all_entries, h) -> tuple:
    """``(datapoints, entries or None for all, h)``, each checked."""
    datapoints = POSITIVE_INT.check(datapoints, "datapoints")
    entries = None if all_entries else POSITIVE_INT.check(entries, "entries")
    return datapoints, entries, STEP.check(h, "h")


def report_metrics(reports: list[Report], has_kinks: bool, h: float, entries) -> dict:
    """The ``metrics`` of a gradcheck Result: per parameter, input, layer input and L2 share."""
    params = {r.name: r.to_metrics() for r in reports if r.kind == "param"}
    inputs = [r for r in reports if r.kind == "input"]
    return {"dtype": "float64", "h": h, "entries": entries if entries is not None else "all",
            "has_kinks": has_kinks, "params": params,
            "input": inputs[0].to_metrics() if inputs else None,
            "layer_inputs": {r.layer: r.to_metrics() for r in inputs[1:]},
            "reg": {r.name: r.to_metrics() for r in reports if r.kind == "reg"}}


__all__ = ["add_findings", "Blame", "check_options", "report_metrics", "precision_findings", "STEP"]
