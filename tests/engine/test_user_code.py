"""Custom layers are code (issue 10 items 2 and 7): only layer classes are accepted, checked
before anything is called, and whatever escapes them (sys.exit too) is the layer's error."""

import signal
import textwrap
import uuid

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from babysit.cli import cli
from babysit.engine.builder import build_model
from babysit.errors import ModelError
from tests.helpers import one_error_line

LAYER = '''
import sys
import numpy as np

class Identity:
    def __init__(self, **kwargs):
        self.params, self.grads = {}, {}
    def forward(self, x, train):
        return x
    def backward(self, dout):
        return dout
'''


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a module of user layers (LAYER plus ``body``) importable from the cwd; returns its name."""
    monkeypatch.chdir(tmp_path)

    def write(body):
        name = f"user_layers_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(LAYER + textwrap.dedent(body))
        return name

    return write


def model_with(custom, input_dim=10):
    return {"layers": [{"custom": custom}, {"affine": {"out": 3}}]}


# -- only layer classes, checked before they are called (item 2) ---------------------

@pytest.mark.parametrize("target, what", [
    ("subprocess:run", "a function, not a class"),
    ("os:system", "a function, not a class"),
    ("subprocess:Popen", "lacks forward, backward"),
    ("builtins:eval", "a function, not a class"),
    ("os:path", "a module, not a class"),
])
def test_a_callable_that_is_not_a_layer_class_is_refused_uncalled(target, what, tmp_path):
    marker = tmp_path / "ran"
    kwargs = {"args": f"touch {marker}", "shell": True, "command": f"touch {marker}"}
    with pytest.raises(ModelError, match=what) as exc:
        build_model(model_with({"class": target, "kwargs": kwargs}), (10,), 3)
    assert "nothing was called" in str(exc.value)
    assert not marker.exists()


def test_a_class_without_the_contract_is_never_instantiated(user_module, tmp_path):
    name = user_module('''
        class Sneaky:
            def __init__(self):
                open("constructed", "w").close()
            def forward(self, x, train):
                return x
    ''')
    with pytest.raises(ModelError, match="lacks backward"):
        build_model(model_with(f"{name}:Sneaky"), (10,), 3)
    assert not (tmp_path / "constructed").exists()
    from babysit.engine.user_code import load_layer_class

    assert load_layer_class(f"{name}:Identity").__name__ == "Identity"


def test_a_recipe_naming_subprocess_run_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "X"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        name: evil
        data: {{source: "builtin:digits"}}
        model:
          layers:
            - affine: {{out: 10}}
            - custom: {{class: 'subprocess:run', kwargs: {{args: 'touch {marker}', shell: true}}}}
        """))
    line = one_error_line(run("sanity-loss", recipe))
    assert "'subprocess:run' is not a layer" in line and "nothing was called" in line
    line = one_error_line(run("sanity-loss", "--set",
                              f"model.layers.1={{custom: {{class: 'os:system', "
                              f"kwargs: {{command: 'touch {marker}'}}}}}}"))
    assert "'os:system' is not a layer" in line
    assert not marker.exists()


def test_a_run_log_naming_custom_code_says_what_resuming_imports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "run.h5"
    assert run("train", "--set", "train.epochs=1", "--out", log, "-q").exit_code == 0
    marker = tmp_path / "X"
    with h5py.File(log, "r+") as handle:  # a run log from someone else
        recipe = handle.attrs["recipe"]
        recipe = recipe.decode() if isinstance(recipe, bytes) else recipe
        evil = (f"  - custom: {{class: 'subprocess:run', kwargs: {{args: 'touch {marker}', "
                f"shell: true}}}}\n")
        handle.attrs["recipe"] = recipe.replace("  layers:\n", "  layers:\n" + evil, 1)
    result = run("train", "--resume", log, "--set", "train.epochs=2", "-q")
    assert result.exit_code == 2 and not marker.exists(), result.output
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("warning: ") and "imports and runs the Python module(s) subprocess" \
        in warning
    assert error.startswith("error: custom layer 'subprocess:run' is not a layer")


def test_help_says_custom_layers_run_as_code():
    assert "run as code" in " ".join(run("--help").output.split())
    assert "run as code" in " ".join(run("gradcheck", "--help").output.split())


# -- SystemExit and KeyboardInterrupt from user code (item 7) --------------------------

