"""Update rules against hand-computed steps, schedules, checkpoint state, averaging."""

import math

import numpy as np
import pytest

from babysit.engine.optim import ParameterAverage, make_optimizer, make_schedule
from babysit.errors import ModelError

# Three steps on x0 = [1, -2] with lr = 0.1 and these gradients (chosen so the
# square roots of adagrad come out round: 9+16 = 25, 16+9 = 25).
X0 = [1.0, -2.0]
GRADS = [[3.0, -4.0], [4.0, 3.0], [12.0, 0.0]]
LR = 0.1

# Expected iterates, written out from the formulas in optim.py's docstring.
# momentum (mu = 0.9): v1 = [-.3, .4], v2 = .9 v1 - .1 g2 = [-.67, .06],
#   v3 = .9 v2 - .1 g3 = [-1.803, .054]; x += v.
# nesterov: x += -.9 v_prev + 1.9 v:
#   s1: 1.9 * [-.3, .4] = [-.57, .76]
#   s2: -.9 [-.3, .4] + 1.9 [-.67, .06] = [.27 - 1.273, -.36 + .114] = [-1.003, -.246]
#   s3: -.9 [-.67, .06] + 1.9 [-1.803, .054] = [.603 - 3.4257, -.054 + .1026] = [-2.8227, .0486]
# rmsprop (decay .99): cache1 = .01 [9, 16] = [.09, .16];
#   cache2 = .99 cache1 + .01 [16, 9] = [.2491, .2484];
#   cache3 = .99 cache2 + .01 [144, 0] = [1.686609, .245916].
# adam (.9, .999): m1 = [.3, -.4], v1 = [.009, .016], c1 = .1, c2 = .001 -> step = lr * sign;
#   m2 = [.67, -.06], v2 = [.024991, .024984], c1 = .19, c2 = .001999;
#   m3 = [1.803, -.054], v3 = [.168966009, .024959016], c1 = .271, c2 = .002997001.
EXPECTED = {
    "sgd": [[0.7, -1.6], [0.3, -1.9], [-0.9, -1.9]],
    "momentum": [[0.7, -1.6], [0.03, -1.54], [-1.773, -1.486]],
    "nesterov": [[0.43, -1.24], [-0.573, -1.486], [-3.3957, -1.4374]],
    "adagrad": [[0.9, -1.9], [0.82, -1.96], [0.82 - 0.1 * 12 / 13, -1.96]],
    "rmsprop": [
        [0.0, -1.0],
        [0.0 - 0.1 * 4 / math.sqrt(0.2491), -1.0 - 0.1 * 3 / math.sqrt(0.2484)],
        [0.0 - 0.1 * 4 / math.sqrt(0.2491) - 0.1 * 12 / math.sqrt(1.686609),
         -1.0 - 0.1 * 3 / math.sqrt(0.2484)],
    ],
}
ADAM_2 = [0.9 - 0.1 * (0.67 / 0.19) / math.sqrt(0.024991 / 0.001999),
          -1.9 - 0.1 * (-0.06 / 0.19) / math.sqrt(0.024984 / 0.001999)]
ADAM_3 = [ADAM_2[0] - 0.1 * (1.803 / 0.271) / math.sqrt(0.168966009 / 0.002997001),
          ADAM_2[1] - 0.1 * (-0.054 / 0.271) / math.sqrt(0.024959016 / 0.002997001)]
EXPECTED["adam"] = [[0.9, -1.9], ADAM_2, ADAM_3]


@pytest.mark.parametrize("update", sorted(EXPECTED))
def test_update_rule_matches_hand_computed_steps(update):
    x = np.array(X0)
    params = {"w": x}
    opt = make_optimizer({"update": update, "lr": 0.5}, params)  # section lr is the schedule's
    for g, expected in zip(GRADS, EXPECTED[update]):
        opt.step({"w": np.array(g)}, LR)
        np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-7)  # eps = 1e-8 shifts ~3e-8
    assert params["w"] is x  # updated in place
    assert opt.t == 3


