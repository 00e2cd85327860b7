"""``babysit lr-probe [RECIPE]``: the learning-rate range, and whether the recipe's LR is in it."""

from __future__ import annotations

import math

import click
from rich import box
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fitted_tables, fmt, line_plot
from babysit.diagnostics.lr_probe import (DEFAULT_EVAL_EXAMPLES, DEFAULT_LR_MAX, DEFAULT_LR_MIN,
                                          DEFAULT_PER_DECADE, DEFAULT_SWEEP_STEPS, MAX_STEPS,
                                          MIN_STEPS, same_lr)

VERDICT_STYLES = {"good": "green", "too_low": "cyan", "unstable": "yellow", "too_high": "bold red"}


@click.command("lr-probe")
@click.argument("recipe", required=False)
@click.option("--mode", type=click.Choice(["grid", "sweep"]), default="grid", show_default=True,
              help="grid: short runs walked over a log lattice of LRs; sweep: one LR range "
                   "test plus short runs at the recipe's LR and the suggestion (cheaper).")
@click.option("--lr-min", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LR_MIN,
              show_default=True, help="Smallest LR probed.")
@click.option("--lr-max", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LR_MAX,
              show_default=True, help="Largest LR probed.")
@click.option("--per-decade", type=click.IntRange(min=1), default=DEFAULT_PER_DECADE,
              show_default=True, help="Lattice points per decade of LR (grid).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Steps of each short run [default: half the recipe's training, "
                   f"{MIN_STEPS}..{MAX_STEPS}, at most all of it].")
@click.option("--sweep-steps", type=click.IntRange(min=1), default=DEFAULT_SWEEP_STEPS,
              show_default=True, help="Steps of the range test (sweep).")
@click.option("--eval-examples", type=click.IntRange(min=1), default=DEFAULT_EVAL_EXAMPLES,
              show_default=True, help="Training examples in the fixed evaluation batch.")
@recipe_options
@output_options(plot=True)
def command(app, recipe, mode, lr_min, lr_max, per_decade, steps, sweep_steps, eval_examples):
    """Find the learning-rate range with the recipe's update rule and L2 strength.

    Every short run trains the model as `babysit train` starts it (same init,
    same batches) at a constant LR and is judged on every mini-batch loss by
    training's divergence rule (NaN or > 3x the first: too high) and on its
    progress on a fixed evaluation batch: good when it makes at least 75% of
    the best LR's progress (below the best: too low; above: unstable). grid
    walks a lattice of LRs around the best; sweep estimates it with one range
    test. Fails unless the recipe's own LR is good, and still good when its
    run and the best LR's go on to the end of training (at most 600 steps).
    """
    from babysit.cli.progress import StepDisplay
    from babysit.diagnostics.lr_probe import lr_probe

    spec = app.load_recipe(recipe)
    with StepDisplay(app, "lr-probe") as show:
        result = lr_probe(spec, mode=mode, lr_min=lr_min, lr_max=lr_max, per_decade=per_decade,
                          steps=steps, sweep_steps=sweep_steps, eval_examples=eval_examples,
                          progress=show)
    return app.emit(result, render, plot=figure)


def _marks(m, lr: float) -> str:
    marks = []
    if same_lr(lr, m["recipe_lr"]):
        marks.append("recipe")
    if m["suggested_lr"] is not None and same_lr(lr, m["suggested_lr"]):
        marks.append("suggested")
    return ", ".join(marks)


def render(console, result) -> None:
    m = result.metrics
    if m.get("note"):
        console.print(Text(f"lr-probe: {result.recipe}, seed {result.seed}: {m['note']}", style="bold"))
        return
    console.print(Text(f"lr-probe ({m['mode']}): {result.recipe}, seed {result.seed}: "
                       f"{m['update']}, reg {fmt(m['reg_used'])}, batch {m['batch_size']}, "
                       f"{m['steps']} steps per run (training: {m['training_steps']})",
                       style="bold"))
    trials = m["trials"]
    # Every run starts from the same weights on the same batch: one start, said once.
    starts = {fmt(t["loss_start"], 4) for t in trials}
    shared_start = len(starts) == 1
    columns = [("lr", "right"), ("verdict", "left")]
    columns += [] if shared_start else [("loss\nstart", "right")]
    columns += [("loss\nend", "right"), ("steps", "right")]
    rows = []
    for t in trials:
        verdict = Text(t["verdict"], style=VERDICT_STYLES[t["verdict"]])
        marks = _marks(m, t["lr"])
        if marks:
            verdict.append(f" ({marks})", style="bold")
        row = [fmt(t["lr"]), verdict]
        row += [] if shared_start else [fmt(t["loss_start"], 4)]
        steps = str(t["steps"]) if t["diverged_at"] is None else f"{t['steps']} diverged"
        row += [fmt(t["loss_end"], 4), steps]
        rows.append(row)
    title = ("Short runs" if m["mode"] == "sweep" else "Learning rates") + (
        f" (loss at the start: {starts.pop()})" if shared_start else "")
    for table in fitted_tables(columns, rows, console.width, keep=1, title=title,
                               box=box.SIMPLE_HEAD, pad_edge=False):
        console.print(table)
    console.print(terminal_plot(m, width=min(72, console.width)))
    good = m["good_range"]
    line = Text("good range: ", style="bold")
    line.append(f"{fmt(good[0])} .. {fmt(good[1])}" if good else "none", style="green" if good else "red")
    if good and m["mode"] == "sweep":
        line.append(" (estimated by the range test)", style="dim")
    line.append(f"   suggested lr: {fmt(m['suggested_lr'])}   recipe lr: {fmt(m['recipe_lr'])}")
    console.print(line)
    long_run = m.get("long_run")
    if long_run:
        console.print(long_run_line(long_run))


def long_run_line(long_run) -> Text:
    """The gate's judgement: the recipe's LR and the best run on to the long run's length."""
    recipe, best = long_run["recipe"], long_run["best"]
    line = Text(f"recipe lr run on to step {long_run['steps']}: ", style="bold")
    if recipe["diverged_at"] is not None:
        line.append(f"diverged at step {recipe['diverged_at']}", style="bold red")
    elif same_lr(recipe["lr"], best["lr"]):
        line.append("it is the best lr")
    elif long_run["share"] is not None:
        line.append(f"{long_run['share']:.0%} of the progress of the better of it and the best "
                    f"lr {fmt(best['lr'])}")
    line.append("  ")
    line.append(long_run["verdict"], style=VERDICT_STYLES[long_run["verdict"]])
    return line


def _series(m):
    """(lrs, losses) to draw: the short runs' final loss (grid) or the smoothed sweep."""
    rows = m["trials"] if m["mode"] == "grid" else m["sweep"]
    return [t["lr"] for t in rows], [t["loss_end"] for t in rows]


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
