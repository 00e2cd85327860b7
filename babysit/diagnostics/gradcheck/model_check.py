"""Checking a model: the analytic pass, then every layer input, parameter and L2 share."""

from __future__ import annotations

import functools

import numpy as np

from babysit.diagnostics.gradcheck.numerical import Differencer, Report
from babysit.errors import ModelError

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


def _float64(array):
    return None if array is None else np.array(array, dtype=np.float64)


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
            # a layer that rounds below float64 makes numerical gradients noise
            self.low_precision = [name for name in model.names
                                  if np.asarray(model.outputs[name]).dtype != np.float64]
            # inputs[p] / input_grads[p]: what enters layer p and dLoss/d(that). A backend
            # that records every layer's real input says so (torch: any graph); otherwise the
            # layers form a chain and layer p's input is layer p-1's output.
            names = model.names
            inputs = getattr(model, "layer_inputs", None) or dict(zip(names[1:], (
                model.outputs[name] for name in names[:-1])))
            input_grads = getattr(model, "layer_input_grads", None) or dict(zip(names[1:], (
                model.output_grads[name] for name in names[:-1])))
            self.inputs = [self.X] + [_float64(inputs.get(name)) for name in names[1:]]
            self.input_grads = [_float64(model.input_grad)] + [_float64(input_grads.get(name))
                                                              for name in names[1:]]
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
        owners = {param: model.layer_of(param) for param in model.params}
        with model.replay_randomness():
            for position, name in enumerate(model.names):
                loss = functools.partial(self.loss_from, position)
                checkable = self.input_grads[position] is not None  # no gradient reached it
                if checkable and (position == 0 or self.layer_inputs):
                    report = Report("input" if position == 0 else f"{name} input", "input", name)
                    reports.append(diff.check(report, self.inputs[position],
                                              self.input_grads[position], loss, kinks))
                for param in [p for p, owner in owners.items() if owner == name]:
                    reports.append(diff.check(Report(param, "param", name), model.params[param],
                                              self.grads[param], loss, kinks))
            # parameters no layer owns (a torch container's own): through the whole model
            for param in [p for p, owner in owners.items() if owner not in model.names]:
                reports.append(diff.check(Report(param, "param", None), model.params[param],
                                          self.grads[param], functools.partial(self.loss_from, 0),
                                          kinks))
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


__all__ = ["ModelChecker", "ProjectionLoss"]
