"""Atomic writes (issue 10 items 3, 4, 12, 14): what is at the target is never clobbered
or left half-written, and every error names the file the user asked for."""

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from babysit import atomic
from babysit.atomic import write_bytes
from babysit.store import read_run_log, write_hdf5
from tests.helpers import child_env, device_node

# babysit.atomic.WriteError is an OSError whose str() names the target; tests catch
# OSError so that they run (and fail) against code without it.
WriteError = OSError


def listing(directory):
    return sorted(os.listdir(directory))


# -- symlinks, devices, FIFOs (item 3) ---------------------------------------------

def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    assert listing(tmp_path) == ["link.json", "real.json"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "target.json")
    write_bytes(link, b"data")
    assert link.is_symlink() and (tmp_path / "target.json").read_bytes() == b"data"


def test_a_device_is_written_through_never_replaced(tmp_path):
    null = device_node(tmp_path, "null")
    before = os.stat(null)
    write_bytes(null, b'{"status": "pass"}\n')
    after = os.stat(null)
    assert (after.st_ino, after.st_rdev, after.st_mode) == (before.st_ino, before.st_rdev,
                                                             before.st_mode)


def test_a_full_device_is_one_write_error(tmp_path):
    full = device_node(tmp_path, "full")
    with pytest.raises(WriteError) as exc:
        write_bytes(full, b"x" * 10)
    assert exc.value.errno == errno.ENOSPC
    assert str(exc.value) == f"cannot write {full}: No space left on device"


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_bytes(fifo, b"<xml/>")
    reader.join(timeout=10)
    assert received == [b"<xml/>"]
    assert fifo.is_fifo() and listing(tmp_path) == ["pipe"]


def test_stdout_redirected_to_a_file_is_appended_to_not_replaced(tmp_path):
    # /dev/fd/1 rather than /dev/stdout: the same /proc link, but code that renames
    # over its target cannot clobber the machine's /dev/stdout when this runs as root.
    log = tmp_path / "ci.log"
    log.write_text("before\n")
    inode = log.stat().st_ino
    with open(log, "a") as stdout:
        done = subprocess.run([sys.executable, "-m", "babysit", "sanity-loss", "--json",
                               "/dev/fd/1"], stdout=stdout, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path, timeout=120,
                              env=child_env())
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert log.stat().st_ino == inode and listing(tmp_path) == ["ci.log"]
    assert text.startswith("before\n") and "sanity-loss" in text       # the report is kept
    assert text.index("PASS") < text.index('"babysit": ')               # ... then the JSON


def test_logs_refuse_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    null = device_node(tmp_path, "null")
    for target in (null, fifo):
        with pytest.raises(WriteError, match="not a regular file"):
            write_hdf5(target, lambda handle: None)
    assert fifo.is_fifo() and not os.path.isfile(null)


def test_a_parent_that_is_a_file_is_named(tmp_path):
    blocker = tmp_path / "hostname"
    blocker.write_text("box\n")
    with pytest.raises(WriteError) as exc:
        write_hdf5(blocker / "r.h5", lambda handle: None)
    assert str(exc.value) == f"cannot write {blocker / 'r.h5'}: {blocker} is a file, not a directory"
    assert blocker.read_text() == "box\n"


# -- full and read-only disks (items 4 and 14) -----------------------------------------

def full_disk_after(monkeypatch, good_writes):
    """Make the next writes past ``good_writes`` fail with ENOSPC, as a full disk does."""
    calls = [0]
    real_write = atomic._write_all

    def write(handle, data):
        calls[0] += 1
        if calls[0] > good_writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(handle, data)

    monkeypatch.setattr(atomic, "_write_all", write)


def test_a_full_disk_keeps_the_last_good_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "run.h5"
    write_hdf5(target, lambda handle: handle.create_dataset("x", data=np.arange(3)))
    before = target.read_bytes()
    full_disk_after(monkeypatch, 0)
    with pytest.raises(WriteError) as exc:
        write_hdf5(target, lambda handle: handle.create_dataset("x", data=np.arange(1000)))
    assert str(exc.value) == f"cannot write {target}: No space left on device"
    assert ".tmp" not in str(exc.value)
    assert target.read_bytes() == before and listing(tmp_path) == ["run.h5"]


