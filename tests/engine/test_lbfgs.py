"""L-BFGS (update: lbfgs): checked against scipy's L-BFGS-B on the same full-batch loss.

Same memory, same first step (lr / ||g|| along -g, then the unit quasi-Newton
step), same strong Wolfe test: while both line searches accept their first
trial step the two runs take the same steps, and both end at the same loss.
"""

import math

import numpy as np
import pytest

from babysit.engine.builder import build_model
from babysit.engine.lbfgs import C1, C2, LBFGS, Point, strong_wolfe
from babysit.engine.optim import make_optimizer
from babysit.engine.solver import Callback, Solver
from babysit.errors import ModelError

MLP = {"layers": [{"affine": {"out": 8}}, "tanh", {"affine": {"out": 3}}], "reg": 1e-2}
SOFTMAX_REGRESSION = {"layers": [{"affine": {"out": 3}}], "reg": 1e-2}   # strictly convex


def problem(section, dtype=np.float64):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = build_model(section, input_shape=(5,), num_classes=3, rng=np.random.default_rng(1),
                        dtype=dtype)
    return model, X.astype(dtype), y


class Losses(Callback):
    """The full-batch loss after every step."""

    def __init__(self, model, X, y):
        self.model, self.X, self.y, self.values = model, X, y, []

    def on_step_end(self, state):
        self.values.append(self.model.loss(self.X, self.y)[0])


def babysit_run(section, steps, memory=10):
    model, X, y = problem(section)
    solver = Solver(model, {"update": "lbfgs", "lr": 1.0, "memory": memory}, "full",
                    np.random.default_rng(0))
    losses = Losses(model, X, y)
    solver.run(X, y, epochs=steps, callbacks=[losses])
    return model, losses.values, solver.optimizer


def scipy_run(section, steps, memory=10):
    """scipy's L-BFGS-B (no bounds) on the model's full-batch loss: (params, loss per iteration)."""
    optimize = pytest.importorskip("scipy.optimize")
    model, X, y = problem(section)
    names = list(model.params)

    def loss_and_grad(flat):
        offset = 0
        for name in names:
            x = model.params[name]
            x[...] = flat[offset:offset + x.size].reshape(x.shape)
            offset += x.size
        loss, grads = model.loss(X, y)
        return loss, np.concatenate([np.ravel(grads[n]) for n in names])

    start = np.concatenate([np.ravel(model.params[n]) for n in names])
    losses = []
    result = optimize.minimize(loss_and_grad, start, jac=True, method="L-BFGS-B",
                               callback=lambda x: losses.append(loss_and_grad(x)[0]),
                               options={"maxcor": memory, "maxiter": steps, "ftol": 0, "gtol": 0})
    return result.x, losses


def flat_params(model):
    return np.concatenate([np.ravel(x) for x in model.params.values()])


def test_first_iterations_are_scipy_lbfgsb_steps_on_a_small_mlp():
    # on this problem both line searches accept their first trial for 7 iterations
    _, ours, _ = babysit_run(MLP, 7)
    _, reference = scipy_run(MLP, 7)
    np.testing.assert_allclose(ours, reference, rtol=1e-12)
    assert ours[-1] < 0.75 * ours[0]


def test_small_mlp_ends_at_scipys_loss():
    model, ours, optimizer = babysit_run(MLP, 400)
    _, reference = scipy_run(MLP, 400)
    assert optimizer.converged
    assert ours[-1] == pytest.approx(reference[-1], rel=1e-6)


def test_convex_problem_reaches_scipys_minimizer():
    model, ours, optimizer = babysit_run(SOFTMAX_REGRESSION, 100)
    minimizer, reference = scipy_run(SOFTMAX_REGRESSION, 100)
    assert optimizer.converged
    # strictly convex (L2 >= 1e-2): |x - x*| <= |gradient| / 1e-2, and both gradients are ~1e-6
    np.testing.assert_allclose(flat_params(model), minimizer, atol=1e-4)
    assert ours[-1] == pytest.approx(reference[-1], rel=1e-9)


def test_a_small_memory_still_converges():
    _, ours, optimizer = babysit_run(SOFTMAX_REGRESSION, 300, memory=1)
    _, reference = scipy_run(SOFTMAX_REGRESSION, 300)
    assert optimizer.converged and ours[-1] == pytest.approx(reference[-1], rel=1e-7)


def test_converged_steps_change_nothing():
    model, _, optimizer = babysit_run(SOFTMAX_REGRESSION, 100)
    before = flat_params(model)
    model2, X, y = problem(SOFTMAX_REGRESSION)
    loss, grads = model.loss(X, y)
    optimizer.step(grads, 1.0, closure=lambda: model.loss(X, y), loss=loss)
    np.testing.assert_array_equal(flat_params(model), before)


def test_float32_parameters_stay_float32_and_the_loss_falls():
    model, X, y = problem(MLP, np.float32)
    solver = Solver(model, {"update": "lbfgs", "lr": 1.0}, "full", np.random.default_rng(0))
    start = model.loss(X, y)[0]
    state = solver.run(X, y, epochs=30)
    assert all(x.dtype == np.float32 for x in model.params.values())
    assert model.loss(X, y)[0] < 0.6 * start and state.iteration == 30   # float64's minimum: 0.48 x


def test_state_dict_round_trip_continues_identically():
    model, X, y = problem(MLP)
    solver = Solver(model, {"update": "lbfgs", "lr": 1.0, "memory": 3}, "full", None)
    solver.run(X, y, epochs=5)
    saved_params, saved_state = model.copy_params(), solver.optimizer.state_dict()
    assert saved_state["memory/s"].shape == (3, model.num_params())
    solver.run(X, y, epochs=10)

    other, _, _ = problem(MLP)
    other.set_params(saved_params)
    resumed = Solver(other, {"update": "lbfgs", "lr": 1.0, "memory": 3}, "full", None)
    resumed.optimizer.load_state_dict(saved_state)
    resumed.run(X, y, epochs=10)
    np.testing.assert_array_equal(flat_params(other), flat_params(model))