# The lecture's momentum forms with a learning rate that changes every step
# (a schedule), written out: momentum v = .9 v - lr g, x += v;
# nesterov x += -.9 v_prev + 1.9 v. At a constant rate they equal the form
# that applies the rate outside the velocity (v = .9 v + g, x -= lr v); with
# a decaying rate they do not, so this is what tells the two apart.
# lrs .1, .05, .025 and GRADS:
#   momentum v1 = [-.3, .4], x1 = [.7, -1.6]
#            v2 = [-.27 - .2, .36 - .15] = [-.47, .21], x2 = [.23, -1.39]
#            v3 = [-.423 - .3, .189] = [-.723, .189], x3 = [-.493, -1.201]
#   nesterov x1 = 1.9 [-.3, .4] + X0 = [.43, -1.24]
#            x2 = x1 - .9 v1 + 1.9 v2 = [.43 + .27 - .893, -1.24 - .36 + .399] = [-.193, -1.201]
#            x3 = x2 - .9 v2 + 1.9 v3 = [-.193 + .423 - 1.3737, -1.201 - .189 + .3591]
#               = [-1.1437, -1.0309]
DECAYING_LRS = [0.1, 0.05, 0.025]
DECAYING = {
    "momentum": ([[0.7, -1.6], [0.23, -1.39], [-0.493, -1.201]], [-0.723, 0.189]),
    "nesterov": ([[0.43, -1.24], [-0.193, -1.201], [-1.1437, -1.0309]], [-0.723, 0.189]),
}


@pytest.mark.parametrize("update", sorted(DECAYING))
def test_momentum_forms_with_a_changing_learning_rate(update):
    x = np.array(X0)
    opt = make_optimizer({"update": update}, {"w": x})
    iterates, velocity = DECAYING[update]
    for g, lr, expected in zip(GRADS, DECAYING_LRS, iterates):
        opt.step({"w": np.array(g)}, lr)
        np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(opt.state["w"]["v"], velocity, rtol=1e-12, atol=1e-12)


def test_hyperparameters_come_from_the_section():
    x = np.array([1.0])
    opt = make_optimizer({"update": "momentum", "momentum": 0.5}, {"w": x})
    opt.step({"w": np.array([1.0])}, 1.0)  # v = -1, x = 0
    opt.step({"w": np.array([1.0])}, 1.0)  # v = -.5 - 1 = -1.5, x = -1.5
    assert x[0] == pytest.approx(-1.5)
    x = np.array([1.0])
    opt = make_optimizer({"update": "rmsprop", "decay_rate": 0.75, "eps": 0.5}, {"w": x})
    opt.step({"w": np.array([2.0])}, 1.0)  # cache = .25 * 4 = 1; x -= 2 / (1 + .5)
    assert x[0] == pytest.approx(1 - 2 / 1.5)
    x = np.array([1.0])
    opt = make_optimizer({"update": "adam", "beta1": 0.5, "beta2": 0.75, "eps": 1.0}, {"w": x})
    opt.step({"w": np.array([2.0])}, 1.0)  # m_hat = 2, v_hat = 4: x -= 2 / (2 + 1)
    assert x[0] == pytest.approx(1 - 2 / 3)


@pytest.mark.parametrize("update", sorted(EXPECTED))
def test_float32_parameters_stay_float32(update):
    params = {"W": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    opt = make_optimizer({"update": update}, params)
    grads = {"W": np.full((3, 2), 0.5, np.float32), "b": np.ones(2, np.float32)}
    for _ in range(2):
        opt.step(grads, 1e-2)
    assert all(p.dtype == np.float32 for p in params.values())
    assert all(v.dtype == np.float32 for k, v in opt.state_dict().items() if k != "t")
    assert params["W"][0, 0] < 1.0 and params["b"][0] < 0.0


def trajectory(opt, params, grads_seq):
    out = []
    for grads in grads_seq:
        opt.step(grads, 0.05)
        out.append({k: v.copy() for k, v in params.items()})
    return out


@pytest.mark.parametrize("update", sorted(EXPECTED))
def test_state_dict_round_trip_continues_identically(update):
    rng = np.random.default_rng(0)
    shapes = {"0.W": (4, 3), "0.b": (3,)}
    grads_seq = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(6)]
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    section = {"update": update, "lr": 0.05}
    opt = make_optimizer(section, params)
    trajectory(opt, params, grads_seq[:3])
    state = opt.state_dict()
    saved = {k: v.copy() for k, v in params.items()}
    assert state["t"] == 3
    assert set(state) == {"t"} | {f"{k}/{slot}" for k in shapes for slot in opt.slots}
    uninterrupted = trajectory(opt, params, grads_seq[3:])

    resumed_params = {k: v.copy() for k, v in saved.items()}
    resumed = make_optimizer(section, resumed_params)
    resumed.load_state_dict(state)
    again = trajectory(resumed, resumed_params, grads_seq[3:])
    for a, b in zip(uninterrupted, again):
        for k in shapes:
            np.testing.assert_array_equal(a[k], b[k])
    # the saved state is a snapshot, not a view of the live slots
    for key, value in opt.state_dict().items():
        if key != "t" and update != "sgd":
            assert not np.array_equal(value, state[key])


