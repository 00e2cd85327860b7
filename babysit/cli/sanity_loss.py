"""``babysit sanity-loss [RECIPE]``: the loss at initialization, and that reg raises it."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fmt, metrics_table, percent
from babysit.diagnostics.sanity import DEFAULT_EXAMPLES, DEFAULT_TOLERANCE, allowed_deviation


@click.command("sanity-loss")
@click.argument("recipe", required=False)
@click.option("--examples", type=click.IntRange(min=1), default=DEFAULT_EXAMPLES, show_default=True,
              help="Training examples in the evaluation batch.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TOLERANCE,
              show_default=True,
              help="Allowed relative deviation of the initial loss from the loss the init's own "
                   "scores give (plus the share scores of that spread line up with labels by chance).")
@click.option("--reg", "reg", type=click.FloatRange(min=0, min_open=True), default=None,
              help="L2 strength for the 'loss rises with reg' check "
                   "(default: large enough to dominate the loss).")
@recipe_options
@output_options(plot=True)
def command(app, recipe, examples, tolerance, reg):
    """Check the loss at initialization with reg=0.

    Softmax should start at ln C and the multiclass SVM at C - 1 (small weights:
    every class scores about the same). Also checks that scores are small,
    predictions near uniform, hidden units not identical (zero init), and that
    cranking the L2 strength up makes the loss rise.
    """
    from babysit.diagnostics.sanity import sanity_loss

    spec = app.load_recipe(recipe)
    result = sanity_loss(spec, examples=examples, tolerance=tolerance, reg=reg)
    return app.emit(result, render, plot=figure)


def render(console, result) -> None:
    m = result.metrics
    console.print(Text(f"sanity-loss: {result.recipe}, seed {result.seed}: {m['examples']} "
                       f"training examples, {m['loss_kind']} loss, {m['num_classes']} classes",
                       style="bold"))
    expected_text = "ln C" if m["loss_kind"] == "softmax" else "C - 1"
    console.print(metrics_table([
        ("initial loss (reg=0)", fmt(m["initial_loss"], 4)),
        (f"expected ({expected_text})", fmt(m["expected_loss"], 4)),
        ("loss the init's scores give", fmt(m["given_scores"], 4) if m["given_scores"] is not None else "-"),
        ("deviation from it", f"{percent(m['deviation'])} (allowed "
         f"{percent(allowed_deviation(m['tolerance'], m['score_spread'], m['given_scores']))}: "
         f"tolerance {percent(m['tolerance'])} + score spread)"
         if m["deviation"] is not None else "-"),
        ("score spread per example", fmt(m["score_spread"])),
        ("largest class share", f"{percent(m['max_class_share'])} "
                                f"(uniform {percent(1 / m['num_classes'])})"
         if m["max_class_share"] is not None else "-"),
        (f"loss with reg={fmt(m['reg_used'])}", fmt(m["loss_with_reg"], 4)),
    ], title="Initial loss"))
    if m["layers"]:
        table = Table(title="Activation scale at init", title_justify="left")
        table.add_column("layer", no_wrap=True)
        table.add_column("rms", justify="right")
        table.add_column("gain", justify="right")
        table.add_row("input", fmt(m["input_rms"]), "-")
        for row in m["layers"]:
            table.add_row(row["layer"], fmt(row["rms"]), fmt(row["gain"]))
        console.print(table)


def figure(result):
    """The PNG: the loss at init against its expected value, and the activation scale per layer."""
    from babysit.cli.views.panels import draw_layer_scale, draw_sanity
    from babysit.plots import label_axes, new_figure

    m = result.metrics
    fig, (loss_ax, scale_ax) = new_figure(1, 2, width=11, height=4.2)
    draw_sanity(loss_ax, m)
    layers = [{"layer": "input", "rms": m["input_rms"]}] + list(m["layers"])
    draw_layer_scale(scale_ax, layers, key="rms", colour="tab:blue")
    label_axes(scale_ax, "activation scale at init", "", "rms of the output")
    fig.suptitle(f"sanity-loss: {result.recipe}: {result.status.upper()}", fontweight="bold")
    return fig
