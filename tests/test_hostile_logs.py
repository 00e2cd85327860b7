"""Damaged and hostile run and search logs: one ``error:`` line, exit 2, the file untouched.

Each log is a real one written by babysit (a 1-epoch run, a 2-trial search),
copied and changed with h5py the way an adversarial audit did. ``train --resume``
must refuse it before any training step; ``report`` before rendering; neither may
allocate what a dataset merely declares (:mod:`babysit.log_checks`).
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from babysit.cli import cli
from tests.helpers import one_error_line

# Declared, never stored: 80 MB, big next to a 1-epoch log's 15 losses yet harmless
# if a regression did read it (the audit's 10**9 got the process OOM-killed).
DECLARED = 10 ** 7


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """One genuine run log, one search log (with a choice column) and one ensemble log,
    written once."""
    folder = tmp_path_factory.mktemp("genuine")
    run_log, search_log, ensemble_log = folder / "run.h5", folder / "search.h5", folder / "ensemble.h5"
    assert run("train", "--set", "train.epochs=1", "--out", run_log, "--quiet").exit_code == 0
    assert run("train", "--ensemble", 2, "--set", "train.epochs=1", "--set", "data.limit=300",
               "--out", ensemble_log, "--quiet").exit_code == 0
    assert run("search", "--param", "optim.lr=log:1e-3:1e-1", "--param", "optim.update=choice:sgd,momentum",
               "--trials", 2, "--epochs", 1, "--workers", 1, "--out", search_log, "--quiet").exit_code == 0
    return {"run": run_log, "search": search_log, "ensemble": ensemble_log}


def replace(f, name, **dataset):
    del f[name]
    f.create_dataset(name, **dataset)


def as_dataset(name):
    def change(f):
        del f[name]
        f[name] = np.zeros(3)
    return change


def as_bytes(name):
    def change(f):
        shape = f[name].shape
        replace(f, name, data=np.full(shape, b"x"))
    return change


def set_attr(name, value, where="/"):
    def change(f):
        f[where].attrs[name] = value
    return change


def set_data(name, value):
    return lambda f: replace(f, name, data=value)


def soft_loop(name):
    def change(f):
        del f[name]
        f[name] = h5py.SoftLink("/" + name)
    return change


def hard_cycle(f):
    f["history/iteration/cyc"] = f["history"]


def sparse(f):      # the audit's D1 log, at 1/100 of its size
    replace(f, "history/iteration/loss", shape=(DECLARED,), dtype="f8", chunks=(1024,))


def unallocated(f):  # contiguous, space reserved but never written
    replace(f, "history/iteration/loss", shape=(DECLARED,), dtype="f8")


def compressed(f):
    replace(f, "history/iteration/loss", data=np.zeros(DECLARED // 10), compression="gzip")


def deep_json(f):
    f.attrs["result"] = "[" * 100000 + "]" * 100000


def huge_iteration(f):
    f["checkpoints/last"].attrs["iteration"] = np.uint64(2 ** 64 - 1)


BOTH, RESUME = ("resume", "report"), ("resume",)

# (case id, commands, change to a copy of the run log, words of the error line)
def first_optimizer_slot_to(value):
    def change(f):
        names = []
        f["checkpoints/last/optimizer"].visititems(
            lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        name = f"checkpoints/last/optimizer/{names[0]}"
        replace(f, name, data=np.full(f[name].shape, value))
    return change


RUN_CASES = [
    ("epoch-number-nan", BOTH, set_data("history/epoch/epoch", np.array([np.nan])), ["epoch numbers"]),
    ("optimizer-slot-inf", RESUME, first_optimizer_slot_to(np.inf), ["optimizer state"]),
    ("format-not-utf8", BOTH, set_attr("babysit_format", np.bytes_(b"\xff\xfe")), ["not UTF-8"]),
    ("format-array", ("report",), set_attr("babysit_format", np.array([1, 2])), ["'babysit_format'"]),
    ("optimizer-dataset", BOTH, as_dataset("checkpoints/last/optimizer"),
     ["/checkpoints/last/optimizer is a dataset, expected a group"]),
    ("last-dataset", BOTH, as_dataset("checkpoints/last"), ["/checkpoints/last is a dataset"]),
    ("checkpoints-dataset", BOTH, as_dataset("checkpoints"), ["/checkpoints is a dataset"]),
    ("history-dataset", BOTH, as_dataset("history"), ["/history is a dataset"]),
    ("soft-link-loop-history", BOTH, soft_loop("history/iteration/loss"), ["SoftLink"]),
    ("soft-link-loop-param", BOTH, soft_loop("checkpoints/last/0.W"), ["SoftLink"]),
    ("hard-link-cycle", BOTH, hard_cycle, ["/history/iteration/cyc", "already linked"]),
    ("deep-result-json", BOTH, deep_json, ["'result' is nested too deeply"]),
    ("result-not-object", BOTH, set_attr("result", "[1, 2]"), ["'result' must be a JSON object"]),
    ("sparse-huge-history", BOTH, sparse, ["/history/iteration/loss declares shape (10000000,)"]),
    ("unallocated-huge-history", BOTH, unallocated, ["declares shape (10000000,)", "stores 0 bytes"]),
    ("compressed-history", BOTH, compressed, ["declares shape (1000000,)"]),
    ("recipe-number", RESUME, set_attr("recipe", 5), ["'recipe' of / must be text"]),
    ("start-loss-text", RESUME, set_attr("start_loss", "abc"), ["'start_loss' of / must be a number"]),
    ("param-bytes", RESUME, as_bytes("checkpoints/last/0.W"), ["/checkpoints/last/0.W holds |S1"]),
    ("optimizer-t-bytes", RESUME, set_data("checkpoints/last/optimizer/t", b"x"),
     ["/checkpoints/last/optimizer/t holds"]),
    ("optimizer-slot-bytes", RESUME, as_bytes("checkpoints/last/optimizer/0.W/v"),
     ["/checkpoints/last/optimizer/0.W/v holds"]),
    ("history-loss-2d", RESUME, set_data("history/iteration/loss", np.zeros((15, 2))),
     ["/history/iteration/loss has shape (15, 2)"]),
    ("history-loss-bytes", RESUME, as_bytes("history/iteration/loss"), ["/history/iteration/loss holds"]),
    ("history-layer-bytes", RESUME, as_bytes("history/layers/0.affine/std"),
     ["/history/layers/0.affine/std holds"]),
    ("history-epoch-text", RESUME, set_data("history/epoch/epoch", np.array(["one"], dtype=object)),
     ["/history/epoch/epoch holds"]),
    ("history-monitor-2d", RESUME, set_data("history/monitors/update_ratio/0.W", np.zeros((1, 1))),
     ["/history/monitors/update_ratio/0.W has shape (1, 1)"]),
    ("iteration-past-history", RESUME, huge_iteration, ["go past the history"]),
]


def cases(table):
    return [pytest.param(command, change, words, id=f"{name}-{command}")
            for name, commands, change, words in table for command in commands]


@pytest.fixture
def no_training(monkeypatch):
    """A refused resume must not take a single step (it used to crash after training)."""
    from babysit.engine.solver import Solver

    def trained(*args, **kwargs):
        raise AssertionError("the damaged log was trained on before it was refused")

    monkeypatch.setattr(Solver, "run", trained)


def damaged_copy(source, tmp_path, change):
    log = tmp_path / source.name
    shutil.copy(source, log)
    with h5py.File(log, "r+") as f:
        change(f)
    return log


@pytest.mark.parametrize("command, change, words", cases(RUN_CASES))
def test_a_damaged_run_log_is_one_error_and_stays_as_it_was(logs, tmp_path, no_training,
                                                            command, change, words):
    log = damaged_copy(logs["run"], tmp_path, change)
    before = log.read_bytes()
    args = ("train", "--resume", log, "--set", "train.epochs=3") if command == "resume" else ("report", log)
    one_error_line(run(*args, "--quiet"), str(log), *words)
    assert log.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [log.name]   # nothing else written


SEARCH_CASES = [
    ("format-not-utf8", ("report",), set_attr("babysit_format", np.bytes_(b"\xff\xfe")), ["not UTF-8"]),
    ("space-list", ("report",), set_attr("space", "[1,2]"), ["'space' must be a JSON object"]),
    ("stage-spaces-object", ("report",), set_attr("stage_spaces", '{"a":1}'),
     ["'stage_spaces' must be a JSON list"]),
    ("epochs-text", ("report",), set_attr("epochs", "x"), ["'epochs' of / must be a non-negative integer"]),
    ("short-column", ("report",), set_data("trials/val_accuracy", np.zeros(1)),
     ["/trials/val_accuracy has 1 entries, expected 2"]),
    ("param-2d", ("report",), set_data("trials/params/optim.lr", np.zeros((2, 2))),
     ["/trials/params/optim.lr has shape (2, 2)"]),
    ("param-bytes", ("report",), as_bytes("trials/params/optim.lr"), ["/trials/params/optim.lr holds"]),
]


@pytest.mark.parametrize("command, change, words", cases(SEARCH_CASES))
def test_a_damaged_search_log_is_one_error_and_stays_as_it_was(logs, tmp_path, command, change, words):
    log = damaged_copy(logs["search"], tmp_path, change)
    before = log.read_bytes()
    one_error_line(run("report", log, "--quiet"), str(log), *words)
    assert log.read_bytes() == before


@pytest.mark.parametrize("kind, args, change, words", [
    ("run", ("train", "--resume"), set_attr("babysit_format", np.array([1, 2])),
     ["attribute 'babysit_format' of / is not a single number or text"]),
    ("search", ("report",), set_data("trials/params/optim.update", np.zeros(2)),
     ["/trials/params/optim.update is not a 1-D array of text"]),
    ("search", ("report",), lambda f: f.__delitem__("trials/status"), ["/trials/status is missing"]),
], ids=["format-array-resume", "choice-column-numbers", "status-column-missing"])
def test_damage_refused_before_now_names_what_is_wrong(logs, tmp_path, kind, args, change, words):
    # these were refused with exit 2 already, in h5py's or a misleading message
    log = damaged_copy(logs[kind], tmp_path, change)
    before = log.read_bytes()
    one_error_line(run(*args, log, "--quiet"), str(log), *words)
    assert log.read_bytes() == before


def comparison_with(change):
    """The ensemble's comparison (JSON text) changed by ``change(dict)``."""
    def apply(f):
        comparison = json.loads(f["ensemble"].attrs["comparison"])
        change(comparison)
        f["ensemble"].attrs["comparison"] = json.dumps(comparison)
    return apply


