"""train: real runs on the bundled digits; exact resume; interruption; divergence; curves."""

import os
import signal

import numpy as np
import pytest

from babysit.diagnostics.train import (TrainingInterrupted, recipe_for_resume,
                                          result_from_run_log, train)
from babysit.errors import BabysitError
from babysit.recipes import load_recipe
from babysit.store import read_run_log

# Every piece of state an exact resume needs: batchnorm running stats, dropout
# masks, Adam slots and the Polyak average.
STATEFUL = {"optim.update": "adam", "optim.lr": 2e-3, "train.average": 0.9,
            "model.layers": [{"affine": {"out": 40}}, "batchnorm", "relu", {"dropout": {"keep": 0.8}},
                             {"affine": {"out": 10}}]}


def codes(result):
    return [f.code for f in result.findings]


def stateful(epochs):
    return load_recipe("two-layer-digits", overrides={**STATEFUL, "train.epochs": epochs})


def assert_same_run(a, b):
    for which in ("last", "best", "average"):
        ca, cb = a.checkpoints[which], b.checkpoints[which]
        assert set(ca.params) == set(cb.params)
        for name in ca.params:
            assert np.array_equal(ca.params[name], cb.params[name]), (which, name)
        for name in ca.buffers:
            assert np.array_equal(ca.buffers[name], cb.buffers[name]), (which, name)
    oa, ob = a.checkpoints["last"].optimizer, b.checkpoints["last"].optimizer
    assert set(oa) == set(ob) and all(np.array_equal(oa[k], ob[k]) for k in oa)
    assert np.array_equal(a.history["iteration"]["loss"], b.history["iteration"]["loss"])
    for key, values in a.history["epoch"].items():
        assert np.array_equal(values, b.history["epoch"][key], equal_nan=True), key


def test_default_recipe_trains_and_logs_everything(tmp_path):
    result = train(load_recipe("two-layer-digits"), out=tmp_path / "run.h5")
    m = result.metrics
    assert result.status == "pass" and result.findings == []
    assert m["epochs_run"] == 15 and m["val_accuracy"] > 0.95 and m["train_accuracy"] > 0.97
    assert m["final_loss"] < 0.2 and m["run_log"] == str(tmp_path / "run.h5")
    log = read_run_log(tmp_path / "run.h5")
    assert log.status == "finished" and log.attrs["seed"] == 0
    assert "affine: {out: 50}" in log.recipe_yaml or "out: 50" in log.recipe_yaml
    assert log.result["metrics"]["val_accuracy"] == m["val_accuracy"]
    iterations = log.history["iteration"]
    assert len(iterations["loss"]) == len(iterations["lr"]) == m["iterations"] == 15 * 15
    epochs = log.history["epoch"]
    assert list(epochs["epoch"]) == list(range(1, 16))
    ratios = log.history["monitors"]["update_ratio"]
    assert set(ratios) == {"0.W", "2.W"}                            # weights only
    assert all(1e-5 < np.median(r) < 1e-1 for r in ratios.values())
    assert set(log.history["monitors"]["grad_norm"]) == {"0.W", "0.b", "2.W", "2.b"}
    assert np.all(log.history["layers"]["1.relu"]["dead"] < 0.1)
    best = log.checkpoints["best"]
    assert best.attrs["val_accuracy"] == max(epochs["val_accuracy"]) == m["best_val_accuracy"]
    assert set(log.checkpoints) == {"last", "best"}                 # no average asked for


def test_two_epochs_plus_resume_equals_four_straight(tmp_path):
    train(stateful(4), out=tmp_path / "straight.h5")
    train(stateful(2), out=tmp_path / "split.h5")
    resumed = recipe_for_resume(tmp_path / "split.h5", {"train.epochs": 4})
    assert resumed.train.epochs == 4 and resumed.optim.update == "adam"
    result = train(resumed, resume=tmp_path / "split.h5")
    assert result.metrics["epochs_run"] == 4 and result.metrics["run_log"] == str(tmp_path / "split.h5")
    straight, split = read_run_log(tmp_path / "straight.h5"), read_run_log(tmp_path / "split.h5")
    assert_same_run(straight, split)
    assert straight.checkpoints["last"].buffers                     # batchnorm running stats
    assert straight.result["metrics"]["average_val_accuracy"] == result.metrics["average_val_accuracy"]