def test_a_read_only_directory_names_the_file_not_the_temporary(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(WriteError) as exc:
            write_bytes(tmp_path / "out.json", b"{}")
    finally:
        tmp_path.chmod(0o700)
    assert str(exc.value) == f"cannot write {tmp_path / 'out.json'}: Permission denied"


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 200 KB tmpfs (needs root and CAP_SYS_ADMIN; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_train_out_onto_a_full_tmpfs_is_one_line_and_no_temporary(tiny_tmpfs):
    from babysit.cli.app import EXIT_USAGE

    out = tiny_tmpfs / "r.h5"
    done = subprocess.run(
        [sys.executable, "-m", "babysit", "train", "--out", str(out), "-q",
         "--set", "train.epochs=2", "--set", "model.layers.0.affine.out=400"],
        capture_output=True, text=True, timeout=120,
        env=child_env())
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.splitlines() == [f"error: cannot write {out}: No space left on device"]
    assert os.listdir(tiny_tmpfs) == []


def test_a_read_only_file_system_names_the_file(tiny_tmpfs):
    (tiny_tmpfs / "r.json").write_text("old")
    done = subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")
    for target, write in ((tiny_tmpfs / "r.json", lambda p: write_bytes(p, b"{}")),
                          (tiny_tmpfs / "r.h5", lambda p: write_hdf5(p, lambda handle: None))):
        with pytest.raises(WriteError) as exc:
            write(target)
        assert str(exc.value) == f"cannot write {target}: Read-only file system"
    assert (tiny_tmpfs / "r.json").read_text() == "old"


def test_a_search_on_a_full_disk_is_one_line_and_keeps_its_last_log(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from babysit.cli import cli
    from babysit.search_store import read_search_log

    out = tmp_path / "s.h5"
    full_disk_after(monkeypatch, 2)          # the log's creation and its first stage fit
    result = CliRunner().invoke(cli, ["search", "--param", "optim.lr=log:1e-3:1e-1", "--trials",
                                      "3", "--epochs", "1", "--workers", "1", "--out", str(out),
                                      "-q"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: cannot write {out}: No space left on device"]
    log = read_search_log(out)
    assert log.status == "running" and log.trials == [] and len(log.stage_spaces) == 1
    assert listing(tmp_path) == ["s.h5"]


# -- stale temporary files (item 12) ----------------------------------------------

def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    stale = atomic.temporary_name(tmp_path / "run.h5").name.replace(f"-{os.getpid()}-",
                                                                   f"-{dead_pid()}-")
    live = atomic.temporary_name(tmp_path / "run.h5").name          # this process: in progress
    foreign = ".run.h5.0123abcd.tmp"                                # not ours
    other_host = stale.replace(atomic._HOST, "zzzzzz")              # another machine's
    for name in (stale, live, foreign, other_host):
        (tmp_path / name).write_bytes(b"half")
    assert atomic.remove_stale_temporaries(tmp_path) == [tmp_path / stale]
    assert listing(tmp_path) == sorted([live, foreign, other_host])


def test_the_next_write_removes_a_killed_writers_temporary(tmp_path):
    stale = atomic.temporary_name(tmp_path / "a.h5").name.replace(f"-{os.getpid()}-",
                                                                 f"-{dead_pid()}-")
    (tmp_path / stale).write_bytes(b"\0" * 4096)
    atomic._cleaned.discard(tmp_path)
    write_bytes(tmp_path / "b.json", b"{}")
    assert listing(tmp_path) == ["b.json"]


# -- recipe names as file names (item 10) -----------------------------------------

@pytest.mark.parametrize("name, stem", [
    ("two-layer-digits", "two-layer-digits"), ("../x", "x"), ("/etc/cron.d/x", "etc-cron.d-x"),
    ("..", "run"), (".hidden", "hidden"), ("a b\\c", "a-b-c"), ("x" * 300, "x" * 100),
    ("数" * 100, "数" * 33), ("a" * 99 + "数", "a" * 99), ("x" * 99 + "-y", "x" * 99),
])
def test_file_stem(name, stem):
    assert atomic.file_stem(name) == stem


def test_a_temporary_name_fits_the_file_system_beside_a_long_name(tmp_path):
    # a temporary name kept 100 characters of the target's: 300 bytes for CJK, so a
    # 73-character name the file system accepts (222 bytes) could not be written
    target = tmp_path / ("中" * 73 + ".h5")
    assert len(os.fsencode(atomic.temporary_name(target).name)) <= 255
    write_bytes(str(target), b"x")
    assert target.read_bytes() == b"x"


def test_a_recipe_name_cannot_move_the_default_run_log(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from babysit.cli import cli
    from babysit.diagnostics.train.trainer import default_run_path
    from babysit.recipes import load_recipe

    for name in ("../../escaped", "/tmp/absolute", "sub/dir"):
        recipe = load_recipe("two-layer-digits").with_overrides({"name": name})
        path = default_run_path(recipe)
        assert path.parent.as_posix() == "runs" and "/" not in path.name and ".." not in path.name
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    result = CliRunner().invoke(cli, ["train", "--set", "name=../../escaped", "--set",
                                      "train.epochs=1", "-q"])
    assert result.exit_code == 0, result.output
    assert listing(tmp_path) == ["a"] and listing(tmp_path / "a") == ["b"]
    (log,) = os.listdir(work / "runs")
    assert log.startswith("escaped-") and log.endswith(".h5")


def test_run_logs_round_trip_through_the_in_memory_image(tmp_path):
    from babysit.store import RunLog

    log = RunLog(recipe_yaml="name: x\n", attrs={"name": "x", "status": "finished"},
                 history={"iteration": {"loss": np.arange(5.0)}})
    log.save(tmp_path / "r.h5")
    back = read_run_log(tmp_path / "r.h5")
    np.testing.assert_array_equal(back.history["iteration"]["loss"], np.arange(5.0))
    assert back.status == "finished"


def test_missing_folders_over_a_thousand_deep_are_made_without_recursion(tmp_path):
    # Path.mkdir(parents=True) recursed once per missing level: 2,000 levels ended
    # in a RecursionError (a flood of chained tracebacks) instead of a written file
    deep = tmp_path / ("d/" * 1200 + "x.json")   # more levels than the recursion limit
    if len(str(deep)) >= os.pathconf(tmp_path, "PC_PATH_MAX"):
        pytest.skip("path too long for this file system")
    try:
        atomic.make_parents(str(deep))
        write_bytes(str(deep), b"{}")
        assert deep.read_bytes() == b"{}"
    finally:   # bottom up, one level at a time: pytest's recursive clean-up would overflow too
        folder = deep
        with contextlib.suppress(FileNotFoundError):
            deep.unlink()
        while folder.parent != tmp_path:
            folder = folder.parent
            with contextlib.suppress(OSError):
                folder.rmdir()
