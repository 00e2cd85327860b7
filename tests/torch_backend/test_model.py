"""The torch backend behind the model protocol: names, passes, recording, randomness, kinks, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
pytestmark = pytest.mark.torch

from babysit.diagnostics.gradcheck.model_check import ModelChecker  # noqa: E402
from babysit.diagnostics.gradcheck.numerical import Differencer  # noqa: E402
from babysit.diagnostics.protocol import DiagnosableModel  # noqa: E402
from babysit.engine.builder import build_model  # noqa: E402
from babysit.errors import ModelError  # noqa: E402
from babysit.torch.builder import build_torch_model  # noqa: E402
from babysit.torch.passes import _ORIGINAL_APPLY  # noqa: E402

HERE = "tests.torch_backend.test_model"


def build(factory, input_shape=(1, 8, 8), classes=10, dtype=np.float64, seed=0, **section):
    section = {"torch": factory if ":" in factory else f"{HERE}:{factory}", **section}
    return build_torch_model(section, input_shape, classes, np.random.default_rng(seed), dtype)


def batch(shape=(6, 1, 8, 8), classes=10, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.integers(0, classes, shape[0])


# -- factories used by the tests (imported by path, as a recipe would) ----------------


class Residual(nn.Module):
    """Functional ReLU and a skip connection: layer i's input is not layer i-1's output."""

    def __init__(self, size=12, classes=3):
        super().__init__()
        self.inp = nn.Linear(size, size)
        self.body = nn.Linear(size, size)
        self.head = nn.Linear(size, classes)

    def forward(self, x):
        h = F.relu(self.inp(x))
        h = h + torch.tanh(self.body(h))
        return self.head(h) * 0.5


def residual(input_shape, num_classes):
    return Residual(math.prod(input_shape), num_classes)


def with_dropout(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 20), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(20, num_classes))


def with_norms(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Unflatten(1, (4, 4)), nn.LayerNorm((4, 4)), nn.Flatten(),
                         nn.Linear(16, num_classes))


def tanh_net(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], 8), nn.Tanh(), nn.Linear(8, num_classes))


class Branchy(nn.Module):
    def __init__(self, size, classes):
        super().__init__()
        self.a, self.b = nn.Linear(size, classes), nn.Linear(size, classes)

    def forward(self, x):   # data-dependent control flow between layers
        return self.a(x) if float(x.sum()) > 0 else self.b(x)


def branchy(input_shape, num_classes):
    return Branchy(input_shape[0], num_classes)


def in_place_first(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.ReLU(inplace=True), nn.Linear(math.prod(input_shape), num_classes))


def broken_factory(input_shape, num_classes):
    raise RuntimeError("boom")


def not_a_module(input_shape, num_classes):
    return "net"


def wrong_classes(input_shape, num_classes):
    return nn.Linear(input_shape[0], num_classes + 1)


def exits(input_shape, num_classes):
    import sys

    sys.exit(0)


# -- names, parameters, kinds ------------------------------------------------------------


def test_layers_and_parameters_are_named_by_module_path():
    model = build("babysit.torch.examples:convnet", dtype=np.float32)
    assert isinstance(model, DiagnosableModel)
    assert model.names == ["features.0", "features.1", "features.2", "classifier.0", "classifier.1",
                           "classifier.2", "classifier.3"]
    assert [model.kind_of(n) for n in model.names] == ["conv", "relu", "maxpool", "flatten", "affine",
                                                       "relu", "affine"]
    assert list(model.params) == ["features.0.weight", "features.0.bias", "classifier.1.weight",
                                  "classifier.1.bias", "classifier.3.weight", "classifier.3.bias"]
    assert model.weight_names == ["features.0.weight", "classifier.1.weight", "classifier.3.weight"]
    assert model.layer_of("classifier.1.bias") == "classifier.1"
    mine = model.params_of("classifier.1")
    assert set(mine) == {"weight", "bias"} and mine["weight"] is model.params["classifier.1.weight"]
    assert model.params_of("features.1") == {} and model.has_kinks


def test_params_are_numpy_views_of_the_module_tensors():
    model = build("babysit.torch.examples:two_layer", dtype=np.float32)
    X, _ = batch()
    before = model.forward(X)
    model.params["fc2.bias"][...] += 1.0          # an optimizer's in-place update
    assert np.allclose(model.forward(X), before + 1.0, atol=1e-5)
    model.set_params({"fc2.bias": np.zeros(10)})
    assert torch.equal(model.module.fc2.bias.data, torch.zeros(10))
    assert model.forward(X).dtype == np.float32 and model.num_params() == 64 * 50 + 50 + 50 * 10 + 10


def test_weights_exclude_biases_and_normalization_gains():
    model = build("with_norms", input_shape=(5,), classes=3)
    assert model.weight_names == ["0.weight", "6.weight"]   # not the LayerNorm's (4, 4) gain
    assert model.kind_of("1") == "batchnorm" and model.kind_of("4") == "layernorm"


# -- passes against autograd ------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_loss_and_gradients_are_autograd_plus_the_l2_term(loss):
    model = build("babysit.torch.examples:convnet", reg=0.3, loss=loss)
    X, y = batch()
    value, grads = model.loss(X, y)
    module = model.module
    scores = module(torch.from_numpy(X))
    if loss == "softmax":
        data = F.cross_entropy(scores, torch.from_numpy(y))
    else:
        correct = scores.gather(1, torch.from_numpy(y)[:, None])
        margins = (scores - correct + 1).clamp(min=0)
        data = (margins.sum() - len(y)) / len(y)   # minus the correct class's own margin of 1
    total = data + sum(0.5 * 0.3 * (module.get_parameter(n) ** 2).sum() for n in model.weight_names)
    expected = torch.autograd.grad(total, list(module.parameters()))
    assert value == pytest.approx(total.item(), rel=1e-12)
    for (name, _), g in zip(module.named_parameters(), expected):
        np.testing.assert_allclose(grads[name], g.numpy(), rtol=1e-10, atol=1e-12)
    with model.recording():   # what diagnostics see: the engine's loss on NumPy scores
        engine_value, engine_grads = model.loss(X, y)
    assert engine_value == pytest.approx(value, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(engine_grads[name], grads[name], rtol=1e-10, atol=1e-13)
    data_grads = model.data_grads()   # the data loss alone, for the monitors
    np.testing.assert_allclose(data_grads["classifier.3.bias"], grads["classifier.3.bias"], rtol=1e-12)
    assert not np.allclose(data_grads["features.0.weight"], grads["features.0.weight"])


def test_recording_keeps_outputs_and_gradients_and_leaves_no_hook_behind():
    model = build("babysit.torch.examples:two_layer")
    X, y = batch()
    with model.recording():
        model.loss(X, y)
        outputs, output_grads = dict(model.outputs), dict(model.output_grads)
        inputs, input_grads = dict(model.layer_inputs), dict(model.layer_input_grads)
        input_grad = model.input_grad
    assert list(outputs) == model.names and model.outputs == {} and model.layer_inputs == {}
    h = model.module.fc1(torch.from_numpy(X).flatten(1))
    np.testing.assert_allclose(outputs["fc1"], h.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(inputs["relu"], outputs["fc1"])
    np.testing.assert_allclose(input_grads["fc2"], output_grads["relu"], rtol=1e-12)
    assert input_grad.shape == X.shape and output_grads["fc2"].shape == (6, 10)
    for module in model.module.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert torch.autograd.Function.__dict__["apply"] is _ORIGINAL_APPLY


def test_gradcheck_is_exact_on_a_graph_that_is_not_a_chain():
    """Functional ReLU, a skip connection and a result computed after the last layer:
    every layer-input check uses the layer's real input and the gradient through it."""
    model = build("residual", input_shape=(12,), classes=3)
    assert model.names == ["inp", "body", "head", "output"] and model.kind_of("output") == "output"
    X, y = batch((4, 12), classes=3)
    checker = ModelChecker(model, X, y, Differencer(1e-5, np.random.default_rng(0), None))
    checker.analytic_pass()
    reports = checker.data_reports()
    assert {r.name for r in reports} >= {"input", "body input", "head input", "output input",
                                         "inp.weight", "head.bias"}
    worst = max(r.judged_rel_error or 0.0 for r in reports)
    assert worst < 1e-6, [(r.name, r.judged_rel_error) for r in reports]


