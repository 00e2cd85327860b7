"""Per-layer and per-parameter statistics of a model during a pass.

Shared by ``init-stats`` (one batch at initialization) and ``train`` (monitors
once per epoch). Everything here reads a model during a recorded pass
(``with model.recording():``: ``model.outputs`` and ``model.output_grads``
keyed by layer name) through the model protocol and returns plain numbers.

Definitions (thresholds documented in the README):

* near zero: ``|h| < NEAR_ZERO``;
* saturated: tanh ``|h| > 0.99``; sigmoid ``h < 0.01`` or ``h > 0.99``
  (other layers: not applicable, ``None``);
* dead: a ReLU unit (one feature, or one channel position of a conv map) that
  is never positive over the whole batch (other layers: ``None``);
* update ratio: ``||W_after - W_before|| / ||W_before||`` over one optimizer
  step, i.e. ``||lr * update|| / ||W||`` whatever the update rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_ZERO = 1e-2
SATURATION = 0.99
HISTOGRAM_BINS = 24

# Layers whose outputs are "activations" (the lecture's per-layer statistics
# are taken after the nonlinearity); the others are linear maps, pooling, ...
NONLINEAR_KINDS = frozenset({"relu", "leaky_relu", "prelu", "elu", "tanh", "sigmoid", "maxout",
                             # torch activation modules babysit's engine has no layer for
                             # (their kind is the class name in lower case: babysit.torch.kinds)
                             "gelu", "silu", "mish", "softplus", "selu", "celu", "relu6",
                             "hardtanh", "hardswish", "hardsigmoid", "softsign", "logsigmoid",
                             "rrelu"})
SATURATING_KINDS = frozenset({"tanh", "sigmoid"})
DYING_KINDS = frozenset({"relu"})


@dataclass
class LayerStats:
    """Statistics of one layer's output over a batch (``out`` is ``(N, ...)``)."""

    layer: str
    kind: str
    mean: float
    std: float
    near_zero: float
    saturated: float | None
    dead: float | None
    grad_norm: float | None = None
    grad_rms: float | None = None
    histogram: dict | None = None  # {"edges": [...], "counts": [...]}

    def to_dict(self) -> dict:
        """The ``init-stats`` metrics row (histogram only when computed)."""
        row = {"layer": self.layer, "mean": self.mean, "std": self.std,
               "near_zero": self.near_zero, "saturated": self.saturated, "dead": self.dead,
               "grad_norm": self.grad_norm}
        if self.histogram is not None:
            row["histogram"] = self.histogram
        return row


def saturated_fraction(kind: str, out: np.ndarray) -> float | None:
    """Fraction of entries in the flat part of a tanh/sigmoid; None for other kinds."""
    if kind == "tanh":
        return float(np.mean(np.abs(out) > SATURATION))
    if kind == "sigmoid":
        return float(np.mean((out < 1.0 - SATURATION) | (out > SATURATION)))
    return None


def dead_fraction(kind: str, out: np.ndarray) -> float | None:
    """Fraction of ReLU units never active over the batch; None for other kinds."""
    if kind not in DYING_KINDS or out.shape[0] == 0:
        return None
    active = np.any(out.reshape(out.shape[0], -1) > 0, axis=0)
    return float(1.0 - np.mean(active))


def histogram(kind: str, out: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts over fixed ranges for bounded activations, over [min, max] otherwise."""
    values = out[np.isfinite(out)]
    if kind == "tanh":
        lo, hi = -1.0, 1.0
    elif kind == "sigmoid":
        lo, hi = 0.0, 1.0
    elif values.size:
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = -1.0, 1.0
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def layer_stats(name: str, kind: str, out: np.ndarray, grad: np.ndarray | None = None,
                with_histogram: bool = False) -> LayerStats:
    """Statistics of one layer output ``out (N, ...)`` and of its gradient ``grad`` (same shape)."""
    values = np.asarray(out, dtype=np.float64)
    grad_norm = grad_rms = None
    if grad is not None:
        g = np.asarray(grad, dtype=np.float64)
        grad_norm = float(np.sqrt(np.sum(g * g)))
        grad_rms = float(np.sqrt(np.mean(g * g))) if g.size else 0.0
    return LayerStats(
        layer=name,
        kind=kind,
        mean=float(np.mean(values)),
        std=float(np.std(values)),
        near_zero=float(np.mean(np.abs(values) < NEAR_ZERO)),
        saturated=saturated_fraction(kind, values),
        dead=dead_fraction(kind, values),
        grad_norm=grad_norm,
        grad_rms=grad_rms,
        histogram=histogram(kind, values) if with_histogram else None,
    )


def model_layer_stats(model, with_histograms: bool = False) -> list[LayerStats]:
    """One :class:`LayerStats` per layer output, in order, after a recorded pass.

    Gradients are included when the pass had a backward (``model.output_grads``).
    """
    stats = []
    for name in model.names:
        out = model.outputs.get(name)
        if out is None:
            continue
        stats.append(layer_stats(name, model.kind_of(name), out, model.output_grads.get(name),
                                 with_histograms))
    return stats


def param_grad_norms(model) -> dict:
    """``{param name: ||dLoss/dparam||}`` from the model's last backward pass (data loss)."""
    norms = {}
    for name, grad in model.data_grads().items():
        g = np.asarray(grad, dtype=np.float64)
        norms[name] = float(np.sqrt(np.sum(g * g)))
    return norms


def update_ratios(before: dict, after: dict, names=None) -> dict:
    """``{name: ||after - before|| / ||before||}``; parameters with ``||before|| = 0`` are left out."""
    ratios = {}
    for name in names if names is not None else before:
        old = np.asarray(before[name], dtype=np.float64)
        scale = float(np.sqrt(np.sum(old * old)))
        if scale > 0.0:
            step = np.asarray(after[name], dtype=np.float64) - old
            ratios[name] = float(np.sqrt(np.sum(step * step)) / scale)
    return ratios


__all__ = ["LayerStats", "NEAR_ZERO", "SATURATION", "NONLINEAR_KINDS", "SATURATING_KINDS",
           "DYING_KINDS", "layer_stats", "model_layer_stats", "param_grad_norms",
           "update_ratios", "saturated_fraction", "dead_fraction", "histogram"]
