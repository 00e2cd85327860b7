"""The engine's threads: fixed work partitions, run on however many cores are free.

Two facts shape this module (both measured on the project's 2-core machine
with NumPy's bundled OpenBLAS 0.3.31, see ``benchmarks/README.md``):

* OpenBLAS's own threads change the numbers. ``A @ B`` with 2 BLAS threads
  differs in the last bits from the same product with 1 thread (float32 and
  float64, from 100x500x500 up), and even single-threaded, computing the
  output in row or column blocks differs from computing it whole. Results that
  must not depend on the thread count therefore need a partition of the work
  that depends on the *problem* only.
* OpenBLAS's idle threads spin. Beside other busy processes, a spinning
  worker and a descheduled one made small-matrix diagnoses 5-27x slower.

So the engine pins BLAS to one thread (:func:`pin_blas`, through threadpoolctl)
and parallelises itself: a large product is cut into a fixed number of
output blocks (:func:`matmul`, :func:`product_parts`: a function of the shapes
alone), and element-wise work into spans of the batch or channel axis
(:func:`for_spans`). The blocks are handed to a small pool of helper threads
*and* to the calling thread, which claims blocks too (:func:`run`): on a quiet
machine the helpers take their share, while on a busy one a helper that
cannot get a core simply claims nothing and the caller computes every block
itself, never waiting for a thread that is not running. Nobody spins: idle
helpers block on a queue. NumPy releases the GIL inside BLAS calls and ufunc
loops, so the blocks really run side by side.

Same seed, same numbers: a product's blocks are the same whatever the number
of threads, and element-wise spans compute each element exactly as one call
would. Reductions (sums over the batch) are never split.

The thread count (:func:`threads`, caller included) is, in order: the value
set by :func:`set_threads` / :func:`limited` (a search trial uses 1), the
environment variable ``BABYSIT_THREADS``, the smallest of
``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` when set
(a user who limits BLAS limits babysit too), else the usable cores, at most
:data:`MAX_THREADS`. It changes speed only, never results.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from typing import Callable

import numpy as np

from babysit.errors import BabysitError

MAX_THREADS = 8
THREADS_VARIABLE = "BABYSIT_THREADS"
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# A product of fewer multiply-adds than this runs as one BLAS call, exactly as
# before this module existed (about 0.3-0.6 ms on one core: below that, handing
# half of it to another thread saves less than it costs). From this size on
# it is cut into 2 blocks, from PRODUCT_GRAIN * 8 on into 4.
PRODUCT_GRAIN = 32 * 2 ** 20
# Block boundaries fall on multiples of this many rows/columns, so every block
# but the last keeps whole register tiles of the BLAS kernels; a side too
# short for that (a weight gradient with 32 filters) is cut on multiples of
# MIN_ALIGN.
BLOCK_ALIGN = 64
MIN_ALIGN = 16
# Element-wise work is split into spans of at least this many elements
# (float32: 1 MiB), small enough to stay in a core's cache between the few
# passes a layer makes over them.
ELEMENT_GRAIN = 2 ** 18


class _Job:
    """``fn(i)`` for ``i`` in ``range(parts)``; any thread may claim the next part."""

    def __init__(self, parts: int, fn: Callable[[int], None]):
        self.parts = parts
        self.fn = fn
        self._claims = itertools.count()   # next() is atomic under the GIL
        self._lock = threading.Lock()
        self._pending = parts
        self._done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        """Claim and run parts until none is left."""
        while True:
            index = next(self._claims)
            if index >= self.parts:
                return
            try:
                if self.error is None:
                    self.fn(index)
            except BaseException as exc:   # re-raised by the caller
                self.error = self.error or exc
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._done.set()

    def wait(self) -> None:
        self._done.wait()


class _Helpers:
    """Daemon threads that take jobs from a queue and work on them (started on demand)."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._count = 0

    def offer(self, job: _Job, helpers: int) -> None:
        with self._lock:
            while self._count < helpers:
                threading.Thread(target=self._serve, name=f"babysit-engine-{self._count}",
                                 daemon=True).start()
                self._count += 1
        for _ in range(helpers):
            self._queue.put(job)

    def _serve(self) -> None:
        while True:
            self._queue.get().work()

    def forget(self) -> None:
        """After a fork the child has none of the parent's threads."""
        self._queue = queue.SimpleQueue()
        self._count = 0


