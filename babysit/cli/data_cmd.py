"""``babysit data [RECIPE|SOURCE]``: look at the data before training on it.

Accepts a recipe (bundled name or YAML path: its data section, split and
preprocessing) or a raw source (``builtin:digits``, ``file.h5``, ``file.npz``,
``cifar10:DIR``, ``mnist:DIR``). Exit 0 usable, 1 not usable (NaN/inf, labels
out of range), 2 when the source cannot be read or is malformed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich import box
from rich.table import Table
from rich.text import Text

from babysit.cli import outputs
from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import fitted_tables, fmt, sparkline

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
@output_options(plot=True)
def command(app, target):
    """Inspect a data set: shapes, dtype, class balance, mean/std, range, NaN/inf, labels.

    TARGET is a recipe (default two-layer-digits; its data is shown after its
    split and preprocessing, as the model sees it) or a data source:
    builtin:digits, builtin:spiral, builtin:gaussian, builtin:gratings, FILE.h5,
    FILE.npz, cifar10:DIR, mnist:DIR.
    """
    from babysit.data import inspect_data
    from babysit.diagnostics.data_check import check_data

    if is_source(target):
        if app.options.sets:
            app.abort("--set overrides recipe keys; put the source in a recipe "
                      "(data: {source: ...}) to override its data settings")
        recipe_label = None
        used_seed = app.options.seed or 0
        from babysit.data.sources import source_kind

        with contextlib.suppress(ValueError):   # not a source after all: reading it says so
            app.check_outputs(outputs.data_inputs(*source_kind(target)))
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
    return app.emit(result, draw, plot=lambda r: figure(r, report))


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
        _print_all(console, stats_tables(loaded.splits, "As the model sees it", console.width))
    if report.raw:
        _print_all(console, stats_tables(report.raw, "As stored (raw)", console.width))
        _print_all(console, balance_tables(loaded.splits if loaded else report.raw,
                                           report.num_classes, console.width))
    centering = result.metrics.get("centering") or {}
    if centering.get("ratio") is not None:
        console.print(Text(f"centring: largest per-feature mean = {fmt(centering['ratio'])} std "
                           f"(raw {fmt(centering.get('raw_ratio'))}; limit {centering['limit']})",
                           style="dim"))
    for problem in report.problems:
        console.print(Text("problem: ", style="bold red") + Text(problem))


def _print_all(console, renderables) -> None:
    for renderable in renderables:
        console.print(renderable)


def stats_tables(splits: dict[str, SplitStats], title: str, width: int) -> list[Table]:
    """One row per split: size, shape, mean/std, range, NaN/inf, labels (dtypes in the title)."""
    dtypes = sorted({f"X {s.X_dtype}, y {s.y_dtype}" for s in splits.values()})
    columns = [(name, "left" if name in ("split", "shape") else "right")
               for name in ("split", "n", "shape", "mean", "std", "min", "max", "NaN/\ninf",
                            "labels")]
    rows = []
    for split, s in splits.items():
        shape = "x".join(str(d) for d in s.X_shape[1:]) or "-"
        labels = "-" if s.label_min is None else f"{fmt(s.label_min)}..{fmt(s.label_max)}"
        rows.append([split, str(s.count), shape, fmt(s.mean), fmt(s.std), fmt(s.min), fmt(s.max),
                     _nonfinite(s.nan, s.inf), labels])
    return fitted_tables(columns, rows, width, keep=1, title=f"{title}: {'; '.join(dtypes)}",
                         box=box.SIMPLE_HEAD, pad_edge=False)


def _nonfinite(nan: int, inf: int) -> Text:
    return Text(f"{nan}/{inf}", style="bold red" if nan or inf else "")


SPARK_CLASSES = 64  # classes drawn in the balance sparkline (the rest are counted)


def balance_tables(splits: dict[str, SplitStats], num_classes: int | None,
                   width: int) -> list[Table]:
    """Class balance per split: a sparkline over classes 0..C-1 and the extremes."""
    columns = [("split", "left"), ("per class", "left"), ("smallest", "right"),
               ("largest", "right"), ("largest/\nsmallest", "right")]
    rows = []
    for split, s in splits.items():
        counts = s.class_counts
        if not counts:
            rows.append([split, "-", "-", "-", "-"])
            continue
        classes = num_classes or (max(counts) + 1)
        if min(counts) >= 0:
            # from the classes present, not a list of all C (labels may run into the millions)
            present = [n for c, n in counts.items() if c < classes]
            smallest = min(present) if len(present) == classes else 0
            largest = max(present, default=0)
            per_class = [counts.get(c, 0) for c in range(min(classes, SPARK_CLASSES + 1))]
        else:
            per_class = list(counts.values())
            smallest, largest = min(per_class), max(per_class)
        spark = Text(sparkline(per_class[:SPARK_CLASSES]), style="cyan")
        if len(per_class) > SPARK_CLASSES:
            spark.append(f" +{classes - SPARK_CLASSES} more", style="dim")
        ratio = "inf" if smallest == 0 else fmt(largest / smallest)
        rows.append([split, spark, str(smallest), str(largest),
                     Text(ratio, style="yellow" if smallest == 0 or largest > 3 * smallest else "")])
    return fitted_tables(columns, rows, width, keep=1, title="Class balance", box=box.SIMPLE_HEAD,
                         pad_edge=False)


def figure(result, report: DataReport):
    """The PNG: examples per class and split, and each split's value range (mean ± std, min..max)."""
    from babysit.plots import label_axes, new_figure

    splits = report.loaded.splits if report.loaded else report.raw
    fig, (balance_ax, range_ax) = new_figure(1, 2, width=11, height=4)
    counted = {name: s.class_counts for name, s in splits.items() if s.class_counts}
    classes = sorted({c for counts in counted.values() for c in counts})[:SPARK_CLASSES]
    width = 0.8 / max(1, len(counted))
    for k, (name, counts) in enumerate(counted.items()):
        balance_ax.bar([c + k * width for c in range(len(classes))],
                       [counts.get(c, 0) for c in classes], width=width, label=name)
    balance_ax.set_xticks([c + width * (len(counted) - 1) / 2 for c in range(len(classes))],
                          [str(c) for c in classes], fontsize=8)
    label_axes(balance_ax, "examples per class", "class", "examples")
    balance_ax.legend(fontsize="small")
    names = [n for n, s in splits.items() if s.mean is not None]
    for i, name in enumerate(names):
        s = splits[name]
        range_ax.plot([i, i], [s.min, s.max], color="0.6", linewidth=6, solid_capstyle="butt",
                      label="min..max" if i == 0 else None)
        range_ax.errorbar([i], [s.mean], yerr=[[s.std], [s.std]], fmt="o", color="tab:blue",
                          capsize=6, label="mean ± std" if i == 0 else None)
    range_ax.axhline(0.0, color="black", linewidth=0.8)
    range_ax.set_xticks(range(len(names)), names)
    seen = "as the model sees it" if report.loaded else "as stored"
    label_axes(range_ax, f"values of X ({seen})", "split", "value")
    if names:
        range_ax.legend(fontsize="small")
    fig.suptitle(f"data: {report.source}: {result.status.upper()}", fontweight="bold")
    return fig
