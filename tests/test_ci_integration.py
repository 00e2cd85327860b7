"""CI integration as users copy it: the README's Actions job, the composite action, the hook.

* the README's GitHub Actions snippet is read out of README.md and its babysit
  steps run as written, in an empty folder (its report folder does not exist);
* the composite action's shell steps (action/install.sh, action/run.sh) run
  locally with the environment the action gives them;
* the pre-commit hook's entry runs with the arguments its documentation shows.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import babysit
from babysit.cli import cli

REPO = Path(__file__).resolve().parents[1]


def readme_ci_job() -> dict:
    """The YAML block of the README's "GitHub Actions job", parsed."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("A GitHub Actions job", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block)


def babysit_env(tmp_path: Path) -> dict:
    """A subprocess environment whose `babysit` runs this checkout's (or the installed) package."""
    bin_dir = Path(sys.executable).parent
    package_root = Path(babysit.__file__).resolve().parents[1]
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                PYTHONPATH=str(package_root), COLUMNS="100",
                GITHUB_OUTPUT=str(tmp_path / "github_output"))


def test_the_readme_ci_snippet_runs_as_written(tmp_path, monkeypatch):
    steps = readme_ci_job()["jobs"]["babysit"]["steps"]
    commands = [step["run"] for step in steps if str(step.get("run", "")).startswith("babysit ")]
    assert len(commands) >= 3
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["recipes", "copy", "two-layer-digits", "my-recipe.yaml"]).exit_code == 0
    for command in commands:
        result = runner.invoke(cli, shlex.split(command)[1:])
        assert result.exit_code == 0, f"{command}\n{result.output}"
    for path in re.findall(r"(reports/\S+\.(?:xml|json))", " ".join(commands)):
        assert (tmp_path / path).stat().st_size > 0, path
    for xml in (tmp_path / "reports").glob("*.xml"):
        assert ET.parse(xml).getroot().tag == "testsuites"


def test_the_action_is_composite_and_calls_the_tested_scripts():
    action = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"recipe", "commands", "report-dir"}
    scripts = [re.search(r"action/\S+\.sh", step["run"]).group(0) for step in action["runs"]["steps"]]
    assert scripts == ["action/install.sh", "action/run.sh"]
    assert all((REPO / script).is_file() for script in scripts)
    run_env = action["runs"]["steps"][1]["env"]
    assert run_env["BABYSIT_REPORTS"] == "${{ inputs.report-dir }}"


def run_action(tmp_path, **env) -> subprocess.CompletedProcess:
    full = babysit_env(tmp_path)
    full.update(env)
    return subprocess.run(["bash", str(REPO / "action" / "run.sh")], cwd=tmp_path, env=full,
                          capture_output=True, text=True, timeout=300)


def test_action_run_step_writes_junit_per_command_into_a_new_folder(tmp_path):
    done = run_action(tmp_path, BABYSIT_RECIPE="two-layer-digits",
                      BABYSIT_COMMANDS="sanity-loss,\ngradcheck", BABYSIT_REPORTS="out/babysit",
                      BABYSIT_ARGS="--seed 1")
    assert done.returncode == 0, done.stdout + done.stderr
    for command in ("sanity-loss", "gradcheck"):
        root = ET.parse(tmp_path / "out" / "babysit" / f"{command}.xml").getroot()
        assert root.find("testsuite").get("name") == f"babysit.{command}"
        assert '"seed": 1' in (tmp_path / "out" / "babysit" / f"{command}.json").read_text()
    assert "::group::babysit sanity-loss" in done.stdout


def test_action_run_step_keeps_going_and_fails_with_the_worst_code(tmp_path):
    done = run_action(tmp_path, BABYSIT_RECIPE="broken/zero-init",
                      BABYSIT_COMMANDS="sanity-loss gradcheck", BABYSIT_REPORTS="r")
    assert done.returncode == 1, done.stdout + done.stderr
    assert (tmp_path / "r" / "sanity-loss.xml").is_file() and (tmp_path / "r" / "gradcheck.xml").is_file()
    assert "::error title=babysit sanity-loss::exit code 1" in done.stdout
    bad = run_action(tmp_path, BABYSIT_RECIPE="no-such-recipe.yaml", BABYSIT_COMMANDS="sanity-loss",
                     BABYSIT_REPORTS="r2")
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_action_run_step_sets_the_report_dir_output(tmp_path):
    output = tmp_path / "github_output"
    done = run_action(tmp_path, BABYSIT_COMMANDS="sanity-loss", BABYSIT_REPORTS="reports",
                      GITHUB_OUTPUT=str(output))
    assert done.returncode == 0, done.stderr
    assert output.read_text() == "report-dir=reports\n"


def test_action_install_step_installs_the_action_checkout_with_pip(tmp_path):
    """The install step, with `python` and `babysit` stubbed (no network, no real install)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    for name in ("python", "babysit"):
        stub = stubs / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{log}"\n')
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}{os.pathsep}{os.environ.get('PATH', '')}",
               GITHUB_ACTION_PATH="/actions/babysit", BABYSIT_INSTALL="")
    done = subprocess.run(["bash", str(REPO / "action" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "python -m pip install --quiet /actions/babysit[plot]", "babysit --version"]
    env["BABYSIT_INSTALL"] = "babysit==0.1.0"
    log.unlink()
    subprocess.run(["bash", str(REPO / "action" / "install.sh")], env=env, check=True, timeout=60)
    assert log.read_text().splitlines()[0] == "python -m pip install --quiet babysit==0.1.0"


def test_the_pre_commit_hook_runs_gradcheck_on_a_custom_layer(tmp_path, monkeypatch):
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "babysit-gradcheck" and hook["pass_filenames"] is False
    entry = shlex.split(hook["entry"])
    assert entry[:2] == ["babysit", "gradcheck"]
    runner = CliRunner()
    good = runner.invoke(cli, entry[1:] + ["--layer", "babysit.engine.layers.activations:Tanh",
                                           "--input-shape", "4,10"])
    assert good.exit_code == 0, good.output
    wrong = runner.invoke(cli, entry[1:] + ["--layer",
                                            "babysit.bundled.broken_layers:WrongSlopeLeakyReLU",
                                            "--input-shape", "4,10"])
    assert wrong.exit_code == 1, wrong.output


@pytest.mark.parametrize("path", ["action/run.sh", "action/install.sh"])
def test_action_scripts_are_valid_bash(path):
    subprocess.run(["bash", "-n", str(REPO / path)], check=True)
