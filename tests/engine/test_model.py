"""The model builder and Model through the public engine API (needs layers.py)."""

import numpy as np
import pytest

from babysit.engine import Solver, build_model
from babysit.errors import ModelError
from tests.helpers import numerical_gradient, rel_error

MLP = {"init": "xavier", "loss": "softmax", "reg": 1e-6,
       "layers": [{"affine": {"out": 50}}, "relu", {"affine": {"out": 10, "init": "small"}}]}


def mlp(**changes):
    section = dict(MLP, **changes)
    return section


def data(shape, n, classes, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + tuple(shape)), rng.integers(0, classes, size=n)


# -- building -----------------------------------------------------------------

def test_mlp_from_a_yaml_form_mapping():
    model = build_model(MLP, (64,), 10, np.random.default_rng(0), np.float32)
    assert model.names == ["0.affine", "1.relu", "2.affine"]
    assert {k: v.shape for k, v in model.params.items()} == {
        "0.W": (64, 50), "0.b": (50,), "2.W": (50, 10), "2.b": (10,)}
    assert model.weight_names == ["0.W", "2.W"]
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert model.params["0.W"].std() == pytest.approx(1 / 8, rel=0.1)  # xavier: 1/sqrt(64)
    assert model.params["2.W"].std() == pytest.approx(0.01, rel=0.15)  # the layer's own init
    assert not model.params["0.b"].any()
    X, _ = data((64,), 5, 10)
    scores = model.forward(X.astype(np.float32))
    assert scores.shape == (5, 10) and scores.dtype == np.float32
    assert model.predict(X).shape == (5,)


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_initial_loss_of_a_small_output_layer_is_the_expected_one(loss):
    model = build_model(mlp(loss=loss, init={"normal": 1e-3}), (64,), 10, np.random.default_rng(0))
    X, y = data((64,), 200, 10)
    value, _ = model.loss(X, y, reg=0.0)
    assert value == pytest.approx(model.loss_fn.expected_initial_loss(10), rel=0.01)


def test_same_seed_same_model_and_bias_option():
    a = build_model(MLP, (64,), 10, np.random.default_rng(3))
    b = build_model(MLP, (64,), 10, np.random.default_rng(3))
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    biased = build_model(mlp(bias=0.1), (64,), 10, np.random.default_rng(3))
    assert np.all(biased.params["0.b"] == np.float32(0.1))


@pytest.mark.parametrize("input_shape, flat", [((1, 8, 8), 4 * 4 * 4), ((3, 32, 32), 4 * 16 * 16)])
def test_convnet_shapes(input_shape, flat):
    section = {"init": "he", "layers": [
        {"conv": {"filters": 4, "size": 3}}, "relu", {"maxpool": {"size": 2}}, {"affine": {"out": 10}}]}
    model = build_model(section, input_shape, 10, np.random.default_rng(0), np.float32)
    c = input_shape[0]
    assert model.params["0.W"].shape == (4, c, 3, 3) and model.params["0.b"].shape == (4,)
    assert model.params["3.W"].shape == (flat, 10)
    assert model.params["0.W"].std() == pytest.approx(np.sqrt(2 / (c * 9)), rel=0.35)
    X, y = data(input_shape, 3, 10)
    loss, grads = model.loss(X, y)
    assert np.isfinite(loss) and set(grads) == set(model.params)
    assert all(grads[k].shape == model.params[k].shape for k in grads)


# -- gradients ------------------------------------------------------------------

def assert_gradient_close(analytic, numeric, name, tol=1e-6):
    # Centered differences carry ~1e-10 of absolute noise (h = 1e-6, loss ~ 1), so
    # small entries are judged by absolute error and the others by relative error.
    big = np.maximum(np.abs(analytic), np.abs(numeric)) > 1e-3
    assert big.any(), name
    assert rel_error(analytic[big], numeric[big]) < tol, name
    assert np.max(np.abs(analytic - numeric)) < 1e-8, name


def check_model_gradients(model, X, y):
    """Every parameter gradient and the input gradient against centered differences."""
    with model.replay_randomness():
        loss, grads = model.loss(X, y)
        input_grad = model.input_grad.copy()
        for name, value in model.params.items():
            num = numerical_gradient(lambda: model.loss(X, y)[0], value)
            assert_gradient_close(grads[name], num, name)
        num = numerical_gradient(lambda: model.loss(X, y)[0], X)
        assert_gradient_close(input_grad, num, "input")
    return loss


def test_mlp_gradient_check_float64_with_reg():
    section = {"init": {"normal": 0.5}, "bias": 0.1, "reg": 0.3,
               "layers": [{"affine": {"out": 7}}, "relu", {"affine": {"out": 6}}, "tanh",
                          {"affine": {"out": 3}}]}
    model = build_model(section, (5,), 3, np.random.default_rng(0), np.float64)
    X, y = data((5,), 4, 3)
    check_model_gradients(model, X, y)


