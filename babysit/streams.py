"""The random streams: one generator per purpose, all derived from the seed.

Every command builds its model with ``np.random.default_rng(seed)``, so for
one seed all commands see the same initial weights. Any other randomness
comes from ``stream(seed, purpose)``, ``np.random.default_rng([seed, k])``
with a fixed ``k`` per purpose, so adding a draw in one place never shifts
another. Never reuse a number for something else, or old results stop
reproducing. NumPy and the standard library only (the data module uses it).
"""

from __future__ import annotations

import numpy as np

STREAMS = {
    "batches": 1,          # order of training mini-batches
    "subset": 2,           # which examples form an evaluation batch / datapoints
    "gradcheck": 3,        # which parameter entries a gradient check samples
    "projection": 4,       # random inputs and projections for standalone layers
    "split": 101,          # the train/validation split of a source without one
    "builtin": 102,        # the builtin generators (spiral, gaussian)
    "search_sampling": 103,  # a search stage's sampled values (plus the stage number)
}


def stream(seed: int, purpose: str, *more: int) -> np.random.Generator:
    """The generator for one purpose (a key of ``STREAMS``) under ``seed``.

    ``more`` extends the entropy (a search stage number), giving independent
    streams for one purpose.
    """
    return np.random.default_rng([int(seed), STREAMS[purpose], *(int(m) for m in more)])


__all__ = ["STREAMS", "stream"]
