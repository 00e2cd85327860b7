"""The data package's registries (sources, builtins, preprocessing steps), the
data-side recipe schema they define, its random streams and its report form."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import babysit.data as data
from babysit import recipes
from babysit.data import (BUILTIN_SETS, BUILTINS, BUNDLED_DIGITS, PCA, PREPROCESS, STEPS, Whiten,
                          inspect_data, load_data, make_step, stratified_split)
from babysit.data.builtins import read_builtin, spiral
from babysit.errors import DataError
from babysit.streams import STREAMS
from babysit.validation import Rule


# -- registries and the data-side recipe schema -------------------------------

SAMPLE_VALUES = [None, -1, 0, 0.5, 1, 1.0, 2, 2.5, 20, 1e3, float("nan"), True, "3"]


def rule_signature(rule):
    """What a Rule does, comparable across Rule classes: its words and its verdict on samples."""
    as_validation = Rule(rule.phrase, rule.test, rule.integer, rule.nullable)
    return rule.phrase, rule.integer, rule.nullable, [as_validation.accepts(v) for v in SAMPLE_VALUES]


def table_signature(table):
    return {name: {option: (default, rule_signature(rule)) for option, (default, rule) in options.items()}
            for name, options in table.items()}


def test_recipe_schema_agrees_with_the_data_registries():
    # the recipe side must say what the data package does (until it imports these tables)
    assert table_signature(recipes.BUILTINS) == table_signature(data.BUILTINS)
    assert table_signature(recipes.PREPROCESS) == table_signature(data.PREPROCESS)
    assert recipes.SOURCE_PREFIXES == data.SOURCE_PREFIXES
    assert (recipes.HDF5_SUFFIXES, recipes.NPZ_SUFFIXES) == (data.HDF5_SUFFIXES, data.NPZ_SUFFIXES)
    for source in ["builtin:spiral", "cifar10:d", "mnist:d", "x.h5", "X.HDF5", "y.hdf", "z.npz",
                   "builtin:", "mnist:", "data.csv", "cifar:x"]:
        outcomes = []
        for source_kind in (recipes.source_kind, data.source_kind):
            try:
                outcomes.append(source_kind(source))
            except ValueError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], source


def test_preprocess_schema_is_derived_from_the_step_registry():
    assert list(STEPS) == ["mean_image", "per_channel_mean", "standardize", "pca", "whiten"]
    assert PREPROCESS == {name: dict(step.OPTIONS) for name, step in STEPS.items()}
    for name, step in STEPS.items():
        assert step.name == name
        assert all(isinstance(rule, Rule) for _, rule in step.OPTIONS.values())
        built = make_step(name, {})
        assert isinstance(built, step) and built.name == name
    white = make_step("whiten", {"components": 3, "eps": 0.1})
    assert isinstance(white, Whiten) and white.whiten and (white.components, white.eps) == (3, 0.1)
    assert PCA(whiten=True).name == "whiten"  # the old spelling of whitening still names itself


def test_make_step_rejects_unknown_steps_and_options():
    with pytest.raises(DataError, match="unknown preprocessing step 'zca'"):
        make_step("zca", {})
    with pytest.raises(DataError, match="unknown key 'eps' in pca; valid keys: components"):
        make_step("pca", {"eps": 1e-3})
    with pytest.raises(DataError, match="pca: components must be null, a positive integer, or a "
                                        "variance fraction"):
        make_step("pca", {"components": 2.5})


def test_builtin_registry_and_its_schema():
    assert BUILTINS == {name: dict(builtin.options) for name, builtin in BUILTIN_SETS.items()}
    with pytest.raises(DataError, match="unknown builtin data set 'moons'"):
        read_builtin("moons", {}, 0)


def test_random_streams_are_the_registered_ones():
    # same seed, same bits as before the streams registry: [seed, 101] splits, [seed, 102] generates
    assert (STREAMS["split"], STREAMS["builtin"]) == (101, 102)
    with h5py.File(BUNDLED_DIGITS, "r") as handle:
        y = handle["y_train"][()].astype(np.int64)
    train, val = stratified_split(y, 0.2, np.random.default_rng([3, 101]))
    digits = load_data("builtin:digits", seed=3)
    np.testing.assert_array_equal(digits.y_train, y[train])
    np.testing.assert_array_equal(digits.y_val, y[val])
    X, _ = spiral(30, 3, 0.2, np.random.default_rng([5, 102]))
    section = {"source": {"builtin": "spiral", "n": 30, "classes": 3, "noise": 0.2}, "val_fraction": 0}
    shuffled = X[np.random.default_rng([5, 101]).permutation(30)]  # val_fraction 0 keeps the shuffled order
    np.testing.assert_array_equal(load_data(section, seed=5).X_train, shuffled)


def test_no_stream_numbers_in_the_data_package():
    for path in Path(data.__file__).parent.glob("*.py"):
        assert "default_rng" not in path.read_text(), path.name


def test_importing_the_data_package_loads_neither_recipes_nor_h5py():
    code = ("import sys, babysit.data; "
            "print(sorted(m for m in ('babysit.recipes', 'h5py', 'yaml', 'click', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_report_json_form_keeps_its_keys_in_order():
    report = inspect_data("builtin:spiral")
    document = report.to_dict()
    assert list(document) == ["source", "ok", "problems", "num_classes", "class_names", "raw", "loaded"]
    assert list(document["raw"]["train"]) == [
        "count", "X_shape", "X_dtype", "y_shape", "y_dtype", "mean", "std", "min", "max",
        "feature_mean_absmax", "nan", "inf", "label_min", "label_max", "non_integer_labels",
        "class_counts"]
    assert document["raw"]["train"]["X_shape"] == [300, 2]
    assert list(document["loaded"]) == ["splits", "input_shape", "val_from", "preprocess"]
    assert document["loaded"]["input_shape"] == [2] and document["loaded"]["preprocess"] == []
    json.dumps(document)
