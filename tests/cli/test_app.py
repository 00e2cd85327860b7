"""The CLI frame: exit codes, JSON, JUnit, error handling, atomic writes.

A tiny fake command (registered on the real group for each test) returns a
Result with the findings given on its command line, so every path of the frame
is exercised without running a diagnosis.
"""

import importlib.util
import io
import json
import os
import xml.etree.ElementTree as ET

import click
import pytest
from click.testing import CliRunner

from babysit import atomic as atomic_module
from babysit.atomic import write_bytes
from babysit.cli import COMMAND_MODULES, cli, main, register_commands
from babysit.cli import app as app_module
from babysit.cli.app import App, CommonOptions, output_options, recipe_options
from babysit.cli.render import fmt
from babysit.diagnostics.result import Result
from babysit.errors import DataError


def _render(console, result):
    console.print(f"fake report for {result.command}")


@click.command("fake")
@click.option("--finding", "findings", multiple=True, help="code:severity")
@click.option("--boom", type=click.Choice(["babysit", "keyboard", "oserror", "abort", "bug"]))
@recipe_options
@output_options(plot=True)
def fake_command(app, findings, boom):
    if boom == "babysit":
        raise DataError("bad data: X_train has 3 dims\nsecond line stays [not markup]")
    if boom == "keyboard":
        raise KeyboardInterrupt
    if boom == "oserror":
        raise FileNotFoundError(2, "No such file or directory", "missing.h5")
    if boom == "abort":
        app.abort("custom [stop] reason " + "x" * 100, code=2)
    if boom == "bug":
        raise ZeroDivisionError("a real bug")
    seed = app.options.seed
    result = Result("fake", recipe="recipes/x.yaml", seed=seed if seed is not None else 0)
    for spec in findings:
        code, severity = spec.split(":")
        result.add(code, severity, f"{code} <happened> & \"quoted\"", fix=f"fix {code}",
                   layer="1.relu", value=float("nan"), ratio=0.5)
    result.metrics = {"initial_loss": 2.30, "sets": list(app.options.sets)}

    def draw(res):
        from babysit.plots import new_figure

        figure, ax = new_figure()
        ax.plot([1, 2, 3], [3, 2, 1])
        return figure

    return app.emit(result, _render, plot=draw)


@pytest.fixture
def run():
    cli.add_command(fake_command)
    runner = CliRunner()

    def invoke(*args, **kwargs):
        return runner.invoke(cli, ["fake", *args], **kwargs)

    yield invoke
    cli.commands.pop("fake", None)


# -- exit codes ---------------------------------------------------------------

def test_pass_exits_0_and_renders(run):
    result = run()
    assert result.exit_code == 0, result.output
    assert "fake report for fake" in result.stdout
    assert "PASS" in result.stdout and "healthy" in result.stdout


def test_warn_exits_0_fail_exits_1(run):
    warn = run("--finding", "dead_relu:warn")
    assert warn.exit_code == 0
    assert "WARN" in warn.stdout and "dead_relu" in warn.stdout
    fail = run("--finding", "dead_relu:warn", "--finding", "lr_too_high:fail")
    assert fail.exit_code == 1
    assert "FAIL" in fail.stdout and "lr_too_high" in fail.stdout


def test_strict_turns_warn_into_exit_1(run):
    assert run("--finding", "dead_relu:warn", "--strict").exit_code == 1
    assert run("--finding", "dead_relu:info", "--strict").exit_code == 0


def test_quiet_prints_nothing(run):
    result = run("--finding", "dead_relu:fail", "--quiet")
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr == ""


# -- JSON -----------------------------------------------------------------------

def test_json_to_stdout_is_pure_json_and_report_goes_to_stderr(run):
    result = run("--finding", "lr_too_high:fail", "--json", "-", "--seed", "7")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert list(doc) == ["babysit", "command", "recipe", "seed", "status", "findings",
                         "metrics"]
    assert doc["command"] == "fake" and doc["seed"] == 7 and doc["status"] == "fail"
    (finding,) = doc["findings"]
    assert list(finding) == ["code", "severity", "layer", "message", "fix", "evidence"]
    assert finding["evidence"] == {"value": "nan", "ratio": 0.5}
    assert "fake report" in result.stderr and "fake report" not in result.stdout


