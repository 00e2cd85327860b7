"""One writer per log: ``train`` and ``search`` lock the log they write for their whole run.

Two ``babysit train --out same.h5`` at once would each rewrite the file in
turn and one run would be silently lost. With :func:`exclusive`, the second
fails at once with a :class:`OutputLocked` error (exit 2) naming the first.

The lock is an advisory ``flock`` on a sidecar file ``.NAME.babysit.lock``
beside the log (the log itself is replaced by renames, so it cannot carry the
lock). The sidecar holds the owner's PID, start time and command line, for the
message. The kernel drops the lock when its owner exits, however it exits
(kill -9 included), so a lock never goes stale; the owner removes the sidecar
when it is done, and a sidecar nobody holds (its owner was killed) is removed
by the next writer in that directory. Where ``fcntl`` is missing (Windows) or
the file system refuses locks, outputs are not locked.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import stat
import sys
import time
from pathlib import Path

from babysit.atomic import WriteError, check_target, make_parents
from babysit.errors import BabysitError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

_LOCK_NAME = re.compile(r"^\..+\.babysit\.lock$")
_held: dict = {}  # sidecar -> how many nested exclusive() blocks of this process hold it
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutputLocked(BabysitError):
    """Another live babysit process is writing this output file."""


def lock_path(path) -> Path:
    """The sidecar lock file of ``path`` (symlinks followed, like the writes)."""
    real = Path(os.path.realpath(path))
    return real.with_name(f".{real.name}.babysit.lock")


def _owner() -> str:
    command = " ".join(["babysit"] + sys.argv[1:])
    if len(command) > 200:
        command = command[:197] + "..."
    return f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}"


def _try_lock(fd: int) -> bool:
    """True when the lock was taken; False when someone holds it; True (unlocked) if unsupported."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return True
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, now = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _open_sidecar(path: Path) -> int | None:
    """A read-only descriptor of the existing sidecar ``path``, or None. Never blocks on a
    FIFO by that name and never follows a symlink: only a regular file can be a sidecar
    babysit wrote."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NO_FOLLOW)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def remove_stale_locks(directory) -> None:
    """Remove lock sidecars in ``directory`` that nobody holds (their owner was killed)."""
    if fcntl is None:
        return
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if not _LOCK_NAME.match(name):
                continue
            path = Path(directory) / name
            fd = _open_sidecar(path)
            if fd is None:
                continue
            with contextlib.suppress(OSError):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if _same_file(fd, path):
                        path.unlink()
                finally:
                    os.close(fd)


def is_lock_name(path) -> bool:
    """Whether ``path``'s name is a lock sidecar's (``.NAME.babysit.lock``): such a file is
    removed by the next writer in its directory when no lock holds it."""
    return bool(_LOCK_NAME.match(Path(path).name))


def writer_of(path) -> str | None:
    """Who is writing ``path`` now (the owner line of its held lock), or None."""
    if fcntl is None:
        return None
    fd = _open_sidecar(lock_path(path))
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 1000).decode("utf-8", "replace").strip() or "owner unknown"
    except OSError:
        return None
    finally:
        os.close(fd)


def _acquire(path, sidecar: Path) -> int:
    """Open and lock ``sidecar``; returns the descriptor. Raises OutputLocked."""
    while True:
        try:
            # a symlink or FIFO planted under the sidecar's name is not followed or waited on
            fd = os.open(sidecar, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | _NO_FOLLOW, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR):
                what = "a symbolic link" if exc.errno == errno.ELOOP else "a directory"
                raise WriteError(exc.errno, f"its lock file {sidecar} is {what}; remove it",
                                 str(path)) from None
            raise WriteError(exc.errno, exc.strerror or str(exc), str(path)) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise WriteError(errno.EEXIST, f"its lock file {sidecar} is not a regular file; "
                                 "remove it", str(path))
            if not _try_lock(fd):
                owner = ""
                with contextlib.suppress(OSError):
                    owner = os.read(fd, 1000).decode("utf-8", "replace").strip()
                raise OutputLocked(
                    f"{path} is being written by another babysit process "
                    f"({owner or 'owner unknown'}); wait for it to finish or write to another file")
            # The previous owner may have removed the sidecar between our open and lock.
            if _same_file(fd, sidecar):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def exclusive(path):
    """Hold the lock of output ``path`` for the ``with`` block (see the module docstring).

    ``path`` must be (or become) a regular file: a directory, device or FIFO is
    refused with a WriteError. Creates missing parent directories. Raises
    :class:`OutputLocked` when another live process holds the lock. Re-entrant
    within a process (an ensemble run holds its log while its first member's
    run takes the same lock).
    """
    check_target(path, stream_ok=False)
    if fcntl is None:
        yield
        return
    sidecar = lock_path(path)
    if _held.get(sidecar):
        _held[sidecar] += 1
        try:
            yield
        finally:
            _held[sidecar] -= 1
        return
    make_parents(path)
    remove_stale_locks(sidecar.parent)
    fd = _acquire(path, sidecar)
    _held[sidecar] = 1
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, _owner().encode("utf-8", "replace"))
        yield
    finally:
        del _held[sidecar]
        with contextlib.suppress(OSError):
            sidecar.unlink()
        os.close(fd)


@contextlib.contextmanager
def claimed(path, *, default_name: bool):
    """Hold the lock of output ``path`` for the ``with`` block -> the path held.

    A path the user gave is theirs: a second writer fails with OutputLocked, and a
    file already there is theirs to replace. A ``default_name`` (babysit's own
    ``runs/<name>-<time>.h5``) has a one-second clock, so two commands started
    together once shared one log (one was lost) or the second failed on a lock
    the user never chose: when another process holds it, or anything at all is
    there (a finished run's log, a directory, a FIFO, a symlink, even a dangling
    one, which would carry the write outside ``runs/``), the next free ``-2``,
    ``-3`` ... is taken.
    """
    path = Path(path)
    stem = path.stem
    with contextlib.ExitStack() as held:   # the lock, released however the block ends
        for attempt in itertools.count(2):
            if not (default_name and os.path.lexists(path)):
                try:
                    held.enter_context(exclusive(path))
                except OutputLocked:
                    if not default_name:
                        raise
                else:
                    if not (default_name and os.path.lexists(path)):   # else: written meanwhile
                        break
                    held.close()
            path = path.with_name(f"{stem}-{attempt}{path.suffix}")
        yield path


__all__ = ["OutputLocked", "claimed", "exclusive", "lock_path", "remove_stale_locks"]