def test_load_state_dict_rejects_mismatches():
    params = {"w": np.zeros(3)}
    opt = make_optimizer({"update": "adam"}, params)
    with pytest.raises(ModelError, match="expected keys"):
        opt.load_state_dict({"t": 1, "w/v": np.zeros(3)})
    with pytest.raises(ModelError, match="shape"):
        opt.load_state_dict({"t": 1, "w/m": np.zeros(4), "w/v": np.zeros(4)})
    momentum_state = make_optimizer({"update": "momentum"}, params).state_dict()
    with pytest.raises(ModelError, match="adam"):
        opt.load_state_dict(momentum_state)


def test_step_rejects_gradients_for_other_parameters():
    opt = make_optimizer({"update": "sgd"}, {"w": np.zeros(2)})
    with pytest.raises(ModelError, match="missing"):
        opt.step({"v": np.zeros(2)}, 0.1)


@pytest.mark.parametrize("section, match", [
    ({"update": "adamw"}, "unknown update 'adamw'.*sgd, momentum, nesterov, adagrad, rmsprop, adam"),
    ({"update": "sgd", "lrate": 0.1}, "unknown key 'lrate'.*valid keys: update, lr, decay"),
    ({"update": "momentum", "momentum": 1.5}, r"optim: momentum must be a number in \[0, 1\), got 1.5"),
    ({"update": "adam", "beta2": "high"}, "beta2 must be a number"),
    ({"update": "adam", "eps": 0}, "optim: eps must be a positive number, got 0"),
    ({"update": "rmsprop", "decay_rate": -0.1}, "decay_rate"),
    ({"update": 3}, "unknown update 3"),
])
def test_bad_sections_are_rejected(section, match):
    with pytest.raises(ModelError, match=match):
        make_optimizer(section, {"w": np.zeros(2)})


def test_rmsprop_decay_rate_zero_is_a_valid_update_and_one_is_rejected():
    x = np.array([1.0, -2.0])
    opt = make_optimizer({"update": "rmsprop", "decay_rate": 0}, {"w": x})
    opt.step({"w": np.array([3.0, -4.0])}, 0.1)   # cache = dx**2: a step of lr * sign(dx)
    np.testing.assert_allclose(x, [0.9, -1.9])
    assert isinstance(opt.decay_rate, float)
    with pytest.raises(ModelError, match=r"optim: decay_rate must be a number in \[0, 1\), got 1"):
        make_optimizer({"update": "rmsprop", "decay_rate": 1}, {"w": x})


def test_unused_hyperparameters_are_accepted():
    # the recipe example carries momentum with plain sgd
    opt = make_optimizer({"update": "sgd", "lr": 1e-3, "momentum": 0.9, "beta1": 0.8,
                          "decay": {"kind": "step", "every": 5, "factor": 0.5}}, {"w": np.zeros(2)})
    assert opt.name == "sgd"
    assert make_optimizer({}, {"w": np.zeros(2)}).name == "sgd"


class FrozenSection:
    def __init__(self, **values):
        self._values = values

    def to_dict(self):
        return dict(self._values)


def test_sections_with_to_dict_are_accepted():
    section = FrozenSection(update="adam", lr=0.01, decay={"kind": "inv_t", "rate": 1.0})
    assert make_optimizer(section, {"w": np.zeros(1)}).name == "adam"
    assert make_schedule(section)(1) == pytest.approx(0.005)


# -- schedules ---------------------------------------------------------------

