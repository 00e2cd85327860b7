"""init-stats on real forward/backward passes: the lecture's init experiment and real faults."""

import pytest

from babysit.diagnostics.init_stats import init_stats
from babysit.errors import BabysitError
from babysit.recipes import load_recipe, recipe_from_yaml

# The lecture's table (CS231n lecture 6): std of each tanh layer's output,
# 10 layers of 500 units, unit Gaussian data, W = randn / sqrt(fan_in).
LECTURE_XAVIER_STDS = [0.63, 0.49, 0.41, 0.36, 0.32, 0.29, 0.27, 0.25, 0.24, 0.23]


def codes(findings):
    return sorted({f["code"] if isinstance(f, dict) else f.code for f in findings})


def tanh_rows(layers):
    return [row for row in layers if row["layer"].endswith(".tanh")]


def small_net(layers: str, init="xavier", dim=100) -> object:
    return recipe_from_yaml(f"""
name: small-net
data: {{source: {{builtin: gaussian, n: 1000, dim: {dim}, classes: 10}}, val_fraction: 0.0}}
model:
  init: {init}
  layers: {layers}
""")


@pytest.fixture(scope="module")
def lecture():
    recipe = load_recipe("deep-tanh-init")
    return init_stats(recipe, compare=["xavier", "small", {"normal": 1.0}])


def test_lecture_table_xavier(lecture):
    assert lecture.status == "pass" and lecture.findings == []
    stds = [row["std"] for row in tanh_rows(lecture.metrics["layers"])]
    assert stds == pytest.approx(LECTURE_XAVIER_STDS, abs=0.01)
    assert all(row["saturated"] < 0.02 for row in tanh_rows(lecture.metrics["layers"]))
    compared = {run["init"]: run for run in lecture.metrics["compare"]}
    assert list(compared) == ["xavier", "small", "normal:1"]
    assert compared["xavier"]["status"] == "pass"
    assert compared["xavier"]["layers"] == lecture.metrics["layers"]  # same batch, same weights


def test_lecture_small_init_collapses(lecture):
    run = lecture.metrics["compare"][1]
    stds = [row["std"] for row in tanh_rows(run["layers"])]
    assert stds[0] == pytest.approx(0.21, abs=0.02)          # 0.01 * sqrt(500)
    assert stds[-1] < 1e-5 and all(b < a for a, b in zip(stds, stds[1:]))
    assert run["status"] == "fail"
    collapse = next(f for f in run["findings"] if f["code"] == "activation_collapse")
    assert collapse["severity"] == "fail" and collapse["layer"] == "1.tanh"
    assert "Xavier" in collapse["fix"] and "He" in collapse["fix"]
    assert "vanishing_gradient" in codes(run["findings"])


def test_lecture_large_init_saturates(lecture):
    run = lecture.metrics["compare"][2]
    rows = tanh_rows(run["layers"])
    assert all(row["saturated"] > 0.8 for row in rows)
    assert all(row["std"] == pytest.approx(0.98, abs=0.01) for row in rows)
    saturation = next(f for f in run["findings"] if f["code"] == "activation_saturation")
    assert saturation["severity"] == "fail" and saturation["layer"] == "1.tanh"


def test_metrics_rows_have_the_spec_keys(lecture):
    layers = lecture.metrics["layers"]
    assert [row["layer"] for row in layers[:3]] == ["0.affine", "1.tanh", "2.affine"]
    assert len(layers) == 21
    for row in layers:
        assert {"layer", "mean", "std", "near_zero", "saturated", "dead", "grad_norm"} <= set(row)
        assert row["dead"] is None                     # no ReLU here
        assert sum(row["histogram"]["counts"]) == lecture.metrics["batch_size"] * (
            10 if row["layer"] == "20.affine" else 500)
    assert layers[1]["saturated"] is not None and layers[0]["saturated"] is None
    assert lecture.to_dict()["metrics"]["layers"][0]["layer"] == "0.affine"


def test_he_relu_deep_net_is_healthy_and_xavier_relu_collapses():
    recipe = load_recipe("deep-tanh-init").with_overrides(
        {"model.init": "he", **{f"model.layers.{2 * i + 1}": "relu" for i in range(10)}})
    result = init_stats(recipe, compare=["xavier"])
    assert result.findings == [], [f.message for f in result.findings]
    stds = [row["std"] for row in result.metrics["layers"] if row["layer"].endswith(".relu")]
    assert min(stds) > 0.6 and max(stds) < 1.0       # He keeps the scale through 10 layers
    xavier = result.metrics["compare"][0]
    assert codes(xavier["findings"]) == ["activation_collapse"]   # the lecture's "Xavier + ReLU"
    assert xavier["findings"][0]["severity"] == "warn"


def test_negative_bias_kills_relus():
    result = init_stats(small_net("[{affine: {out: 100, bias: -4.0}}, relu, {affine: {out: 10}}]"))
    assert codes(result.findings) == ["dead_relu"]
    finding = result.findings[0]
    assert finding.layer == "1.relu" and finding.severity == "fail"
    assert result.metrics["layers"][1]["dead"] > 0.9
    healthy = init_stats(small_net("[{affine: {out: 100}}, relu, {affine: {out: 10}}]", init="he"))
    assert healthy.findings == [] and healthy.metrics["layers"][1]["dead"] == 0.0


def test_large_init_saturates_sigmoid():
    result = init_stats(small_net("[{affine: {out: 100}}, sigmoid, {affine: {out: 10}}]",
                                  init="{normal: 1.0}"))
    assert "activation_saturation" in codes(result.findings)
    row = result.metrics["layers"][1]
    assert row["saturated"] > 0.5 and result.status == "fail"


def test_large_init_explodes_relu_activations():
    layers = "[" + ", ".join(["{affine: {out: 100}}, relu"] * 4) + ", {affine: {out: 10}}]"
    result = init_stats(small_net(layers, init="{normal: 1.0}"), batch_size=200)
    explosion = next(f for f in result.findings if f.code == "activation_explosion")
    assert explosion.layer == "1.relu" and explosion.evidence["total_ratio"] > 20


def test_batch_size_and_bad_compare():
    recipe = small_net("[{affine: {out: 20}}, tanh, {affine: {out: 10}}]", dim=20)
    assert init_stats(recipe, batch_size=50).metrics["batch_size"] == 50
    with pytest.raises(BabysitError, match="--compare"):
        init_stats(recipe, compare=["glorious"])
    with pytest.raises(BabysitError):
        init_stats(recipe, batch_size=0)


def test_default_recipe_is_healthy_and_deterministic():
    recipe = load_recipe("two-layer-digits")
    first, second = init_stats(recipe).to_dict(), init_stats(recipe).to_dict()
    assert first == second and first["status"] == "pass"