@pytest.mark.parametrize("change, words", [
    (lambda c: c.pop("members"), ["/ensemble's comparison lacks members"]),
    (lambda c: c.update(used="x"), ["'used' of /ensemble's comparison must be a non-negative integer"]),
    (lambda c: c.update(single=[1]), ["'single' of /ensemble's comparison must be a JSON object"]),
    (lambda c: c.update(per_member=[{}]), ["per_member[0] of /ensemble's comparison lacks"]),
    (lambda c: c["per_member"][1].update(seed=10 ** 400), ["'seed' of per_member[1]"]),
    (lambda c: c.update(seeds="01"), ["'seeds' of /ensemble's comparison must be a JSON list"]),
    (lambda c: c.update(val_accuracy=True), ["'val_accuracy'", "must be a number"]),
    (lambda c: c.update(per_member=c["per_member"] * 1000), ["counts 2 members but lists 2000"]),
    (lambda c: c.update(best_member=99), ["a best member, than it has"]),
], ids=["key-missing", "count-text", "spread-list", "member-empty", "seed-huge", "seeds-text",
        "accuracy-bool", "members-miscounted", "best-member-out-of-range"])
def test_a_damaged_ensemble_comparison_is_one_error(logs, tmp_path, change, words):
    # report's ensemble tables read these keys: each of these was a traceback (exit 1)
    log = damaged_copy(logs["ensemble"], tmp_path, comparison_with(change))
    before = log.read_bytes()
    one_error_line(run("report", log, "--quiet"), str(log), *words)
    assert log.read_bytes() == before


