"""``babysit data [RECIPE|SOURCE]``: look at the data before training on it.

Accepts a recipe (bundled name or YAML path: its data section, split and
preprocessing) or a raw source (``builtin:digits``, ``file.h5``, ``file.npz``,
``cifar10:DIR``, ``mnist:DIR``). Exit 0 usable, 1 not usable (NaN/inf, labels
out of range), 2 when the source cannot be read or is malformed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich import box
from rich.table import Table
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fmt, sparkline

if TYPE_CHECKING:  # the data package (NumPy) loads only when the command runs
    from babysit.data import DataReport, SplitStats


def is_source(argument: str | None) -> bool:
    """True when ARGUMENT names a data source rather than a recipe."""
    if argument is None:
        return False
    from babysit.data import source_kind

    try:
        source_kind(argument)
    except ValueError:
        return False
    return True


def refuse_data_file(app, target: str | None) -> None:
    """Exit 2 naming what TARGET is when it is a data file that is neither a source nor a recipe."""
    from babysit.data import ACCEPTED_SOURCES, describe_file

    known = describe_file(target) if target and Path(target).is_file() else None
    if known:
        what, how = known
        app.abort(f"{target} is {what}, not a recipe or a data source: babysit data takes a recipe "
                  f"(a YAML file or a bundled name) or {ACCEPTED_SOURCES}; to use it as data, {how}")


@click.command("data")
@click.argument("target", metavar="[RECIPE|SOURCE]", required=False)
@recipe_options
@output_options(plot=False)
def command(app, target):
    """Inspect a data set: shapes, dtype, class balance, mean/std, range, NaN/inf, labels.

    TARGET is a recipe (default two-layer-digits; its data is shown after its
    split and preprocessing, as the model sees it) or a data source:
    builtin:digits, builtin:spiral, builtin:gaussian, FILE.h5, FILE.npz,
    cifar10:DIR, mnist:DIR.
    """
    from babysit.data import inspect_data
    from babysit.diagnostics.data_check import check_data

    if is_source(target):
        if app.options.sets:
            app.abort("--set overrides recipe keys; put the source in a recipe "
                      "(data: {source: ...}) to override its data settings")
        recipe_label = None
        used_seed = app.options.seed or 0
        report = inspect_data(target, seed=used_seed)
    else:
        refuse_data_file(app, target)
        recipe = app.load_recipe(target)
        recipe_label, used_seed = recipe.path, recipe.seed
        report = inspect_data(recipe.data)

    if report.raw is None:  # the source could not be read at all
        app.abort(report.problems[0] if report.problems else "cannot read the data")
    result = check_data(report, recipe=recipe_label, seed=used_seed)

    def draw(console, result):
        render(console, result, report)

    if not report.ok and result.status != "fail":
        # Malformed (shapes, empty arrays, missing classes): bad input, not a diagnosis.
        if not app.quiet:
            draw(app.report, result)
        app.abort(f"{report.source}: {report.problems[0]}")
    return app.emit(result, draw)


# -- rendering --------------------------------------------------------------

def render(console, result, report: DataReport) -> None:
    """The inspection (``report``) as the user reads it; the centring line quotes ``result``."""
    loaded = report.loaded
    header = Text("Data ", style="bold")
    header.append(str(report.source), style="bold cyan")
    if result.recipe:
        header.append(f"  recipe {result.recipe}", style="dim")
    console.print(header)
    facts = [f"{report.num_classes} classes"]
    if loaded:
        facts.append("input " + "x".join(str(d) for d in loaded.input_shape))
        facts.append("preprocess: " + (", ".join(loaded.preprocess) or "none"))
        facts.append("val " + ("from the source" if loaded.val_from == "source"
                               else f"split off train, seed {result.seed}"))
    console.print(Text(" | ".join(facts), style="dim"))
    if loaded:
        console.print(stats_table(loaded.splits, "As the model sees it"))
    if report.raw:
        console.print(stats_table(report.raw, "As stored (raw)"))
        console.print(balance_table(loaded.splits if loaded else report.raw, report.num_classes))
    centering = result.metrics.get("centering") or {}
    if centering.get("ratio") is not None:
        console.print(Text(f"centring: largest per-feature mean = {fmt(centering['ratio'])} std "
                           f"(raw {fmt(centering.get('raw_ratio'))}; limit {centering['limit']})",
                           style="dim"))
    for problem in report.problems:
        console.print(Text("problem: ", style="bold red") + Text(problem))


def stats_table(splits: dict[str, SplitStats], title: str) -> Table:
    """One row per split: size, shape, mean/std, range, NaN/inf, labels (dtypes in the title)."""
    dtypes = sorted({f"X {s.X_dtype}, y {s.y_dtype}" for s in splits.values()})
    table = Table(title=f"{title}: {'; '.join(dtypes)}", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for name in ("split", "n", "shape", "mean", "std", "min", "max", "NaN", "inf", "labels"):
        table.add_column(name, justify="left" if name in ("split", "shape") else "right",
                         no_wrap=True)
    for split, s in splits.items():
        shape = "x".join(str(d) for d in s.X_shape[1:]) or "-"
        labels = "-" if s.label_min is None else f"{fmt(s.label_min)}..{fmt(s.label_max)}"
        table.add_row(split, str(s.count), shape, fmt(s.mean), fmt(s.std), fmt(s.min), fmt(s.max),
                      _count(s.nan), _count(s.inf), labels)
    return table


def _count(n: int) -> Text:
    return Text(str(n), style="bold red" if n else "")


def balance_table(splits: dict[str, SplitStats], num_classes: int | None) -> Table:
    """Class balance per split: a sparkline over classes 0..C-1 and the extremes."""
    table = Table(title="Class balance", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("split", "per class", "smallest", "largest", "largest/smallest"):
        table.add_column(name, no_wrap=True, justify="left" if name in ("split", "per class")
                         else "right")
    for split, s in splits.items():
        counts = s.class_counts
        if not counts:
            table.add_row(split, "-", "-", "-", "-")
            continue
        classes = num_classes or (max(counts) + 1)
        if min(counts) >= 0:
            # from the classes present, not a list of all C (labels may run into the millions)
            present = [n for c, n in counts.items() if c < classes]
            smallest = min(present) if len(present) == classes else 0
            largest = max(present, default=0)
            per_class = [counts.get(c, 0) for c in range(min(classes, 65))]
        else:
            per_class = list(counts.values())
            smallest, largest = min(per_class), max(per_class)
        spark = sparkline(per_class[:64]) + ("…" if len(per_class) > 64 else "")
        ratio = "inf" if smallest == 0 else fmt(largest / smallest)
        table.add_row(split, Text(spark, style="cyan"), str(smallest), str(largest),
                      Text(ratio, style="yellow" if smallest == 0 or largest > 3 * smallest else ""))
    return table
