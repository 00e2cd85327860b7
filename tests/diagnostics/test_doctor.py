"""doctor: every part in protocol order, consolidated status, --stop-early, bad input."""

from __future__ import annotations

import pytest

from babysit.diagnostics.doctor import NOT_RUN, PARTS, doctor
from babysit.errors import BabysitError
from babysit.recipes import load_recipe

ORDER = ["sanity-loss", "gradcheck", "overfit-tiny", "init-stats", "lr-probe"]


@pytest.fixture(scope="module")
def healthy():
    return doctor(load_recipe("two-layer-digits"))


@pytest.fixture(scope="module")
def zero_init():
    return doctor(load_recipe("broken/zero-init"))


def test_parts_run_in_protocol_order(healthy):
    assert list(PARTS) == ORDER
    assert list(healthy.parts) == ORDER
    assert list(healthy.metrics["statuses"]) == ORDER


def test_default_recipe_passes_every_part(healthy):
    assert healthy.status == "pass"
    statuses = {name: part.status for name, part in healthy.parts.items()}
    assert statuses == dict.fromkeys(ORDER, "pass")
    assert healthy.metrics == {"statuses": dict.fromkeys(ORDER, "pass"), "not_run": []}
    # Each part is the very result its own command produces.
    for name, part in healthy.parts.items():
        assert part.command == name and part.seed == healthy.seed == 0
        assert part.elapsed is not None and part.elapsed >= 0


def test_json_nests_parts_keyed_by_command_and_has_no_findings_of_its_own(healthy):
    doc = healthy.to_dict()
    assert doc["command"] == "doctor" and doc["status"] == "pass"
    assert doc["findings"] == []
    assert list(doc["parts"]) == ORDER
    for name, part in doc["parts"].items():
        assert part["command"] == name
        assert set(part) >= {"babysit", "command", "recipe", "seed", "status", "findings",
                             "metrics"}
    assert doc["parts"]["sanity-loss"]["metrics"]["initial_loss"] == pytest.approx(2.3026, abs=0.1)


def test_same_seed_same_json(healthy):
    again = doctor(load_recipe("two-layer-digits"), seed=0)
    assert again.to_dict() == healthy.to_dict()


def test_zero_init_fails_where_the_protocol_says(zero_init):
    statuses = zero_init.metrics["statuses"]
    assert zero_init.status == "fail"
    assert statuses["sanity-loss"] == "fail"
    assert "symmetric_weights" in {f.code for f in zero_init.parts["sanity-loss"].findings}
    assert statuses["overfit-tiny"] == "fail"
    assert statuses["init-stats"] == "fail"
    assert zero_init.metrics["not_run"] == []


def test_lr_too_high_fails_the_lr_probe():
    result = doctor(load_recipe("broken/lr-too-high"))
    assert result.status == "fail"
    assert result.metrics["statuses"]["sanity-loss"] == "pass"
    probe = result.parts["lr-probe"]
    assert probe.status == "fail" and "lr_too_high" in {f.code for f in probe.findings}


def test_stop_early_skips_the_rest_after_the_first_failure():
    result = doctor(load_recipe("broken/zero-init"), stop_early=True)
    assert list(result.parts) == ["sanity-loss"]
    expected = {"sanity-loss": "fail", **dict.fromkeys(ORDER[1:], NOT_RUN)}
    assert result.metrics["statuses"] == expected
    assert result.metrics["not_run"] == ORDER[1:]
    assert result.status == "fail"


def test_stop_early_runs_everything_when_nothing_fails(healthy):
    result = doctor(load_recipe("two-layer-digits"), stop_early=True)
    assert list(result.parts) == ORDER and result.metrics["not_run"] == []


def test_bad_input_in_a_part_propagates_as_a_babysit_error(tmp_path):
    missing = str(tmp_path / "missing.h5")
    recipe = load_recipe("two-layer-digits", overrides={"data.source": missing})
    with pytest.raises(BabysitError, match="missing.h5"):
        doctor(recipe)


def test_progress_hooks_see_every_part_in_order():
    seen = []
    doctor(load_recipe("broken/zero-init"), stop_early=True,
           before_part=lambda name: seen.append(("before", name)),
           on_part=lambda name, part: seen.append(("after", name, part.status)))
    assert seen == [("before", "sanity-loss"), ("after", "sanity-loss", "fail")]


# -- one report, one verdict (calibration issue) -------------------------------------------

def test_spiral_doctor_passes_on_the_seed_that_drew_the_origin_twice():
    from babysit.diagnostics.doctor import doctor
    from babysit.recipes import load_recipe

    result = doctor(load_recipe("spiral-mlp"), seed=4, parts=["overfit-tiny"])
    assert result.status == "pass"


def test_overfit_tiny_and_lr_probe_agree_on_a_slow_but_sound_lr(tmp_path):
    # Adam at 1e-3 on overlapping blobs: lr-probe finds it good for training; overfit-tiny
    # used to fail with "raise the learning rate". One report, one piece of advice.
    import numpy as np

    from babysit.diagnostics.doctor import doctor
    from babysit.recipes import load_recipe

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 900)
    X = (rng.standard_normal((3, 2))[y] + rng.standard_normal((900, 2))).astype(np.float32)
    np.savez(tmp_path / "blobs.npz", X_train=X, y_train=y)
    spec = load_recipe("two-layer-digits", overrides={
        "data.source": str(tmp_path / "blobs.npz"), "model.init": "he",
        "model.layers.2.affine.out": 3, "optim.update": "adam", "optim.lr": 1e-3,
        "train.batch_size": 50})
    result = doctor(spec, parts=["overfit-tiny", "lr-probe"])
    assert {name: part.status for name, part in result.parts.items()} == {
        "overfit-tiny": "pass", "lr-probe": "pass"}


def test_the_parts_read_the_data_once_and_equal_their_own_commands(healthy, monkeypatch):
    # doctor shares one Dataset among its parts (a CIFAR-sized file is read once);
    # the parts only read it, so each still equals the command run on its own
    import babysit.data
    from babysit.diagnostics.doctor import part_function

    loads = []
    real = babysit.data.load_data
    monkeypatch.setattr(babysit.data, "load_data", lambda *a, **k: loads.append(1) or real(*a, **k))
    recipe = load_recipe("two-layer-digits")
    assert doctor(recipe).to_dict() == healthy.to_dict()
    assert len(loads) == 1
    for name in ORDER:
        assert part_function(name)(recipe, seed=0).to_dict() == healthy.parts[name].to_dict()
    assert len(loads) == 1 + len(ORDER)   # outside doctor every command reads its own


def test_a_custom_layer_may_write_into_its_input_so_its_parts_load_their_own(monkeypatch):
    import babysit.data

    loads = []
    real = babysit.data.load_data
    monkeypatch.setattr(babysit.data, "load_data", lambda *a, **k: loads.append(1) or real(*a, **k))
    doctor(load_recipe("broken/wrong-backward"), parts=["sanity-loss", "init-stats"])
    assert len(loads) == 2
