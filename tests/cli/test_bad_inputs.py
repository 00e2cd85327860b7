"""Bad input never crashes: one ``error: ...`` line on stderr, exit code 2, no traceback.

Each case here was found by an adversarial audit of the CLI; the fix lives in
the module that owns the input (recipes, data, engine model, CLI options).
"""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from babysit.cli import cli
from tests.helpers import one_error_line


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})


# -- custom layers that fail at run time (past the builder's shape probe) ------------

LAYERS = '''
import numpy as np

class Probe:
    """Behaves on the builder's batch of 2, then fails as its name says."""
    def __init__(self):
        self.params, self.grads = {}, {}
    def forward(self, x, train):
        self.x = x
        return x
    def backward(self, dout):
        return dout

class ForwardRaises(Probe):
    def forward(self, x, train):
        if len(x) != 2:
            raise RuntimeError("boom in forward")
        return x

class BackwardRaises(Probe):
    def backward(self, dout):
        raise RuntimeError("boom in backward")

class BackwardNone(Probe):
    def backward(self, dout):
        return None

class WritesIntoInput(Probe):
    def forward(self, x, train):
        x *= 0.5
        return x
    def backward(self, dout):
        return dout * 0.5

class ForwardNone(Probe):
    def forward(self, x, train):
        return x if len(x) == 2 else None
'''


@pytest.fixture
def layer_dir(tmp_path, monkeypatch):
    (tmp_path / "audit_layers.py").write_text(LAYERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def custom_recipe(directory, cls: str):
    path = directory / f"{cls}.yaml"
    path.write_text(textwrap.dedent(f"""\
        data: {{source: builtin:digits, limit: 200}}
        model:
          layers: [flatten, {{custom: audit_layers:{cls}}}, {{affine: {{out: 10}}}}]
        train: {{epochs: 1}}
        """))
    return path


@pytest.mark.parametrize("cls, words", [
    ("ForwardRaises", ["layer 1 (custom ForwardRaises)", "forward raised RuntimeError: boom in forward"]),
    ("BackwardRaises", ["layer 1 (custom BackwardRaises)", "backward raised RuntimeError"]),
    ("BackwardNone", ["layer 1 (custom BackwardNone)", "backward must return dx", "got None"]),
    ("ForwardNone", ["layer 1 (custom ForwardNone)", "forward must return a numeric array", "got None"]),
])
@pytest.mark.parametrize("command", ["sanity-loss", "gradcheck", "overfit-tiny", "train"])
def test_custom_layer_failing_at_run_time(layer_dir, cls, words, command):
    extra = ["--out", layer_dir / "run.h5"] if command == "train" else []
    result = run(command, custom_recipe(layer_dir, cls), "--quiet", *extra)
    one_error_line(result, *words)


# -- options and output paths ---------------------------------------------------------


def test_negative_seed_is_rejected_by_the_option_itself():
    # it used to surface as "--set seed=-1: ...", an option the user never gave
    result = run("sanity-loss", "--seed", "-1")
    assert result.exit_code == 2 and "--seed" in result.stderr and "--set" not in result.stderr


def test_json_onto_a_directory_fails_before_the_work(tmp_path):
    result = run("lr-probe", "--json", tmp_path, "--quiet")
    one_error_line(result, str(tmp_path), "is a directory")


def test_train_out_onto_a_directory_fails_before_training(tmp_path):
    result = run("train", "--out", tmp_path, "--quiet")
    one_error_line(result, f"cannot write the run log to {tmp_path}: it is a directory")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_names_the_target_not_the_temporary_file(tmp_path):
    result = run("search", "--out", tmp_path, "--param", "optim.lr=log:1e-3:1e-1", "--trials", "1",
                 "--epochs", "1", "--workers", "1", "--quiet")
    one_error_line(result, f"cannot write {tmp_path}: it is a directory")
    assert ".tmp" not in result.stderr and list(tmp_path.iterdir()) == []


def test_out_of_memory_is_one_line():
    result = run("gradcheck", "--layer", "babysit.bundled.broken_layers:WrongSlopeLeakyReLU",
                 "--input-shape", "1000000,1000000", "--quiet")
    one_error_line(result, "out of memory")


def test_resume_with_a_resized_layer_names_the_run_log(tmp_path):
    log = tmp_path / "run.h5"
    assert run("train", "--set", "train.epochs=1", "--out", log, "--quiet").exit_code == 0
    result = run("train", "--resume", log, "--set", "model.layers.0.affine.out=20", "--quiet")
    one_error_line(result, f"{log}: the checkpoint does not fit this recipe's model",
                       "'0.W' has shape (64, 20), got (64, 50)")


DAMAGED_LOOP_STATES = [   # (attribute of checkpoints/last, value written, words of the message)
    ("rng_batches", "{not json", ["loop state is damaged", "Expecting property name"]),
    ("rng_batches", '{"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}',
     ["loop state is damaged", "unsupported operand"]),
    ("rng_batches", "[1, 2]", ["loop state is damaged", "got list"]),
    ("rng_batches", '{"bit_generator": "os.system", "state": {}}', ["bit generator 'os.system', expected 'PCG64'"]),
    ("rng_batches", "[" * 100000 + "]" * 100000, ["nested too deeply"]),
    ("rng_batches", "PCG64DXSM", ["bit generator 'PCG64DXSM', expected 'PCG64'"]),
    ("rng_batches", '{"bit_generator": "BitGenerator", "state": {}}', ["bit generator 'BitGenerator'"]),
    ("epoch", -3, ["negative step counts"]),
    ("epoch", float("inf"), ["step count inf is not a whole number"]),
    ("epoch", 1.5, ["step count 1.5 is not a whole number"]),
    ("epoch", True, ["is not a whole number"]),
    ("epoch", 2, ["do not add up"]),                   # 2 finished epochs in 0 steps
    ("batch_in_epoch", 10 ** 6, ["do not add up"]),
    ("iteration", "two", ["loop state is damaged", "'two'"]),
    ("rng_layer:7.dropout", "{}", ["loop state is damaged", "layer 7.dropout does not parse"]),
    ("rng_layer:7.dropout", '{"bit_generator": "MT19937", "state": {"key": [1], "pos": 0}}',
     ["loop state is damaged", "layer 7.dropout"]),
    ("rng_layer:7.dropout", "[" * 100000 + "]" * 100000, ["loop state is damaged", "layer 7.dropout"]),
]


@pytest.mark.parametrize("attr, value, words", DAMAGED_LOOP_STATES,
                         ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(DAMAGED_LOOP_STATES)])
