"""Data sources, train/val splits and preprocessing -> :class:`Dataset`.

Sources (``data.source`` of a recipe, see :mod:`babysit.recipes`):

* HDF5 (``.h5``/``.hdf5``) and NPZ files with ``X_train``, ``y_train`` and
  optional ``X_val``/``y_val`` and ``X_test``/``y_test`` pairs. Optional HDF5
  root attributes (NPZ arrays): ``num_classes`` (otherwise max label + 1) and
  ``class_names``.
* ``cifar10:DIR``: the CIFAR-10 python pickle directory (``data_batch_1`` ..
  ``data_batch_5``, ``test_batch``, optional ``batches.meta``); X (N, 3, 32, 32).
* ``mnist:DIR``: MNIST IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte`` and optionally ``t10k-*`` (``.gz`` allowed,
  ``train-images.idx3-ubyte`` spelling too); X (N, 1, 28, 28).
* builtins: ``digits`` (the UCI 8x8 digits shipped in ``bundled/digits.h5``,
  1,797 images (N, 1, 8, 8), values 0..16), ``spiral`` (the CS231n notes'
  spiral: ``n`` 2-D points in total, ``classes`` arms, angular ``noise``),
  ``gaussian`` (``n`` unit-Gaussian vectors of dimension ``dim`` with random
  labels in 0..``classes``-1). Their randomness comes from the recipe seed.

Relative paths are looked up in the current directory first, then in the
recipe file's directory (``DataSection.base_dir``).

Arrays: X is float32, 2-D (N, D) or 4-D NCHW (N, C, H, W); a 3-D source
(N, H, W) is read as (N, 1, H, W). y is int64 in 0..num_classes-1, where
num_classes is the source's declared count or the largest label + 1.

Splits: when the source has no validation split, ``val_fraction`` of the
training examples go to validation, stratified by class, chosen with
``np.random.default_rng([seed, SPLIT_STREAM])``; the training split keeps that
shuffled order so ``limit`` keeps a random subset. Preprocessing steps are
fitted on the (limited) training split only and applied to every split.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from babysit.errors import DataError

BUNDLED_DIGITS = Path(__file__).resolve().parent / "bundled" / "digits.h5"
SPLITS = ("train", "val", "test")
# Random streams of the data module: np.random.default_rng([seed, stream]).
SPLIT_STREAM = 101
BUILTIN_STREAM = 102
_CHUNK = 8192  # rows per chunk when accumulating statistics of large arrays


@dataclass
class Dataset:
    """Loaded, split and preprocessed data.

    ``X_*`` float32 ``(N, *input_shape)``, ``y_*`` int64 ``(N,)``; the test
    split is None when the source has none; ``X_val`` is empty (0 rows) when
    ``val_fraction`` is 0 and the source has no validation split.
    ``preprocess`` holds the fitted steps (each has ``apply(X)`` and ``state``).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    input_shape: tuple
    num_classes: int
    source: str
    preprocess: list = field(default_factory=list)
    class_names: tuple | None = None

    def splits(self) -> dict:
        """``{"train": (X, y), "val": (X, y), "test": (X, y)}`` for the splits present."""
        out = {"train": (self.X_train, self.y_train), "val": (self.X_val, self.y_val)}
        if self.X_test is not None:
            out["test"] = (self.X_test, self.y_test)
        return out


@dataclass
class RawData:
    """Arrays exactly as a source stores them: ``{split: (X, y)}`` plus metadata."""

    splits: dict
    source: str
    num_classes: int | None = None
    class_names: tuple | None = None


# ---------------------------------------------------------------------------
# Paths


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


# ---------------------------------------------------------------------------
# Readers


