"""``babysit search``: random hyperparameter search, coarse to fine.

The tables and the PNG are :mod:`babysit.cli.views.search` (``babysit report``
shows a search log with them too).
"""

from __future__ import annotations

import os
import time

import click
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import percent
from babysit.cli.views.search import plot_trials, stages_tables, trials_tables

EPILOG = """\b
Examples:
  babysit search                   # lr and reg around lr-probe's suggestion
  babysit search --param optim.lr=log:1e-5:1e-1 --param model.reg=log:1e-6:1e-2
  babysit search --param optim.lr=log:1e-4:1e-1 --param optim.update=choice:sgd,adam \\
                 --trials 30 --stages 2 --epochs 2
  babysit search --param model.layers.0.affine.out=int:20:200 --scheduler tcp://10.0.0.5:8786
\b
--param KEY=KIND:ARGS with KIND one of
  log:LOW:HIGH      uniform in log space (learning rates, regularization)
  uniform:LOW:HIGH  uniform
  int:LOW:HIGH      whole numbers, both ends included (layer sizes)
  choice:A,B,...    one of the values (update rules, losses)
"""


@click.command("search", epilog=EPILOG)
@click.argument("recipe", required=False)
@click.option("--param", "params", multiple=True, metavar="KEY=KIND:ARGS",
              help="A hyperparameter to search (repeatable); see below. Default: the "
                   "lectures' lr and reg in log space, centred on what lr-probe finds.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Trials per stage (the search runs trials x stages).")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Training epochs per trial (a short budget).")
@click.option("--stages", type=click.IntRange(min=1), default=1, show_default=True,
              help="Coarse-to-fine stages: each later stage samples a narrowed range "
                   "around the best trials so far.")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Local worker processes [default: the core count]; 1 runs in-process.")
@click.option("--scheduler", metavar="tcp://HOST:PORT", default=None,
              help="Run the trials on this Dask distributed scheduler (needs babysit[dask]).")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, metavar="SECONDS", help="How long to try reaching --scheduler.")
@click.option("--out", "out_path", metavar="PATH.h5", default=None,
              help="Search log [default: runs/<recipe>-search-<time>.h5].")
@recipe_options
@output_options(plot=True)
def command(app, recipe, params, trials, epochs, stages, workers, scheduler, connect_timeout,
            out_path):
    """Random search over hyperparameters, ranked by validation accuracy.

    Each trial trains the recipe with sampled values for a few epochs and is
    aborted as "diverged" when its loss goes NaN or above 3x its start. Every
    trial is written to an HDF5 search log as it finishes (Ctrl-C keeps them;
    `babysit report LOG` shows them again). Same seed, same trials and results
    on any backend and worker count.
    """
    from babysit.cli.progress import StepDisplay
    from babysit.diagnostics.progress import Step
    from babysit.diagnostics.search import check_space, search
    from babysit.diagnostics.search_backends import make_backend
    from babysit.diagnostics.search_space import SearchSpace
    from babysit.search_store import SearchLogWriter

    spec = app.load_recipe(recipe)
    if not params:
        params = lectures_space(app, spec)
    space = SearchSpace.parse(params)
    check_space(spec, space)
    if scheduler and workers is not None:
        app.warn("--workers is ignored with --scheduler (the cluster's workers run the trials)")
    backend = make_backend(workers, scheduler, connect_timeout)
    backend.preflight()  # an unreachable scheduler is a usage error: no log is written
    search_seed = spec.seed  # --seed is already applied to the recipe
    log = SearchLogWriter(out_path or default_log_path(spec.name), {
        "recipe": spec.to_yaml(), "recipe_name": spec.name, "recipe_path": spec.path,
        "seed": int(search_seed), "epochs": int(epochs), "trials_per_stage": int(trials),
        "stages": int(stages), "backend": backend.description,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S")},
        space.to_dict(), default_name=out_path is None)  # a default name may move on to -2, ...
    out_path = log.path
    app.info(f"search: {trials} trial(s) x {stages} stage(s), {epochs} epoch(s) each, "
             f"backend: {backend.description}; log: {out_path}")

    total = trials * stages
    with StepDisplay(app, "search") as show:
        def on_trial(record):
            done = len(log.trials)
            show(Step(done, total, f"trial {record['index']}: {record['status']}, val acc "
                                   f"{percent(record.get('val_accuracy'))}"))

        try:
            result = search(spec, space, seed=search_seed, trials=trials, epochs=epochs,
                            stages=stages, backend=backend, log=log, on_trial=on_trial)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM
            show.stop()
            app.interrupted(f"interrupted: {len(log.trials)} finished trial(s) kept in {out_path}")
    seconds = {t["index"]: t["seconds"] for t in log.trials}

    def render(console, result):
        for table in trials_tables(result.metrics["trials"], space.to_dict(), seconds,
                                   title=f"Search: {spec.name} ({len(seconds)} trials, "
                                         f"{epochs} epoch(s) each)", width=console.width):
            console.print(table)
        if stages > 1:
            for table in stages_tables(result.metrics["stages"], console.width):
                console.print(table)
        console.print(Text(f"search log: {out_path}", style="dim"))

    return app.emit(result, render, plot=lambda r: plot_trials(
        r.metrics["trials"], space.to_dict(), title=f"search: {spec.name}, seed {search_seed}"))


def lectures_space(app, spec) -> tuple:
    """No --param: run lr-probe and search lr and reg around what it finds (printed)."""
    from babysit.cli.progress import StepDisplay
    from babysit.diagnostics.search_defaults import default_space

    app.info("search: no --param given: running lr-probe to centre the lectures' default space "
             "(learning rate and L2 strength, log-uniform)")
    with StepDisplay(app, "search: lr-probe") as show:
        chosen = default_space(spec, progress=show)
    lines = [f"  --param {param}   ({chosen.reasons[param.split('=', 1)[0]]})"
             for param in chosen.params]
    app.info("search space:\n" + "\n".join(lines))
    return chosen.params


def default_log_path(name: str) -> str:
    """``runs/<name>-search-<time>.h5``, the recipe name made safe as a file name."""
    from babysit.atomic import file_stem

    return os.path.join("runs", f"{file_stem(name)}-search-{time.strftime('%Y%m%d-%H%M%S')}.h5")
