"""Where search trials run: in this process, a local process pool, or a Dask cluster.

Every backend has one interface, stated once::

    backend.preflight()                             # optional: fail early (BackendError)
    with backend:                                   # starts / connects
        for result in backend.imap_unordered(fn, items):
            ...                                     # results as they finish

``fn`` must be a module-level function (it is pickled by reference) and
``fn(item)`` must depend on ``item`` only: the trial results are then the same on
every backend and for any worker count. Leaving the ``with`` block early (an
exception, Ctrl-C) cancels the trials not yet started and stops the workers
without waiting for the running ones.
"""

from __future__ import annotations

import os
import signal

from babysit.errors import BabysitError
from babysit.interrupts import Deferred

# BLAS libraries read these once, when NumPy loads them: they must be in a
# worker's environment before the worker imports NumPy.
_SINGLE_THREAD_ENV = {name: "1" for name in (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}


class BackendError(BabysitError):
    """A backend that cannot start: dask missing, scheduler unreachable, bad worker count."""


# How often a waiting backend looks for a pending Ctrl-C (seconds).
POLL_SECONDS = 0.1


class DeferredInterrupt(Deferred):
    """While active, Ctrl-C and SIGTERM only set a flag; :meth:`check` raises Interrupted.

    A KeyboardInterrupt raised wherever the main thread happens to be can land
    in a weakref callback or a ``__del__`` inside the executor's machinery,
    where Python prints and swallows it, and the search would carry on. Raising
    it from :meth:`check`, at a known point of the wait loop, cannot be lost.
    """


class InProcess:
    """Runs the trials one after the other in this process (``--workers 1``)."""

    description = "this process"

    def preflight(self) -> None:
        """Nothing can be missing for running in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, items):
        for item in items:
            yield fn(item)


def _init_worker(parent: int) -> None:
    """Pool worker set-up: one BLAS thread, the parent handles Ctrl-C, die with the parent.

    The environment variables only help if NumPy is not loaded yet; the parent
    also sets them while it spawns the workers (see :class:`ProcessPool`).
    """
    os.environ.update(_SINGLE_THREAD_ENV)
    # A terminal Ctrl-C reaches the whole process group; only the parent should
    # react (it cancels the search and stops the pool). SIGTERM keeps its default
    # (the parent's terminate() ends a worker with it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    import numpy as np

    np.seterr(all="ignore")  # a diverging trial is judged by its numbers, not warnings on stderr


# How often a worker checks that its parent is still alive (seconds).
PARENT_POLL_SECONDS = 0.25


def _exit_with_parent(parent: int) -> None:
    """End this worker as soon as process ``parent`` is gone, however it ended.

    A parent killed with SIGKILL cannot stop its workers; orphans would keep
    computing and hold the caller's stdout open, so a CI step never ends. A
    daemon thread polls ``os.getppid()`` (it changes when the parent dies and the
    worker is re-parented) and exits at once. Runs while the trial computes:
    NumPy releases the GIL and Python switches threads every few milliseconds.
    """
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="babysit-parent-watch", daemon=True).start()


class _TemporaryEnv:
    """Set environment variables for the duration of a ``with`` block."""

    def __init__(self, values: dict):
        self.values = values
        self.saved: dict = {}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)
        return self

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        return False


class ProcessPool:
    """A local ``ProcessPoolExecutor`` with ``workers`` spawned processes.

    Spawned (not forked) workers start a fresh interpreter, so the single-thread
    BLAS settings in their environment take effect before NumPy loads, and no
    lock held by a parent thread can be inherited half-taken.
    """

    def __init__(self, workers: int):
        if workers < 1:
            raise BackendError(f"--workers must be >= 1, got {workers}")
        self.workers = int(workers)
        self.description = f"local pool ({self.workers} workers)"
        self.executor = None

    def preflight(self) -> None:
        """A local pool needs nothing that could be missing."""

    def __enter__(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(os.getpid(),))
        return self

    def __exit__(self, exc_type, exc, tb):
        executor, self.executor = self.executor, None
        if executor is None:
            return False
        if exc_type is None:
            executor.shutdown(wait=True)
        else:
            _stop_now(executor)
        return False

    def imap_unordered(self, fn, items):
        from concurrent.futures import FIRST_COMPLETED, wait

        # The parent's environment is what spawned children inherit; workers are
        # started on demand by submit().
        with _TemporaryEnv(_SINGLE_THREAD_ENV):
            pending = {self.executor.submit(fn, item) for item in items}
        try:
            with DeferredInterrupt() as ctrl_c:
                while pending:
                    done, pending = wait(pending, timeout=POLL_SECONDS,
                                         return_when=FIRST_COMPLETED)
                    ctrl_c.check()
                    for future in done:
                        yield future.result()
                    ctrl_c.check()
        finally:
            for future in pending:
                future.cancel()


def _stop_now(executor) -> None:
    """Cancel queued work and terminate the workers without waiting for running trials."""
    executor.shutdown(wait=False, cancel_futures=True)
    terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    # Older Pythons have no public way; the process table is a stable private.
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except Exception:  # already gone
            pass


class DaskCluster:
    """Trials on an existing Dask distributed cluster (``--scheduler tcp://HOST:PORT``).

    The workers need babysit installed (the same version); results come back to
    this process, which writes the search log.
    """

    def __init__(self, address: str, connect_timeout: float = 5.0):
        self.address = address
        self.connect_timeout = float(connect_timeout)
        self.description = f"dask cluster at {address}"
        self.client = None

    def preflight(self) -> None:
        """Dask installed and the scheduler reachable, or a BackendError (before any work)."""
        self._client_class()
        self._check_reachable()

    @staticmethod
    def _client_class():
        try:
            from distributed import Client
        except ImportError:
            raise BackendError(
                "--scheduler needs Dask distributed, which is not installed: "
                "pip install 'babysit[dask]'") from None
        return Client

    def __enter__(self):
        Client = self._client_class()
        self._check_reachable()
        try:
            self.client = Client(self.address, timeout=self.connect_timeout,
                                 set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise BackendError(
                f"cannot reach the Dask scheduler at {self.address} within "
                f"{self.connect_timeout:g} s: {_first_line(exc)}") from None
        except ValueError as exc:  # malformed address
            raise BackendError(f"bad --scheduler address {self.address!r}: {exc}") from None
        return self

    def _check_reachable(self) -> None:
        """Fail fast on a TCP address nobody listens on.

        A refused connection is reported at once (the Dask client would retry
        until its timeout), and no half-built Client is left to complain at exit.
        """
        import socket

        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend

        try:
            scheme, location = parse_address(self.address)
            get_backend(scheme)  # unknown scheme -> ValueError
        except ValueError as exc:
            raise BackendError(f"bad --scheduler address {self.address!r}: {exc}") from None
        if scheme != "tcp":
            return
        try:
            host, port = parse_host_port(location)
        except ValueError as exc:
            raise BackendError(f"bad --scheduler address {self.address!r}: {exc}") from None
        try:
            socket.create_connection((host, port), timeout=self.connect_timeout).close()
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise BackendError(f"cannot reach the Dask scheduler at {self.address}: "
                               f"{reason}") from None

    def __exit__(self, exc_type, exc, tb):
        client, self.client = self.client, None
        if client is not None:
            client.close()
        return False

    def imap_unordered(self, fn, items):
        import time

        from distributed import as_completed

        # pure=False: two trials with equal inputs are still two trials.
        futures = [self.client.submit(fn, item, pure=False) for item in items]
        finished = as_completed(futures, loop=self.client.loop)
        try:
            with DeferredInterrupt() as ctrl_c:
                while not finished.is_empty():
                    batch = finished.next_batch(block=False)
                    ctrl_c.check()
                    if not batch:
                        time.sleep(POLL_SECONDS)
                        continue
                    for future in batch:
                        yield future.result()  # re-raises a trial's exception here
                    ctrl_c.check()
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def make_backend(workers: int | None = None, scheduler: str | None = None,
                 connect_timeout: float = 5.0):
    """``scheduler`` -> Dask; else by ``workers`` (default: the core count):
    1 -> in this process, more -> a local pool."""
    if scheduler:
        return DaskCluster(scheduler, connect_timeout)
    if workers is None:
        from babysit.engine.parallel import usable_cores

        workers = usable_cores()
    if workers < 1:
        raise BackendError(f"--workers must be >= 1, got {workers}")
    return InProcess() if workers == 1 else ProcessPool(workers)


__all__ = ["BackendError", "InProcess", "ProcessPool", "DaskCluster", "make_backend"]
