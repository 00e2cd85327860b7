"""Array helpers shared by the checks, the preprocessing steps and the inspection.

Statistics of large arrays are accumulated ``CHUNK`` rows at a time, in
float64, so a uint8 CIFAR-sized array never gets a full-size float copy.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK = 8192  # rows per chunk when accumulating statistics of large arrays
FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger values become inf in the model's float32


def as_examples(X: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); other shapes unchanged."""
    return X[:, None] if X.ndim == 3 else X


def rows(X: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, D); also for N = 0 (an empty validation split)."""
    return X.reshape(len(X), math.prod(X.shape[1:]))


def mean_and_var(X2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance (D,) of a 2-D array (N, D), accumulated in float64 by chunks."""
    n = len(X2)
    total = np.zeros(X2.shape[1])
    for start in range(0, n, CHUNK):
        total += X2[start:start + CHUNK].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(X2.shape[1])
    for start in range(0, n, CHUNK):
        squares += np.square(X2[start:start + CHUNK] - mean).sum(axis=0)
    return mean, squares / n


def count_nonfinite(X: np.ndarray) -> tuple[int, int]:
    """``(NaN count, inf count)`` of an array of any shape; (0, 0) unless it holds floats."""
    if X.dtype.kind != "f":
        return 0, 0
    flat = X.reshape(len(X), -1) if X.ndim else X.reshape(1, -1)
    nan = inf = 0
    for start in range(0, len(flat), CHUNK):
        chunk = flat[start:start + CHUNK]
        nan += int(np.count_nonzero(np.isnan(chunk)))
        inf += int(np.count_nonzero(np.isinf(chunk)))
    return nan, inf


def count_beyond(X: np.ndarray, limit: float) -> int:
    """How many finite values of a float array have magnitude above ``limit`` (0 for other dtypes)."""
    if X.dtype.kind != "f" or np.finfo(X.dtype).max <= limit:
        return 0
    flat = rows(X) if X.ndim else X.reshape(1, -1)
    count = 0
    for start in range(0, len(flat), CHUNK):
        chunk = flat[start:start + CHUNK]
        count += int(np.count_nonzero((np.abs(chunk) > limit) & np.isfinite(chunk)))
    return count


def all_finite(X: np.ndarray) -> bool:
    """True when a float array has no NaN or inf (checked by chunks, without a full-size mask)."""
    flat = rows(X) if X.ndim else X.reshape(1, -1)
    return all(np.isfinite(flat[start:start + CHUNK]).all() for start in range(0, len(flat), CHUNK))


__all__ = ["CHUNK", "FLOAT32_MAX", "as_examples", "rows", "mean_and_var", "count_nonfinite",
           "count_beyond", "all_finite"]
