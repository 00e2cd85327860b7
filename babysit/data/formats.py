"""File formats: HDF5, NPZ, the CIFAR-10 pickle directory and MNIST IDX -> :class:`RawData`.

* HDF5 and NPZ files hold ``X_train``, ``y_train`` and optional ``X_val``/``y_val``
  and ``X_test``/``y_test`` pairs. Optional HDF5 root attributes (NPZ arrays):
  ``num_classes`` (otherwise max label + 1) and ``class_names``.
* CIFAR-10 python pickle directory: ``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, optional ``batches.meta``; X (N, 3, 32, 32).
* MNIST IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` and
  optionally ``t10k-*`` (``.gz`` allowed, ``train-images.idx3-ubyte`` spelling
  too); X (N, 28, 28), given its channel by the preparation.

Readers check only that the file can be read and has the expected keys; the
arrays are returned as stored (checked later by :mod:`babysit.data.checks`).
Every failure is a DataError whose message starts with the source's label.

Files come from others and are not trusted: CIFAR-10 pickles load through the
restricted unpickler of :mod:`babysit.data.safe_pickle`, NPZ never unpickles,
and an HDF5 file is read only from itself (see :func:`_dataset`).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from babysit.data.safe_pickle import RefusedPickle, load_data_pickle
from babysit.errors import DataError
from babysit.validation import show

SPLITS = ("train", "val", "test")


@dataclass
class RawData:
    """Arrays exactly as a source stores them: ``{split: (X, y)}`` plus metadata."""

    splits: dict
    source: str
    num_classes: int | None = None
    class_names: tuple | None = None


def _names(values) -> tuple:
    """Class names as str, decoding bytes (HDF5 attributes, CIFAR-10 meta)."""
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in values)


# -- HDF5 and NPZ -------------------------------------------------------------


MAX_SOFT_LINKS = 16  # soft links followed in a row before calling it a loop (HDF5's own limit)


def _dataset(handle, key: str, label: str):
    """The dataset that the root name ``key`` leads to, read from this file only.

    Soft links are followed inside the file (at most MAX_SOFT_LINKS in a row).
    Refused with a DataError, before anything else is opened: external and
    user-defined links (another file), looping or dangling soft links, groups,
    and datasets whose values live outside the file (external raw storage,
    virtual datasets).
    """
    import h5py

    group, names, hops, found = handle, [key], 0, None
    while names:
        name = names.pop(0)
        if name in ("", "."):
            continue
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink):
            hops += 1
            if hops > MAX_SOFT_LINKS:
                raise DataError(f"{label}: {key} is a soft link that loops (more than "
                                f"{MAX_SOFT_LINKS} links in a row)")
            group = handle if link.path.startswith("/") else group
            names = link.path.split("/") + names
            continue
        if isinstance(link, h5py.ExternalLink):
            raise DataError(f"{label}: {key} is a link to another file ({show(link.filename)}); "
                            f"babysit reads only the file it is given")
        if link is None or not isinstance(link, h5py.HardLink):
            what = "a link of an unknown kind" if link is not None else "a soft link to nothing"
            raise DataError(f"{label}: {key} is {what}; store the array itself under {key}")
        found = group[name]
        if names:
            if not isinstance(found, h5py.Group):
                raise DataError(f"{label}: {key} is a soft link to nothing")
            group = found
    if not isinstance(found, h5py.Dataset):
        raise DataError(f"{label}: {key} is an HDF5 group, not a dataset (an array)")
    if found.external or found.is_virtual:
        raise DataError(f"{label}: {key} keeps its values in other files (HDF5 "
                        f"{'external storage' if found.external else 'virtual dataset'}); "
                        f"babysit reads only the file it is given")
    return found


def read_hdf5(path: Path, label: str) -> RawData:
    import h5py

    wanted = {f"{a}_{split}" for a in "Xy" for split in SPLITS} | {"num_classes", "class_names"}
    try:
        with h5py.File(path, "r") as handle:
            # every key read is checked before any is read; other names are listed, never opened
            datasets = {key: _dataset(handle, key, label) for key in sorted(wanted & set(handle))}
            arrays = {key: (datasets[key][()] if key in datasets else None) for key in handle}
            attrs = dict(handle.attrs)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DataError(f"{label}: cannot read the HDF5 file: {exc}") from None
    for key in ("num_classes", "class_names"):
        if key in attrs and arrays.get(key) is None:
            arrays[key] = attrs[key]
    return from_arrays(arrays, label)


def _starts_like_npz(path: Path) -> bool:
    """A zip archive (np.savez) or a single .npy array, by the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or head == b"\x93NUMPY"


def read_npz(path: Path, label: str) -> RawData:
    if not _starts_like_npz(path):
        # np.load would try pickle on anything else and blame "pickled data"
        raise DataError(f"{label}: not an NPZ file (an NPZ is a zip archive written by np.savez)")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{label}: not an NPZ archive (a single array; save with np.savez)")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except DataError:
        raise
    except Exception as exc:  # BadZipFile, OSError, EOFError, ValueError (pickled objects)
        raise DataError(f"{label}: cannot read the NPZ file: {type(exc).__name__}: {exc}") from None
    return from_arrays(arrays, label)