def _read_hdf5(path: Path, label: str) -> RawData:
    import h5py

    wanted = {f"{a}_{split}" for a in "Xy" for split in SPLITS} | {"num_classes", "class_names"}
    try:
        with h5py.File(path, "r") as handle:
            # unrelated datasets are named in messages but never read
            groups = [key for key in sorted(wanted & set(handle))
                      if not isinstance(handle[key], h5py.Dataset)]
            if groups:
                raise DataError(f"{label}: {groups[0]} is an HDF5 group, not a dataset (an array)")
            arrays = {key: (handle[key][()] if key in wanted else None) for key in handle}
            attrs = dict(handle.attrs)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{label}: cannot read the HDF5 file: {exc}") from None
    for key in ("num_classes", "class_names"):
        if key in attrs and arrays.get(key) is None:
            arrays[key] = attrs[key]
    return _from_arrays(arrays, label)


def _starts_like_npz(path: Path) -> bool:
    """A zip archive (np.savez) or a single .npy array, by the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or head == b"\x93NUMPY"


def _read_npz(path: Path, label: str) -> RawData:
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
    return _from_arrays(arrays, label)


def _from_arrays(arrays: dict, label: str) -> RawData:
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
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(names).ravel())
    return RawData(splits, label, num_classes, names)


def _unpickle(path: Path, label: str) -> dict:
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
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


def _read_cifar10(directory: Path, label: str) -> RawData:
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
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in labels)
    splits = {"train": (X_train, y_train), "test": _cifar_batch(test_file, label)}
    return RawData(splits, label, 10, names)


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


def _read_mnist(directory: Path, label: str) -> RawData:
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


def _spiral(n: int, classes: int, noise: float, rng) -> tuple:
    """The CS231n spiral, vectorised: class j holds about n/classes points with
    radius 0..1 and angle 4j..4(j+1) plus ``noise`` * N(0, 1)."""
    y = (np.arange(n) * classes) // n
    counts = np.bincount(y, minlength=classes)
    starts = np.cumsum(counts) - counts
    position = np.arange(n) - starts[y]
    radius = position / np.maximum(counts[y] - 1, 1)
    theta = 4.0 * (y + radius) + noise * rng.standard_normal(n)
    X = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
    return X.astype(np.float32), y


def _read_builtin(name: str, params, seed: int) -> RawData:
    label = f"builtin:{name}"
    rng = np.random.default_rng([seed, BUILTIN_STREAM])
    if name == "digits":
        return _read_hdf5(BUNDLED_DIGITS, label)
    if name == "spiral":
        X, y = _spiral(int(params["n"]), int(params["classes"]), float(params["noise"]), rng)
        return RawData({"train": (X, y)}, label, int(params["classes"]))
    if name == "gaussian":
        X = rng.standard_normal((int(params["n"]), int(params["dim"])), dtype=np.float32)
        y = rng.integers(0, int(params["classes"]), size=int(params["n"]))
        return RawData({"train": (X, y)}, label, int(params["classes"]))
    raise DataError(f"unknown builtin data set {name!r}")


def read_source(section) -> RawData:
    """The raw arrays of a data section's source (no checks beyond readability)."""
    kind, location = section.kind, section.location
    if kind == "builtin":
        return _read_builtin(location, section.params, section.seed)
    if kind in ("cifar10", "mnist"):
        directory = resolve_path(location, section.base_dir, directory=True)
        reader = _read_cifar10 if kind == "cifar10" else _read_mnist
        return reader(directory, f"{kind}:{location}")
    path = resolve_path(location, section.base_dir)
    return (_read_hdf5 if kind == "hdf5" else _read_npz)(path, location)


# ---------------------------------------------------------------------------
# Checks


