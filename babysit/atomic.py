"""All-or-nothing file writes: every file babysit writes goes through this module.

A reader, a CI job killed mid-write, a full disk or a Ctrl-C never sees half a
file, and a failed write leaves any previous file at the target untouched:

* A regular file (or a missing one) is replaced atomically: the bytes go to a
  temporary file ``.NAME.babysit-HOST-PID-XXXXXXXX.tmp`` in the target's
  directory, are flushed to disk, then renamed over the target. A failed or
  interrupted write removes the temporary file.
* A symlink is followed: its target is replaced, the link stays a link.
* A target that is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO)
  is never replaced by a rename: :func:`write_bytes` writes through to it
  (``stream_ok``, the default: JSON, JUnit, PNG), or refuses it (logs, which
  must be files babysit can read back).
* Every error is a :class:`WriteError` naming the file the user asked for,
  never the temporary one ("cannot write runs/a.h5: No space left on device").
* Temporary files of writers that died (kill -9, power loss) are removed the
  next time this process writes into that directory: a file is ours when its
  name has our pattern and this host's id, and its writer's PID is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
from pathlib import Path

_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
_TEMP_NAME = re.compile(r"^\..*\.babysit-(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)-[0-9a-f]{8}\.tmp$")
_NAME_PART = 100  # UTF-8 bytes of a name kept in a temporary or default name (NAME_MAX is 255 bytes)
_cleaned: set = set()  # directories already swept by this process


class WriteError(OSError):
    """A file that could not be written; ``filename`` is the file the user named."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def file_stem(name, default: str = "run") -> str:
    """``name`` (a recipe name) made safe as part of one file name.

    Letters, digits and ``._+-`` are kept, every other run of characters
    (``/``, ``\\``, spaces, control characters) becomes ``-``; leading and trailing
    dots and dashes go, so ``../x`` or ``/etc/x`` cannot leave the output
    directory or hide the file; at most 100 bytes in UTF-8 (file systems count bytes: 100
    CJK characters made a name babysit could never create); ``default`` when nothing is left.
    """
    stem = re.sub(r"[^\w.+-]+", "-", str(name)).strip(".-")
    return _cut(stem).rstrip(".-") or default


def _cut(name: str) -> str:
    """The longest start of ``name`` within ``_NAME_PART`` bytes of UTF-8, whole characters."""
    return name.encode("utf-8", "surrogatepass")[:_NAME_PART].decode("utf-8", "ignore")


def temporary_name(path) -> Path:
    """A fresh temporary path beside ``path`` (see the module docstring for the pattern)."""
    path = Path(path)
    return path.with_name(f".{_cut(path.name)}.babysit-{_HOST}-{os.getpid()}-"
                          f"{secrets.token_hex(4)}.tmp")


def _writer_alive(pid: int) -> bool:
    if os.name != "posix":  # no cheap liveness test: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_temporaries(directory) -> list[Path]:
    """Remove our temporary files in ``directory`` whose writer is gone; returns them.

    Only names of our pattern written on this host count, and never a file of a
    live process (this one included), so a write in progress is left alone.
    """
    directory = Path(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_NAME.match(name)
        if match is None or match["host"] != _HOST:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _writer_alive(pid):
            continue
        with contextlib.suppress(OSError):
            (directory / name).unlink()
            removed.append(directory / name)
    return removed


def blocking_file(path) -> Path | None:
    """The existing non-directory standing where a directory above ``path`` should be
    (``out.txt`` in ``out.txt/r.json``), or None. Symlinks are followed."""
    real = Path(os.path.realpath(path))
    for parent in reversed(real.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _through_proc(path) -> bool:
    """True when ``path`` reaches its file through ``/proc`` (``/dev/stdout``, ``/dev/fd/3``).

    Such a path names an open descriptor, not a file: renaming over the file it
    points to would throw away what else the process wrote there (``babysit ...
    --json /dev/stdout > log`` would lose the report).
    """
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symlink hops
        parent = os.path.realpath(os.path.dirname(current))
        current = os.path.join(parent, os.path.basename(current))
        if current.startswith("/proc/"):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.join(parent, os.readlink(current))
    return False


def _target(path, missing_parent_ok: bool = False) -> tuple[Path | None, os.stat_result | None]:
    """Where a write to ``path`` lands: ``(file, stat)``, stat None when nothing is there yet.

    ``file`` is the real path (symlinks resolved) of a regular or missing file,
    which is replaced by a rename. It is None when the target exists but is no
    such file: a device, FIFO, socket or directory, or a regular file reached only
    through a ``/proc`` link (``/dev/stdout`` redirected to a file); those are
    written through ``path`` itself, or refused. WriteError when a parent is a
    file, or (unless ``missing_parent_ok``) missing.
    """
    try:
        st = os.stat(path)  # follows symlinks, /proc's magic links included
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, str(path)) from None
    real = Path(os.path.realpath(path))
    if st is not None:
        if not stat.S_ISREG(st.st_mode) or _through_proc(path):
            return None, st
        try:
            here = os.stat(real)
        except OSError:
            return None, st
        return (real if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino) else None), st
    blocker = blocking_file(real)
    if blocker is not None:
        raise WriteError(errno.ENOTDIR, f"{blocker} is a file, not a directory", str(path))
    if not missing_parent_ok and not real.parent.is_dir():
        raise WriteError(errno.ENOENT, f"directory {real.parent} does not exist", str(path))
    return real, None


