"""Progress of a long diagnosis, for whoever shows it (the CLI draws bars or plain lines).

A diagnosis that can take more than a second or two takes an optional
``progress`` callable and calls it with a :class:`Step` after each unit of
work: one probed learning rate, one epoch, one doctor part. Diagnostics never
print; the callable decides what to show (``babysit.cli.progress`` turns steps
into a Rich bar in a terminal and into plain lines on stderr otherwise).
Progress never changes a number: it only observes.

* :func:`notify` sends a step (a no-op when ``progress`` is None);
* :class:`SolverProgress` is the :class:`babysit.engine.solver.Callback` that
  reports a :meth:`Solver.run <babysit.engine.solver.Solver.run>` per step or
  per epoch;
* :func:`within` tags the steps of one doctor part with the part's name
  (the doctor's sub-progress).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from babysit.engine.solver import Callback


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` units finished; ``label`` says which (``"lr 0.001: good"``).

    ``part`` is the doctor part the step belongs to (None: the diagnosis's own
    steps); ``values`` carries the step's numbers for a live display or a
    curve (e.g. ``{"loss": 0.52, "accuracy": 0.85}``).
    """

    done: int
    total: int
    label: str = ""
    part: str | None = None
    values: Mapping = field(default_factory=dict)


Progress = Callable[[Step], None]


def notify(progress: Progress | None, done: int, total: int, label: str = "", **values) -> None:
    """Send ``Step(done, total, label, values=values)`` to ``progress`` (if any)."""
    if progress is not None:
        progress(Step(int(done), int(total), label, values=values))


def within(progress: Progress | None, part: str) -> Progress | None:
    """``progress`` with every step tagged as belonging to doctor part ``part``."""
    if progress is None:
        return None
    return lambda step: progress(replace(step, part=part))


class SolverProgress(Callback):
    """Reports a training loop: after every step (``per="step"``) or every epoch.

    ``total`` is the run's budget in those units; ``label(state)`` names the
    step and ``values(state)`` gives its numbers (both optional).
    """

    def __init__(self, progress: Progress | None, total: int, per: str = "step",
                 label: Callable | None = None, values: Callable | None = None):
        if per not in ("step", "epoch"):
            raise ValueError(f"per must be 'step' or 'epoch', got {per!r}")
        self.progress, self.total, self.per = progress, int(total), per
        self.label, self.values = label, values

    def _send(self, state, done: int) -> None:
        if self.progress is None:
            return
        label = self.label(state) if self.label else f"{self.per} {done}/{self.total}"
        values = self.values(state) if self.values else {}
        notify(self.progress, done, self.total, label, **values)

    def on_step_end(self, state):
        if self.per == "step":
            self._send(state, state.iteration)

    def on_epoch_end(self, state):
        if self.per == "epoch":
            self._send(state, state.epoch)


__all__ = ["Step", "Progress", "notify", "within", "SolverProgress"]
