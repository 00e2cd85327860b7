"""L-BFGS: a quasi-Newton update for full-batch, deterministic training.

The lecture: "if you can afford to do full batch updates then try out L-BFGS
(and don't forget to disable all sources of noise)". One optimizer step is
one L-BFGS iteration (Nocedal & Wright, *Numerical Optimization*, 2nd ed.):

1. the direction ``d = -H g``: ``H`` is the inverse-Hessian estimate built from
   the last ``memory`` curvature pairs ``(s, y)`` by the two-loop recursion
   (Alg. 7.4), scaled by ``gamma = s'y / y'y`` of the newest pair;
2. a line search along ``d`` for a step ``t`` meeting the strong Wolfe
   conditions ``f(x + t d) <= f(x) + C1 t g'd`` and ``|g(x + t d)'d| <= C2 |g'd|``
   (Alg. 3.5 and 3.6, cubic interpolation). Its first trial is the
   quasi-Newton step ``t = 1``. With no pair yet (the first step, or after a
   reset) ``d = -g`` and the first trial is ``t = lr / ||g||``: a move of length
   ``lr`` (scipy's L-BFGS-B makes the same first move for ``lr = 1``). So
   ``lr`` only sizes the first trial of the first step; the line search
   extrapolates or shrinks from there and never takes a fixed step size;
3. ``x += t d``; the pair ``s = x_new - x``, ``y = g_new - g`` joins the memory
   when ``s'y > eps * y'y`` (positive curvature; otherwise it is skipped, as in
   L-BFGS-B), the oldest pair leaving when ``memory`` are kept.

The optimizer needs the loss as a function of the parameters: it declares
``needs_closure`` and the Solver passes ``closure() -> (loss, grads)``, which
evaluates the full-batch loss at the parameters as they are (the line search
sets them in place before each call). ``full_batch`` tells the Solver that
mini-batches are refused: the curvature pairs and the Wolfe tests compare
values of one deterministic function.

Convergence: ``converged`` becomes True when the largest gradient entry is at
most ``GRAD_TOL``, when a step meeting the strong Wolfe conditions lowers the
loss by at most ``FTOL`` relative to it (scipy's default ``factr * eps``), or
when the line search finds no lower loss even along ``-g`` (the precision
floor: a failure with a non-empty memory first drops the memory and retries
along ``-g`` at the next step). From then on a step changes nothing; the
Solver's loop goes on to its budget (callers see a flat loss), and the run
reports ``converged``.

Every computation is in float64 on flat vectors (the parameters' order), so a
float32 model keeps an accurate memory; the parameters keep their dtype.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np

from babysit.errors import ModelError
from babysit.validation import POSITIVE_INT

C1 = 1e-4          # sufficient decrease (Armijo) constant of the strong Wolfe conditions
C2 = 0.9           # curvature constant (0.9 is the usual one for quasi-Newton methods)
MAX_EVALS = 25     # loss evaluations in one line search
GRAD_TOL = 1e-10   # converged when max |gradient entry| is at most this
FTOL = 1e7 * np.finfo(np.float64).eps  # converged when a step lowers the loss by less (relative)
EXTRAPOLATE = 10.0  # the line search's growth limit per extrapolation
CURVATURE_EPS = np.finfo(np.float64).eps


class Point:
    """One evaluation of the line search: step ``t``, loss ``f``, slope ``slope = g'd``, gradient ``g``."""

    __slots__ = ("t", "f", "slope", "g")

    def __init__(self, t, f, slope, g):
        self.t, self.f, self.slope, self.g = t, f, slope, g

    @property
    def finite(self) -> bool:
        return math.isfinite(self.f) and math.isfinite(self.slope)


def cubic_minimum(a: Point, b: Point, lo: float, hi: float) -> float:
    """The minimizer of the cubic through ``a`` and ``b`` (values and slopes), clipped to
    ``[lo, hi]``; the midpoint when the cubic has none or the points are not finite."""
    if a.finite and b.finite and a.t != b.t:
        d1 = a.slope + b.slope - 3.0 * (a.f - b.f) / (a.t - b.t)
        square = d1 * d1 - a.slope * b.slope
        if square >= 0.0:
            d2 = math.copysign(math.sqrt(square), b.t - a.t)
            denominator = b.slope - a.slope + 2.0 * d2
            if denominator != 0.0:
                t = b.t - (b.t - a.t) * (b.slope + d2 - d1) / denominator
                if math.isfinite(t):
                    return min(max(t, lo), hi)
    return 0.5 * (lo + hi)