_HELPERS = _Helpers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_HELPERS.forget)

_state = {"set": None, "resolved": None, "blas_pinned": False}
_state_lock = threading.Lock()


def _positive(value) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 1 else None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # macOS, Windows
        return os.cpu_count() or 1


def _resolve() -> int:
    raw = os.environ.get(THREADS_VARIABLE)
    if raw is not None and raw.strip():
        number = _positive(raw)
        if number is None:
            raise BabysitError(f"{THREADS_VARIABLE} must be a positive integer, got {raw!r}")
        return min(number, MAX_THREADS)
    limits = [n for n in (_positive(os.environ.get(name, "")) for name in BLAS_VARIABLES) if n]
    return max(1, min([usable_cores(), MAX_THREADS] + limits))


def threads() -> int:
    """How many threads (the caller included) engine work may use; see the module doc."""
    if _state["set"] is not None:
        return _state["set"]
    if _state["resolved"] is None:
        _state["resolved"] = _resolve()
    return _state["resolved"]


def set_threads(count: int | None) -> None:
    """Use ``count`` threads from now on (None: back to the environment's choice)."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"threads must be a positive integer or None, got {count!r}")
    with _state_lock:
        _state["set"] = None if count is None else min(count, MAX_THREADS)
        _state["resolved"] = None


@contextlib.contextmanager
def limited(count: int):
    """Within the block, use at most ``count`` threads (results do not change)."""
    previous = _state["set"]
    set_threads(min(count, threads()))
    try:
        yield
    finally:
        with _state_lock:
            _state["set"] = previous


def pin_blas() -> None:
    """Limit the BLAS library to one thread for the rest of the process (once).

    The engine's products are deterministic only with single-threaded BLAS
    calls (see the module doc). Needs threadpoolctl (a dependency); without it
    BLAS keeps its threads and the last bits may follow their count.
    """
    if _state["blas_pinned"]:
        return
    with _state_lock:
        if _state["blas_pinned"]:
            return
        _state["blas_pinned"] = True
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        threadpool_limits(limits=1, user_api="blas")


def run(parts: int, fn: Callable[[int], None]) -> None:
    """``fn(i)`` for every ``i`` in ``range(parts)``, on up to :func:`threads` threads.

    The caller works too and returns when every part is done; the first
    exception raised by a part is re-raised here. Parts must write disjoint
    memory.
    """
    helpers = min(threads(), parts) - 1
    if helpers <= 0:
        for index in range(parts):
            fn(index)
        return
    job = _Job(parts, fn)
    _HELPERS.offer(job, helpers)
    job.work()
    job.wait()
    if job.error is not None:
        raise job.error


def spans(length: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` consecutive ``(start, stop)`` ranges covering ``range(length)``.

    Inner boundaries are multiples of ``align`` (ranges may then be unequal;
    empty ones are dropped).
    """
    edges = [0]
    for k in range(1, parts):
        edge = round(length * k / parts / align) * align
        if edges[-1] < edge < length:
            edges.append(edge)
    edges.append(length)
    return list(zip(edges[:-1], edges[1:]))


def splits(elements: int, grain: int | None = None) -> bool:
    """Whether :func:`for_spans` cuts work of ``elements`` elements into more than one span.

    When it does not, callers may hand the whole array to one call without
    building the span machinery (a small layer's step is microseconds).
    ``grain`` defaults to ELEMENT_GRAIN, read at the call (tests shrink it).
    """
    return elements // (ELEMENT_GRAIN if grain is None else grain) > 1 and threads() > 1


