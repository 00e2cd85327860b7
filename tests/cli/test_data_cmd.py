"""`babysit data` and the data diagnosis (babysit.diagnostics.data_check)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from babysit.cli import cli
from babysit.data import DataReport, SplitStats
from babysit.diagnostics.data_check import CENTERING_LIMIT, centering_ratio, check_data


def run(*args):
    return CliRunner().invoke(cli, ["data", *args])


def run_json(*args):
    result = run(*args, "--json", "-")
    return result, (json.loads(result.stdout) if result.stdout else None)


def codes(doc):
    return [f["code"] for f in doc["findings"]]


def write_npz(path, rng, n=60, dim=6, classes=3, **overrides):
    arrays = {"X_train": rng.standard_normal((n, dim)).astype(np.float32),
              "y_train": np.arange(n) % classes}
    arrays.update(overrides)
    np.savez(path, **arrays)
    return str(path)


def test_builtin_digits_raw_is_usable_but_not_centred():
    result, doc = run_json("builtin:digits")
    assert result.exit_code == 0, result.stderr
    assert doc["command"] == "data" and doc["recipe"] is None and doc["seed"] == 0
    assert doc["status"] == "warn" and codes(doc) == ["data_not_centered"]
    metrics = doc["metrics"]
    assert metrics["usable"] is True and metrics["num_classes"] == 10
    assert metrics["raw"]["train"]["count"] == 1797
    assert metrics["raw"]["train"]["X_dtype"] == "uint8"
    splits = metrics["loaded"]["splits"]
    assert splits["train"]["count"] + splits["val"]["count"] == 1797
    assert metrics["centering"]["ratio"] > 1.5  # pixels 0..16, border pixels always 0
    (finding,) = doc["findings"]
    assert "mean_image" in finding["fix"] and finding["evidence"]["preprocess"] == []


def test_human_report_shows_splits_balance_and_findings():
    result = CliRunner().invoke(cli, ["data", "builtin:digits"], env={"COLUMNS": "100"})
    out = result.stdout
    for text in ("As the model sees it", "As stored (raw)", "Class balance", "1797", "1x8x8",
                 "uint8", "0..9", "data_not_centered", "WARN"):
        assert text in out, text


def test_recipe_is_judged_after_its_preprocessing():
    result, doc = run_json("two-layer-digits")
    assert result.exit_code == 0, result.stderr
    assert doc["recipe"] == "bundled:two-layer-digits"
    centering = doc["metrics"]["centering"]
    assert centering["ratio"] < CENTERING_LIMIT < centering["raw_ratio"]
    assert "data_not_centered" not in codes(doc)
    assert doc["metrics"]["loaded"]["preprocess"]  # the recipe preprocesses


def test_default_target_is_the_default_recipe():
    result, doc = run_json()
    assert result.exit_code == 0 and doc["recipe"] == "bundled:two-layer-digits"


def test_set_on_a_recipe_changes_what_is_judged_and_strict_fails_the_warning():
    result, doc = run_json("two-layer-digits", "--set", "data.preprocess=[]", "--seed", "5")
    assert result.exit_code == 0 and codes(doc) == ["data_not_centered"] and doc["seed"] == 5
    strict = run("two-layer-digits", "--set", "data.preprocess=[]", "--strict", "--quiet")
    assert strict.exit_code == 1


def test_per_channel_mean_leaves_pixels_off_centre_and_the_fix_says_so():
    result, doc = run_json("two-layer-digits", "--set", "data.preprocess=[per_channel_mean]")
    assert codes(doc) == ["data_not_centered"]
    assert "per_channel_mean" in doc["findings"][0]["message"]
    assert "mean_image or standardize" in doc["findings"][0]["fix"]


def test_npz_with_nan_is_not_usable(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 6)).astype(np.float32)
    X[3, 2] = np.nan
    X[7, 0] = np.inf
    path = write_npz(tmp_path / "nan.npz", rng, X_train=X)
    result, doc = run_json(path)
    assert result.exit_code == 1, result.stderr
    assert doc["status"] == "fail" and "data_not_finite" in codes(doc)
    finding = doc["findings"][codes(doc).index("data_not_finite")]
    assert finding["evidence"]["nan"] == 1 and finding["evidence"]["inf"] == 1
    assert doc["metrics"]["usable"] is False and doc["metrics"]["problems"]
    assert doc["metrics"]["raw"]["train"]["nan"] == 1


def test_negative_labels_are_out_of_range(tmp_path):
    rng = np.random.default_rng(1)
    y = np.arange(60) % 3
    y[5] = -1
    path = write_npz(tmp_path / "neg.npz", rng, y_train=y)
    result, doc = run_json(path)
    assert result.exit_code == 1
    assert codes(doc) == ["label_out_of_range"]
    assert doc["findings"][0]["evidence"]["label_min"] == -1


def test_labels_above_the_declared_classes_are_out_of_range(tmp_path):
    rng = np.random.default_rng(2)
    path = write_npz(tmp_path / "big.npz", rng, classes=4, num_classes=np.array(3))
    result, doc = run_json(path)
    assert result.exit_code == 1
    assert codes(doc) == ["label_out_of_range"]
    assert "0..2" in doc["findings"][0]["message"]


def test_healthy_npz_passes_and_writes_junit(tmp_path):
    rng = np.random.default_rng(3)
    path = write_npz(tmp_path / "ok.npz", rng, n=1000, dim=20)
    junit = tmp_path / "data.xml"
    result = run(path, "--junit", str(junit))
    assert result.exit_code == 0, result.stderr
    assert "PASS" in result.stdout
    text = junit.read_text()
    assert 'name="babysit.data"' in text and 'failures="0"' in text
    assert text.count("<testcase") == 3  # finite values, label range, centred inputs


def test_missing_file_is_exit_2_with_one_line(tmp_path):
    result = run(str(tmp_path / "missing.h5"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.h5" in lines[0]
    assert result.stdout == ""


def test_malformed_source_is_exit_2(tmp_path):
    rng = np.random.default_rng(4)
    path = write_npz(tmp_path / "short.npz", rng, y_train=np.arange(59) % 3)
    result = run(path, "--quiet")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "59" in result.stderr


def test_unknown_recipe_is_exit_2():
    result = run("no-such-recipe")
    assert result.exit_code == 2 and "unknown recipe" in result.stderr


def test_set_with_a_raw_source_is_refused():
    result = run("builtin:spiral", "--set", "data.limit=10")
    assert result.exit_code == 2 and "--set" in result.stderr


def test_json_is_deterministic():
    first = run("builtin:spiral", "--json", "-").stdout
    assert first == run("builtin:spiral", "--json", "-").stdout


# -- data_check on hand-made reports ----------------------------------------------

def stats(**kwargs):
    base = {"count": 10, "X_shape": (10, 4), "X_dtype": "float32", "y_shape": (10,), "y_dtype": "int64",
            "mean": 0.0, "std": 1.0, "feature_mean_absmax": 0.1, "nan": 0, "inf": 0, "label_min": 0,
            "label_max": 2, "non_integer_labels": 0, "class_counts": {0: 4, 1: 3, 2: 3}}
    base.update(kwargs)
    return SplitStats(**base)


@pytest.mark.parametrize("values, expected", [
    ({}, 0.1),
    ({"feature_mean_absmax": None, "mean": -3.0, "std": 2.0}, 1.5),
    ({"std": 0.0, "feature_mean_absmax": 0.0}, 0.0),
    ({"std": 0.0, "feature_mean_absmax": 1.0}, float("inf")),
    ({"std": None}, None),
])
def test_centering_ratio(values, expected):
    assert centering_ratio(stats(**values)) == expected


def test_non_integer_labels_fail_and_statuses_combine():
    report = DataReport("x.npz", ok=False, problems=("y_train has 2 non-integer labels",),
                        num_classes=3, raw={"train": stats(non_integer_labels=2),
                                            "val": stats(nan=4, feature_mean_absmax=None)},
                        loaded=None)
    result = check_data(report, seed=0)
    assert [f.code for f in result.findings] == ["data_not_finite", "label_out_of_range"]
    assert result.status == "fail" and result.metrics["usable"] is False
    assert result.findings[0].evidence["split"] == "val"
