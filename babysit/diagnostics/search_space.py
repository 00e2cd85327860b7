"""The hyperparameter search space: ``--param`` parsing, sampling, coarse-to-fine.

A search space maps a dotted recipe key (``optim.lr``, ``model.layers.0.affine.out``)
to a distribution, written on the command line as ``KEY=KIND:ARGS``:

==============  ======================  =========================================
KIND            example                 sampled value
==============  ======================  =========================================
``log``         ``log:1e-5:1e-1``       uniform in log10 space (positive bounds)
``uniform``     ``uniform:0.1:0.9``     uniform between the bounds
``int``         ``int:20:200``          integer, uniform between the bounds inclusive
``choice``      ``choice:sgd,adam``     one of the listed values, equally likely
==============  ======================  =========================================

Numeric distributions work in a *coordinate* space (log10 of the value for
``log``, the value itself otherwise); narrowing and the range-edge test are done
in that space, which is what "the outer 10% in log space" means.

Randomness comes only from the ``np.random.Generator`` handed to ``sample``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from babysit.errors import BabysitError

KINDS = ("log", "uniform", "int", "choice")

# Fraction of a range (in coordinate space) counted as its edge: a best value in
# the outer 10% on either side means the optimum may lie outside the range.
EDGE_FRACTION = 0.1
# Coarse-to-fine: a narrowed range spans the top trials plus this margin (as a
# fraction of the current width) on each side ...
NARROW_MARGIN = 0.05
# ... and at most this fraction of the current width, so every stage zooms in.
NARROW_MAX_WIDTH = 0.5


class SearchSpaceError(BabysitError):
    """A ``--param`` specification that cannot be parsed or makes no sense."""


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SearchSpaceError(f"--param {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SearchSpaceError(f"--param {spec!r}: bound {text!r} must be finite")
    return value


def _scalar(text: str):
    """A choice value as the YAML-ish scalar it spells: int, float, bool or string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Numeric:
    """A numeric range ``[low, high]``; ``kind`` is ``log``, ``uniform`` or ``int``."""

    kind: str
    low: float
    high: float

    def to_coord(self, value) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        return np.log10(value) if self.kind == "log" else value

    def from_coord(self, coord):
        if self.kind == "log":
            return 10.0 ** coord
        if self.kind == "int":
            return np.rint(coord).astype(np.int64)
        return coord

    @property
    def coord_bounds(self) -> tuple[float, float]:
        lo, hi = self.to_coord([self.low, self.high])
        return float(lo), float(hi)

    def sample(self, rng: np.random.Generator, n: int) -> list:
        lo, hi = self.coord_bounds
        if self.kind == "int":
            # Inclusive integers: every integer in [low, high] equally likely.
            return [int(v) for v in rng.integers(int(self.low), int(self.high) + 1, size=n)]
        return [float(v) for v in self.from_coord(rng.uniform(lo, hi, size=n))]

    def position(self, value) -> float:
        """Where ``value`` sits in the range, 0 (low end) .. 1 (high end), in coordinates."""
        lo, hi = self.coord_bounds
        if hi == lo:
            return 0.5
        return float((self.to_coord(value) - lo) / (hi - lo))

    def narrow(self, values, best) -> "Numeric":
        """A sub-range around ``values`` (the top trials' values; ``best`` the winner's).

        The new range covers the top values plus a small margin, but never more
        than half the current width: when the top trials are spread out, the
        half-width window is centred on the best trial instead.
        """
        lo, hi = self.coord_bounds
        width = hi - lo
        coords = self.to_coord(values)
        new_lo = float(coords.min()) - NARROW_MARGIN * width
        new_hi = float(coords.max()) + NARROW_MARGIN * width
        if new_hi - new_lo > NARROW_MAX_WIDTH * width:
            half = 0.5 * NARROW_MAX_WIDTH * width
            centre = float(self.to_coord(best))
            new_lo, new_hi = centre - half, centre + half
        # Slide (not clip) a window that pokes out, so it keeps its width.
        if new_lo < lo:
            new_lo, new_hi = lo, min(hi, new_hi + (lo - new_lo))
        if new_hi > hi:
            new_lo, new_hi = max(lo, new_lo - (new_hi - hi)), hi
        low, high = (float(v) for v in self.from_coord(np.array([new_lo, new_hi])))
        if self.kind == "int":
            low, high = int(math.floor(low)), int(math.ceil(high))
            low, high = max(low, int(self.low)), min(high, int(self.high))
        return Numeric(self.kind, low, high)

    def describe(self) -> str:
        if self.kind == "int":
            return f"int:{int(self.low)}:{int(self.high)}"
        return f"{self.kind}:{self.low:.4g}:{self.high:.4g}"

    def to_dict(self) -> dict:
        low, high = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
        return {"kind": self.kind, "low": low, "high": high}


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of values (strings, numbers or booleans)."""

    options: tuple
    kind: str = "choice"

    def sample(self, rng: np.random.Generator, n: int) -> list:
        picks = rng.integers(0, len(self.options), size=n)
        return [self.options[int(i)] for i in picks]

    def narrow(self, values, best) -> "Choice":
        """Keep the options the top trials used, in their original order."""
        kept = tuple(o for o in self.options if any(_same(o, v) for v in values))
        return Choice(kept or (best,))

    def describe(self) -> str:
        return "choice:" + ",".join(str(o) for o in self.options)

    def to_dict(self) -> dict:
        return {"kind": "choice", "options": list(self.options)}


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def parse_param(spec: str) -> tuple[str, Numeric | Choice]:
    """``"optim.lr=log:1e-5:1e-1"`` -> ``("optim.lr", Numeric("log", 1e-5, 1e-1))``."""
    key, sep, dist = spec.partition("=")
    key, dist = key.strip(), dist.strip()
    if not sep or not key or not dist:
        raise SearchSpaceError(
            f"--param {spec!r}: expected KEY=KIND:ARGS, e.g. optim.lr=log:1e-5:1e-1")
    if any(not part for part in key.split(".")):
        raise SearchSpaceError(f"--param {spec!r}: {key!r} is not a dotted recipe key")
    kind, _, args = dist.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise SearchSpaceError(
            f"--param {spec!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "choice":
        options = tuple(_scalar(o.strip()) for o in args.split(",") if o.strip())
        if not options:
            raise SearchSpaceError(f"--param {spec!r}: choice needs values, e.g. choice:sgd,adam")
        deduped = tuple(o for i, o in enumerate(options)
                        if not any(_same(o, p) for p in options[:i]))
        return key, Choice(deduped)
    bounds = args.split(":")
    if len(bounds) != 2:
        raise SearchSpaceError(
            f"--param {spec!r}: {kind} needs two bounds, e.g. {kind}:LOW:HIGH")
    low, high = (_number(b.strip(), spec) for b in bounds)
    if low >= high:
        raise SearchSpaceError(f"--param {spec!r}: low bound {low:g} must be below high {high:g}")
    if kind == "log" and low <= 0:
        raise SearchSpaceError(f"--param {spec!r}: log bounds must be positive")
    if kind == "int":
        if low != int(low) or high != int(high):
            raise SearchSpaceError(f"--param {spec!r}: int bounds must be whole numbers")
        low, high = int(low), int(high)
    return key, Numeric(kind, low, high)


class SearchSpace:
    """An ordered mapping ``dotted key -> distribution``."""

    def __init__(self, params: dict):
        if not params:
            raise SearchSpaceError("search needs at least one --param KEY=KIND:ARGS")
        self.params = dict(params)

    @classmethod
    def parse(cls, specs) -> "SearchSpace":
        params = {}
        for spec in specs:
            key, dist = parse_param(spec)
            if key in params:
                raise SearchSpaceError(f"--param {key!r} is given twice")
            params[key] = dist
        return cls(params)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        """Inverse of :meth:`to_dict` (used to read search logs back)."""
        params = {}
        for key, d in data.items():
            if d["kind"] == "choice":
                params[key] = Choice(tuple(d["options"]))
            else:
                params[key] = Numeric(d["kind"], d["low"], d["high"])
        return cls(params)

    def sample(self, rng: np.random.Generator, n: int) -> list[dict]:
        """``n`` parameter sets ``{key: value}``; one draw of ``n`` values per key, in key order."""
        columns = {key: dist.sample(rng, n) for key, dist in self.params.items()}
        return [{key: columns[key][i] for key in self.params} for i in range(n)]

    def narrow(self, top: list[dict], best: dict) -> "SearchSpace":
        """The next stage's space around the ``top`` parameter sets (``best`` first)."""
        return SearchSpace({key: dist.narrow([p[key] for p in top], best[key])
                            for key, dist in self.params.items()})

    def numeric(self) -> dict:
        return {k: d for k, d in self.params.items() if isinstance(d, Numeric)}

    def to_dict(self) -> dict:
        return {key: dist.to_dict() for key, dist in self.params.items()}

    def __repr__(self) -> str:
        described = ", ".join(f"{k}={d.describe()}" for k, d in self.params.items())
        return f"SearchSpace({described})"


def top_k(n_finished: int) -> int:
    """How many of the best finished trials define the next stage's region."""
    return max(1, min(n_finished, max(2, math.ceil(0.2 * n_finished))))
