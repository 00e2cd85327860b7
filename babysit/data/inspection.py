"""Inspection for ``babysit data``: what a source holds, even when it is unusable.

:func:`inspect_data` returns a :class:`DataReport`: whether ``load_data``
accepts the data, every problem, and per-split :class:`SplitStats` both as
stored (``raw``) and as the model sees them (``loaded``: after split, limit
and preprocessing). The report holds plain numbers only (no arrays);
``to_dict()`` gives its JSON form (the ``babysit data --json`` metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from babysit.data.arrays import count_nonfinite, mean_and_var
from babysit.data.checks import find_problems, non_integer_count
from babysit.data.dataset import as_section, prepare
from babysit.data.sources import read_source
from babysit.errors import DataError


@dataclass(frozen=True)
class SplitStats:
    """Plain-number summary of one split's X and y.

    ``count`` examples (0 for a 0-d X); ``X_shape``/``y_shape`` and
    ``X_dtype``/``y_dtype`` as stored; ``mean``, ``std``, ``min``, ``max`` over
    the finite values of X (None if there are none or X is not numeric);
    ``feature_mean_absmax`` the largest |mean| of a single feature (far from 0
    relative to std means the data is not centred; None when X has NaN/inf);
    ``nan``, ``inf`` counts in X; ``label_min``, ``label_max`` (int, or float for
    fractional labels), ``non_integer_labels`` (count); ``class_counts``
    ``{label: count}`` (None when the labels are not integers).
    """

    count: int
    X_shape: tuple
    X_dtype: str
    y_shape: tuple
    y_dtype: str
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    feature_mean_absmax: float | None = None
    nan: int = 0
    inf: int = 0
    label_min: int | float | None = None
    label_max: int | float | None = None
    non_integer_labels: int = 0
    class_counts: dict | None = None

    def to_dict(self) -> dict:
        """The JSON form: every field in order, shapes as lists."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(X_shape=list(self.X_shape), y_shape=list(self.y_shape),
                   class_counts=None if self.class_counts is None else dict(self.class_counts))
        return out


@dataclass(frozen=True)
class LoadedData:
    """The data as the model sees it: ``splits`` ``{split: SplitStats}`` after split,
    limit and preprocessing; ``input_shape``; ``val_from`` ``"source"`` (the source
    has a validation split) or ``"split"`` (split off train); ``preprocess`` step names."""

    splits: dict
    input_shape: tuple
    val_from: str
    preprocess: tuple = ()

    def to_dict(self) -> dict:
        return {"splits": {split: stats.to_dict() for split, stats in self.splits.items()},
                "input_shape": list(self.input_shape), "val_from": self.val_from,
                "preprocess": list(self.preprocess)}


@dataclass(frozen=True)
class DataReport:
    """What :func:`inspect_data` found.

    ``source`` as described by its reader; ``ok`` True when load_data accepts
    the data; ``problems`` every reason it does not (same words as DataError);
    ``num_classes`` declared, else max label + 1 (None when unknown);
    ``class_names``; ``raw`` ``{split: SplitStats}`` as stored in the source
    (None if it could not be read); ``loaded`` a :class:`LoadedData` when ok.
    """

    source: str
    ok: bool = False
    problems: tuple = ()
    num_classes: int | None = None
    class_names: tuple | None = None
    raw: dict | None = None
    loaded: LoadedData | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "ok": self.ok, "problems": list(self.problems),
                "num_classes": self.num_classes,
                "class_names": list(self.class_names) if self.class_names else None,
                "raw": None if self.raw is None else {split: stats.to_dict()
                                                      for split, stats in self.raw.items()},
                "loaded": None if self.loaded is None else self.loaded.to_dict()}


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return int(value) if float(value).is_integer() else float(value)


