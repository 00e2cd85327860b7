"""Issue 15's items, each from the command line: progress, doctor parts, gradcheck's
judged error, recipes show/copy, search's default space, --compare errors, PNGs."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from click.testing import CliRunner

from babysit.cli import cli
from babysit.cli.progress import PLAIN_LINES, worth_a_line
from babysit.diagnostics.doctor import doctor, select_parts
from babysit.diagnostics.lr_probe import lr_probe
from babysit.diagnostics.overfit import overfit_tiny
from babysit.errors import BabysitError
from babysit.recipes import load_recipe

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="needs matplotlib (babysit[plot])")


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "100", **(env or {})})


# -- progress ------------------------------------------------------------------------

def test_lr_probe_reports_one_step_per_lr_and_the_same_numbers():
    recipe = load_recipe("two-layer-digits")
    steps = []
    with_progress = lr_probe(recipe, steps=10, progress=steps.append)
    assert [s.done for s in steps] == list(range(1, len(with_progress.metrics["trials"]) + 1))
    # the walk's length is not known ahead: the total stays one open run per side ahead
    assert all(s.total == s.done + 2 for s in steps)
    assert steps[0].label == "lr 0.03"  # the walk starts at the recipe's own LR
    assert with_progress.to_dict() == lr_probe(recipe, steps=10).to_dict()


def test_overfit_reports_every_epoch_with_its_loss():
    steps = []
    result = overfit_tiny(load_recipe("two-layer-digits"), progress=steps.append)
    assert [s.done for s in steps] == list(range(1, result.metrics["epochs_run"] + 1))
    assert steps[-1].values["loss"] == result.metrics["final_loss"]


def test_doctor_reports_parts_and_the_sub_progress_of_the_part_in_progress():
    steps = []
    result = doctor(load_recipe("two-layer-digits"), parts=["overfit-tiny", "lr-probe"],
                    progress=steps.append)
    main = [s for s in steps if s.part is None]
    assert [(s.done, s.total, s.label) for s in main] == [
        (0, 2, "running overfit-tiny"), (1, 2, "running lr-probe"), (2, 2, "done")]
    assert {s.part for s in steps} == {None, "overfit-tiny", "lr-probe"}
    assert list(result.parts) == ["overfit-tiny", "lr-probe"]


def test_plain_lines_when_stderr_is_not_a_terminal():
    result = run("lr-probe", "--steps", "10", "--json", "-")
    lines = [line for line in result.stderr.splitlines() if line.startswith("lr-probe [")]
    runs = len(json.loads(result.stdout)["metrics"]["trials"])
    assert len(lines) == runs and lines[0] == f"lr-probe [1/3] lr 0.03"
    assert lines[-1].startswith(f"lr-probe [{runs}/{runs + 2}] lr ")
    assert "lr-probe [" not in result.stdout
    assert run("lr-probe", "--steps", "10", "-q").stderr == ""


def test_doctor_prints_a_line_per_part_and_its_sub_steps_in_ci():
    result = run("doctor", "--only", "overfit-tiny,lr-probe")
    assert "doctor [0/2] running overfit-tiny" in result.stderr
    assert re.search(r"^doctor lr-probe \[1/3\] lr 0\.03$", result.stderr, re.M)
    assert "doctor [2/2] done" in result.stderr


def test_train_prints_a_line_per_epoch_in_ci(tmp_path):
    result = run("train", "--set", "train.epochs=3", "--out", tmp_path / "r.h5")
    lines = [line for line in result.stderr.splitlines() if line.startswith("train [")]
    assert [line.split("]")[0] for line in lines] == ["train [1/3", "train [2/3", "train [3/3"]


def test_a_live_bar_in_a_terminal():
    result = run("overfit-tiny", env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert result.exit_code == 0
    assert "overfit-tiny [" not in result.stderr  # no plain lines: a bar was drawn
    assert "━" in result.stderr or "epoch" in result.stderr


def test_plain_lines_are_capped_for_long_jobs():
    printed, last = [], None
    for done in range(1, 501):
        if worth_a_line(done, 500, last):
            printed.append(done)
            last = done
    assert printed[0] == 1 and printed[-1] == 500 and len(printed) <= PLAIN_LINES + 2
    assert [d for d in range(1, 19) if worth_a_line(d, 18, d - 1)] == list(range(1, 19))


# -- doctor --only / --skip --------------------------------------------------------

def test_doctor_only_and_skip(tmp_path):
    only = run("doctor", "--only", "gradcheck,sanity-loss", "--json", tmp_path / "d.json")
    assert only.exit_code == 0, only.output
    doc = json.loads((tmp_path / "d.json").read_text())
    assert list(doc["parts"]) == ["sanity-loss", "gradcheck"]  # protocol order
    assert list(doc["metrics"]["statuses"]) == ["sanity-loss", "gradcheck"]
    skip = run("doctor", "--skip", "lr-probe,overfit-tiny,init-stats", "--json", "-")
    assert list(json.loads(skip.stdout)["parts"]) == ["sanity-loss", "gradcheck"]


@pytest.mark.parametrize("args, message", [
    (["--only", "gradchek"], "did you mean 'gradcheck'"),
    (["--only", "gradcheck", "--skip", "lr-probe"], "--only or --skip, not both"),
    (["--skip", "sanity-loss,gradcheck,overfit-tiny,init-stats,lr-probe"], "no part to run"),
])
def test_doctor_part_selection_errors(args, message):
    result = run("doctor", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_select_parts_orders_and_checks():
    assert select_parts(["lr-probe", "sanity-loss"]) == ["sanity-loss", "lr-probe"]
    with pytest.raises(BabysitError, match="unknown doctor part"):
        select_parts(["bogus"])


# -- gradcheck: the error the verdict used ----------------------------------------------

def test_gradcheck_shows_the_judged_error_and_its_band():
    result = run("gradcheck", "broken/saturated-tanh")
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("3.tanh input"))
    # judged error 0 -> excellent (< 1e-07); the textbook 0.00905 is shown as such, apart
    assert re.search(r"3\.tanh input\s+10\s+0\s+excellent \(< 1e-07\)\s+0\.00905", row), row
    assert "judged error" in result.stdout and "textbook" in result.stdout


def test_doctor_key_figure_is_the_judged_error_with_its_band():
    result = run("doctor", "broken/wrong-backward", "--only", "gradcheck", env={"COLUMNS": "200"})
    assert "judged rel error 1.80 (fail: > 0.01)" in result.stdout


# -- recipes show / copy ----------------------------------------------------------------

def test_recipes_show_prints_the_yaml_verbatim():
    result = run("recipes", "show", "broken/dead-relu")
    from babysit.recipes import bundled_recipes

    assert result.exit_code == 0
    assert result.stdout == open(bundled_recipes()["broken/dead-relu"], encoding="utf-8").read()


def test_recipes_copy_never_clobbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("recipes", "copy", "two-layer-digits").exit_code == 0
    copied = tmp_path / "two-layer-digits.yaml"
    assert load_recipe(str(copied)).name == "two-layer-digits"
    copied.write_text("# mine\n")
    again = run("recipes", "copy", "two-layer-digits")
    assert again.exit_code == 2 and "exists" in again.stderr
    assert copied.read_text() == "# mine\n"
    assert run("recipes", "copy", "two-layer-digits", "--force").exit_code == 0
    assert copied.read_text() != "# mine\n"
    assert run("recipes", "copy", "broken/zero-init", "new/folder/").exit_code == 0
    assert (tmp_path / "new" / "folder" / "zero-init.yaml").is_file()


def test_recipes_unknown_name_suggests_the_nearest():
    result = run("recipes", "show", "two-layer-digit")
    assert result.exit_code == 2 and "did you mean 'two-layer-digits'" in result.stderr


# -- search's default space -------------------------------------------------------------

def test_search_without_param_centres_lr_and_reg_on_lr_probe(tmp_path):
    result = run("search", "--trials", "2", "--epochs", "1", "--workers", "1",
                 "--out", tmp_path / "s.h5", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    probe = lr_probe(load_recipe("two-layer-digits"))
    suggested = probe.metrics["suggested_lr"]
    assert f"--param optim.lr=log:{suggested / 10:.3g}:{suggested * 10:.3g}" in result.stderr
    assert "--param model.reg=log:1e-06:0.01" in result.stderr  # the recipe's reg is 1e-4
    trials = json.loads((tmp_path / "s.json").read_text())["metrics"]["trials"]
    assert {tuple(t["params"]) for t in trials} == {("optim.lr", "model.reg")}


# -- init-stats --compare ----------------------------------------------------------------

def test_compare_names_the_bad_init_in_its_own_spelling():
    result = run("init-stats", "--compare", "xavier,bogus")
    assert result.exit_code == 2
    assert "--set" not in result.stderr and "model.init" not in result.stderr
    assert "unknown init 'bogus'" in result.stderr and "normal:STD" in result.stderr


# -- PNGs ---------------------------------------------------------------------------------

@needs_matplotlib
@pytest.mark.parametrize("args", [
    ["doctor", "--only", "sanity-loss,gradcheck,init-stats"],
    ["gradcheck", "broken/wrong-backward"], ["sanity-loss"], ["overfit-tiny"], ["data"],
    ["init-stats", "broken/dead-relu", "--compare", "he"],
    ["search", "--param", "optim.update=choice:sgd,adam", "--trials", "3", "--epochs", "1",
     "--workers", "1"],
], ids=lambda a: a[0] + ("-" + a[1] if len(a) > 1 and not a[1].startswith("-") else ""))
def test_every_command_draws_its_png(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args, "--plot", tmp_path / "figs" / "out.png", "-q")
    assert result.exit_code in (0, 1), result.output
    assert "nothing to plot" not in result.stderr
    assert (tmp_path / "figs" / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_matplotlib
def test_run_log_png_has_val_loss_and_update_ratio_panels(tmp_path):
    from babysit.cli.views.run import run_figure
    from babysit.store import read_run_log

    assert run("train", "--set", "train.epochs=2", "--out", tmp_path / "r.h5", "-q").exit_code == 0
    figure = run_figure(read_run_log(tmp_path / "r.h5"), log_loss=True)
    loss_ax, _, ratio_ax = figure.axes[:3]
    assert "val" in [line.get_label() for line in loss_ax.get_lines()]
    assert loss_ax.get_yscale() == "log" and ratio_ax.get_yscale() == "log"
    assert any(line.get_label() == "~1e-3 (lecture)" for line in ratio_ax.get_lines())


def test_report_help_lists_only_options_it_accepts():
    help_text = run("report", "--help").stdout
    assert "--seed" not in help_text and "--set" not in help_text
