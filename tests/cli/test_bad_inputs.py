"""Bad input never crashes: one ``error: ...`` line on stderr, exit code 2, no traceback.

Each case here was found by an adversarial audit of the CLI; the fix lives in
the module that owns the input (recipes, data, engine model, CLI options).
"""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from babysit.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})


def assert_usage_error(result, *words):
    """Exit 2 with exactly one line ``error: ...`` naming ``words``, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- custom layers that fail at run time (past the builder's shape probe) ------------

LAYERS = '''
import numpy as np

class Probe:
    """Behaves on the builder's batch of 2, then fails as its name says."""
    def __init__(self):
        self.params, self.grads = {}, {}
    def forward(self, x, train):
        self.x = x
        return x
    def backward(self, dout):
        return dout

class ForwardRaises(Probe):
    def forward(self, x, train):
        if len(x) != 2:
            raise RuntimeError("boom in forward")
        return x

class BackwardRaises(Probe):
    def backward(self, dout):
        raise RuntimeError("boom in backward")

class BackwardNone(Probe):
    def backward(self, dout):
        return None

class ForwardNone(Probe):
    def forward(self, x, train):
        return x if len(x) == 2 else None
'''


@pytest.fixture
def layer_dir(tmp_path, monkeypatch):
    (tmp_path / "audit_layers.py").write_text(LAYERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def custom_recipe(directory, cls: str):
    path = directory / f"{cls}.yaml"
    path.write_text(textwrap.dedent(f"""\
        data: {{source: builtin:digits, limit: 200}}
        model:
          layers: [flatten, {{custom: audit_layers:{cls}}}, {{affine: {{out: 10}}}}]
        train: {{epochs: 1}}
        """))
    return path


@pytest.mark.parametrize("cls, words", [
    ("ForwardRaises", ["layer 1 (custom ForwardRaises)", "forward raised RuntimeError: boom in forward"]),
    ("BackwardRaises", ["layer 1 (custom BackwardRaises)", "backward raised RuntimeError"]),
    ("BackwardNone", ["layer 1 (custom BackwardNone)", "backward must return dx", "got None"]),
    ("ForwardNone", ["layer 1 (custom ForwardNone)", "forward must return a numeric array", "got None"]),
])
@pytest.mark.parametrize("command", ["sanity-loss", "gradcheck", "overfit-tiny", "train"])
def test_custom_layer_failing_at_run_time(layer_dir, cls, words, command):
    extra = ["--out", layer_dir / "run.h5"] if command == "train" else []
    result = run(command, custom_recipe(layer_dir, cls), "--quiet", *extra)
    assert_usage_error(result, *words)
