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

    def loss(self, X, y, reg=None, input_grad=True):  # the model protocol's signature
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
        Solver(Quadratic(), {"lr": 0.1, "update": "adamw"}, 2, np.random.default_rng(0))


# -- the one training loop -------------------------------------------------------

def test_run_stops_after_steps_and_counts_epochs():
    model = Quadratic()
    solver = Solver(model, {"lr": 0.1}, 2, np.random.default_rng(0))
    X, y = np.zeros((5, 2)), np.zeros(5, dtype=int)  # 3 batches per epoch
    state = solver.run(X, y, steps=7)
    assert (state.iteration, state.epoch, state.batch, state.stopped) == (7, 2, 1, None)
    assert len(model.calls) == 7
    state = Solver(Quadratic(), {"lr": 0.1}, 2, np.random.default_rng(0)).run(X, y, epochs=2)
    assert (state.iteration, state.epoch, state.batch) == (6, 2, 0)


def test_run_uses_the_schedule_per_epoch_unless_an_lr_is_given():
    from babysit.engine.solver import Callback

    class LRs(Callback):
        def __init__(self):
            self.lrs = []

        def on_step_end(self, state):
            self.lrs.append(state.lr)

    X, y = np.zeros((4, 2)), np.zeros(4, dtype=int)
    optim = {"lr": 1.0, "decay": {"kind": "step", "every": 1, "factor": 0.5}}
    seen = LRs()
    Solver(Quadratic(), optim, 2, np.random.default_rng(0)).run(X, y, epochs=3, callbacks=[seen])
    assert seen.lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    seen = LRs()
    Solver(Quadratic(), optim, 2, np.random.default_rng(0)).run(X, y, epochs=2, lr=0.3, callbacks=[seen])
    assert seen.lrs == [0.3] * 4
    seen = LRs()
    Solver(Quadratic(), optim, 2, np.random.default_rng(0)).run(
        X, y, steps=3, lr=lambda state: 10.0 ** state.iteration, callbacks=[seen])
    assert seen.lrs == [1.0, 10.0, 100.0]


def test_divergence_stops_the_run_after_the_callbacks_saw_the_step():
    from babysit.engine.solver import Callback, Divergence

    class Seen(Callback):
        def __init__(self):
            self.steps = []

        def on_step_end(self, state):
            self.steps.append((state.iteration, state.diverged))

    X, y = np.zeros((4, 2)), np.zeros(4, dtype=int)
    seen = Seen()
    # lr 3 on 0.5 * w**2 overshoots: w -> -2w every step, the loss x4 per step
    state = Solver(Quadratic(), {"lr": 3.0}, 2, np.random.default_rng(0)).run(
        X, y, epochs=10, divergence=Divergence(), callbacks=[seen])
    assert state.stopped == "diverged" and state.iteration == 2
    assert seen.steps == [(1, False), (2, True)]


def test_divergence_rule():
    from babysit.engine.solver import DIVERGENCE_FACTOR, Divergence

    rule = Divergence()
    assert not rule(2.0) and rule.reference == 2.0
    assert not rule(DIVERGENCE_FACTOR * 2.0)
    assert rule(DIVERGENCE_FACTOR * 2.0 + 1e-9)
    assert rule(float("nan")) and rule(float("inf"))
    assert "over 3x its start 2" in rule.describe(7.0)
    assert Divergence(reference=1.0)(2.9) is False


def test_a_callback_stops_the_run_and_resuming_skips_the_done_batches():
    from babysit.engine.solver import Callback, LoopState

    class StopAt(Callback):
        def on_step_end(self, state):
            return state.iteration == 2

    X = np.arange(10, dtype=float).reshape(5, 2)
    y = np.zeros(5, dtype=int)
    straight = Quadratic()
    Solver(straight, {"lr": 0.1}, 2, np.random.default_rng(3)).run(X, y, epochs=2)
    first = Quadratic()
    state = Solver(first, {"lr": 0.1}, 2, np.random.default_rng(3)).run(X, y, epochs=2,
                                                                         callbacks=[StopAt()])
    assert state.stopped == "callback" and (state.epoch, state.batch) == (0, 2)
    resumed = Quadratic()
    resumed.params["w"][...] = first.params["w"]
    again = LoopState(epoch=state.epoch, batch=state.batch, iteration=state.iteration)
    Solver(resumed, {"lr": 0.1}, 2, np.random.default_rng(3)).run(X, y, epochs=2, state=again)
    assert np.array_equal(resumed.params["w"], straight.params["w"])
    assert [c[0].tolist() for c in first.calls + resumed.calls] == [c[0].tolist() for c in straight.calls]


@pytest.mark.parametrize("stop_after", [1, 2, 3, 5, 6, 7])
def test_a_run_stopped_mid_epoch_and_continued_takes_the_batches_of_one_straight_run(stop_after):
    # 10 examples in batches of 4: 3 steps an epoch, so these stops fall mid-epoch,
    # on an epoch's last step and at epoch boundaries
    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.zeros(10, dtype=int)
    straight = Quadratic()
    Solver(straight, {"lr": 0.1}, 4, np.random.default_rng(5)).run(X, y, epochs=3)
    split = Quadratic()
    solver = Solver(split, {"lr": 0.1}, 4, np.random.default_rng(5))
    state = solver.run(X, y, epochs=3, steps=stop_after)
    assert state.iteration == stop_after
    solver.rng.standard_normal(7)   # whatever moved the generator meanwhile is undone
    solver.run(X, y, epochs=3, state=state)
    assert [c[0].tolist() for c in split.calls] == [c[0].tolist() for c in straight.calls]
    assert np.array_equal(split.params["w"], straight.params["w"])


def test_a_state_carries_where_its_epoch_draws_its_batches_to_another_solver():
    # train --resume: a new process, a fresh generator, the stored epoch_rng
    from babysit.engine.solver import LoopState

    X = np.arange(20, dtype=float).reshape(10, 2)
    y = np.zeros(10, dtype=int)
    straight = Quadratic()
    Solver(straight, {"lr": 0.1}, 4, np.random.default_rng(5)).run(X, y, epochs=3)
    first = Quadratic()
    state = Solver(first, {"lr": 0.1}, 4, np.random.default_rng(5)).run(X, y, epochs=3, steps=4)
    assert (state.epoch, state.batch) == (1, 1)
    resumed = Quadratic()
    resumed.params["w"][...] = first.params["w"]
    stored = LoopState(epoch=state.epoch, batch=state.batch, iteration=state.iteration,
                       epoch_rng=dict(state.epoch_rng))
    Solver(resumed, {"lr": 0.1}, 4, np.random.default_rng(99)).run(X, y, epochs=3, state=stored)
    assert [c[0].tolist() for c in first.calls + resumed.calls] == [c[0].tolist() for c in straight.calls]
