"""Data sources, checks, splits, preprocessing and inspect_data."""

import gzip
import json
import pickle
import struct

import h5py
import numpy as np
import pytest

from babysit.data import (PCA, inspect_data, load_data, read_idx, stratified_split)
from babysit.errors import DataError, RecipeError
from babysit.recipes import data_section


def small_images(n=30, classes=3, shape=(1, 4, 4), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 255, size=(n,) + shape).astype(np.uint8)
    y = np.arange(n) % classes
    return X, y


def write_h5(path, **arrays):
    attrs = arrays.pop("attrs", {})
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle[key] = value
        handle.attrs.update(attrs)
    return path


def load(source, **section):
    return load_data({"source": str(source), **section})


def data_error(source, **section) -> str:
    with pytest.raises(DataError) as info:
        load(source, **section)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- formats ----------------------------------------------------------------


def test_hdf5_round_trip_with_all_splits(tmp_path):
    X, y = small_images(30)
    path = write_h5(tmp_path / "d.h5", X_train=X[:20], y_train=y[:20], X_val=X[20:25], y_val=y[20:25],
                    X_test=X[25:], y_test=y[25:], attrs={"class_names": ["a", "b", "c"]})
    data = load(path)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.X_train, X[:20].astype(np.float32))
    np.testing.assert_array_equal(data.y_val, y[20:25])
    np.testing.assert_array_equal(data.X_test, X[25:].astype(np.float32))
    assert data.input_shape == (1, 4, 4) and data.num_classes == 3
    assert data.class_names == ("a", "b", "c") and data.source == str(path)


def test_hdf5_num_classes_attribute(tmp_path):
    X, y = small_images(20, classes=3)
    assert load(write_h5(tmp_path / "d.h5", X_train=X, y_train=y, attrs={"num_classes": 5})).num_classes == 5
    message = data_error(write_h5(tmp_path / "e.h5", X_train=X, y_train=y, attrs={"num_classes": 2}))
    assert "y_train has labels outside 0..1: maximum 2" in message


def test_npz_vectors_split_from_train(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 6)).astype(np.float64)
    y = np.repeat(np.arange(5), 10)
    np.savez(tmp_path / "d.npz", X_train=X, y_train=y)
    data = load(tmp_path / "d.npz", val_fraction=0.2)
    assert data.X_train.shape == (40, 6) and data.X_val.shape == (10, 6) and data.X_test is None
    assert np.bincount(data.y_val).tolist() == [2] * 5  # stratified
    rows = {tuple(r) for r in np.concatenate([data.X_train, data.X_val])}
    assert rows == {tuple(r) for r in X.astype(np.float32)}


def test_three_d_images_get_a_channel(tmp_path):
    X = np.zeros((10, 5, 5), np.uint8)
    np.savez(tmp_path / "d.npz", X_train=X, y_train=np.arange(10) % 2)
    assert load(tmp_path / "d.npz").input_shape == (1, 5, 5)


def write_cifar(directory, per_batch=4, test=3, seed=0):
    directory.mkdir()
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(1, 6):
        X = rng.integers(0, 255, (per_batch, 3072)).astype(np.uint8)
        labels = list(rng.integers(0, 10, per_batch))
        batches.append((X, labels))
        with open(directory / f"data_batch_{i}", "wb") as handle:
            pickle.dump({b"data": X, b"labels": labels, b"batch_label": b"x"}, handle)
    X_test = rng.integers(0, 255, (test, 3072)).astype(np.uint8)
    with open(directory / "test_batch", "wb") as handle:
        pickle.dump({b"data": X_test, b"labels": [1] * test}, handle)
    with open(directory / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle)
    return batches, X_test


def test_cifar10_pickle_directory(tmp_path):
    batches, X_test = write_cifar(tmp_path / "cifar", per_batch=4)
    data = load(f"cifar10:{tmp_path / 'cifar'}", val_fraction=0.25)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert len(data.X_train) + len(data.X_val) == 20
    np.testing.assert_array_equal(data.X_test, X_test.reshape(-1, 3, 32, 32).astype(np.float32))
    assert data.class_names[:2] == ("c0", "c1")
    # each image keeps its label and its (channel, row, column) layout
    all_X = np.concatenate([X for X, _ in batches]).reshape(-1, 3, 32, 32)
    all_y = np.concatenate([labels for _, labels in batches])
    lookup = {row.tobytes(): label for row, label in zip(all_X.astype(np.float32), all_y)}
    for X, y in ((data.X_train, data.y_train), (data.X_val, data.y_val)):
        assert all(lookup[row.tobytes()] == label for row, label in zip(X, y))