def strong_wolfe(phi, start: Point, t: float, max_evals: int = MAX_EVALS) -> tuple[Point | None, bool]:
    """A step along a descent direction meeting the strong Wolfe conditions.

    ``phi(t) -> Point`` evaluates the loss at step ``t``; ``start`` is the point
    at ``t = 0`` (its ``slope`` negative). Returns ``(point, True)`` for a point
    meeting both conditions; when the evaluation budget runs out first,
    ``(point, False)`` with the lowest point found that meets sufficient
    decrease, or ``(None, False)`` when no lower loss was found.
    """
    f0, slope0 = start.f, start.slope
    previous, evals = start, 0

    def decreases(p: Point) -> bool:
        return p.finite and p.f <= f0 + C1 * p.t * slope0

    while evals < max_evals:
        point = phi(t)
        evals += 1
        if not decreases(point) or (previous is not start and point.f >= previous.f):
            return _zoom(phi, start, previous, point, max_evals - evals, decreases)
        if abs(point.slope) <= -C2 * slope0:
            return point, True
        if point.slope >= 0.0:
            return _zoom(phi, start, point, previous, max_evals - evals, decreases)
        t = cubic_minimum(previous, point, point.t + 0.01 * (point.t - previous.t),
                          point.t * EXTRAPOLATE)
        previous = point
    return (previous if previous is not start else None), False


def _zoom(phi, start: Point, low: Point, high: Point, budget: int,
          decreases) -> tuple[Point | None, bool]:
    """Alg. 3.6: shrink ``[low, high]`` (``low`` the best point meeting sufficient decrease)."""
    slope0 = start.slope
    for _ in range(budget):
        lo, hi = sorted((low.t, high.t))
        width = hi - lo
        if width <= 1e-12 * max(hi, 1e-300):
            break
        # keep the trial point away from both ends, or the bracket may not shrink
        t = cubic_minimum(low, high, lo + 0.1 * width, hi - 0.1 * width)
        point = phi(t)
        if not decreases(point) or point.f >= low.f:
            high = point
        else:
            if abs(point.slope) <= -C2 * slope0:
                return point, True
            if point.slope * (high.t - low.t) >= 0.0:
                high = low
            low = point
    return (low if low is not start else None), False