def test_svm_mlp_gradient_check():
    section = {"init": {"normal": 0.5}, "reg": 0.1, "loss": "svm",
               "layers": [{"affine": {"out": 6}}, "tanh", {"affine": {"out": 4}}]}
    model = build_model(section, (5,), 4, np.random.default_rng(2), np.float64)
    X, y = data((5,), 6, 4)
    check_model_gradients(model, X, y)


def test_convnet_gradient_check_float64_with_reg():
    section = {"init": {"normal": 0.3}, "reg": 0.05, "layers": [
        {"conv": {"filters": 3, "size": 3}}, "relu", {"maxpool": {"size": 2}},
        {"affine": {"out": 3}}]}
    model = build_model(section, (2, 4, 4), 3, np.random.default_rng(0), np.float64)
    X, y = data((2, 4, 4), 2, 3)
    check_model_gradients(model, X, y)


def test_reg_loss_alone():
    model = build_model(mlp(reg=0.5), (6,), 10, np.random.default_rng(0), np.float64)
    X, y = data((6,), 4, 10)
    value, grads = model.reg_loss(0.2)
    W0, W2 = model.params["0.W"], model.params["2.W"]
    assert value == pytest.approx(0.1 * (np.sum(W0 ** 2) + np.sum(W2 ** 2)))
    assert set(grads) == {"0.W", "2.W"}  # biases are not regularized
    np.testing.assert_allclose(grads["0.W"], 0.2 * W0)
    assert model.reg_loss(0.0) == (0.0, {})
    data_loss, data_grads = model.loss(X, y, reg=0.0)
    full_loss, full_grads = model.loss(X, y)  # the model's own reg, 0.5
    assert full_loss == pytest.approx(data_loss + model.reg_loss(0.5)[0])
    np.testing.assert_allclose(full_grads["2.W"], data_grads["2.W"] + 0.5 * W2)
    np.testing.assert_array_equal(full_grads["2.b"], data_grads["2.b"])


# -- what the diagnostics look at ----------------------------------------------

def test_record_outputs_and_output_grads():
    model = build_model(MLP, (6,), 10, np.random.default_rng(0), np.float64)
    X, y = data((6,), 4, 10)
    model.loss(X, y)
    assert model.outputs == {} and model.output_grads == {}  # recording is off by default
    model.record = True
    loss, _ = model.loss(X, y, reg=0.0)
    assert list(model.outputs) == model.names == list(reversed(list(model.output_grads)))
    assert model.outputs["0.affine"].shape == (4, 50)
    np.testing.assert_array_equal(model.outputs["1.relu"], np.maximum(model.outputs["0.affine"], 0))
    scores = model.outputs["2.affine"]
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(4), y] -= 1
    np.testing.assert_allclose(model.output_grads["2.affine"], p / 4, rtol=1e-10)
    assert model.output_grads["0.affine"].shape == (4, 50)
    assert model.input_grad.shape == X.shape


def test_kink_state_changes_when_a_relu_flips():
    model = build_model(mlp(loss="svm"), (6,), 10, np.random.default_rng(0), np.float64)
    X, y = data((6,), 4, 10)
    assert model.has_kinks
    model.loss(X, y)
    first = model.kink_state()
    assert len(first) == len(model.layers) + 1  # one per layer, then the loss
    assert first[0] is None and first[1] is not None and first[-1].shape == (4, 10)
    model.loss(X, y)
    assert all(a is None and b is None or np.array_equal(a, b) for a, b in zip(first, model.kink_state()))
    model.params["0.b"] += 100.0  # every hidden unit becomes active
    model.loss(X, y)
    assert not np.array_equal(first[1], model.kink_state()[1])


def test_replay_randomness_reuses_the_dropout_mask():
    section = {"layers": [{"affine": {"out": 20}}, "relu", {"dropout": {"keep": 0.5}},
                          {"affine": {"out": 3}}]}
    model = build_model(section, (5,), 3, np.random.default_rng(0), np.float64)
    X, y = data((5,), 8, 3)
    first, _ = model.loss(X, y)
    with model.replay_randomness():
        replayed = [model.loss(X, y)[0] for _ in range(3)]
    assert replayed == [first] * 3
    assert model.loss(X, y)[0] != first  # a fresh mask outside the block
    np.testing.assert_array_equal(model.forward(X), model.forward(X))  # test mode: no dropout
    check_model_gradients(model, X, y)


# -- custom layers and bad models ------------------------------------------------

class Square:
    """A user layer without build: elementwise x**2, no parameters."""

    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, x, train):
        self.x = x
        return x * x

    def backward(self, dout):
        return 2 * self.x * dout