def test_a_wrong_custom_function_is_named_by_gradcheck():
    from babysit.diagnostics.gradcheck.findings import Blame

    model = build("babysit.bundled.broken_torch:wrong_backward")
    assert model.names == ["fc1", "WrongSlopeLeakyReLU", "fc2"]
    assert model.kind_of("WrongSlopeLeakyReLU") == "custom"
    X, y = batch()
    checker = ModelChecker(model, X, y, Differencer(1e-5, np.random.default_rng(0), 10))
    checker.analytic_pass()
    reports = checker.data_reports()
    assert Blame(reports, model.names, model.has_kinks).culprit() == "WrongSlopeLeakyReLU"


# -- randomness --------------------------------------------------------------------------


def test_dropout_masks_replay_and_the_generator_state_restores_them():
    model = build("with_dropout")
    assert model.draws and not build("babysit.torch.examples:two_layer").draws
    X, _ = batch()
    outside = torch.get_rng_state()
    first = model.forward(X, train=True)
    state = model.random_state()
    second = model.forward(X, train=True)
    assert not np.array_equal(first, second)
    with model.replay_randomness():
        assert np.array_equal(model.forward(X, train=True), second)
        assert np.array_equal(model.forward_from(0, X, True), second)
    model.set_random_state(state)
    assert np.array_equal(model.forward(X, train=True), second)
    assert torch.equal(torch.get_rng_state(), outside)   # the global generator is not used up
    assert np.array_equal(model.forward(X), model.forward(X))   # test mode: no dropout


