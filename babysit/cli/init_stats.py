"""``babysit init-stats [RECIPE]``: per-layer activations and gradients at initialization."""

from __future__ import annotations

import click
from rich import box
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import (STATUS_STYLES, fitted_tables, findings_view, fmt, histogram_line,
                                 percent, sparkline)
from babysit.errors import BabysitError


def parse_compare(text: str | None) -> list | None:
    """``"xavier,he,small,normal:1.0"`` -> ``["xavier", "he", "small", {"normal": 1.0}]``.

    An item ``name:std`` (or ``{name: std}``) is an init with a scale.
    """
    if text is None:
        return None
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise BabysitError(f"--compare: empty init name in {text!r} (e.g. xavier,he,small)")
        body = item.strip("{} ")
        if ":" in body:
            name, _, value = body.partition(":")
            try:
                specs.append({name.strip(): float(value)})
            except ValueError:
                raise BabysitError(f"--compare: {item!r} needs a number after ':' "
                                   "(e.g. normal:1.0)") from None
        else:
            specs.append(body)
    return specs


@click.command("init-stats")
@click.argument("recipe", required=False)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Examples in the batch pushed through the model (at most the training set).")
@click.option("--compare", metavar="INIT,INIT,...", default=None,
              help="Also measure these inits side by side (replacing model.init), e.g. "
                   "xavier,he,small,normal:1.0.")
@recipe_options
@output_options(plot=True)
def command(app, recipe, batch_size, compare):
    """One batch through the model at init: per layer mean, std, saturation, dead
    ReLUs, gradient norm and a histogram.

    Fails when activations collapse, saturate, die or explode, or gradients
    vanish or explode on the way back. The lecture's experiment:
    `babysit init-stats deep-tanh-init --compare xavier,small,normal:1.0`.
    """
    from babysit.diagnostics.init_stats import init_stats

    specs = parse_compare(compare)
    spec = app.load_recipe(recipe)
    result = init_stats(spec, batch_size=batch_size, compare=specs)
    return app.emit(result, render, plot=figure)


# -- rendering ----------------------------------------------------------------

def layers_tables(rows: list, title: str, width: int) -> list:
    """Per layer: mean, std, std ratio, near 0, saturated, dead, gradient norm (fits ``width``)."""
    columns = [("layer", "left"), ("mean", "right"), ("std", "right"), ("std\nratio", "right"),
               ("near\n0", "right"), ("satu-\nrated", "right"), ("dead", "right"),
               ("grad\nnorm", "right")]
    cells = [[row["layer"], fmt(row["mean"]), fmt(row["std"]), fmt(row.get("std_ratio")),
              percent(row["near_zero"]), _flag(row["saturated"], 0.10), _flag(row["dead"], 0.20),
              fmt(row["grad_norm"])] for row in rows]
    return fitted_tables(columns, cells, width, keep=1, title=title, box=box.SIMPLE_HEAD,
                         pad_edge=False)


def histograms(rows: list) -> Text:
    """One line per layer: ``name  lo ▁▃█▅▂ hi`` (the lecture's per-layer histograms)."""
    width = max((len(row["layer"]) for row in rows), default=0)
    text = Text("Histograms of the layer outputs\n", style="bold")
    for row in rows:
        hist = row.get("histogram")
        if hist:
            text.append("  " + row["layer"].ljust(width) + "  ")
            text.append_text(histogram_line(hist["counts"], hist["edges"]))
            text.append("\n")
    return text


def _flag(fraction, warn: float):
    if fraction is None:
        return Text("-", style="dim")
    return Text(percent(fraction), style="bold red" if fraction > warn else "")


def compare_runs(metrics: dict) -> list[dict]:
    """The compared inits, led by the recipe's own when it is not among them."""
    runs = list(metrics.get("compare") or [])
    if metrics["init"] not in [run["init"] for run in runs]:
        runs.insert(0, {"init": metrics["init"] + " (recipe)", "layers": metrics["layers"],
                        "findings": None, "status": None})
    return runs


