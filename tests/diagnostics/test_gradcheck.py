"""gradcheck: correct layers pass, injected backward bugs are caught, errors are clear."""

import numpy as np
import pytest

from babysit.diagnostics.gradcheck import (FAIL_BAND, WARN_BAND, band, gradcheck_layer,
                                           gradcheck_recipe, parse_kwargs, parse_shape,
                                           relative_error)
from babysit.engine import layers as L
from babysit.errors import BabysitError, ModelError
from babysit.recipes import load_recipe


def codes(result, severity=None):
    return sorted({f.code for f in result.findings if severity in (None, f.severity)})


def recipe(name="two-layer-digits", **overrides):
    return load_recipe(name, overrides=overrides or None)


# ---------------------------------------------------------------------------
# User layers: correct ones and ones with the classic backward bugs


class Linear:
    """x @ W + b, params made by the user in float32 (gradcheck casts them)."""

    def __init__(self, d_in=10, out=5, w_factor=1.0, bias_grad=True, dx_sign=1.0):
        rng = np.random.default_rng(1)
        self.params = {"W": rng.standard_normal((d_in, out)).astype(np.float32),
                       "b": rng.standard_normal(out).astype(np.float32)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.w_factor, self.bias_grad, self.dx_sign = w_factor, bias_grad, dx_sign

    def forward(self, x, train):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads["W"] = self.w_factor * self.x.T @ dout
        if self.bias_grad:
            self.grads["b"] = dout.sum(axis=0)
        return self.dx_sign * dout @ self.params["W"].T


class Leaky:
    """Leaky ReLU; ``backward_slope`` is the slope backward uses on the negative side."""

    has_kinks = True

    def __init__(self, alpha=0.1, backward_slope=None, mask=True):
        self.params, self.grads = {}, {}
        self.alpha = alpha
        self.backward_slope = alpha if backward_slope is None else backward_slope
        self.mask = mask

    def forward(self, x, train):
        self.positive = x > 0
        return np.where(self.positive, x, self.alpha * x)

    def backward(self, dout):
        if not self.mask:  # one-sided: the positive side's rule used everywhere
            return dout.copy()
        return dout * np.where(self.positive, 1.0, self.backward_slope)

    def kink_state(self):
        return self.positive


class HalfPrecisionTanh:
    """tanh whose backward rounds through float16: errors of ~1e-3, not 1e-1."""

    def __init__(self, kinks=False):
        self.params, self.grads = {}, {}
        self.has_kinks = kinks

    def forward(self, x, train):
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out.astype(np.float16).astype(np.float64) ** 2)


class Shrink:
    """Scales by 1e-12: every gradient lands in float range trouble."""

    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, x, train):
        return x * 1e-12

    def backward(self, dout):
        return dout * 1e-12


class ForgetfulDropout:
    """Dropout that ignores ``replay``: f(x+h) and f(x-h) see different masks."""

    uses_randomness = True

    def __init__(self):
        self.params, self.grads = {}, {}
        self.rng = np.random.default_rng(0)
        self.replay = False

    def forward(self, x, train):
        self.mask = (self.rng.random(x.shape) < 0.5) / 0.5
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


def test_correct_user_layer_passes():
    result = gradcheck_layer(Linear, {}, (4, 10), seed=0)
    assert result.status == "pass" and result.findings == []
    m = result.metrics
    assert m["dtype"] == "float64"
    assert set(m["params"]) == {"W", "b"}
    assert m["params"]["W"]["checked"] == 10 and m["params"]["b"]["checked"] == 5
    assert m["input"]["checked"] == 10
    # float32 parameters were cast: float64 agreement, far below float32's 1e-7
    assert max(m["params"]["W"]["max_rel_error"], m["input"]["max_rel_error"]) < 1e-6


def test_factor_of_two_in_a_weight_gradient():
    result = gradcheck_layer(Linear, {"w_factor": 2.0}, (4, 10), seed=0)
    assert codes(result, "fail") == ["gradient_mismatch"]
    (finding,) = result.findings
    assert finding.evidence["name"] == "W"
    assert "2 times the numerical" in finding.message
    assert result.metrics["params"]["W"]["max_rel_error"] == pytest.approx(0.5, rel=1e-3)
    assert result.metrics["params"]["b"]["max_rel_error"] < 1e-7