def test_resume_from_a_damaged_loop_state_is_one_error_and_keeps_the_log(tmp_path, attr, value, words):
    # a hostile or damaged run log: one message naming it, exit 2, nothing written
    import h5py

    log = tmp_path / "run.h5"
    recipe = ["dropout-convnet-nesterov"] if attr.startswith("rng_layer:") else []   # a layer that draws
    assert run("train", *recipe, "--set", "train.epochs=1", "--out", log, "--quiet").exit_code == 0
    with h5py.File(log, "r+") as handle:
        attrs = handle["checkpoints/last"].attrs
        assert attr in attrs or not attr.startswith("rng_layer:")
        if value == "PCG64DXSM":   # a complete state, of another kind of generator
            value = json.dumps({**json.loads(attrs["rng_batches"]), "bit_generator": "PCG64DXSM"})
        if attr == "epoch" and value == 2:
            attrs["iteration"] = 0
        attrs[attr] = value
    before = log.read_bytes()
    one_error_line(run("train", "--resume", log, "--quiet"), f"{log}: the 'last' checkpoint", *words)
    assert log.read_bytes() == before


def test_resume_mid_epoch_with_fewer_steps_an_epoch_names_the_batch_size(tmp_path):
    import h5py
    import numpy as np

    log = tmp_path / "run.h5"
    assert run("train", "--set", "train.epochs=1", "--out", log, "--quiet").exit_code == 0
    with h5py.File(log, "r+") as handle:   # as if stopped after step 13 of the second epoch
        attrs = handle["checkpoints/last"].attrs
        attrs["batch_in_epoch"], attrs["iteration"] = 13, int(attrs["iteration"]) + 13
        for name in ("loss", "lr"):   # the history records those 13 steps too
            steps = handle[f"history/iteration/{name}"][()]
            del handle[f"history/iteration/{name}"]
            handle[f"history/iteration/{name}"] = np.concatenate([steps, steps[-13:]])
    one_error_line(run("train", "--resume", log, "--set", "train.batch_size=1000", "--quiet"),
                   "stopped after step 13 of an epoch", "has 2 steps", "train.batch_size")