def _x_stats(X: np.ndarray) -> dict:
    """The X fields of SplitStats for a numeric, non-empty X of at least one dimension."""
    X2 = X.reshape(len(X), -1)
    nan, inf = count_nonfinite(X2)
    out = {"nan": nan, "inf": inf}
    if nan or inf:
        finite = X2[np.isfinite(X2)]
        if finite.size:
            out.update(mean=float(finite.mean(dtype=np.float64)), std=float(finite.std(dtype=np.float64)),
                       min=float(finite.min()), max=float(finite.max()))
        return out
    mean, var = mean_and_var(X2)
    overall = float(mean.mean())
    # total variance = mean of per-feature variances + variance of the feature means
    std = math.sqrt(max(float(var.mean() + np.mean((mean - overall) ** 2)), 0.0))
    out.update(mean=overall, std=std, min=float(X2.min()), max=float(X2.max()),
               feature_mean_absmax=float(np.abs(mean).max()))
    return out


def _y_stats(y: np.ndarray) -> dict:
    """The label fields of SplitStats for a numeric, non-empty y."""
    flat = y.ravel()
    out = {}
    if flat.dtype.kind == "f":
        out["non_integer_labels"] = non_integer_count(flat)
        flat = flat[np.isfinite(flat)]
    if flat.size:
        out["label_min"], out["label_max"] = _plain(flat.min()), _plain(flat.max())
    if not out.get("non_integer_labels") and flat.size:
        # unique before int(): float labels beyond int64 (1e300) stay exact Python ints
        labels, counts = np.unique(flat, return_counts=True)
        out["class_counts"] = {int(k): int(c) for k, c in zip(labels, counts)}
    return out


def array_stats(X, y) -> SplitStats:
    """The :class:`SplitStats` of one split (X, y), whatever their dtypes and shapes."""
    X, y = np.asarray(X), np.asarray(y)
    out = {}
    # extreme values overflow the float64 sums: the statistics say inf, stderr stays quiet
    with np.errstate(over="ignore", invalid="ignore"):
        if X.dtype.kind in "biuf" and X.size and X.ndim >= 1:
            out.update(_x_stats(X))
        if y.dtype.kind in "biuf" and y.size:
            out.update(_y_stats(y))
    return SplitStats(count=int(len(X)) if X.ndim else 0, X_shape=tuple(X.shape), X_dtype=str(X.dtype),
                      y_shape=tuple(y.shape), y_dtype=str(y.dtype), **out)


def inspect_data(source_or_section, seed: int | None = None) -> DataReport:
    """Describe a data source for ``babysit data``, even when it is unusable.

    ``source_or_section``: a source string (``"builtin:digits"``, ``"x.h5"``,
    ``"cifar10:DIR"``), a ``data`` mapping or a recipe's DataSection. A source
    string that names no kind of source raises RecipeError; everything else
    (unreadable files, malformed or non-finite arrays) is reported.
    """
    section = as_section(source_or_section, seed)
    try:
        raw = read_source(section)
    except DataError as exc:
        return DataReport(section.source, problems=(str(exc),))
    stats = {split: array_stats(X, y) for split, (X, y) in raw.splits.items()}
    problems = tuple(find_problems(raw))
    label_max = [s.label_max for s in stats.values() if isinstance(s.label_max, int)]
    found = DataReport(raw.source, problems=problems,
                       num_classes=raw.num_classes or (max(label_max) + 1 if label_max else None),
                       class_names=tuple(raw.class_names) if raw.class_names else None, raw=stats)
    if problems:
        return found
    try:
        data = prepare(raw, section)
    except DataError as exc:
        return DataReport(found.source, problems=(str(exc),), num_classes=found.num_classes,
                          class_names=found.class_names, raw=stats)
    loaded = LoadedData({split: array_stats(X, y) for split, (X, y) in data.splits().items()},
                        input_shape=tuple(data.input_shape),
                        val_from="source" if "val" in raw.splits else "split",
                        preprocess=tuple(step.name for step in data.preprocess))
    return DataReport(found.source, ok=True, num_classes=data.num_classes,
                      class_names=found.class_names, raw=stats, loaded=loaded)


__all__ = ["SplitStats", "LoadedData", "DataReport", "array_stats", "inspect_data"]
