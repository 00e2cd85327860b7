"""An output never lands on an input of the command or on another output (cli/outputs.py)."""

import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from babysit.cli import cli

RECIPE = "data: {source: data.h5}\nmodel: {layers: [{affine: {out: 3}}]}\ntrain: {epochs: 1}\n"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    with h5py.File("data.h5", "w") as f:
        f["X_train"] = rng.standard_normal((60, 4)).astype("float32")
        f["y_train"] = np.arange(60) % 3
    (tmp_path / "r.yaml").write_text(RECIPE)
    return tmp_path


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def invoke(*args):
    return CliRunner().invoke(cli, [*args, "-q"])


@pytest.mark.parametrize("args, message", [
    (["train", "r.yaml", "--out", "data.h5"], "--out data.h5 would overwrite the data file"),
    (["sanity-loss", "r.yaml", "--json", "r.yaml"], "--json r.yaml would overwrite the recipe"),
    (["sanity-loss", "r.yaml", "--junit", "./sub/../data.h5"], "would overwrite the data file"),
    (["sanity-loss", "r.yaml", "--plot", "a.png", "--json", "a.png"], "--json and --plot name the same file"),
    (["train", "r.yaml", "--out", "run.h5", "--json", "run.h5"], "--json and --out name the same file"),
    (["sanity-loss", "r.yaml", "--json", "a.json", "--junit", "a.json"], "name the same file a.json"),
    (["data", "data.h5", "--json", "data.h5"], "--json data.h5 would overwrite the file it inspects"),
    # a stop on bad input writes its documents: they must not land on the input either
    (["sanity-loss", "r.yaml", "--set", "optim.lr=-1", "--json", "r.yaml"], "would overwrite the recipe"),
    (["search", "r.yaml", "--trials", "2", "--epochs", "1", "--workers", "1", "--out", "r.yaml"],
     "--out r.yaml would overwrite the recipe"),
    (["search", "r.yaml", "--trials", "2", "--epochs", "1", "--workers", "1", "--out", "data.h5"],
     "--out data.h5 would overwrite the data file"),
    (["search", "r.yaml", "--trials", "2", "--epochs", "1", "--workers", "1", "--out", "s.h5",
      "--json", "s.h5"], "--json and --out name the same file s.h5"),
    (["sanity-loss", "r.yaml", "--json", ""], "an output path is empty"),
    (["sanity-loss", "r.yaml", "--json", ".run.h5.babysit.lock"], "is named like a babysit lock file"),
])
def test_an_output_onto_an_input_or_another_output_is_refused_before_any_work(folder, args, message):
    before = snapshot(folder)
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert snapshot(folder) == before           # nothing written, nothing replaced


def test_the_stop_document_spares_the_clashing_output_but_not_the_others(folder):
    result = invoke("sanity-loss", "r.yaml", "--json", "r.yaml", "--junit", "ok.xml")
    assert result.exit_code == 2
    assert (folder / "r.yaml").read_text() == RECIPE
    assert b"would overwrite the recipe" in (folder / "ok.xml").read_bytes()


def test_a_symlink_to_an_input_is_the_input(folder):
    os.symlink("data.h5", folder / "link.h5")
    before = snapshot(folder)
    result = invoke("sanity-loss", "r.yaml", "--junit", "link.h5")
    assert result.exit_code == 2 and "would overwrite the data file" in result.stderr
    assert snapshot(folder) == before


def test_the_run_log_of_a_resume(folder):
    assert invoke("train", "r.yaml", "--out", "run.h5").exit_code == 0
    log = (folder / "run.h5").read_bytes()
    for args in (["report", "run.h5", "--json", "run.h5"],
                 ["train", "--resume", "run.h5", "--seed", "3", "--json", "run.h5"],   # a usage error
                 ["train", "--resume", "run.h5", "--json", "run.h5", "--set", "train.epochs=2"],
                 ["train", "--resume", "run.h5", "--out", "data.h5", "--set", "train.epochs=2"]):
        result = invoke(*args)
        assert result.exit_code == 2 and "overwrite" in result.stderr, (args, result.stderr)
        assert (folder / "run.h5").read_bytes() == log
    # the log it continues, or a new one: both fine
    assert invoke("train", "--resume", "run.h5", "--out", "run.h5", "--set", "train.epochs=2").exit_code == 0
    assert invoke("train", "--resume", "run.h5", "--out", "run2.h5", "--set", "train.epochs=3").exit_code == 0


def test_outputs_go_where_the_command_started_whatever_user_code_does(folder, monkeypatch):
    # a custom layer that changes directory once moved a relative --json elsewhere
    from babysit.cli import app as app_module

    other = folder / "elsewhere"
    other.mkdir()
    emit = app_module.App.emit

    def emit_after_chdir(self, *args, **kwargs):
        os.chdir(other)
        return emit(self, *args, **kwargs)

    monkeypatch.setattr(app_module.App, "emit", emit_after_chdir)
    assert invoke("sanity-loss", "r.yaml", "--json", "out.json").exit_code == 0
    assert (folder / "out.json").is_file() and not (other / "out.json").exists()


def test_a_recipe_that_does_not_load_keeps_its_file(folder):
    (folder / "bad.yaml").write_text("data: {source: data.h5}\nmodell: {}\n")
    before = snapshot(folder)
    result = invoke("sanity-loss", "bad.yaml", "--json", "bad.yaml")
    assert result.exit_code == 2 and "would overwrite the recipe" in result.stderr
    assert snapshot(folder) == before


def test_custom_layer_code_and_data_directories_are_inputs(folder, monkeypatch):
    import pickle

    monkeypatch.syspath_prepend(str(folder))
    (folder / "mylayers.py").write_text(
        "class Id:\n    def __init__(self):\n        self.params, self.grads = {}, {}\n"
        "    def forward(self, x, train):\n        return x\n    def backward(self, d):\n        return d\n")
    (folder / "cif").mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / "cif" / name, "wb") as handle:
            pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}, handle)
    with open(folder / "cif" / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [b"c%d" % i for i in range(10)]}, handle)
    (folder / "rc.yaml").write_text("data: {source: 'cifar10:cif'}\nmodel: {layers: [{affine: {out: 10}}]}\n")
    before = {**snapshot(folder), **{f"cif/{k}": v for k, v in snapshot(folder / "cif").items()}}
    for args, words in ((["gradcheck", "--layer", "mylayers:Id", "--input-shape", "4,10", "--json", "mylayers.py"],
                         "would overwrite the code of mylayers:Id"),
                        (["gradcheck", "r.yaml", "--set", "model.layers.0={custom: 'mylayers:Id'}",
                          "--json", "mylayers.py"], "would overwrite the code of custom layer mylayers:Id"),
                        (["sanity-loss", "rc.yaml", "--json", "cif/data_batch_1"],
                         "would overwrite a file of the data directory"),
                        (["data", "cifar10:cif", "--json", "cif/test_batch"],
                         "would overwrite a file of the data directory")):
        result = invoke(*args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.stderr)
    after = {**snapshot(folder), **{f"cif/{k}": v for k, v in snapshot(folder / "cif").items()}}
    assert after == before


def test_a_log_another_process_is_writing_is_not_an_output(folder):
    # the document would replace the live log, and the log's next checkpoint the document
    from tests.test_locks import held_by_another_process

    child = held_by_another_process(folder / "live.h5")
    try:
        result = invoke("sanity-loss", "r.yaml", "--junit", "live.h5")
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert result.exit_code == 2 and "--junit live.h5 is being written by another babysit process" in result.stderr
    assert not (folder / "live.h5").exists()