def test_dropout_false_turns_the_dropout_modules_off():
    model = build("with_dropout", dropout=False)
    X, _ = batch()
    assert np.array_equal(model.forward(X, train=True), model.forward(X))


def test_the_same_seed_gives_the_same_module_and_babysit_init_the_engines_weights():
    a = build("babysit.torch.examples:two_layer", seed=4)
    b = build("babysit.torch.examples:two_layer", seed=4)
    c = build("babysit.torch.examples:two_layer", seed=5)
    assert all(np.array_equal(a.params[n], b.params[n]) for n in a.params)
    assert not np.array_equal(a.params["fc1.weight"], c.params["fc1.weight"])
    torch_xavier = build("babysit.torch.examples:two_layer", seed=4, init="xavier")
    engine = build_model({"init": "xavier", "layers": [{"affine": {"out": 50}}, "relu",
                                                       {"affine": {"out": 10}}]},
                         (1, 8, 8), 10, np.random.default_rng(4), np.float64)
    np.testing.assert_array_equal(torch_xavier.params["fc1.weight"], engine.params["0.W"].T)
    np.testing.assert_array_equal(torch_xavier.params["fc2.weight"], engine.params["2.W"].T)
    assert not torch_xavier.params["fc1.bias"].any()


def test_buffers_round_trip():
    model = build("with_norms", input_shape=(5,), classes=3)
    X, y = batch((8, 5), classes=3)
    model.loss(X, y)   # a train-mode pass moves the running statistics
    saved = model.buffers()
    assert set(saved) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    model.loss(X * 3, y)
    model.load_buffers(saved)
    assert all(np.array_equal(saved[k], v) for k, v in model.buffers().items())
    with pytest.raises(ModelError, match="does not fit"):
        model.load_buffers({"1.running_mean": np.zeros(3)})


# -- kinks -----------------------------------------------------------------------------------