def test_missing_bias_gradient():
    result = gradcheck_layer(Linear, {"bias_grad": False}, (4, 10), seed=0)
    (finding,) = result.findings
    assert finding.code == "gradient_mismatch" and finding.evidence["name"] == "b"
    assert "never writes it" in finding.message
    assert "grads" in finding.fix


def test_wrong_sign_of_dx():
    result = gradcheck_layer(Linear, {"dx_sign": -1.0}, (4, 10), seed=0)
    (finding,) = result.findings
    assert finding.code == "gradient_mismatch" and finding.evidence["check"] == "input"
    assert "wrong sign" in finding.message
    assert "dx it returns" in finding.fix


def test_wrong_slope_on_one_side_of_a_kink():
    assert gradcheck_layer(Leaky, {}, (4, 10), seed=0).status == "pass"
    result = gradcheck_layer(Leaky, {"backward_slope": 0.2}, (4, 10), seed=0)
    assert codes(result, "fail") == ["gradient_mismatch"]
    assert result.metrics["input"]["max_rel_error"] == pytest.approx(0.5, rel=1e-3)


def test_one_sided_backward():
    result = gradcheck_layer(Leaky, {"mask": False}, (4, 10), seed=0)
    assert codes(result, "fail") == ["gradient_mismatch"]


def test_small_error_fails_a_smooth_layer_but_only_warns_with_kinks():
    smooth = gradcheck_layer(HalfPrecisionTanh, {}, (4, 10), seed=0)
    assert [(f.code, f.severity) for f in smooth.findings] == [("gradient_suspicious", "fail")]
    assert WARN_BAND < smooth.metrics["input"]["max_rel_error"] <= FAIL_BAND
    kinky = gradcheck_layer(HalfPrecisionTanh, {"kinks": True}, (4, 10), seed=0)
    assert [(f.code, f.severity) for f in kinky.findings] == [("gradient_suspicious", "warn")]


def test_tiny_gradients_warn():
    result = gradcheck_layer(Shrink, {}, (4, 10), seed=0)
    assert [(f.code, f.severity) for f in result.findings] == [("gradient_tiny", "warn")]
    assert result.metrics["input"]["max_rel_error"] is None  # nothing judged


def test_randomness_must_be_replayed():
    # Engine dropout replays its mask for f(x+h), f(x-h) and the analytic pass ...
    assert gradcheck_layer(L.Dropout, {"keep": 0.5}, (4, 10), seed=0).status == "pass"
    # ... a layer that draws a new mask every call cannot be checked.
    result = gradcheck_layer(ForgetfulDropout, {}, (4, 10), seed=0)
    assert "gradient_mismatch" in codes(result, "fail")


ENGINE_LAYERS = [
    (L.Affine, {"out": 5}, (4, 10)),
    (L.Affine, {"out": 3}, (2, 2, 3, 3)),
    (L.Conv, {"filters": 3}, (2, 2, 6, 6)),
    (L.Conv, {"filters": 2, "size": 3, "stride": 2, "pad": 1}, (2, 3, 7, 7)),
    (L.MaxPool, {}, (2, 3, 6, 6)),
    (L.MaxPool, {"size": 3, "stride": 1}, (2, 2, 5, 5)),
    (L.Flatten, {}, (2, 3, 4)),
    (L.ReLU, {}, (4, 10)),
    (L.LeakyReLU, {"alpha": 0.05}, (4, 10)),
    (L.PReLU, {}, (4, 10)),
    (L.PReLU, {}, (2, 3, 4, 4)),
    (L.ELU, {}, (4, 10)),
    (L.ELU, {"alpha": 0.5}, (4, 10)),
    (L.Maxout, {"out": 4, "pieces": 3}, (4, 10)),
    (L.Sigmoid, {}, (4, 10)),
    (L.Tanh, {}, (4, 10)),
    (L.BatchNorm, {}, (4, 10)),
    (L.BatchNorm, {}, (3, 2, 4, 4)),
    (L.Dropout, {"keep": 0.8}, (2, 3, 4, 4)),
]


