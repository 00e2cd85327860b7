"""Data files made by others: they never run code, hang or crash the loader.

Issue "Untrusted inputs and crash safety", items 1 (malicious CIFAR-10
pickles), 8 (HDF5 soft-link loops, links and storage in other files), 13
(label sets that are sparse or absurd for their count of examples) and 14
(a .npy given as a recipe; NumPy warnings on stderr).
"""

from __future__ import annotations

import copyreg
import functools
import io
import os
import pickle
import struct
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from babysit.cli import cli
from babysit.data import describe_file, inspect_data, load_data
from babysit.data.safe_pickle import ADMITTED_GLOBALS, RefusedPickle, load_data_pickle
from babysit.diagnostics.data_check import check_data
from babysit.errors import DataError
from tests.helpers import one_error_line


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})


def data_error(source, **section) -> str:
    with pytest.raises(DataError) as info:
        load_data({"source": str(source), **section})
    assert "\n" not in str(info.value)
    return str(info.value)


# -- 1. CIFAR-10 batches are loaded by a restricted unpickler ----------------------------


class Python2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), as cPickle did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str


def real_format_pickle(obj) -> bytes:
    """``obj`` pickled the way the real CIFAR-10 files are: protocol 2 by Python 2 cPickle,
    arrays through ``numpy.core.multiarray._reconstruct`` (NumPy 1's module name)."""
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_real_cifar(directory, per_batch=4, test=3, seed=0, dump=real_format_pickle):
    directory.mkdir()
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(1, 6):
        X = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches.append((X, labels))
        (directory / f"data_batch_{i}").write_bytes(dump({
            b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels, b"data": X,
            b"filenames": [f"img_{i}_{k}.png".encode() for k in range(per_batch)]}))
    X_test = rng.integers(0, 256, (test, 3072)).astype(np.uint8)
    (directory / "test_batch").write_bytes(dump({b"batch_label": b"testing batch 1 of 1",
                                                 b"labels": [1] * test, b"data": X_test}))
    (directory / "batches.meta").write_bytes(dump({
        b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": per_batch,
        b"num_vis": 3072}))
    return batches, X_test


def test_real_format_batches_use_only_numpys_array_globals(tmp_path):
    data = real_format_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})
    assert data.startswith(b"\x80\x02") and b"cnumpy.core.multiarray\n_reconstruct\n" in data
    assert b"cnumpy\nndarray\n" in data and b"cnumpy\ndtype\n" in data and b"_codecs" not in data


def check_cifar_loads(directory, batches, X_test):
    data = load_data({"source": f"cifar10:{directory}", "val_fraction": 0})
    X = np.concatenate([X for X, _ in batches]).reshape(-1, 3, 32, 32).astype(np.float32)
    y = np.concatenate([y for _, y in batches])
    lookup = {row.tobytes(): label for row, label in zip(X, y)}  # the split shuffles the order
    assert len(data.X_train) == len(lookup) == len(X)
    assert all(lookup[row.tobytes()] == label for row, label in zip(data.X_train, data.y_train))
    np.testing.assert_array_equal(data.X_test, X_test.reshape(-1, 3, 32, 32).astype(np.float32))
    assert data.class_names == tuple(f"c{i}" for i in range(10)) and data.num_classes == 10


def test_real_format_cifar_directory_loads(tmp_path):
    check_cifar_loads(tmp_path / "cifar", *write_real_cifar(tmp_path / "cifar"))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python3_pickles_of_every_protocol_load(tmp_path, protocol):
    # Python 3 writes bytes in protocol 2 through _codecs.encode(..., 'latin1'); protocol 5
    # writes arrays through numpy's _frombuffer; np.int64 labels through multiarray.scalar
    def dump(obj):
        if b"labels" in obj and b"filenames" in obj:
            obj = dict(obj, labels=[np.int64(v) for v in obj[b"labels"]], empty=b"")
        return pickle.dumps(obj, protocol=protocol)

    check_cifar_loads(tmp_path / "cifar", *write_real_cifar(tmp_path / "cifar", dump=dump))