def test_kinks_are_recorded_from_relu_and_max_pooling():
    model = build("babysit.torch.examples:convnet")
    X, y = batch()
    with model.recording(), model.replay_randomness():
        model.loss(X, y)
    base = model.kink_state()   # the relu pattern, the max-pool argmaxes, then the loss's (None)
    assert len(base) == 4 and base[-1] is None
    inputs = X.copy()
    model.forward_from(0, inputs, True)
    same = model.kink_state()
    assert all(np.array_equal(p, q) for p, q in zip(base[:-1], same[:-1]))
    model.forward_from(0, -inputs, True)
    assert not all(np.array_equal(p, q) for p, q in zip(base[:-1], model.kink_state()[:-1]))
    smooth = build("tanh_net", input_shape=(5,), classes=3)
    assert not smooth.has_kinks and build("tanh_net", input_shape=(5,), classes=3, loss="svm").has_kinks


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory, message", [
    ("broken_factory", r"broken_factory'\(input_shape=\(5,\), num_classes=3\) raised RuntimeError: boom"),
    ("not_a_module", "returned str, not a torch nn.Module"),
    ("wrong_classes", r"must return class scores of shape \(2, 3\) \(the data has 3 classes\)"),
    ("tests.torch_backend.no_such:f", "cannot import model.torch factory module"),
    ("nope", "has no attribute 'nope'"),
    ("exits", r"raised SystemExit: the code called sys.exit\(0\)"),
    # a recipe cannot make babysit call a library's function with arguments of its choosing
    ("os:system", "is a builtin_function_or_method, not a function returning an nn.Module .*nothing "
                  "was called"),
    ("subprocess:run", "is a function of subprocess, not a factory of your own.*nothing was called"),
    ("babysit.store:write_hdf5", "is a function of babysit.store, not a factory of your own"),
])
def test_a_bad_factory_is_one_clear_model_error(factory, message):
    with pytest.raises(ModelError, match=message):
        build(factory, input_shape=(5,), classes=3)


def test_data_dependent_control_flow_between_layers_is_refused():
    model = build("branchy", input_shape=(5,), classes=3)
    X = np.ones((2, 5))
    with pytest.raises(ModelError, match="same sequence of layer calls"):
        with model.recording():
            model.forward(X)   # traced on zeros: it called b, now a


def test_a_failing_forward_or_backward_is_a_model_error():
    model = build("babysit.torch.examples:two_layer")
    with pytest.raises(ModelError, match="forward raised RuntimeError"):
        model.forward(np.zeros((2, 3)))
    with pytest.raises(ModelError, match="needs a train-mode forward"):
        model.backward(np.zeros((2, 10)))


def test_sanity_finds_identical_units_in_torch_rows(tmp_path, monkeypatch):
    # torch keeps a Linear's units in rows (out, in): copies of one random row are
    # symmetric units even though the weight is not constant
    from babysit.diagnostics.sanity import sanity_loss
    from babysit.recipes import load_recipe

    (tmp_path / "copied_units.py").write_text(
        "import torch, torch.nn as nn\n"
        "def make(input_shape, num_classes):\n"
        "    hidden = nn.Linear(64, 20)\n"
        "    with torch.no_grad():\n"
        "        hidden.weight.copy_(torch.randn(1, 64).repeat(20, 1) * 0.1)\n"
        "        hidden.bias.zero_()\n"
        "    return nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), nn.Linear(20, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    spec = load_recipe("torch-two-layer-digits", overrides={"model.torch": "copied_units:make",
                                                             "model.kwargs": {}})
    result = sanity_loss(spec)
    assert "symmetric_weights" in {f.code for f in result.findings if f.severity == "fail"}


def test_a_module_writing_into_its_input_leaves_the_callers_data_as_it_was():
    # from_numpy shares memory: an in-place ReLU first used to rewrite the validation set
    model = build("in_place_first", dtype=np.float32)
    X, y = batch()
    X = X.astype(np.float32)
    kept = X.copy()
    model.forward(X)
    model.loss(X, y, input_grad=False)   # a training step (torch forbids it on a leaf needing grad)
    assert np.array_equal(X, kept)