@pytest.mark.parametrize("body, where", [
    ("sys.exit(0)\n", "cannot import custom layer module"),
    ("class L(Identity):\n    def __init__(self):\n        sys.exit(0)\n", "constructor failed"),
    ("class L(Identity):\n    def build(self, *args):\n        sys.exit(3)\n", "build failed"),
    ("class L(Identity):\n    def forward(self, x, train):\n        sys.exit(0)\n", "forward"),
    ("class L(Identity):\n    def forward(self, x, train):\n        raise KeyboardInterrupt\n",
     "forward"),
])
def test_exits_and_interrupts_raised_by_a_layer_are_its_error(user_module, body, where):
    name = user_module(body)
    with pytest.raises(ModelError, match=where) as exc:
        with babysit_signal_handlers():
            build_model(model_with(f"{name}:L"), (10,), 3)
    assert "SystemExit: the code called sys.exit(" in str(exc.value) or \
        "KeyboardInterrupt: raised by the code itself" in str(exc.value)


def test_backward_calling_sys_exit_is_exit_2_not_0(user_module):
    name = user_module("class L(Identity):\n    def backward(self, dout):\n        sys.exit(0)\n")
    line = one_error_line(run("overfit-tiny", "--set",
                              f"model.layers=[{{custom: '{name}:L'}}, {{affine: {{out: 10}}}}]"))
    assert "layer 0 (custom L): backward raised SystemExit: the code called sys.exit(0)" in line


def test_gradcheck_layer_calling_sys_exit_is_exit_2(user_module):
    name = user_module("class L(Identity):\n    def forward(self, x, train):\n        sys.exit(0)\n")
    line = one_error_line(run("gradcheck", "--layer", f"{name}:L", "--input-shape", "2,3"))
    assert "L.forward raised SystemExit" in line


class babysit_signal_handlers:
    """babysit's own SIGINT/SIGTERM handlers, as the console script installs them."""

    def __enter__(self):
        from babysit import interrupts

        self.previous = interrupts.install()

    def __exit__(self, *exc):
        from babysit import interrupts

        interrupts.restore(self.previous)
        return False


def test_a_real_interrupt_still_stops():
    from babysit.engine.user_code import fenced
    from babysit.errors import Interrupted

    with pytest.raises(Interrupted):
        with fenced("layer 0 (custom L): forward raised"):
            raise Interrupted("SIGINT")
    # the Python API (Python's own SIGINT handler): a KeyboardInterrupt may be a real Ctrl-C
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        with fenced("layer 0 (custom L): forward raised"):
            raise KeyboardInterrupt


def test_user_layers_still_build_and_run(user_module):
    name = user_module("")
    model = build_model(model_with(f"{name}:Identity"), (10,), 3, np.random.default_rng(0))
    loss, grads = model.loss(np.ones((4, 10)), np.array([0, 1, 2, 0]))
    assert np.isfinite(loss) and set(grads) == {"1.W", "1.b"}


# -- layers that break in ways the contract check itself tripped on ----------------------

BROKEN_BODIES = {
    "string parameter": ("class L(Identity):\n    def __init__(self):\n"
                         "        self.params, self.grads = {'w': 'str'}, {'w': 0}\n",
                         "params['w'] is not an array of numbers"),
    "object parameter": ("class L(Identity):\n    def __init__(self):\n"
                         "        self.params = {'w': np.array([object(), 1], dtype=object)}\n"
                         "        self.grads = {'w': 0}\n",
                         "params['w'] is not an array of numbers"),
    "raising params property": ("class L:\n    grads = {}\n    @property\n    def params(self):\n"
                                "        raise RuntimeError('no')\n"
                                "    def forward(self, x, train):\n        return x\n"
                                "    def backward(self, dout):\n        return dout\n",
                                "reading its attribute 'params' raised RuntimeError"),
    "raising __getattr__": ("class L(Identity):\n    def __getattr__(self, name):\n"
                            "        raise RuntimeError('no ' + name)\n",
                            "reading its attribute 'rng' raised RuntimeError"),
    "forward raising GeneratorExit": ("class L(Identity):\n    def forward(self, x, train):\n"
                                      "        raise GeneratorExit\n", "GeneratorExit"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_BODIES))
@pytest.mark.parametrize("mode", ["recipe", "layer"])
def test_a_broken_layer_is_one_error_line_in_either_mode(user_module, case, mode):
    body, words = BROKEN_BODIES[case]
    name = user_module(body)
    args = (["gradcheck", "--set", f"model.layers.1={{custom: '{name}:L'}}"] if mode == "recipe" else
            ["gradcheck", "--layer", f"{name}:L", "--input-shape", "4,10"])
    one_error_line(run(*args), words)


def test_an_input_shape_numpy_cannot_hold_is_refused():
    line = one_error_line(run("gradcheck", "--layer", "babysit.engine.layers:ReLU",
                              "--input-shape", ",".join(["1"] * 70)))
    assert "70 dimensions; at most 32" in line
