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
@output_options(plot=False)
def command(app, recipe, examples, max_epochs):
    """Train on a few examples with regularization and dropout off: train accuracy
    must reach 1.0 and the loss near zero.

    Uses the recipe's optimizer at its learning rate (no decay). On failure
    says why: loss NaN (LR too high), loss flat (LR too low), dead units, or
    identical inputs with different labels (a data problem).
    """
    from babysit.diagnostics.overfit import overfit_tiny

    spec = app.load_recipe(recipe)
    result = overfit_tiny(spec, examples=examples, max_epochs=max_epochs)
    return app.emit(result, render)


def render(console, result) -> None:
    m = result.metrics
    console.print(Text(f"overfit-tiny: {result.recipe}, seed {result.seed}: {m['examples']} "
                       f"examples, reg 0, no dropout, lr {fmt(m['lr'])}", style="bold"))
    console.print(metrics_table([
        ("train accuracy", percent(m["train_accuracy"])),
        ("loss", f"{fmt(m['initial_loss'])} -> {fmt(m['final_loss'])} (target <= {fmt(m['loss_target'])})"),
        ("epochs run", f"{m['epochs_run']} of at most {m['max_epochs']}"),
    ]))