def test_load_state_dict_rejects_other_shapes():
    optimizer = LBFGS({"w": np.zeros(4)}, memory=2)
    with pytest.raises(ModelError, match="lbfgs state"):
        optimizer.load_state_dict({"t": 1, "memory/s": np.zeros((1, 5)), "memory/y": np.zeros((1, 5)),
                                   "memory/converged": 0})
    with pytest.raises(ModelError, match="lbfgs state"):
        optimizer.load_state_dict({"t": 1, "memory/s": np.ones((3, 4)), "memory/y": np.ones((3, 4)),
                                   "memory/converged": 0})
    with pytest.raises(ModelError, match="expected keys"):
        optimizer.load_state_dict({"t": 1})


def test_strong_wolfe_on_a_one_dimensional_function():
    # f(t) = (t - 3)^2 + 0.1 t^4: a minimum near t = 1.8; first trials short and long
    def phi(t):
        return Point(t, (t - 3) ** 2 + 0.1 * t ** 4, 2 * (t - 3) + 0.4 * t ** 3, None)

    start = phi(0.0)
    for first in (1e-6, 0.5, 1.0, 10.0, 1e3):
        point, wolfe = strong_wolfe(phi, start, first)
        assert wolfe
        assert point.f <= start.f + C1 * point.t * start.slope
        assert abs(point.slope) <= C2 * abs(start.slope)


@pytest.mark.parametrize("curvature, first_step_taken", [
    (1.5, True),    # f falls 0.25 = 25% of the linear prediction: sufficient for c1 = 1e-4, not 0.3
    (1.85, True),   # falls 7.5%, slope +0.85 at t = 1: still within both
    (0.05, False),  # slope still -0.95 at t = 1: more than c2 = 0.9 of the start's, go further
])
def test_the_line_search_uses_the_standard_wolfe_constants(curvature, first_step_taken):
    # phi(t) = 1 - t + curvature t^2 / 2 (slope -1 at 0): the unit step is
    # accepted exactly when the strong Wolfe conditions with Nocedal & Wright's
    # quasi-Newton constants c1 = 1e-4, c2 = 0.9 hold there. The test above
    # checks the search against the module's own C1/C2 and cannot see a wrong one.
    def phi(t):
        return Point(t, 1 - t + curvature * t * t / 2, -1 + curvature * t, None)

    point, wolfe = strong_wolfe(phi, phi(0.0), 1.0)
    assert wolfe and (point.t == 1.0) == first_step_taken


def test_no_decrease_leaves_the_parameters_and_reports_convergence():
    # a loss that is lowest exactly where the parameters are: no step lowers it
    params = {"w": np.array([0.0, 0.0])}

    def closure():
        w = params["w"]
        return float(w @ w) + 1.0, {"w": 2 * w}

    optimizer = LBFGS(params)
    optimizer.step({"w": np.array([0.0, 0.0])}, 1.0, closure=closure, loss=1.0)
    assert optimizer.converged and np.all(params["w"] == 0.0)


def test_mini_batches_are_refused_and_the_closure_is_required():
    model, X, y = problem(MLP)
    solver = Solver(model, {"update": "lbfgs", "lr": 1.0}, 10, np.random.default_rng(0))
    with pytest.raises(ModelError, match="needs full-batch training: batch_size 10 .* 40"):
        solver.run(X, y, epochs=1)
    Solver(model, {"update": "lbfgs", "lr": 1.0}, 40, None).run(X, y, epochs=1)   # >= N is one batch
    optimizer = make_optimizer({"update": "lbfgs", "memory": 4}, model.params)
    assert optimizer.memory == 4 and optimizer.needs_closure and optimizer.full_batch
    with pytest.raises(ModelError, match="closure"):
        optimizer.step(model.loss(X, y)[1], 1.0)
    with pytest.raises(ModelError, match="memory must be a positive integer"):
        make_optimizer({"update": "lbfgs", "memory": 0}, model.params)


def test_full_batch_is_one_in_order_step_per_epoch_and_draws_nothing():
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    solver = Solver(problem(MLP)[0], {"update": "sgd", "lr": 0.1}, "full", rng)
    assert solver.batches(7) == [slice(0, 7)] and solver.batches_per_epoch(7) == 1
    assert rng.bit_generator.state == before
    assert Solver(problem(MLP)[0], {"lr": 0.1}, 3, rng).batches_per_epoch(7) == 3
    with pytest.raises(ModelError, match="batch_size"):
        Solver(problem(MLP)[0], {"lr": 0.1}, "all", rng)


def test_the_loop_passes_a_closure_on_the_same_batch():
    model, X, y = problem(MLP)
    solver = Solver(model, {"update": "lbfgs", "lr": 1.0}, "full", None)
    seen = []
    real_loss = model.loss

    def spy(Xb, yb, *args, **kwargs):
        seen.append((Xb.shape, bool(np.shares_memory(Xb, X))))
        return real_loss(Xb, yb, *args, **kwargs)

    model.loss = spy
    state = solver.run(X, y, epochs=2)
    assert state.iteration == 2 and len(seen) >= 4   # the step's loss plus line-search evaluations
    assert all(shape == X.shape and shared for shape, shared in seen)   # the whole set, no copy
    assert math.isfinite(state.loss) and solver.optimizer.evaluations == len(seen) - 2
