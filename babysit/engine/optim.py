"""Parameter updates, learning-rate schedules and Polyak parameter averaging.

One update interface::

    opt = make_optimizer(optim_section, params)   # params: {name: ndarray}, updated in place
    opt.step(grads, lr)                           # grads: same keys as params
    opt.state_dict() / opt.load_state_dict(d)     # {"t": int, "<param>/<slot>": ndarray}
    schedule = make_schedule(optim_section)        # schedule(epoch) -> lr
    avg = ParameterAverage(params, beta)           # avg.update() after each step; avg.params

The rules are the CS231n lecture's (``x`` a parameter, ``dx`` its gradient,
``lr`` the learning rate of this step):

* ``sgd``:      ``x -= lr * dx``
* ``momentum``: ``v = mu * v - lr * dx; x += v``
* ``nesterov``: ``v_prev = v; v = mu * v - lr * dx; x += -mu * v_prev + (1 + mu) * v``
* ``adagrad``:  ``cache += dx**2; x -= lr * dx / (sqrt(cache) + eps)``
* ``rmsprop``:  ``cache = decay_rate * cache + (1 - decay_rate) * dx**2;
  x -= lr * dx / (sqrt(cache) + eps)``
* ``adam``:     ``m = beta1*m + (1-beta1)*dx; v = beta2*v + (1-beta2)*dx**2;
  x -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1**t)``,
  ``v_hat = v / (1 - beta2**t)``, ``t`` counted from 1.
* ``lbfgs``:    a quasi-Newton step with a strong Wolfe line search
  (:mod:`babysit.engine.lbfgs`): full batch only; it needs the loss as a
  function of the parameters (``needs_closure``), which the Solver provides.

Every first-order update works in place with one preallocated scratch array per parameter,
so a step allocates no new parameter-sized arrays. Slots and scratch have the
parameter's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:   # NumPy 1.x
    byte_bounds = np.byte_bounds

from babysit.engine.lbfgs import LBFGS
from babysit.engine.parallel import run, span_count, spans, splits, threads
from babysit.errors import ModelError
from babysit.validation import (HALF_OPEN_UNIT, KEEP_PROB, NON_NEGATIVE, POSITIVE, POSITIVE_INT,
                                REQUIRED, as_mapping, check_keys, resolve_options)

# The option tables {key: (default, Rule)} of an optim section. They are the
# truth for the recipe schema too (babysit.recipes.schema derives its optim
# and decay tables from them), so the engine and a recipe agree on every bound.

# The learning rate: required by make_schedule; recipes default it to 1e-3.
LR_RULE = POSITIVE

# Hyperparameters of the update rules. Every rule accepts them all (a recipe
# may carry `momentum` while using adam; it is simply unused).
# memory is L-BFGS's number of curvature pairs (10, as L-BFGS-B's default).
# decay_rate, RMSProp's cache decay, is in [0, 1): 0 keeps no memory (the
# cache is the current dx**2, so each step is scaled by this gradient's own
# size: a noisy but valid update), while 1 would never write the cache, which
# stays 0 and turns every step into dx / eps.
HYPERPARAMETERS = {
    "momentum": (0.9, HALF_OPEN_UNIT),
    "decay_rate": (0.99, HALF_OPEN_UNIT),
    "beta1": (0.9, HALF_OPEN_UNIT),
    "beta2": (0.999, HALF_OPEN_UNIT),
    "eps": (1e-8, POSITIVE),
    "memory": (10, POSITIVE_INT),
}
SECTION_KEYS = ("update", "lr", "decay") + tuple(HYPERPARAMETERS)

# Learning-rate decay kinds and their options (besides `kind`).
# step: lr * factor**(epoch // every); exp: lr * exp(-rate * epoch);
# inv_t: lr / (1 + rate * epoch).
DECAYS = {
    "step": {"every": (REQUIRED, POSITIVE_INT), "factor": (0.5, KEEP_PROB)},
    "exp": {"rate": (REQUIRED, NON_NEGATIVE)},
    "inv_t": {"rate": (REQUIRED, NON_NEGATIVE)},
}


# ---------------------------------------------------------------------------
# Update rules


def overlapping(arrays) -> bool:
    """Whether any two of ``arrays`` may share memory (their byte ranges overlap)."""
    bounds = sorted(byte_bounds(a) for a in arrays if a.size)
    return any(start < previous_end for (_, previous_end), (start, _) in zip(bounds, bounds[1:]))


class Optimizer:
    """Base class: keeps per-parameter slot arrays and the step count ``t``.

    Subclasses name their slots in ``slots`` and implement ``update(x, dx, lr,
    slots, scratch)`` for one parameter, in place. What the Solver must
    provide is declared once, here for every first-order rule: no closure,
    any batch size, never converged (see :class:`babysit.engine.lbfgs.LBFGS`).
    """

    name = "sgd"
    slots: tuple = ()
    hyper: tuple = ()
    needs_closure = False   # True: step(grads, lr, closure, loss) with closure() -> (loss, grads)
    full_batch = False      # True: the Solver refuses mini-batches
    converged = False       # True: its steps change nothing any more (train reports it)

    def __init__(self, params: Mapping, **hyper):
        self.params = params
        for key in self.hyper:
            setattr(self, key, float(hyper[key]))
        self.t = 0
        self.state = {name: {slot: np.zeros_like(x) for slot in self.slots}
                      for name, x in params.items()}
        self._scratch = {name: np.empty_like(x) for name, x in params.items()}
        self._elements = sum(int(x.size) for x in params.values())
        self._sequential = overlapping(params.values())
        self._plan = None   # (thread count, pieces): see pieces()

    def step(self, grads: Mapping, lr: float) -> None:
        """Apply one update with learning rate ``lr`` to every parameter, in place."""
        if len(grads) != len(self.params) or any(name not in grads for name in self.params):
            missing = sorted(set(self.params) - set(grads))
            extra = sorted(set(grads) - set(self.params))
            raise ModelError(f"gradients do not match the parameters (missing {missing}, extra {extra})")
        self.t += 1
        lr = float(lr)
        pieces = self.pieces()
        # a gradient is flattened once per step, not once per piece (a strided one is copied)
        flat = {name: np.ravel(grads[name]) for name, span in pieces if span is not None}
        if self._sequential or not splits(self._elements):
            for piece in pieces:   # a small model, or parameters sharing memory: one at a time
                self.update_piece(piece, grads, flat, lr)
        else:
            run(len(pieces), lambda i: self.update_piece(pieces[i], grads, flat, lr))

    def pieces(self) -> list[tuple[str, slice | None]]:
        """A step's work: ``(name, span of the flat parameter)`` pieces, largest first.

        Every rule is element-wise (its scalars, such as Adam's bias
        corrections, are the same for every element), so pieces give the same
        numbers as one whole-array pass per parameter, however they are cut
        and whichever thread takes them. A large parameter is cut as
        :func:`for_spans` cuts it; the others are whole pieces (span None),
        as is a user layer's strided parameter. All pieces of a step go to the
        free cores as one job, so the many mid-sized weights of a deep net
        (ten 500x500 layers: none large enough to cut) update side by side,
        not one after another; largest first, so the cores finish together.
        The plan depends on the thread count only, never on the numbers.

        Parameters whose memory overlaps (a custom layer's tied weights) are
        updated whole, one after another in the parameters' order, as a
        single thread would: side by side their updates would race.
        """
        count = threads()
        if self._plan is None or self._plan[0] != count:
            size = {name: x.size for name, x in self.params.items()}
            if self._sequential:
                pieces = [(name, None) for name in self.params]
            else:
                pieces = []
                for name, x in self.params.items():
                    parts = span_count(x.size) if x.flags.c_contiguous else 1
                    pieces += ([(name, slice(start, stop)) for start, stop in spans(x.size, parts)]
                               if parts > 1 else [(name, None)])
                pieces.sort(key=lambda piece: -(size[piece[0]] if piece[1] is None
                                                else piece[1].stop - piece[1].start))
            self._plan = (count, pieces)
        return self._plan[1]

    def update_piece(self, piece: tuple[str, slice | None], grads: Mapping, flat: Mapping,
                     lr: float) -> None:
        """:meth:`update` on one piece of :meth:`pieces`, in place (``flat``: the cut
        parameters' gradients, flattened)."""
        name, span = piece
        x, dx, slots, scratch = self.params[name], grads[name], self.state[name], self._scratch[name]
        if span is not None:
            x, dx, scratch = x.reshape(-1)[span], flat[name][span], scratch.reshape(-1)[span]
            slots = {key: value.reshape(-1)[span] for key, value in slots.items()}
        self.update(x, dx, lr, slots, scratch)

    def update(self, x, dx, lr, slots, scratch) -> None:
        np.multiply(dx, -lr, out=scratch)
        x += scratch

    # -- checkpoints ------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"t": steps taken, "<param>/<slot>": copy of the slot}``: all an exact resume needs."""
        state = {"t": int(self.t)}
        for name, slots in self.state.items():
            for slot, value in slots.items():
                state[f"{name}/{slot}"] = value.copy()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a :meth:`state_dict` (same parameters, same rule) into the slots in place."""
        expected = {f"{name}/{slot}" for name, slots in self.state.items() for slot in slots}
        given = set(state) - {"t"}
        if "t" not in state or given != expected:
            raise ModelError(f"optimizer state does not fit a {self.name} optimizer of these "
                             f"parameters: expected keys {sorted(expected | {'t'})}, "
                             f"got {sorted(state)}")
        for name, slots in self.state.items():
            for slot, target in slots.items():
                value = np.asarray(state[f"{name}/{slot}"])
                if value.shape != target.shape:
                    raise ModelError(f"optimizer state {name}/{slot} has shape {value.shape}, "
                                     f"expected {target.shape}")
                np.copyto(target, value, casting="same_kind")
        self.t = int(state["t"])

    def __repr__(self) -> str:
        hyper = ", ".join(f"{key}={getattr(self, key):g}" for key in self.hyper)
        return f"{type(self).__name__}({hyper})"


class SGD(Optimizer):
    name = "sgd"


class Momentum(Optimizer):
    name = "momentum"
    slots = ("v",)
    hyper = ("momentum",)

    def update(self, x, dx, lr, slots, scratch):
        v = slots["v"]
        v *= self.momentum
        np.multiply(dx, lr, out=scratch)
        v -= scratch
        x += v


class Nesterov(Optimizer):
    """The lecture's rewritten Nesterov form: x holds the look-ahead parameters."""

    name = "nesterov"
    slots = ("v",)
    hyper = ("momentum",)

    def update(self, x, dx, lr, slots, scratch):
        mu = self.momentum
        v = slots["v"]
        # x += -mu * v_prev + (1 + mu) * (mu * v_prev - lr * dx)
        #    = x + mu**2 * v_prev - (1 + mu) * lr * dx, computed before v changes.
        np.multiply(v, mu * mu, out=scratch)
        x += scratch
        np.multiply(dx, (1.0 + mu) * lr, out=scratch)
        x -= scratch
        v *= mu
        np.multiply(dx, lr, out=scratch)
        v -= scratch


class Adagrad(Optimizer):
    name = "adagrad"
    slots = ("cache",)
    hyper = ("eps",)

    def update(self, x, dx, lr, slots, scratch):
        cache = slots["cache"]
        np.square(dx, out=scratch)
        cache += scratch
        divide_by_root(x, dx, cache, lr, self.eps, scratch)


class RMSProp(Optimizer):
    name = "rmsprop"
    slots = ("cache",)
    hyper = ("decay_rate", "eps")

    def update(self, x, dx, lr, slots, scratch):
        cache = slots["cache"]
        cache *= self.decay_rate
        np.square(dx, out=scratch)
        scratch *= 1.0 - self.decay_rate
        cache += scratch
        divide_by_root(x, dx, cache, lr, self.eps, scratch)


class Adam(Optimizer):
    name = "adam"
    slots = ("m", "v")
    hyper = ("beta1", "beta2", "eps")

    def update(self, x, dx, lr, slots, scratch):
        m, v = slots["m"], slots["v"]
        b1, b2 = self.beta1, self.beta2
        m *= b1
        np.multiply(dx, 1.0 - b1, out=scratch)
        m += scratch
        v *= b2
        np.square(dx, out=scratch)
        scratch *= 1.0 - b2
        v += scratch
        # x -= lr * (m / c1) / (sqrt(v / c2) + eps), with sqrt(v / c2) = sqrt(v) / sqrt(c2)
        c1 = 1.0 - b1 ** self.t
        c2 = 1.0 - b2 ** self.t
        np.sqrt(v, out=scratch)
        scratch *= 1.0 / math.sqrt(c2)
        scratch += self.eps
        np.divide(m, scratch, out=scratch)
        scratch *= lr / c1
        x -= scratch


def divide_by_root(x, dx, cache, lr, eps, scratch) -> None:
    """``x -= lr * dx / (sqrt(cache) + eps)`` in place (scratch is overwritten)."""
    np.sqrt(cache, out=scratch)
    scratch += eps
    np.divide(dx, scratch, out=scratch)
    scratch *= lr
    x -= scratch


RULES = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adagrad, RMSProp, Adam, LBFGS)}


