"""One writer per log (issue 10 item 6): a second ``train``/``search`` writing the same file
gets exit 2 naming the first, instead of one run being silently lost."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from babysit.cli import cli
from babysit.search_store import SearchLogWriter, read_search_log
from babysit.store import read_run_log
from tests.helpers import child_env

pytest.importorskip("fcntl")
ENV = child_env()


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def held_by_another_process(path):
    """A child process holding the lock of ``path`` until its stdin closes."""
    code = ("import sys; from babysit.locks import exclusive\n"
            f"with exclusive({str(path)!r}):\n"
            "    print('locked', flush=True); sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=ENV)
    assert child.stdout.readline() == "locked\n"
    return child


def test_a_second_train_on_the_same_log_is_exit_2_naming_the_first(tmp_path):
    out = tmp_path / "run.h5"
    first = subprocess.Popen([sys.executable, "-m", "babysit", "train", "--out", str(out), "-q",
                              "--set", "train.epochs=100000"], env=ENV, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:  # its first epoch is saved
            time.sleep(0.05)
        for args in (["--out", out], ["--resume", out, "--set", "train.epochs=2"]):
            result = run("train", *args, "-q")
            assert result.exit_code == 2, result.output
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith(f"error: {out} is being written by another babysit process")
            assert f"pid {first.pid}" in line
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130 and "checkpoint saved" in stderr  # the first run is intact
    epochs = read_run_log(out).attrs["epochs_run"]
    assert run("train", "--resume", out, "--set", f"train.epochs={epochs + 1}",
               "-q").exit_code == 0
    assert read_run_log(out).attrs["epochs_run"] == epochs + 1
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]       # the lock file went with its owner


def test_a_second_search_on_the_same_log_is_exit_2(tmp_path):
    out = tmp_path / "s.h5"
    child = held_by_another_process(out)
    try:
        result = run("search", "--param", "optim.lr=log:1e-3:1e-1", "--trials", 1, "--epochs", 1,
                     "--workers", 1, "--out", out, "-q")
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert result.exit_code == 2 and "is being written by another babysit process" in result.stderr
    assert not out.exists()


def test_searches_and_ensembles_started_in_the_same_second_get_their_own_default_logs(
        tmp_path, monkeypatch):
    # their default runs/<name>-...-<time>.h5 has a one-second clock, like train's: the
    # second failed on a lock the user never chose, or replaced a search that had ended
    from babysit.cli import search as search_command
    from babysit.diagnostics.train import trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(search_command.time, "strftime", lambda *args: "20261130-120000")
    monkeypatch.setattr(trainer.time, "strftime", lambda *args: "20261130-120000")
    search = ("search", "--param", "optim.lr=log:1e-3:1e-1", "--trials", 1, "--epochs", 1,
              "--workers", 1, "-q", "--json")
    ensemble = ("train", "--ensemble", 2, "--set", "train.epochs=1", "--set", "data.limit=300",
                "-q", "--json")
    running = [held_by_another_process(tmp_path / f"runs/two-layer-digits-{stem}20261130-120000.h5")
               for stem in ("search-", "")]
    try:
        assert run(*search, "s1.json").exit_code == 0
        assert run(*search, "s2.json").exit_code == 0
        assert run(*ensemble, "e1.json").exit_code == 0
    finally:
        for child in running:
            child.stdin.close()
            child.wait(timeout=30)
    searches = [json.loads((tmp_path / f"s{n}.json").read_text())["metrics"]["search_log"]
                for n in (1, 2)]
    assert searches == ["runs/two-layer-digits-search-20261130-120000-2.h5",
                        "runs/two-layer-digits-search-20261130-120000-3.h5"]
    assert [len(read_search_log(tmp_path / log).trials) for log in searches] == [1, 1]
    ensemble_log = json.loads((tmp_path / "e1.json").read_text())["metrics"]["run_log"]
    assert ensemble_log == "runs/two-layer-digits-20261130-120000-2.h5"
    assert len(read_run_log(tmp_path / ensemble_log).ensemble.members) == 2
    assert sorted(os.listdir(tmp_path / "runs")) == [os.path.basename(p) for p in sorted(
        [ensemble_log, *searches])]


def test_anything_at_a_default_name_makes_it_move_on(tmp_path, monkeypatch):
    # a dangling symlink at runs/<name>-<time>.h5 carried the log to its target,
    # anywhere the user can write; a directory or FIFO there failed the run although
    # the user never chose that name. A name given with --out is still refused.
    from babysit.diagnostics.train import trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer.time, "strftime", lambda *args: "20261130-120000")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "two-layer-digits-20261130-120000.h5").symlink_to(tmp_path / "elsewhere.h5")
    (runs / "two-layer-digits-20261130-120000-2.h5").mkdir()
    os.mkfifo(runs / "two-layer-digits-20261130-120000-3.h5")
    train = ("train", "--set", "train.epochs=1", "--set", "data.limit=300", "-q", "--json")
    assert run(*train, "t.json").exit_code == 0
    assert json.loads((tmp_path / "t.json").read_text())["metrics"]["run_log"] == \
        "runs/two-layer-digits-20261130-120000-4.h5"
    assert not (tmp_path / "elsewhere.h5").exists()
    refused = run(*train, "u.json", "--out", runs / "two-layer-digits-20261130-120000-2.h5")
    assert refused.exit_code == 2 and "is a directory" in refused.stderr


def test_a_directory_in_place_of_a_lock_file_is_named(tmp_path):
    from babysit.locks import exclusive, lock_path
    from babysit.atomic import WriteError

    lock_path(tmp_path / "run.h5").mkdir()
    with pytest.raises(WriteError, match=r"its lock file .*\.run\.h5\.babysit\.lock is a directory"):
        with exclusive(tmp_path / "run.h5"):
            pass


def locked_for_another_process(path) -> bool:
    code = ("import sys; from babysit.locks import OutputLocked, exclusive\n"
            "try:\n"
            f"    with exclusive({str(path)!r}): pass\n"
            "except OutputLocked: sys.exit(3)\n")
    return subprocess.run([sys.executable, "-c", code], env=ENV, timeout=60).returncode == 3


def test_the_search_log_writer_holds_the_lock_until_closed(tmp_path):
    from babysit.locks import exclusive, lock_path

    path = tmp_path / "s.h5"
    writer = SearchLogWriter(path, {"seed": 0}, {})
    assert locked_for_another_process(path)
    with exclusive(path):             # re-entrant in the process that holds it
        assert lock_path(path).exists()
    assert locked_for_another_process(path)
    writer.close("complete")
    assert not locked_for_another_process(path)
    with exclusive(path):
        assert lock_path(path).exists()
    assert read_search_log(path).status == "complete"
    assert sorted(os.listdir(tmp_path)) == ["s.h5"]


def test_a_lock_left_by_a_killed_owner_is_not_in_the_way(tmp_path):
    from babysit.locks import exclusive, lock_path

    out = tmp_path / "run.h5"
    child = held_by_another_process(out)
    child.kill()
    child.wait(timeout=30)
    assert lock_path(out).exists()                         # kill -9: no clean-up ran
    with exclusive(out):                                   # ... but the kernel dropped the lock
        pass
    other = tmp_path / "other.h5"
    child = held_by_another_process(other)
    child.kill()
    child.wait(timeout=30)
    with exclusive(out):                                   # the next writer sweeps stale locks
        assert not lock_path(other).exists()
    assert os.listdir(tmp_path) == []


def test_a_fifo_named_like_a_lock_is_not_waited_on(tmp_path):
    # the stale-lock sweep opened every ".*.babysit.lock" for reading: a FIFO by that
    # name blocked train/search forever
    from babysit.locks import exclusive

    os.mkfifo(tmp_path / ".other.h5.babysit.lock")
    done = []
    worker = __import__("threading").Thread(
        target=lambda: done.append(exclusive(tmp_path / "run.h5").__enter__()), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert done, "exclusive() blocked on the FIFO"
    assert (tmp_path / ".other.h5.babysit.lock").exists()   # not ours: left alone


@pytest.mark.parametrize("plant", ["dangling symlink", "fifo"])
def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path, plant):
    from babysit.atomic import WriteError
    from babysit.locks import exclusive

    sidecar = tmp_path / ".run.h5.babysit.lock"
    if plant == "fifo":
        os.mkfifo(sidecar)
    else:
        os.symlink(tmp_path / "elsewhere" / "x", sidecar)
    with pytest.raises(WriteError, match="lock file .* (is a symbolic link|is not a regular file)"):
        with exclusive(tmp_path / "run.h5"):
            pass
    assert not (tmp_path / "elsewhere").exists()            # the link's target was not created
