"""Ensembles: independent members, checkpoint ensembles, the comparison and the run log."""

import math
import os
import signal

import numpy as np
import pytest

from babysit.diagnostics import common
from babysit.diagnostics.train import TrainingInterrupted, recipe_for_resume, train, train_ensemble
from babysit.diagnostics.train.ensemble import accuracy, ensemble_predictions, predictions
from babysit.errors import BabysitError
from babysit.recipes import load_recipe
from babysit.store import Checkpoint, read_run_log

SMALL = {"data.limit": 400, "train.epochs": 4}


def small(**overrides):
    return load_recipe("two-layer-digits", overrides={**SMALL, **overrides})


def softmax(scores):
    scores = np.asarray(scores, dtype=np.float64)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_ensemble_prediction_is_the_mean_of_the_members_probabilities():
    recipe = small(**{"model.layers.1": "batchnorm"})   # buffers must follow each member too
    data = common.load(recipe)
    members = [common.build(recipe, data, seed) for seed in (3, 4, 5)]
    for k, model in enumerate(members):                  # distinct running statistics
        model.load_buffers({name: value + k for name, value in model.buffers().items()})
    states = [Checkpoint(params=m.copy_params(), buffers=m.buffers()) for m in members]
    X = data.X_val[:50]
    expected = np.mean([softmax(m.forward(X)) for m in members], axis=0)
    vessel = common.build(recipe, data, 9)
    own = vessel.copy_params()
    mean = ensemble_predictions(vessel, states, X, batch_size=16)
    np.testing.assert_allclose(mean, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-9)
    assert all(np.array_equal(own[n], vessel.params[n]) for n in own)   # the vessel is restored
    assert accuracy(mean, data.y_val[:50]) == np.mean(expected.argmax(axis=1) == data.y_val[:50])


def test_svm_members_average_their_scores():
    recipe = small(**{"model.loss": "svm"})
    data = common.load(recipe)
    model = common.build(recipe, data, 0)
    np.testing.assert_array_equal(predictions(model, data.X_val[:5]),
                                  model.forward(data.X_val[:5]).astype(np.float64))


def test_ensemble_run_stores_its_members_and_compares(tmp_path):
    result = train_ensemble(small(), 3, checkpoints=2, out=tmp_path / "ens.h5")
    e = result.metrics["ensemble"]
    assert e["members"] == e["used"] == 3 and e["seeds"] == [0, 1, 2] and e["polyak_beta"] == 0.99
    log = read_run_log(tmp_path / "ens.h5")
    assert log.status == "finished" and log.ensemble.comparison == e
    assert [m.attrs["seed"] for m in log.ensemble.members] == [0, 1, 2]
    assert all(sorted(m.snapshots) == [3, 4] for m in log.ensemble.members)

    # the stored members reproduce every number of the comparison
    recipe = recipe_for_resume(tmp_path / "ens.h5")
    data = common.load(recipe)
    model = common.build(recipe, data, 0)
    finals = [m.final for m in log.ensemble.members]
    assert accuracy(ensemble_predictions(model, finals, data.X_val), data.y_val) == e["val_accuracy"]
    singles = [accuracy(ensemble_predictions(model, [s], data.X_val), data.y_val) for s in finals]
    assert singles == [m["val_accuracy"] for m in e["per_member"]]
    assert e["single"] == {"best": max(singles), "mean": pytest.approx(np.mean(singles))}
    assert e["best_member"] == int(np.argmax(singles))
    assert e["gain_points"] == pytest.approx(100 * (e["val_accuracy"] - max(singles)))
    first = log.ensemble.members[0]
    snapshot_accuracy = accuracy(ensemble_predictions(model, list(first.snapshots.values()), data.X_val),
                                 data.y_val)
    assert snapshot_accuracy == e["per_member"][0]["checkpoint_val_accuracy"]
    assert e["per_member"][0]["average_val_accuracy"] == result.metrics["average_val_accuracy"]
    assert list(first.history["val_accuracy"]) == list(log.history["epoch"]["val_accuracy"])


def test_member_zero_is_the_plain_run_and_the_data_split_is_shared(tmp_path):
    plain = train(small(**{"train.average": 0.99}), out=tmp_path / "plain.h5")
    ensemble = train_ensemble(small(), 2, out=tmp_path / "ens.h5")
    a, b = read_run_log(tmp_path / "plain.h5"), read_run_log(tmp_path / "ens.h5")
    assert a.ensemble is None and b.ensemble is not None     # a plain log has no /ensemble group
    for name, value in a.checkpoints["last"].params.items():
        assert np.array_equal(value, b.checkpoints["last"].params[name])
        assert np.array_equal(value, b.ensemble.members[0].final.params[name])
    assert not np.array_equal(b.ensemble.members[1].final.params["0.W"], a.checkpoints["last"].params["0.W"])
    assert ensemble.metrics["val_accuracy"] == plain.metrics["val_accuracy"]
    assert ensemble.metrics["ensemble"]["checkpoint_ensemble"] == 5   # the default K


def test_a_diverged_member_is_left_out_and_fails_the_run(tmp_path):
    # at lr 1e4 every member diverges in its first epoch
    result = train_ensemble(small(**{"optim.lr": 1e4}), 2, out=tmp_path / "nan.h5")
    e = result.metrics["ensemble"]
    assert e["used"] == 0 and math.isnan(e["val_accuracy"]) and result.status == "fail"
    assert [f.code for f in result.findings] == ["loss_diverged", "loss_diverged"]
    assert result.findings[1].message.startswith("ensemble member 1 (seed 1): ")
    assert read_run_log(tmp_path / "nan.h5").status == "diverged"


def test_ensemble_logs_cannot_resume_and_an_interruption_keeps_the_finished_members(tmp_path):
    def stop_in_member_two(event):
        if event.kind == "iteration" and event.iteration == event.iterations // 2 + 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as stop:
        train_ensemble(small(), 2, out=tmp_path / "cut.h5", progress=stop_in_member_two)
    assert stop.value.resumable is False and stop.value.run_log == tmp_path / "cut.h5"
    log = read_run_log(tmp_path / "cut.h5")
    assert log.status == "interrupted" and len(log.ensemble.members) == 1
    assert log.ensemble.attrs["members"] == 2
    with pytest.raises(BabysitError, match="ensemble run .* cannot be resumed"):
        train(recipe_for_resume(tmp_path / "cut.h5"), resume=tmp_path / "cut.h5")
