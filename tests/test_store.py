"""HDF5 run logs: round trip, atomic writes, and clear errors for bad files."""

import json

import h5py
import numpy as np
import pytest

from babysit.errors import BabysitError
from babysit.store import (Checkpoint, RunLog, StoreError, write_hdf5, read_log, read_run_log,
                           rng_state_from_json, rng_state_json)


def make_log():
    rng = np.random.default_rng(0)
    params = {"0.W": rng.standard_normal((4, 3)).astype(np.float32),
              "0.b": np.zeros(3, np.float32)}
    last = Checkpoint(params=params, buffers={"2.running_mean": np.ones(3)},
                      attrs={"epoch": 2, "iteration": 30, "rng": rng_state_json(rng.bit_generator.state)},
                      optimizer={"t": 30, "0.W/velocity": np.full((4, 3), 0.5, np.float32),
                                 "0.b/velocity": np.zeros(3, np.float32)})
    history = {"iteration": {"loss": np.linspace(2.3, 0.5, 30), "lr": np.full(30, 1e-3)},
               "epoch": {"epoch": np.array([1, 2]), "val_accuracy": np.array([0.5, 0.7])},
               "monitors": {"update_ratio": {"0.W": np.array([1e-3, 2e-3])}},
               "layers": {"1.relu": {"dead": np.array([0.0, 0.1])}}}
    return RunLog(recipe_yaml="name: t\nseed: 0\n", attrs={"name": "t", "seed": 0, "status": "finished"},
                  history=history, checkpoints={"last": last, "best": Checkpoint(params=params)},
                  result={"command": "train", "status": "pass", "findings": []})


def test_round_trip(tmp_path):
    log = make_log()
    path = log.save(tmp_path / "sub" / "run.h5")
    back = read_run_log(path)
    assert back.recipe_yaml == log.recipe_yaml
    assert back.name == "t" and back.status == "finished" and back.attrs["seed"] == 0
    assert back.result == log.result
    np.testing.assert_array_equal(back.history["iteration"]["loss"], log.history["iteration"]["loss"])
    np.testing.assert_array_equal(back.history["monitors"]["update_ratio"]["0.W"], [1e-3, 2e-3])
    np.testing.assert_array_equal(back.history["layers"]["1.relu"]["dead"], [0.0, 0.1])
    last = back.checkpoints["last"]
    assert set(last.params) == {"0.W", "0.b"}
    assert last.params["0.W"].dtype == np.float32
    np.testing.assert_array_equal(last.params["0.W"], log.checkpoints["last"].params["0.W"])
    assert last.optimizer["t"] == 30 and isinstance(last.optimizer["t"], int)
    assert set(last.optimizer) == {"t", "0.W/velocity", "0.b/velocity"}
    np.testing.assert_array_equal(last.buffers["2.running_mean"], np.ones(3))
    assert back.checkpoints["best"].optimizer is None
    # the spec's layout: checkpoint datasets are named by parameter
    with h5py.File(path, "r") as handle:
        assert isinstance(handle["checkpoints/last/0.W"], h5py.Dataset)
        assert isinstance(handle["checkpoints/best/0.b"], h5py.Dataset)
        assert handle.attrs["recipe"].startswith("name: t")
        assert json.loads(handle.attrs["result"])["status"] == "pass"


def test_rng_state_round_trip(tmp_path):
    rng = np.random.default_rng([3, 1])
    rng.standard_normal(5)
    text = rng_state_json(rng.bit_generator.state)
    expected = rng.standard_normal(4)
    other = np.random.default_rng(99)
    other.bit_generator.state = rng_state_from_json(text)
    np.testing.assert_array_equal(other.standard_normal(4), expected)


def test_write_hdf5_leaves_no_partial_file(tmp_path):
    target = tmp_path / "run.h5"

    def failing(handle):
        handle.create_dataset("x", data=np.arange(3))
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_hdf5(target, failing)
    assert list(tmp_path.iterdir()) == []

    make_log().save(target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        write_hdf5(target, failing)
    assert target.read_bytes() == before        # the old log survives a failed rewrite
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5"]


def test_bad_files_raise_babysit_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        read_log(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5 at all")
    with pytest.raises(StoreError, match="not a readable HDF5"):
        read_log(junk)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle.create_dataset("x", data=np.arange(3))
    with pytest.raises(StoreError, match="not a babysit log"):
        read_log(foreign)
    damaged = tmp_path / "damaged.h5"
    with h5py.File(damaged, "w") as handle:
        handle.attrs["babysit_format"] = "run"
    with pytest.raises(StoreError, match="damaged"):
        read_log(damaged)
    unknown = tmp_path / "unknown.h5"
    with h5py.File(unknown, "w") as handle:
        handle.attrs["babysit_format"] = "martian"
    with pytest.raises(StoreError, match="unknown kind"):
        read_log(unknown)
    assert issubclass(StoreError, BabysitError)
