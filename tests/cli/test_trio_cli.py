"""sanity-loss, gradcheck and lr-probe end to end: exit codes, JSON, JUnit, --layer."""

from __future__ import annotations

import json
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from babysit.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "120"})


def json_of(result) -> dict:
    return json.loads(result.stdout)


def finding_codes(doc) -> set:
    return {f["code"] for f in doc["findings"]}


def junit_cases(path) -> dict:
    """JUnit testcase name -> failure type (None when it passed)."""
    root = ET.parse(path).getroot()
    cases = {}
    for case in root.iter("testcase"):
        failure = case.find("failure")
        cases[case.get("name")] = None if failure is None else failure.get("type")
    return cases


# -- sanity-loss -----------------------------------------------------------------


def test_sanity_loss_default_passes():
    result = run("sanity-loss")
    assert result.exit_code == 0, result.output
    assert "Initial loss" in result.stdout and "expected (ln C)" in result.stdout
    assert "PASS" in result.stdout


def test_sanity_loss_json_on_stdout_only():
    result = run("sanity-loss", "--json", "-")
    assert result.exit_code == 0
    doc = json_of(result)  # nothing but the JSON document on stdout
    assert doc["command"] == "sanity-loss" and doc["status"] == "pass"
    assert doc["recipe"] == "bundled:two-layer-digits" and doc["seed"] == 0
    assert {"initial_loss", "expected_loss", "loss_with_reg", "reg_used"} <= set(doc["metrics"])
    assert "Initial loss" in result.stderr  # the human report moved to stderr


def test_sanity_loss_zero_init_fails_with_junit(tmp_path):
    result = run("sanity-loss", "broken/zero-init", "--json", tmp_path / "s.json",
                 "--junit", tmp_path / "s.xml")
    assert result.exit_code == 1, result.output
    assert "symmetric_weights" in result.stdout
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["status"] == "fail"
    assert {"symmetric_weights", "reg_no_effect"} <= finding_codes(doc)
    assert junit_cases(tmp_path / "s.xml") == {
        "initial_loss": None, "score_scale": None, "uniform_predictions": None,
        "symmetry": "symmetric_weights", "regularization": "reg_no_effect"}


def test_sanity_loss_set_overrides_and_options():
    result = run("sanity-loss", "--set", "model.loss=svm", "--tolerance", "0.2", "--json", "-")
    assert result.exit_code == 0, result.output
    assert json_of(result)["metrics"]["expected_loss"] == 9.0
    assert run("sanity-loss", "--examples", "0").exit_code == 2
    assert run("sanity-loss", "--no-such-option").exit_code == 2


# -- gradcheck -------------------------------------------------------------------