class Reduce:
    """Pickles as ``function(*args)``: what a malicious pickle calls on load."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker):
    """(name, pickle bytes): each would create ``marker`` if loaded by pickle.load."""
    shell = f"touch {marker}"
    python = f"open({str(marker)!r}, 'w').close()"
    array = np.zeros((2, 3072), np.uint8)
    return [
        ("os.system, protocol 0", f"cos\nsystem\n(V{shell}\ntR.".encode()),
        ("os.system in a real-format batch", real_format_pickle(
            {b"data": array, b"labels": [0, 1], b"x": Reduce(os.system, shell)})),
        ("builtins.eval", pickle.dumps(Reduce(eval, python), protocol=2)),
        ("builtins.exec", pickle.dumps(Reduce(exec, python), protocol=4)),
        ("subprocess.call", pickle.dumps(Reduce(subprocess.call, ["touch", str(marker)]), protocol=4)),
        ("functools.partial", pickle.dumps(Reduce(functools.partial(open, str(marker), "w")),
                                           protocol=2)),
        ("after a valid array, protocol 5", pickle.dumps(
            {b"data": array, b"labels": [0, 1], b"x": Reduce(os.system, shell)}, protocol=5)),
    ]


@pytest.mark.parametrize("index", range(7))
def test_malicious_pickles_are_refused_before_anything_runs(tmp_path, index):
    marker = tmp_path / "pwned"
    name, payload = payloads(marker)[index]
    path = tmp_path / "evil"
    path.write_bytes(payload)
    with pytest.raises(RefusedPickle) as info:
        load_data_pickle(path)
    assert not marker.exists(), name
    assert info.value.name.split(".")[-1] in {"system", "eval", "exec", "call", "partial"}


@pytest.mark.parametrize("victim", ["data_batch_3", "test_batch", "batches.meta"])
def test_a_malicious_file_in_a_cifar_directory_runs_nothing_and_exits_2(tmp_path, victim):
    marker = tmp_path / "pwned"
    write_real_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / victim).write_bytes(payloads(marker)[1][1])
    result = run("data", f"cifar10:{tmp_path / 'cifar'}")
    line = one_error_line(result, victim, "not a plain data pickle", "system", "refused")
    assert not marker.exists() and "Traceback" not in result.output, line
    assert victim in data_error(f"cifar10:{tmp_path / 'cifar'}") and not marker.exists()


def test_only_numpys_array_builders_and_latin1_bytes_are_admitted():
    modules = {module for module, _ in ADMITTED_GLOBALS}
    assert modules == {"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                       "numpy.core.numeric", "numpy._core.numeric", "_codecs", "__builtin__",
                       "builtins"}
    assert ("builtins", "eval") not in ADMITTED_GLOBALS and ("numpy", "load") not in ADMITTED_GLOBALS
    encode = ADMITTED_GLOBALS[("_codecs", "encode")]
    assert encode("\xff", "latin1") == b"\xff"
    with pytest.raises(pickle.UnpicklingError):
        encode("x", "zlib_codec")
    with pytest.raises(pickle.UnpicklingError):
        ADMITTED_GLOBALS[("builtins", "bytes")](10 ** 12)


def test_persistent_ids_and_extension_codes_are_refused(tmp_path):
    (tmp_path / "persid").write_bytes(b"\x80\x02P0\n.")
    with pytest.raises(pickle.UnpicklingError):
        load_data_pickle(tmp_path / "persid")
    # an extension code resolves through find_class too, even when this process registered it
    copyreg.add_extension("posix", "system", 0x7A7A)
    try:
        (tmp_path / "ext").write_bytes(pickle.dumps(Reduce(os.system, "true"), protocol=2))
        assert b"\x83\x7a\x7a" in (tmp_path / "ext").read_bytes()  # EXT2, not GLOBAL
        with pytest.raises(RefusedPickle, match="posix.system"):
            load_data_pickle(tmp_path / "ext")
    finally:
        copyreg.remove_extension("posix", "system", 0x7A7A)


# -- 8. HDF5: soft-link loops, links and storage in other files -------------------------------


def write_h5(path, **entries):
    with h5py.File(path, "w") as handle:
        for key, value in entries.items():
            handle[key] = value
    return path


LABELS = np.arange(6) % 2


def test_a_soft_link_loop_is_a_data_error_not_a_traceback(tmp_path):
    path = write_h5(tmp_path / "loop.h5", X_train=h5py.SoftLink("/a"), a=h5py.SoftLink("/X_train"),
                    y_train=LABELS)
    assert "X_train is a soft link that loops" in data_error(path)
    one_error_line(run("data", path), "soft link that loops")
    report = inspect_data(str(path))
    assert not report.ok and "loops" in report.problems[0]


def test_soft_links_inside_the_file_are_followed(tmp_path):
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as handle:
        handle["store/X"] = np.ones((6, 2))
        handle["store/y"] = LABELS
        handle["X_train"] = h5py.SoftLink("store/X")        # relative to the root
        handle["y_train"] = h5py.SoftLink("/store/./y")
    data = load_data({"source": str(path), "val_fraction": 0})
    assert data.X_train.shape == (6, 2) and sorted(data.y_train) == sorted(LABELS)


def test_a_dangling_soft_link_is_named(tmp_path):
    path = write_h5(tmp_path / "dangling.h5", X_train=np.ones((6, 2)), y_train=h5py.SoftLink("/gone"))
    assert "y_train is a soft link to nothing" in data_error(path)


def test_links_to_other_files_are_refused_without_opening_them(tmp_path):
    write_h5(tmp_path / "other.h5", X=np.ones((6, 2)))
    path = write_h5(tmp_path / "link.h5", X_train=h5py.ExternalLink("other.h5", "/X"), y_train=LABELS)
    assert "X_train is a link to another file ('other.h5')" in data_error(path)
    # an external link on the way to the data: /X_train -> /ext/X with /ext in other.h5
    path = write_h5(tmp_path / "hop.h5", ext=h5py.ExternalLink("other.h5", "/"),
                    X_train=h5py.SoftLink("/ext/X"), y_train=LABELS)
    assert "X_train is a link to another file" in data_error(path)
    # names the loader does not read are never followed
    path = write_h5(tmp_path / "aside.h5", X_train=np.ones((6, 2)), y_train=LABELS,
                    notes=h5py.ExternalLink(str(tmp_path / "missing.h5"), "/"))
    assert load_data({"source": str(path)}).num_classes == 2


def test_external_raw_storage_is_refused(tmp_path):
    np.arange(12, dtype="<f8").tofile(tmp_path / "raw.bin")
    path = tmp_path / "external.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("X_train", shape=(6, 2), dtype="<f8",
                              external=[(str(tmp_path / "raw.bin"), 0, 96)])
        handle["y_train"] = LABELS
    message = data_error(path)
    assert "X_train keeps its values in other files (HDF5 external storage)" in message
    one_error_line(run("data", path), "external storage")


def test_virtual_datasets_are_refused(tmp_path):
    write_h5(tmp_path / "source.h5", X=np.ones((6, 2)))
    layout = h5py.VirtualLayout(shape=(6, 2), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp_path / "source.h5"), "X", shape=(6, 2))
    path = tmp_path / "virtual.h5"
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("X_train", layout)
        handle["y_train"] = LABELS
    assert "X_train keeps its values in other files (HDF5 virtual dataset)" in data_error(path)


# -- 13. label sets that are sparse or absurd for their count of examples ---------------------


def write_npz(path, y, n=None, **arrays):
    n = len(y) if n is None else n
    X = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    np.savez(path, X_train=X, y_train=np.asarray(y), **arrays)
    return path


def test_more_classes_than_examples_is_label_out_of_range(tmp_path):
    path = write_npz(tmp_path / "ids.npz", [0, 1, 2 ** 40] * 20)
    message = data_error(path)
    assert "the data has 1099511627777 classes (labels up to 1099511627776) but only 60 examples" \
        in message and "remap them to 0..2" in message
    result = run("data", path, "--json", "-")
    assert result.exit_code == 1
    import json
    doc = json.loads(result.stdout)
    (finding,) = [f for f in doc["findings"] if f["code"] == "label_out_of_range"]
    assert finding["severity"] == "fail" and finding["evidence"]["examples"] == 60
    assert finding["evidence"]["distinct_labels"] == 3
    # sanity-loss stops at the data and never advises an absurd last layer
    sanity = run("sanity-loss", "--set", f"data.source={path}", "--quiet")
    line = one_error_line(sanity, "1099511627777 classes")
    assert "out: 1099511627777" not in line


def test_a_declared_class_count_beyond_the_examples_is_refused(tmp_path):
    path = write_npz(tmp_path / "declared.npz", np.arange(40) % 4, num_classes=np.array(2 ** 40))
    assert "the data has 1099511627776 classes (declared num_classes) but only 40 examples" \
        in data_error(path)


def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


def test_sparse_labels_warn_and_strict_fails(tmp_path):
    # MNIST labels 200..209: 210 classes, 200 without an example
    directory = tmp_path / "mnist"
    directory.mkdir()
    rng = np.random.default_rng(0)
    (directory / "train-images-idx3-ubyte").write_bytes(idx(rng.integers(0, 256, (300, 28, 28))))
    (directory / "train-labels-idx1-ubyte").write_bytes(idx(200 + np.arange(300) % 10))
    assert load_data(f"mnist:{directory}").num_classes == 210  # usable, if wasteful
    result = run("data", f"mnist:{directory}", "--json", "-")
    assert result.exit_code == 0, result.output
    import json
    (finding,) = json.loads(result.stdout)["findings"][:1]
    assert finding["code"] == "label_out_of_range" and finding["severity"] == "warn"
    assert "10 distinct labels make 210 classes (labels up to 209), 200 of them without" \
        in finding["message"]
    assert run("data", f"mnist:{directory}", "--strict", "--quiet").exit_code == 1


def test_labels_with_a_few_missing_classes_are_fine(tmp_path):
    path = write_npz(tmp_path / "gaps.npz", [1, 2, 3, 5] * 10)  # 6 classes, 4 present: not sparse
    report = inspect_data(str(path))
    assert report.ok and report.num_classes == 6
    assert [f.code for f in check_data(report).findings] == []


# -- 14. a .npy given as a recipe; NumPy warnings -----------------------------------------------


def test_a_npy_given_to_babysit_data_says_what_it_is_and_what_is_accepted(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((3, 2)))
    line = one_error_line(run("data", tmp_path / "X.npy"), "is a NumPy .npy file",
                          "not a recipe or a data source", "np.savez", "cifar10:DIR", ".npz")
    assert "utf-8" not in line


def test_a_npy_given_as_a_recipe_says_what_it_is(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((3, 2)))
    line = one_error_line(run("sanity-loss", tmp_path / "X.npy"), "is a NumPy .npy file",
                          "not a recipe", "np.savez")
    assert "codec" not in line


def test_other_data_files_are_told_apart(tmp_path):
    write_h5(tmp_path / "data.bin", X_train=np.ones((6, 2)), y_train=LABELS)
    assert describe_file(tmp_path / "data.bin")[0] == "an HDF5 file"
    one_error_line(run("data", tmp_path / "data.bin"), "is an HDF5 file", ".h5")
    (tmp_path / "batch").write_bytes(pickle.dumps({}, protocol=2))
    assert "cifar10:DIR" in describe_file(tmp_path / "batch")[1]
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")  # not a data file: the codec error stays
    one_error_line(run("sanity-loss", tmp_path / "latin1.yaml"), "cannot read the recipe")


def extreme_npz(path):
    X = np.random.default_rng(0).standard_normal((40, 4))
    X[0, 0], X[1, 1] = 1e308, -1e308
    np.savez(path, X_train=X, y_train=np.arange(40) % 2)
    return path


def test_values_beyond_float32_are_reported_without_warnings(tmp_path):
    path = extreme_npz(tmp_path / "extreme.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = data_error(path)
        report = inspect_data(str(path))
        result = check_data(report)
    assert "X_train has 2 values beyond float32's range" in message
    assert not report.ok and report.raw["train"].max == 1e308
    (finding,) = result.findings
    assert finding.code == "data_not_finite" and finding.severity == "fail"
    assert "beyond float32's range" in finding.message


def test_the_cli_prints_no_numpy_warnings(tmp_path):
    path = extreme_npz(tmp_path / "extreme.npz")
    done = subprocess.run([sys.executable, "-m", "babysit", "data", str(path), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Warning" not in done.stderr, done.stderr


def test_preprocessing_that_overflows_float32_is_a_data_error(tmp_path):
    X = np.zeros((40, 2), np.float32)
    X[:30, 0], X[30:, 0] = 3e38, -3e38  # mean 1.5e38: -3e38 - 1.5e38 overflows
    np.savez(tmp_path / "edge.npz", X_train=X, y_train=np.arange(40) % 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = data_error(tmp_path / "edge.npz", preprocess=["mean_image"], val_fraction=0)
        report = inspect_data({"source": str(tmp_path / "edge.npz"), "preprocess": ["mean_image"]})
    assert "preprocessing (mean_image) turned X_train into NaN/inf" in message
    assert not report.ok and "NaN/inf" in report.problems[0]


def test_float_labels_beyond_int64_are_inspected_without_warnings(tmp_path):
    path = write_npz(tmp_path / "huge_labels.npz", [0.0, 1.0, 1e300] * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = inspect_data(str(path))
    assert not report.ok and "but only 30 examples" in report.problems[0]
    assert max(report.raw["train"].class_counts) == int(1e300)
