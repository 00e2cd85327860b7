"""Is raw data usable? Every reason it is not, in plain words.

The same words end up in the DataError of ``load_data`` (the first problem)
and in the inspection's ``problems`` (all of them). Usable data has, in every
split, numeric X that is 2-D (N, D), 3-D (N, H, W) or 4-D (N, C, H, W), not
empty and finite; y of N integer labels in 0..num_classes-1; the same
per-example shape in every split; and at least two classes.
"""

from __future__ import annotations

import numpy as np

from babysit.data.arrays import as_examples, count_nonfinite
from babysit.data.formats import RawData


def find_problems(raw: RawData) -> list[str]:
    """Every reason the arrays are unusable, in plain words (empty list: usable)."""
    problems = []
    shapes = {}
    for split, (X, y) in raw.splits.items():
        xs, ys = f"X_{split}", f"y_{split}"
        if X.dtype.kind not in "biuf":
            problems.append(f"{xs} has dtype {X.dtype}; expected numbers")
        elif X.ndim not in (2, 3, 4):
            problems.append(f"{xs} must be 2-D (N, D) or 4-D (N, C, H, W), got shape {X.shape}")
        elif X.size == 0:
            problems.append(f"{xs} is empty (shape {X.shape})")
        else:
            shapes[split] = as_examples(X).shape[1:]
            if X.dtype.kind == "f":
                nan, inf = count_nonfinite(X)
                if nan or inf:
                    problems.append(f"{xs} contains {nan} NaN and {inf} inf values")
        y_flat = y.reshape(len(y)) if y.ndim == 2 and y.shape[1:] == (1,) else y
        if y_flat.ndim != 1:
            hint = " (one-hot labels? store the class index)" if y.ndim == 2 else ""
            problems.append(f"{ys} must be 1-D labels (N,), got shape {y.shape}{hint}")
            continue
        if X.ndim >= 1 and len(X) != len(y_flat):
            problems.append(f"{xs} has {len(X)} examples but {ys} has {len(y_flat)} labels")
        problems.extend(label_problems(y_flat, ys, raw.num_classes))
    reference = shapes.get("train")
    for split, shape in shapes.items():
        if reference is not None and shape != reference:
            problems.append(f"X_{split} has per-example shape {shape} but X_train has {reference}")
    if not problems:
        labels = np.concatenate([np.asarray(y).ravel() for _, y in raw.splits.values()])
        classes = raw.num_classes or int(labels.max()) + 1
        if classes < 2:
            problems.append("the labels name only one class; a classifier needs at least two")
    return problems


def non_integer_count(y: np.ndarray) -> int:
    """How many entries of a float label array are NaN, inf or fractional."""
    finite = np.isfinite(y)
    return int(np.count_nonzero(~finite | (np.floor(np.where(finite, y, 0)) != y)))


def label_problems(y: np.ndarray, name: str, num_classes: int | None) -> list[str]:
    """The first problem of 1-D labels ``y`` (named ``name``), as a list of at most one."""
    if y.dtype.kind not in "biuf":
        return [f"{name} has dtype {y.dtype}; labels must be integers 0..C-1"]
    if y.size == 0:
        return [f"{name} is empty"]
    if y.dtype.kind == "f":
        bad = non_integer_count(y)
        if bad:
            return [f"{name} has {bad} non-integer labels; labels must be integers 0..C-1"]
    low, high = y.min(), y.max()
    if low < 0:
        return [f"{name} has labels outside 0..C-1: minimum {low}"]
    if num_classes is not None and high >= num_classes:
        return [f"{name} has labels outside 0..{num_classes - 1}: maximum {high}"]
    return []


__all__ = ["find_problems", "label_problems", "non_integer_count"]
