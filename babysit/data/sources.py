"""Kinds of data source: how a ``data.source`` string is named, found and read.

A source string is ``PREFIX:REST`` for the prefixed kinds (``builtin:spiral``,
``cifar10:DIR``, ``mnist:DIR``) or a file path whose suffix names its kind
(``x.h5``, ``x.npz``). ``SOURCES`` maps each kind to its reader
``reader(section) -> RawData``; ``source_kind`` splits a string into
``(kind, location)``. ``SOURCE_PREFIXES``, ``HDF5_SUFFIXES`` and
``NPZ_SUFFIXES`` are the recipe schema of ``data.source``.

Relative paths are looked up in the current directory first, then in the
recipe file's directory (``DataSection.base_dir``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from babysit.data.builtins import BUILTINS, read_builtin
from babysit.data.formats import RawData, read_cifar10, read_hdf5, read_mnist, read_npz
from babysit.errors import DataError

SOURCE_PREFIXES = ("builtin", "cifar10", "mnist")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NPZ_SUFFIXES = (".npz",)
FILE_SUFFIXES = {"hdf5": HDF5_SUFFIXES, "npz": NPZ_SUFFIXES}  # file kind -> name endings
# the kinds of source, for messages
ACCEPTED_SOURCES = f"builtin:NAME ({', '.join(BUILTINS)}), a .h5 or .npz file, cifar10:DIR or mnist:DIR"


def resolve_path(location: str, base_dir: str | None, directory: bool = False) -> Path:
    """Find ``location``: as given if absolute, else in the current directory,
    then in ``base_dir`` (the recipe's directory). Raises DataError if absent."""
    path = Path(location).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    if not path.is_absolute() and base_dir:
        candidates.append(Path(base_dir) / path)
    for candidate in candidates:
        if candidate.is_dir() if directory else candidate.is_file():
            return candidate
    what = "directory" if directory else "file"
    places = " or ".join(str(c.parent if not directory else c) for c in candidates)
    raise DataError(f"data {what} {location!r} not found (looked in {places})")


def source_kind(source: str) -> tuple[str, str]:
    """``"cifar10:DIR"`` -> ``("cifar10", "DIR")``; ``"x.h5"`` -> ``("hdf5", "x.h5")``.

    Raises ValueError for strings that name no known kind of source.
    """
    prefix, sep, rest = source.partition(":")
    if sep and prefix in SOURCE_PREFIXES:
        if not rest:
            raise ValueError(f"{source!r} needs a {'name' if prefix == 'builtin' else 'directory'} "
                             f"after '{prefix}:'")
        return prefix, rest
    lower = source.lower()
    for kind, suffixes in FILE_SUFFIXES.items():
        if lower.endswith(suffixes):
            return kind, source
    raise ValueError(f"unknown data source {source!r}: use {ACCEPTED_SOURCES}")


def _read_builtin(section) -> RawData:
    return read_builtin(section.location, section.params, section.seed)


def _in_file(read: Callable[[Path, str], RawData]) -> Callable:
    """A reader of a file kind: the file is found by path, its label is the path as written."""
    def reader(section) -> RawData:
        return read(resolve_path(section.location, section.base_dir), section.location)
    return reader


def _in_directory(read: Callable[[Path, str], RawData]) -> Callable:
    """A reader of a directory kind, labelled ``kind:DIR`` as written."""
    def reader(section) -> RawData:
        directory = resolve_path(section.location, section.base_dir, directory=True)
        return read(directory, f"{section.kind}:{section.location}")
    return reader


# kind -> reader(section) -> RawData; the kinds source_kind can return
SOURCES = {
    "builtin": _read_builtin,
    "cifar10": _in_directory(read_cifar10),
    "mnist": _in_directory(read_mnist),
    "hdf5": _in_file(read_hdf5),
    "npz": _in_file(read_npz),
}


def read_source(section) -> RawData:
    """The raw arrays of a data section's source (no checks beyond readability).

    ``section`` has ``kind``, ``location``, ``params``, ``seed`` and ``base_dir``
    (a :class:`babysit.recipes.DataSection`).
    """
    return SOURCES[section.kind](section)


__all__ = ["SOURCES", "SOURCE_PREFIXES", "HDF5_SUFFIXES", "NPZ_SUFFIXES", "FILE_SUFFIXES", "ACCEPTED_SOURCES",
           "source_kind", "resolve_path", "read_source"]
