"""The one mini-batch training step every command shares (train, overfit-tiny, lr-probe, search)."""

from __future__ import annotations

import numbers

import numpy as np

from babysit.engine.model import Model
from babysit.engine.optim import ParameterAverage, make_optimizer, make_schedule
from babysit.errors import ModelError


class Solver:
    """Forward/backward through ``model.loss``, one optimizer step, the average update.

    ``Solver(model, optim_section, batch_size, rng, average=None)``:

    * ``step(X_batch, y_batch, lr) -> loss`` (the loss before the update,
      regularization included),
    * ``batches(N) -> [index array, ...]``: one epoch of shuffled mini-batches
      of ``batch_size`` (the last, partial batch is kept),
    * ``lr_at(epoch)``: the section's learning-rate schedule,
    * ``optimizer``, ``average`` (a :class:`ParameterAverage` when ``average``
      is a beta in [0, 1), else None).

    Shuffling draws from ``rng`` only, so one seed gives one sequence of batches.
    """

    def __init__(self, model, optim_section, batch_size, rng: np.random.Generator, average=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ModelError(f"batch_size must be a positive whole number, got {batch_size!r}")
        self.model = model
        # a training step never reads dLoss/dX: an engine Model skips it in the first layer
        self._skip_input_grad = isinstance(model, Model)
        self.batch_size = int(batch_size)
        self.rng = rng
        self.optimizer = make_optimizer(optim_section, model.params)
        self.lr_at = make_schedule(optim_section)
        self.average = None if average is None else ParameterAverage(model.params, average)

    def step(self, X_batch, y_batch, lr: float) -> float:
        if self._skip_input_grad:
            loss, grads = self.model.loss(X_batch, y_batch, input_grad=False)
        else:
            loss, grads = self.model.loss(X_batch, y_batch)
        self.optimizer.step(grads, lr)
        if self.average is not None:
            self.average.update()
        return loss

    def batches(self, num_examples: int) -> list[np.ndarray]:
        order = self.rng.permutation(int(num_examples))
        return [order[start:start + self.batch_size]
                for start in range(0, len(order), self.batch_size)]

    def __repr__(self) -> str:
        return f"Solver({self.optimizer!r}, batch_size={self.batch_size})"


__all__ = ["Solver"]
