"""The torch model section of a recipe (validation needs no torch: these always run)."""

from __future__ import annotations

import pytest

from babysit.errors import RecipeError
from babysit.recipes import TorchModelSection, load_recipe, recipe_from_yaml

BASE = "data: {source: 'builtin:spiral'}\nmodel:\n"


def recipe(model_lines: str, overrides=None):
    return recipe_from_yaml(BASE + model_lines, origin="r.yaml", overrides=overrides)


def test_a_torch_section_resolves_with_its_defaults_and_round_trips():
    r = recipe("  torch: pkg.nets:make\n  kwargs: {hidden: 20}\n")
    assert isinstance(r.model, TorchModelSection) and r.model.layers == ()
    assert r.model.to_dict() == {"torch": "pkg.nets:make", "kwargs": {"hidden": 20}, "init": "module",
                                 "loss": "softmax", "reg": 0.0, "dropout": True}
    assert recipe_from_yaml(r.to_yaml()) == r
    changed = r.with_overrides({"model.kwargs.hidden": 30, "model.init": "he", "model.dropout": False})
    assert changed.model.kwargs == {"hidden": 30} and changed.model.init == "he"
    assert changed.model.dropout is False
    assert load_recipe("torch-convnet-digits").model.torch == "babysit.torch.examples:convnet"


@pytest.mark.parametrize("model_lines, message", [
    ("  torch: nets.make\n", r"model.torch must name a factory as 'pkg.module:factory', got 'nets.make'"),
    ("  torch: a:b\n  kwarg: {}\n", r"unknown key 'kwarg' at model \(a torch model\) \(line 4\); did you "
                                   "mean 'kwargs'"),
    ("  torch: a:b\n  init: xavierr\n", r"unknown value 'xavierr' for model.init .*did you mean 'xavier'"),
    ("  torch: a:b\n  dropout: 0\n", "model.dropout must be true or false, got 0"),
    ("  torch: a:b\n  reg: -1\n", "model.reg must be a non-negative number"),
    ("  torch: a:b\n  layers: [relu]\n", "either a list of layers or a torch factory"),
])
def test_bad_torch_sections_are_located_errors(model_lines, message):
    with pytest.raises(RecipeError, match=message):
        recipe(model_lines)
