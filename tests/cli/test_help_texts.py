"""Help texts state what the code does (numbers come from the code's own constants)."""

import pytest
from click.testing import CliRunner

from babysit.cli import cli


def test_lr_probe_steps_help_states_the_real_default_bounds():
    # the help once said "50..300" while the short run's floor was 20 steps
    from babysit.diagnostics.lr_probe import MAX_STEPS, MIN_STEPS

    help_text = " ".join(CliRunner().invoke(cli, ["lr-probe", "--help"]).output.split())
    assert f"half the recipe's training, {MIN_STEPS}..{MAX_STEPS}, at most all of it" in help_text


@pytest.mark.parametrize("h", ["0", "-1e-5", "nan", "0.1", "1e-20"])
def test_gradcheck_h_outside_its_range_is_one_error_naming_the_range(h):
    # one check (the diagnosis' own), stated in the help too: no "[x>0]" that
    # admits steps the command then refuses
    from babysit.diagnostics.gradcheck.bands import H_MAX, H_MIN

    help_text = " ".join(CliRunner().invoke(cli, ["gradcheck", "--help"]).output.split())
    assert f"{H_MIN:g} .. {H_MAX:g}" in help_text and "x>0" not in help_text
    result = CliRunner().invoke(cli, ["gradcheck", "--h", h, "-q"])
    assert result.exit_code == 2
    assert "h must be a step between 1e-08 and 0.01" in result.stderr and "Traceback" not in result.output


def test_report_says_its_strict_only_changes_the_junit_file():
    report = " ".join(CliRunner().invoke(cli, ["report", "--help"]).output.split())
    train = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "--strict Warnings count as failures in the JUnit file (the exit code stays 0" in report
    assert "--strict Warnings fail too (exit 1)." in train
