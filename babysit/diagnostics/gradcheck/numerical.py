"""Centered differences, one sampled entry at a time, and what they are compared into.

An :class:`Entry` is one sampled entry (both gradients, kink crossing, the
float64 resolution of the estimate); a :class:`Report` the entries of one
array (a parameter, a layer's input, a regularized weight); the
:class:`Differencer` fills reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from babysit.diagnostics.gradcheck.bands import (EPS, KINK_RETRIES, RESOLUTION_ULPS, STABILITY,
                                                 STABILITY_STEP, TINY, WARN_BAND, band, relative_error)


@dataclass
class Entry:
    """One sampled entry: where, both gradients, and how it was judged.

    ``floor`` is the float64 resolution of the numerical estimate,
    ``RESOLUTION_ULPS * eps * |f| / h``: f(x+h) and f(x-h) each carry a rounding
    error of about an ulp of |f|, which the difference divides by 2h. The
    judged error discounts it, ``max(0, |a - n| - floor) / max(|a|, |n|)``:
    without that, a structurally zero gradient (a bias right before a
    batchnorm: 1e-16 analytically, 1e-10 of rounding noise numerically), a
    saturated tanh net's 1e-9 gradients, or one weight's share of a large L2
    term would fail a correct backward. Bugs differ by far more than it.
    """

    index: tuple
    analytic: float
    numerical: float
    kink: bool = False
    floor: float = 0.0
    unstable: bool = False  # the estimate moved with the step: rounding noise, not a gradient

    @property
    def scale(self) -> float:
        return max(abs(self.analytic), abs(self.numerical))

    @property
    def zero(self) -> bool:
        """Both gradients are 0 as far as float64 can tell."""
        return self.scale <= self.floor

    @property
    def tiny(self) -> bool:
        """Resolvable but below ``TINY``: float range trouble, not judged."""
        return not self.zero and self.scale < TINY

    @property
    def judged(self) -> bool:
        return not (self.kink or self.tiny or self.unstable)

    @property
    def raw_error(self) -> float:
        """The textbook ``|a - n| / max(|a|, |n|)``, 0 when both are 0 to float64's resolution."""
        if self.zero:
            return 0.0
        return relative_error(self.analytic, self.numerical)

    @property
    def rel_error(self) -> float:
        """The judged error: the textbook one beyond the numerical resolution."""
        if self.zero:
            return 0.0
        return max(0.0, abs(self.analytic - self.numerical) - self.floor) / self.scale


@dataclass
class Report:
    """The entries checked for one array (a parameter, an input, a regularized weight).

    ``kind`` is ``param``, ``input`` (the gradient a layer's backward returns
    for its input) or ``reg`` (the L2 term alone).
    """

    name: str
    kind: str
    layer: str | None
    entries: list = field(default_factory=list)
    grad_max: float = 0.0  # max |analytic| over the whole array, not just the sample

    @property
    def vanishing(self) -> bool:
        """Nothing verified: the whole analytic gradient is below ``TINY`` and no
        sampled entry had a numerical gradient float64 could resolve either."""
        return (bool(self.entries) and self.grad_max < TINY
                and all(e.zero or e.tiny for e in self.entries))

    @property
    def judged(self) -> list:
        return [e for e in self.entries if e.judged]

    @property
    def worst(self) -> Entry | None:
        judged = self.judged
        return max(judged, key=lambda e: (e.rel_error, e.raw_error)) if judged else None

    @property
    def judged_rel_error(self) -> float | None:
        """The worst judged error (beyond the numerical resolution): what the bands apply to."""
        worst = self.worst
        return None if worst is None else worst.rel_error

    @property
    def max_rel_error(self) -> float | None:
        """The worst textbook relative error over the judged entries (what people compare)."""
        judged = self.judged
        return max(e.raw_error for e in judged) if judged else None

    @property
    def kinks(self) -> int:
        return sum(e.kink for e in self.entries)

    @property
    def tiny(self) -> int:
        return sum(e.tiny for e in self.entries if not e.kink)

    @property
    def unstable(self) -> int:
        return sum(e.unstable for e in self.entries)

    def verdict(self, has_kinks: bool) -> str:
        return band(self.judged_rel_error, has_kinks)

    def to_metrics(self) -> dict:
        worst = self.worst
        return {"max_rel_error": self.max_rel_error,
                "judged_rel_error": self.judged_rel_error,
                "checked": len(self.entries), "kinks": self.kinks, "tiny": self.tiny,
                "unstable": self.unstable,
                "grad_max": self.grad_max,
                "analytic": None if worst is None else worst.analytic,
                "numerical": None if worst is None else worst.numerical,
                "index": None if worst is None else list(worst.index)}


