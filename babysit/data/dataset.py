"""From a recipe's ``data`` section to a :class:`Dataset`: read, check, split, preprocess.

Arrays: X is float32, 2-D (N, D) or 4-D NCHW (N, C, H, W); a 3-D source
(N, H, W) is read as (N, 1, H, W). y is int64 in 0..num_classes-1, where
num_classes is the source's declared count or the largest label + 1.

Splits: when the source has no validation split, ``val_fraction`` of the
training examples go to validation, stratified by class, chosen with
``stream(seed, "split")``; the training split keeps that shuffled order so
``limit`` keeps a random subset. Preprocessing steps are fitted on the
(limited) training split only and applied to every split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from babysit.data.arrays import all_finite, as_examples
from babysit.data.checks import find_problems
from babysit.data.formats import RawData
from babysit.data.preprocess import make_step
from babysit.data.sources import read_source
from babysit.errors import DataError
from babysit.streams import stream


@dataclass
class Dataset:
    """Loaded, split and preprocessed data.

    ``X_*`` float32 ``(N, *input_shape)``, ``y_*`` int64 ``(N,)``; the test
    split is None when the source has none; ``X_val`` is empty (0 rows) when
    ``val_fraction`` is 0 and the source has no validation split.
    ``preprocess`` holds the fitted steps (each has ``apply(X)`` and ``state``).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    input_shape: tuple
    num_classes: int
    source: str
    preprocess: list = field(default_factory=list)
    class_names: tuple | None = None

    def splits(self) -> dict:
        """``{"train": (X, y), "val": (X, y), "test": (X, y)}`` for the splits present."""
        out = {"train": (self.X_train, self.y_train), "val": (self.X_val, self.y_val)}
        if self.X_test is not None:
            out["test"] = (self.X_test, self.y_test)
        return out


def as_section(source_or_section, seed: int | None = None):
    """A :class:`babysit.recipes.DataSection` from a source string, a mapping or a section.

    The recipe module is imported here, not at import time: it depends on the
    data package's schema tables, never the other way round.
    """
    from babysit.recipes import data_section as build

    return build(source_or_section, seed=seed)


def stratified_split(y: np.ndarray, val_fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: round(val_fraction * n_c) of each class c go to
    validation; both index arrays are in the same random order."""
    order = rng.permutation(len(y))
    by_class = order[np.argsort(y[order], kind="stable")]
    # compact class indices: the work follows the examples, not the largest label
    _, labels = np.unique(y[by_class], return_inverse=True)
    counts = np.bincount(labels)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(y)) - starts[labels]
    is_val = np.zeros(len(y), dtype=bool)
    is_val[by_class] = rank < np.round(val_fraction * counts[labels])
    return order[~is_val[order]], order[is_val[order]]


def load_data(section, seed: int | None = None) -> Dataset:
    """Load, check, split and preprocess the data of a recipe's ``data`` section.

    ``section`` is a :class:`babysit.recipes.DataSection` (``recipe.data``), a
    ``data`` mapping, or a source string such as ``"builtin:digits"``; ``seed``
    replaces the section's seed when given. Raises DataError (naming the
    source and the problem) for missing files or keys, mismatched lengths,
    labels outside 0..C-1, NaN/inf, empty arrays and unreadable files.
    """
    section = as_section(section, seed)
    raw = read_source(section)
    problems = find_problems(raw)
    if problems:
        raise DataError(f"{raw.source}: {problems[0]}"
                        + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
    return prepare(raw, section)


def prepare(raw: RawData, section) -> Dataset:
    """Split, limit, convert to float32 and preprocess checked raw arrays (no problems left)."""
    labels = {name: np.asarray(y).reshape(len(y)).astype(np.int64) for name, (_, y) in raw.splits.items()}
    examples = {name: as_examples(np.asarray(X)) for name, (X, _) in raw.splits.items()}
    num_classes = raw.num_classes or 1 + max(int(y.max()) for y in labels.values())
    # index the stored arrays (often uint8) before converting: one float32 copy per split
    train_idx = np.arange(len(labels["train"]))
    if "val" not in raw.splits:
        rng = stream(section.seed, "split")
        train_idx, val_idx = stratified_split(labels["train"], section.val_fraction, rng)
        if len(train_idx) == 0:
            raise DataError(f"{raw.source}: val_fraction={section.val_fraction} leaves no training examples")
        examples["val"], labels["val"] = examples["train"][val_idx], labels["train"][val_idx]
    if section.limit is not None:
        train_idx = train_idx[:section.limit]
    if "val" not in raw.splits or section.limit is not None:
        examples["train"], labels["train"] = examples["train"][train_idx], labels["train"][train_idx]
    # checked data fits float32; extreme values may still overflow in a step: that is
    # reported below as a DataError, not as NumPy warnings on stderr
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        X = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in examples.items()}
        steps = []
        for name, options in section.preprocess:
            step = make_step(name, options).fit(X["train"])
            X = {split: np.ascontiguousarray(step.apply(value), dtype=np.float32)
                 for split, value in X.items()}
            steps.append(step)
    if steps:
        for split, value in X.items():
            if not all_finite(value):
                raise DataError(f"{raw.source}: preprocessing ({', '.join(s.name for s in steps)}) "
                                f"turned X_{split} into NaN/inf: its values are too extreme for "
                                f"float32; rescale the data")
    return Dataset(X["train"], labels["train"], X["val"], labels["val"], X.get("test"), labels.get("test"),
                   input_shape=tuple(X["train"].shape[1:]), num_classes=int(num_classes),
                   source=raw.source, preprocess=steps, class_names=raw.class_names)


__all__ = ["Dataset", "as_section", "stratified_split", "load_data", "prepare"]
