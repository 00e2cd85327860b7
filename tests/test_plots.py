"""matplotlib helpers: headless backend, atomic PNG writes, clear error when missing."""

import builtins
import os

import pytest

from babysit import plots
from babysit.errors import BabysitError

pytest.importorskip("matplotlib")


def test_require_matplotlib_uses_agg():
    assert plots.require_matplotlib().get_backend().lower() == "agg"


def test_missing_matplotlib_is_a_babysit_error(monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(BabysitError, match=r"pip install 'babysit\[plot\]'"):
        plots.require_matplotlib()


def test_save_png_writes_a_deterministic_png(tmp_path):
    def draw():
        figure, ax = plots.new_figure()
        ax.plot([1e-5, 1e-3, 1e-1], [2.3, 1.0, 9.0])
        plots.label_axes(ax, "loss vs lr", "lr", "loss", logx=True)
        return figure

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plots.save_png(draw(), a)
    plots.save_png(draw(), b)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() == b.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]


def test_save_png_failure_leaves_nothing_behind(tmp_path):
    class BrokenFigure:
        def savefig(self, handle, **kwargs):
            handle.write(b"\x89PNG half")
            raise RuntimeError("renderer crashed")

    target = tmp_path / "fig.png"
    with pytest.raises(RuntimeError):
        plots.save_png(BrokenFigure(), target)
    assert os.listdir(tmp_path) == []
