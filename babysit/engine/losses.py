"""Classification losses: ``loss(scores (N, C), y (N,)) -> (loss: float, dscores (N, C))``.

Both are means over the batch; ``dscores`` has the dtype of ``scores``.
``get_loss("softmax" | "svm")`` returns a fresh loss object (it keeps the
state of its last call for ``kink_state``).
"""

from __future__ import annotations

import math

import numpy as np

from babysit.errors import DataError, ModelError


def check_inputs(scores, y) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and labels: scores (N, C) floating, y (N,) ints in 0..C-1."""
    scores = np.asarray(scores)
    y = np.asarray(y)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ModelError(f"the loss needs scores of shape (N, C) with N, C > 0, got {scores.shape}")
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    if y.shape != (scores.shape[0],):
        raise DataError(f"labels must have shape ({scores.shape[0]},) to match the scores "
                        f"{scores.shape}, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"labels must be integers, got dtype {y.dtype}")
    num_classes = scores.shape[1]
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(f"label {bad} is outside 0..{num_classes - 1} "
                        f"(the model outputs {num_classes} class scores)")
    return scores, y


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise class probabilities of ``scores`` ``(N, C)``, shifted by each row's
    maximum first (no overflow)."""
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return p


class SoftmaxLoss:
    """Cross-entropy of the softmax: ``mean(-log(exp(s_y) / sum_j exp(s_j)))``.

    Stable for any finite scores: they are shifted by their row maximum before
    exponentiating and the log-probability is taken as ``s_y - max - log(sum)``
    (log-sum-exp), never as ``log(p)``, so no probability underflow can give
    ``log(0)``.
    """

    kind = "softmax"
    has_kinks = False

    def __call__(self, scores, y):
        scores, y = check_inputs(scores, y)
        n = scores.shape[0]
        rows = np.arange(n)
        # Divergent models produce inf scores; report a NaN/inf loss, not warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            shifted = scores - scores.max(axis=1, keepdims=True)
            correct = shifted[rows, y]
            probs = np.exp(shifted, out=shifted)
            sums = probs.sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(sums[:, 0]).astype(np.float64) - correct))
            probs /= sums
        dscores = probs
        dscores[rows, y] -= 1
        dscores /= n
        return loss, dscores

    def kink_state(self):
        return None

    @staticmethod
    def expected_initial_loss(num_classes: int) -> float:
        """Loss for near-zero scores (uniform probabilities): ``ln C``."""
        return math.log(num_classes)

    def __repr__(self) -> str:
        return "SoftmaxLoss()"


class SVMLoss:
    """Multiclass hinge loss (Weston-Watkins), margin 1.

    ``mean_i sum_{j != y_i} max(0, s_j - s_{y_i} + 1)``. The correct class's own
    term (always exactly 1) is excluded. Non-differentiable where a margin is
    exactly 0: ``kink_state()`` returns the active-margin mask of the last call.
    """

    kind = "svm"
    has_kinks = True
    margin = 1.0

    def __init__(self):
        self._active = None

    def __call__(self, scores, y):
        scores, y = check_inputs(scores, y)
        n = scores.shape[0]
        rows = np.arange(n)
        with np.errstate(over="ignore", invalid="ignore"):
            margins = scores - scores[rows, y][:, None]
            margins += self.margin
            margins[rows, y] = 0
            active = margins > 0
            np.maximum(margins, 0, out=margins)
            loss = float(margins.sum(dtype=np.float64) / n)
        self._active = active
        dscores = active.astype(scores.dtype)
        dscores[rows, y] = -active.sum(axis=1)
        dscores /= n
        return loss, dscores

    def kink_state(self):
        """Boolean (N, C) mask of the margins that were > 0 in the last call."""
        return None if self._active is None else self._active.copy()

    @staticmethod
    def expected_initial_loss(num_classes: int) -> float:
        """Loss for near-zero scores (every margin is 1): ``C - 1``."""
        return float(num_classes - 1)

    def __repr__(self) -> str:
        return "SVMLoss()"


# {recipe name: class}; the recipe schema derives its loss choices from it.
LOSSES = {"softmax": SoftmaxLoss, "svm": SVMLoss}


def get_loss(name):
    """A fresh loss object for a recipe's ``loss`` value (``softmax`` or ``svm``)."""
    if isinstance(name, (SoftmaxLoss, SVMLoss)):
        return name
    cls = LOSSES.get(name.strip().lower()) if isinstance(name, str) else None
    if cls is None:
        raise ModelError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    return cls()


__all__ = ["LOSSES", "SVMLoss", "SoftmaxLoss", "get_loss", "softmax"]
