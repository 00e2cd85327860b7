"""How a search looks: shared by ``babysit search`` and ``babysit report`` on a search log.

:func:`trials_tables` and :func:`stages_tables` are the tables, :func:`render_log`
the whole report of a :class:`babysit.search_store.SearchLog`, and
:func:`plot_trials` the PNG (validation accuracy against each key, lr x reg).
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


def plot_trials(ranked: list, space: dict, title: str = "search"):
    """The PNG: validation accuracy against every key, the best trial marked.

    Numeric keys get the classic coarse-search scatter (log axis for ``log``
    keys), choice keys one column of points per value; with exactly two
    numeric keys (lr and reg, the lectures' search) a first panel plots one
    against the other, coloured by validation accuracy. Diverged trials are red
    crosses at 0. None when there is no trial.
    """
    from babysit.plots import label_axes, new_figure

    keys = list(space)
    if not keys or not ranked:
        return None
    numeric = [k for k in keys if space[k]["kind"] != "choice"]
    pair = numeric if len(numeric) == 2 else None
    panels = len(keys) + (1 if pair else 0)
    figure, axes = new_figure(1, panels, width=4.6 * panels, height=4.2)
    axes = [axes] if panels == 1 else list(axes)
    best = next((t for t in ranked if t["status"] == "ok"), None)
    if pair:
        _pair_panel(axes.pop(0), ranked, space, pair, best)
    for ax, key in zip(axes, keys):
        dist = space[key]
        if dist["kind"] == "choice":
            _choice_panel(ax, ranked, key, [str(v) for v in dist["options"]], best)
        else:
            _numeric_panel(ax, ranked, key, dist, best)
        label_axes(ax, title=f"val accuracy vs {key}", xlabel=key, ylabel="val accuracy",
                   logx=dist["kind"] == "log")
        ax.set_ylim(-0.03, 1.03)
    axes[0].legend(loc="best", fontsize="small")
    ok = [t for t in ranked if t["status"] == "ok"]
    summary = (f"best val acc {best['val_accuracy']:.1%} (trial {best['index']})"
               if best else "every trial diverged")
    figure.suptitle(f"{title}: {len(ranked)} trials, {len(ranked) - len(ok)} diverged; {summary}",
                    fontweight="bold")
    return figure


def _best_label(best, key) -> str:
    value = best["params"][key]
    return f"best: {value:.3g}" if isinstance(value, float) else f"best: {value}"


def _numeric_panel(ax, ranked, key, dist, best) -> None:
    for stage in sorted({t["stage"] for t in ranked}):
        ok = [t for t in ranked if t["stage"] == stage and t["status"] == "ok"]
        ax.scatter([t["params"][key] for t in ok], [t["val_accuracy"] for t in ok],
                   s=20, label=f"stage {stage}")
    diverged = [t for t in ranked if t["status"] != "ok"]
    if diverged:
        ax.scatter([t["params"][key] for t in diverged], [0.0] * len(diverged),
                   marker="x", color="red", s=24, label="diverged")
    if best is not None:
        ax.scatter([best["params"][key]], [best["val_accuracy"]], marker="*", s=260,
                   facecolor="gold", edgecolor="black", zorder=5, label=_best_label(best, key))
    ax.set_xlim(dist["low"], dist["high"])


def _choice_panel(ax, ranked, key, options, best) -> None:
    """One column per option; points jittered deterministically so they do not overlap."""
    positions = {option: i for i, option in enumerate(options)}
    for status, marker, colour in (("ok", "o", "tab:blue"), ("diverged", "x", "red")):
        chosen = [t for t in ranked if (t["status"] == "ok") == (status == "ok")]
        xs = [positions[str(t["params"][key])] + 0.15 * ((t["index"] * 7919) % 11 / 10 - 0.5)
              for t in chosen]
        ys = [t["val_accuracy"] if t["status"] == "ok" else 0.0 for t in chosen]
        if chosen:
            ax.scatter(xs, ys, marker=marker, color=colour, s=20,
                       label="trials" if status == "ok" else "diverged")
    if best is not None:
        ax.scatter([positions[str(best["params"][key])]], [best["val_accuracy"]], marker="*",
                   s=260, facecolor="gold", edgecolor="black", zorder=5,
                   label=_best_label(best, key))
    ax.set_xticks(range(len(options)), options)
    ax.set_xlim(-0.6, len(options) - 0.4)


def _pair_panel(ax, ranked, space, pair, best) -> None:
    """The two numeric keys against each other, coloured by validation accuracy."""
    from babysit.plots import label_axes

    x_key, y_key = pair
    ok = [t for t in ranked if t["status"] == "ok"]
    accuracies = [t["val_accuracy"] for t in ok]
    # colours span the accuracies reached: the contrast is between trials, not against 0..1
    low, high = (min(accuracies), max(accuracies)) if accuracies else (0.0, 1.0)
    points = ax.scatter([t["params"][x_key] for t in ok], [t["params"][y_key] for t in ok],
                        c=accuracies, cmap="viridis", vmin=low, vmax=high if high > low else low + 1e-9,
                        s=40, edgecolor="0.3", linewidth=0.5)
    diverged = [t for t in ranked if t["status"] != "ok"]
    if diverged:
        ax.scatter([t["params"][x_key] for t in diverged], [t["params"][y_key] for t in diverged],
                   marker="x", color="red", s=30, label="diverged")
    if best is not None:
        ax.scatter([best["params"][x_key]], [best["params"][y_key]], marker="*", s=300,
                   facecolor="gold", edgecolor="black", zorder=5, label="best")
        ax.legend(loc="best", fontsize="small")
    ax.figure.colorbar(points, ax=ax, label="val accuracy")
    for key, setter in ((x_key, ax.set_xlim), (y_key, ax.set_ylim)):
        setter(space[key]["low"], space[key]["high"])
    label_axes(ax, title=f"{y_key} vs {x_key}", xlabel=x_key, ylabel=y_key,
               logx=space[x_key]["kind"] == "log", logy=space[y_key]["kind"] == "log")
