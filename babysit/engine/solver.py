"""The one training loop: every command that trains goes through :meth:`Solver.run`.

``train``, ``overfit-tiny``, ``lr-probe`` (grid and sweep), ``search`` trials
and gradcheck's burn-in all train the same way: shuffled mini-batches epoch
after epoch, the recipe's update rule, a learning rate per step, one
divergence rule, and callbacks for what each command watches. What differs
is passed in::

    solver = Solver(model, optim_section, batch_size, rng, average=None)
    state = solver.run(X, y, epochs=10)                     # the recipe's schedule
    state = solver.run(X, y, steps=100, lr=0.1,             # a constant LR, 100 steps
                       divergence=Divergence(), callbacks=[watcher])
    state.stopped                                            # None | "diverged" | "callback"

The learning rate of a step is ``lr`` when it is a number, ``lr(state)``
when it is a callable (the sweep grows it per step), else the recipe's
schedule at the epoch in progress.

Callbacks (subclass :class:`Callback`, override what you need) see the
:class:`LoopState` at the start of every epoch (before its batches are
drawn), before and
after every step, and at the end of every epoch; ``on_step_end`` and
``on_epoch_end`` return True to stop the run. ``state.diverged`` is set
before ``on_step_end`` runs, so a callback can still record the step that
diverged; the run then stops.

Continuing: pass the ``state`` a run stopped in (after ``steps``, a callback's
stop or an interruption) and the loop carries on exactly where it was. The
state records the shuffling generator as it was before the epoch in progress
drew its batches (``epoch_rng``); the loop draws that epoch's permutation from
it again and skips the batches already done, so a run stopped mid-epoch and
continued takes the same batches as one that never stopped. A run resumed in
another process builds its ``LoopState`` from what it stored, ``epoch_rng``
included (``train --resume``); a state without one draws from the generator
as it stands.

Full batch: ``batch_size="full"`` makes every epoch one step on the whole
training set, in its own order (nothing is shuffled or drawn). An optimizer
that declares ``full_batch`` (L-BFGS) refuses a batch size smaller than the
training set; one that declares ``needs_closure`` gets, besides the step's
loss and gradients, ``closure() -> (loss, grads)`` on the same batch (its line
search evaluates the loss at the parameters it tries). An optimizer that has
``converged`` takes no more steps of its own; the loop still runs to its budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from babysit.engine.optim import ParameterAverage, make_optimizer, make_schedule
from babysit.errors import ModelError
from babysit.validation import POSITIVE_INT

# A mini-batch loss above this many times the run's first mini-batch loss (or
# NaN/inf) means the run diverged: the rule of train, search, lr-probe and the
# overfit check alike.
DIVERGENCE_FACTOR = 3.0

# train.batch_size's spelling of "the whole training set" (recipes use it too).
FULL_BATCH = "full"


def resolve_batch_size(batch_size, num_examples: int) -> int:
    """The number of examples in a batch: ``num_examples`` for ``"full"``, else the checked size."""
    if batch_size == FULL_BATCH:
        return int(num_examples)
    return POSITIVE_INT.check(batch_size, "batch_size", ModelError)


class Divergence:
    """The one divergence rule: a loss that is NaN/inf or above ``factor`` x the reference.

    The reference is the first loss the rule sees (the run's first mini-batch
    loss) unless given (a resumed run passes the one it recorded).
    """

    def __init__(self, factor: float = DIVERGENCE_FACTOR, reference: float | None = None):
        self.factor = float(factor)
        self.reference = reference

    def __call__(self, loss: float) -> bool:
        """True when ``loss`` diverged (the first finite call sets the reference)."""
        if self.reference is None:
            self.reference = float(loss)
        return not (math.isfinite(loss) and loss <= self.factor * max(self.reference, 1e-12))

    def describe(self, loss: float) -> str:
        """Why ``loss`` counts as diverged, for messages."""
        if not math.isfinite(loss):
            return f"the loss became {loss}"
        return (f"the loss reached {loss:.4g}, over {self.factor:g}x its start "
                f"{self.reference:.4g}")


@dataclass
class LoopState:
    """Where a run is: ``epoch`` is the 0-based epoch in progress (the number of
    finished epochs once it ends), ``batch`` the steps taken in it,
    ``iteration`` the steps taken in the whole run."""

    epoch: int = 0
    batch: int = 0
    batches: int = 0       # mini-batches in the epoch in progress
    iteration: int = 0
    lr: float = math.nan   # the learning rate of the last (or current) step
    loss: float = math.nan  # the last step's loss (before its update, reg included)
    diverged: bool = False
    stopped: str | None = None  # None (ran to the end) | "diverged" | "callback"
    # the shuffling generator's state (``bit_generator.state``) from which the epoch
    # in progress draws its batches; None: the generator as it stands
    epoch_rng: dict | None = None

    @property
    def last_in_epoch(self) -> bool:
        """During a step: this step is the epoch's last one."""
        return self.batch == self.batches - 1


