"""``import babysit`` and every NumPy command work without torch, and never import it.

Each check runs in a fresh interpreter. "Without torch" is ``sys.modules["torch"] =
None``, which makes every ``import torch`` fail as if it were not installed. These
tests run whether or not torch is installed (they are not marked ``torch``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import babysit

# the copy of babysit this process tests (source tree, or site-packages in CI)
BABYSIT_HOME = str(Path(babysit.__file__).resolve().parents[1])
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def python(code: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=BABYSIT_HOME, COLUMNS="120")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def cli(*args) -> str:
    return ("import runpy\n"
            f"sys.argv = ['babysit', *{list(args)!r}]\n"
            "runpy.run_module('babysit.cli', run_name='__main__')\n")


def test_numpy_commands_run_without_torch(tmp_path):
    for args in (["sanity-loss", "--json", str(tmp_path / "s.json")], ["gradcheck", "-q"], ["recipes"],
                 ["gradcheck", "--layer", "babysit.bundled.broken_layers:WrongSlopeLeakyReLU",
                  "--input-shape", "3,4", "-q"]):
        done = python(BLOCK_TORCH + cli(*args), tmp_path)
        expected = 1 if "--layer" in args else 0
        assert done.returncode == expected, (args, done.stderr[-2000:])
    assert '"status": "pass"' in (tmp_path / "s.json").read_text()


def test_a_torch_recipe_without_torch_says_how_to_install_it(tmp_path):
    done = python(BLOCK_TORCH + cli("sanity-loss", "torch-two-layer-digits"), tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: this model needs PyTorch, which is not installed: install PyTorch (>= 2.1) with: "
        "pip install 'babysit[torch]'"]


def test_numpy_recipes_never_import_torch(tmp_path):
    code = ("import sys, babysit\n"
            "from babysit.diagnostics.sanity import sanity_loss\n"
            "from babysit.diagnostics.gradcheck import gradcheck_recipe\n"
            "from babysit.recipes import list_recipes, load_recipe\n"
            "list_recipes(); sanity_loss(load_recipe('two-layer-digits'))\n"
            "gradcheck_recipe(load_recipe('convnet-digits'))\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
