"""PNG figures with matplotlib (the optional ``plot`` extra).

Each command draws its own figure; this module only makes matplotlib available
headless and saves figures atomically. Figures are built with
``matplotlib.figure.Figure`` directly (no pyplot): no global figure registry to
leak memory across a long search and no GUI backend to pick.
"""

from __future__ import annotations

from babysit.atomic import write_bytes
from babysit.errors import BabysitError

MISSING = "--plot needs matplotlib: pip install 'babysit[plot]'"


def require_matplotlib():
    """Import matplotlib on the Agg backend, or raise a BabysitError saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise BabysitError(MISSING) from None
    # Agg renders without a display (CI machines, ssh sessions).
    matplotlib.use("Agg", force=True)
    return matplotlib


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 7.0, height: float = 4.0):
    """(figure, axes) without pyplot; axes is one Axes or an array like subplots()."""
    require_matplotlib()
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), constrained_layout=True)
    return figure, figure.subplots(nrows, ncols, squeeze=True)


def new_canvas(width: float = 7.0, height: float = 4.0):
    """An empty figure without pyplot, for layouts ``new_figure``'s grid cannot give
    (``figure.add_gridspec``)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), constrained_layout=True)


def label_axes(ax, title: str = "", xlabel: str = "", ylabel: str = "",
               logx: bool = False, logy: bool = False) -> None:
    """Title, axis labels, log scales and a light grid: the house style."""
    if title:
        ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)


def save_png(figure, path) -> None:
    """Write ``figure`` as PNG to ``path`` atomically (see :mod:`babysit.atomic`)."""
    import io

    image = io.BytesIO()
    # No "Software" stamp: the same figure gives the same bytes.
    figure.savefig(image, format="png", dpi=100, metadata={"Software": None})
    write_bytes(path, image.getbuffer())