class LBFGS:
    """L-BFGS over ``params`` (updated in place); see the module doc.

    The optimizer interface of :mod:`babysit.engine.optim`, plus
    ``needs_closure``/``full_batch`` (what the Solver must provide) and
    ``converged``. ``step(grads, lr, closure, loss)``: ``grads`` and ``loss``
    at the current parameters, ``closure() -> (loss, grads)`` at whatever the
    parameters are when it is called. ``state_dict()``: ``{"t": steps,
    "memory/s": (k, P), "memory/y": (k, P), "memory/converged": 0|1}`` with
    ``k <= memory`` pairs, oldest first, over the P parameters flattened in
    ``params`` order (float64).
    """

    name = "lbfgs"
    hyper = ("memory",)
    needs_closure = True
    full_batch = True

    def __init__(self, params: Mapping, memory: int = 10, **unused):
        self.params = params
        self.memory = POSITIVE_INT.check(memory, "optim: memory", ModelError)
        self.t = 0
        self.converged = False
        self.pairs: deque = deque(maxlen=self.memory)   # (s, y, 1 / s'y), oldest first
        self.last_step = math.nan                          # the accepted t of the last step
        self.evaluations = 0                               # closure calls so far
        self._slices = {}
        offset = 0
        for name, x in params.items():
            self._slices[name] = slice(offset, offset + x.size)
            offset += x.size
        self.size = offset

    # -- flat vectors ------------------------------------------------------
    def _flatten(self, arrays: Mapping) -> np.ndarray:
        out = np.empty(self.size, dtype=np.float64)
        for name, where in self._slices.items():
            out[where] = np.ravel(arrays[name])
        return out

    def _assign(self, flat: np.ndarray) -> None:
        for name, where in self._slices.items():
            x = self.params[name]
            x[...] = flat[where].reshape(x.shape)

    def direction(self, g: np.ndarray) -> np.ndarray:
        """``-H g`` by the two-loop recursion (``-g`` with an empty memory)."""
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        if self.pairs:
            s, y, _ = self.pairs[-1]
            q *= float(s @ y) / float(y @ y)
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            beta = rho * float(y @ q)
            q += (alpha - beta) * s
        return -q

    # -- the step ----------------------------------------------------------
    def step(self, grads: Mapping, lr: float, closure=None, loss: float | None = None) -> None:
        """One L-BFGS iteration (direction, line search, memory update), in place."""
        if closure is None or loss is None:
            raise ModelError("lbfgs needs the loss as a function of the parameters: "
                             "step(grads, lr, closure=..., loss=...) (the Solver passes them)")
        if set(grads) != set(self.params):
            raise ModelError(f"gradients do not match the parameters (missing "
                             f"{sorted(set(self.params) - set(grads))}, extra "
                             f"{sorted(set(grads) - set(self.params))})")
        self.t += 1
        g0 = self._flatten(grads)
        if self.converged or not (math.isfinite(loss) and np.all(np.isfinite(g0))):
            return
        if float(np.max(np.abs(g0), initial=0.0)) <= GRAD_TOL:
            self.converged = True
            return
        x0 = self._flatten(self.params)
        d = self.direction(g0)
        slope0 = float(g0 @ d)
        if not self.pairs or not slope0 < 0.0:   # no memory, or not a descent direction
            self.pairs.clear()
            d, slope0 = -g0, -float(g0 @ g0)
            first = float(lr) / math.sqrt(-slope0)
        else:
            first = 1.0

        def phi(t: float) -> Point:
            self._assign(x0 + t * d)
            f, g = closure()
            self.evaluations += 1
            g = self._flatten(g)
            return Point(t, float(f), float(g @ d), g)

        with np.errstate(over="ignore", invalid="ignore"):
            accepted, wolfe = strong_wolfe(phi, Point(0.0, float(loss), slope0, g0), first)
        if accepted is None:
            self._assign(x0)          # no lower loss along d: stay put
            self.last_step = 0.0
            self.converged = not self.pairs
            self.pairs.clear()
            return
        self._assign(x0 + accepted.t * d)
        self.last_step = accepted.t
        s = self._flatten(self.params) - x0   # the step actually taken (after rounding to dtype)
        y = accepted.g - g0
        sy, yy = float(s @ y), float(y @ y)
        if sy > CURVATURE_EPS * yy and sy > 0.0:
            self.pairs.append((s, y, 1.0 / sy))
        # only a step the line search fully accepted can say the loss has stopped falling
        if wolfe and loss - accepted.f <= FTOL * max(abs(loss), abs(accepted.f), 1.0):
            self.converged = True

    # -- checkpoints -------------------------------------------------------
    def state_dict(self) -> dict:
        """Steps, the curvature pairs (oldest first) and the converged flag: an exact resume."""
        empty = np.zeros((0, self.size))
        return {"t": int(self.t),
                "memory/s": np.array([s for s, _, _ in self.pairs]) if self.pairs else empty,
                "memory/y": np.array([y for _, y, _ in self.pairs]) if self.pairs else empty.copy(),
                "memory/converged": int(self.converged)}

    def load_state_dict(self, state: Mapping) -> None:
        expected = {"t", "memory/s", "memory/y", "memory/converged"}
        if set(state) != expected:
            raise ModelError(f"optimizer state does not fit an lbfgs optimizer: expected keys "
                             f"{sorted(expected)}, got {sorted(state)}")
        s_all = np.asarray(state["memory/s"], dtype=np.float64)
        y_all = np.asarray(state["memory/y"], dtype=np.float64)
        shapes_fit = (s_all.ndim == 2 and s_all.shape == y_all.shape
                      and s_all.shape[1] == self.size and len(s_all) <= self.memory)
        if not shapes_fit:
            raise ModelError(f"lbfgs state has s {s_all.shape} and y {y_all.shape}; expected "
                             f"(k, {self.size}) each with k <= {self.memory}")
        self.pairs.clear()
        for s, y in zip(s_all, y_all):
            self.pairs.append((s.copy(), y.copy(), 1.0 / float(s @ y)))
        self.converged = bool(state["memory/converged"])
        self.t = int(state["t"])

    def __repr__(self) -> str:
        return f"LBFGS(memory={self.memory})"


__all__ = ["LBFGS", "strong_wolfe", "cubic_minimum", "C1", "C2", "MAX_EVALS", "GRAD_TOL", "FTOL"]