def same_state(a, b) -> bool:
    """Two ``Model.kink_state()`` lists took the same branch everywhere."""
    return all((x is None and y is None) or (x is not None and y is not None
                                              and np.array_equal(x, y))
               for x, y in zip(a, b))


def snapshot(state) -> list:
    return [None if s is None else np.array(s, copy=True) for s in state]


class Differencer:
    """Centered differences of a scalar function, one sampled entry at a time.

    ``loss()`` recomputes the function from the current value of ``array``;
    ``kinks()`` returns the branch record of the last evaluation (or None when
    the function is smooth).
    """

    def __init__(self, h: float, rng: np.random.Generator, entries: int | None):
        self.h = h
        self.rng = rng
        self.entries = entries  # None: every entry

    def sample(self, shape) -> list[tuple]:
        size = int(math.prod(shape))
        if self.entries is None or self.entries >= size:
            flat = np.arange(size)
        else:
            flat = np.sort(self.rng.choice(size, size=self.entries, replace=False))
        return [tuple(int(i) for i in idx) for idx in zip(*np.unravel_index(flat, shape))]

    def check(self, report: Report, array: np.ndarray, analytic: np.ndarray, loss,
              kinks=None) -> Report:
        report.grad_max = float(np.max(np.abs(analytic))) if analytic.size else 0.0
        for idx in self.sample(array.shape):
            numerical, crossed, floor = self.estimate(array, idx, self.h, loss, kinks)
            for shrink in KINK_RETRIES:  # a smaller step often stays on one side of the kink
                if not crossed:
                    break
                numerical, crossed, floor = self.estimate(array, idx, self.h / shrink, loss, kinks)
            entry = Entry(idx, float(analytic[idx]), numerical, crossed, floor)
            if entry.judged and entry.rel_error > WARN_BAND:
                entry.unstable = self.moves_with_step(array, idx, entry, loss, kinks)
            report.entries.append(entry)
        return report

    def estimate(self, array, idx, h: float, loss, kinks) -> tuple[float, bool, float]:
        """``(f(x+h) - f(x-h)) / 2h`` at one entry, whether a kink was crossed, the floor."""
        old = array[idx]
        array[idx] = old + h
        plus = loss()
        state_plus = snapshot(kinks()) if kinks else None
        array[idx] = old - h
        minus = loss()
        state_minus = kinks() if kinks else None
        array[idx] = old
        # Only x+h against x-h: layers before a layer-input check keep the
        # (identical) state of an earlier pass, so a third reference would lie.
        crossed = kinks is not None and not same_state(state_plus, state_minus)
        floor = RESOLUTION_ULPS * EPS * max(abs(plus), abs(minus)) / h
        return (plus - minus) / (2 * h), crossed, floor

    def moves_with_step(self, array, idx, entry: Entry, loss, kinks) -> bool:
        """A failing entry's estimate is noise: it moves, when the step grows
        STABILITY_STEP-fold (or its square), by about as much as it disagrees
        with the analytic value.

        A float64 function's centered difference barely moves (O(h^2), parts in
        1e8), so a wrong backward keeps its disagreement under the larger step;
        a function that rounds in float32 inside gives noise of order
        ``eps32 |f| / h``, which shrinks with the larger step. A kink crossed by
        the larger step proves nothing either way, and so does a loss that
        changes between two calls at the same point (the entry keeps its verdict).
        """
        if loss() != loss():
            # not a function of its inputs (randomness not replayed): no step size
            # makes its estimate meaningful, and that is the layer's fault
            return False
        disagreement = abs(entry.analytic - entry.numerical) - entry.floor
        for growth in (STABILITY_STEP, STABILITY_STEP ** 2):  # one step can agree by chance
            wider, crossed, floor = self.estimate(array, idx, growth * self.h, loss, kinks)
            if crossed:
                return False
            if abs(wider - entry.numerical) - floor >= STABILITY * disagreement:
                return True
        return False


__all__ = ["Entry", "Report", "Differencer", "same_state", "snapshot"]
