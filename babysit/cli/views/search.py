"""How a search looks: shared by ``babysit search`` and ``babysit report`` on a search log.

:func:`trials_table` and :func:`stages_table` are the tables, :func:`render_log`
the whole report of a :class:`babysit.search_store.SearchLog`, and
:func:`plot_trials` the PNG (validation accuracy against each numeric key).
"""

from __future__ import annotations

import math

from rich import box
from rich.table import Table
from rich.text import Text

from babysit.cli.render import fmt, percent

# Rows of the trials table shown in the terminal (the log and --json keep all).
TABLE_ROWS = 25


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