@pytest.mark.parametrize("change", [
    lambda c: c.update(gain_points=None),
    lambda c: c["per_member"][0].update(status="[/]"),              # Rich markup
    lambda c: c["per_member"][0].update(status="\ud800"),           # a lone surrogate
], ids=["gain-null", "status-markup", "status-surrogate"])
def test_odd_but_harmless_comparison_values_render(logs, tmp_path, change):
    # each passed the check and then crashed the table (exit 1, a traceback)
    log = damaged_copy(logs["ensemble"], tmp_path, comparison_with(change))
    result = run("report", log)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "Members" in result.stdout


def test_a_number_too_large_for_a_float_is_refused(logs, tmp_path):
    def huge_gain(f):
        text = f["ensemble"].attrs["comparison"]
        f["ensemble"].attrs["comparison"] = text.replace('"gain_points": ', '"gain_points": ' + "9" * 400
                                                         + ', "was": ', 1)
    log = damaged_copy(logs["ensemble"], tmp_path, huge_gain)
    one_error_line(run("report", log, "--quiet"), str(log), "'gain_points'", "too large for a float")


def test_a_lone_surrogate_in_a_finding_is_shown_not_a_crash(logs, tmp_path):
    def surrogate(f):
        result = json.loads(f.attrs["result"])
        result["findings"].append({"code": "dead_relu", "severity": "warn", "message": "bad \ud800 text"})
        f.attrs["result"] = json.dumps(result)
    log = damaged_copy(logs["run"], tmp_path, surrogate)
    result = run("report", log, "--json", tmp_path / "r.json")
    assert result.exit_code == 0 and "bad \ufffd text" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["findings"][-1]["message"] == "bad \ufffd text"