def test_a_diverged_run_resumed_at_a_sane_lr_is_the_run_at_that_lr(tmp_path):
    # the log of a diverged run records the steps past its last checkpoint; resuming
    # kept them, so they were counted twice (78 losses for 75 steps) and averaged into
    # the first resumed epoch's training loss (7.4 instead of 2.2)
    diverging = load_recipe("broken/lr-too-high", overrides={"train.epochs": 2})
    assert train(diverging, out=tmp_path / "diverged.h5").metrics["diverged"]
    sane = {"optim.lr": 0.03, "train.epochs": 2}
    train(recipe_for_resume(tmp_path / "diverged.h5", sane), resume=tmp_path / "diverged.h5")
    train(load_recipe("broken/lr-too-high", overrides=sane), out=tmp_path / "sane.h5")
    resumed, straight = read_run_log(tmp_path / "diverged.h5"), read_run_log(tmp_path / "sane.h5")
    assert len(resumed.history["iteration"]["loss"]) == resumed.attrs["iterations"] == 30
    assert np.array_equal(resumed.history["iteration"]["loss"], straight.history["iteration"]["loss"])
    for key, values in straight.history["epoch"].items():
        assert np.array_equal(values, resumed.history["epoch"][key], equal_nan=True), key
    for name, value in straight.checkpoints["last"].params.items():
        assert np.array_equal(value, resumed.checkpoints["last"].params[name]), name


def test_interrupt_mid_epoch_saves_and_resumes_exactly(tmp_path):
    def kill_at_iteration_20(event):       # a real SIGTERM, delivered inside the loop
        if event.kind == "iteration" and event.iteration == 20:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted) as stop:
        train(stateful(3), out=tmp_path / "cut.h5", progress=kill_at_iteration_20)
    assert stop.value.iteration == 20 and stop.value.epoch == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL       # handler restored
    log = read_run_log(tmp_path / "cut.h5")
    assert log.status == "interrupted" and log.result is None
    last = log.checkpoints["last"]
    assert last.attrs["iteration"] == 20 and last.attrs["batch_in_epoch"] == 5
    assert len(log.history["iteration"]["loss"]) == 20 and len(log.history["epoch"]["epoch"]) == 1
    partial = result_from_run_log(log)
    assert partial.metrics["partial"] is True and partial.metrics["epochs_run"] == 1

    train(recipe_for_resume(tmp_path / "cut.h5"), resume=tmp_path / "cut.h5")
    train(stateful(3), out=tmp_path / "straight.h5")
    assert_same_run(read_run_log(tmp_path / "straight.h5"), read_run_log(tmp_path / "cut.h5"))


def test_huge_learning_rate_aborts_early_with_loss_diverged(tmp_path):
    recipe = load_recipe("two-layer-digits", overrides={"optim.lr": 1e4})
    result = train(recipe, out=tmp_path / "nan.h5")
    assert codes(result) == ["loss_diverged"] and result.status == "fail"
    finding = result.findings[0]
    assert "learning rate" in finding.fix and finding.evidence["lr"] == 1e4
    assert result.metrics["iterations"] < 15                        # within the first epoch
    log = read_run_log(tmp_path / "nan.h5")
    assert log.status == "diverged" and log.result["status"] == "fail"
    # the checkpoint is the last good state (here: the initial weights), not NaNs
    assert all(np.all(np.isfinite(v)) for v in log.checkpoints["last"].params.values())


def test_learning_rate_far_too_low_is_a_plateau(tmp_path):
    recipe = load_recipe("two-layer-digits", overrides={"optim.lr": 1e-7, "train.epochs": 4})
    result = train(recipe, out=tmp_path / "slow.h5")
    assert "loss_plateau" in codes(result) and "update_ratio_low" in codes(result)
    assert result.status == "fail"


def test_learning_rate_too_low_falls_slowly(tmp_path):
    recipe = load_recipe("two-layer-digits", overrides={"optim.lr": 1e-4})
    result = train(recipe, out=tmp_path / "slow.h5")
    plateau = next(f for f in result.findings if f.code == "loss_plateau")
    assert plateau.severity == "warn" and "slowly" in plateau.message
    assert result.status == "warn"


def test_small_init_in_a_deeper_net_is_a_late_start(tmp_path):
    recipe = load_recipe("two-layer-digits", overrides={
        "model.init": {"normal": 0.01}, "train.epochs": 30,
        "model.layers": [{"affine": {"out": 50}}, "relu", {"affine": {"out": 50}}, "relu",
                         {"affine": {"out": 10}}]})
    result = train(recipe, out=tmp_path / "late.h5")
    assert codes(result) == ["late_start"]
    assert result.findings[0].evidence["flat_fraction"] > 0.2
    assert result.metrics["val_accuracy"] > 0.9        # it does learn, late