def test_cifar10_missing_batches(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "data_batch_1").write_bytes(b"")
    message = data_error(f"cifar10:{tmp_path / 'c'}")
    assert "missing data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch" in message
    assert "data directory" in data_error(f"cifar10:{tmp_path / 'nope'}")


def test_cifar10_corrupt_batch(tmp_path):
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").write_bytes(b"not a pickle")
    assert "cannot read data_batch_3" in data_error(f"cifar10:{tmp_path / 'c'}")


def idx_bytes(array: np.ndarray, code=0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (12, 28, 28)).astype(np.uint8)
    y = (np.arange(12) % 10).astype(np.uint8)
    X_test, y_test = X[:4], y[:4]
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    for name, array in [("train-images-idx3-ubyte", X), ("train-labels-idx1-ubyte", y),
                        ("t10k-images-idx3-ubyte", X_test), ("t10k-labels-idx1-ubyte", y_test)]:
        with opener(tmp_path / (name + suffix), "wb") as handle:
            handle.write(idx_bytes(array))
    data = load(f"mnist:{tmp_path}", val_fraction=0.25)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.X_train) + len(data.X_val) == 12
    np.testing.assert_array_equal(data.X_test[:, 0], X_test.astype(np.float32))
    np.testing.assert_array_equal(data.y_test, y_test)