def _as_examples(X: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); other shapes unchanged."""
    return X[:, None] if X.ndim == 3 else X


def find_problems(raw: RawData) -> list[str]:
    """Every reason the arrays are unusable, in plain words (empty list: usable)."""
    problems = []
    shapes = {}
    for split, (X, y) in raw.splits.items():
        xs, ys = f"X_{split}", f"y_{split}"
        if X.dtype.kind not in "biuf":
            problems.append(f"{xs} has dtype {X.dtype}; expected numbers")
        elif X.ndim not in (2, 3, 4):
            problems.append(f"{xs} must be 2-D (N, D) or 4-D (N, C, H, W), got shape {X.shape}")
        elif X.size == 0:
            problems.append(f"{xs} is empty (shape {X.shape})")
        else:
            shapes[split] = _as_examples(X).shape[1:]
            if X.dtype.kind == "f":
                nan, inf = _count_nonfinite(X)
                if nan or inf:
                    problems.append(f"{xs} contains {nan} NaN and {inf} inf values")
        y_flat = y.reshape(len(y)) if y.ndim == 2 and y.shape[1:] == (1,) else y
        if y_flat.ndim != 1:
            hint = " (one-hot labels? store the class index)" if y.ndim == 2 else ""
            problems.append(f"{ys} must be 1-D labels (N,), got shape {y.shape}{hint}")
            continue
        if X.ndim >= 1 and len(X) != len(y_flat):
            problems.append(f"{xs} has {len(X)} examples but {ys} has {len(y_flat)} labels")
        problems.extend(_label_problems(y_flat, ys, raw.num_classes))
    reference = shapes.get("train")
    for split, shape in shapes.items():
        if reference is not None and shape != reference:
            problems.append(f"X_{split} has per-example shape {shape} but X_train has {reference}")
    if not problems:
        labels = np.concatenate([np.asarray(y).ravel() for _, y in raw.splits.values()])
        classes = raw.num_classes or int(labels.max()) + 1
        if classes < 2:
            problems.append("the labels name only one class; a classifier needs at least two")
    return problems


def _label_problems(y: np.ndarray, name: str, num_classes: int | None) -> list[str]:
    if y.dtype.kind not in "biuf":
        return [f"{name} has dtype {y.dtype}; labels must be integers 0..C-1"]
    if y.size == 0:
        return [f"{name} is empty"]
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        bad = int(np.count_nonzero(~finite | (np.floor(np.where(finite, y, 0)) != y)))
        if bad:
            return [f"{name} has {bad} non-integer labels; labels must be integers 0..C-1"]
    low, high = y.min(), y.max()
    if low < 0:
        return [f"{name} has labels outside 0..C-1: minimum {low}"]
    if num_classes is not None and high >= num_classes:
        return [f"{name} has labels outside 0..{num_classes - 1}: maximum {high}"]
    return []


def _count_nonfinite(X: np.ndarray) -> tuple[int, int]:
    if X.dtype.kind != "f":
        return 0, 0
    flat = X.reshape(len(X), -1) if X.ndim else X.reshape(1, -1)
    nan = inf = 0
    for start in range(0, len(flat), _CHUNK):
        chunk = flat[start:start + _CHUNK]
        nan += int(np.count_nonzero(np.isnan(chunk)))
        inf += int(np.count_nonzero(np.isinf(chunk)))
    return nan, inf


# ---------------------------------------------------------------------------
# Splitting


def stratified_split(y: np.ndarray, val_fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: round(val_fraction * n_c) of each class c go to
    validation; both index arrays are in the same random order."""
    order = rng.permutation(len(y))
    by_class = order[np.argsort(y[order], kind="stable")]
    # compact class indices: the work follows the examples, not the largest label
    _, labels = np.unique(y[by_class], return_inverse=True)
    counts = np.bincount(labels)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(y)) - starts[labels]
    is_val = np.zeros(len(y), dtype=bool)
    is_val[by_class] = rank < np.round(val_fraction * counts[labels])
    return order[~is_val[order]], order[is_val[order]]


# ---------------------------------------------------------------------------
# Preprocessing


def _rows(X: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, D); also for N = 0 (an empty validation split)."""
    return X.reshape(len(X), math.prod(X.shape[1:]))


def _mean_and_var(X2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance of a 2-D array, accumulated in float64 by chunks."""
    n = len(X2)
    total = np.zeros(X2.shape[1])
    for start in range(0, n, _CHUNK):
        total += X2[start:start + _CHUNK].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(X2.shape[1])
    for start in range(0, n, _CHUNK):
        squares += np.square(X2[start:start + _CHUNK] - mean).sum(axis=0)
    return mean, squares / n