def test_a_tiny_training_set_overfits(tmp_path):
    recipe = load_recipe("two-layer-digits", overrides={
        "data.limit": 60, "model.reg": 0.0, "train.epochs": 60, "train.batch_size": 20})
    result = train(recipe, out=tmp_path / "over.h5")
    assert result.metrics["train_accuracy"] == 1.0
    assert "overfitting" in codes(result)
    gap = next(f for f in result.findings if f.code == "overfitting").evidence["gap"]
    assert gap > 0.1


def test_resume_errors(tmp_path):
    train(load_recipe("two-layer-digits", overrides={"train.epochs": 1}), out=tmp_path / "a.h5")
    other = load_recipe("two-layer-digits", overrides={"model.layers.0.affine.out": 30})
    with pytest.raises(BabysitError, match="do not fit|does not fit|shape"):
        train(other, resume=tmp_path / "a.h5")
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(BabysitError):
        train(load_recipe("two-layer-digits"), resume=tmp_path / "junk.h5")
    with pytest.raises(BabysitError):
        recipe_for_resume(tmp_path / "missing.h5")


# -- a failing train means a bad outcome (calibration issue) -----------------------------

def severities(result):
    return {f.code: f.severity for f in result.findings}


def test_dead_units_in_a_run_near_the_best_are_a_warning(tmp_path):
    # convnet-digits at lr 0.0316 ends at ~97% validation accuracy (the best LR
    # reaches ~97.5%) with 60% of a ReLU layer dead: a cause to report, not a failure.
    result = train(load_recipe("convnet-digits", overrides={"optim.lr": 0.0316}),
                   out=tmp_path / "run.h5")
    assert result.metrics["val_accuracy"] > 0.95
    assert severities(result).get("dead_relu") == "warn"
    assert result.status != "fail"


def test_regularization_that_overwhelms_the_data_fails_at_chance(tmp_path):
    # He init, 64 hidden units, SGD 0.1, reg 1.0: the L2 pull wins, every weight
    # goes to 0 and the run ends at chance. It used to exit 0 with two warnings.
    spec = load_recipe("two-layer-digits", overrides={
        "model.init": "he", "model.layers.0.affine.out": 64, "model.reg": 1.0,
        "optim.update": "sgd", "optim.lr": 0.1, "train.epochs": 10})
    result = train(spec, out=tmp_path / "run.h5")
    assert result.metrics["val_accuracy"] < 0.15
    assert result.status == "fail"
    finding = next(f for f in result.findings if f.code == "reg_too_strong")
    assert finding.severity == "fail" and finding.layer == "0.affine"
    assert "ended at chance" in finding.message and "lower model.reg" in finding.fix
    assert finding.evidence["shrink"]["0.W"] < 0.01


def test_a_moderately_strong_l2_term_is_a_warning(tmp_path):
    result = train(load_recipe("two-layer-digits", overrides={"model.reg": 0.316}),
                   out=tmp_path / "run.h5")
    assert 0.5 < result.metrics["val_accuracy"] < 0.9
    assert severities(result).get("reg_too_strong") == "warn"
    assert result.status == "warn"


def test_a_run_at_chance_always_fails(tmp_path):
    # random labels (gaussian data): nothing to generalize, validation stays at chance
    spec = load_recipe("two-layer-digits", overrides={
        "data.source": {"builtin": "gaussian", "n": 400, "dim": 20, "classes": 4},
        "model.layers.2.affine.out": 4, "train.epochs": 3})
    result = train(spec, out=tmp_path / "run.h5")
    assert result.status == "fail"
    failing = [f for f in result.findings if f.severity == "fail"]
    assert failing and "chance" in failing[0].message


def test_spiral_at_a_high_lr_with_dead_units_is_not_a_failure(tmp_path):
    # spiral-mlp at lr 0.1 ends at 95-100% validation accuracy with half its ReLUs dead
    result = train(load_recipe("spiral-mlp", overrides={"optim.lr": 0.1}), out=tmp_path / "run.h5")
    assert result.metrics["val_accuracy"] > 0.9
    assert result.status != "fail"


