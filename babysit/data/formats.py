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
and an HDF5 file is read only from itself (see :func:`_dataset`). What a small
file could expand to is bounded before it is built: a CIFAR-10 directory holds
at most MAX_CIFAR_IMAGES images, and rows and labels given as lists are checked
before NumPy converts them (:func:`_list_rows`); class names are counted before
they are decoded (:func:`_names`); an IDX header is checked before its data are
read (:func:`read_idx`).
"""

from __future__ import annotations

import gzip
import math
import numbers
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from babysit.data.memory import check_fits, npz_member_header
from babysit.data.safe_pickle import RefusedPickle, UnsafePickle, load_data_pickle
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


MAX_CLASS_NAMES = 100_000  # class names a file may give (ImageNet-21k has 21,841 classes)
MAX_NAME_CHARS = 10_000_000  # characters in all of them


def _names(values, label: str, where: str) -> tuple:
    """Class names as str, from a list or array of names (``where`` says which, for messages).

    Bytes are decoded as UTF-8, and bytes that are not UTF-8 become U+FFFD, the
    replacement character, instead of refusing the data: names only label the
    classes in reports, so a practitioner expects the data to load when just a
    name is odd, and the visible replacement shows where the bad bytes were.
    Numbers become their digits. Anything else is a DataError: a value that is
    not a list of names (a number, one bytes string), an entry that is not a
    name (a list, None), or more names or characters than MAX_CLASS_NAMES and
    MAX_NAME_CHARS, counted before decoding (a pickle can repeat one long name
    by reference).
    """
    if isinstance(values, np.ndarray):
        values = values.ravel()
    elif not isinstance(values, (list, tuple)):
        raise DataError(f"{label}: {where} must be a list of names, got {type(values).__name__}")
    if len(values) > MAX_CLASS_NAMES:
        raise DataError(f"{label}: {where} has {len(values)} names; at most {MAX_CLASS_NAMES} are read")
    chars = 0
    for i, name in enumerate(values):
        if isinstance(name, (str, bytes)):
            chars += len(name)
        elif not isinstance(name, numbers.Real):
            raise DataError(f"{label}: {where} entry {i} is a {type(name).__name__}, not a name")
    if chars > MAX_NAME_CHARS:
        raise DataError(f"{label}: {where} has {chars} characters in all; at most {MAX_NAME_CHARS} "
                        f"are read")
    return tuple(name.decode("utf-8", errors="replace") if isinstance(name, bytes) else str(name)
                 for name in values)


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
            for key, dataset in datasets.items():
                check_fits(label, key, dataset.shape, dataset.dtype.itemsize)
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
            for key in archive.files:
                header = npz_member_header(archive, key)
                if header is not None:
                    check_fits(label, key, *header)
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
        names = _names(np.asarray(names), label, "class_names")
    return RawData(splits, label, num_classes, names)


# -- CIFAR-10 -------------------------------------------------------------------


PIXELS = 3 * 32 * 32  # values in one CIFAR-10 image row
MAX_CIFAR_IMAGES = 60_000  # the whole CIFAR-10 set: five batches of 10,000 and a test batch


def _unpickle(path: Path, label: str) -> dict:
    """A CIFAR-10 batch or meta file as a dict with str keys, through the restricted unpickler."""
    try:
        batch = load_data_pickle(path)
    except RefusedPickle as exc:
        raise DataError(f"{label}: {path.name} is not a plain data pickle: it names {show(exc.name)}, "
                        f"which could run code; refused without loading it (a real CIFAR-10 "
                        f"batch holds only bytes, lists, numbers and NumPy arrays)") from None
    except UnsafePickle as exc:
        raise DataError(f"{label}: {path.name} is refused: {exc}") from None
    except Exception as exc:  # anything a corrupt pickle can raise
        raise DataError(f"{label}: cannot read {path.name}: {type(exc).__name__}: {exc}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{label}: {path.name} is not a CIFAR-10 batch (a dict)")
    return {k.decode("utf-8", errors="replace") if isinstance(k, bytes) else k: v
            for k, v in batch.items()}


def _first_not(values, kinds: tuple) -> int | None:
    """The index of the first entry of ``values`` that is none of ``kinds`` (None: all are).

    Looks at the distinct types first, at C speed, and walks the entries only
    to name a culprit.
    """
    if all(issubclass(kind, kinds) for kind in set(map(type, values))):
        return None
    return next(i for i, value in enumerate(values) if not isinstance(value, kinds))


def _list_rows(rows, where: str) -> np.ndarray:
    """Rows given as lists (not how CIFAR-10 stores them, but readable) -> (N, PIXELS) uint8.

    Every row is checked before any is converted, without following what its
    entries hold: a pickle makes a list of N references to one row, or a row
    of references to another list, in a few bytes, and NumPy would expand them
    into N x 3,072 (or 3,072 ** depth) values. A row must be PIXELS whole
    numbers 0..255 (the values CIFAR-10's uint8 holds), so the batch takes no
    more memory than the array it stands for.
    """
    seen = set()  # ids of rows already checked: references to one row are checked once
    for i, row in enumerate(rows):
        if id(row) in seen:
            continue
        if not isinstance(row, (list, tuple)):
            raise DataError(f"{where} row {i} is a {type(row).__name__}, not a list of {PIXELS} values")
        if len(row) != PIXELS:
            raise DataError(f"{where} row {i} has {len(row)} values, expected {PIXELS} (3 x 32 x 32); "
                            f"every row must have the same length")
        bad = _first_not(row, (int, np.integer))
        if bad is not None:
            raise DataError(f"{where} row {i} holds a {type(row[bad]).__name__} (value {bad}); rows "
                            f"given as lists must hold whole numbers 0..255 (store other values as "
                            f"a NumPy array of shape (N, {PIXELS}))")
        seen.add(id(row))
    X = np.empty((len(rows), PIXELS), dtype=np.uint8)
    for i, row in enumerate(rows):
        try:
            values = np.fromiter(row, dtype=np.int64, count=PIXELS)
        except OverflowError:  # beyond int64
            values = None
        if values is None or values.min() < 0 or values.max() > 255:
            raise DataError(f"{where} row {i} holds values outside 0..255")
        X[i] = values
    return X


def _cifar_batch(path: Path, label: str, room: int):
    """``(X (N, 3, 32, 32), y)`` of one batch, refused if it holds more than ``room`` images."""
    batch = _unpickle(path, label)
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{label}: {path.name} lacks 'data' or 'labels'")
    data, labels = batch["data"], batch["labels"]
    where = f"{label}: {path.name} data"
    if isinstance(data, np.ndarray):
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != PIXELS:
            raise DataError(f"{where} has shape {data.shape}, expected (N, {PIXELS})")
    elif not isinstance(data, (list, tuple)):
        raise DataError(f"{where} is a {type(data).__name__}, expected an array (N, {PIXELS})")
    for what, count in (("images", len(data)), ("labels", _labels_count(labels, label, path))):
        if count > room:  # counted, not converted: the bound comes before any large allocation
            before = "" if room == MAX_CIFAR_IMAGES else " with the batches read before it"
            raise DataError(f"{label}: {path.name} holds {count} {what}, more than the "
                            f"{MAX_CIFAR_IMAGES} images of the whole CIFAR-10 set{before}; refused "
                            f"before loading them")
    X = data if isinstance(data, np.ndarray) else _list_rows(data, where)
    return X.reshape(-1, 3, 32, 32), _label_array(labels, label, path)


def _labels_count(labels, label: str, path: Path) -> int:
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise DataError(f"{label}: {path.name} labels must be a list of class indices, "
                        f"got {type(labels).__name__}")
    return len(labels)


def _label_array(labels, label: str, path: Path) -> np.ndarray:
    """Labels as an array; a list must hold numbers only (checked before NumPy expands it)."""
    if isinstance(labels, np.ndarray):
        return np.asarray(labels)
    bad = _first_not(labels, numbers.Real)
    if bad is not None:
        raise DataError(f"{label}: {path.name} label {bad} is a {type(labels[bad]).__name__}; "
                        f"labels must be class indices 0..9")
    return np.array(labels)


def read_cifar10(directory: Path, label: str) -> RawData:
    train_files = [directory / f"data_batch_{i}" for i in range(1, 6)]
    test_file = directory / "test_batch"
    missing = [f.name for f in train_files + [test_file] if not f.is_file()]
    if missing:
        raise DataError(f"{label}: not a CIFAR-10 python directory: missing {', '.join(missing)}")
    batches, room = [], MAX_CIFAR_IMAGES
    for file in train_files + [test_file]:
        batches.append(_cifar_batch(file, label, room))
        room -= len(batches[-1][0])
    X_train = np.concatenate([X for X, _ in batches[:-1]])
    y_train = np.concatenate([y for _, y in batches[:-1]])
    names = None
    meta = directory / "batches.meta"
    if meta.is_file():
        labels = _unpickle(meta, label).get("label_names")
        if labels is not None:
            names = _names(labels, label, f"{meta.name} label_names")
    return RawData({"train": (X_train, y_train), "test": batches[-1]}, label, 10, names)


# -- MNIST IDX ------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


MAX_IDX_DIMS = 32  # dimensions an IDX header may declare (NumPy 1's limit; NumPy 2's is 64)
MAX_GZIP_IDX_BYTES = 1 << 30  # data a gzipped IDX file may inflate to: twice EMNIST's largest
_IDX_LAYOUTS = {3: "images (N, rows, columns)", 1: "labels (N,)"}  # MNIST's two kinds of file


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (MNIST format; gzipped when the name ends in .gz).

    Header: two zero bytes, a type code, the number of dimensions, then one
    big-endian uint32 per dimension; the data follow, big-endian. ``ndim``:
    the dimensions the file must have (MNIST: 3 for images, 1 for labels);
    at most MAX_IDX_DIMS in any case.

    The header is checked before the data are read, so a header that declares
    more than the file holds costs nothing: a plain file's size is compared
    with it, and a gzipped file (a few kB can inflate to gigabytes) is
    inflated only as far as its header says, and at most MAX_GZIP_IDX_BYTES.
    """
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            dtype, count = np.dtype(_IDX_TYPES[head[2]]), head[3]
            if ndim is not None and count != ndim:
                raise DataError(f"{path}: the IDX header declares {count} dimensions; MNIST "
                                f"{_IDX_LAYOUTS.get(ndim, 'files')} have {ndim}")
            if not 1 <= count <= MAX_IDX_DIMS:
                raise DataError(f"{path}: the IDX header declares {count} dimensions; "
                                f"1 to {MAX_IDX_DIMS} are read")
            packed = handle.read(4 * count)
            if len(packed) < 4 * count:
                raise DataError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{count}I", packed)
            nbytes = math.prod(dims) * dtype.itemsize
            if gzipped and nbytes > MAX_GZIP_IDX_BYTES:
                raise DataError(f"{path}: the IDX header says {dims} ({nbytes} bytes of data), more "
                                f"than the {MAX_GZIP_IDX_BYTES} a gzipped IDX file may inflate to")
            if not gzipped:
                stored = os.fstat(handle.fileno()).st_size - 4 - 4 * count
                if stored != nbytes:
                    raise DataError(f"{path}: IDX header says {dims} ({nbytes} bytes of data) "
                                    f"but the file has {stored}")
            data = handle.read(nbytes + 1)  # one byte more tells a stream that goes on
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if len(data) != nbytes:
        has = "more" if len(data) > nbytes else len(data)
        raise DataError(f"{path}: IDX header says {dims} ({nbytes} bytes of data) but the file has {has}")
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


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
        splits[split] = (read_idx(images, 3), read_idx(labels, 1))
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
           "read_idx", "read_mnist", "describe_file", "MAX_SOFT_LINKS", "MAX_CIFAR_IMAGES",
           "MAX_CLASS_NAMES", "MAX_NAME_CHARS", "MAX_IDX_DIMS", "MAX_GZIP_IDX_BYTES"]
