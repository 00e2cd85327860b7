"""``babysit.torch.diagnose``: the protocol on a module plus arrays, the Result ``--json`` writes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

import babysit.torch  # noqa: E402
from babysit.diagnostics.common import build, load  # noqa: E402
from babysit.diagnostics.result import Result  # noqa: E402
from babysit.diagnostics.sanity import sanity_loss  # noqa: E402
from babysit.errors import BabysitError  # noqa: E402
from babysit.recipes import load_recipe  # noqa: E402

RECIPE = "torch-two-layer-digits"


@pytest.fixture(scope="module")
def recipe_and_arrays():
    recipe = load_recipe(RECIPE)
    data = load(recipe)   # standardized already: diagnose gets no preprocessing
    module = build(recipe, data, recipe.seed).module
    return recipe, module, data


def test_a_diagnosis_on_a_module_and_arrays_is_the_recipes_result(recipe_and_arrays):
    recipe, module, data = recipe_and_arrays
    result = babysit.torch.diagnose(module, data.X_train, data.y_train, X_val=data.X_val,
                                    y_val=data.y_val, command="sanity-loss", reg=recipe.model.reg)
    assert isinstance(result, Result)
    direct = sanity_loss(recipe).to_dict()
    ours = result.to_dict()
    assert ours["recipe"] == "notebook" and ours.pop("recipe") != direct.pop("recipe")
    assert ours == direct


def test_diagnose_leaves_the_module_and_the_torch_settings_alone(recipe_and_arrays):
    _, module, data = recipe_and_arrays
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = babysit.torch.diagnose(module, data.X_train[:300], data.y_train[:300],
                                        command="overfit-tiny", optim={"update": "adam", "lr": 1e-2})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert result.command == "overfit-tiny" and result.status == "pass"
    assert all(torch.equal(p, before[name]) for name, p in module.named_parameters())


def test_a_factory_works_too_and_bad_calls_are_babysit_errors():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    def factory(input_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Linear(input_shape[0], 8), torch.nn.Tanh(),
                                   torch.nn.Linear(8, num_classes))

    result = babysit.torch.diagnose(factory, X, y, command="gradcheck")
    assert result.status == "pass" and set(result.metrics["params"]) == {
        "0.weight", "0.bias", "2.weight", "2.bias"}
    with pytest.raises(BabysitError, match="unknown command 'search'"):
        babysit.torch.diagnose(factory, X, y, command="search")
    with pytest.raises(BabysitError, match="both X_val and y_val"):
        babysit.torch.diagnose(factory, X, y, X_val=X)
