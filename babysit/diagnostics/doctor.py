"""``doctor``: the protocol's checks in one go, one consolidated result.

Runs, in this order (cheap and decisive first, as the CS231n protocol does):
sanity-loss, gradcheck, overfit-tiny, init-stats, lr-probe. Each part is the
very Result the single command returns, kept under ``result.parts[command]``.

The doctor Result itself:

* ``findings`` is empty: every finding stays with the part that made it (the
  part says which check produced it; a union would repeat each finding and lose
  that). Renderers and the JUnit writer walk the parts.
* ``status`` is the worst part status (``Result.status`` folds the parts in).
* ``metrics``: ``statuses`` (command -> pass|warn|fail|not run, in protocol
  order) and ``not_run`` (commands skipped by ``stop_early``). Parts left out
  with ``parts`` (the CLI's ``--only``/``--skip``) appear in neither: the
  user asked for a smaller doctor, not for skipped checks.

Progress: ``progress`` (see :mod:`babysit.diagnostics.progress`) gets a step
as each part starts (``done`` parts finished, label ``running <part>``) and, from the
parts that take a ``progress`` argument (overfit-tiny, lr-probe), their own
steps tagged with the part's name: the doctor's sub-progress.

A part that raises a BabysitError (bad recipe, data or layer) ends the doctor:
the error propagates and the CLI exits 2.

The parts share one loaded Dataset (:func:`babysit.diagnostics.common.shared_data`):
the data is read and preprocessed once, not once per part, and each part's
Result equals its command's own.
"""

from __future__ import annotations

import importlib
import inspect
import time

from babysit.diagnostics.common import new_result, seeded, shared_data
from babysit.diagnostics.progress import notify, within
from babysit.errors import BabysitError

NOT_RUN = "not run"

# command -> (module, function); all take (recipe, seed=None, **options).
PARTS = {
    "sanity-loss": ("babysit.diagnostics.sanity", "sanity_loss"),
    "gradcheck": ("babysit.diagnostics.gradcheck", "gradcheck_recipe"),
    "overfit-tiny": ("babysit.diagnostics.overfit", "overfit_tiny"),
    "init-stats": ("babysit.diagnostics.init_stats", "init_stats"),
    "lr-probe": ("babysit.diagnostics.lr_probe", "lr_probe"),
}


def part_function(command: str):
    module, name = PARTS[command]
    return getattr(importlib.import_module(module), name)


def select_parts(parts=None) -> list[str]:
    """``parts`` (any order, None = all) in protocol order; an unknown name is a BabysitError."""
    if parts is None:
        return list(PARTS)
    parts = list(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise BabysitError(f"unknown doctor part {unknown[0]!r}; the parts are: {', '.join(PARTS)}")
    if not parts:
        raise BabysitError(f"no doctor part left to run; the parts are: {', '.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def takes_progress(function) -> bool:
    return "progress" in inspect.signature(function).parameters


def doctor(recipe, seed: int | None = None, stop_early: bool = False, on_part=None,
           before_part=None, parts=None, progress=None):
    """Run the parts on ``recipe``; returns the doctor Result (see the module doc).

    ``parts``: the commands to run (default all; always in protocol order).
    ``stop_early``: after the first failing part, skip the rest (reported as
    not run). ``before_part(command)`` / ``on_part(command, result)`` are hooks;
    ``progress`` gets :class:`~babysit.diagnostics.progress.Step` s (see the
    module doc). Each part's wall time goes to its ``elapsed`` (never into the JSON).
    """
    selected = select_parts(parts)
    recipe = seeded(recipe, seed)
    seed = recipe.seed
    result = new_result("doctor", recipe, seed)
    statuses = {}
    with shared_data():   # the parts read (and preprocess) the data once
        for index, command in enumerate(selected):
            if stop_early and result.status == "fail":
                statuses[command] = NOT_RUN
                continue
            if before_part is not None:
                before_part(command)
            notify(progress, index, len(selected), f"running {command}")
            function = part_function(command)
            options = {"progress": within(progress, command)} if progress and takes_progress(function) \
                else {}
            start = time.perf_counter()
            part = function(recipe, seed=seed, **options)
            if part.elapsed is None:
                part.elapsed = time.perf_counter() - start
            result.parts[command] = part
            statuses[command] = part.status
            if on_part is not None:
                on_part(command, part)
    notify(progress, len(selected), len(selected), "done")
    result.metrics = {"statuses": statuses,
                      "not_run": [c for c, s in statuses.items() if s == NOT_RUN]}
    result.elapsed = sum(p.elapsed or 0.0 for p in result.parts.values())
    return result


__all__ = ["doctor", "PARTS", "NOT_RUN", "part_function", "select_parts"]
