"""update: lbfgs through the one training loop: overfit-tiny, train, exact resume, gradcheck, lr-probe."""

import numpy as np

from babysit.diagnostics.gradcheck import gradcheck_recipe
from babysit.diagnostics.lr_probe import lr_probe
from babysit.diagnostics.overfit import overfit_tiny
from babysit.diagnostics.train import recipe_for_resume, train
from babysit.recipes import load_recipe
from babysit.store import read_run_log


def lbfgs(epochs=10, **overrides):
    return load_recipe("two-layer-digits-lbfgs", overrides={"train.epochs": epochs, **overrides})


def test_overfit_tiny_memorizes_twenty_examples_in_a_few_iterations():
    result = overfit_tiny(lbfgs())
    m = result.metrics
    assert result.status == "pass" and m["train_accuracy"] == 1.0
    assert m["epochs_run"] <= 10 and m["final_loss"] < m["loss_target"]


def test_train_runs_one_lbfgs_iteration_per_epoch_and_learns(tmp_path):
    result = train(lbfgs(), out=tmp_path / "run.h5")
    m = result.metrics
    assert result.status == "pass" and m["iterations"] == m["epochs_run"] == 10
    assert m["val_accuracy"] > 0.9 and m["converged"] is False
    log = read_run_log(tmp_path / "run.h5")
    assert log.attrs["iterations_per_epoch"] == 1
    assert set(log.checkpoints["last"].optimizer) == {"t", "memory/s", "memory/y", "memory/converged"}
    assert log.checkpoints["last"].optimizer["memory/s"].shape == (10, 64 * 50 + 50 + 50 * 10 + 10)


def test_two_epochs_plus_resume_equals_four_straight(tmp_path):
    train(lbfgs(4, **{"optim.memory": 3}), out=tmp_path / "straight.h5")
    train(lbfgs(2, **{"optim.memory": 3}), out=tmp_path / "split.h5")
    train(recipe_for_resume(tmp_path / "split.h5", {"train.epochs": 4}), resume=tmp_path / "split.h5")
    a, b = read_run_log(tmp_path / "straight.h5"), read_run_log(tmp_path / "split.h5")
    for name, value in a.checkpoints["last"].params.items():
        assert np.array_equal(value, b.checkpoints["last"].params[name]), name
    assert np.array_equal(a.history["iteration"]["loss"], b.history["iteration"]["loss"])


def test_gradcheck_burn_in_and_lr_probe_accept_lbfgs():
    checked = gradcheck_recipe(lbfgs(), burn_in_steps=2)
    assert checked.status == "pass"
    # L-BFGS's line search picks every step: lr-probe says there is no range to probe
    probe = lr_probe(lbfgs(), lr_min=0.1, lr_max=10.0, steps=10)
    assert probe.status == "pass" and probe.metrics["trials"] == []
    assert "line search" in probe.metrics["note"]
