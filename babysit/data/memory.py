"""Will an array fit? Checked from a data file's header, before its values are read.

HDF5 datasets and NPZ members may be compressed, legitimately, so a small file
can declare a huge array (a 1.5 MB gzip ``.h5`` declaring 1.6 GB was read in
full). Refusing compression is not the answer; refusing an array that cannot
fit is: :func:`check_fits` compares what reading it costs (the array as
stored, plus the float32 copy the model trains on) with the memory the
machine has available now, and raises a DataError naming both.
"""

from __future__ import annotations

import math

from babysit.errors import DataError
from babysit.validation import size_text

FLOAT32_COPY = 4   # bytes per value of the copy the model trains on


def available_memory() -> int | None:
    """Bytes the kernel says are available now (Linux ``MemAvailable``); None when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(label: str, key: str, shape, itemsize: int) -> None:
    """DataError when reading ``key`` (``shape`` of ``itemsize``-byte values) cannot fit."""
    need = math.prod(int(n) for n in shape) * (int(itemsize) + FLOAT32_COPY)
    available = available_memory()
    if available is not None and need > available:
        raise DataError(f"{label}: {key} has shape {tuple(int(n) for n in shape)}: reading it needs "
                        f"{size_text(need)} of memory, more than the {size_text(available)} this "
                        "machine has available (is the file what you meant? a compressed file can "
                        "declare far more than it holds)")


def npz_member_header(archive, key: str):
    """``(shape, itemsize)`` of NPZ member ``key`` from its .npy header (None when unknown)."""
    import numpy as np

    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with archive.zip.open(f"{key}.npy") as member:
            reader = readers.get(np.lib.format.read_magic(member))
            if reader is None:
                return None
            shape, _, dtype = reader(member)
            return shape, dtype.itemsize
    except Exception:   # an unreadable header: reading the member says what is wrong
        return None


__all__ = ["available_memory", "check_fits", "npz_member_header"]