def compare_tables(metrics: dict, width: int) -> list:
    """Std per hidden activation, one column per init: the lecture's side-by-side table.

    Each cell is the std and a histogram sparkline, as many bins (4..12) as
    ``width`` leaves room for; inits that still do not fit go to a second table.
    """
    from babysit.diagnostics.init_stats import activation_rows

    runs = compare_runs(metrics)
    shown = activation_rows(metrics["layers"])
    label_width = max([len("status")] + [len(metrics["layers"][i]["layer"]) for i in shown])
    # layer column + per init: std (8) + space + bins, 3 columns of padding each
    bins = max(4, min(12, (width - label_width - 4) // max(1, len(runs)) - 12))
    columns = [("layer", "left")] + [(run["init"], "left") for run in runs]
    rows = []
    for i in shown:
        cells = [metrics["layers"][i]["layer"]]
        for run in runs:
            row = run["layers"][i]
            cell = Text(fmt(row["std"]).rjust(8) + " ")
            if row.get("histogram"):
                cell.append(sparkline(rebin(row["histogram"]["counts"], bins)), style="cyan")
            cells.append(cell)
        rows.append(cells)
    rows.append([Text("status", style="bold")] + [
        Text(run["status"].upper(), style=STATUS_STYLES[run["status"]]) if run["status"] else Text("")
        for run in runs])
    return fitted_tables(columns, rows, width, keep=1, box=box.SIMPLE_HEAD, pad_edge=False,
                         title="Std per layer by init (with histogram)")


def rebin(counts, bins: int) -> list:
    """Sum neighbouring histogram bins down to at most ``bins`` (for narrow columns)."""
    counts = list(counts)
    group = max(1, -(-len(counts) // bins))
    return [sum(counts[i:i + group]) for i in range(0, len(counts), group)]


def compare_findings(metrics: dict) -> list:
    """(init label, Finding) pairs of the compared inits, for the shared findings table."""
    from babysit.diagnostics.result import Finding

    pairs = []
    for run in metrics.get("compare") or []:
        for f in run["findings"]:
            pairs.append((run["init"], Finding(f["code"], f["severity"], f["message"], f["fix"],
                                               f["layer"], f["evidence"])))
    return pairs


def render(console, result) -> None:
    m = result.metrics
    console.print(Text(f"init-stats: {result.recipe}, seed {result.seed}, batch of "
                       f"{m['batch_size']} examples, input std {fmt(m['input_std'])}", style="bold"))
    for table in layers_tables(m["layers"], f"Layer outputs at init ({m['init']})", console.width):
        console.print(table)
    console.print(histograms(m["layers"]))
    if m.get("compare"):
        for table in compare_tables(m, console.width):
            console.print(table)
        pairs = compare_findings(m)
        if pairs:
            console.print(findings_view(pairs, console.width,
                                        title="Findings of the compared inits "
                                              "(informative: they do not set the status)"))


# -- PNG ------------------------------------------------------------------------

HISTOGRAMS = 10  # histograms per init in the PNG (evenly spaced over the activation layers)
INIT_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def figure(result):
    """The lecture's figure, readable at normal size.

    Top row, every init as one line: std of each layer output and gradient norm
    of each layer (log scales, layers named on the x axis as in the tables),
    and the mean. Then one row per init: histograms of the hidden activations
    (at most ``HISTOGRAMS``, evenly spaced), titled with init and layer.
    """
    from babysit.cli.views.panels import draw_layer_scale, layer_positions
    from babysit.diagnostics.init_stats import activation_rows
    from babysit.plots import label_axes, new_canvas

    m = result.metrics
    runs = [(run["init"], run["layers"]) for run in compare_runs(m)]
    shown = activation_rows(m["layers"])
    if len(shown) > HISTOGRAMS:
        step = (len(shown) - 1) / (HISTOGRAMS - 1)
        shown = [shown[round(k * step)] for k in range(HISTOGRAMS)]
    columns = max(3, len(shown))
    fig = new_canvas(width=max(13.0, 1.7 * columns), height=4.2 + 2.0 * len(runs))
    grid = fig.add_gridspec(1 + len(runs), columns, height_ratios=[2.2] + [1.0] * len(runs))
    thirds = [grid[0, round(k * columns / 3):round((k + 1) * columns / 3)] for k in range(3)]
    std_ax, grad_ax, mean_ax = (fig.add_subplot(cell) for cell in thirds)
    for index, (label, layers) in enumerate(runs):
        colour = INIT_COLOURS[index % len(INIT_COLOURS)]
        draw_layer_scale(std_ax, layers, label, key="std", colour=colour)
        draw_layer_scale(grad_ax, layers, label, key="grad_norm", colour=colour)
        x, names = layer_positions(layers)
        mean_ax.plot(x, [row["mean"] for row in layers], "o-", color=colour, label=label)
        mean_ax.set_xticks(x, names, rotation=45 if len(names) > 4 else 0,
                           ha="right" if len(names) > 4 else "center", fontsize=8)
    label_axes(std_ax, "std of each layer's output", "", "std (log)")
    label_axes(grad_ax, "gradient norm at each layer", "", "gradient norm (log)")
    label_axes(mean_ax, "mean of each layer's output", "", "mean")
    std_ax.legend(fontsize="small")
    for r, (label, layers) in enumerate(runs, start=1):
        for c, i in enumerate(shown):
            ax = fig.add_subplot(grid[r, c])
            hist = layers[i].get("histogram")
            if hist:
                ax.stairs(hist["counts"], hist["edges"], fill=True,
                          color=INIT_COLOURS[(r - 1) % len(INIT_COLOURS)])
            ax.set_title(f"{label}: {layers[i]['layer']}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.set_yticks([])
    fig.suptitle(f"init-stats: {result.recipe}, batch of {m['batch_size']}: "
                 f"{result.status.upper()} (recipe's init {m['init']})", fontweight="bold")
    return fig
