"""Nothing is cut at 80 or 60 columns: every command, as CI logs and narrow terminals see it.

Rich shortens a cell that does not fit with "…"; a number cut that way
("0.0…", "1.04e-…") is worse than no number. Every command runs at
COLUMNS=80 and 60 (CliRunner's output is not a terminal, as in CI) and its
report must hold no "…", and no report line may be wider than the terminal
(tables split into a second table, plots shrink).
"""

import json

import pytest
from click.testing import CliRunner

from babysit.cli import cli

WIDTHS = (80, 60)

COMMANDS = {
    "help": ["--help"],
    "recipes": ["recipes"],
    "data": ["data"],
    "sanity-loss": ["sanity-loss", "broken/zero-init"],
    "gradcheck": ["gradcheck", "broken/saturated-tanh"],
    "gradcheck-wrong": ["gradcheck", "broken/wrong-backward"],
    "lr-probe": ["lr-probe", "--steps", "20"],
    "lr-probe-sweep": ["lr-probe", "--mode", "sweep", "--steps", "60"],
    "init-stats": ["init-stats", "broken/dead-relu"],
    "init-stats-compare": ["init-stats", "deep-tanh-init", "--batch-size", "100",
                           "--compare", "xavier,small,normal:1.0"],
    "overfit-tiny": ["overfit-tiny", "broken/dead-relu", "--max-epochs", "30"],
    "train": ["train", "--set", "train.epochs=3", "--out", "{tmp}/run.h5"],
    "doctor": ["doctor", "broken/dead-relu", "--skip", "lr-probe"],
    "search": ["search", "--param", "optim.lr=log:1e-3:1e-1", "--param", "model.reg=log:1e-6:1e-2",
               "--param", "optim.update=choice:sgd,adam", "--trials", "3", "--epochs", "1",
               "--stages", "2", "--workers", "1", "--out", "{tmp}/search.h5"],
}


def run(args, width, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    return CliRunner().invoke(cli, args, env={"COLUMNS": str(width)})


def assert_nothing_cut(result, width, lines=True):
    text = result.stdout + result.stderr
    assert "…" not in text, text
    assert not [line for line in text.splitlines() if line.endswith("...")
                and not line.startswith("Usage: ")], text  # click's cut command summaries
    for line in result.stdout.splitlines() if lines else ():
        if line.startswith(("files: ", "Usage: ")):  # printed whole on purpose (a path to copy)
            continue
        assert len(line) <= width, f"{len(line)} > {width} columns: {line!r}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_cell_is_cut_and_no_line_overflows(name, width, tmp_path):
    result = run(COMMANDS[name], width, tmp_path)
    assert result.exit_code in (0, 1), result.output
    # click lays out --help itself (its \b paragraphs are preformatted): only "cut" is checked
    assert_nothing_cut(result, width, lines=name != "help")


@pytest.mark.parametrize("width", WIDTHS)
def test_report_of_a_run_log_fits(width, tmp_path):
    assert run(COMMANDS["train"] + ["-q"], width, tmp_path).exit_code == 0
    result = run(["report", str(tmp_path / "run.h5")], width, tmp_path)
    assert result.exit_code == 0, result.output
    assert_nothing_cut(result, width)
    assert "max\nupdate/W" not in result.stdout  # two header lines, each whole
    assert "update/W" in result.stdout


def test_a_table_too_wide_for_the_terminal_continues_in_a_second_one(tmp_path):
    result = run(COMMANDS["lr-probe"], 60, tmp_path)
    wide = run(COMMANDS["lr-probe"], 200, tmp_path)
    probed = run(COMMANDS["lr-probe"] + ["--json", "-", "--quiet"], 200, tmp_path)
    # every LR the walk probed keeps its row, numbers whole, in both layouts
    from babysit.cli.render import fmt

    for trial in json.loads(probed.stdout)["metrics"]["trials"]:
        lr = fmt(trial["lr"])
        assert lr in result.stdout and lr in wide.stdout