class MeanImage:
    """Subtract the training split's mean example (per pixel and channel)."""

    name = "mean_image"

    def fit(self, X):
        self.mean = _mean_and_var(_rows(X))[0].reshape(X.shape[1:]).astype(np.float32)
        self.state = {"mean": self.mean}
        return self

    def apply(self, X):
        return X - self.mean


class PerChannelMean:
    """Subtract one mean per channel of (N, C, H, W) data; for (N, D) data the
    single global mean (vectors are treated as one channel)."""

    name = "per_channel_mean"

    def fit(self, X):
        if X.ndim == 4:
            channels = X.transpose(1, 0, 2, 3).reshape(X.shape[1], -1)
            self.mean = channels.mean(axis=1, dtype=np.float64).reshape(1, -1, 1, 1)
        else:
            self.mean = np.asarray(X.mean(dtype=np.float64))
        self.mean = self.mean.astype(np.float32)
        self.state = {"mean": self.mean}
        return self

    def apply(self, X):
        return X - self.mean


class Standardize:
    """Zero mean, unit variance per feature; constant features are only centred."""

    name = "standardize"
    min_std = 1e-8

    def fit(self, X):
        mean, var = _mean_and_var(_rows(X))
        std = np.sqrt(var)
        std[std < self.min_std] = 1.0
        self.mean = mean.reshape(X.shape[1:]).astype(np.float32)
        self.std = std.reshape(X.shape[1:]).astype(np.float32)
        self.state = {"mean": self.mean, "std": self.std}
        return self

    def apply(self, X):
        return (X - self.mean) / self.std


class PCA:
    """Project the centred, flattened data onto the top principal components.

    ``components``: None keeps all of them (a rotation onto decorrelated axes),
    an integer k keeps k, a fraction 0 < f < 1 keeps the fewest that explain
    at least that share of the training variance. With ``whiten`` each
    component is divided by ``sqrt(eigenvalue + eps)`` (unit variance).
    Output: (N, k). Eigenvector signs are fixed (largest entry positive) so the
    result does not depend on the LAPACK build.
    """

    name = "pca"

    def __init__(self, components=None, eps=1e-5, whiten=False):
        self.components, self.eps, self.whiten = components, eps, whiten
        if whiten:
            self.name = "whiten"

    def fit(self, X):
        X2 = _rows(X)
        mean = _mean_and_var(X2)[0]
        cov = np.zeros((X2.shape[1], X2.shape[1]))
        for start in range(0, len(X2), _CHUNK):
            chunk = X2[start:start + _CHUNK] - mean
            cov += chunk.T @ chunk
        values, vectors = np.linalg.eigh(cov / len(X2))
        values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
        signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
        vectors = vectors * np.where(signs == 0, 1.0, signs)
        k = self._keep(values, X2.shape[1])
        basis = vectors[:, :k]
        if self.whiten:
            basis = basis / np.sqrt(values[:k] + self.eps)
        self.mean = mean.astype(np.float32)
        self.basis = basis.astype(np.float32)
        self.explained = float(values[:k].sum() / values.sum()) if values.sum() > 0 else 1.0
        self.state = {"mean": self.mean, "basis": self.basis, "eigenvalues": values[:k]}
        return self

    def _keep(self, values, features: int) -> int:
        if self.components is None:
            return features
        if 0 < self.components < 1:
            total = values.sum()
            if total <= 0:
                return 1
            return int(np.searchsorted(np.cumsum(values) / total, self.components - 1e-12) + 1)
        k = int(self.components)
        if k > features:
            raise DataError(f"{self.name}: components={k} but the data has only {features} features")
        return k

    def apply(self, X):
        return (_rows(X) - self.mean) @ self.basis


def make_step(name: str, options) -> object:
    """An unfitted preprocessing step from a recipe entry."""
    if name == "mean_image":
        return MeanImage()
    if name == "per_channel_mean":
        return PerChannelMean()
    if name == "standardize":
        return Standardize()
    if name in ("pca", "whiten"):
        return PCA(components=options.get("components"), eps=options.get("eps", 1e-5),
                   whiten=name == "whiten")
    raise DataError(f"unknown preprocessing step {name!r}")


