"""Every command on torch recipes, end to end through the CLI: exit codes, JSON, JUnit, run logs."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from babysit.search_store import read_search_log  # noqa: E402
from babysit.store import read_run_log  # noqa: E402
from tests.cli.test_monitor_cli import run, run_json  # noqa: E402  (CliRunner at 120 columns)

TWO_LAYER = "torch-two-layer-digits"
PARTS = ["sanity-loss", "gradcheck", "overfit-tiny", "init-stats", "lr-probe"]



def test_the_broken_function_fails_gradcheck_by_name_with_json_and_junit(tmp_path):
    result, doc = run_json("gradcheck", "broken/torch-wrong-backward", "--junit", tmp_path / "g.xml")
    assert result.exit_code == 1
    failing = {f["layer"] for f in doc["findings"] if f["code"] == "gradient_mismatch"}
    assert "WrongSlopeLeakyReLU" in failing
    named = [f for f in doc["findings"] if f["layer"] == "WrongSlopeLeakyReLU"][0]
    assert "correct the backward of WrongSlopeLeakyReLU" in named["fix"]
    assert set(doc["metrics"]["params"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert doc["metrics"]["dtype"] == "float64" and doc["command"] == "gradcheck"
    suite = ET.parse(tmp_path / "g.xml").getroot()
    assert "gradient_mismatch" in ET.tostring(suite, encoding="unicode")


def test_doctor_passes_the_torch_two_layer_recipe(tmp_path):
    result, doc = run_json("doctor", TWO_LAYER, "--junit", tmp_path / "d.xml")
    assert result.exit_code == 0, result.stderr
    assert doc["metrics"]["statuses"] == {part: "pass" for part in PARTS}
    assert doc["recipe"] == f"bundled:{TWO_LAYER}"
    assert (tmp_path / "d.xml").stat().st_size > 0


def test_the_torch_convnet_passes_the_protocols_checks():
    """doctor's parts one by one (lr-probe with a coarser grid, to keep the test short)."""
    for command, extra in [("sanity-loss", ()), ("gradcheck", ()), ("overfit-tiny", ()),
                           ("init-stats", ("--compare", "module,he")),
                           ("lr-probe", ("--per-decade", "1", "--lr-min", "1e-5", "--lr-max", "1"))]:
        result, doc = run_json(command, "torch-convnet-digits", *extra)
        assert result.exit_code == 0 and doc["status"] in ("pass", "warn"), (command, doc["findings"])
        if command == "init-stats":
            assert [row["layer"] for row in doc["metrics"]["layers"]][:2] == ["features.0", "features.1"]
            assert [c["init"] for c in doc["metrics"]["compare"]] == ["module", "he"]


def test_train_writes_module_paths_and_resumes_bit_identically(tmp_path):
    """Dropout (the model's own generator) and nesterov with a step decay (torch's velocity
    buffers rescaled at each change) must all come back exactly from the checkpoint."""
    sets = ["--set", "model.kwargs.dropout=0.5", "--set", "optim.update=nesterov",
            "--set", "optim.decay={kind: step, every: 1, factor: 0.5}", "--set", "train.average=0.9"]
    straight = run("train", TWO_LAYER, *sets, "--set", "train.epochs=4", "--out", tmp_path / "a.h5", "-q")
    assert straight.exit_code == 0, straight.stderr
    assert run("train", TWO_LAYER, *sets, "--set", "train.epochs=2", "--out", tmp_path / "b.h5",
               "-q").exit_code == 0
    resumed = run("train", "--resume", tmp_path / "b.h5", "--set", "train.epochs=4", "-q")
    assert resumed.exit_code == 0, resumed.stderr
    a, b = read_run_log(tmp_path / "a.h5"), read_run_log(tmp_path / "b.h5")
    last = a.checkpoints["last"]
    assert set(last.params) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert "fc1.weight/momentum_buffer" in last.optimizer and "rng_layer:torch" in last.attrs
    for name, value in last.params.items():
        assert np.array_equal(value, b.checkpoints["last"].params[name]), name
    for name, value in a.checkpoints["average"].params.items():
        assert np.array_equal(value, b.checkpoints["average"].params[name]), name
    assert np.array_equal(a.history["iteration"]["loss"], b.history["iteration"]["loss"])
    assert set(a.history["layers"]) == {"flatten", "fc1", "relu", "dropout", "fc2"}
    assert a.result["metrics"]["val_accuracy"] > 0.8


def test_search_runs_torch_trials_in_process_and_on_dask(tmp_path):
    def search(name, *extra):
        return run("search", TWO_LAYER, "--param", "optim.lr=log:1e-2:1e-1",
                   "--param", "model.kwargs.hidden=int:10:40", "--trials", 2, "--epochs", 1,
                   "--out", tmp_path / f"{name}.h5", "--json", tmp_path / f"{name}.json", *extra)

    local = search("local", "--workers", 1)
    assert local.exit_code == 0, local.stderr
    assert read_search_log(tmp_path / "local.h5").meta["recipe_name"] == TWO_LAYER
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        remote = search("dask", "--scheduler", cluster.scheduler_address)
    assert remote.exit_code == 0, remote.stderr
    trials = [json.loads((tmp_path / f"{n}.json").read_text())["metrics"]["trials"] for n in ("local", "dask")]
    assert trials[0] == trials[1] and all(t["status"] == "ok" for t in trials[0])


def test_gradcheck_layer_takes_a_module_or_a_function():
    result, doc = run_json("gradcheck", "--layer", "babysit.bundled.broken_torch:WrongSlopeLeakyReLU",
                           "--input-shape", "4,6", "--kwargs", '{"alpha": 0.1}')
    assert result.exit_code == 1 and doc["findings"][0]["code"] == "gradient_mismatch"
    assert doc["metrics"]["layer"] == "WrongSlopeLeakyReLU"
    result, doc = run_json("gradcheck", "--layer", "torch.nn:Conv2d", "--input-shape", "2,3,5,5",
                           "--kwargs", '{"in_channels": 3, "out_channels": 4, "kernel_size": 3}')
    assert result.exit_code == 0, doc["findings"]
    assert set(doc["metrics"]["params"]) == {"weight", "bias"}


def test_a_bad_torch_recipe_is_one_error_line_and_exit_2(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("data: {source: 'builtin:digits'}\n"
                      "model: {torch: 'babysit.torch.examples:two_layer', kwargs: {hiden: 5}}\n")
    result = run("sanity-loss", recipe)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: model.torch 'babysit.torch.examples:two_layer'(input_shape=(1, 8, 8), num_classes=10, "
        "hiden=5) raised TypeError: two_layer() got an unexpected keyword argument 'hiden'"]
    recipe.write_text("data: {source: 'builtin:digits'}\n"
                      "model: {torch: 'babysit.torch.examples:two_layer', layers: [relu]}\n")
    result = run("sanity-loss", recipe)
    assert result.exit_code == 2 and "either a list of layers or a torch factory" in result.stderr


def test_the_gradcheck_table_goes_layer_by_layer_for_module_paths():
    result = run("gradcheck", "torch-convnet-digits")
    assert result.exit_code == 0, result.stderr
    cells = [re.split(r"\s{2,}|│", line.strip(" │"))[0] for line in result.stdout.splitlines()]
    rows = [cell for cell in cells if cell.endswith(("input", "weight", "bias"))]
    assert rows[:6] == ["input", "features.0.weight", "features.0.bias", "features.1 input",
                        "features.2 input", "classifier.0 input"]
    assert rows.index("classifier.1 input") < rows.index("classifier.1.weight")
