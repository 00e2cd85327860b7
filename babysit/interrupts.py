"""SIGINT and SIGTERM as one clean stop for the command line.

:func:`install` (the first thing the console script does, before the
second or so of imports) makes both signals raise
:class:`babysit.errors.Interrupted` (a KeyboardInterrupt) in the main thread.
A Ctrl-C, or the SIGTERM a CI runner sends on a timeout, then ends any command
at any moment (imports, data loading, a diagnosis) the same way: one line
``interrupted`` on stderr and exit 130, never a traceback or a silent exit 143.
Loops that must finish a step first (``train``, ``search``) install their own
handlers for their duration and put these back afterwards. Once the command is
stopping, :func:`stopping` makes a second signal exit at once instead of
interrupting the report with a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from babysit.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130


_received: list = []  # signals _raise has seen (an exception can be swallowed, the record not)


def _raise(signum, frame):
    _received.append(signum)
    raise Interrupted(signal.Signals(signum).name)


def raise_if_received() -> None:
    """Raise Interrupted if a signal arrived but its exception was lost.

    A KeyboardInterrupt that lands in a ``__del__``, a weakref callback or a
    library's bare ``except:`` during the imports is printed or swallowed there,
    and the command would carry on; checked at the points where it starts.
    """
    if _received:
        raise Interrupted(signal.Signals(_received[-1]).name)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> dict:
    """SIGINT and SIGTERM raise Interrupted (main thread only; elsewhere nothing).

    Returns the previous handlers, for :func:`restore`.
    """
    if not _main_thread():
        return {}
    return {sig: signal.signal(sig, _raise) for sig in SIGNALS}


def restore(previous: dict) -> None:
    """Put back the handlers :func:`install` returned (a caller's own, for a CLI run
    in-process); babysit's own are left as they are now (:func:`stopping` may have
    replaced them while the process exits)."""
    for sig, handler in previous.items():
        if handler is not None and handler is not _raise:
            signal.signal(sig, handler)


def installed() -> bool:
    """True when :func:`install`'s handlers are the current ones (the console script)."""
    return signal.getsignal(signal.SIGINT) is _raise or signal.getsignal(signal.SIGTERM) is _raise


def _exit_now(signum, frame):
    os._exit(EXIT_INTERRUPTED)


def stopping() -> None:
    """The command is stopping (it reports and exits): a further SIGINT/SIGTERM ends
    the process at once with exit 130, with no traceback and no waiting.

    Only where :func:`install` put its handlers: a program that called the CLI
    in-process (tests, an embedding tool) keeps its own."""
    if _main_thread() and installed():
        for sig in SIGNALS:
            signal.signal(sig, _exit_now)


def _managed_children() -> set[int]:
    """Children that multiprocessing owns (search's pool workers, the resource tracker):
    its own shutdown ends them, and killing them under it printed tracebacks and
    "resources might leak"."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return set()
    pids = {process.pid for process in mp.active_children()}
    tracker = getattr(sys.modules.get("multiprocessing.resource_tracker"), "_resource_tracker", None)
    if getattr(tracker, "_pid", None):
        pids.add(tracker._pid)
    return pids


def _descendants() -> list[int]:
    """This process's live descendants not owned by multiprocessing (Linux /proc)."""
    parents = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    # multiprocessing's children are never found (they start out seen), theirs are
    found, frontier = [], {os.getpid()} | _managed_children()
    seen = set(frontier)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in seen}
        seen |= frontier
        found += sorted(frontier)
    return found


def _end_children(grace: float = 0.5) -> None:
    """SIGTERM, then after ``grace`` seconds SIGKILL, every descendant still running that
    multiprocessing does not own: by now only user code (a custom layer's Popen, a shell
    and what it started, a fork) can have left one. One that detached itself (setsid
    and a double fork) is re-parented away and beyond reach."""
    import time

    children = _descendants()
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, os.WNOHANG)
        children = [pid for pid in _descendants() if pid in children]
        time.sleep(0.01)
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def finish(code) -> None:
    """End the console script with ``code``; what the command did decides it, nothing after.

    * A SIGINT/SIGTERM from here on is ignored: Python's finalization puts the
      default actions back, and a SIGTERM in those last milliseconds (a CI
      runner's, after a Ctrl-C) made the exit 143 instead of the 130 already chosen.
    * No process outlives the command: children user code left running are ended.
    * Threads user code left running (a custom layer's non-daemon thread) do not keep
      the process alive after its output is written: it exits at once.
    """
    code = code if isinstance(code, int) else (0 if code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if _main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    _end_children()
    if any(_user_thread(t) for t in threading.enumerate()):
        os._exit(code)
    sys.exit(code)


def _user_thread(thread: threading.Thread) -> bool:
    """A live non-daemon thread that Python's shutdown would wait for and that is not the
    standard library's own (concurrent.futures and multiprocessing join theirs)."""
    if thread is threading.current_thread() or thread.daemon or not thread.is_alive():
        return False
    module = type(thread).__module__ or ""
    target = getattr(thread, "_target", None)
    owner = getattr(target, "__module__", "") or ""
    return not any(name.startswith(("concurrent.futures", "multiprocessing"))
                   for name in (module, owner))


class Deferred:
    """While active (``with``), SIGINT and SIGTERM only record a request (``requested``:
    the signal number, or None); the code stops at a safe point of its own with
    :meth:`check`, which raises :class:`Interrupted`.

    Stopping anywhere could leave half-updated parameters (train) or lose the
    exception in a ``__del__`` or a weakref callback of an executor, where
    Python prints and swallows it (search). With ``second_ctrl_c_stops``, a
    second Ctrl-C raises at once. Handlers can only be installed from the main
    thread; elsewhere this does nothing. The previous handlers are put back on exit.
    """

    def __init__(self, second_ctrl_c_stops: bool = False):
        self.second_ctrl_c_stops = second_ctrl_c_stops
        self.requested = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.second_ctrl_c_stops and self.requested is not None and signum == signal.SIGINT:
            raise Interrupted("SIGINT")
        self.requested = signum

    def __enter__(self):
        if _main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    def check(self) -> None:
        """Raise Interrupted if a signal was requested (and forget the request)."""
        if self.requested is not None:
            signum, self.requested = self.requested, None
            raise Interrupted(signal.Signals(signum).name)


__all__ = ["Deferred", "raise_if_received", "install", "restore", "installed", "stopping", "finish",
           "Interrupted", "SIGNALS"]
