"""HDF5 search logs: every trial of a ``babysit search``, written as trials finish.

Layout of ``runs/<name>-search-<time>.h5``::

    /                      attrs: babysit_format="search", format_version, babysit_version,
                           recipe (resolved YAML), recipe_name, recipe_path, seed,
                           epochs, trials_per_stage, stages, space (JSON: the
                           command-line space), stage_spaces (JSON list, one space
                           per stage started), status (running|complete|interrupted|failed),
                           backend (where the trials ran), started (local ISO time)
    /trials/index          int64 (T,)  global trial index (stage 1 first)
    /trials/stage          int64 (T,)  1-based
    /trials/seed           int64 (T,)  the trial's own seed
    /trials/status         str   (T,)  ok | diverged
    /trials/val_accuracy   float64 (T,) NaN when the trial diverged
    /trials/train_accuracy float64 (T,) NaN when the trial diverged
    /trials/final_loss     float64 (T,) last mini-batch loss (NaN/inf allowed)
    /trials/epochs_run     int64 (T,)  epochs started (an aborted trial stops inside its last)
    /trials/seconds        float64 (T,) wall time (kept here, never in --json)
    /trials/params/<key>   one column per searched key: float64 (log, uniform),
                           int64 (int), str (choice; mapped back to the option on read)

Rows are in the order trials finished. Every write rewrites the whole (small) file
to a temporary file next to it and renames it over the old one
(:func:`babysit.store.write_hdf5`), so a reader, a crash or Ctrl-C never sees
half a log and the finished trials are always on disk.

The reader is registered with :mod:`babysit.store` under the kind ``"search"``, so
``babysit.store.read_log`` (``babysit report``) reads search logs once this module
is imported.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from babysit.locks import claimed
from babysit.log_checks import (DamagedLog, attributes, checked_attrs, equal_lengths, group_at,
                                json_text, numbers, strings)
from babysit.store import FORMAT_ATTR, StoreError, read_log, register_reader, write_hdf5
from babysit.validation import NON_NEGATIVE_INT, NUMBER, show

KIND = "search"
FORMAT_VERSION = 1

# Trial fields stored as columns, with their HDF5 dtype.
_COLUMNS = {"index": "int64", "stage": "int64", "seed": "int64", "status": "str",
            "val_accuracy": "float64", "train_accuracy": "float64",
            "final_loss": "float64", "epochs_run": "int64", "seconds": "float64"}
_OPTIONAL_FLOATS = ("val_accuracy", "train_accuracy")
# Root attributes a report reads, and what they must be when present.
_META = {"seed": NON_NEGATIVE_INT, "epochs": NON_NEGATIVE_INT, "trials_per_stage": NON_NEGATIVE_INT,
         "stages": NON_NEGATIVE_INT, "format_version": NON_NEGATIVE_INT, "status": str,
         "recipe_name": str, "recipe_path": str, "backend": str, "started": str,
         "babysit_version": str}


@dataclass
class SearchLog:
    """A search log read back: its attributes, spaces and trials (dicts, finish order)."""

    path: Path | None
    meta: dict
    space: dict  # key -> distribution dict (SearchSpace.to_dict form)
    stage_spaces: list
    trials: list = field(default_factory=list)

    kind = KIND

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "unknown"))

    @classmethod
    def from_h5(cls, handle, path=None) -> "SearchLog":
        """Read and check (after :func:`babysit.log_checks.check_structure`): the spaces are
        JSON of the form the writer uses, every column (and parameter column) is 1-D with one
        entry per trial, numbers or text as :data:`_COLUMNS` says."""
        meta = attributes(handle, "/", skip=(FORMAT_ATTR,))
        space = checked_space(meta.pop("space", None), "attribute 'space'")
        stage_spaces = json_text(meta.pop("stage_spaces", None), "attribute 'stage_spaces'", list)
        for stage, stage_space in enumerate(stage_spaces, start=1):
            if set(checked_space(stage_space, f"stage {stage}'s space")) != set(space):
                raise DamagedLog(f"stage {stage}'s space has other keys than the search space")
        checked_attrs(meta, _META)
        group = group_at(handle, "trials", "/trials")
        budget = handle.id.get_filesize()   # text cannot legitimately exceed the file
        columns = {}
        for name, dtype in _COLUMNS.items():
            where = f"/trials/{name}"
            columns[name] = (strings(group.get(name), where, budget) if dtype == "str"
                             else numbers(group.get(name), where, ndim=1).tolist())
        params = {}
        param_group = group_at(group, "params", "/trials/params")
        for key, dist in space.items():
            data, where = param_group.get(key), f"/trials/params/{key}"
            if dist["kind"] == "choice":
                by_text = {str(o): o for o in dist["options"]}
                params[key] = [by_text.get(v, v) for v in strings(data, where, budget)]
            else:
                params[key] = numbers(data, where, ndim=1).tolist()
        rows = equal_lengths([(f"/trials/{name}", np.asarray(values, dtype=object))
                              for name, values in {**columns, **params}.items()], "trial")
        trials = []
        for row in range(rows or 0):
            trial = {name: columns[name][row] for name in _COLUMNS}
            for name in _OPTIONAL_FLOATS:
                if math.isnan(trial[name]):
                    trial[name] = None
            trial["params"] = {key: params[key][row] for key in space}
            trials.append(trial)
        return cls(path=Path(path) if path is not None else None, meta=meta, space=space,
                   stage_spaces=stage_spaces, trials=trials)


def checked_space(value, what: str) -> dict:
    """A space as the log stores it (``SearchSpace.to_dict``): ``{key: {"kind": "choice",
    "options": [...]}}`` or ``{key: {"kind": log|uniform|int, "low": a, "high": b}}``, a < b.
    ``value`` is JSON text or an already parsed stage space."""
    space = json_text(value, what) if not isinstance(value, dict) else value
    for key, dist in space.items():
        if not isinstance(dist, dict):
            raise DamagedLog(f"{what}: {key!r} is not a distribution")
        kind = dist.get("kind")
        if kind == "choice":
            options = dist.get("options")
            if not (isinstance(options, list) and options
                    and all(isinstance(o, (str, int, float)) for o in options)):
                raise DamagedLog(f"{what}: {key!r} has no list of options")
        elif kind in ("log", "uniform", "int"):
            low, high = dist.get("low"), dist.get("high")
            if not (NUMBER.accepts(low) and NUMBER.accepts(high) and low < high
                    and (kind != "log" or low > 0)):
                raise DamagedLog(f"{what}: {key!r} is not a range ({show(low)} to {show(high)})")
        else:
            raise DamagedLog(f"{what}: {key!r} has unknown kind {show(kind)}")
    return space


register_reader(KIND, SearchLog.from_h5)


def read_search_log(path) -> SearchLog:
    """Read a search log; :class:`babysit.store.StoreError` when ``path`` is not one."""
    log = read_log(path)
    if not isinstance(log, SearchLog):
        raise StoreError(f"{str(path)!r} is a babysit {log.kind} log, not a search log")
    return log


class SearchLogWriter:
    """Keeps the search's trials in memory and rewrites the log after each change.

    ``meta`` holds the root attributes (see the module docstring); ``space`` the
    command-line space as a dict. Call :meth:`add_trial` as each trial finishes,
    :meth:`start_stage` with each stage's space, :meth:`close` with the final status.
    From creation to :meth:`close` the log is locked (:func:`babysit.locks.claimed`):
    a second writer of the same file gets OutputLocked (exit 2), unless the path is
    babysit's ``default_name``, which then moves on to ``-2``, ``-3`` ... (read
    :attr:`path` for the one written).
    """

    def __init__(self, path, meta: dict, space: dict, default_name: bool = False):
        self.meta = dict(meta)
        self.space = dict(space)
        self.stage_spaces: list = []
        self.trials: list = []
        self.status = "running"
        self._lock = contextlib.ExitStack()
        self.path = self._lock.enter_context(claimed(path, default_name=default_name))
        try:
            self.flush()
        except BaseException:
            self._lock.close()
            raise

    def start_stage(self, space: dict) -> None:
        self.stage_spaces.append(dict(space))
        self.flush()

    def add_trial(self, trial: dict) -> None:
        """``trial``: index, stage, seed, params, status, val/train accuracy, final_loss,
        epochs_run, seconds (see :func:`babysit.diagnostics.search_trial.run_trial`)."""
        self.trials.append(trial)
        self.flush()

    def close(self, status: str = "complete") -> None:
        """Write the final status and release the lock."""
        self.status = status
        try:
            self.flush()
        finally:
            self._lock.close()

    def flush(self) -> None:
        write_hdf5(self.path, self._write)

    def _write(self, f) -> None:
        import h5py

        from babysit import __version__

        f.attrs[FORMAT_ATTR] = KIND
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["babysit_version"] = __version__
        for key, value in self.meta.items():
            if value is not None:
                f.attrs[key] = value
        f.attrs["space"] = json.dumps(self.space)
        f.attrs["stage_spaces"] = json.dumps(self.stage_spaces)
        f.attrs["status"] = self.status
        group = f.create_group("trials")
        text = h5py.string_dtype()
        for name, dtype in _COLUMNS.items():
            values = [_column_value(t.get(name), dtype) for t in self.trials]
            if dtype == "str":
                group.create_dataset(name, data=np.array(values, dtype=object), dtype=text)
            else:
                group.create_dataset(name, data=np.array(values, dtype=dtype))
        params = group.create_group("params")
        for key, dist in self.space.items():
            values = [t["params"][key] for t in self.trials]
            if dist["kind"] == "choice":
                params.create_dataset(key, data=np.array([str(v) for v in values], dtype=object),
                                      dtype=text)
            else:
                dtype = "int64" if dist["kind"] == "int" else "float64"
                params.create_dataset(key, data=np.array(values, dtype=dtype))


def _column_value(value, dtype):
    if dtype == "str":
        return "" if value is None else str(value)
    if dtype == "float64":
        return math.nan if value is None else float(value)
    return 0 if value is None else int(value)
