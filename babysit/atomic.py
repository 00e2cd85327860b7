"""All-or-nothing file writes: every file babysit writes goes through :func:`replacing`.

A reader, a CI job killed mid-write, or a Ctrl-C never sees half a file, and a
failed write leaves any previous file at the target untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


@contextlib.contextmanager
def replacing(path):
    """Yield a fresh temporary path beside ``path``; rename it over ``path`` on success.

    The temporary file lives in the target's directory (``os.replace`` is atomic
    only within one file system) and does not exist yet, so the writer may
    create it however it likes (``open``, ``h5py.File(tmp, "x")``, ``savefig``).
    It is removed when the block fails or is interrupted.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as exc:  # name the file the user asked for, not the temporary one
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with replacing(path) as tmp:
        with open(tmp, "xb") as handle:
            handle.write(data)
