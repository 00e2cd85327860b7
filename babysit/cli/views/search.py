"""How a search looks: shared by ``babysit search`` and ``babysit report`` on a search log.

:func:`trials_tables` and :func:`stages_tables` are the tables, :func:`render_log`
the whole report of a :class:`babysit.search_store.SearchLog`, and
:func:`plot_trials` the PNG (validation accuracy against each numeric key).
"""

from __future__ import annotations

import math

from rich import box
from rich.table import Table
from rich.text import Text

from babysit.cli.render import fitted_tables, fmt, percent

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


def trials_tables(ranked: list, space: dict, seconds: dict | None = None,
                  title: str = "Search", rows: int = TABLE_ROWS, width: int = 200) -> list[Table]:
    """Trials best first: rank, trial, [stage], one column per key, accuracies, loss, status, time.

    Keys are shown by their short name (see :func:`short_names`); the caption
    spells out any that were shortened. Columns that do not fit ``width`` go to
    a second table keyed by rank and trial.
    """
    staged = len({t["stage"] for t in ranked}) > 1
    names = short_names(space)
    columns = [("#", "right"), ("trial", "right")] + ([("stage", "right")] if staged else [])
    columns += [(names[key], "right") for key in space]
    columns += [("val acc", "right"), ("train", "right"), ("loss", "right"),
                ("status", "left")] + ([("time", "right")] if seconds else [])
    cells, styles = [], []
    for rank_no, trial in enumerate(ranked[:rows], start=1):
        ok = trial["status"] == "ok"
        styles.append("bold green" if rank_no == 1 and ok else ("dim" if not ok else None))
        row = [str(rank_no), str(trial["index"])] + ([str(trial["stage"])] if staged else [])
        row += [_value(trial["params"][key], dist) for key, dist in space.items()]
        row += [percent(trial["val_accuracy"]), percent(trial["train_accuracy"]),
                fmt(trial["final_loss"]), Text(trial["status"], style="red" if not ok else "green")]
        if seconds:
            row.append(_seconds(seconds.get(trial["index"], math.nan)))
        cells.append(row)
    notes = [f"{name} = {key}" for key, name in names.items() if name != key]
    if len(ranked) > rows:
        notes.append(f"{len(ranked) - rows} more trial(s) in the log and --json")
    # No vertical rules: a search table has many narrow columns to fit in 80.
    return fitted_tables(columns, cells, width, keep=2, title=title, row_styles=styles,
                         caption="; ".join(notes) or None, box=box.SIMPLE_HEAD, pad_edge=False,
                         collapse_padding=True)


def stages_tables(stage_spaces: list, width: int = 200) -> list[Table]:
    """The range each stage sampled (coarse to fine)."""
    from babysit.diagnostics.search_space import SearchSpace

    keys = list(stage_spaces[0]) if stage_spaces else []
    names = short_names(keys)
    columns = [("stage", "right")] + [(names[key], "left") for key in keys]
    rows = []
    for stage, space in enumerate(stage_spaces, start=1):
        described = SearchSpace.from_dict(space).params
        rows.append([str(stage)] + [described[key].describe() for key in keys])
    return fitted_tables(columns, rows, width, keep=1, title="Stages (sampled ranges)")


def render_log(console, log) -> None:
    """``babysit report`` on a search log (a :class:`babysit.search_store.SearchLog`)."""
    from babysit.diagnostics.search import rank

    meta = log.meta
    ranked = rank(log.trials)
    seconds = {t["index"]: t["seconds"] for t in log.trials}
    status = meta.get("status", "unknown")
    title = (f"Search log {log.path}: {meta.get('recipe_name', '?')}, seed {meta.get('seed')}, "
             f"{len(ranked)} trial(s), {meta.get('epochs')} epoch(s) each, {status}")
    for table in trials_tables(ranked, log.space, seconds, title=title, width=console.width):
        console.print(table)
    if len(log.stage_spaces) > 1:
        for table in stages_tables(log.stage_spaces, console.width):
            console.print(table)
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
