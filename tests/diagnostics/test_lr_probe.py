"""lr-probe: the default recipe's LR is in range, the broken ones are caught, verdicts are sane."""

import math

import pytest

from babysit.diagnostics.lr_probe import VERDICTS, classify, good_run, lr_grid, lr_probe, Trial
from babysit.errors import BabysitError
from babysit.recipes import load_recipe


def codes(result, severity=None):
    return sorted(f.code for f in result.findings if severity in (None, f.severity))


def recipe(name="two-layer-digits", **overrides):
    return load_recipe(name, overrides=overrides or None)


@pytest.fixture(scope="module")
def default_result():
    return lr_probe(recipe())


def test_default_range_contains_its_own_lr(default_result):
    result = default_result
    assert result.status == "pass" and result.findings == []
    m = result.metrics
    lo, hi = m["good_range"]
    assert lo <= m["recipe_lr"] <= hi
    assert 1e-7 < lo and hi < 10  # the extremes are never good
    assert lo <= m["suggested_lr"] <= hi
    verdicts = {t["lr"]: t["verdict"] for t in m["trials"]}
    assert verdicts[1e-7] == "too_low" and verdicts[10.0] == "too_high"
    assert m["update"] == "momentum" and m["mode"] == "grid"
    # the grid (1e-7 .. 10, two per decade) plus the recipe's own 0.03
    assert len(m["trials"]) == 17 + 1
    assert [t["lr"] for t in m["trials"]] == sorted(t["lr"] for t in m["trials"])
    for trial in m["trials"]:
        assert set(trial) >= {"lr", "verdict", "loss_start", "loss_end"}
        assert trial["verdict"] in VERDICTS
        assert trial["loss_start"] == m["trials"][0]["loss_start"]  # same init, same eval batch


def test_too_high_lr_is_caught(default_result):
    result = lr_probe(recipe("broken/lr-too-high"))
    assert codes(result) == ["lr_too_high"]
    finding = result.findings[0]
    lo, hi = default_result.metrics["good_range"]
    assert result.metrics["good_range"] == [lo, hi]  # same model, same range
    assert f"{hi:.3g}" in finding.message and "too_high" in finding.message
    assert "lower optim.lr" in finding.fix


def test_too_low_lr_is_caught():
    result = lr_probe(recipe("broken/lr-too-low"))
    assert codes(result) == ["lr_too_low"]
    assert "below the good range" in result.findings[0].message
    assert "raise optim.lr" in result.findings[0].fix


def test_the_update_rule_moves_the_range():
    # lr 0.3 is fine for momentum SGD on this net but far too much for adam.
    momentum = lr_probe(recipe(**{"optim.lr": 0.3}), lr_min=1e-5)
    adam = lr_probe(recipe(**{"optim.update": "adam", "optim.lr": 0.3}), lr_min=1e-5)
    assert momentum.status == "pass"
    assert codes(adam) == ["lr_too_high"]
    assert adam.metrics["update"] == "adam"
    assert adam.metrics["good_range"][1] < momentum.metrics["good_range"][1]


def test_best_lr_at_the_edge_of_the_probed_range():
    result = lr_probe(recipe(**{"optim.lr": 1e-3}), lr_min=1e-5, lr_max=1e-2)
    assert codes(result) == ["lr_range_edge"]
    finding = result.findings[0]
    assert finding.severity == "warn" and "highest" in finding.message
    assert result.metrics["suggested_lr"] == result.metrics["good_range"][1] == 1e-2


def test_no_lr_works_for_a_symmetric_model():
    # Zero init: only the output bias can move, so no LR makes real progress.
    result = lr_probe(recipe("broken/zero-init"), lr_min=1e-4, steps=50)
    assert codes(result) == ["lr_too_low"]
    assert result.metrics["good_range"] is None and result.metrics["suggested_lr"] is None
    assert "no probed LR" in result.findings[0].message


