"""Solver: the shared training step, shuffled batches, schedule and averaging."""

import numpy as np
import pytest

from babysit.engine.solver import Solver
from babysit.errors import ModelError


class Quadratic:
    """A stand-in model: loss = 0.5 * |w - mean(X)|^2, so each step is easy to predict."""

    def __init__(self):
        self.params = {"w": np.array([4.0, -2.0])}
        self.calls = []

    def loss(self, X, y):
        self.calls.append((np.array(X), np.array(y)))
        diff = self.params["w"] - X.mean(axis=0)
        return 0.5 * float(diff @ diff), {"w": diff.copy()}


def test_step_returns_the_loss_before_the_update_and_updates_in_place():
    model = Quadratic()
    w = model.params["w"]
    solver = Solver(model, {"update": "sgd", "lr": 0.5}, 2, np.random.default_rng(0))
    X = np.zeros((2, 2))
    loss = solver.step(X, np.array([0, 1]), 0.5)
    assert loss == pytest.approx(0.5 * (16 + 4))
    np.testing.assert_allclose(w, [2.0, -1.0])  # w -= 0.5 * w
    assert model.params["w"] is w
    assert solver.step(X, np.array([0, 1]), 0.5) == pytest.approx(0.5 * (4 + 1))
    assert solver.optimizer.t == 2


def test_batches_cover_every_example_once_and_keep_the_partial_batch():
    solver = Solver(Quadratic(), {"lr": 0.1}, 4, np.random.default_rng(0))
    batches = solver.batches(10)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert np.concatenate(batches).tolist() != list(range(10))  # shuffled
    assert all(b.dtype.kind == "i" for b in batches)
    # the next epoch is shuffled anew
    assert np.concatenate(solver.batches(10)).tolist() != np.concatenate(batches).tolist()


def test_batches_are_deterministic_for_a_seed():
    first = Solver(Quadratic(), {"lr": 0.1}, 3, np.random.default_rng(7)).batches(20)
    again = Solver(Quadratic(), {"lr": 0.1}, 3, np.random.default_rng(7)).batches(20)
    other = Solver(Quadratic(), {"lr": 0.1}, 3, np.random.default_rng(8)).batches(20)
    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    assert [b.tolist() for b in first] != [b.tolist() for b in other]


def test_batch_larger_than_the_data():
    batches = Solver(Quadratic(), {"lr": 0.1}, 100, np.random.default_rng(0)).batches(5)
    assert len(batches) == 1 and sorted(batches[0].tolist()) == [0, 1, 2, 3, 4]


def test_lr_at_follows_the_section_schedule():
    solver = Solver(Quadratic(), {"lr": 0.2, "decay": {"kind": "step", "every": 2, "factor": 0.1}},
                    1, np.random.default_rng(0))
    assert solver.lr_at(0) == pytest.approx(0.2)
    assert solver.lr_at(1) == pytest.approx(0.2)
    assert solver.lr_at(2) == pytest.approx(0.02)


def test_average_tracks_the_parameters():
    model = Quadratic()
    solver = Solver(model, {"update": "sgd", "lr": 0.5}, 2, np.random.default_rng(0), average=0.5)
    assert Solver(Quadratic(), {"lr": 0.5}, 2, np.random.default_rng(0)).average is None
    solver.step(np.zeros((2, 2)), np.array([0, 1]), 0.5)  # w: [4, -2] -> [2, -1]
    np.testing.assert_allclose(solver.average.params["w"], [3.0, -1.5])
    solver.step(np.zeros((2, 2)), np.array([0, 1]), 0.5)  # w -> [1, -.5]; avg = .5 [3, -1.5] + .5 [1, -.5]
    np.testing.assert_allclose(solver.average.params["w"], [2.0, -1.0])


def test_solver_uses_the_sections_update_rule():
    model = Quadratic()
    solver = Solver(model, {"update": "momentum", "momentum": 0.5, "lr": 0.5}, 2,
                    np.random.default_rng(0))
    X = np.zeros((2, 2))
    solver.step(X, np.array([0, 1]), 0.5)  # v = -.5 [4, -2] = [-2, 1]; w = [2, -1]
    solver.step(X, np.array([0, 1]), 0.5)  # v = .5 [-2, 1] - .5 [2, -1] = [-2, 1]; w = [0, 0]
    np.testing.assert_allclose(model.params["w"], [0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "10", True])
def test_bad_batch_size_is_rejected(batch_size):
    with pytest.raises(ModelError, match="batch_size"):
        Solver(Quadratic(), {"lr": 0.1}, batch_size, np.random.default_rng(0))


def test_bad_optim_section_is_rejected():
    with pytest.raises(ModelError, match="unknown update"):
        Solver(Quadratic(), {"lr": 0.1, "update": "lbfgs"}, 2, np.random.default_rng(0))