def test_idx_parsing_types_and_errors(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    (tmp_path / "a").write_bytes(idx_bytes(values, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), values)
    (tmp_path / "b").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(idx_bytes(values.astype(np.uint8))[:-1])
    with pytest.raises(DataError, match=r"header says \(2, 3\) \(6 bytes of data\) but the file has 5"):
        read_idx(tmp_path / "c")
    (tmp_path / "d.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "d.gz")


def test_mnist_missing_labels(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((2, 3, 3), np.uint8)))
    assert "missing train-labels-idx1-ubyte[.gz]" in data_error(f"mnist:{tmp_path}")


# -- builtins ---------------------------------------------------------------


def test_digits_builtin_is_the_uci_set():
    data = load_data("builtin:digits")
    total = len(data.X_train) + len(data.X_val)
    assert total == 1797 and data.num_classes == 10 and data.input_shape == (1, 8, 8)
    assert data.X_train.min() == 0 and data.X_train.max() == 16
    all_y = np.concatenate([data.y_train, data.y_val])
    assert np.bincount(all_y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert abs(len(data.X_val) - 0.2 * 1797) <= 10


def test_split_is_deterministic_per_seed():
    a, b = load_data("builtin:digits", seed=3), load_data("builtin:digits", seed=3)
    c = load_data("builtin:digits", seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert not np.array_equal(a.X_train, c.X_train)


def test_stratified_split_counts():
    y = np.array([0] * 10 + [1] * 30 + [2] * 5)
    train, val = stratified_split(y, 0.2, np.random.default_rng(0))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(45))
    assert np.bincount(y[val]).tolist() == [2, 6, 1]
    assert len(np.intersect1d(train, val)) == 0


def test_spiral_and_gaussian_builtins():
    spiral = load_data({"source": {"builtin": "spiral", "n": 300, "classes": 3}, "val_fraction": 0})
    assert spiral.X_train.shape == (300, 2) and spiral.num_classes == 3 and len(spiral.X_val) == 0
    assert np.bincount(spiral.y_train).tolist() == [100, 100, 100]
    radius = np.linalg.norm(spiral.X_train, axis=1)
    assert radius.max() <= 1.0 + 1e-6 and radius.min() == 0
    again = load_data({"source": {"builtin": "spiral"}, "val_fraction": 0})
    np.testing.assert_array_equal(np.sort(spiral.X_train, axis=0), np.sort(again.X_train, axis=0))
    other_seed = load_data({"source": {"builtin": "spiral"}, "val_fraction": 0}, seed=1)
    assert not np.array_equal(np.sort(spiral.X_train, axis=0), np.sort(other_seed.X_train, axis=0))
    gauss = load_data({"source": "builtin:gaussian", "val_fraction": 0})
    assert gauss.X_train.shape == (1000, 500) and gauss.num_classes == 10
    assert abs(gauss.X_train.mean()) < 0.01 and abs(gauss.X_train.std() - 1) < 0.01


def test_limit_keeps_first_training_examples():
    full = load_data("builtin:digits")
    limited = load_data({"source": "builtin:digits", "limit": 20})
    np.testing.assert_array_equal(limited.X_train, full.X_train[:20])
    np.testing.assert_array_equal(limited.X_val, full.X_val)


def test_relative_paths_cwd_first_then_recipe_dir(tmp_path, monkeypatch):
    X, y = small_images(10, classes=2)
    (tmp_path / "recipe_dir").mkdir()
    (tmp_path / "cwd").mkdir()
    write_h5(tmp_path / "recipe_dir" / "d.h5", X_train=X, y_train=y)
    monkeypatch.chdir(tmp_path / "cwd")
    section = data_section("d.h5", base_dir=str(tmp_path / "recipe_dir"))
    assert load_data(section).source == "d.h5"
    write_h5(tmp_path / "cwd" / "d.h5", X_train=X[:6], y_train=y[:6])
    assert len(load_data(section, seed=0).y_train) + len(load_data(section).y_val) == 6
    message = data_error("missing.h5")
    assert "data file 'missing.h5' not found" in message and str(tmp_path / "cwd") in message


# -- bad data ---------------------------------------------------------------


@pytest.mark.parametrize("arrays, expected", [
    ({"X_train": np.zeros((4, 3))}, "missing keys y_train (found: X_train)"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.zeros(4, int), "X_val": np.zeros((2, 3))},
     "missing keys y_val"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 1])},
     "X_train has 4 examples but y_train has 3 labels"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.array([0, 1, -1, 1])},
     "y_train has labels outside 0..C-1: minimum -1"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 0.5, 1])},
     "y_train has 1 non-integer labels"),
    ({"X_train": np.array([[0, np.nan], [np.inf, 1], [0, 0]]), "y_train": np.array([0, 1, 1])},
     "X_train contains 1 NaN and 1 inf values"),
    ({"X_train": np.zeros((0, 3)), "y_train": np.zeros(0, int)}, "X_train is empty (shape (0, 3))"),
    ({"X_train": np.zeros((4,)), "y_train": np.array([0, 1, 0, 1])},
     "X_train must be 2-D (N, D) or 4-D (N, C, H, W), got shape (4,)"),
    ({"X_train": np.zeros((4, 1, 2, 2, 2)), "y_train": np.array([0, 1, 0, 1])},
     "X_train must be 2-D (N, D) or 4-D (N, C, H, W), got shape (4, 1, 2, 2, 2)"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.eye(4)[:, :2]}, "one-hot labels?"),
    ({"X_train": np.array([["a"], ["b"]]), "y_train": np.array([0, 1])}, "X_train has dtype <U1"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.array(["a", "b", "a", "b"])}, "y_train has dtype <U1"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 0, 1]),
      "X_val": np.zeros((2, 4)), "y_val": np.array([0, 1])},
     "X_val has per-example shape (4,) but X_train has (3,)"),
    ({"X_train": np.zeros((4, 3)), "y_train": np.zeros(4, int)}, "the labels name only one class"),
])
def test_bad_arrays(tmp_path, arrays, expected):
    np.savez(tmp_path / "bad.npz", **arrays)
    message = data_error(tmp_path / "bad.npz")
    assert message.startswith(f"{tmp_path / 'bad.npz'}: ") and expected in message
    if all(array.dtype.kind != "U" for array in arrays.values()):  # HDF5 stores no unicode arrays
        write_h5(tmp_path / "bad.h5", **arrays)
        assert expected in data_error(tmp_path / "bad.h5")