# ---------------------------------------------------------------------------
# Loading


def _section(source_or_section, seed=None):
    from babysit.recipes import data_section

    return data_section(source_or_section, seed=seed)


def load_data(section, seed: int | None = None) -> Dataset:
    """Load, check, split and preprocess the data of a recipe's ``data`` section.

    ``section`` is a :class:`babysit.recipes.DataSection` (``recipe.data``), a
    ``data`` mapping, or a source string such as ``"builtin:digits"``; ``seed``
    replaces the section's seed when given. Raises DataError (naming the
    source and the problem) for missing files or keys, mismatched lengths,
    labels outside 0..C-1, NaN/inf, empty arrays and unreadable files.
    """
    section = _section(section, seed)
    raw = read_source(section)
    problems = find_problems(raw)
    if problems:
        raise DataError(f"{raw.source}: {problems[0]}"
                        + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
    return _prepare(raw, section)


def _prepare(raw: RawData, section) -> Dataset:
    """Split, limit, convert to float32 and preprocess checked raw arrays."""
    labels = {name: np.asarray(y).reshape(len(y)).astype(np.int64) for name, (_, y) in raw.splits.items()}
    examples = {name: _as_examples(np.asarray(X)) for name, (X, _) in raw.splits.items()}
    num_classes = raw.num_classes or 1 + max(int(y.max()) for y in labels.values())
    # index the stored arrays (often uint8) before converting: one float32 copy per split
    train_idx = np.arange(len(labels["train"]))
    if "val" not in raw.splits:
        rng = np.random.default_rng([section.seed, SPLIT_STREAM])
        train_idx, val_idx = stratified_split(labels["train"], section.val_fraction, rng)
        if len(train_idx) == 0:
            raise DataError(f"{raw.source}: val_fraction={section.val_fraction} leaves no training examples")
        examples["val"], labels["val"] = examples["train"][val_idx], labels["train"][val_idx]
    if section.limit is not None:
        train_idx = train_idx[:section.limit]
    if "val" not in raw.splits or section.limit is not None:
        examples["train"], labels["train"] = examples["train"][train_idx], labels["train"][train_idx]
    X = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in examples.items()}
    steps = []
    for name, options in section.preprocess:
        step = make_step(name, options).fit(X["train"])
        X = {split: np.ascontiguousarray(step.apply(value), dtype=np.float32) for split, value in X.items()}
        steps.append(step)
    return Dataset(X["train"], labels["train"], X["val"], labels["val"], X.get("test"), labels.get("test"),
                   input_shape=tuple(X["train"].shape[1:]), num_classes=int(num_classes),
                   source=raw.source, preprocess=steps, class_names=raw.class_names)


# ---------------------------------------------------------------------------
# Inspection


