"""CLI of init-stats, overfit-tiny, train and report: exit codes, JSON shape, run logs."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from babysit.cli import cli
from babysit.store import read_run_log

REPO = Path(__file__).resolve().parents[2]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "120"})


def run_json(*args):
    result = run(*args, "--json", "-")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def codes(doc):
    return [f["code"] for f in doc["findings"]]


# -- init-stats ---------------------------------------------------------------

def test_init_stats_default_recipe_json_shape():
    result, doc = run_json("init-stats")
    assert result.exit_code == 0, result.stderr
    assert doc["command"] == "init-stats" and doc["status"] == "pass" and doc["seed"] == 0
    layers = doc["metrics"]["layers"]
    assert [row["layer"] for row in layers] == ["0.affine", "1.relu", "2.affine"]
    assert set(layers[1]) >= {"layer", "mean", "std", "near_zero", "saturated", "dead", "grad_norm"}
    assert layers[1]["dead"] == 0.0 and layers[1]["saturated"] is None


def test_init_stats_compare_and_human_report(tmp_path):
    png = tmp_path / "init.png"
    result = run("init-stats", "deep-tanh-init", "--compare", "small,normal:1.0",
                 "--batch-size", "100")
    assert result.exit_code == 0, result.stderr          # the comparisons do not set the status
    for text in ("Layer outputs at init", "Histograms", "Std per layer by init", "normal:1",
                 "Findings of the compared inits", "activation_collapse", "activation_saturation",
                 "PASS"):
        assert text in result.stdout, text
    if importlib.util.find_spec("matplotlib") is None:
        return                                           # the PNG needs the plot extra
    plotted = run("init-stats", "--compare", "he,small", "--plot", png, "-q")
    assert plotted.exit_code == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_init_stats_failure_and_bad_input():
    result, doc = run_json("init-stats", "--set", "model.init=zeros")
    assert result.exit_code == 1 and "dead_relu" in codes(doc)
    bad = run("init-stats", "--compare", "xavier,,he")
    assert bad.exit_code == 2 and "--compare" in bad.stderr
    assert run("init-stats", "--compare", "nonsense").exit_code == 2
    assert run("init-stats", "--batch-size", "0").exit_code == 2


# -- overfit-tiny ----------------------------------------------------------------

def test_overfit_tiny_passes_and_fails():
    result, doc = run_json("overfit-tiny")
    assert result.exit_code == 0, result.stderr
    assert doc["metrics"]["train_accuracy"] == 1.0
    assert {"train_accuracy", "final_loss", "epochs_run"} <= set(doc["metrics"])
    result, doc = run_json("overfit-tiny", "--set", "optim.lr=1e-8", "--max-epochs", "20")
    assert result.exit_code == 1 and codes(doc) == ["cannot_overfit"]
    assert doc["metrics"]["epochs_run"] == 20
    assert run("overfit-tiny", "--examples", "0").exit_code == 2


# -- train, resume and report ----------------------------------------------------------

def test_train_json_and_report(tmp_path):
    out = tmp_path / "run.h5"
    result, doc = run_json("train", "--out", out, "--set", "train.epochs=3")
    assert result.exit_code == 0, result.stderr
    m = doc["metrics"]
    assert doc["command"] == "train" and m["epochs_run"] == 3 and m["run_log"] == str(out)
    assert {"epochs_run", "final_loss", "train_accuracy", "val_accuracy", "run_log"} <= set(m)
    assert 0.8 < m["val_accuracy"] <= 1.0

    png = tmp_path / "curves.png"
    with_png = importlib.util.find_spec("matplotlib") is not None   # the plot extra
    report = run("report", out, *(("--plot", png) if with_png else ()))
    assert report.exit_code == 0, report.stderr
    for text in ("Run log", "finished: 3 of 3 epochs", "Per epoch", "Training loss", "Accuracy"):
        assert text in report.stdout, text
    if with_png:
        assert png.read_bytes()[:4] == b"\x89PNG"
    again, stored = run_json("report", out)
    assert again.exit_code == 0 and stored["metrics"] == m and stored["findings"] == doc["findings"]


def test_train_resume_through_the_cli_matches_a_straight_run(tmp_path):
    assert run("train", "--out", tmp_path / "straight.h5", "--set", "train.epochs=4", "-q").exit_code == 0
    assert run("train", "--out", tmp_path / "split.h5", "--set", "train.epochs=2", "-q").exit_code == 0
    resumed = run("train", "--resume", tmp_path / "split.h5", "--set", "train.epochs=4", "-q")
    assert resumed.exit_code == 0, resumed.stderr
    a, b = read_run_log(tmp_path / "straight.h5"), read_run_log(tmp_path / "split.h5")
    for name, value in a.checkpoints["last"].params.items():
        assert np.array_equal(value, b.checkpoints["last"].params[name])
    assert b.attrs["epochs_run"] == 4 and b.result["recipe"] == "bundled:two-layer-digits"
    conflict = run("train", "two-layer-digits", "--resume", tmp_path / "split.h5")
    assert conflict.exit_code == 2 and "--resume" in conflict.stderr


def test_diverging_train_exits_1(tmp_path):
    result, doc = run_json("train", "--out", tmp_path / "nan.h5", "--set", "optim.lr=1e4")
    assert result.exit_code == 1 and codes(doc) == ["loss_diverged"]
    report = run("report", tmp_path / "nan.h5")
    assert report.exit_code == 0 and "diverged" in report.stdout


def test_report_renders_a_search_log(tmp_path):
    log = tmp_path / "search.h5"
    searched = run("search", "--param", "optim.lr=log:1e-3:1e-1", "--trials", "2", "--epochs", "1",
                   "--workers", "1", "--out", log, "-q")
    assert searched.exit_code == 0, searched.stderr
    result = run("report", log)
    assert result.exit_code == 0, result.stderr
    assert "Search log" in result.stdout and "optim.lr" in result.stdout


def test_report_rejects_bad_files(tmp_path):
    assert run("report", tmp_path / "missing.h5").exit_code == 2
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 64)
    result = run("report", junk)
    assert result.exit_code == 2 and "error:" in result.stderr
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["x"] = np.arange(3)
    result = run("report", foreign)
    assert result.exit_code == 2 and "not a babysit log" in result.stderr


def test_sigterm_saves_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "long.h5"
    code = "import sys; from babysit.cli import main; sys.argv[0] = 'babysit'; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "train", "--out", str(out), "--set", "train.epochs=100000", "-q"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:   # the first epoch is saved
            time.sleep(0.05)
        assert out.exists(), process.stderr.read() if process.poll() is not None else "no log"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "checkpoint saved" in stderr and "--resume" in stderr
    log = read_run_log(out)
    assert log.status == "interrupted"
    last = log.checkpoints["last"]
    assert set(last.params) == {"0.W", "0.b", "2.W", "2.b"} and last.attrs["iteration"] >= 15
    assert len(log.history["iteration"]["loss"]) == last.attrs["iteration"]
    assert [p.name for p in tmp_path.iterdir()] == ["long.h5"]      # no temporary file left
