"""Progress of long commands on stderr: a live bar in a terminal, plain lines in CI logs.

:class:`StepDisplay` is the ``progress`` callable the CLI hands to a long
diagnosis (see :mod:`babysit.diagnostics.progress`). In a terminal it draws a
transient Rich bar (for doctor: one bar for the parts and one for the part in
progress). When stderr is not a terminal (CI, ``2>log``) a live bar would print
nothing until the end, so it writes one plain line per step instead, at most
about ``PLAIN_LINES`` per bar (the first, the last, and one per 1/PLAIN_LINES of
the way). ``--quiet`` silences both. Stdout is never touched: ``--json -`` and
``--junit -`` stay clean.
"""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

PLAIN_LINES = 20  # plain lines per bar at most (plus the first and the last)


def worth_a_line(done: int, total: int, last: int | None) -> bool:
    """Whether step ``done`` of ``total`` gets a plain line, the last printed being ``last``.

    Every step of a short run (``total <= PLAIN_LINES``); of a long one the
    first, the last and one per ``total / PLAIN_LINES`` steps.
    """
    if last is not None and done <= last:
        return False
    if total <= PLAIN_LINES or done <= 1 or done >= total:
        return True
    bucket = done * PLAIN_LINES // total
    return last is None or bucket > last * PLAIN_LINES // total


class Display:
    """A progress display used as ``with``: ``start()`` on entry, ``stop()`` on exit."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self) -> None:
        """Begin drawing (nothing by default)."""

    def stop(self) -> None:
        """Stop drawing (nothing by default)."""


class StepDisplay(Display):
    """Shows :class:`~babysit.diagnostics.progress.Step` s of a command called ``title``."""

    def __init__(self, app, title: str):
        self.console = app.err
        self.title = title
        self.enabled = not app.quiet
        self.live = self.enabled and app.err.is_terminal
        self.bars = None
        self.tasks: dict = {}          # None (the command's own steps) or a part -> task id
        self.printed: dict = {}        # key -> last step printed as a plain line

    def start(self) -> None:
        if self.live:
            self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[label]}"),
                                 TimeElapsedColumn(), console=self.console, transient=True)
            self.bars.start()

    def stop(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None

    def __call__(self, step) -> None:
        if not self.enabled:
            return
        if self.bars is not None:
            self._bar(step)
        elif not self.live:
            self._line(step)

    def _bar(self, step) -> None:
        key = step.part
        if key is None or key not in self.tasks:
            # one sub-bar at most: the part in progress (a new part or a main step ends the last)
            for old in [k for k in self.tasks if k is not None and k != key]:
                self.bars.remove_task(self.tasks.pop(old))
        if key not in self.tasks:
            description = self.title if key is None else f"  {key}"
            self.tasks[key] = self.bars.add_task(description, total=step.total, label="")
        self.bars.update(self.tasks[key], completed=step.done, total=step.total, label=step.label)

    def _line(self, step) -> None:
        key = step.part
        if not worth_a_line(step.done, step.total, self.printed.get(key)):
            return
        self.printed[key] = step.done
        where = self.title if key is None else f"{self.title} {key}"
        self.console.print(Text(f"{where} [{step.done}/{step.total}] {step.label}", style="dim"),
                           soft_wrap=True, highlight=False)


__all__ = ["Display", "StepDisplay", "worth_a_line", "PLAIN_LINES"]