def from_arrays(arrays: dict, label: str) -> RawData:
    """Pick the X_/y_ pairs out of a file's arrays; missing keys are a DataError.

    ``arrays`` maps every name in the file to its array (None for names not read).
    """
    arrays_found = sorted(arrays)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    missing = [key for key in ("X_train", "y_train") if key not in arrays]
    for split in ("val", "test"):
        pair = (f"X_{split}", f"y_{split}")
        present = [key for key in pair if key in arrays]
        if len(present) == 1:
            missing.extend(key for key in pair if key not in arrays)
    if missing:
        found = ", ".join(arrays_found) or "nothing"
        raise DataError(f"{label}: missing keys {', '.join(missing)} (found: {found})")
    splits = {split: (np.asarray(arrays[f"X_{split}"]), np.asarray(arrays[f"y_{split}"]))
              for split in SPLITS if f"X_{split}" in arrays}
    num_classes = arrays.get("num_classes")
    if num_classes is not None:
        value = np.asarray(num_classes)
        if value.size != 1 or value.dtype.kind not in "iu" or int(value.ravel()[0]) < 1:
            raise DataError(f"{label}: num_classes must be one positive integer, got {value!r}")
        num_classes = int(value.ravel()[0])
    names = arrays.get("class_names")
    if names is not None:
        names = _names(np.asarray(names).ravel())
    return RawData(splits, label, num_classes, names)


# -- CIFAR-10 -------------------------------------------------------------------


def _unpickle(path: Path, label: str) -> dict:
    """A CIFAR-10 batch or meta file as a dict with str keys, through the restricted unpickler."""
    try:
        batch = load_data_pickle(path)
    except RefusedPickle as exc:
        raise DataError(f"{label}: {path.name} is not a plain data pickle: it names {show(exc.name)}, "
                        f"which could run code; refused without loading it (a real CIFAR-10 "
                        f"batch holds only bytes, lists, numbers and NumPy arrays)") from None
    except Exception as exc:  # anything a corrupt pickle can raise
        raise DataError(f"{label}: cannot read {path.name}: {type(exc).__name__}: {exc}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{label}: {path.name} is not a CIFAR-10 batch (a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _cifar_batch(path: Path, label: str):
    batch = _unpickle(path, label)
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{label}: {path.name} lacks 'data' or 'labels'")
    X = np.asarray(batch["data"])
    y = np.asarray(batch["labels"])
    if X.ndim != 2 or X.shape[1] != 3 * 32 * 32:
        raise DataError(f"{label}: {path.name} data has shape {X.shape}, expected (N, 3072)")
    return X.reshape(-1, 3, 32, 32), y


def read_cifar10(directory: Path, label: str) -> RawData:
    train_files = [directory / f"data_batch_{i}" for i in range(1, 6)]
    test_file = directory / "test_batch"
    missing = [f.name for f in train_files + [test_file] if not f.is_file()]
    if missing:
        raise DataError(f"{label}: not a CIFAR-10 python directory: missing {', '.join(missing)}")
    batches = [_cifar_batch(f, label) for f in train_files]
    X_train = np.concatenate([X for X, _ in batches])
    y_train = np.concatenate([y for _, y in batches])
    names = None
    meta = directory / "batches.meta"
    if meta.is_file():
        labels = _unpickle(meta, label).get("label_names")
        if labels is not None:
            names = _names(labels)
    splits = {"train": (X_train, y_train), "test": _cifar_batch(test_file, label)}
    return RawData(splits, label, 10, names)


# -- MNIST IDX ------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format; gzipped when the name ends in .gz).

    Header: two zero bytes, a type code, the number of dimensions, then one
    big-endian uint32 per dimension; the data follow, big-endian.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(f"{path}: IDX header says {dims} ({count * dtype.itemsize} bytes of data) "
                        f"but the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims).astype(
        dtype.newbyteorder("="))


def _find_idx(directory: Path, prefix: str, what: str, idx: str):
    for name in (f"{prefix}-{what}-{idx}-ubyte", f"{prefix}-{what}.{idx}-ubyte"):
        for suffix in ("", ".gz"):
            candidate = directory / (name + suffix)
            if candidate.is_file():
                return candidate
    return None


def read_mnist(directory: Path, label: str) -> RawData:
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _find_idx(directory, prefix, "images", "idx3")
        labels = _find_idx(directory, prefix, "labels", "idx1")
        if images is None and labels is None and split == "test":
            continue
        if images is None or labels is None:
            missing = [f"{prefix}-{w}-{i}-ubyte[.gz]" for w, i, f in
                       (("images", "idx3", images), ("labels", "idx1", labels)) if f is None]
            raise DataError(f"{label}: not an MNIST directory: missing {', '.join(missing)}")
        splits[split] = (read_idx(images), read_idx(labels))
    return RawData(splits, label)


# -- telling a data file by its first bytes --------------------------------------

# first bytes -> (what the file is, how to use such a file as data); for the
# message when a data file is given where a recipe is expected
SIGNATURES = {
    b"\x93NUMPY": ("a NumPy .npy file (one array)", "save X_train and y_train together in an "
                   ".npz: np.savez('data.npz', X_train=X, y_train=y)"),
    b"PK\x03\x04": ("a zip archive", "give an .npz written by np.savez a name ending in .npz"),
    b"\x89HDF\r\n\x1a\n": ("an HDF5 file", "give it a name ending in .h5, .hdf5 or .hdf"),
    b"\x80": ("a Python pickle", "name the directory of CIFAR-10 batches: cifar10:DIR"),
    b"\x1f\x8b": ("a gzip file", "name the directory of MNIST files: mnist:DIR"),
    b"\x00\x00\x08": ("an IDX file", "name the directory of MNIST files: mnist:DIR"),
}


def describe_file(path) -> tuple[str, str] | None:
    """``(what the file is, how to use it as data)`` by its first bytes; None if not known."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return next((known for magic, known in SIGNATURES.items() if head.startswith(magic)), None)


__all__ = ["RawData", "SPLITS", "read_hdf5", "read_npz", "from_arrays", "read_cifar10",
           "read_idx", "read_mnist", "describe_file", "MAX_SOFT_LINKS"]