class Callback:
    """What a command watches during :meth:`Solver.run`; every hook is optional."""

    def on_epoch_start(self, state: LoopState) -> None:
        """Before the epoch's batches are drawn."""

    def on_step_start(self, state: LoopState) -> None:
        """Before the update of step ``state.batch`` (0-based) of the epoch."""

    def on_step_end(self, state: LoopState) -> bool | None:
        """After the update; ``state.loss`` is its loss. True stops the run."""

    def on_epoch_end(self, state: LoopState) -> bool | None:
        """After the epoch's last step (``state.epoch`` already counts it). True stops."""


def evaluate(model, X, y, batch_size: int = 1000) -> tuple[float, float]:
    """Test-mode ``(mean data loss, accuracy)`` over ``X`` in batches; NaNs for an empty set.

    One batch returns its loss as computed (no rescaling), so a small set is
    scored exactly as one forward pass scores it.
    """
    if len(X) == 0:
        return math.nan, math.nan
    if len(X) <= batch_size:
        with np.errstate(all="ignore"):
            scores = model.forward(X)
            loss, _ = model.loss_fn(scores, y)
        return float(loss), float(np.mean(np.argmax(scores, axis=1) == y))
    total_loss, correct = 0.0, 0
    with np.errstate(all="ignore"):
        for start in range(0, len(X), batch_size):
            scores = model.forward(X[start:start + batch_size])
            yb = y[start:start + batch_size]
            loss, _ = model.loss_fn(scores, yb)
            total_loss += float(loss) * len(yb)
            correct += int(np.sum(np.argmax(scores, axis=1) == yb))
    return total_loss / len(X), correct / len(X)


