"""Hostile data files: odd class names, ragged and inflating CIFAR-10 batches, forged
NumPy arrays in pickles, IDX headers beyond NumPy (attack report D3, D4, D5, D9).

Every hostile file is small and built in tmp_path; what it would expand to is
refused before it is allocated (the memory tests measure the peak).
"""

from __future__ import annotations

import gzip
import pickle
import struct
import subprocess
import sys
import tracemalloc

import h5py
import numpy as np
import pytest

from babysit.data import load_data, read_idx
from babysit.data.formats import MAX_CIFAR_IMAGES
from babysit.data.safe_pickle import load_data_pickle
from babysit.errors import BabysitError, DataError
from tests.helpers import one_error_line
from tests.test_untrusted_data import data_error, run, write_real_cifar

try:
    from numpy._core import multiarray, numeric
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray, numeric


class Reduce:
    """Pickles as ``function(*args)``, then ``__setstate__(state)`` when a state is given."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def cifar_with(tmp_path, name, obj, protocol=2):
    """A small valid CIFAR-10 directory whose file ``name`` holds ``obj`` instead."""
    directory = tmp_path / "cifar"
    write_real_cifar(directory)
    (directory / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    return f"cifar10:{directory}"


def peak_bytes(function):
    """The peak of memory allocated (NumPy's arrays included) while ``function`` runs."""
    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- D3: class names that are not UTF-8 load with a visible replacement ----------------------


def names_npz(path, names):
    rng = np.random.default_rng(0)
    np.savez(path, X_train=rng.normal(size=(30, 4)).astype("f4"), y_train=np.arange(30) % 3,
             class_names=names)
    return path


def test_non_utf8_class_names_in_an_npz_load_with_a_replacement_character(tmp_path):
    path = names_npz(tmp_path / "cn.npz", np.array([b"\xff", b"b", b"c"]))
    assert load_data({"source": str(path)}).class_names == ("\ufffd", "b", "c")
    result = run("data", path)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


def test_non_utf8_class_names_in_an_hdf5_attribute_load(tmp_path):
    path = tmp_path / "cn.h5"
    with h5py.File(path, "w") as handle:
        handle["X_train"] = np.random.default_rng(0).normal(size=(30, 4)).astype("f4")
        handle["y_train"] = np.arange(30) % 3
        handle.attrs["class_names"] = np.array([b"\xff", b"b", b"c"])
    assert load_data({"source": str(path)}).class_names == ("\ufffd", "b", "c")


def test_non_utf8_label_names_in_a_cifar_meta_load(tmp_path):
    source = cifar_with(tmp_path, "batches.meta", {b"label_names": [b"\xff"] * 10, b"\xfe": 1})
    assert load_data({"source": source}).class_names == ("\ufffd",) * 10


@pytest.mark.parametrize("names, words", [
    (5, "a list of names"), (b"abcdefghij", "a list of names"), ({b"a": 1}, "a list of names"),
    ([[b"a"]] * 10, "entry 0 is a list"), ([None] * 10, "entry 0 is a NoneType"),
    ([b"x" * 10] * 200_001, "200001 names"),
])
def test_label_names_that_are_not_names_are_a_data_error(tmp_path, names, words):
    result = run("data", cifar_with(tmp_path, "batches.meta", {b"label_names": names}))
    one_error_line(result, "batches.meta", "label_names", words)


def test_names_that_would_expand_beyond_bounds_are_refused_before_decoding(tmp_path):
    # 1,000 references to one 100 kB name: 100 MB of text from a 100 kB file
    source = cifar_with(tmp_path, "batches.meta", {b"label_names": [b"n" * 100_000] * 1000})
    assert peak_bytes(lambda: pytest.raises(DataError, load_data, {"source": source})) < 20e6
    assert "characters" in data_error(source)


# -- D4: ragged CIFAR-10 batches --------------------------------------------------------------


def test_ragged_cifar_rows_are_one_data_error(tmp_path):
    source = cifar_with(tmp_path, "data_batch_1", {b"data": [[0] * 3072, [0] * 5], b"labels": [0, 1]})
    message = data_error(source)
    assert "data_batch_1" in message and "row 1 has 5 values" in message and "3072" in message
    one_error_line(run("data", source), "data_batch_1", "row 1")


@pytest.mark.parametrize("labels, words", [
    ([[1], [1, 2]] * 5, "label 0 is a list"), ([b"1"] * 10, "label 0 is a bytes"), (7, "a list"),
])
def test_labels_that_are_not_a_flat_list_of_numbers_are_one_data_error(tmp_path, labels, words):
    source = cifar_with(tmp_path, "data_batch_2", {b"data": np.zeros((10, 3072), np.uint8),
                                                   b"labels": labels})
    one_error_line(run("data", source), "data_batch_2", words)


def test_cifar_rows_given_as_lists_still_load(tmp_path):
    rows = np.random.default_rng(0).integers(0, 256, (4, 3072))
    source = cifar_with(tmp_path, "data_batch_1", {b"data": rows.tolist(), b"labels": [1, 2, 3, 4]})
    data = load_data({"source": source, "val_fraction": 0})
    found = {row.tobytes() for row in data.X_train.reshape(len(data.X_train), -1)}
    assert {row.astype(np.float32).tobytes() for row in rows} <= found


# -- D5: batches that expand far beyond their file --------------------------------------------


def test_a_memo_reference_bomb_is_refused_before_anything_large_is_built(tmp_path):
    # one row and MAX_CIFAR_IMAGES more references to it: 120 kB of file, 184M values;
    # refused from the count of rows, before a single one is converted
    row = [0] * 3072
    source = cifar_with(tmp_path, "data_batch_1",
                        {b"data": [row] * (MAX_CIFAR_IMAGES + 1), b"labels": [0]})
    assert (tmp_path / "cifar" / "data_batch_1").stat().st_size < 200_000
    assert peak_bytes(lambda: pytest.raises(DataError, load_data, {"source": source})) < 50e6
    message = data_error(source)
    assert "data_batch_1" in message and f"{MAX_CIFAR_IMAGES + 1} images" in message


def test_rows_whose_values_are_lists_are_refused_without_expanding_them(tmp_path):
    # ten rows of 3,072 references to a 3,072-value list: 94M values if expanded
    row = [[0] * 3072] * 3072
    source = cifar_with(tmp_path, "data_batch_1", {b"data": [row] * 10, b"labels": [0] * 10})
    assert peak_bytes(lambda: pytest.raises(DataError, load_data, {"source": source})) < 50e6
    assert "row 0 holds a list" in data_error(source)


def test_labels_that_are_nested_references_are_refused_without_expanding_them(tmp_path):
    source = cifar_with(tmp_path, "data_batch_1", {b"data": np.zeros((10, 3072), np.uint8),
                                                   b"labels": [[[0] * 3072] * 3072] * 10})
    assert peak_bytes(lambda: pytest.raises(DataError, load_data, {"source": source})) < 50e6


def forged(path, obj):
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(pickle.UnpicklingError) as info:
        load_data_pickle(path)
    return str(info.value)


def test_an_array_cannot_be_declared_larger_than_its_bytes(tmp_path):
    empty = (np.ndarray, (0,), b"b")
    # _reconstruct is only ever asked for an empty array, which BUILD then fills
    assert "empty" in forged(tmp_path / "a", Reduce(multiarray._reconstruct,
                                                     (np.ndarray, (10**5, 3072), b"b")))
    # a state whose shape needs more bytes than it brings
    assert "bytes" in forged(tmp_path / "b", Reduce(multiarray._reconstruct, empty,
                                                     (1, (10**9,), np.dtype("u1"), False, b"x")))
    # ndarray(shape, dtype, buffer, offset, strides): a 3 GB view of one byte
    assert "ndarray" in forged(tmp_path / "c", Reduce(np.ndarray, ((10**6, 3072), np.dtype("u1"),
                                                                   b"x", 0, (0, 0))))
    # protocol 5's _frombuffer, with a shape its buffer cannot fill
    assert "bytes" in forged(tmp_path / "d", Reduce(numeric._frombuffer,
                                                     (b"x", np.dtype("u1"), (10**9,), "C")))


def test_object_and_structured_arrays_are_refused(tmp_path):
    empty = (np.ndarray, (0,), b"b")
    for dtype in ("O", "u1,u1", "(1000,1000)u1", "V8"):
        message = forged(tmp_path / "a", Reduce(multiarray._reconstruct, empty,
                                                (1, (1,), np.dtype(dtype), False, b"\0" * 8)))
        assert "dtype" in message, dtype
    assert "dtype" in forged(tmp_path / "s", Reduce(multiarray.scalar, (np.dtype("O"), [1])))
    # BUILD on an array from _frombuffer meets NumPy's __setstate__ with a stand-in dtype
    (tmp_path / "b").write_bytes(pickle.dumps(Reduce(numeric._frombuffer, (b"", np.dtype("u1"), (0,), "C"),
                                                     (1, (10**6,), np.dtype("O"), False, [1])), protocol=2))
    with pytest.raises(TypeError):
        load_data_pickle(tmp_path / "b")


def test_an_object_array_with_a_short_list_exits_2_instead_of_crashing(tmp_path):
    # NumPy's ndarray.__setstate__ reads past a short list for object arrays: a segfault
    empty = (np.ndarray, (0,), b"b")
    source = cifar_with(tmp_path, "data_batch_1", {b"data": Reduce(
        multiarray._reconstruct, empty, (1, (10**6,), np.dtype("O"), False, [1])), b"labels": [0]})
    result = subprocess.run([sys.executable, "-m", "babysit", "data", source],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: ") and "data_batch_1" in result.stderr


def test_shared_bytes_cannot_be_copied_into_many_arrays(tmp_path):
    # one 200 kB bytes object filled into 50 byte-swapped arrays: NumPy copies each (10 MB)
    blob = bytes(200_000)
    arrays = [Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                     (1, (100_000,), np.dtype(">i2"), False, blob)) for _ in range(50)]
    assert "more" in forged(tmp_path / "a", arrays)
    # one such array is fine: its bytes are in the file
    (tmp_path / "b").write_bytes(pickle.dumps(arrays[:1], protocol=2))
    (array,) = load_data_pickle(tmp_path / "b")
    assert array.shape == (100_000,) and array.dtype == np.int16 and not array.any()  # NumPy swaps


def test_real_arrays_of_every_protocol_still_load(tmp_path):
    values = {b"u8": np.arange(12, dtype=np.uint8).reshape(3, 4), b"f": np.linspace(0, 1, 5),
              b"be": np.arange(3, dtype=">i4"), b"s": np.array([b"ab", b"c"]), b"i": np.int64(7),
              b"fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3))}
    for protocol in (2, 3, 4, 5):
        (tmp_path / "p").write_bytes(pickle.dumps(values, protocol=protocol))
        loaded, expected = load_data_pickle(tmp_path / "p"), pickle.loads((tmp_path / "p").read_bytes())
        for key, value in expected.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert np.asarray(loaded[key]).dtype == value.dtype and isinstance(loaded[key], type(value))


# -- D9: IDX headers -----------------------------------------------------------------------


def mnist_with(tmp_path, images: bytes, suffix=""):
    directory = tmp_path / "mnist"
    directory.mkdir()
    opener = gzip.open if suffix else open
    with opener(directory / f"train-images-idx3-ubyte{suffix}", "wb") as handle:
        handle.write(images)
    labels = bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + bytes([0, 1])
    (directory / "train-labels-idx1-ubyte").write_bytes(labels)
    return f"mnist:{directory}"


def test_an_idx_header_with_255_dimensions_is_one_data_error(tmp_path):
    header = bytes([0, 0, 8, 255]) + struct.pack(">255I", *[1] * 255)
    source = mnist_with(tmp_path, header + b"\0")
    assert "255 dimensions" in data_error(source)
    one_error_line(run("data", source), "255 dimensions", "3")
    (tmp_path / "generic").write_bytes(header + b"\0")
    with pytest.raises(BabysitError, match="255 dimensions"):
        read_idx(tmp_path / "generic")


def test_an_idx_file_of_images_must_have_three_dimensions(tmp_path):
    source = mnist_with(tmp_path, bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + b"\0\0")
    assert "1 dimensions" in data_error(source) and "(N, rows, columns)" in data_error(source)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_an_idx_header_declaring_a_huge_size_is_refused_before_reading(tmp_path, suffix):
    # 2**32-1 images of 2**16 x 2**16: a header of 16 bytes and 12 bytes of data
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**16, 2**16)
    source = mnist_with(tmp_path, header + bytes(12), suffix)
    assert peak_bytes(lambda: pytest.raises(DataError, load_data, {"source": source})) < 20e6
    assert "the file has 12" in data_error(source) or "more than" in data_error(source)


def test_a_gzipped_idx_file_that_inflates_past_its_header_is_refused_early(tmp_path):
    # the header says 2 images of 2x2; the stream goes on with 50 MB of zeros
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 2, 2)
    source = mnist_with(tmp_path, header + bytes(50_000_000), ".gz")
    assert peak_bytes(lambda: pytest.raises(DataError, load_data, {"source": source})) < 20e6
    assert "more" in data_error(source)


@pytest.mark.parametrize("kind", ["h5", "npz"])
def test_a_compressed_array_that_cannot_fit_is_refused_from_its_header(tmp_path, monkeypatch, kind):
    # a small compressed file may declare far more than it holds (1.5 MB of gzip declared
    # 1.6 GB and was read in full); the machine's available memory is scaled down here
    import h5py

    from babysit.data import memory
    from babysit.data.formats import read_hdf5, read_npz

    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 2 ** 20)
    X, y = np.zeros((5000, 1000), np.float32), np.zeros(5000, np.int64)    # 20 MB + its copy
    path = tmp_path / f"bomb.{kind}"
    if kind == "h5":
        with h5py.File(path, "w") as f:
            f.create_dataset("X_train", data=X, compression="gzip")
            f["y_train"] = y
    else:
        np.savez_compressed(path, X_train=X, y_train=y)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(DataError, match=r"X_train has shape \(5000, 1000\): reading it needs 38.1 MiB"):
        (read_hdf5 if kind == "h5" else read_npz)(path, path.name)
    monkeypatch.setattr(memory, "available_memory", lambda: 100 * 2 ** 20)   # and it loads when it fits
    assert (read_hdf5 if kind == "h5" else read_npz)(path, path.name) is not None
