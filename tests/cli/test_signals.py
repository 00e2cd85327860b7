"""Signals end babysit cleanly (issue 10 items 5 and 11): SIGTERM is Ctrl-C, exit 130 with
one line at any moment, and no search worker or resource tracker outlives the parent.

These run the real console entry point (``python -m babysit``) in a child process.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from babysit.search_store import read_search_log
from tests.helpers import child_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

LR = "optim.lr=log:1e-4:1e-1"
ENV = child_env()


def babysit(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "babysit", *map(str, args)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def catches(pid: int, signum: int) -> bool:
    """True once process ``pid`` has a handler for ``signum`` (its SigCgt mask)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except FileNotFoundError:
        pass
    return False


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def workers_started(pid: int) -> bool:
    """Both pool workers of search ``pid`` exist (a worker whose parent is already gone
    when it starts ends at once too)."""
    workers = 0
    for child in children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                workers += b"spawn_main" in cmdline.read()
        except FileNotFoundError:
            pass
    return workers == 2


def wait_until(condition, timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def finish(process, timeout=60):
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def kill_all(process, helpers):
    """Leave nothing behind, whatever the test saw (orphans would hold our pipes open)."""
    for pid in [process.pid] + helpers:
        if running(pid):
            os.kill(pid, signal.SIGKILL)
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_first_moments_is_exit_130_with_one_line(tmp_path, signum):
    out = tmp_path / "run.h5"
    process = babysit("train", "--out", out, "--set", "train.epochs=100000", "-q", cwd=tmp_path)
    # As soon as babysit handles SIGTERM at all: while its imports are still running.
    assert wait_until(lambda: catches(process.pid, signal.SIGTERM), timeout=30)
    process.send_signal(signum)
    _, stderr = finish(process)
    assert process.returncode == 130, stderr
    assert stderr == "interrupted\n"
    assert not out.exists() and os.listdir(tmp_path) == []


@contextlib.contextmanager
def pool_search(tmp_path):
    """A 2-worker search writing ``s.h5`` once its workers run: ``(process, helpers, log path)``.

    ``helpers`` are the two workers and multiprocessing's resource tracker;
    whatever is still alive when the block ends is killed.
    """
    out = tmp_path / "s.h5"
    process = babysit("search", "--param", LR, "--trials", 500, "--epochs", 2, "--workers", 2,
                      "--out", out, "-q", cwd=tmp_path)
    helpers = []
    try:
        assert wait_until(lambda: workers_started(process.pid), timeout=90, step=0.05)
        helpers.extend(children(process.pid))
        yield process, helpers, out
    finally:
        kill_all(process, helpers)


def test_sigterm_stops_a_pool_search_like_ctrl_c_and_leaves_no_process(tmp_path):
    with pool_search(tmp_path) as (process, helpers, out):
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert time.monotonic() - start < 15
        # inside the block: leaving it kills whatever is left, which would hide orphans
        assert wait_until(lambda: not any(running(pid) for pid in helpers), timeout=10, step=0.1), \
            [pid for pid in helpers if running(pid)]
    assert process.returncode == 130, stderr
    assert stderr.startswith("interrupted: ") and "finished trial(s) kept in" in stderr
    # the pool shuts itself down: ending its workers or resource tracker under it at exit
    # printed tracebacks and "resources might leak"
    assert "Traceback" not in stderr and "leak" not in stderr, stderr
    log = read_search_log(out)
    assert log.status == "interrupted" and len(log.trials) < 500


def test_kill_9_of_a_search_takes_its_workers_with_it(tmp_path):
    with pool_search(tmp_path) as (process, helpers, _):
        process.kill()
        process.wait(timeout=30)
        # the workers notice within a fraction of a second, then the tracker sees its pipe close
        assert wait_until(lambda: not any(running(pid) for pid in helpers), timeout=15, step=0.1), \
            [pid for pid in helpers if running(pid)]


def test_after_the_command_a_late_signal_cannot_change_the_exit_code(tmp_path):
    # Python's finalization puts the default actions back; a SIGTERM in those last
    # milliseconds (a CI runner's, right after a Ctrl-C) made the exit 143, not the
    # 130 already chosen. interrupts.finish ignores both signals from then on.
    script = ("import atexit, signal, sys\n"
              "from babysit import interrupts\n"
              "interrupts.install()\n"
              "atexit.register(lambda: print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN,\n"
              "                              signal.getsignal(signal.SIGINT) is signal.SIG_IGN))\n"
              "interrupts.finish(130)\n")
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 130 and done.stdout.split() == ["True", "True"], done.stderr


def test_threads_and_processes_a_custom_layer_leaves_do_not_outlive_the_command(tmp_path):
    (tmp_path / "leaky.py").write_text(
        "import subprocess, threading, time\n"
        "from babysit.engine.base import Layer\n"
        "class Leaky(Layer):\n"
        "    started = False\n"
        "    def forward(self, x, train):\n"
        "        if not Leaky.started:\n"
        "            Leaky.started = True\n"
        "            threading.Thread(target=time.sleep, args=(1000,)).start()   # not a daemon\n"
        "            subprocess.Popen(['sleep', '1000'])\n"
        "            subprocess.Popen(['sh', '-c', 'sleep 1000 & echo $! > grandchild.pid; wait; echo'])\n"
        "        return x\n"
        "    def backward(self, dout):\n"
        "        return dout\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), ENV.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "babysit", "gradcheck", "--set",
                                "model.layers.1={custom: leaky:Leaky}", "--json", "out.json", "-q"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    helpers = []
    try:
        wait_until(lambda: helpers.extend(children(process.pid)) or process.poll() is not None, 60)
        out, err = finish(process)
        assert process.returncode == 0, err              # it ended: no wait on the thread
        assert '"status": "pass"' in (tmp_path / "out.json").read_text()
        assert helpers and not any(running(pid) for pid in set(helpers))   # its child was ended
        grandchild = int((tmp_path / "grandchild.pid").read_text())     # and the shell's child too
        assert wait_until(lambda: not running(grandchild), 5)
        helpers.append(grandchild)
    finally:
        kill_all(process, helpers)