def test_non_finite_start():
    layers = [{"affine": {"out": 50}}, "relu", {"affine": {"out": 10}}]
    result = lr_probe(recipe(**{"model.init": {"normal": 1e20}, "model.layers": layers}),
                      lr_min=1e-3, steps=10)
    assert codes(result) == ["loss_not_finite"]
    result.to_dict()


def test_sweep_mode():
    result = lr_probe(recipe(), mode="sweep")
    assert result.status == "pass", result.findings
    m = result.metrics
    lo, hi = m["good_range"]
    assert lo < m["recipe_lr"] < hi
    assert m["suggested_lr"] == pytest.approx(max(lo, hi / 10))
    lrs = [t["lr"] for t in m["trials"]]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-7)
    assert len(lrs) < 200  # stopped at divergence
    assert [t["verdict"] for t in m["trials"]][-1] == "too_high"


def test_same_seed_same_json():
    first = lr_probe(recipe(), lr_min=1e-3, steps=20)
    second = lr_probe(recipe(), lr_min=1e-3, steps=20)
    assert first.to_dict() == second.to_dict()
    other = lr_probe(recipe(), seed=3, lr_min=1e-3, steps=20)
    assert other.metrics["trials"] != first.metrics["trials"]


def test_grid():
    assert lr_grid(1e-7, 10, 2)[:3] == [1e-7, 3.16e-7, 1e-6]
    assert lr_grid(1e-7, 10, 2)[-1] == 10.0
    assert len(lr_grid(1e-7, 10, 2)) == 17
    assert lr_grid(1e-3, 1e-1, 1) == [1e-3, 1e-2, 1e-1]


@pytest.mark.parametrize("curve, verdict", [
    ([2.3, 2.29, 2.29], "too_low"),            # fell 0.4%
    ([2.3, 1.5, 0.8, 0.5], "good"),
    ([2.3, 1.0, 0.6, 1.9], "unstable"),        # fell, then climbed back
    ([2.3, 0.5, 0.55], "good"),                # a little noise at the bottom is fine
    ([2.3, 3.0, 7.5], "too_high"),             # > 3x the start
    ([2.3, 1.0, float("nan")], "too_high"),
    ([2.3, 2.25, 2.29], "unstable"),           # fell 2%, then gave most of it back
    ([2.3, 2.275, 2.28], "too_low"),           # fell 1.1%, kept less than 1% of it
])
def test_classify(curve, verdict):
    assert classify(curve) == verdict


def test_good_run_is_contiguous_around_the_best():
    trials = []
    for lr, verdict, end in [(1e-3, "good", 1.0), (1e-2, "unstable", 0.9), (1e-1, "good", 0.5),
                             (1.0, "good", 0.7), (10.0, "too_high", 99.0)]:
        trial = Trial(lr, [2.3, end])
        trial.verdict = verdict
        trials.append(trial)
    run, best = good_run(trials)
    assert [t.lr for t in run] == [1e-1, 1.0] and best.lr == 1e-1


@pytest.mark.parametrize("options", [
    {"mode": "random"}, {"lr_min": 1.0, "lr_max": 0.1}, {"lr_min": 0}, {"per_decade": 0},
    {"steps": 0}, {"eval_examples": -5},
])
def test_bad_options(options):
    with pytest.raises(BabysitError):
        lr_probe(recipe(), **options)


def test_metrics_are_json_ready(default_result):
    data = default_result.to_dict()
    assert data["command"] == "lr-probe"
    m = data["metrics"]
    assert m["recipe_lr"] == 0.03 and isinstance(m["good_range"], list)
    assert all(isinstance(t["loss_end"], (float, str)) for t in m["trials"])
    diverged = [t for t in m["trials"] if t["verdict"] == "too_high"]
    assert all(isinstance(t["loss_end"], str) or not math.isfinite(t["loss_end"])
               or t["loss_end"] > 3 * t["loss_start"] for t in diverged)