def check_target(path, stream_ok: bool = True) -> None:
    """Raise the :class:`WriteError` a write to ``path`` would meet at its target, if any:
    a parent that is a file, a directory, or (unless ``stream_ok``) a device or FIFO.
    For failing before a long computation rather than after it."""
    real, st = _target(path, missing_parent_ok=True)
    if real is None and (not stream_ok or stat.S_ISDIR(st.st_mode)):
        _refuse_non_regular(path, st)


def make_parents(path) -> None:
    """Create the missing directories above ``path``; WriteError naming ``path`` otherwise."""
    real = Path(os.path.realpath(path))
    blocker = blocking_file(real)
    if blocker is not None:
        raise WriteError(errno.ENOTDIR, f"{blocker} is a file, not a directory", str(path))
    # one level at a time, top down: Path.mkdir(parents=True) recurses once per
    # missing level and a path 2,000 folders deep ended in a RecursionError
    missing = []
    folder = real.parent
    while not folder.is_dir() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, str(path)) from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse_non_regular(path, st) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise WriteError(errno.EISDIR, "it is a directory; give a file name", str(path))
    what = "a /proc link" if stat.S_ISREG(st.st_mode) else "a device, FIFO or socket"
    raise WriteError(errno.EINVAL, f"it is not a regular file ({what}); give a file name",
                     str(path))


@contextlib.contextmanager
def _replacing(path, real: Path):
    """Yield a fresh temporary path beside ``real`` (``path``'s resolved regular-file
    target); rename it over ``real`` on success.

    The temporary file lives in the target's directory (``os.replace`` is atomic
    only within one file system) and does not exist yet, so the writer creates
    it (``open(tmp, "xb")``). It is flushed to disk before the rename and
    removed when the block fails or is interrupted. Any OSError (the block's
    included) becomes a :class:`WriteError` naming ``path``.
    """
    if real.parent not in _cleaned:
        _cleaned.add(real.parent)
        remove_stale_temporaries(real.parent)
    tmp = temporary_name(real)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, real)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def write_bytes(path, data, stream_ok: bool = True) -> None:
    """Write ``data`` (bytes or a buffer) to ``path`` atomically (see the module docstring).

    ``stream_ok``: write through to a target that is not a regular file
    (``/dev/stdout``, a FIFO) instead of refusing it.
    """
    real, st = _target(path)
    if real is None:
        if not stream_ok or stat.S_ISDIR(st.st_mode):
            _refuse_non_regular(path, st)
        try:  # appending: /dev/stdout redirected to a file keeps what was printed before
            with open(os.open(path, os.O_WRONLY | os.O_APPEND), "wb") as handle:
                _write_all(handle, data)
        except OSError as exc:
            raise WriteError(exc.errno, exc.strerror or str(exc), str(path)) from None
        return
    with _replacing(path, real) as tmp:   # the target as resolved above, not again
        with open(tmp, "xb") as handle:
            _write_all(handle, data)


def _write_all(handle, data) -> None:
    handle.write(data)


__all__ = ["WriteError", "blocking_file", "check_target", "file_stem", "write_bytes", "make_parents", "remove_stale_temporaries",
           "temporary_name"]