class Scale:
    """A user layer with a parameter but no build: per-example scale by s (shape fixed)."""

    def __init__(self, value=1.0):
        self.params = {"s": np.array([value])}
        self.grads = {"s": np.zeros(1)}

    def forward(self, x, train):
        self.x = x
        return x * self.params["s"][0]

    def backward(self, dout):
        self.grads["s"] = np.array([np.sum(dout * self.x)])
        return dout * self.params["s"][0]


class NotALayer:
    def __init__(self):
        self.params = {}


@pytest.mark.parametrize("entry", [
    {"custom": "tests.engine.test_model:Square"},
    {"custom": Square},
    {"custom": {"class": "tests.engine.test_model:Square"}},
])
def test_custom_layer_without_build(entry):
    section = {"init": {"normal": 0.5}, "reg": 0.1,
               "layers": [{"affine": {"out": 4}}, entry, {"custom": {"class": Scale, "value": 0.7}},
                          {"affine": {"out": 3}}]}
    model = build_model(section, (5,), 3, np.random.default_rng(0), np.float64)
    assert model.names == ["0.affine", "1.custom", "2.custom", "3.affine"]
    assert model.params["2.s"][0] == 0.7 and "2.s" not in model.weight_names
    assert model.params["3.W"].shape == (4, 3)  # shape inferred through the custom layers
    check_model_gradients(model, *data((5,), 3, 3))


@pytest.mark.parametrize("layers, match", [
    ([{"affine": {"out": 10}}, "softplus"], "unknown layer 'softplus'; known layers: .*affine"),
    ([{"affine": {"outs": 10}}], r"layer 0 \(affine\)"),
    ([{"affine": {"out": 10}, "relu": None}], "one-key mapping"),
    ([{"affine": 10}], "options of layer 'affine' must be a mapping"),
    ([], "no layers"),
    ("affine", "list of layers"),
    ([{"custom": NotALayer}], "lacks forward, backward"),
    ([{"custom": "tests.engine.no_such_module:X"}], "cannot import custom layer module"),
    ([{"custom": "tests.engine.test_model:Nope"}], "has no attribute 'Nope'"),
    ([{"custom": "Square"}], "pkg.module:Class"),
    ([{"custom": {"kwargs": {}}}], "names no class"),
    ([{"custom": {"class": Scale, "bogus": 1}}], "constructor failed"),
    ([{"affine": {"out": 10, "init": "glorot"}}], "unknown init 'glorot'"),
])
def test_bad_entries_are_rejected(layers, match):
    with pytest.raises(ModelError, match=match):
        build_model({"layers": layers}, (6,), 10, np.random.default_rng(0))


class BreaksLater(Square):
    """Passes the builder's shape probe (batch of 2), then misbehaves as configured."""

    def __init__(self, fault):
        super().__init__()
        self.fault = fault

    def forward(self, x, train):
        if len(x) == 2:
            return super().forward(x, train)
        if self.fault == "forward_raises":
            raise RuntimeError("boom")
        if self.fault == "forward_none":
            return None
        if self.fault == "forward_shape":
            return x[:, :2]
        return super().forward(x, train)

    def backward(self, dout):
        if self.fault == "backward_raises":
            raise FloatingPointError("bad")
        if self.fault == "backward_none":
            return None
        if self.fault == "backward_shape":
            return dout[:, :1]
        return super().backward(dout)


class ForgetsGrads(Scale):
    def backward(self, dout):
        self.grads.pop("s")
        return dout * self.params["s"][0]


@pytest.mark.parametrize("fault, match", [
    ("forward_raises", r"layer 1 \(custom BreaksLater\): forward raised RuntimeError: boom"),
    ("forward_none", r"forward must return a numeric array of shape \(5, 4\).*got None"),
    ("forward_shape", r"forward must return .* \(5, 4\).*got shape \(5, 2\)"),
    ("backward_raises", r"layer 1 \(custom BreaksLater\): backward raised FloatingPointError: bad"),
    ("backward_none", r"backward must return dx.* \(5, 4\), got None"),
    ("backward_shape", r"backward must return dx.* \(5, 4\), got shape \(5, 1\)"),
])
def test_a_user_layer_failing_at_run_time_is_a_model_error(fault, match):
    section = {"layers": [{"affine": {"out": 4}}, {"custom": {"class": BreaksLater, "fault": fault}},
                          {"affine": {"out": 3}}]}
    model = build_model(section, (6,), 3, np.random.default_rng(0), np.float64)
    X, y = data((6,), 5, 3)
    with pytest.raises(ModelError, match=match):
        model.loss(X, y)


