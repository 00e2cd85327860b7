"""``babysit search``: random hyperparameter search, coarse to fine.

Also what ``babysit report`` shows for a search log: :func:`render_log` (tables)
and :func:`plot_trials` (PNG), with ``diagnostics.search.result_from_log`` for
the findings and JSON.
"""

from __future__ import annotations

import math
import os
import time

import click
from rich import box
from rich.table import Table
from rich.text import Text

from babysit.cli.app import EXIT_INTERRUPTED, common_options
from babysit.cli.render import fmt, percent

# Rows of the trials table shown in the terminal (the log and --json keep all).
TABLE_ROWS = 25

EPILOG = """\b
Examples:
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
@click.option("--param", "params", multiple=True, required=True, metavar="KEY=KIND:ARGS",
              help="A hyperparameter to search (repeatable); see below.")
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
@common_options(plot=True)
def command(app, recipe, params, trials, epochs, stages, workers, scheduler, connect_timeout,
            out_path, seed, sets, json_path, junit_path, plot_path):
    """Random search over hyperparameters, ranked by validation accuracy.

    Each trial trains the recipe with sampled values for a few epochs and is
    aborted as "diverged" when its loss goes NaN or above 3x its start. Every
    trial is written to an HDF5 search log as it finishes (Ctrl-C keeps them;
    `babysit report LOG` shows them again). Same seed, same trials and results
    on any backend and worker count.
    """
    from babysit.diagnostics.search import check_space, search
    from babysit.diagnostics.search_backends import make_backend
    from babysit.diagnostics.search_space import SearchSpace
    from babysit.search_store import SearchLogWriter

    spec = app.load_recipe(recipe)
    space = SearchSpace.parse(params)
    check_space(spec, space)
    if scheduler and workers is not None:
        app.warn("--workers is ignored with --scheduler (the cluster's workers run the trials)")
    backend = make_backend(workers, scheduler, connect_timeout)
    backend.preflight()  # an unreachable scheduler is a usage error: no log is written
    out_path = out_path or default_log_path(spec.name)
    search_seed = spec.seed  # --seed is already applied to the recipe
    log = SearchLogWriter(out_path, {
        "recipe": spec.to_yaml(), "recipe_name": spec.name, "recipe_path": spec.path,
        "seed": int(search_seed), "epochs": int(epochs), "trials_per_stage": int(trials),
        "stages": int(stages), "backend": backend.description,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, space.to_dict())
    app.info(f"search: {trials} trial(s) x {stages} stage(s), {epochs} epoch(s) each, "
             f"backend: {backend.description}; log: {out_path}")

    total = trials * stages
    with app.progress() as progress:
        task = progress.add_task("trials", total=total)

        def on_trial(record):
            progress.advance(task)

        try:
            result = search(spec, space, seed=search_seed, trials=trials, epochs=epochs,
                            stages=stages, backend=backend, log=log, on_trial=on_trial)
        except KeyboardInterrupt:
            progress.stop()
            app.err.print(Text(f"interrupted: {len(log.trials)} finished trial(s) kept in "
                               f"{out_path}", style="bold red"))
            raise SystemExit(EXIT_INTERRUPTED) from None
    seconds = {t["index"]: t["seconds"] for t in log.trials}

    def render(console, result):
        console.print(trials_table(result.metrics["trials"], space.to_dict(), seconds,
                                   title=f"Search: {spec.name} ({len(seconds)} trials, "
                                         f"{epochs} epoch(s) each)"))
        if stages > 1:
            console.print(stages_table(result.metrics["stages"]))
        console.print(Text(f"search log: {out_path}", style="dim"))

    return app.emit(result, render, plot=lambda r: plot_trials(r.metrics["trials"],
                                                               space.to_dict()))


def default_log_path(name: str) -> str:
    return os.path.join("runs", f"{name}-search-{time.strftime('%Y%m%d-%H%M%S')}.h5")


# -- rendering (shared with `babysit report`) ------------------------------------

def _value(value, dist: dict) -> str:
    if dist["kind"] == "choice" or isinstance(value, str):
        return str(value)
    if dist["kind"] == "int":
        return str(int(value))
    return fmt(value)


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"


def short_names(keys) -> dict:
    """Column headers: the shortest dotted suffix that tells the keys apart.

    ``optim.lr -> lr``, ``model.layers.0.affine.out -> out``; ``model.reg`` and
    ``optim.reg`` would keep their first part. Indexes never stand alone
    (``layers.0`` says nothing), so a suffix starting with one grows a step.
    """
    keys = list(keys)
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if parts[-n].isdigit() and n < len(parts):
                continue
            if sum(k == suffix or k.endswith("." + suffix) for k in keys) == 1:
                break
        names[key] = suffix
    return names


def trials_table(ranked: list, space: dict, seconds: dict | None = None,
                 title: str = "Search", rows: int = TABLE_ROWS) -> Table:
    """Trials best first: rank, trial, [stage], one column per key, accuracies, loss, status, time.

    Keys are shown by their short name (see :func:`short_names`); the caption
    spells out any that were shortened.
    """
    # No vertical rules: a search table has many narrow columns to fit in 80.
    table = Table(title=title, title_justify="left", caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    staged = len({t["stage"] for t in ranked}) > 1
    for column in ("#", "trial") + (("stage",) if staged else ()):
        table.add_column(column, justify="right", no_wrap=True)
    names = short_names(space)
    for key in space:
        table.add_column(names[key], justify="right", no_wrap=True)
    table.add_column("val acc", justify="right", no_wrap=True)
    table.add_column("train", justify="right", no_wrap=True)
    table.add_column("loss", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    if seconds:
        table.add_column("time", justify="right", no_wrap=True)
    for rank_no, trial in enumerate(ranked[:rows], start=1):
        ok = trial["status"] == "ok"
        style = "bold green" if rank_no == 1 and ok else ("dim" if not ok else None)
        cells = [str(rank_no), str(trial["index"])] + ([str(trial["stage"])] if staged else [])
        cells += [_value(trial["params"][key], dist) for key, dist in space.items()]
        cells += [percent(trial["val_accuracy"]), percent(trial["train_accuracy"]),
                  fmt(trial["final_loss"]),
                  Text(trial["status"], style="red" if not ok else "green")]
        if seconds:
            cells.append(_seconds(seconds.get(trial["index"], math.nan)))
        table.add_row(*cells, style=style)
    notes = [f"{name} = {key}" for key, name in names.items() if name != key]
    if len(ranked) > rows:
        notes.append(f"{len(ranked) - rows} more trial(s) in the log and --json")
    if notes:
        table.caption = "; ".join(notes)
    return table


def stages_table(stage_spaces: list) -> Table:
    """The range each stage sampled (coarse to fine)."""
    from babysit.diagnostics.search_space import SearchSpace

    table = Table(title="Stages (sampled ranges)", title_justify="left")
    table.add_column("stage", justify="right")
    keys = list(stage_spaces[0]) if stage_spaces else []
    names = short_names(keys)
    for key in keys:
        table.add_column(names[key], no_wrap=True)
    for stage, space in enumerate(stage_spaces, start=1):
        described = SearchSpace.from_dict(space).params
        table.add_row(str(stage), *[described[key].describe() for key in keys])
    return table


def render_log(console, log) -> None:
    """``babysit report`` on a search log (a :class:`babysit.search_store.SearchLog`)."""
    from babysit.diagnostics.search import rank

    meta = log.meta
    ranked = rank(log.trials)
    seconds = {t["index"]: t["seconds"] for t in log.trials}
    status = meta.get("status", "unknown")
    title = (f"Search log {log.path}: {meta.get('recipe_name', '?')}, seed {meta.get('seed')}, "
             f"{len(ranked)} trial(s), {meta.get('epochs')} epoch(s) each, {status}")
    console.print(trials_table(ranked, log.space, seconds, title=title))
    if len(log.stage_spaces) > 1:
        console.print(stages_table(log.stage_spaces))
    if status in ("interrupted", "failed"):
        how = "was interrupted" if status == "interrupted" else "stopped on an error"
        console.print(Text(f"the search {how}: only finished trials are shown", style="yellow"))


def plot_trials(ranked: list, space: dict):
    """Validation accuracy against each numeric key (the classic coarse-search scatter)."""
    from babysit.plots import label_axes, new_figure

    keys = [k for k, d in space.items() if d["kind"] != "choice"]
    if not keys or not ranked:
        return None
    figure, axes = new_figure(1, len(keys), width=4.5 * len(keys), height=3.8)
    axes = [axes] if len(keys) == 1 else list(axes)
    for ax, key in zip(axes, keys):
        for stage in sorted({t["stage"] for t in ranked}):
            ok = [t for t in ranked if t["stage"] == stage and t["status"] == "ok"]
            ax.scatter([t["params"][key] for t in ok], [t["val_accuracy"] for t in ok],
                       s=18, label=f"stage {stage}")
        diverged = [t for t in ranked if t["status"] != "ok"]
        if diverged:
            ax.scatter([t["params"][key] for t in diverged], [0.0] * len(diverged),
                       marker="x", color="red", s=18, label="diverged")
        dist = space[key]
        ax.set_xlim(dist["low"], dist["high"])
        label_axes(ax, title=key, xlabel=key, ylabel="val accuracy",
                   logx=dist["kind"] == "log")
    axes[0].legend(loc="best", fontsize="small")
    return figure