def test_gradcheck_default_passes():
    result = run("gradcheck", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json_of(result)
    m = doc["metrics"]
    assert m["dtype"] == "float64"
    assert set(m["params"]) == {"0.W", "0.b", "2.W", "2.b"}
    for entry in list(m["params"].values()) + [m["input"]]:
        assert {"max_rel_error", "checked", "kinks"} <= set(entry)
    assert "Analytic vs numerical gradients" in result.stderr


def test_gradcheck_wrong_backward_fails(tmp_path):
    result = run("gradcheck", "broken/wrong-backward", "--junit", tmp_path / "g.xml")
    assert result.exit_code == 1
    assert "gradient_mismatch" in result.stdout and "1.custom" in result.stdout
    assert junit_cases(tmp_path / "g.xml")["gradients"] == "gradient_mismatch"


def test_gradcheck_options():
    result = run("gradcheck", "--entries", "3", "--datapoints", "2", "--burn-in", "5",
                 "--h", "1e-6", "--json", "-")
    assert result.exit_code == 0, result.output
    m = json_of(result)["metrics"]
    assert m["datapoints"] == 2 and m["burn_in"] == 5 and m["h"] == 1e-6
    assert all(p["checked"] == 3 for p in m["params"].values())


LAYER_MODULE = '''
import numpy as np

class Scale:
    """y = x * w (one weight per feature) + b; ``bug`` doubles dw."""

    def __init__(self, features, bug=False):
        self.params = {"w": np.linspace(0.5, 1.5, features), "b": np.zeros(features)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.bug = bug

    def forward(self, x, train):
        self.x = x
        return x * self.params["w"] + self.params["b"]

    def backward(self, dout):
        self.grads["w"] = (2.0 if self.bug else 1.0) * (dout * self.x).sum(axis=0)
        self.grads["b"] = dout.sum(axis=0)
        return dout * self.params["w"]


class Exploding:
    def __init__(self):
        raise RuntimeError("no way")

    def forward(self, x, train):  # a layer class (checked before it is called) ...
        return x

    def backward(self, dout):     # ... whose constructor fails
        return dout


class WrongDx(Scale):
    def backward(self, dout):
        super().backward(dout)
        return dout[:, :1]
'''


@pytest.fixture
def user_layers(tmp_path, monkeypatch):
    """A module of user layers in the current directory, imported fresh per test."""
    name = "my_trio_layers"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(LAYER_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_gradcheck_user_layer(user_layers, tmp_path):
    ok = run("gradcheck", "--layer", f"{user_layers}:Scale", "--input-shape", "4,10",
             "--kwargs", '{"features": 10}', "--json", "-")
    assert ok.exit_code == 0, ok.output
    doc = json_of(ok)
    assert doc["recipe"] is None and set(doc["metrics"]["params"]) == {"w", "b"}
    assert doc["metrics"]["layer"] == "Scale" and doc["metrics"]["input_shape"] == [4, 10]
    bad = run("gradcheck", "--layer", f"{user_layers}:Scale", "--input-shape", "4,10",
              "--kwargs", '{"features": 10, "bug": true}', "--json", tmp_path / "l.json")
    assert bad.exit_code == 1 and "FAIL" in bad.stdout
    (finding,) = json.loads((tmp_path / "l.json").read_text())["findings"]
    assert finding["code"] == "gradient_mismatch" and finding["evidence"]["name"] == "w"
    assert "2 times the numerical" in finding["message"]


@pytest.mark.parametrize("args, message", [
    (["--input-shape", "4;10", "--kwargs", '{"features": 10}'], "--input-shape must be"),
    (["--input-shape", "0,10", "--kwargs", '{"features": 10}'], "all >= 1"),
    (["--input-shape", "4,10", "--kwargs", "{features: 10}"], "--kwargs is not valid JSON"),
    (["--input-shape", "4,10"], "missing 1 required positional argument"),
    (["--kwargs", '{"features": 10}'], "--layer needs --input-shape"),
])
def test_gradcheck_user_layer_bad_input_exits_2(user_layers, args, message):
    result = run("gradcheck", "--layer", f"{user_layers}:Scale", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("target, message", [
    ("{m}:Exploding", "Exploding() failed: RuntimeError: no way"),
    ("{m}:Missing", "has no attribute 'Missing'"),
    ("not_a_module_anywhere:Layer", "cannot import"),
    ("{m}:WrongDx", "backward returned dx of shape (4, 1)"),
])
def test_gradcheck_broken_user_layer_exits_2(user_layers, target, message):
    args = ["--kwargs", '{"features": 10}'] if "WrongDx" in target else []
    result = run("gradcheck", "--layer", target.format(m=user_layers), "--input-shape", "4,10",
                 *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_gradcheck_recipe_and_layer_together_is_usage_error(user_layers):
    result = run("gradcheck", "two-layer-digits", "--layer", f"{user_layers}:Scale",
                 "--input-shape", "4,10")
    assert result.exit_code == 2 and "not both" in result.stderr


# -- lr-probe --------------------------------------------------------------------


def test_lr_probe_default_passes_with_plot(tmp_path):
    pytest.importorskip("matplotlib")
    result = run("lr-probe", "--json", tmp_path / "l.json", "--plot", tmp_path / "l.png")
    assert result.exit_code == 0, result.output
    assert "Learning rates" in result.stdout and "good range:" in result.stdout
    assert "learning rate (log)" in result.stdout  # the terminal plot
    assert "recipe lr run on to step 225" in result.stdout  # the long run's line
    doc = json.loads((tmp_path / "l.json").read_text())
    m = doc["metrics"]
    assert m["good_range"][0] <= m["recipe_lr"] <= m["good_range"][1]
    assert {"good_range", "suggested_lr", "recipe_lr", "trials"} <= set(m)
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_probe_broken_recipes_fail(tmp_path):
    high = run("lr-probe", "broken/lr-too-high", "--junit", tmp_path / "h.xml")
    assert high.exit_code == 1 and "lr_too_high" in high.stdout
    assert junit_cases(tmp_path / "h.xml") == {"recipe_lr": "lr_too_high", "probed_range": None}
    low = run("lr-probe", "broken/lr-too-low", "--json", "-")
    assert low.exit_code == 1
    assert finding_codes(json_of(low)) == {"lr_too_low"}


def test_lr_probe_edge_warning_fails_only_with_strict():
    # the best LR for this net is above 1e-2: the good range runs into the probe's top
    args = ["lr-probe", "--set", "optim.lr=1e-2", "--lr-min", "1e-4", "--lr-max", "1e-2",
            "--steps", "50"]
    assert run(*args).exit_code == 0
    strict = run(*args, "--strict")
    assert strict.exit_code == 1 and "lr_range_edge" in strict.stdout


def test_lr_probe_sweep():
    result = run("lr-probe", "--mode", "sweep", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json_of(result)
    assert doc["metrics"]["mode"] == "sweep" and doc["metrics"]["good_range"]
    assert "smoothed loss" in result.stderr


def test_lr_probe_bad_options_exit_2():
    assert run("lr-probe", "--mode", "random").exit_code == 2
    result = run("lr-probe", "--lr-min", "1", "--lr-max", "0.1")
    assert result.exit_code == 2 and "must be below" in result.stderr


# -- determinism -----------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["sanity-loss"],
    ["gradcheck"],
    ["lr-probe", "--lr-min", "1e-3"],
])
def test_same_seed_same_json(args):
    first = run(*args, "--seed", "7", "--json", "-")
    second = run(*args, "--seed", "7", "--json", "-")
    assert first.exit_code == second.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert json_of(first)["seed"] == 7
    other = run(*args, "--seed", "8", "--json", "-")
    assert json_of(other)["metrics"] != json_of(first)["metrics"]