def test_a_user_layer_must_fill_its_grads():
    model = build_model({"layers": [{"custom": ForgetsGrads}, {"affine": {"out": 3}}]}, (6,), 3,
                        np.random.default_rng(0), np.float64)
    with pytest.raises(ModelError, match=r"layer 0 \(custom ForgetsGrads\): backward must fill "
                                         r"grads\['s'\] with an array of shape \(1,\), got None"):
        model.loss(*data((6,), 5, 3))


def test_bad_loss_is_rejected():
    with pytest.raises(ModelError, match="unknown loss 'hinge'"):
        build_model(mlp(loss="hinge"), (6,), 10)


@pytest.mark.parametrize("layers, shape", [
    ([{"affine": {"out": 5}}], (6,)),
    ([{"conv": {"filters": 10, "size": 3}}], (1, 8, 8)),
])
def test_last_layer_must_match_the_number_of_classes(layers, shape):
    with pytest.raises(ModelError, match="10 classes"):
        build_model({"layers": layers}, shape, 10, np.random.default_rng(0))


# -- training through the public API ------------------------------------------

def spiral(points_per_class=100, classes=3, seed=0):
    """The CS231n spiral: not linearly separable."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k in range(classes):
        r = np.linspace(0.0, 1.0, points_per_class)
        t = np.linspace(k * 4, (k + 1) * 4, points_per_class) + rng.standard_normal(points_per_class) * 0.2
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        y.append(np.full(points_per_class, k))
    return np.concatenate(X).astype(np.float32), np.concatenate(y)


def test_a_model_learns_the_spiral_with_the_solver():
    X, y = spiral()
    section = {"init": "he", "reg": 1e-4,
               "layers": [{"affine": {"out": 100}}, "relu", {"affine": {"out": 3}}]}
    model = build_model(section, (2,), 3, np.random.default_rng(0), np.float32)
    solver = Solver(model, {"update": "adam", "lr": 2e-2}, 50, np.random.default_rng([0, 1]))
    assert model.accuracy(X, y) < 0.6  # a linear-ish start cannot separate the spiral
    first = None
    for epoch in range(150):
        for idx in solver.batches(len(X)):
            loss = solver.step(X[idx], y[idx], solver.lr_at(epoch))
            first = loss if first is None else first
    assert loss < 0.5 * first
    assert model.accuracy(X, y) > 0.95


# -- the lecture's 10-layer tanh experiment ------------------------------------

def tanh_stack_outputs(init):
    """Layer output stds of 10 tanh layers of 500 units on 1000 unit-Gaussian inputs."""
    layers = []
    for _ in range(10):
        layers += [{"affine": {"out": 500}}, "tanh"]
    section = {"init": init, "bias": 0.0, "layers": layers + [{"affine": {"out": 10}}]}
    model = build_model(section, (500,), 10, np.random.default_rng(0), np.float64)
    model.record = True
    model.forward(np.random.default_rng(1).standard_normal((1000, 500)))
    return [model.outputs[f"{2 * i + 1}.tanh"] for i in range(10)]


def test_xavier_keeps_tanh_activations_alive():
    stds = [h.std() for h in tanh_stack_outputs("xavier")]
    lecture = [0.63, 0.49, 0.41, 0.36, 0.32, 0.29, 0.27, 0.25, 0.24, 0.23]
    np.testing.assert_allclose(stds, lecture, atol=0.03)


def test_small_init_collapses_tanh_activations():
    stds = [h.std() for h in tanh_stack_outputs("small")]
    assert all(b < 0.3 * a for a, b in zip(stds, stds[1:]))
    assert stds[-1] < 1e-6


def test_unit_init_saturates_tanh():
    outputs = tanh_stack_outputs({"normal": 1.0})
    saturated = [np.mean(np.abs(h) > 0.99) for h in outputs]
    assert min(saturated) > 0.7


def test_the_engine_imports_only_numpy_and_the_standard_library():
    import ast
    import pathlib
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "import babysit.engine as e\n"
            "m = e.build_model({'layers': [{'conv': {'filters': 2}}, 'relu', {'affine': {'out': 3}}]},"
            " (1, 4, 4), 3)\n"
            "e.Solver(m, {'lr': 0.1}, 2, np.random.default_rng(0))\n"
            "e.get_loss('svm'); e.get_initializer('he'); e.make_schedule({'lr': 1.0}); e.LAYERS\n"
            "print(sorted(k for k in sys.modules if k.startswith('babysit')))\n"
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'click', 'rich', 'yaml', 'h5py', "
            "'torch', 'scipy', 'sklearn', 'matplotlib', 'dask'}))\n")
    root = pathlib.Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root).stdout
    babysit_modules, heavy = [ast.literal_eval(line) for line in out.splitlines()]
    assert heavy == []
    assert all(m in ("babysit", "babysit.errors", "babysit.validation", "babysit.streams")
               or m.startswith("babysit.engine") for m in babysit_modules)
