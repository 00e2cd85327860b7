"""``babysit overfit-tiny [RECIPE]``: the model must memorize a handful of examples."""

from __future__ import annotations

import click
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fmt, metrics_table, percent
from babysit.diagnostics.overfit import DEFAULT_EXAMPLES, DEFAULT_MAX_EPOCHS


@click.command("overfit-tiny")
@click.argument("recipe", required=False)
@click.option("--examples", type=click.IntRange(min=1), default=DEFAULT_EXAMPLES, show_default=True,
              help="Training examples to memorize.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=DEFAULT_MAX_EPOCHS,
              show_default=True, help="Budget (passes over the tiny set); stops early when done.")
@recipe_options
@output_options(plot=True)
def command(app, recipe, examples, max_epochs):
    """Train on a few examples with regularization and dropout off: train accuracy
    must reach 1.0 and the loss near zero.

    Uses the recipe's optimizer at its learning rate (no decay). On failure
    says why: loss NaN (LR too high), loss flat (LR too low), dead units, or
    identical inputs with different labels (a data problem).
    """
    from babysit.cli.progress import StepDisplay
    from babysit.diagnostics.overfit import overfit_tiny

    spec = app.load_recipe(recipe)
    curve = []  # (epoch, loss, accuracy) from the progress steps: the PNG's curve

    with StepDisplay(app, "overfit-tiny") as show:
        def progress(step):
            curve.append((step.done, step.values.get("loss"), step.values.get("accuracy")))
            show(step)

        result = overfit_tiny(spec, examples=examples, max_epochs=max_epochs, progress=progress)
    return app.emit(result, render, plot=lambda r: figure(r, curve))


def render(console, result) -> None:
    m = result.metrics
    console.print(Text(f"overfit-tiny: {result.recipe}, seed {result.seed}: {m['examples']} "
                       f"examples, reg 0, no dropout, lr {fmt(m['lr'])}", style="bold"))
    console.print(metrics_table([
        ("train accuracy", percent(m["train_accuracy"])),
        ("loss", f"{fmt(m['initial_loss'])} -> {fmt(m['final_loss'])} (target <= {fmt(m['loss_target'])})"),
        ("epochs run", f"{m['epochs_run']} of at most {m['max_epochs']}"),
    ]))


def figure(result, curve: list):
    """The PNG: loss (log scale, with the target) and accuracy on the tiny set per epoch."""
    from babysit.cli.views.panels import draw_overfit
    from babysit.plots import label_axes, new_figure

    m = result.metrics
    fig, (loss_ax, acc_ax) = new_figure(1, 2, width=10, height=3.8)
    draw_overfit(loss_ax, m, curve)
    acc_ax.plot([e for e, _, _ in curve], [a for _, _, a in curve], color="tab:orange")
    acc_ax.axhline(1.0, color="tab:green", linestyle="--", linewidth=1, label="target 100%")
    acc_ax.set_ylim(-0.02, 1.05)
    label_axes(acc_ax, "train accuracy on the tiny set", "epoch", "accuracy")
    acc_ax.legend(fontsize="small")
    fig.suptitle(f"overfit-tiny: {result.recipe}, {m['examples']} examples, lr {fmt(m['lr'])}: "
                 f"{result.status.upper()}", fontweight="bold")
    return fig