def make_optimizer(section, params: Mapping) -> Optimizer:
    """The optimizer of a recipe's ``optim`` section over ``params`` (updated in place).

    Accepted keys: ``update`` (default sgd), ``lr`` and ``decay`` (read by
    :func:`make_schedule`, not here), ``momentum``, ``decay_rate``, ``beta1``,
    ``beta2``, ``eps``, ``memory``. Unknown keys and update names raise ModelError.
    """
    section = as_mapping(section, "the optim section", ModelError)
    check_keys(section, SECTION_KEYS, "optim", ModelError)
    update = section.get("update") or "sgd"
    cls = RULES.get(update.strip().lower()) if isinstance(update, str) else None
    if cls is None:
        raise ModelError(f"unknown update {update!r} in optim; valid updates: {', '.join(RULES)}")
    given = {key: section[key] for key in HYPERPARAMETERS if key in section}
    hyper = resolve_options(given, HYPERPARAMETERS, "optim", ModelError)
    if not isinstance(params, Mapping):
        raise ModelError(f"params must be a mapping name -> array, got {type(params).__name__}")
    return cls(params, **hyper)


# ---------------------------------------------------------------------------
# Learning-rate schedules

class Schedule:
    """``schedule(epoch) -> lr`` for one decay rule (``epoch`` counted from 0)."""

    def __init__(self, lr: float, kind: str = "none", every: int = 1, factor: float = 1.0,
                 rate: float = 0.0):
        self.lr, self.kind, self.every, self.factor, self.rate = lr, kind, every, factor, rate

    def __call__(self, epoch) -> float:
        if self.kind == "step":
            return self.lr * self.factor ** (int(epoch) // self.every)
        if self.kind == "exp":
            return self.lr * math.exp(-self.rate * epoch)
        if self.kind == "inv_t":
            return self.lr / (1.0 + self.rate * epoch)
        return self.lr

    def __repr__(self) -> str:
        return f"Schedule(lr={self.lr:g}, kind={self.kind})"


def make_schedule(section) -> Schedule:
    """The learning rate per epoch from an ``optim`` section's ``lr`` and ``decay``.

    ``decay``: none (or absent) | ``{kind: step, every, factor=0.5}``
    (``lr * factor**(epoch // every)``) | ``{kind: exp, rate}``
    (``lr * exp(-rate * epoch)``) | ``{kind: inv_t, rate}`` (``lr / (1 + rate * epoch)``).
    """
    section = as_mapping(section, "the optim section", ModelError)
    given = {"lr": section["lr"]} if "lr" in section else {}
    lr = float(resolve_options(given, {"lr": (REQUIRED, LR_RULE)}, "optim", ModelError)["lr"])
    decay = section.get("decay")
    if decay is None or (isinstance(decay, str) and decay.strip().lower() == "none"):
        return Schedule(lr)
    decay = as_mapping(decay, "optim.decay (none or {kind: step|exp|inv_t, ...})", ModelError)
    kind = decay.get("kind")
    if kind == "none" and len(decay) == 1:
        return Schedule(lr)
    if not isinstance(kind, str) or kind not in DECAYS:
        raise ModelError(f"unknown optim.decay kind {kind!r}; valid kinds: none, " + ", ".join(DECAYS))
    options = resolve_options({k: v for k, v in decay.items() if k != "kind"}, DECAYS[kind],
                              f"optim.decay ({kind})", ModelError)
    if kind == "step":
        return Schedule(lr, "step", every=options["every"], factor=float(options["factor"]))
    return Schedule(lr, kind, rate=float(options["rate"]))


# ---------------------------------------------------------------------------
# Parameter averaging


class ParameterAverage:
    """Exponential running (Polyak) average of parameters: ``avg = beta*avg + (1-beta)*x``.

    Starts at the parameters' current values; call :meth:`update` after every
    optimizer step. ``params`` holds the averages (same keys and shapes);
    evaluating with them often scores a little better than the last iterate.
    """

    def __init__(self, params: Mapping, beta: float):
        self.beta = float(HALF_OPEN_UNIT.check(beta, "parameter average beta", ModelError))
        self.source = params
        self.params = {name: np.array(x, copy=True) for name, x in params.items()}
        self._scratch = {name: np.empty_like(x) for name, x in params.items()}
        self.t = 0

    def update(self) -> None:
        # avg += (1 - beta) * (x - avg): the same average, one scratch array, no allocation.
        weight = 1.0 - self.beta
        for name, avg in self.params.items():
            scratch = self._scratch[name]
            np.subtract(self.source[name], avg, out=scratch)
            scratch *= weight
            avg += scratch
        self.t += 1

    def state_dict(self) -> dict:
        """``{"t": updates so far, "<param>": copy of its average}``."""
        state = {"t": int(self.t)}
        state.update({name: avg.copy() for name, avg in self.params.items()})
        return state

    def load_state_dict(self, state: Mapping) -> None:
        given = set(state) - {"t"}
        if given != set(self.params):
            raise ModelError(f"average state does not fit these parameters: expected "
                             f"{sorted(self.params)}, got {sorted(given)}")
        for name, avg in self.params.items():
            value = np.asarray(state[name])
            if value.shape != avg.shape:
                raise ModelError(f"average state {name} has shape {value.shape}, expected {avg.shape}")
            np.copyto(avg, value, casting="same_kind")
        self.t = int(state.get("t", 0))

    def __repr__(self) -> str:
        return f"ParameterAverage(beta={self.beta:g})"


__all__ = ["DECAYS", "HYPERPARAMETERS", "LR_RULE", "Optimizer", "ParameterAverage", "RULES", "Schedule",
           "make_optimizer", "make_schedule"]
