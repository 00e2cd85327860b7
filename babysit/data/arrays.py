"""Array helpers shared by the checks, the preprocessing steps and the inspection.

Statistics of large arrays are accumulated ``CHUNK`` rows at a time, in
float64, so a uint8 CIFAR-sized array never gets a full-size float copy.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK = 8192  # rows per chunk when accumulating statistics of large arrays


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


__all__ = ["CHUNK", "as_examples", "rows", "mean_and_var", "count_nonfinite"]
