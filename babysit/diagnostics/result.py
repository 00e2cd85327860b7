"""The result every diagnosis returns: findings plus the numbers behind them.

The CLI renders it (Rich tables, JSON, JUnit XML) and the store persists it; the
diagnostics themselves never print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SEVERITIES = ("info", "warn", "fail")

# The stable vocabulary of finding codes (documented in the README).
FINDING_CODES = (
    "initial_loss_unexpected", "reg_no_effect", "reg_too_strong", "loss_not_finite", "scores_too_large",
    "symmetric_weights", "cannot_overfit", "lr_too_low", "lr_too_high", "lr_range_edge", "lr_marginal",
    "dead_relu", "activation_saturation", "activation_collapse", "activation_explosion",
    "vanishing_gradient", "exploding_gradient", "gradient_mismatch", "gradient_suspicious",
    "kink_crossed", "gradient_tiny", "gradient_precision", "update_ratio_high", "update_ratio_low", "overfitting",
    "underfitting", "loss_plateau", "late_start", "loss_diverged", "data_not_centered",
    "data_not_finite", "label_out_of_range", "predictions_not_uniform",
)


def jsonable(value: Any) -> Any:
    """Plain JSON types from NumPy scalars/arrays; non-finite floats become strings.

    JSON has no NaN or Infinity; writing them as ``"nan"``/``"inf"`` keeps the
    output parseable by every JSON reader while still saying what happened.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


@dataclass
class Finding:
    """One diagnosis: what is wrong (or notable), the evidence, and the fix."""

    code: str
    severity: str
    message: str
    fix: str = ""
    layer: str | None = None
    evidence: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.code not in FINDING_CODES:
            raise ValueError(f"unknown finding code {self.code!r}")

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "layer": self.layer,
                "message": self.message, "fix": self.fix, "evidence": jsonable(self.evidence)}


@dataclass
class Result:
    """Outcome of one command: ``status`` is derived from the findings.

    ``checks`` names the individual checks run (for JUnit: one testcase each),
    mapping a check name to the finding codes that belong to it.

    A command that did not finish (exit 2 or 130) is still reported, so that CI
    finds its JSON and JUnit files: ``stopped`` is ``"error"`` or
    ``"interrupted"`` and becomes the status, ``error`` is the one-line message
    (``"error"`` key of the JSON), and ``parts`` holds the parts already
    finished (doctor).
    """

    command: str
    recipe: str | None = None
    seed: int | None = None
    findings: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    parts: dict = field(default_factory=dict)  # doctor: command -> Result
    elapsed: float | None = None
    stopped: str | None = None  # "error" | "interrupted": the command did not finish
    error: str | None = None    # its message, when stopped

    def add(self, code, severity, message, fix="", layer=None, **evidence) -> Finding:
        finding = Finding(code, severity, message, fix, layer, evidence)
        self.findings.append(finding)
        return finding

    @property
    def status(self) -> str:
        if self.stopped:
            return self.stopped
        severities = {f.severity for f in self.findings}
        for part in self.parts.values():
            severities.add(part.status)
        if "fail" in severities:
            return "fail"
        if "warn" in severities:
            return "warn"
        return "pass"

    def failed(self, strict: bool = False) -> bool:
        return self.status in ("fail", "error", "interrupted") or (strict and self.status == "warn")

    def to_dict(self) -> dict:
        from babysit import __version__

        out = {"babysit": __version__, "command": self.command, "recipe": self.recipe,
               "seed": self.seed, "status": self.status}
        if self.stopped:
            out["error"] = self.error
        out.update({"findings": [f.to_dict() for f in self.findings],
                    "metrics": jsonable(self.metrics)})
        if self.parts:
            out["parts"] = {name: part.to_dict() for name, part in self.parts.items()}
        return out