def test_constant_schedule():
    for decay in [None, "none", {"kind": "none"}]:
        schedule = make_schedule({"lr": 0.1, "decay": decay})
        assert [schedule(e) for e in (0, 1, 50)] == [0.1, 0.1, 0.1]
    assert make_schedule({"lr": 0.1})(7) == 0.1


def test_step_schedule():
    schedule = make_schedule({"lr": 0.1, "decay": {"kind": "step", "every": 5, "factor": 0.5}})
    assert [schedule(e) for e in (0, 4)] == [0.1, 0.1]
    assert schedule(5) == pytest.approx(0.05)
    assert schedule(9) == pytest.approx(0.05)
    assert schedule(12) == pytest.approx(0.025)
    halving = make_schedule({"lr": 0.1, "decay": {"kind": "step", "every": 2}})  # factor 0.5
    assert halving(4) == pytest.approx(0.025)
    assert make_schedule({"lr": 0.1, "decay": {"kind": "step", "every": 2.0}}).every == 2  # as recipes


def test_exp_and_inv_t_schedules():
    exp = make_schedule({"lr": 0.1, "decay": {"kind": "exp", "rate": 0.5}})
    assert exp(0) == pytest.approx(0.1)
    assert exp(2) == pytest.approx(0.1 * math.exp(-1))
    inv_t = make_schedule({"lr": 0.1, "decay": {"kind": "inv_t", "rate": 1.0}})
    assert inv_t(0) == pytest.approx(0.1)
    assert inv_t(3) == pytest.approx(0.025)


@pytest.mark.parametrize("section, match", [
    ({"lr": 0.1, "decay": {"kind": "cosine"}}, "unknown optim.decay kind 'cosine'.*step, exp, inv_t"),
    ({"lr": 0.1, "decay": "linear"}, "optim.decay"),
    ({"lr": 0.1, "decay": {"kind": "step", "every": 0, "factor": 0.5}}, "every"),
    ({"lr": 0.1, "decay": {"kind": "step", "every": 2.5, "factor": 0.5}}, "every"),
    ({"lr": 0.1, "decay": {"kind": "step", "factor": 0.5}}, "every"),
    ({"lr": 0.1, "decay": {"kind": "step", "every": 5, "factor": 1.5}}, "factor"),
    ({"lr": 0.1, "decay": {"kind": "exp", "rate": -1}}, "rate"),
    ({"lr": 0.1, "decay": {"kind": "exp", "rate": 0.1, "every": 2}}, "unknown key 'every'"),
    ({"decay": None}, "optim needs the option 'lr'"),
    ({"lr": -0.1}, "optim: lr must be a positive number, got -0.1"),
    ({"lr": "fast"}, "lr must be a positive number, got 'fast'"),
])
def test_bad_schedules_are_rejected(section, match):
    with pytest.raises(ModelError, match=match):
        make_schedule(section)


# -- parameter averaging -----------------------------------------------------

def test_parameter_average():
    x = np.array([0.0, 10.0])
    avg = ParameterAverage({"w": x}, 0.5)
    np.testing.assert_array_equal(avg.params["w"], [0.0, 10.0])  # starts at the parameters
    x[...] = [2.0, 0.0]
    avg.update()  # .5 * [0, 10] + .5 * [2, 0]
    np.testing.assert_allclose(avg.params["w"], [1.0, 5.0])
    x[...] = [4.0, 0.0]
    avg.update()  # .5 * [1, 5] + .5 * [4, 0]
    np.testing.assert_allclose(avg.params["w"], [2.5, 2.5])
    assert avg.params["w"] is not x and avg.t == 2


def test_parameter_average_state_round_trip():
    x = np.array([1.0, 2.0], dtype=np.float32)
    avg = ParameterAverage({"w": x}, 0.9)
    x += 1
    avg.update()
    state = avg.state_dict()
    other = ParameterAverage({"w": np.zeros(2, np.float32)}, 0.9)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.params["w"], avg.params["w"])
    assert other.t == 1 and other.params["w"].dtype == np.float32
    with pytest.raises(ModelError, match="expected"):
        other.load_state_dict({"t": 1, "v": np.zeros(2)})


@pytest.mark.parametrize("beta", [1.0, -0.1, "0.9", True])
def test_parameter_average_rejects_bad_beta(beta):
    with pytest.raises(ModelError, match="beta"):
        ParameterAverage({"w": np.zeros(1)}, beta)
