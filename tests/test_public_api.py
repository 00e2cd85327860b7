"""The spec's Python API, end to end: a bundled YAML recipe trains through the public names."""

import numpy as np

import babysit
from babysit.engine.solver import Solver


def test_recipe_to_trained_model_through_the_public_api():
    recipe = babysit.load_recipe("two-layer-digits", overrides={"optim.lr": 3e-2})
    data = babysit.load_data(recipe.data)
    model = babysit.build_model(recipe.model, input_shape=data.input_shape,
                                num_classes=data.num_classes,
                                rng=np.random.default_rng(0), dtype=np.float32)
    assert set(model.params) == {"0.W", "0.b", "2.W", "2.b"}
    assert model.params["0.W"].shape == (64, 50) and model.params["0.W"].dtype == np.float32

    scores = model.forward(data.X_val)
    assert scores.shape == (len(data.X_val), 10)
    loss, grads = model.loss(data.X_train[:100], data.y_train[:100])
    assert abs(loss - np.log(10)) < 0.1          # small scores at init: loss near ln C
    assert set(grads) == set(model.params)

    solver = Solver(model, recipe.optim, recipe.train.batch_size, np.random.default_rng([0, 1]))
    for epoch in range(5):
        for batch in solver.batches(len(data.X_train)):
            solver.step(data.X_train[batch], data.y_train[batch], solver.lr_at(epoch))
    assert model.accuracy(data.X_val, data.y_val) > 0.9


def test_unknown_public_name_is_an_attribute_error():
    try:
        babysit.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