def test_json_stdout_with_quiet_has_empty_stderr(run):
    result = run("--json", "-", "--quiet")
    assert json.loads(result.stdout)["status"] == "pass"
    assert result.stderr == ""


def test_json_file_is_deterministic(run, tmp_path):
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        assert run("--finding", "dead_relu:warn", "--json", str(path)).exit_code == 0
    first, second = (p.read_bytes() for p in paths)
    assert first == second and first.endswith(b"}\n")
    assert json.loads(first)["findings"][0]["code"] == "dead_relu"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_sets_reach_the_command_in_order(run):
    result = run("--json", "-", "--set", "optim.lr=1e-3", "--set", "model.layers=[relu]",
                 "--set", "train.average=")
    sets = json.loads(result.stdout)["metrics"]["sets"]
    assert sets == ["optim.lr=1e-3", "model.layers=[relu]", "train.average="]


@pytest.mark.parametrize("bad", ["foo", "=3", " =x"])
def test_malformed_set_is_usage_error(run, bad):
    result = run("--set", bad)
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.stderr


RECIPE = """\
name: tiny
seed: 3
data: {source: builtin:spiral}
model:
  layers: [{affine: {out: 8}}, relu, {affine: {out: 3}}]
optim: {lr: 0.5}
"""


def test_load_recipe_applies_sets_and_seed(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE)
    app = App(CommonOptions(sets=("optim.lr=1e-3", "model.reg=0.5"), seed=11))
    recipe = app.load_recipe(str(path))
    assert (recipe.optim.lr, recipe.model.reg, recipe.seed) == (0.001, 0.5, 11)
    assert recipe.data.seed == 11
    plain = App(CommonOptions()).load_recipe(str(path))
    assert (plain.optim.lr, plain.seed) == (0.5, 3)
    with pytest.raises(click.UsageError):
        App(CommonOptions(sets=("nonsense",))).load_recipe(str(path))


# -- JUnit ----------------------------------------------------------------------

def test_junit_file_parses_with_counts(run, tmp_path):
    path = tmp_path / "junit.xml"
    result = run("--finding", "lr_too_high:fail", "--finding", "dead_relu:warn",
                 "--junit", str(path))
    assert result.exit_code == 1
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite.get("name") == "babysit.fake"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    failures = root.findall(".//failure")
    assert len(failures) == 1 and failures[0].get("type") == "lr_too_high"
    assert "<happened>" in failures[0].get("message")


def test_junit_strict_makes_warnings_failures(run, tmp_path):
    path = tmp_path / "junit.xml"
    assert run("--finding", "dead_relu:warn", "--strict", "--junit", str(path)).exit_code == 1
    assert ET.parse(path).getroot().get("failures") == "1"


# -- errors -----------------------------------------------------------------------

def test_babysit_error_exits_2_with_one_message_no_traceback(run):
    result = run("--boom", "babysit")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bad data: X_train has 3 dims")
    assert "[not markup]" in result.stderr  # printed verbatim, not as Rich markup
    assert "Traceback" not in result.output and result.stdout == ""


def test_abort_prints_one_line_and_exits_2(run):
    result = run("--boom", "abort")
    assert result.exit_code == 2
    # One line even when longer than the terminal, and brackets are not Rich markup.
    assert result.stderr == "error: custom [stop] reason " + "x" * 100 + "\n"


def test_keyboard_interrupt_exits_130(run):
    result = run("--boom", "keyboard")
    assert result.exit_code == 130
    assert "interrupted" in result.stderr


def test_os_error_exits_2_naming_the_file(run):
    result = run("--boom", "oserror")
    assert result.exit_code == 2
    assert result.stderr == "error: missing.h5: No such file or directory\n"


def test_bugs_are_not_hidden(run):
    result = run("--boom", "bug")
    assert isinstance(result.exception, ZeroDivisionError)


def test_missing_output_folders_are_created_like_pytest_junitxml(run, tmp_path):
    outputs = {"--json": tmp_path / "a" / "b" / "out.json",
               "--junit": tmp_path / "reports" / "junit" / "out.xml",
               "--plot": tmp_path / "figures" / "out.png"}
    if importlib.util.find_spec("matplotlib") is None:
        outputs.pop("--plot")
    result = run(*[str(a) for pair in outputs.items() for a in pair])
    assert result.exit_code == 0, result.output
    for path in outputs.values():
        assert path.is_file() and path.stat().st_size > 0