def test_a_net_that_memorized_random_labels_fails_as_overfitting(tmp_path):
    # 300 random-label points in 200 dimensions: the net fits every training
    # label while validation stays at chance. The cause is memorization
    # (overfitting), not a lack of capacity (it used to fail as underfitting).
    spec = load_recipe("two-layer-digits", overrides={
        "data.source": {"builtin": "gaussian", "n": 300, "dim": 200, "classes": 4},
        "model.layers.2.affine.out": 4, "train.epochs": 30})
    result = train(spec, out=tmp_path / "run.h5")
    assert result.metrics["train_accuracy"] > 0.9 and result.metrics["val_accuracy"] < 0.3
    assert result.status == "fail"
    assert [f.code for f in result.findings if f.severity == "fail"] == ["overfitting"]
    finding = next(f for f in result.findings if f.code == "overfitting")
    assert "validation accuracy" in finding.message and "ended at chance" in finding.message
    assert "labels can be predicted" in finding.fix


def test_a_resume_that_changes_a_layer_keeps_a_readable_log(tmp_path):
    # --set model.layers.1=tanh on resume: 1.relu's records stop after 2 epochs, 1.tanh's
    # start; the log was rewritten and then refused as damaged (the run's only copy).
    # A key that is not babysit's in history/epoch would have stayed behind the same way.
    import h5py

    from babysit.cli import cli
    from click.testing import CliRunner

    log = tmp_path / "base.h5"
    train(load_recipe("two-layer-digits", overrides={"train.epochs": 2}), out=log)
    with h5py.File(log, "a") as handle:
        handle["history/epoch/bogus"] = np.zeros(2)
    resumed = recipe_for_resume(log, {"train.epochs": 3, "model.layers.1": "tanh"})
    train(resumed, resume=log)
    history = read_run_log(log).history
    assert len(history["epoch"]["epoch"]) == 3 and "bogus" not in history["epoch"]
    assert len(history["layers"]["1.relu"]["dead"]) == 2
    assert CliRunner().invoke(cli, ["report", str(log), "-q"]).exit_code == 0
    # index i is epoch i + 1: 1.tanh's first record is epoch 3's, not shown as epoch 1's
    assert np.isnan(history["layers"]["1.tanh"]["std"][:2]).all()
    assert np.isfinite(history["layers"]["1.tanh"]["std"][2])
    train(recipe_for_resume(log, {"train.epochs": 4, "model.layers.1": "relu"}), resume=log)
    dead = read_run_log(log).history["layers"]["1.relu"]["dead"]
    assert len(dead) == 4 and np.isnan(dead[2]) and np.isfinite(dead[[0, 1, 3]]).all()
    shown = CliRunner().invoke(cli, ["report", str(log), "--json", str(tmp_path / "r.json")])
    assert shown.exit_code == 0


def test_a_layer_a_resume_replaced_is_not_judged_after_training(tmp_path):
    # 1.relu's records stop at epoch 2 when a resume swaps it for tanh: its last
    # value (90% dead here) said nothing of the model trained, yet dead_relu named it
    import h5py

    log = tmp_path / "run.h5"
    train(load_recipe("two-layer-digits", overrides={"train.epochs": 2, "data.limit": 300}), out=log)
    with h5py.File(log, "a") as handle:
        handle["history/layers/1.relu/dead"][...] = [0.6, 0.9]
    result = train(recipe_for_resume(log, {"train.epochs": 3, "model.layers.1": "tanh"}), resume=log)
    assert "dead_relu" not in [f.code for f in result.findings]
    kept = read_run_log(log).history["layers"]["1.relu"]["dead"]
    assert list(kept) == [0.6, 0.9]                      # the record itself stays


def test_runs_started_in_the_same_second_get_their_own_default_logs(tmp_path, monkeypatch):
    # runs/<name>-<time>.h5 has a one-second clock: two runs started together shared
    # one log (one was lost) or the second failed on a lock the user never chose
    from babysit.diagnostics.train import trainer
    from tests.test_locks import held_by_another_process

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer.time, "strftime", lambda *args: "20261130-120000")
    recipe = load_recipe("two-layer-digits", overrides={"train.epochs": 1})
    first = train(recipe).metrics["run_log"]                        # written and done
    running = held_by_another_process(tmp_path / "runs/two-layer-digits-20261130-120000-2.h5")
    mine = held_by_another_process(tmp_path / "mine.h5")
    try:
        third = train(recipe).metrics["run_log"]
        with pytest.raises(BabysitError, match="being written by another babysit process"):
            train(recipe, out=tmp_path / "mine.h5")                 # a path the user chose is theirs
    finally:
        for child in (running, mine):
            child.stdin.close()
            child.wait(timeout=30)
    assert first == "runs/two-layer-digits-20261130-120000.h5"
    assert third == "runs/two-layer-digits-20261130-120000-3.h5"
