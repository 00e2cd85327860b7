"""``babysit gradcheck [RECIPE] | --layer pkg.mod:Class --input-shape N,...``."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fmt
from babysit.diagnostics.gradcheck import (DEFAULT_DATAPOINTS, DEFAULT_ENTRIES, DEFAULT_H, band)

VERDICT_STYLES = {"excellent": "green", "good": "green", "suspicious": "yellow", "fail": "bold red"}


@click.command("gradcheck")
@click.argument("recipe", required=False)
@click.option("--layer", "layer", metavar="PKG.MODULE:CLASS", default=None,
              help="Check a custom layer instead of a recipe's model (importable from "
                   "the current directory or PYTHONPATH).")
@click.option("--input-shape", metavar="N,D|N,C,H,W", default=None,
              help="Input shape for --layer, batch size first (e.g. 4,10).")
@click.option("--kwargs", "kwargs_json", metavar="JSON", default=None,
              help="Constructor arguments for --layer as a JSON object, e.g. '{\"out\": 5}'.")
@click.option("--datapoints", type=click.IntRange(min=1), default=DEFAULT_DATAPOINTS,
              show_default=True, help="Training examples in the checked batch (recipe mode).")
@click.option("--entries", type=click.IntRange(min=1), default=DEFAULT_ENTRIES, show_default=True,
              help="Sampled entries per parameter (and per input).")
@click.option("--all", "all_entries", is_flag=True, help="Check every entry (slow on big models).")
@click.option("--h", "h", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_H,
              show_default=True, help="Step of the centered differences.")
@click.option("--burn-in", type=click.IntRange(min=0), default=0, show_default=True,
              help="Training steps before checking (recipe mode).")
@recipe_options
@output_options(plot=False)
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
    return app.emit(result, render)


def _position(name: str, order: dict) -> int:
    """The layer position of a layer or parameter name: the engine's names lead with it
    (``2.W``); a torch model's are module paths, placed by ``order`` (layer -> position,
    the order of the layer-input checks; a parameter's layer is its path's head)."""
    head = name.split(".", 1)[0]
    if head.isdigit():
        return int(head)
    return order.get(name, order.get(name.rpartition(".")[0], 0))


def _rows(metrics):
    """(label, check, metrics of one array): layer by layer, each layer's input check
    right before its parameters, then the L2 term."""
    rows = []
    order = {layer: i + 1 for i, layer in enumerate(metrics.get("layer_inputs") or {})}
    if metrics.get("input"):
        rows.append(((0, 0), "input", "input", metrics["input"]))
    for layer, row in (metrics.get("layer_inputs") or {}).items():
        rows.append(((_position(layer, order), 0), f"{layer} input", "input", row))
    for name, row in (metrics.get("params") or {}).items():
        rows.append(((_position(name, order), 1), name, "param", row))
    rows.sort(key=lambda r: r[0])  # stable: parameters keep their order within a layer
    rows += [((0, 2), f"{name} (L2 term)", "L2 term", row)
             for name, row in (metrics.get("reg") or {}).items()]
    return [r[1:] for r in rows]


def render(console, result) -> None:
    m = result.metrics
    if "params" not in m:  # the loss was not finite: nothing was checked
        return
    target = f"layer {m['layer']} on input {tuple(m['input_shape'])}" if "layer" in m else \
        f"{result.recipe}, {m['datapoints']} datapoints" + \
        (f" after {m['burn_in']} burn-in steps" if m.get("burn_in") else "")
    console.print(Text(f"gradcheck: {target}, seed {result.seed}: float64, h {fmt(m['h'])}, "
                       f"{m['entries']} entries per array", style="bold"))
    table = Table(title="Analytic vs numerical gradients", title_justify="left")
    for column, justify in (("gradient of", "left"), ("entries", "right"),
                            ("max rel err", "right"), ("analytic", "right"),
                            ("numerical", "right"), ("kinks", "right"), ("verdict", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    for label, _, row in _rows(m):
        verdict = band(row["judged_rel_error"], m["has_kinks"]) if row["judged_rel_error"] is not None \
            else "not judged"
        table.add_row(label, str(row["checked"]), fmt(row["max_rel_error"]),
                      fmt(row["analytic"], 4), fmt(row["numerical"], 4), str(row["kinks"]),
                      Text(verdict, style=VERDICT_STYLES.get(verdict, "dim")))
    console.print(table)
    console.print(Text("max rel err: |a-n|/max(|a|,|n|) of the worst entry (analytic/numerical "
                       "columns); the verdict judges the part of |a-n| beyond float64's "
                       "resolution of the numerical estimate", style="dim"))