def test_corrupt_files(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"this is not hdf5")
    assert "cannot read the HDF5 file" in data_error(tmp_path / "x.h5")
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 truncated zip")
    assert "cannot read the NPZ file" in data_error(tmp_path / "x.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    assert "not an NPZ archive" in data_error(tmp_path / "single.npz")
    np.savez(tmp_path / "obj.npz", X_train=np.array([{}, 1], dtype=object), y_train=np.zeros(2))
    assert "cannot read the NPZ file" in data_error(tmp_path / "obj.npz")
    (tmp_path / "text.npz").write_bytes(b"not a zip at all")  # np.load would blame pickled data
    assert data_error(tmp_path / "text.npz").endswith("not an NPZ file (an NPZ is a zip archive "
                                                      "written by np.savez)")


def test_a_group_where_an_array_belongs(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as handle:
        handle["X_train"] = np.zeros((4, 2))
        handle.create_group("y_train")
    assert "y_train is an HDF5 group, not a dataset" in data_error(tmp_path / "g.h5")


def test_sparse_huge_labels_split_in_time_of_the_examples():
    # labels up to 9e8: the split must not allocate per possible class
    y = np.array([0, 900_000_000] * 10)
    train, val = stratified_split(y, 0.2, np.random.default_rng(0))
    assert sorted(y[val].tolist()) == [0, 0, 900_000_000, 900_000_000] and len(train) == 16


def test_val_fraction_leaving_nothing(tmp_path):
    np.savez(tmp_path / "d.npz", X_train=np.zeros((2, 2)), y_train=np.array([0, 1]))
    assert "leaves no training examples" in data_error(tmp_path / "d.npz", val_fraction=0.9)


def test_bad_source_spec_is_a_recipe_error():
    with pytest.raises(RecipeError):
        load_data("data.csv")


# -- preprocessing ----------------------------------------------------------


def shifted_h5(tmp_path, shape=(2, 3, 3)):
    """Train around 0..1, val far away: statistics fitted on val would show."""
    rng = np.random.default_rng(0)
    X_train = rng.random((40,) + shape) * np.arange(1, shape[0] + 1).reshape((-1,) + (1,) * (len(shape) - 1))
    X_val = X_train[:10] + 100.0
    y = np.arange(40) % 2
    return write_h5(tmp_path / "s.h5", X_train=X_train, y_train=y, X_val=X_val, y_val=y[:10],
                    X_test=X_train[:5] * 3, y_test=y[:5]), X_train, X_val


@pytest.mark.parametrize("step", ["mean_image", "per_channel_mean", "standardize"])
def test_centering_steps_use_train_statistics_only(tmp_path, step):
    path, X_train, X_val = shifted_h5(tmp_path)
    data = load(path, preprocess=[step])
    assert abs(data.X_train.mean()) < 1e-5
    assert data.X_val.mean() > 50  # val shifted by +100 stays shifted
    fitted = data.preprocess[0]
    if step == "mean_image":
        np.testing.assert_allclose(fitted.mean, X_train.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(data.X_val, X_val - X_train.mean(axis=0), rtol=1e-5)
    if step == "per_channel_mean":
        np.testing.assert_allclose(fitted.mean.ravel(), X_train.mean(axis=(0, 2, 3)), rtol=1e-6)
    if step == "standardize":
        np.testing.assert_allclose(data.X_train.std(axis=0), 1.0, rtol=1e-4)
        np.testing.assert_allclose(fitted.std, X_train.std(axis=0), rtol=1e-5)


def test_per_channel_mean_on_vectors_is_one_global_mean(tmp_path):
    np.savez(tmp_path / "v.npz", X_train=np.array([[1.0, 3.0], [5.0, 7.0]]), y_train=np.array([0, 1]))
    data = load(tmp_path / "v.npz", val_fraction=0, preprocess=["per_channel_mean"])
    np.testing.assert_array_equal(data.X_train.sum(), 0.0)
    assert float(data.preprocess[0].mean) == 4.0


def test_standardize_guards_constant_features(tmp_path):
    X = np.ones((10, 3))
    X[:, 1] = np.arange(10)
    np.savez(tmp_path / "c.npz", X_train=X, y_train=np.arange(10) % 2)
    data = load(tmp_path / "c.npz", val_fraction=0, preprocess=["standardize"])
    assert np.all(np.isfinite(data.X_train)) and np.all(data.X_train[:, 0] == 0)


def test_pca_and_whiten_fit_on_train(tmp_path):
    path, X_train, X_val = shifted_h5(tmp_path)
    data = load(path, preprocess=[{"pca": {"components": 5}}])
    assert data.input_shape == (5,) and data.X_val.shape == (10, 5) and data.X_test.shape == (5, 5)
    np.testing.assert_allclose(data.preprocess[0].mean, X_train.reshape(40, -1).mean(0), rtol=1e-5)
    variances = data.X_train.var(axis=0)
    assert np.all(np.diff(variances) <= 1e-6)  # components sorted by variance
    white = load(path, preprocess=["whiten"])
    cov = np.cov(white.X_train.T, bias=True)
    np.testing.assert_allclose(cov, np.eye(18), atol=1e-3)
    assert np.abs(white.X_val.mean(axis=0)).max() > 10  # val not re-centred on itself


def test_pca_variance_fraction_and_limits(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4)) * np.array([10.0, 1.0, 0.1, 0.01])
    np.savez(tmp_path / "p.npz", X_train=X, y_train=np.arange(200) % 2)
    data = load(tmp_path / "p.npz", val_fraction=0, preprocess=[{"pca": {"components": 0.9}}])
    assert data.input_shape == (1,) and data.preprocess[0].explained > 0.9
    assert load(tmp_path / "p.npz", preprocess=["pca"]).input_shape == (4,)
    assert "components=9 but the data has only 4 features" in data_error(
        tmp_path / "p.npz", preprocess=[{"pca": {"components": 9}}])
    signs = PCA().fit(X.astype(np.float32)).basis
    assert np.all(signs[np.argmax(np.abs(signs), axis=0), range(4)] > 0)


def test_preprocess_in_order(tmp_path):
    path, _, _ = shifted_h5(tmp_path)
    data = load(path, preprocess=["mean_image", {"pca": {"components": 3}}, "standardize"])
    assert [step.name for step in data.preprocess] == ["mean_image", "pca", "standardize"]
    np.testing.assert_allclose(data.X_train.std(axis=0), 1.0, rtol=1e-4)


# -- inspect_data -----------------------------------------------------------


def test_inspect_good_data():
    report = inspect_data("builtin:digits")
    json.dumps(report.to_dict())
    assert report.ok and report.problems == () and report.num_classes == 10
    raw = report.raw["train"]
    assert raw.count == 1797 and raw.X_shape == (1797, 1, 8, 8) and raw.X_dtype == "uint8"
    assert raw.min == 0 and raw.max == 16 and raw.nan == 0 and raw.label_max == 9
    assert sum(raw.class_counts.values()) == 1797
    assert raw.feature_mean_absmax > raw.std  # raw pixels are not centred
    loaded = report.loaded
    assert loaded.val_from == "split" and loaded.input_shape == (1, 8, 8)
    assert loaded.splits["train"].count + loaded.splits["val"].count == 1797


def test_inspect_reports_centring_after_preprocessing():
    report = inspect_data({"source": "builtin:digits", "preprocess": ["mean_image"]})
    train = report.loaded.splits["train"]
    assert report.loaded.preprocess == ("mean_image",)
    assert abs(train.mean) < 1e-5 and train.feature_mean_absmax < 1e-4
    np.testing.assert_allclose(train.std, np.std(load_data({"source": "builtin:digits", "preprocess":
                                                               ["mean_image"]}).X_train), rtol=1e-5)


def test_inspect_bad_data_reports_instead_of_raising(tmp_path):
    X = np.array([[0.0, np.nan], [np.inf, 1.0], [2.0, 3.0]])
    np.savez(tmp_path / "b.npz", X_train=X, y_train=np.array([0, -1, 2.5]), X_test=np.zeros((2, 2)),
             y_test=np.array([0, 1]))
    report = inspect_data(str(tmp_path / "b.npz"))
    json.dumps(report.to_dict())
    assert not report.ok and report.loaded is None
    problems = " | ".join(report.problems)
    assert "1 NaN and 1 inf" in problems and "non-integer labels" in problems
    train = report.raw["train"]
    assert train.nan == 1 and train.inf == 1
    assert train.mean == pytest.approx(1.5) and train.min == 0 and train.max == 3
    assert train.non_integer_labels == 1 and train.class_counts is None
    assert train.label_min == -1 and train.label_max == 2.5
    assert report.raw["test"].class_counts == {0: 1, 1: 1}


def test_inspect_negative_labels_and_missing_file(tmp_path):
    np.savez(tmp_path / "n.npz", X_train=np.zeros((3, 2)), y_train=np.array([0, -1, 1]))
    report = inspect_data(str(tmp_path / "n.npz"))
    assert report.raw["train"].label_min == -1 and "minimum -1" in report.problems[0]
    missing = inspect_data(str(tmp_path / "none.h5"))
    assert missing.to_dict() == {"source": str(tmp_path / "none.h5"), "ok": False, "num_classes": None,
                                 "class_names": None, "raw": None, "loaded": None,
                                 "problems": [missing.problems[0]]}
    assert "not found" in missing.problems[0]
    mismatched = tmp_path / "m.npz"
    np.savez(mismatched, X_train=np.zeros((3, 2)), y_train=np.array([0, 1]))
    assert "X_train has 3 examples but y_train has 2 labels" in inspect_data(str(mismatched)).problems



def test_float32_range_and_finiteness_helpers_handle_every_shape():
    from babysit.data.arrays import FLOAT32_MAX, all_finite, count_beyond

    X = np.array([[1e39, -1e39], [np.inf, 1.0], [np.nan, 3e38]])
    assert count_beyond(X, FLOAT32_MAX) == 2  # inf is counted as non-finite, not here
    assert count_beyond(np.full((2, 2), 3e38, np.float32), FLOAT32_MAX) == 0  # float32 cannot exceed it
    assert count_beyond(np.array([2 ** 62]), FLOAT32_MAX) == 0
    assert all_finite(np.zeros((0, 3), np.float32)) and all_finite(np.float32(1.0))
    assert not all_finite(X) and all_finite(X[:1])