@pytest.mark.parametrize("cls, kwargs, shape", ENGINE_LAYERS,
                         ids=[f"{c.__name__}-{'x'.join(map(str, s))}" for c, _, s in ENGINE_LAYERS])
def test_every_engine_layer_passes(cls, kwargs, shape):
    for seed in range(3):
        result = gradcheck_layer(cls, kwargs, shape, seed=seed)
        assert result.status != "fail", [f.message for f in result.findings]
        assert not codes(result) or codes(result) == ["kink_crossed"]


def test_all_entries():
    result = gradcheck_layer(L.Affine, {"out": 3}, (2, 4), seed=0, all_entries=True)
    m = result.metrics
    assert (m["params"]["W"]["checked"], m["params"]["b"]["checked"], m["input"]["checked"]) == (12, 3, 8)
    assert m["entries"] == "all"


# ---------------------------------------------------------------------------
# Recipes


@pytest.fixture(scope="module")
def default_result():
    return gradcheck_recipe(recipe())


def test_default_recipe_passes_in_float64(default_result):
    result = default_result
    assert result.status == "pass" and result.findings == []
    m = result.metrics
    assert m["dtype"] == "float64" and m["datapoints"] == 3 and m["h"] == 1e-5
    assert set(m["params"]) == {"0.W", "0.b", "2.W", "2.b"}
    assert all(p["checked"] == 10 for p in m["params"].values())
    assert set(m["layer_inputs"]) == {"1.relu", "2.affine"}
    assert set(m["reg"]) == {"0.W", "2.W"}  # the L2 term, on weights only
    assert m["reg_checked"] == 1e-4
    assert max(p["max_rel_error"] for p in m["params"].values()) < 1e-5
    assert m["has_kinks"] is True


def test_default_recipe_is_deterministic(default_result):
    assert gradcheck_recipe(recipe()).to_dict() == default_result.to_dict()


def test_svm_batchnorm_and_dropout_models_pass():
    layers = [{"affine": {"out": 30}}, "batchnorm", "relu", {"dropout": {"keep": 0.7}},
              {"affine": {"out": 20}}, "tanh", {"affine": {"out": 10, "init": "small"}}]
    for loss in ("softmax", "svm"):
        result = gradcheck_recipe(recipe(**{"model.layers": layers, "model.loss": loss}),
                                  datapoints=4)
        assert result.status != "fail", [f.message for f in result.findings]
        assert "gradient_mismatch" not in codes(result)


def test_convnet_passes():
    layers = [{"conv": {"filters": 3, "size": 3}}, "relu", {"maxpool": {"size": 2}},
              {"affine": {"out": 10, "init": "small"}}]
    result = gradcheck_recipe(recipe("convnet-digits", **{"model.layers": layers}), datapoints=2)
    assert result.status != "fail", [f.message for f in result.findings]


def test_wrong_backward_recipe_names_the_culprit():
    result = gradcheck_recipe(recipe("broken/wrong-backward"))
    assert result.status == "fail"
    failing = {f.evidence["name"]: f for f in result.findings if f.code == "gradient_mismatch"}
    assert {"input", "0.W", "0.b", "1.custom input"} <= set(failing)
    assert not {"2.W", "2.b", "2.affine input"} & set(failing)  # above the bug: fine
    assert failing["1.custom input"].fix.startswith("correct the backward of 1.custom")
    assert "1.custom" in failing["0.W"].fix and "not 0.affine's fault" in failing["0.W"].fix


def test_kinks_crossed_at_zero_init_are_excluded_not_failed():
    # Zero weights put every ReLU input exactly on its kink.
    result = gradcheck_recipe(recipe("broken/zero-init"))
    assert "kink_crossed" in codes(result)
    assert "gradient_mismatch" not in codes(result)
    assert result.metrics["params"]["0.b"]["kinks"] == 10


