"""Preprocessing steps: fitted on the training split, applied to every split.

Each step is a class registered in ``STEPS`` under its recipe name. It
declares its recipe options once, as ``OPTIONS = {option: (default, Rule)}``
(babysit.validation rules); the constructor takes exactly those options as
keyword arguments. ``PREPROCESS`` (the recipe schema of ``data.preprocess``)
is derived from the registry. A step's interface::

    step = STEPS["pca"](components=20)   # or make_step("pca", {"components": 20})
    step.fit(X_train) -> step            # X (N, ...) float32; sets step.state
    step.apply(X) -> X'                  # any split, same per-example shape as fitted on
    step.name, step.state                # recipe name; {statistic: array} fitted values

pca/whiten ``components``: null keeps every component, an integer k keeps the
top k, a fraction f keeps the fewest components explaining that share of the
training variance.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from babysit.data.arrays import CHUNK, mean_and_var, rows
from babysit.engine.parallel import pin_blas
from babysit.errors import DataError
from babysit.validation import POSITIVE, Rule, resolve_options

COMPONENTS = Rule("null, a positive integer, or a variance fraction strictly between 0 and 1",
                  lambda x: 0 < x < 1 or (x >= 1 and float(x).is_integer()), nullable=True)


class Step:
    """Base of the preprocessing steps: ``name``, ``OPTIONS``, ``fit``, ``apply``, ``state``."""

    name = ""
    OPTIONS: Mapping = {}  # {option: (default, Rule)}; the constructor's keyword arguments

    def fit(self, X: np.ndarray) -> "Step":
        raise NotImplementedError

    def apply(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MeanImage(Step):
    """Subtract the training split's mean example (per pixel and channel)."""

    name = "mean_image"

    def fit(self, X):
        self.mean = mean_and_var(rows(X))[0].reshape(X.shape[1:]).astype(np.float32)
        self.state = {"mean": self.mean}
        return self

    def apply(self, X):
        return X - self.mean


class PerChannelMean(Step):
    """Subtract one mean per channel of (N, C, H, W) data; for (N, D) data the
    single global mean (vectors are treated as one channel)."""

    name = "per_channel_mean"

    def fit(self, X):
        if X.ndim == 4:
            channels = X.transpose(1, 0, 2, 3).reshape(X.shape[1], -1)
            self.mean = channels.mean(axis=1, dtype=np.float64).reshape(1, -1, 1, 1)
        else:
            self.mean = np.asarray(X.mean(dtype=np.float64))
        self.mean = self.mean.astype(np.float32)
        self.state = {"mean": self.mean}
        return self

    def apply(self, X):
        return X - self.mean


class Standardize(Step):
    """Zero mean, unit variance per feature; constant features are only centred."""

    name = "standardize"
    min_std = 1e-8

    def fit(self, X):
        mean, var = mean_and_var(rows(X))
        std = np.sqrt(var)
        std[std < self.min_std] = 1.0
        self.mean = mean.reshape(X.shape[1:]).astype(np.float32)
        self.std = std.reshape(X.shape[1:]).astype(np.float32)
        self.state = {"mean": self.mean, "std": self.std}
        return self

    def apply(self, X):
        return (X - self.mean) / self.std


class PCA(Step):
    """Project the centred, flattened data onto the top principal components.

    ``components``: None keeps all of them (a rotation onto decorrelated axes),
    an integer k keeps k, a fraction 0 < f < 1 keeps the fewest that explain
    at least that share of the training variance. With ``whiten`` each
    component is divided by ``sqrt(eigenvalue + eps)`` (unit variance).
    Output: (N, k). Eigenvector signs are fixed (largest entry positive) so the
    result does not depend on the LAPACK build.
    """

    name = "pca"
    OPTIONS = {"components": (None, COMPONENTS)}

    def __init__(self, components=None, eps=1e-5, whiten=False):
        self.components, self.eps, self.whiten = components, eps, whiten
        if whiten:
            self.name = "whiten"

    def fit(self, X):
        pin_blas()   # one BLAS thread: the same bits whatever the thread count
        X2 = rows(X)
        mean = mean_and_var(X2)[0]
        cov = np.zeros((X2.shape[1], X2.shape[1]))
        for start in range(0, len(X2), CHUNK):
            chunk = X2[start:start + CHUNK] - mean
            cov += chunk.T @ chunk
        values, vectors = np.linalg.eigh(cov / len(X2))
        values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
        signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
        vectors = vectors * np.where(signs == 0, 1.0, signs)
        k = self._keep(values, X2.shape[1])
        basis = vectors[:, :k]
        if self.whiten:
            basis = basis / np.sqrt(values[:k] + self.eps)
        self.mean = mean.astype(np.float32)
        self.basis = basis.astype(np.float32)
        self.explained = float(values[:k].sum() / values.sum()) if values.sum() > 0 else 1.0
        self.state = {"mean": self.mean, "basis": self.basis, "eigenvalues": values[:k]}
        return self

    def _keep(self, values, features: int) -> int:
        if self.components is None:
            return features
        if 0 < self.components < 1:
            total = values.sum()
            if total <= 0:
                return 1
            return int(np.searchsorted(np.cumsum(values) / total, self.components - 1e-12) + 1)
        k = int(self.components)
        if k > features:
            raise DataError(f"{self.name}: components={k} but the data has only {features} features")
        return k

    def apply(self, X):
        pin_blas()
        return (rows(X) - self.mean) @ self.basis


class Whiten(PCA):
    """PCA whitening: :class:`PCA` with ``whiten=True`` (unit variance per component)."""

    name = "whiten"
    OPTIONS = {"components": (None, COMPONENTS), "eps": (1e-5, POSITIVE)}

    def __init__(self, components=None, eps=1e-5):
        super().__init__(components, eps, whiten=True)


# recipe name -> step class
STEPS = {step.name: step for step in (MeanImage, PerChannelMean, Standardize, PCA, Whiten)}

# The recipe schema: {name: {option: (default, Rule)}}.
PREPROCESS = {name: dict(step.OPTIONS) for name, step in STEPS.items()}


def make_step(name: str, options: Mapping | None = None) -> Step:
    """An unfitted preprocessing step from a recipe entry ``(name, options)``.

    ``options`` are checked against the step's ``OPTIONS`` (absent ones take
    their defaults); an unknown step or a bad option is a DataError.
    """
    step = STEPS.get(name)
    if step is None:
        raise DataError(f"unknown preprocessing step {name!r}")
    return step(**resolve_options(options or {}, step.OPTIONS, name, DataError))


__all__ = ["Step", "MeanImage", "PerChannelMean", "Standardize", "PCA", "Whiten", "STEPS",
           "PREPROCESS", "COMPONENTS", "make_step"]
