"""The builtin data sets (``builtin:NAME``): a registry of generators and their option tables.

* ``digits``: the UCI 8x8 handwritten digits shipped in ``bundled/digits.h5``
  (1,797 images (N, 1, 8, 8), values 0..16, classes 0..9); no options.
* ``spiral``: the CS231n notes' spiral: ``n`` 2-D points in total, split evenly
  over ``classes`` arms, with angular ``noise``.
* ``gaussian``: ``n`` unit-Gaussian vectors of dimension ``dim`` with uniformly
  random labels in 0..``classes``-1 (the lecture's init experiments).
* ``gratings``: ``n`` colour images ``(3, size, size)`` (CIFAR-sized by
  default), each a patch of stripes at a random place, colour and phase on a
  noisy background; the class is the stripes' orientation (see
  :func:`gratings`). Local, translated structure: what a ConvNet learns and a
  linear classifier on pixels does not.

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


# Largest builtin image set, in numbers (1 GiB of float32): a typo in n or
# size is a clear error, not a machine swapping itself to death.
MAX_GENERATED_VALUES = 2 ** 28


def gratings(n: int, classes: int, size: int, noise: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Oriented stripes in a Gaussian window: X float32 ``(n, 3, size, size)``, y int ``(n,)``.

    Classes are balanced (example i has class i mod ``classes``, then the
    order is shuffled). Class j's stripes run at angle ``pi * j / classes``
    (plus a jitter of a tenth of the gap between classes), with a wavelength
    of 3 to 6 pixels (scaled with ``size / 32``), a random phase, and a window
    of width 0.15 to 0.3 image sides centred anywhere in the middle 60% of
    the image. The stripes get a random colour (per channel in [-1, 1], the
    strongest channel at +-1), the background a random grey level in
    [-0.5, 0.5], and every pixel ``noise`` * N(0, 1).
    """
    y = rng.permutation(np.arange(n) % classes)
    gap = np.pi / classes
    theta = gap * y + 0.1 * gap * rng.uniform(-1.0, 1.0, n)
    wavenumber = 2.0 * np.pi / (rng.uniform(3.0, 6.0, n) * size / 32.0)
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    centre = rng.uniform(0.2, 0.8, (n, 2)) * size
    width = rng.uniform(0.15, 0.3, n) * size
    colour = rng.uniform(-1.0, 1.0, (n, 3, 1, 1))
    colour = (colour / np.abs(colour).max(axis=1, keepdims=True)).astype(np.float32)
    background = rng.uniform(-0.5, 0.5, (n, 1, 1, 1)).astype(np.float32)
    grid = np.arange(size, dtype=np.float32)
    X = np.empty((n, 3, size, size), dtype=np.float32)
    for start in range(0, n, 256):   # bounded temporaries whatever n is
        part = slice(start, start + 256)
        rows = grid[None, :, None] - centre[part, 1, None, None]
        cols = grid[None, None, :] - centre[part, 0, None, None]
        along = cols * np.cos(theta[part])[:, None, None] + rows * np.sin(theta[part])[:, None, None]
        stripes = np.cos(wavenumber[part, None, None] * along + phase[part, None, None])
        window = np.exp(-(rows ** 2 + cols ** 2) / (2.0 * width[part, None, None] ** 2))
        pattern = (stripes * window).astype(np.float32)
        X[part] = colour[part] * pattern[:, None] + background[part]
        X[part] += noise * rng.standard_normal(X[part].shape, dtype=np.float32)
    return X, y


def _digits(params, rng, label: str) -> RawData:
    return read_hdf5(BUNDLED_DIGITS, label)


def _spiral(params, rng, label: str) -> RawData:
    X, y = spiral(int(params["n"]), int(params["classes"]), float(params["noise"]), rng)
    return RawData({"train": (X, y)}, label, int(params["classes"]))


def _gaussian(params, rng, label: str) -> RawData:
    X = rng.standard_normal((int(params["n"]), int(params["dim"])), dtype=np.float32)
    y = rng.integers(0, int(params["classes"]), size=int(params["n"]))
    return RawData({"train": (X, y)}, label, int(params["classes"]))


def _gratings(params, rng, label: str) -> RawData:
    n, size = int(params["n"]), int(params["size"])
    if n * 3 * size * size > MAX_GENERATED_VALUES:
        raise DataError(f"{label}: n={n} images of 3x{size}x{size} would be over "
                        f"{MAX_GENERATED_VALUES:,} numbers; ask for fewer or smaller images")
    X, y = gratings(n, int(params["classes"]), size, float(params["noise"]), rng)
    return RawData({"train": (X, y)}, label, int(params["classes"]))


BUILTIN_SETS = {
    "digits": Builtin(_digits),
    "spiral": Builtin(_spiral, {"n": (300, POSITIVE_INT), "classes": (3, CLASS_COUNT),
                                "noise": (0.2, NON_NEGATIVE)}),
    "gaussian": Builtin(_gaussian, {"n": (1000, POSITIVE_INT), "dim": (500, POSITIVE_INT),
                                    "classes": (10, CLASS_COUNT)}),
    "gratings": Builtin(_gratings, {"n": (3000, POSITIVE_INT), "classes": (10, CLASS_COUNT),
                                    "size": (32, POSITIVE_INT), "noise": (0.3, NON_NEGATIVE)}),
}

# The recipe schema: {name: {option: (default, Rule)}}.
BUILTINS = {name: dict(builtin.options) for name, builtin in BUILTIN_SETS.items()}


def read_builtin(name: str, params: Mapping, seed: int) -> RawData:
    """The arrays of ``builtin:<name>`` with its (resolved) ``params`` under ``seed``."""
    builtin = BUILTIN_SETS.get(name)
    if builtin is None:
        raise DataError(f"unknown builtin data set {name!r}")
    return builtin.make(params, stream(seed, "builtin"), f"builtin:{name}")


__all__ = ["Builtin", "BUILTIN_SETS", "BUILTINS", "BUNDLED_DIGITS", "MAX_GENERATED_VALUES", "gratings",
           "read_builtin", "spiral"]
