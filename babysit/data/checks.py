"""Is raw data usable? Every reason it is not, in plain words.

The same words end up in the DataError of ``load_data`` (the first problem)
and in the inspection's ``problems`` (all of them). Usable data has, in every
split, numeric X that is 2-D (N, D), 3-D (N, H, W) or 4-D (N, C, H, W), not
empty, finite and within float32's range (the model computes in float32, where
larger values become inf); y of N integer labels in 0..num_classes-1; the same
per-example shape in every split; and at least two classes.

How many classes the labels may imply. C is the declared ``num_classes``, else
the largest label + 1; N counts the examples of every split; K the distinct
labels that occur.

* C > N, more classes than examples (``too_many_classes``): unusable, a problem.
  Most classes could never be seen, and the model's last layer (C outputs per
  input feature) would outweigh the data itself: labels {0, 1, 2**40} would ask
  for ``out: 1099511627777``. Such labels are ids, not class indices.
* C > SPARSE_RATIO * K, most of 0..C-1 never occur (``sparse_labels``): usable,
  but the model gets C outputs and an initial loss of ln C for K real classes
  (MNIST labels 200..209 make 210 classes). ``babysit data`` warns
  (``label_out_of_range``, severity warn) and suggests remapping to 0..K-1.
"""

from __future__ import annotations

import numpy as np

from babysit.data.arrays import FLOAT32_MAX, as_examples, count_beyond, count_nonfinite
from babysit.data.formats import RawData

SPARSE_RATIO = 2  # classes per distinct label above which the labels are sparse


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
                huge = count_beyond(X, FLOAT32_MAX)
                if huge:
                    problems.append(beyond_float32_words(xs, huge))
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
        largest = int(labels.max())
        classes = raw.num_classes or largest + 1
        if classes < 2:
            problems.append("the labels name only one class; a classifier needs at least two")
        elif too_many_classes(classes, len(labels)):
            distinct = len(np.unique(labels))
            problems.append(f"{too_many_classes_words(classes, largest, len(labels), distinct)}: "
                            f"labels are class indices 0..C-1; remap them to 0..{distinct - 1} "
                            f"(np.unique(y, return_inverse=True))")
    return problems


def too_many_classes(num_classes: int, examples: int) -> bool:
    """More classes than examples: unusable (see the module docstring)."""
    return num_classes > examples


def sparse_labels(num_classes: int, distinct: int) -> bool:
    """Most classes 0..num_classes-1 never occur among the ``distinct`` labels."""
    return num_classes > SPARSE_RATIO * distinct


def _where_classes_come_from(num_classes: int, largest: int) -> str:
    return f"labels up to {largest}" if largest == num_classes - 1 else "declared num_classes"


def too_many_classes_words(num_classes: int, largest: int, examples: int, distinct: int) -> str:
    """The problem of more classes than examples (``largest``: the largest label)."""
    return (f"the data has {num_classes} classes ({_where_classes_come_from(num_classes, largest)}) "
            f"but only {examples} examples with {distinct} distinct labels")


def sparse_labels_words(num_classes: int, largest: int, distinct: int) -> str:
    """The warning of sparse labels (``largest``: the largest label)."""
    return (f"the labels are sparse: {distinct} distinct labels make {num_classes} classes "
            f"({_where_classes_come_from(num_classes, largest)}), {num_classes - distinct} of "
            f"them without a single example; the model needs {num_classes} outputs for "
            f"{distinct} classes")


def beyond_float32_words(name: str, count: int | None = None) -> str:
    """The problem of values of array ``name`` too large for float32 (``count`` of them, if known)."""
    values = "values" if count is None else f"{count} values"
    return (f"{name} has {values} beyond float32's range (|x| > {FLOAT32_MAX:.3g}): "
            f"they become inf in the model's float32")


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


__all__ = ["find_problems", "label_problems", "non_integer_count", "too_many_classes", "sparse_labels",
           "too_many_classes_words", "sparse_labels_words", "beyond_float32_words", "SPARSE_RATIO"]
