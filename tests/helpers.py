"""Shared test helpers: centered-difference numerical gradients (float64)."""

import numpy as np


def numerical_gradient(f, x, h=1e-6):
    """d f() / d x for a scalar function ``f`` of the array ``x`` (perturbed in place)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        grad[idx] = (fp - fm) / (2 * h)
        it.iternext()
    return grad


def numerical_gradient_array(f, x, dout, h=1e-6):
    """Gradient of ``sum(f() * dout)`` with respect to ``x``: checks a backward(dout)."""
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def rel_error(a, b):
    """Max relative error ``|a-b| / max(|a|, |b|, 1e-8)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.maximum(np.abs(a), np.abs(b)))))


def device_node(directory, name):
    """A character device like ``/dev/<name>`` (null or full) to write outputs to.

    As root, a private node in ``directory``: code that wrongly replaces its
    target by a rename then clobbers a temporary file, not the machine's
    /dev/null. Other users cannot replace /dev entries, so they get the real one.
    """
    import os
    import stat

    import pytest

    if os.geteuid() != 0:
        return f"/dev/{name}"
    minor = {"null": 3, "full": 7}[name]
    path = os.path.join(str(directory), name)
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        with open(path, "wb"):
            pass
    except OSError as exc:  # a nodev mount, no CAP_MKNOD
        pytest.skip(f"cannot make a device node here: {exc}")
    return path


def child_env(**extra):
    """The environment for a child ``python -m babysit``: it imports the babysit this
    test process imported (the installed copy in CI, the worktree here), one BLAS thread."""
    import os
    from pathlib import Path

    import babysit

    home = str(Path(babysit.__file__).resolve().parents[1])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def one_error_line(result, *words):
    """A CLI result that exited 2 with exactly one ``error: ...`` line naming ``words``
    and no traceback; returns that line."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
