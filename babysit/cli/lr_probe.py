"""``babysit lr-probe [RECIPE]``: the learning-rate range, and whether the recipe's LR is in it."""

from __future__ import annotations

import math

import click
from rich import box
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fitted_tables, fmt, line_plot
from babysit.diagnostics.lr_probe import (DEFAULT_EVAL_EVERY, DEFAULT_EVAL_EXAMPLES, DEFAULT_LR_MAX,
                                          DEFAULT_LR_MIN, DEFAULT_PER_DECADE, same_lr)

VERDICT_STYLES = {"good": "green", "too_low": "cyan", "unstable": "yellow", "too_high": "bold red"}
SWEEP_ROWS = 24  # rows of the sweep table (the run has a point per step)


@click.command("lr-probe")
@click.argument("recipe", required=False)
@click.option("--mode", type=click.Choice(["grid", "sweep"]), default="grid", show_default=True,
              help="grid: short runs at log-spaced LRs; sweep: one LR range test.")
@click.option("--lr-min", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LR_MIN,
              show_default=True, help="Smallest LR probed.")
@click.option("--lr-max", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LR_MAX,
              show_default=True, help="Largest LR probed.")
@click.option("--per-decade", type=click.IntRange(min=1), default=DEFAULT_PER_DECADE,
              show_default=True, help="Grid points per decade of LR.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps per LR (grid, default 100) or in the sweep (default 200).")
@click.option("--eval-every", type=click.IntRange(min=1), default=DEFAULT_EVAL_EVERY,
              show_default=True, help="Steps between evaluations on the fixed batch (grid).")
@click.option("--eval-examples", type=click.IntRange(min=1), default=DEFAULT_EVAL_EXAMPLES,
              show_default=True, help="Training examples in the fixed evaluation batch (grid).")
@recipe_options
@output_options(plot=True)
def command(app, recipe, mode, lr_min, lr_max, per_decade, steps, eval_every, eval_examples):
    """Find the learning-rate range with the recipe's update rule and L2 strength.

    grid: every LR trains a fresh copy of the model from the same init on the
    same batches for a short budget, judged on a fixed evaluation batch: too
    low (falls < 1%), good, unstable (falls then rises) or too high (NaN or
    > 3x its start). sweep: an LR range test, the LR growing exponentially in
    one run until the smoothed loss diverges. Fails unless the recipe's own LR
    is inside the good range.
    """
    from babysit.cli.progress import StepDisplay
    from babysit.diagnostics.lr_probe import lr_probe

    spec = app.load_recipe(recipe)
    with StepDisplay(app, "lr-probe") as show:
        result = lr_probe(spec, mode=mode, lr_min=lr_min, lr_max=lr_max, per_decade=per_decade,
                          steps=steps, eval_every=eval_every, eval_examples=eval_examples,
                          progress=show)
    return app.emit(result, render, plot=figure)


def _marks(m, lr: float) -> str:
    marks = []
    if same_lr(lr, m["recipe_lr"]):
        marks.append("recipe")
    if m["suggested_lr"] is not None and same_lr(lr, m["suggested_lr"]):
        marks.append("suggested")
    return ", ".join(marks)


def _sweep_rows(trials: list) -> list:
    step = max(1, math.ceil(len(trials) / SWEEP_ROWS))
    rows = trials[::step]
    if rows[-1] is not trials[-1]:
        rows.append(trials[-1])
    return rows


def render(console, result) -> None:
    m = result.metrics
    console.print(Text(f"lr-probe ({m['mode']}): {result.recipe}, seed {result.seed}: "
                       f"{m['update']}, reg {fmt(m['reg_used'])}, batch {m['batch_size']}, "
                       f"{m['steps']} steps" + (" per LR" if m["mode"] == "grid" else ""),
                       style="bold"))
    trials = m["trials"] if m["mode"] == "grid" else _sweep_rows(m["trials"])
    # Every grid LR starts from the same weights on the same batch: one start, said once.
    starts = {fmt(t["loss_start"], 4) for t in trials}
    shared_start = len(starts) == 1
    columns = [("lr", "right"), ("verdict", "left")]
    columns += [] if shared_start else [("loss\nstart", "right")]
    columns += [("loss\nend", "right")]
    columns += [("lowest", "right"), ("steps", "right")] if m["mode"] == "grid" \
        else [("raw\nloss", "right")]
    rows = []
    for t in trials:
        verdict = Text(t["verdict"], style=VERDICT_STYLES[t["verdict"]])
        marks = _marks(m, t["lr"])
        if marks:
            verdict.append(f" ({marks})", style="bold")
        row = [fmt(t["lr"]), verdict]
        row += [] if shared_start else [fmt(t["loss_start"], 4)]
        row += [fmt(t["loss_end"], 4)]
        row += [fmt(t["loss_min"], 4), str(t["steps"])] if m["mode"] == "grid" else [fmt(t["loss"], 4)]
        rows.append(row)
    title = "Learning rates" + (f" (loss at the start: {starts.pop()})" if shared_start else "")
    for table in fitted_tables(columns, rows, console.width, keep=1, title=title,
                               box=box.SIMPLE_HEAD, pad_edge=False):
        console.print(table)
    console.print(terminal_plot(m, width=min(72, console.width)))
    good = m["good_range"]
    line = Text("good range: ", style="bold")
    line.append(f"{fmt(good[0])} .. {fmt(good[1])}" if good else "none", style="green" if good else "red")
    line.append(f"   suggested lr: {fmt(m['suggested_lr'])}   recipe lr: {fmt(m['recipe_lr'])}")
    console.print(line)


def _series(m):
    """(lrs, losses) to draw: the final eval loss per LR (grid) or the smoothed loss (sweep)."""
    trials = m["trials"]
    return [t["lr"] for t in trials], [t["loss_end"] for t in trials]


def terminal_plot(m, width: int = 72) -> Text:
    lrs, losses = _series(m)
    start = m["trials"][0]["loss_start"] if m["trials"] else 1.0
    finite = [v for v in losses if isinstance(v, (int, float)) and math.isfinite(v)]
    top = min(max(finite, default=1.0), 3 * start) if isinstance(start, (int, float)) else None
    label = "final loss" if m["mode"] == "grid" else "smoothed loss"
    return line_plot({label: (lrs, losses)}, width=width, logx=True, xlabel="learning rate",
                     title=f"{label} vs learning rate (clipped at 3x the start)",
                     ylim=(0.0, top) if top else None)


def figure(result):
    """The PNG: loss vs LR, verdicts coloured, the good range shaded, recipe/suggested marked."""
    from babysit.cli.views.panels import draw_lr_probe
    from babysit.plots import new_figure

    m = result.metrics
    fig, ax = new_figure()
    draw_lr_probe(ax, m, title=f"lr-probe ({m['mode']}, {m['update']}): {result.recipe}")
    return fig