def test_exploding_init_cannot_be_checked():
    # float64 overflows (1e200 * 1e200): scores are inf, the loss NaN.
    layers = [{"affine": {"out": 50}}, "relu", {"affine": {"out": 10}}]
    result = gradcheck_recipe(recipe(**{"model.init": {"normal": 1e200}, "model.layers": layers}))
    assert codes(result) == ["loss_not_finite"]
    result.to_dict()


def test_burn_in():
    result = gradcheck_recipe(recipe(), burn_in_steps=20)
    assert result.status == "pass" and result.metrics["burn_in"] == 20
    diverged = gradcheck_recipe(recipe("broken/lr-too-high", **{"optim.lr": 1e8}),
                                burn_in_steps=30)
    assert codes(diverged) == ["loss_not_finite"]
    assert "burn-in" in diverged.findings[0].message


# ---------------------------------------------------------------------------
# Helpers and bad input


def test_relative_error_and_bands():
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(1.0, -1.0) == 2.0
    assert relative_error(2.0, 1.0) == 0.5
    assert band(1e-8, True) == "excellent"
    assert band(1e-5, False) == "good"
    assert band(1e-3, True) == "suspicious"
    assert band(1e-3, False) == "fail"
    assert band(0.5, True) == "fail"


@pytest.mark.parametrize("text", ["", "4", "4,x", "0,10", "4,-1", "4;10"])
def test_bad_input_shapes(text):
    with pytest.raises(BabysitError, match="shape"):
        parse_shape(text)


def test_shapes_and_kwargs_parse():
    assert parse_shape("4,10") == (4, 10)
    assert parse_shape(" 2, 3, 8, 8 ") == (2, 3, 8, 8)
    assert parse_kwargs('{"out": 5}') == {"out": 5}
    for bad in ("{out: 5}", "[1, 2]"):
        with pytest.raises(BabysitError, match="--kwargs"):
            parse_kwargs(bad)


class RaisingForward(Linear):
    def forward(self, x, train):
        raise ValueError("shapes do not line up")


class WrongDxShape(Linear):
    def backward(self, dout):
        super().backward(dout)
        return dout


class BadConstructor:
    def __init__(self, width):
        raise RuntimeError("width must be even")

    def forward(self, x, train):  # a layer class (checked before it is called) ...
        return x

    def backward(self, dout):     # ... whose constructor fails
        return dout


class NotALayer:
    def __init__(self):
        self.params = {}


@pytest.mark.parametrize("cls, kwargs, match", [
    (RaisingForward, {}, "RaisingForward.forward raised ValueError: shapes do not line up"),
    (WrongDxShape, {}, r"dx of shape \(4, 5\), but the input has shape \(4, 10\)"),
    (BadConstructor, {"width": 3}, "BadConstructor\\(width=3\\) failed: RuntimeError"),
    (Linear, {"colour": "red"}, "unexpected keyword argument 'colour'"),
    (NotALayer, {}, "not a layer"),
    ("no_such_module_xyz:Layer", {}, "cannot import"),
])
def test_broken_user_layers_are_model_errors(cls, kwargs, match):
    with pytest.raises(ModelError, match=match):
        gradcheck_layer(cls, kwargs, (4, 10), seed=0)


def test_bad_options():
    with pytest.raises(BabysitError):
        gradcheck_recipe(recipe(), entries=0)
    with pytest.raises(BabysitError):
        gradcheck_recipe(recipe(), h=0)
    with pytest.raises(TypeError):
        gradcheck_recipe(recipe(), samples=3)


# -- precision is named as precision (calibration issue) ---------------------------------

class Float32ForwardTanh:
    """tanh computed in float32 inside forward (cast back to the input's dtype);
    the backward is right. Its numerical gradients are float32 rounding noise."""

    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, x, train):
        self.out = np.tanh(x.astype(np.float32)).astype(x.dtype)
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out ** 2)


