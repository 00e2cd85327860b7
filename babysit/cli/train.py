"""``babysit train [RECIPE]``: train with live progress, monitors, run log and checkpoints."""

from __future__ import annotations

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from babysit.cli import outputs
from babysit.cli.app import output_options, recipe_options
from babysit.cli.progress import Display
from babysit.cli.render import fmt, percent
from babysit.cli.views import run as run_view


@click.command("train")
@click.argument("recipe", required=False)
@click.option("--out", "out_path", metavar="RUN.h5", default=None,
              help="Run log and checkpoints (default runs/<name>-<time>.h5; with --resume, "
                   "the resumed log).")
@click.option("--resume", "resume_path", metavar="RUN.h5", default=None,
              help="Continue the run in RUN.h5 with its own recipe (change it with --set, "
                   "e.g. --set train.epochs=20).")
@click.option("--ensemble", "members", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train N independent models (seeds SEED..SEED+N-1, one data split) and compare "
                   "their averaged predictions with the best single model, its Polyak average and "
                   "its checkpoint ensemble.")
@click.option("--checkpoint-ensemble", "checkpoints", type=click.IntRange(min=1), default=None,
              metavar="K", help="Average the predictions of each model's last K epoch checkpoints "
                                "(default 5 with --ensemble; alone, it implies --ensemble 1).")
@click.option("--log-loss", is_flag=True, help="Draw the loss on a log scale in the --plot PNG.")
@recipe_options
@output_options(plot=True)
def command(app, recipe, out_path, resume_path, members, checkpoints, log_loss):
    """Train RECIPE with its optimizer, schedule, epochs and batch size.

    Live progress on stderr (plain lines when stderr is not a terminal: one per
    epoch, thinned to about 20 on long runs; none with --quiet). Every epoch: update/weight ratios, gradient norms, dead and
    saturated units; stops early when the loss diverges. At the end the loss
    and accuracy curves are diagnosed. Ctrl-C or SIGTERM saves a checkpoint
    and exits 130; --resume continues bit for bit. --ensemble N trains N
    models and reports their averaged predictions next to the best single
    model, its Polyak average and its checkpoint ensemble (not resumable).
    """
    from babysit.diagnostics.train import TrainingInterrupted, recipe_for_resume, train, train_ensemble
    from babysit.diagnostics.train.ensemble import DEFAULT_CHECKPOINTS
    from babysit.store import read_run_log

    ensemble = members is not None or checkpoints is not None
    if resume_path and ensemble:
        app.abort("--resume continues a single run: ensembles cannot be resumed; drop "
                  "--ensemble/--checkpoint-ensemble")
    if resume_path:
        if recipe:
            app.abort("--resume continues the run log's own recipe: drop RECIPE "
                      "(change the recipe with --set)")
        if app.options.seed is not None:
            app.abort("--resume continues with the run's own seed: drop --seed")
        spec = recipe_for_resume(resume_path, list(app.options.sets) or None)
        app.recipe = spec
        # --out and --resume were checked when the command started (outputs.command_line_inputs)
        app.check_outputs(outputs.recipe_inputs(spec))
        announce_custom_code(app, spec, resume_path)
    else:
        spec = app.load_recipe(recipe)
    with LiveProgress(app) as live:
        try:
            if ensemble:
                result = train_ensemble(spec, members or 1, checkpoints or DEFAULT_CHECKPOINTS,
                                        out=out_path, progress=live.update)
            else:
                result = train(spec, out=out_path, resume=resume_path, progress=live.update)
        except TrainingInterrupted as stop:
            live.stop()
            then = (f"continue with `babysit train --resume {stop.run_log}`" if stop.resumable else
                    "it keeps the finished ensemble members; an ensemble cannot be resumed")
            app.interrupted(f"interrupted at epoch {stop.epoch}, iteration {stop.iteration}: "
                            f"checkpoint saved to {stop.run_log}; {then}")
    log = read_run_log(result.metrics["run_log"])
    return app.emit(result, lambda console, r: run_view.render_run(console, log),
                    plot=lambda r: run_view.run_figure(log, log_loss=log_loss))


def announce_custom_code(app, spec, resume_path) -> None:
    """Say which modules resuming will import: a run log's recipe may name custom layers,
    whose code runs (README, "Security and safety"). Shown even with --quiet."""
    from babysit.engine.user_code import custom_layer_modules

    modules = custom_layer_modules(spec.model.to_dict())
    if modules:
        app.warn(f"the recipe stored in {resume_path} names custom layer code: resuming imports "
                 f"and runs the Python module(s) {', '.join(modules)} (from the installed packages "
                 f"or the current directory)")


class LiveProgress(Display):
    """Training progress on stderr: epoch, iteration, loss, accuracies, LR, ETA.

    In a terminal a live Rich bar; when stderr is not a terminal (CI logs) one
    plain line per finished epoch (at most about
    :data:`babysit.cli.progress.PLAIN_LINES`); nothing with --quiet.
    """

    def __init__(self, app):
        self.console = app.err
        self.enabled = not app.quiet and app.err.is_terminal
        self.plain = not app.quiet and not app.err.is_terminal
        self.printed = None
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
            TextColumn("it {task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("acc {task.fields[train_acc]} / val {task.fields[val_acc]}"),
            TextColumn("lr {task.fields[lr]}"), TimeRemainingColumn(),
            console=app.err, transient=True, disable=not self.enabled)
        self.task = None

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def update(self, event) -> None:
        if self.plain:
            self.line(event)
        if not self.enabled:
            return
        fields = dict(epoch=f"{event.epoch}/{event.epochs}", loss=fmt(event.loss), lr=fmt(event.lr),
                      train_acc=percent(event.train_accuracy), val_acc=percent(event.val_accuracy))
        if self.task is None:
            self.task = self.progress.add_task("train", total=event.iterations,
                                               completed=event.iteration, **fields)
        self.progress.update(self.task, completed=event.iteration, **fields)

    def line(self, event) -> None:
        """One plain line per finished epoch (CI logs)."""
        from babysit.cli.progress import worth_a_line

        if event.kind != "epoch":
            return
        # the event's epoch is the one in progress: count the finished ones from the iterations
        done = event.iteration // max(1, event.iterations // max(1, event.epochs))
        if not worth_a_line(done, event.epochs, self.printed):
            return
        self.printed = done
        self.console.print(Text(
            f"train [{done}/{event.epochs}] epoch {done}: loss {fmt(event.loss)}, "
            f"train acc {percent(event.train_accuracy)}, val acc {percent(event.val_accuracy)}, "
            f"lr {fmt(event.lr)}", style="dim"), soft_wrap=True, highlight=False)
