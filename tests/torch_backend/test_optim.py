"""torch.optim behind the engine's optimizer interface: the same updates, exact resumes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from babysit.engine.optim import RULES, make_optimizer, make_schedule  # noqa: E402
from babysit.errors import ModelError  # noqa: E402
from babysit.torch.optim import TORCH_RULES, TorchOptimizer  # noqa: E402

SHAPES = {"a.weight": (4, 3), "a.bias": (4,)}
SECTION = {"lr": 0.05, "momentum": 0.8, "decay_rate": 0.9, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
           "decay": {"kind": "step", "every": 2, "factor": 0.3}}


def pair(update, dtype=np.float64):
    """The engine's optimizer and the torch one over equal starting parameters."""
    rng = np.random.default_rng(0)
    start = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    tensors = {name: torch.nn.Parameter(torch.from_numpy(value.copy())) for name, value in start.items()}
    views = {name: tensor.detach().numpy() for name, tensor in tensors.items()}
    section = dict(SECTION, update=update)
    engine_params = {name: value.copy() for name, value in start.items()}
    return (make_optimizer(section, engine_params), engine_params,
            TorchOptimizer(section, tensors, views), views, make_schedule(section))


def grads_at(step, dtype=np.float64):
    rng = np.random.default_rng(100 + step)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


@pytest.mark.parametrize("update", sorted(TORCH_RULES))
def test_every_rule_updates_as_the_engine_does_with_a_decaying_lr(update):
    """Float64, 8 steps over 4 'epochs' of a step decay: the formulas agree to 1e-12
    (momentum and nesterov included: their buffers are rescaled when the lr changes)."""
    engine, engine_params, torch_opt, views, schedule = pair(update)
    for step in range(8):
        lr = schedule(step // 2)
        grads = grads_at(step)
        engine.step(grads, lr)
        torch_opt.step(grads, lr)
        for name in SHAPES:
            np.testing.assert_allclose(views[name], engine_params[name], rtol=1e-12, atol=1e-13,
                                       err_msg=f"{update} step {step} {name}")


def test_the_mapping_covers_the_engines_rules():
    assert set(TORCH_RULES) == set(RULES) - {"lbfgs"}


@pytest.mark.parametrize("update", sorted(TORCH_RULES))
def test_a_restored_state_continues_with_the_same_bits(update):
    _, _, straight, straight_views, schedule = pair(update, np.float32)
    _, _, first, first_views, _ = pair(update, np.float32)
    for step in range(3):
        straight.step(grads_at(step, np.float32), schedule(step // 2))
        first.step(grads_at(step, np.float32), schedule(step // 2))
    state = first.state_dict()
    assert state["t"] == 3 and all(isinstance(v, (int, float)) or v.dtype == np.float32
                                   for v in state.values())
    _, _, resumed, resumed_views, _ = pair(update, np.float32)
    for name in SHAPES:
        resumed_views[name][...] = first_views[name]
    resumed.load_state_dict(state)
    for step in range(3, 7):
        straight.step(grads_at(step, np.float32), schedule(step // 2))
        resumed.step(grads_at(step, np.float32), schedule(step // 2))
    for name in SHAPES:
        assert np.array_equal(resumed_views[name], straight_views[name]), (update, name)


def test_bad_sections_and_states_are_model_errors():
    tensors = {"w": torch.nn.Parameter(torch.zeros(2, 2))}
    views = {"w": tensors["w"].detach().numpy()}
    with pytest.raises(ModelError, match="unknown update 'sgdd'"):
        TorchOptimizer({"update": "sgdd", "lr": 0.1}, tensors, views)
    with pytest.raises(ModelError, match=r"optim: momentum must be a number in \[0, 1\)"):
        TorchOptimizer({"update": "momentum", "lr": 0.1, "momentum": 1.5}, tensors, views)
    opt = TorchOptimizer({"update": "adam", "lr": 0.1}, tensors, views)
    with pytest.raises(ModelError, match="does not fit a torch adam optimizer"):
        opt.load_state_dict({"t": 1, "w/m": np.zeros((2, 2))})
    with pytest.raises(ModelError, match="gradients do not match"):
        opt.step({"v": np.zeros((2, 2))}, 0.1)
