"""Recipes for L-BFGS: train.batch_size full, optim.memory, and the errors that say why."""

import pytest

from babysit.errors import RecipeError
from babysit.recipes import load_recipe, recipe_from_yaml

LBFGS = """\
data: {source: builtin:digits}
model:
  layers:
    - affine: {out: 20}
    - relu
    - dropout: {keep: 1.0}
    - affine: {out: 10}
optim:
  update: lbfgs
  lr: 1.0
train:
  batch_size: full
"""


def test_an_lbfgs_recipe_loads_with_its_memory_and_a_full_batch():
    recipe = recipe_from_yaml(LBFGS)
    assert recipe.optim.update == "lbfgs" and recipe.optim.memory == 10
    assert recipe.train.batch_size == "full"
    again = recipe_from_yaml(recipe.to_yaml())
    assert again == recipe and isinstance(again.optim.memory, int)
    assert recipe.with_overrides({"optim.memory": 3}).optim.memory == 3
    bundled = load_recipe("two-layer-digits-lbfgs")
    assert bundled.optim.update == "lbfgs" and bundled.train.batch_size == "full"


def test_full_batch_works_for_every_rule_and_old_recipes_read_without_memory():
    recipe = load_recipe("two-layer-digits", overrides={"train.batch_size": "full"})
    assert recipe.train.batch_size == "full" and recipe.optim.memory == 10
    assert recipe_from_yaml(LBFGS.replace("  lr: 1.0\n", "  lr: 1.0\n  memory: 5\n")).optim.memory == 5


@pytest.mark.parametrize("overrides, words", [
    ({"train.batch_size": 100}, ["(line 12)", "train.batch_size: full, got 100",
                                 "every mini-batch is a different one"]),
    ({"model.layers.2.dropout.keep": 0.5}, ["model.layers.2, keep 0.5", "random mask",
                                            "set keep: 1.0"]),
    ({"optim.decay": {"kind": "step", "every": 5}}, ["no learning-rate decay", "line search",
                                                     "optim.decay: none"]),
    ({"optim.memory": 0}, ["optim.memory must be a positive integer, got 0"]),
    ({"train.batch_size": "all"}, ["train.batch_size must be a positive integer or 'full', got 'all'"]),
])
def test_what_lbfgs_cannot_do_is_a_located_recipe_error(tmp_path, overrides, words):
    path, text, overrides = tmp_path / "lbfgs.yaml", LBFGS, dict(overrides)
    if "train.batch_size" in overrides:   # written in the file: the error names its line
        text = text.replace("batch_size: full", f"batch_size: {overrides.pop('train.batch_size')}")
    path.write_text(text)
    with pytest.raises(RecipeError) as error:
        load_recipe(str(path), overrides=overrides or None)
    message = str(error.value)
    assert message.startswith(f"{path}: ") or message.startswith("--set ")
    for word in words:
        assert word in message, message


def test_switching_a_recipe_to_lbfgs_by_override_names_what_else_to_change():
    with pytest.raises(RecipeError, match=r"two-layer-digits.yaml: optim.update lbfgs needs "
                                          r"train.batch_size: full, got 100.*\(line \d+\)"):
        load_recipe("two-layer-digits", overrides={"optim.update": "lbfgs"})
    recipe = load_recipe("two-layer-digits", overrides={"optim.update": "lbfgs",
                                                        "train.batch_size": "full"})
    assert recipe.optim.update == "lbfgs"