def span_count(length: int, per_index: int = 1, grain: int | None = None) -> int:
    """How many spans :func:`for_spans` cuts ``length`` entries of ``per_index`` elements into."""
    count = threads()
    grain = ELEMENT_GRAIN if grain is None else grain
    return 1 if count == 1 else max(1, min(length, (length * per_index) // grain, 4 * count))


def for_spans(length: int, fn: Callable[[int, int], None], per_index: int = 1,
              grain: int | None = None) -> None:
    """``fn(start, stop)`` over spans of ``range(length)`` that together cover it.

    For element-wise work along one axis of ``length`` entries of
    ``per_index`` elements each: split into spans of at least ``grain``
    elements when more than one thread is available, else one call. Every
    element must be computed alike in any span (no reductions across spans).
    """
    pieces = span_count(length, per_index, grain)
    if pieces <= 1:
        fn(0, length)
        return
    ranges = spans(length, pieces)
    run(len(ranges), lambda i: fn(*ranges[i]))


def for_outer(x: np.ndarray, fn: Callable[[tuple], None], axes=None) -> None:
    """``fn(index)`` for spans of ``x``'s outermost axis in memory (among ``axes``, default all).

    ``index`` is a tuple of slices selecting one span of that axis (``()``
    when there is nothing to split): element-wise work on ``x[index]`` and on
    arrays shaped like it, see :func:`for_spans`.
    """
    candidates = [a for a in (range(x.ndim) if axes is None else axes) if x.shape[a] > 1]
    if not candidates or not splits(x.size):
        fn(())
        return
    axis = max(candidates, key=lambda a: abs(x.strides[a]))
    head = (slice(None),) * axis
    for_spans(x.shape[axis], lambda start, stop: fn(head + (slice(start, stop),)),
              per_index=x.size // x.shape[axis])


def is_large(macs: int) -> bool:
    """Whether a product of ``macs`` multiply-adds is worth splitting (see PRODUCT_GRAIN)."""
    return macs >= PRODUCT_GRAIN


def product_parts(m: int, k: int, n: int) -> int:
    """Blocks of an ``(m, k) @ (k, n)`` product: 1, 2 or 4, from its size alone."""
    macs = m * k * n
    if not is_large(macs) or max(m, n) < 2 * MIN_ALIGN:
        return 1
    return 2 if macs < 8 * PRODUCT_GRAIN or max(m, n) < 4 * MIN_ALIGN else 4


def block_spans(length: int, parts: int) -> list[slice]:
    """The blocks of a product's split side: :func:`spans` on BLOCK_ALIGN (or MIN_ALIGN) boundaries."""
    align = BLOCK_ALIGN if length >= 2 * parts * BLOCK_ALIGN else MIN_ALIGN
    return [slice(start, stop) for start, stop in spans(length, parts, align)]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D ``a (m, k)``, ``b (k, n)``, split into :func:`product_parts` blocks.

    The blocks cut the longer of the output's two sides (:func:`block_spans`);
    each is one single-threaded BLAS call. Small products
    are one call, as plain ``a @ b``. ``out`` (``(m, n)``, any blasable
    strides) receives the result when given.
    """
    pin_blas()
    m, k = a.shape
    n = b.shape[1]
    parts = product_parts(m, k, n)
    if parts == 1:
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    if n >= m:
        blocks = block_spans(n, parts)
        run(len(blocks), lambda i: np.matmul(a, b[:, blocks[i]], out=out[:, blocks[i]]))
    else:
        blocks = block_spans(m, parts)
        run(len(blocks), lambda i: np.matmul(a[blocks[i]], b, out=out[blocks[i]]))
    return out


def matmuls(*pairs: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """``[a @ b for a, b in pairs]`` for independent products, each computed exactly as
    :func:`matmul` computes it (the same blocks, so the same bits).

    Products too small to split (one BLAS call each, see PRODUCT_GRAIN) run
    side by side, one per thread, when together they are worth it (at least
    PRODUCT_GRAIN / 4 multiply-adds): a mid-sized layer's weight and input
    gradients (a 100 x 500 x 500 pair) then take one product's time on two
    cores instead of two, with unchanged numbers. Otherwise one after another.
    """
    shapes = [(a.shape[0], a.shape[1], b.shape[1]) for a, b in pairs]
    side_by_side = (len(pairs) > 1 and threads() > 1
                    and all(product_parts(*shape) == 1 for shape in shapes)
                    and sum(m * k * n for m, k, n in shapes) >= PRODUCT_GRAIN // 4)
    if not side_by_side:
        return [matmul(a, b) for a, b in pairs]
    pin_blas()
    out: list = [None] * len(pairs)

    def one(i: int) -> None:
        out[i] = np.matmul(*pairs[i])

    run(len(pairs), one)
    return out


__all__ = ["BLOCK_ALIGN", "ELEMENT_GRAIN", "MAX_THREADS", "MIN_ALIGN", "PRODUCT_GRAIN", "THREADS_VARIABLE",
           "block_spans", "for_outer", "for_spans", "is_large", "limited", "matmul", "matmuls", "pin_blas",
           "product_parts", "run", "set_threads", "span_count", "spans", "splits", "threads", "usable_cores"]
