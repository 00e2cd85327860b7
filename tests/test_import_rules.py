"""The house rules, read off the source: imports flow cli -> diagnostics -> engine.

* the engine imports only NumPy, the standard library and the package's
  NumPy-only leaves (errors, validation, streams), plus threadpoolctl in
  engine/parallel.py alone (it pins BLAS to one thread, see there);
* diagnostics import no click, no rich and nothing of the CLI;
* nothing below the CLI imports the CLI;
* the torch backend (babysit.torch, but for its entry point api.py) imports what the
  engine may, plus torch and itself;
* no Python file of the package is over 500 lines.

Every import statement counts, including those inside functions (a lazy
import is still a dependency).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import babysit

PACKAGE = Path(babysit.__file__).resolve().parent
LEAVES = {"babysit.errors", "babysit.validation", "babysit.streams"}
# third-party modules one engine file may import besides numpy
ENGINE_EXTRAS = {"parallel.py": {"threadpoolctl"}}
MAX_LINES = 500


def modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("babysit",) + path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module)
    return names


def label(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", modules("engine"), ids=label)
def test_the_engine_imports_only_numpy_the_stdlib_and_the_leaves(path):
    bad = {name for name in imported(path)
           if name.split(".")[0] not in sys.stdlib_module_names
           and name.split(".")[0] != "numpy"
           and not name.startswith("babysit.engine")
           and name not in LEAVES
           and name.split(".")[0] not in ENGINE_EXTRAS.get(path.name, ())}
    assert not bad, f"{label(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_the_leaves_import_only_numpy_and_the_stdlib(leaf):
    path = PACKAGE / (leaf.split(".", 1)[1] + ".py")
    bad = {name for name in imported(path)
           if name.split(".")[0] not in sys.stdlib_module_names | {"numpy"} and name not in LEAVES}
    assert not bad, f"{leaf} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules("diagnostics"), ids=label)
def test_diagnostics_import_no_click_rich_or_cli(path):
    bad = {name for name in imported(path)
           if name.split(".")[0] in ("click", "rich") or name.startswith("babysit.cli")}
    assert not bad, f"{label(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in modules() if "cli" not in p.relative_to(PACKAGE).parts
                                  and p.name != "__main__.py"], ids=label)
def test_nothing_below_the_cli_imports_it(path):
    bad = {name for name in imported(path) if name.startswith("babysit.cli")}
    assert not bad, f"{label(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in modules("torch") if p.name != "api.py"], ids=label)
def test_the_torch_backend_imports_what_the_engine_does_plus_torch(path):
    """babysit.torch sits beside the engine (its api.py, like the CLI, is an entry point)."""
    bad = {name for name in imported(path)
           if name.split(".")[0] not in sys.stdlib_module_names | {"numpy", "torch"}
           and not name.startswith(("babysit.engine", "babysit.torch")) and name not in LEAVES}
    assert not bad, f"{label(path)} imports {sorted(bad)}"


def test_no_file_is_over_500_lines():
    long = {label(p): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_the_scan_sees_imports_inside_functions(tmp_path):
    sample = PACKAGE / "engine" / "builder.py"  # imports babysit.engine.layers inside build_model
    assert "babysit.engine.layers" in imported(sample)