def array_stats(X, y) -> dict:
    """Plain-number summary of one split (see :func:`inspect_data` for the keys)."""
    X, y = np.asarray(X), np.asarray(y)
    out = {"count": int(len(X)) if X.ndim else 0, "X_shape": list(X.shape), "X_dtype": str(X.dtype),
           "y_shape": list(y.shape), "y_dtype": str(y.dtype), "mean": None, "std": None,
           "min": None, "max": None, "feature_mean_absmax": None, "nan": 0, "inf": 0,
           "label_min": None, "label_max": None, "non_integer_labels": 0, "class_counts": None}
    if X.dtype.kind in "biuf" and X.size and X.ndim >= 1:
        X2 = X.reshape(len(X), -1)
        out["nan"], out["inf"] = _count_nonfinite(X2)
        if out["nan"] or out["inf"]:
            X2 = np.where(np.isfinite(X2), X2, np.nan)
            finite = X2[np.isfinite(X2)]
            if finite.size:
                out.update(mean=float(finite.mean(dtype=np.float64)),
                           std=float(finite.std(dtype=np.float64)),
                           min=float(finite.min()), max=float(finite.max()))
        else:
            mean, var = _mean_and_var(X2)
            overall = float(mean.mean())
            # total variance = mean of per-feature variances + variance of the feature means
            std = math.sqrt(max(float(var.mean() + np.mean((mean - overall) ** 2)), 0.0))
            out.update(mean=overall, std=std, min=float(X2.min()), max=float(X2.max()),
                       feature_mean_absmax=float(np.abs(mean).max()))
    if y.dtype.kind in "biuf" and y.size:
        flat = y.ravel()
        if flat.dtype.kind == "f":
            finite = np.isfinite(flat)
            out["non_integer_labels"] = int(np.count_nonzero(
                ~finite | (np.floor(np.where(finite, flat, 0)) != flat)))
            flat = flat[finite]
        if flat.size:
            out["label_min"], out["label_max"] = _plain(flat.min()), _plain(flat.max())
        if out["non_integer_labels"] == 0 and flat.size:
            labels, counts = np.unique(flat.astype(np.int64), return_counts=True)
            out["class_counts"] = {int(k): int(c) for k, c in zip(labels, counts)}
    return out


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return int(value) if float(value).is_integer() else float(value)


def inspect_data(source_or_section, seed: int | None = None) -> dict:
    """Describe a data source for ``babysit data``, even when it is unusable.

    ``source_or_section``: a source string (``"builtin:digits"``, ``"x.h5"``,
    ``"cifar10:DIR"``), a ``data`` mapping or a recipe's DataSection. A source
    string that names no kind of source raises RecipeError; everything else
    is reported. Returns a plain dict::

        source       str, the source as described by its reader
        ok           bool, True when load_data accepts the data
        problems     [str], every reason it does not (same words as DataError)
        num_classes  int or None (declared, else max label + 1)
        class_names  [str] or None
        raw          {split: stats} as stored in the source (before splitting
                     and preprocessing), or None if it could not be read
        loaded       None unless ok, else {"splits": {split: stats}, "input_shape",
                     "val_from" ("source" | "split"), "preprocess": [step names]}
                     describing what the model sees (after split, limit, preprocess)

    ``stats`` per split: count, X_shape, X_dtype, y_shape, y_dtype; mean, std,
    min, max over the finite values of X (None if none); feature_mean_absmax
    (largest |mean| of a single feature: far from 0 relative to std means the
    data is not centred; None when X has NaN/inf); nan and inf (counts in X);
    label_min, label_max, non_integer_labels (count), class_counts
    ({label: count}, None when labels are not integers).
    """
    section = _section(source_or_section, seed)
    report = {"source": section.source, "ok": False, "problems": [], "num_classes": None,
              "class_names": None, "raw": None, "loaded": None}
    try:
        raw = read_source(section)
    except DataError as exc:
        report["problems"] = [str(exc)]
        return report
    report["source"] = raw.source
    report["class_names"] = list(raw.class_names) if raw.class_names else None
    report["raw"] = {split: array_stats(X, y) for split, (X, y) in raw.splits.items()}
    report["problems"] = find_problems(raw)
    label_max = [s["label_max"] for s in report["raw"].values() if isinstance(s["label_max"], int)]
    report["num_classes"] = raw.num_classes or (max(label_max) + 1 if label_max else None)
    if report["problems"]:
        return report
    try:
        data = _prepare(raw, section)
    except DataError as exc:
        report["problems"] = [str(exc)]
        return report
    report["ok"] = True
    report["num_classes"] = data.num_classes
    report["loaded"] = {"splits": {split: array_stats(X, y) for split, (X, y) in data.splits().items()},
                        "input_shape": list(data.input_shape),
                        "val_from": "source" if "val" in raw.splits else "split",
                        "preprocess": [step.name for step in data.preprocess]}
    return report


__all__ = ["Dataset", "RawData", "load_data", "inspect_data", "read_source", "find_problems",
           "stratified_split", "array_stats", "read_idx", "resolve_path", "make_step",
           "MeanImage", "PerChannelMean", "Standardize", "PCA"]
