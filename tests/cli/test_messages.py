"""Clear one-line messages for the cases of issue 10 item 14 (the data ones are the data
package's): the wrong kind of log, a parent that is a file, absurd layer sizes, and NumPy
warnings that leaked to stderr."""

import subprocess
import sys

from click.testing import CliRunner

from babysit.cli import cli
from tests.helpers import child_env, device_node, one_error_line

ENV = child_env()


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "300"})


def test_resuming_a_search_log_says_what_it_is(tmp_path):
    log = tmp_path / "s.h5"
    assert run("search", "--param", "optim.lr=log:1e-3:1e-1", "--trials", 1, "--epochs", 1,
               "--workers", 1, "--out", log, "-q").exit_code == 0
    line = one_error_line(run("train", "--resume", log))
    assert f"'{log}' is a babysit search log, not a run log" in line
    assert "`babysit report`" in line and "unknown kind" not in line


def test_an_output_under_a_file_names_the_file(tmp_path):
    hostname = tmp_path / "hostname"
    hostname.write_text("box\n")
    line = one_error_line(run("train", "--out", hostname / "r.h5", "-q"))
    assert line == f"error: cannot write {hostname / 'r.h5'}: {hostname} is a file, not a directory"
    assert hostname.read_text() == "box\n"


def test_train_out_onto_a_device_is_refused_before_training(tmp_path):
    null = device_node(tmp_path, "null")
    line = one_error_line(run("train", "--out", null, "-q"))
    assert f"cannot write {null}: it is not a regular file" in line


def test_an_absurd_layer_size_says_so():
    line = one_error_line(run("sanity-loss", "--set", f"model.layers.0.affine.out={10**30}", "-q"))
    assert line.startswith("error: layer 0 (affine): weights of shape (64, 10000") and \
        "too large" in line and "Maximum allowed dimension" not in line


def test_numpy_warnings_stay_off_stderr(tmp_path):
    done = subprocess.run([sys.executable, "-m", "babysit", "sanity-loss", "--set",
                           "model.bias=1e300", "-q"], capture_output=True, text=True, env=ENV,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr          # a failing diagnosis, reported as findings
    assert "Warning" not in done.stderr and done.stderr == ""