def test_a_file_where_an_output_folder_should_be_fails_before_running(run, tmp_path):
    (tmp_path / "taken").write_text("a file")
    result = run("--json", str(tmp_path / "taken" / "sub" / "out.json"))
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot write {tmp_path / 'taken' / 'sub' / 'out.json'}: " \
                            f"{tmp_path / 'taken'} is not a directory\n"
    assert "fake report" not in result.output  # before the work


def test_junit_to_stdout_is_pure_xml_and_report_goes_to_stderr(run):
    result = run("--finding", "lr_too_high:fail", "--junit", "-")
    assert result.exit_code == 1
    root = ET.fromstring(result.stdout)
    assert root.tag == "testsuites" and root.get("failures") == "1"
    assert "fake report for fake" in result.stderr and "lr_too_high" in result.stderr


def test_json_and_junit_cannot_both_take_stdout(run):
    result = run("--json", "-", "--junit", "-")
    assert result.exit_code == 2 and "only one output can go to stdout" in result.stderr


def test_short_version_flag():
    result = CliRunner().invoke(cli, ["-V"])
    assert result.exit_code == 0 and result.stdout.startswith("babysit, version ")


def test_a_closed_stdout_pipe_exits_141_quietly(tmp_path):
    """`babysit ... | head` must not read as "a diagnosis failed" (exit 1)."""
    import subprocess
    import sys

    script = ("import sys; sys.argv = ['babysit', 'recipes']; from babysit.cli import main; main()")
    env = dict(os.environ, COLUMNS="80")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    process.stdout.close()  # the reader is gone before the first line, as after `head -0`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr


def test_failing_write_leaves_no_partial_file(run, tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("previous")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_module.os, "replace", broken_replace)
    result = run("--json", str(target))
    assert result.exit_code == 2
    assert "cannot write JSON" in result.stderr and "No space left" in result.stderr
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_write_cleans_up_when_interrupted(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_module.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bytes(str(tmp_path / "x.xml"), b"data")
    assert os.listdir(tmp_path) == []


def test_plot_needs_png_suffix(run, tmp_path):
    result = run("--plot", str(tmp_path / "x.jpg"))
    assert result.exit_code == 2 and ".png" in result.stderr


def test_plot_writes_png(run, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "fig.png"
    assert run("--plot", str(path)).exit_code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_exit_2(run, tmp_path, monkeypatch):
    import babysit.plots as plots

    def missing():
        raise app_module.BabysitError(plots.MISSING)

    monkeypatch.setattr(plots, "require_matplotlib", missing)
    result = run("--plot", str(tmp_path / "fig.png"))
    assert result.exit_code == 2
    assert result.stderr == "error: --plot needs matplotlib: pip install 'babysit[plot]'\n"


# -- group and main -------------------------------------------------------------

def test_version_and_help_list_commands_in_protocol_order():
    runner = CliRunner()
    assert "0.1.0" in runner.invoke(cli, ["--version"]).output
    names = list(cli.commands)
    known = [n for n in ("recipes", "data", "sanity-loss", "gradcheck", "lr-probe",
                         "init-stats", "overfit-tiny", "train", "report", "doctor", "search")
             if n in names]
    assert names[:len(known)] == known
    assert cli.list_commands(None) == names


def test_register_commands_imports_every_module_plainly(monkeypatch):
    group = click.Group()
    register_commands(group)
    assert list(group.commands) == list(cli.commands)[:len(COMMAND_MODULES)]
    with pytest.raises(ModuleNotFoundError):  # no "not written yet" tolerance
        register_commands(click.Group(), ["no_such_command_module"])

    def module_with_missing_dependency(name):
        raise ModuleNotFoundError("No module named 'nonexistent_dep'", name="nonexistent_dep")

    monkeypatch.setattr("importlib.import_module", module_with_missing_dependency)
    with pytest.raises(ModuleNotFoundError):
        register_commands(group, ["sanity_loss"])


def test_main_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-option"])
    assert exc.value.code == 2
    assert "No such option" in capsys.readouterr().err


def test_main_runs_a_command_and_returns_its_code(run, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fake", "--finding", "cannot_overfit:fail", "--quiet"])
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        main(["fake", "--boom", "keyboard"])
    assert exc.value.code == 130


def test_command_modules_list_is_protocol_order():
    assert COMMAND_MODULES[:2] == ("recipes_cmd", "data_cmd")
    assert COMMAND_MODULES.index("sanity_loss") < COMMAND_MODULES.index("doctor")


def test_fmt_significant_digits():
    assert fmt(2.302585) == "2.30"
    assert fmt(0.012345) == "0.0123"
    assert fmt(1.5e-5) == "1.50e-05"
    assert fmt(12345.0) == "1.23e+04"
    assert fmt(123.4) == "123"
    assert fmt(7) == "7" and fmt(None) == "-" and fmt(float("nan")) == "nan"
    assert fmt(0.0) == "0" and fmt(-0.5) == "-0.500"


def test_only_one_output_may_use_stdout(run):
    result = run("--json", "-", "--junit", "-")
    assert result.exit_code == 2 and "stdout" in result.stderr


def test_junit_to_stdout(run):
    result = run("--finding", "lr_too_high:fail", "--junit", "-", "--quiet")
    assert result.exit_code == 1
    assert ET.fromstring(result.stdout.encode()).get("failures") == "1"


def test_summary_lists_the_findings_of_every_part():
    from rich.console import Console

    from babysit.cli.render import summary

    doctor = Result("doctor", recipe="bundled:two-layer-digits")
    sanity = Result("sanity-loss")
    sanity.add("initial_loss_unexpected", "fail", "loss 9.1, expected 2.30", fix="smaller init")
    overfit = Result("overfit-tiny")
    overfit.add("cannot_overfit", "warn", "train accuracy 0.95")
    doctor.parts = {"sanity-loss": sanity, "overfit-tiny": overfit}
    console = Console(width=160, record=True, file=io.StringIO())
    summary(console, doctor)
    text = console.export_text()
    assert "part" in text and "sanity-loss" in text and "initial_loss_unexpected" in text
    assert "smaller init" in text and "cannot_overfit" in text
    assert "FAIL" in text and "doctor: 1 failure, 1 warning" in text


# -- options: each command declares what it uses -----------------------------------

RECIPE_COMMANDS = ("data", "sanity-loss", "gradcheck", "lr-probe", "init-stats",
                   "overfit-tiny", "train", "doctor", "search")


def _option_names(name):
    return {opt for param in cli.commands[name].params for opt in param.opts}


def test_recipe_options_only_where_a_recipe_is_loaded():
    for name in RECIPE_COMMANDS:
        assert {"--seed", "--set", "--json", "--junit", "--quiet", "--strict"} <= \
            _option_names(name), name
    report = _option_names("report")
    assert {"--json", "--junit", "--plot", "--quiet", "--strict"} <= report
    assert not {"--seed", "--set"} & report
    help_text = CliRunner().invoke(cli, ["report", "--help"]).output
    assert "--seed" not in help_text and "--set" not in help_text
    result = CliRunner().invoke(cli, ["report", "x.h5", "--seed", "3"])
    assert result.exit_code == 2 and "No such option '--seed'" in result.stderr


def test_plot_only_where_the_command_can_plot():
    plotting = {"lr-probe", "init-stats", "train", "report", "search", "doctor", "sanity-loss",
                "gradcheck", "overfit-tiny", "data"}
    for name in RECIPE_COMMANDS + ("report",):
        assert ("--plot" in _option_names(name)) == (name in plotting), name


def test_load_recipe_resolves_the_seed_with_recipe_with_seed(tmp_path):
    from babysit.recipes import load_recipe

    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE)
    app = App(CommonOptions(sets=("optim.lr=1e-3",), seed=11))
    expected = load_recipe(str(path), overrides=["optim.lr=1e-3"]).with_seed(11)
    assert app.load_recipe(str(path)) == expected


def test_commands_import_no_other_command_module():
    import ast
    import importlib

    commands = {f"babysit.cli.{name}" for name in COMMAND_MODULES}
    for module_name in commands:
        tree = ast.parse(open(importlib.import_module(module_name).__file__).read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        assert not (imported & commands) - {module_name}, module_name
