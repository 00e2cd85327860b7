"""A NumPy recipe and its torch twin (the same weights, copied across) agree, diagnosis by diagnosis.

The twin's factory (tests/torch_backend/twins.py) builds the engine's model for the
recipe's seed and copies its weights into an ``nn.Sequential``. Both recipes then go
through the diagnostics' public functions and are compared with each other, never with
fixed verdicts. Tolerances (float32 training, float64 gradient checks):

* sanity loss, loss with the cranked-up reg: relative 1e-5;
* init-stats rows (mean, std, near zero, dead, gradient norm): relative 1e-4 (absolute
  1e-6); the torch twin has one more row, the Flatten in front of the first Linear;
* gradcheck: the same status, finding codes and verdict band for every parameter;
* lr-probe: the same verdict for every probed LR, hence the same good range and suggestion;
* two epochs of training: every mini-batch loss within relative 1e-3, accuracies within 1%.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from babysit.diagnostics.gradcheck import band, gradcheck_recipe  # noqa: E402
from babysit.diagnostics.init_stats import init_stats  # noqa: E402
from babysit.diagnostics.lr_probe import lr_probe  # noqa: E402
from babysit.diagnostics.sanity import sanity_loss  # noqa: E402
from babysit.diagnostics.train import Trainer  # noqa: E402
from babysit.recipes import load_recipe  # noqa: E402

TWIN = "tests.torch_backend.twins:engine_twin"
ROW_KEYS = ("mean", "std", "near_zero", "dead", "grad_norm")


def twin(recipe):
    model = recipe.model.to_dict()
    return recipe.with_overrides({"model": {
        "torch": TWIN, "kwargs": {"layers": model["layers"], "init": model["init"], "seed": recipe.seed},
        "loss": model["loss"], "reg": model["reg"]}})


@pytest.fixture(scope="module")
def two_layer():
    numpy_recipe = load_recipe("two-layer-digits")
    return numpy_recipe, twin(numpy_recipe)


def codes(result):
    return sorted((f.code, f.severity, f.layer is None) for f in result.findings)


def param_pairs(numpy_params, torch_params):
    """NumPy ``"<i>.W"``/``"<i>.b"`` and torch ``"<j>.weight"``/``"<j>.bias"`` in model order."""
    assert len(numpy_params) == len(torch_params)
    return list(zip(numpy_params, torch_params))


def test_the_twin_holds_the_numpy_models_weights(two_layer):
    from babysit.diagnostics.common import build, load

    numpy_recipe, torch_recipe = two_layer
    data = load(numpy_recipe)
    a, b = build(numpy_recipe, data, 0), build(torch_recipe, data, 0)
    for (na, nb) in param_pairs(a.params, b.params):
        value = a.params[na].T if a.params[na].ndim == 2 else a.params[na]
        assert np.array_equal(value, b.params[nb]), (na, nb)


def test_sanity_loss_agrees(two_layer):
    a, b = (sanity_loss(recipe) for recipe in two_layer)
    for key in ("initial_loss", "loss_with_reg", "expected_loss"):
        assert b.metrics[key] == pytest.approx(a.metrics[key], rel=1e-5), key
    assert b.metrics["reg_used"] == a.metrics["reg_used"]
    assert (b.status, codes(b)) == (a.status, codes(a))


def compare_rows(numpy_rows, torch_rows, flatten="0"):
    torch_rows = [row for row in torch_rows if row["layer"] != flatten]   # the twin's Flatten
    assert len(numpy_rows) == len(torch_rows)
    for row_a, row_b in zip(numpy_rows, torch_rows):
        for key in ROW_KEYS:
            if row_a[key] is None:
                assert row_b[key] is None, (row_a["layer"], key)
            else:
                assert row_b[key] == pytest.approx(row_a[key], rel=1e-4, abs=1e-6), (row_a["layer"], key)


def test_init_stats_table_agrees(two_layer):
    a, b = (init_stats(recipe) for recipe in two_layer)
    compare_rows(a.metrics["layers"], b.metrics["layers"])
    assert b.metrics["input_std"] == pytest.approx(a.metrics["input_std"], rel=1e-6)
    assert (b.status, codes(b)) == (a.status, codes(a))


def test_gradcheck_verdicts_agree(two_layer):
    a, b = (gradcheck_recipe(recipe) for recipe in two_layer)
    assert (b.status, codes(b)) == (a.status, codes(a))
    assert a.metrics["has_kinks"] == b.metrics["has_kinks"]
    for na, nb in param_pairs(a.metrics["params"], b.metrics["params"]):
        verdicts = [band(m["params"][n]["judged_rel_error"], m["has_kinks"])
                    for m, n in ((a.metrics, na), (b.metrics, nb))]
        assert verdicts[0] == verdicts[1], (na, nb)


def test_lr_probe_suggestion_agrees(two_layer):
    a, b = (lr_probe(recipe) for recipe in two_layer)
    assert [t["verdict"] for t in b.metrics["trials"]] == [t["verdict"] for t in a.metrics["trials"]]
    assert b.metrics["suggested_lr"] == a.metrics["suggested_lr"]
    assert b.metrics["good_range"] == a.metrics["good_range"]
    assert (b.status, codes(b)) == (a.status, codes(a))


def test_two_epochs_of_training_agree(two_layer, tmp_path):
    runs = []
    for name, recipe in zip(("numpy", "torch"), two_layer):
        trainer = Trainer(recipe.with_overrides({"train.epochs": 2}), out=tmp_path / f"{name}.h5")
        runs.append((trainer.run(), np.asarray(trainer.history.loss)))
    (a, losses_a), (b, losses_b) = runs
    assert len(losses_a) == len(losses_b) == 2 * 15
    np.testing.assert_allclose(losses_b, losses_a, rtol=1e-3)
    assert b.metrics["final_loss"] == pytest.approx(a.metrics["final_loss"], rel=1e-3)
    for key in ("train_accuracy", "val_accuracy"):
        assert b.metrics[key] == pytest.approx(a.metrics[key], abs=0.01), key
    assert b.metrics["epochs_run"] == a.metrics["epochs_run"] == 2


def test_a_convnet_twin_agrees_on_sanity_init_stats_and_gradcheck():
    numpy_recipe = load_recipe("convnet-digits")
    torch_recipe = twin(numpy_recipe)
    a, b = sanity_loss(numpy_recipe), sanity_loss(torch_recipe)
    assert b.metrics["initial_loss"] == pytest.approx(a.metrics["initial_loss"], rel=1e-5)
    a, b = init_stats(numpy_recipe, batch_size=200), init_stats(torch_recipe, batch_size=200)
    compare_rows(a.metrics["layers"], b.metrics["layers"], flatten="3")
    assert (b.status, codes(b)) == (a.status, codes(a))
    a, b = gradcheck_recipe(numpy_recipe), gradcheck_recipe(torch_recipe)
    assert b.status == a.status and {c for c, _, _ in codes(b)} <= {c for c, _, _ in codes(a)} | {"kink_crossed"}


def test_lbfgs_trains_a_torch_model_as_it_trains_the_numpy_one():
    """lbfgs is babysit's own L-BFGS on both backends (over the torch model's NumPy views)."""
    from babysit.diagnostics.common import build, load
    from babysit.engine.solver import FULL_BATCH, Solver

    numpy_recipe = load_recipe("two-layer-digits").with_overrides(
        {"optim.update": "lbfgs", "train.batch_size": FULL_BATCH, "data.limit": 200})
    torch_recipe = twin(numpy_recipe)
    data = load(numpy_recipe)
    finals = []
    for recipe in (numpy_recipe, torch_recipe):
        model = build(recipe, data, 0, np.float64)
        solver = Solver(model, recipe.optim.to_dict(), FULL_BATCH, np.random.default_rng(0))
        assert type(solver.optimizer).__name__ == "LBFGS"
        state = solver.run(data.X_train, data.y_train, steps=4)
        finals.append((state.loss, model))
    (loss_a, a), (loss_b, b) = finals
    assert loss_b == pytest.approx(loss_a, rel=1e-6)
    for na, nb in param_pairs(a.params, b.params):
        value = a.params[na].T if a.params[na].ndim == 2 else a.params[na]
        np.testing.assert_allclose(b.params[nb], value, rtol=1e-5, atol=1e-8)