def test_a_float32_forward_is_named_as_precision_not_as_a_wrong_backward(monkeypatch):
    import sys
    import types

    module = types.ModuleType("precision_layers")
    module.Float32ForwardTanh = Float32ForwardTanh
    monkeypatch.setitem(sys.modules, "precision_layers", module)
    spec = recipe(**{"model.layers": [{"affine": {"out": 30}},
                                      {"custom": "precision_layers:Float32ForwardTanh"},
                                      {"affine": {"out": 10, "init": "small"}}]})
    result = gradcheck_recipe(spec)
    assert codes(result, "fail") == ["gradient_precision"]
    finding = next(f for f in result.findings if f.code == "gradient_precision")
    assert finding.layer == "1.custom"  # where the noise enters, not the arrays before it
    assert "step size" in finding.message and "float32" in finding.fix
    assert result.metrics["layer_inputs"]["2.affine"]["unstable"] == 0


def test_the_same_layer_standalone_is_named_as_precision():
    result = gradcheck_layer(Float32ForwardTanh, {}, (4, 10), seed=0)
    assert codes(result, "fail") == ["gradient_precision"]


def test_a_wrong_backward_stays_a_mismatch_under_the_stability_check():
    result = gradcheck_recipe(load_recipe("broken/wrong-backward"))
    assert "gradient_mismatch" in codes(result, "fail")
    assert all(r["unstable"] == 0 for r in result.metrics["params"].values())


@pytest.mark.parametrize("h", [1e-20, 1e-9, 0.5])
def test_a_step_outside_what_float64_resolves_is_refused(h):
    # --h 1e-20 made x + h == x: every estimate 0, every entry "both zero", a broken
    # backward passed. Steps outside [1e-8, 1e-2] are bad input now.
    with pytest.raises(BabysitError, match="h must be a step between 1e-08 and 0.01"):
        gradcheck_recipe(load_recipe("broken/wrong-backward"), h=h)


def test_the_smallest_allowed_step_still_catches_a_broken_backward():
    result = gradcheck_recipe(load_recipe("broken/wrong-backward"), h=1e-8)
    assert result.status == "fail" and "gradient_mismatch" in codes(result, "fail")


@pytest.mark.parametrize("seed", [1, 8])
def test_the_spiral_origin_is_not_a_datapoint(seed):
    # every arm of the spiral starts at (0, 0): with zero biases that input sits on the
    # kink of every ReLU unit, so every entry of 0.b crossed a kink and the check of
    # seeds 1 and 8 warned "nothing left to judge"
    from babysit.diagnostics.gradcheck import checkable_datapoints

    result = gradcheck_recipe(load_recipe("spiral-mlp"), seed=seed)
    assert result.status == "pass", [f.message for f in result.findings]
    X = np.zeros((5, 2))
    X[3] = 1.0
    chosen, _ = checkable_datapoints(X, np.arange(5), 1, np.random.default_rng(0))
    assert np.all(chosen == 1.0)


def test_entries_near_a_kink_are_retried_with_a_smaller_step():
    # a ReLU input within 1e-5 of zero crosses the kink at h = 1e-5 but not at 1e-7
    class NearZeroReLU:
        def __init__(self):
            self.params, self.grads = {}, {}
            self.has_kinks = True

        def forward(self, x, train):
            self.x = x
            return np.maximum(x, 0.0)

        def backward(self, dout):
            return dout * (self.x > 0)

        def kink_state(self):
            return self.x > 0

    from babysit.diagnostics.gradcheck.model_check import ModelChecker, ProjectionLoss
    from babysit.diagnostics.gradcheck.numerical import Differencer
    from babysit.engine.model import Model

    layer = NearZeroReLU()
    X = np.array([[3e-6, -2.0, 1.0]])
    R = np.array([[0.5, 0.7, -1.1]])
    model = Model([layer], ProjectionLoss(R), 0.0, (3,), 3, np.float64, names=["0.relu"])
    checker = ModelChecker(model, X, np.zeros(1, dtype=np.int64),
                           Differencer(1e-5, np.random.default_rng(0), None))
    checker.analytic_pass()
    (report,) = checker.data_reports()
    assert report.kinks == 0 and len(report.judged) == 3
    assert report.entries[0].numerical == pytest.approx(0.5)