def invalid_utf8(name, replace=None):
    """Text attribute ``name`` stored with bytes that are not UTF-8 (h5py reads them back as
    lone surrogates, which no strict terminal, JSON reader or HDF5 write accepts)."""
    def change(f):
        old = f.attrs[name]
        raw = old.encode().replace(*replace) if replace else b"/tmp/x\xff.yaml"
        f.attrs[name] = np.array(raw, dtype=h5py.string_dtype("utf-8"))
    return change


@pytest.mark.parametrize("kind, change, args", [
    ("run", invalid_utf8("status", (b"finished", b"finished\xff")), ("report",)),
    ("run", invalid_utf8("recipe", (b"lecture", b"lec\xed\xa0\x80ture")),
     ("train", "--resume", "LOG", "--set", "train.epochs=2")),
    ("run", invalid_utf8("recipe_path"), ("train", "--resume", "LOG", "--set", "train.epochs=2")),
    ("search", invalid_utf8("recipe_path"), ("report",)),
], ids=["run-status-report", "run-recipe-resume", "run-recipe-path-resume", "search-path-report"])
def test_text_that_is_not_utf8_is_shown_with_replacement_characters(logs, tmp_path, kind, change, args):
    # each was a traceback (a strict UTF-8 terminal, YAML's reader, the first save after an
    # epoch of training) or wrote "\udcff" into report's JSON
    log = damaged_copy(logs[kind], tmp_path, change)
    args = [log if a == "LOG" else a for a in args] + ([log] if args[0] == "report" else [])
    result = CliRunner().invoke(cli, [str(a) for a in args] + ["--json", str(tmp_path / "out.json")],
                                env={"PYTHONIOENCODING": "utf-8:strict"})
    assert result.exit_code == 0, result.output
    document = (tmp_path / "out.json").read_text(encoding="utf-8")
    assert "\\ud" not in document and "\\udc" not in document
    json.loads(document)


def test_genuine_logs_still_read(logs, tmp_path):
    # the checks cost a genuine log nothing: report and resume work on copies
    for kind in ("run", "search", "ensemble"):
        assert run("report", logs[kind], "--quiet").exit_code == 0
    log = tmp_path / "run.h5"
    shutil.copy(logs["run"], log)
    assert run("train", "--resume", log, "--set", "train.epochs=2", "--quiet").exit_code == 0


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    import os

    os.mkfifo(tmp_path / "run.h5")
    for args in (("report",), ("train", "--resume")):
        one_error_line(run(*args, tmp_path / "run.h5", "--quiet"), "is not a regular file")


def test_a_log_of_too_many_objects_is_refused_before_it_is_walked(logs, tmp_path, monkeypatch):
    # 250,000 empty datasets (91 MB) kept report busy for minutes at 2.9 GB; the
    # bound is scaled down here so that the test builds a small file
    from babysit import log_checks

    monkeypatch.setattr(log_checks, "MAX_OBJECTS", 200)
    log = damaged_copy(logs["run"], tmp_path,
                       lambda f: [f.create_group(f"extra/{i}") for i in range(250)])
    one_error_line(run("report", log, "--quiet"), "more than 200 objects")


def test_a_step_count_that_cannot_grow_is_refused_before_training(tmp_path, request):
    # Adam's t at 2**64 - 1 loaded, trained a step past int64, and broke the first save
    log = tmp_path / "adam.h5"
    assert run("train", "--set", "train.epochs=1", "--set", "optim.update=adam", "--out", log,
               "--quiet").exit_code == 0
    with h5py.File(log, "r+") as f:
        replace(f, "checkpoints/last/optimizer/t", data=np.uint64(2 ** 64 - 1))
    request.getfixturevalue("no_training")   # from here on, training would be the bug
    before = log.read_bytes()
    one_error_line(run("train", "--resume", log, "--set", "train.epochs=2", "--quiet"),
                   "optimizer state 't'")
    assert log.read_bytes() == before
