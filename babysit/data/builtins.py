"""The builtin data sets (``builtin:NAME``): a registry of generators and their option tables.

* ``digits``: the UCI 8x8 handwritten digits shipped in ``bundled/digits.h5``
  (1,797 images (N, 1, 8, 8), values 0..16, classes 0..9); no options.
* ``spiral``: the CS231n notes' spiral: ``n`` 2-D points in total, split evenly
  over ``classes`` arms, with angular ``noise``.
* ``gaussian``: ``n`` unit-Gaussian vectors of dimension ``dim`` with uniformly
  random labels in 0..``classes``-1 (the lecture's init experiments).

Their randomness comes from ``stream(seed, "builtin")`` of the recipe seed.
``BUILTINS`` (``{name: {option: (default, Rule)}}``) is the recipe schema of
``data.source: {builtin: NAME, ...}``, derived from the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from babysit.data.formats import RawData, read_hdf5
from babysit.errors import DataError
from babysit.streams import stream
from babysit.validation import CLASS_COUNT, NON_NEGATIVE, POSITIVE_INT

BUNDLED_DIGITS = Path(__file__).resolve().parent.parent / "bundled" / "digits.h5"


@dataclass(frozen=True)
class Builtin:
    """One builtin data set: ``make(params, rng, label) -> RawData`` and its option table.

    ``params`` holds every option of ``options`` (already checked and defaulted
    by the recipe); ``rng`` is the builtin stream of the seed.
    """

    make: Callable[[Mapping, np.random.Generator, str], RawData]
    options: Mapping = field(default_factory=dict)


def spiral(n: int, classes: int, noise: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """The CS231n spiral, vectorised: X float32 (n, 2), y int (n,).

    Class j holds about n/classes points with radius 0..1 and angle
    4j..4(j+1) plus ``noise`` * N(0, 1).
    """
    y = (np.arange(n) * classes) // n
    counts = np.bincount(y, minlength=classes)
    starts = np.cumsum(counts) - counts
    position = np.arange(n) - starts[y]
    radius = position / np.maximum(counts[y] - 1, 1)
    theta = 4.0 * (y + radius) + noise * rng.standard_normal(n)
    X = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
    return X.astype(np.float32), y


def _digits(params, rng, label: str) -> RawData:
    return read_hdf5(BUNDLED_DIGITS, label)


def _spiral(params, rng, label: str) -> RawData:
    X, y = spiral(int(params["n"]), int(params["classes"]), float(params["noise"]), rng)
    return RawData({"train": (X, y)}, label, int(params["classes"]))


def _gaussian(params, rng, label: str) -> RawData:
    X = rng.standard_normal((int(params["n"]), int(params["dim"])), dtype=np.float32)
    y = rng.integers(0, int(params["classes"]), size=int(params["n"]))
    return RawData({"train": (X, y)}, label, int(params["classes"]))


BUILTIN_SETS = {
    "digits": Builtin(_digits),
    "spiral": Builtin(_spiral, {"n": (300, POSITIVE_INT), "classes": (3, CLASS_COUNT),
                                "noise": (0.2, NON_NEGATIVE)}),
    "gaussian": Builtin(_gaussian, {"n": (1000, POSITIVE_INT), "dim": (500, POSITIVE_INT),
                                    "classes": (10, CLASS_COUNT)}),
}

# The recipe schema: {name: {option: (default, Rule)}}.
BUILTINS = {name: dict(builtin.options) for name, builtin in BUILTIN_SETS.items()}


def read_builtin(name: str, params: Mapping, seed: int) -> RawData:
    """The arrays of ``builtin:<name>`` with its (resolved) ``params`` under ``seed``."""
    builtin = BUILTIN_SETS.get(name)
    if builtin is None:
        raise DataError(f"unknown builtin data set {name!r}")
    return builtin.make(params, stream(seed, "builtin"), f"builtin:{name}")


__all__ = ["Builtin", "BUILTIN_SETS", "BUILTINS", "BUNDLED_DIGITS", "read_builtin", "spiral"]