class Solver:
    """The recipe's optimizer and schedule over a model, and the loop that drives them.

    ``Solver(model, optim_section, batch_size, rng, average=None)``:

    * ``run(X, y, ...) -> LoopState``: the training loop (see the module doc),
    * ``step(X_batch, y_batch, lr) -> loss``: one forward/backward and update
      (the loss before the update, regularization included),
    * ``batches(N) -> [index array, ...]``: one epoch of shuffled mini-batches
      of ``batch_size`` (the last, partial batch is kept); one in-order slice
      of all N for ``batch_size="full"`` or a ``full_batch`` optimizer,
    * ``batches_per_epoch(N)``: how many steps an epoch of N examples takes,
    * ``lr_at(epoch)``: the section's learning-rate schedule,
    * ``optimizer``: ``model.make_optimizer(optim_section)`` when the model
      offers one (the torch backend: torch.optim behind the engine's optimizer
      interface), else the engine's ``make_optimizer(optim_section, model.params)``;
    * ``average`` (a :class:`ParameterAverage` when ``average`` is a beta in
      [0, 1), else None).

    Shuffling draws from ``rng`` only, so one seed gives one sequence of batches.
    """

    def __init__(self, model, optim_section, batch_size, rng: np.random.Generator, average=None):
        self.model = model
        self.batch_size = batch_size if batch_size == FULL_BATCH else \
            POSITIVE_INT.check(batch_size, "batch_size", ModelError)
        self.rng = rng
        # A backend with its own optimizers (torch.optim) offers them behind the same
        # interface; the engine's update rules are the default.
        factory = getattr(model, "make_optimizer", None)
        self.optimizer = factory(optim_section) if callable(factory) else \
            make_optimizer(optim_section, model.params)
        self.lr_at = make_schedule(optim_section)
        self.average = None if average is None else ParameterAverage(model.params, average)

    def step(self, X_batch, y_batch, lr: float) -> float:
        # a training step never reads dLoss/dX: the model may skip it in its first layer
        loss, grads = self.model.loss(X_batch, y_batch, input_grad=False)
        if self.optimizer.needs_closure:
            self.optimizer.step(grads, lr, loss=loss,
                                closure=lambda: self.model.loss(X_batch, y_batch, input_grad=False))
        else:
            self.optimizer.step(grads, lr)
        if self.average is not None:
            self.average.update()
        return loss

    def whole(self, num_examples: int) -> bool:
        """Whether an epoch of ``num_examples`` is one in-order full batch (nothing shuffled)."""
        return self.batch_size == FULL_BATCH or (
            self.optimizer.full_batch and self.batch_size >= num_examples)

    def batches_per_epoch(self, num_examples: int) -> int:
        return 1 if self.whole(num_examples) else math.ceil(num_examples / self.batch_size)

    def batches(self, num_examples: int) -> list:
        if self.whole(num_examples):
            return [slice(0, int(num_examples))]
        order = self.rng.permutation(int(num_examples))
        return [order[start:start + self.batch_size]
                for start in range(0, len(order), self.batch_size)]

    def run(self, X, y, *, epochs: int | None = None, steps: int | None = None,
            lr: float | Callable[[LoopState], float] | None = None,
            divergence: Divergence | None = None, callbacks: Sequence[Callback] = (),
            state: LoopState | None = None) -> LoopState:
        """Train on ``(X, y)`` until ``epochs`` epochs or ``steps`` steps (whichever first).

        Returns the final :class:`LoopState`. Overflow on the way to NaN is the
        divergence rule's business, never a NumPy warning.
        """
        if epochs is None and steps is None:
            raise ModelError("Solver.run needs epochs or steps")
        if self.optimizer.full_batch and not self.whole(len(X)):
            raise ModelError(f"update {self.optimizer.name} needs full-batch training: batch_size "
                             f"{self.batch_size} is smaller than the {len(X)} training examples; "
                             f"use batch_size {FULL_BATCH!r}")
        state = state if state is not None else LoopState()
        # one errstate for the whole run, not one per step (a small net's step is a
        # millisecond): overflow on the way to NaN is the divergence rule's business
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._loop(X, y, epochs, steps, lr, divergence, callbacks, state)

    def _rewind(self, state: LoopState) -> None:
        """Put the shuffling generator where the epoch in progress draws its batches.

        A continued run draws the epoch's batches again from where the epoch
        first drew them, whatever the generator did since (within one run this
        is a no-op); a state that never ran records the generator as it stands.
        Full-batch training may have no generator.
        """
        if self.rng is None:
            return
        if state.epoch_rng is not None:
            self.rng.bit_generator.state = state.epoch_rng
        else:
            state.epoch_rng = self.rng.bit_generator.state

    def _loop(self, X, y, epochs, steps, lr, divergence, callbacks, state) -> LoopState:
        """:meth:`run`'s epochs and steps."""
        while epochs is None or state.epoch < epochs:
            self._rewind(state)
            for callback in callbacks:
                callback.on_epoch_start(state)
            batches = self.batches(len(X))
            state.batches = len(batches)
            epoch_lr = lr if isinstance(lr, (int, float)) else self.lr_at(state.epoch)
            for b in range(state.batch, len(batches)):
                if steps is not None and state.iteration >= steps:
                    return state
                state.batch = b
                state.lr = float(lr(state)) if callable(lr) else float(epoch_lr)
                for callback in callbacks:
                    callback.on_step_start(state)
                index = batches[b]
                state.loss = float(self.step(X[index], y[index], state.lr))
                state.iteration += 1
                state.batch = b + 1
                state.diverged = divergence is not None and divergence(state.loss)
                stop = [callback.on_step_end(state) for callback in callbacks]
                if state.diverged:
                    state.stopped = "diverged"
                    return state
                if any(stop):
                    state.stopped = "callback"
                    return state
            state.epoch += 1
            state.batch = 0
            if self.rng is not None:   # where the next epoch draws
                state.epoch_rng = self.rng.bit_generator.state
            stop = [callback.on_epoch_end(state) for callback in callbacks]
            if any(stop):
                state.stopped = "callback"
                return state
            if steps is not None and state.iteration >= steps:
                return state
        return state

    def __repr__(self) -> str:
        return f"Solver({self.optimizer!r}, batch_size={self.batch_size})"


__all__ = ["Solver", "LoopState", "Callback", "Divergence", "evaluate", "DIVERGENCE_FACTOR",
           "FULL_BATCH", "resolve_batch_size"]
