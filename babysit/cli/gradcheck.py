"""``babysit gradcheck [RECIPE] | --layer pkg.mod:Class --input-shape N,...``."""

from __future__ import annotations

import click
from rich import box
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fitted_tables, fmt
from babysit.cli.views.gradcheck import VERDICT_STYLES, array_rows, band_range
from babysit.diagnostics.gradcheck import DEFAULT_DATAPOINTS, DEFAULT_ENTRIES, DEFAULT_H, band
from babysit.diagnostics.gradcheck.bands import H_MAX, H_MIN


@click.command("gradcheck")
@click.argument("recipe", required=False)
@click.option("--layer", "layer", metavar="PKG.MODULE:CLASS", default=None,
              help="Check a custom layer instead of a recipe's model (importable from "
                   "PYTHONPATH or the current directory). Its module is imported and run as "
                   "code: only check layers you trust.")
@click.option("--input-shape", metavar="N,D|N,C,H,W", default=None,
              help="Input shape for --layer, batch size first (e.g. 4,10).")
@click.option("--kwargs", "kwargs_json", metavar="JSON", default=None,
              help="Constructor arguments for --layer as a JSON object, e.g. '{\"out\": 5}'.")
@click.option("--datapoints", type=click.IntRange(min=1), default=DEFAULT_DATAPOINTS,
              show_default=True, help="Training examples in the checked batch (recipe mode).")
@click.option("--entries", type=click.IntRange(min=1), default=DEFAULT_ENTRIES, show_default=True,
              help="Sampled entries per parameter (and per input).")
@click.option("--all", "all_entries", is_flag=True, help="Check every entry (slow on big models).")
@click.option("--h", "h", type=float, default=DEFAULT_H, show_default=True,
              help=f"Step of the centered differences, {H_MIN:g} .. {H_MAX:g} (outside it float64 "
                   "resolves nothing useful).")
@click.option("--burn-in", type=click.IntRange(min=0), default=0, show_default=True,
              help="Training steps before checking (recipe mode).")
@recipe_options
@output_options(plot=True)
def command(app, recipe, layer, input_shape, kwargs_json, datapoints, entries, all_entries, h,
            burn_in):
    """Compare analytic and numerical gradients (float64, centered differences).

    Checks sampled entries of every parameter, of the input and of every
    layer's input (which localizes a wrong backward), the data loss with reg=0
    first, then the L2 term alone. Relative error > 1e-2 fails, 1e-4..1e-2
    warns (fails for kink-free models), < 1e-7 is excellent. Entries whose
    x+h and x-h fall on different sides of a ReLU/max kink are reported and
    excluded.
    """
    from babysit.diagnostics.gradcheck import gradcheck_layer, gradcheck_recipe

    if layer is not None:
        if recipe is not None or app.options.sets:
            app.abort("give either a RECIPE (with --set) or --layer, not both")
        if input_shape is None:
            app.abort("--layer needs --input-shape (batch size first, e.g. --input-shape 4,10)")
        result = gradcheck_layer(layer, kwargs_json, input_shape, app.options.seed or 0,
                                 entries=entries, all_entries=all_entries, h=h)
    else:
        if input_shape is not None or kwargs_json is not None:
            app.abort("--input-shape and --kwargs go with --layer")
        spec = app.load_recipe(recipe)
        result = gradcheck_recipe(spec, datapoints=datapoints, entries=entries,
                                  all_entries=all_entries, h=h, burn_in_steps=burn_in)
    return app.emit(result, render, plot=figure)


def render(console, result) -> None:
    m = result.metrics
    if "params" not in m:  # the loss was not finite: nothing was checked
        return
    target = f"layer {m['layer']} on input {tuple(m['input_shape'])}" if "layer" in m else \
        f"{result.recipe}, {m['datapoints']} datapoints" + \
        (f" after {m['burn_in']} burn-in steps" if m.get("burn_in") else "")
    console.print(Text(f"gradcheck: {target}, seed {result.seed}: float64, h {fmt(m['h'])}, "
                       f"{m['entries']} entries per array", style="bold"))
    columns = [("gradient of", "left"), ("entries", "right"), ("judged\nerror", "right"),
               ("verdict (band)", "left"), ("rel error\n(textbook)", "right"),
               ("analytic", "right"), ("numerical", "right"), ("kinks", "right")]
    arrays = array_rows(m)
    crossed = any(row["kinks"] for _, _, row in arrays)
    if not crossed:  # a column of zeros says nothing: fewer columns fit narrow terminals
        columns.pop()
    rows = []
    for label, _, row in arrays:
        judged = row["judged_rel_error"]
        verdict = band(judged, m["has_kinks"]) if judged is not None else "not judged"
        cell = Text(verdict, style=VERDICT_STYLES.get(verdict, "dim"))
        if verdict in VERDICT_STYLES:
            cell.append(f" ({band_range(verdict, m['has_kinks'])})", style="dim")
        rows.append([label, str(row["checked"]), fmt(judged), cell, fmt(row["max_rel_error"]),
                     fmt(row["analytic"], 4), fmt(row["numerical"], 4)]
                    + ([str(row["kinks"])] if crossed else []))
    for table in fitted_tables(columns, rows, console.width, keep=1,
                               title="Analytic vs numerical gradients", box=box.SIMPLE_HEAD,
                               pad_edge=False):
        console.print(table)
    console.print(Text("judged error: what the verdict's bands see, the part of |a-n| beyond "
                       "float64's resolution of the numerical estimate, over max(|a|,|n|), for "
                       "the worst entry; rel error (textbook): |a-n|/max(|a|,|n|) of the worst "
                       "entry, whose analytic and numerical values follow", style="dim"))


def figure(result):
    """The PNG: each array's judged error against the bands (None when nothing was checked)."""
    from babysit.cli.views.panels import draw_gradcheck
    from babysit.plots import new_figure

    m = result.metrics
    if "params" not in m:
        return None
    rows = len(array_rows(m))
    fig, ax = new_figure(width=8, height=max(3.0, 1.2 + 0.3 * rows))
    draw_gradcheck(ax, m)
    fig.suptitle(f"gradcheck: {result.recipe}: {result.status.upper()}", fontweight="bold")
    return fig
