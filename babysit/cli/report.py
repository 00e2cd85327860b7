"""``babysit report LOG.h5``: re-render a run log (or a search log) from disk."""

from __future__ import annotations

import click

from babysit.cli.app import output_options
from babysit.cli.views import run as run_view
from babysit.cli.views import search as search_view


@click.command("report")
@click.argument("log_path", metavar="LOG.h5")
@click.option("--log-loss", is_flag=True, help="Draw the loss on a log scale in the --plot PNG "
                                               "(run logs).")
@output_options(plot=True, viewer=True)
def command(app, log_path, log_loss):
    """Re-render a run log written by `babysit train` (summary, per-epoch table,
    curves, findings) or a search log written by `babysit search`.

    --json writes the stored result; --plot PATH.png draws the loss (with
    --log-loss on a log scale), accuracy and update/weight-ratio curves.
    Exits 0 for any readable log (a viewer: the stored verdict is in the
    output, --junit and --json), 2 for a missing, corrupt or foreign file.
    """
    import babysit.search_store  # noqa: F401  (registers the "search" log reader)
    from babysit.store import read_log

    app.check_outputs([("the log it shows", log_path)])
    log = read_log(log_path)
    if log.kind == "search":
        from babysit.diagnostics.search import rank, result_from_log

        app.emit(result_from_log(log), lambda console, _: search_view.render_log(console, log),
                 plot=lambda _: search_view.plot_trials(
                     rank(log.trials), log.space,
                     title=f"search log {log.meta.get('recipe_name', '')}, seed {log.meta.get('seed')}"))
        return 0
    from babysit.diagnostics.train import result_from_run_log

    app.emit(result_from_run_log(log), lambda console, _: run_view.render_run(console, log),
             plot=lambda _: run_view.run_figure(log, log_loss=log_loss))
    return 0  # a viewer: the stored verdict does not become this command's exit code