def test_a_custom_layer_writing_into_its_input_leaves_the_data_as_it_was(layer_dir):
    # the engine hands a model with user layers a copy: the Dataset's arrays are
    # evaluated again every epoch, and doctor's parts may share them
    import numpy as np

    from babysit.diagnostics import common
    from babysit.recipes import load_recipe

    recipe = load_recipe(str(custom_recipe(layer_dir, "WritesIntoInput")))
    data = common.load(recipe)
    kept = data.X_val.copy(), data.X_train.copy()
    model = common.build(recipe, data, 0)
    model.forward(data.X_val)
    model.loss(data.X_train, data.y_train)
    assert np.array_equal(data.X_val, kept[0]) and np.array_equal(data.X_train, kept[1])


def test_resume_from_a_log_without_its_shuffling_state_names_what_is_missing(tmp_path):
    import h5py

    log = tmp_path / "run.h5"
    assert run("train", "--set", "train.epochs=1", "--out", log, "--quiet").exit_code == 0
    with h5py.File(log, "r+") as handle:
        del handle["checkpoints/last"].attrs["rng_batches"]
    one_error_line(run("train", "--resume", log, "--quiet"), "lacks 'rng_batches'")


# -- data ------------------------------------------------------------------------------


def test_labels_up_to_a_billion_are_reported_not_allocated(tmp_path):
    import numpy as np

    path = tmp_path / "sparse.npz"
    X = np.random.default_rng(0).normal(size=(40, 4))
    np.savez(path, X_train=X, y_train=np.array([0, 900_000_000] * 20))
    # more classes than examples: reported as label_out_of_range (exit 1), the tables still drawn
    inspected = run("data", path)
    assert inspected.exit_code == 1 and "Class balance" in inspected.stdout
    assert "label_out_of_range" in inspected.stdout
    one_error_line(run("sanity-loss", "--set", f"data.source={path}", "--quiet"),
                       "the data has 900000001 classes")


def test_report_of_a_search_stopped_by_a_broken_layer_says_so(layer_dir):
    log = layer_dir / "search.h5"
    result = run("search", custom_recipe(layer_dir, "BackwardRaises"), "--param",
                 "optim.lr=log:1e-3:1e-1", "--trials", "1", "--epochs", "1", "--workers", "1",
                 "--out", log, "--quiet")
    one_error_line(result, "backward raised RuntimeError")
    report = run("report", log)
    assert report.exit_code == 0 and "failed" in report.stdout
    assert "the search stopped on an error: only finished trials are shown" in report.stdout


def test_search_param_errors_name_the_param_option(tmp_path):
    result = run("search", "--param", "optim.lrate=log:1e-3:1e-1", "--trials", 1,
                 "--out", tmp_path / "s.h5")
    one_error_line(result, "--param optim.lrate", "did you mean 'lr'")
    assert "--set" not in result.stderr and not (tmp_path / "s.h5").exists()


def test_a_seed_too_large_to_store_is_refused_before_any_work(tmp_path):
    # a 20-digit --seed trained, then crashed the run log's first save with a
    # traceback (HDF5 stores 64-bit integers); an ensemble's members take seed + i
    from babysit.validation import MAX_SEED

    refused = run("train", "--seed", 10 ** 20, "--out", tmp_path / "r.h5", "--quiet")
    assert refused.exit_code == 2 and "--seed" in refused.stderr and not (tmp_path / "r.h5").exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: big\nseed: 99999999999999999999\ndata: {source: digits}\n"
                      "model: {layers: [{affine: {out: 10}}]}\noptim: {update: sgd, lr: 0.1}\n")
    one_error_line(run("sanity-loss", recipe, "--quiet"), "seed must be an integer from 0 to 2**62")
    largest = run("train", "--seed", MAX_SEED, "--ensemble", 2, "--set", "train.epochs=1",
                  "--set", "data.limit=300", "--out", tmp_path / "e.h5", "--quiet")
    assert largest.exit_code == 0, largest.output


def test_a_recipe_name_with_a_nul_is_refused_before_any_work(tmp_path):
    # it validated, trained, then crashed the first save (HDF5 text holds no NUL)
    one_error_line(run("train", "--set", 'name="a\\u0000b"', "--out", tmp_path / "r.h5", "--quiet"),
                   "name must be a non-empty string without NUL characters")
    assert not (tmp_path / "r.h5").exists()
