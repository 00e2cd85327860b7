"""The CLI of `train --ensemble`, `report` of an ensemble log, and `update: lbfgs` end to end."""

import json

from click.testing import CliRunner

from babysit.cli import cli
from babysit.store import read_run_log
from tests.helpers import one_error_line

SMALL = ("--set", "data.limit=300", "--set", "train.epochs=3")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "120"})


def test_train_ensemble_json_log_and_report(tmp_path):
    out = tmp_path / "ens.h5"
    result = run("train", "--ensemble", 2, "--checkpoint-ensemble", 2, "--out", out, *SMALL, "--json", "-")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    e = doc["metrics"]["ensemble"]
    assert e["members"] == 2 and e["checkpoint_ensemble"] == 2 and len(e["per_member"]) == 2
    assert {"val_accuracy", "single", "polyak", "checkpoints", "gain_points"} <= set(e)
    assert len(read_run_log(out).ensemble.members) == 2
    report = run("report", out)
    assert report.exit_code == 0, report.stderr
    for text in ("Ensemble of 2 models: validation accuracy", "Polyak average (beta 0.990)",
                 "checkpoint ensemble (last 2 epochs)", "ensemble of 2 members", "ensemble gain:",
                 "Members", "the first of 2 ensemble members"):
        assert text in report.stdout, text
    again = run("report", out, "--json", "-")
    assert json.loads(again.stdout)["metrics"] == doc["metrics"]


def test_checkpoint_ensemble_alone_is_one_member_and_ensembles_do_not_resume(tmp_path):
    out = tmp_path / "one.h5"
    result = run("train", "--checkpoint-ensemble", 3, "--out", out, *SMALL, "-q")
    assert result.exit_code == 0, result.stderr
    assert read_run_log(out).ensemble.comparison["members"] == 1
    both = run("train", "--resume", out, "--ensemble", 2)
    assert both.exit_code == 2 and "ensembles cannot be resumed" in both.stderr
    resumed = run("train", "--resume", out, "--set", "train.epochs=4")
    assert resumed.exit_code == 2 and "cannot be resumed" in resumed.stderr
    assert run("train", "--ensemble", 0).exit_code == 2


def test_lbfgs_recipe_trains_and_overfits_from_the_cli(tmp_path):
    result = run("train", "two-layer-digits-lbfgs", "--out", tmp_path / "lbfgs.h5",
                 "--set", "train.epochs=8", "--json", "-")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["iterations"] == 8 and metrics["val_accuracy"] > 0.9 and "converged" in metrics
    overfit = run("overfit-tiny", "two-layer-digits-lbfgs", "--json", "-")
    assert overfit.exit_code == 0 and json.loads(overfit.stdout)["status"] == "pass"


def test_lbfgs_with_mini_batches_is_one_error_line_and_exit_2():
    result = run("sanity-loss", "--set", "optim.update=lbfgs")
    one_error_line(result, "needs train.batch_size: full, got 100")
    assert "Traceback" not in result.stderr
