"""``babysit doctor``: sanity-loss, gradcheck, overfit-tiny, init-stats, lr-probe in one report."""

from __future__ import annotations

import click
from rich import box
from rich.table import Table
from rich.text import Text

from babysit.cli.app import output_options, recipe_options
from babysit.cli.render import (SEVERITY_ORDER, SEVERITY_STYLES, TABLE_FINDINGS, WIDE, fmt,
                                 percent, status_badge)
from babysit.cli.views.gradcheck import band_range, worst_judged


def part_list(ctx, param, value):
    """``"gradcheck,lr-probe"`` -> ``("gradcheck", "lr-probe")``, each a doctor part."""
    from babysit.diagnostics.doctor import PARTS

    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if name not in PARTS:
            from babysit.recipes.validate import suggest

            raise click.BadParameter(f"unknown part {name!r}{suggest(name, PARTS)}; the parts "
                                     f"are {','.join(PARTS)}", ctx=ctx, param=param)
    if not names:
        raise click.BadParameter(f"give parts, e.g. {','.join(PARTS)}", ctx=ctx, param=param)
    return names


@click.command("doctor")
@click.argument("recipe", required=False)
@click.option("--only", metavar="PART,...", callback=part_list, default=None,
              help="Run only these parts (sanity-loss, gradcheck, overfit-tiny, init-stats, "
                   "lr-probe), in protocol order.")
@click.option("--skip", metavar="PART,...", callback=part_list, default=None,
              help="Run every part but these.")
@click.option("--stop-early", is_flag=True,
              help="Stop at the first failing part (the rest are reported as not run).")
@recipe_options
@output_options(plot=True)
def command(app, recipe, only, skip, stop_early):
    """Run the protocol's checks on RECIPE and print one consolidated report.

    In order: sanity-loss, gradcheck, overfit-tiny, init-stats, lr-probe
    (choose with --only or --skip). Exit 1 when any part fails (warnings too
    with --strict). --json nests each part's full result under "parts", keyed
    by command; --junit writes one testsuite per part; --plot draws one panel
    per part.
    """
    from babysit.cli.progress import StepDisplay
    from babysit.diagnostics.doctor import PARTS, doctor

    if only and skip:
        app.abort("give --only or --skip, not both")
    parts = [p for p in PARTS if (only is None or p in only) and (skip is None or p not in skip)]
    if not parts:
        app.abort(f"--skip leaves no part to run (the parts are {','.join(PARTS)})")
    spec = app.load_recipe(recipe)
    started, finished = [], {}
    app.partial_result = lambda status, message: stopped_doctor(spec, parts, started, finished,
                                                                status, message)
    with StepDisplay(app, "doctor") as show:
        result = doctor(spec, stop_early=stop_early, parts=parts, progress=show,
                        before_part=started.append,
                        on_part=lambda name, part: finished.__setitem__(name, part))
    return app.emit(result, render, plot=figure)


def figure(result):
    """The PNG: one panel per part that ran (see :mod:`babysit.cli.views.panels`)."""
    from babysit.cli.views.panels import doctor_figure

    return doctor_figure(result)


def stopped_doctor(spec, parts: list, started: list, finished: dict, status: str, message: str):
    """The doctor Result of a run that stopped (exit 2 or 130), for --json and --junit.

    Of the selected ``parts``, those already finished are kept whole; the part
    that was running gets the stop's status (error|interrupted) in
    ``metrics["statuses"]``; the rest are not run.
    """
    from babysit.diagnostics.common import new_result
    from babysit.diagnostics.doctor import NOT_RUN

    result = new_result("doctor", spec, spec.seed)
    result.stopped, result.error = status, message
    result.parts = dict(finished)
    running = next((name for name in started if name not in finished), None)
    statuses = {name: finished[name].status if name in finished else
                status if name == running else NOT_RUN for name in parts}
    result.metrics = {"statuses": statuses,
                      "not_run": [name for name, value in statuses.items() if value == NOT_RUN]}
    return result


# -- the consolidated table -------------------------------------------------------

def _sanity_figure(m: dict) -> str:
    return f"loss {fmt(m.get('initial_loss'))} (expected {fmt(m.get('expected_loss'))})"


def _gradcheck_figure(m: dict) -> str:
    """The error the verdict used (the worst judged one) and its band, as gradcheck shows it."""
    worst, verdict = worst_judged(m)
    if worst is None:
        return "nothing judged"
    return f"judged rel error {fmt(worst)} ({verdict}: {band_range(verdict, m.get('has_kinks', True))})"


def _overfit_figure(m: dict) -> str:
    return (f"train acc {percent(m.get('train_accuracy'))}, loss {fmt(m.get('final_loss'))} "
            f"after {fmt(m.get('epochs_run'))} epochs")


def _init_stats_figure(m: dict) -> str:
    layers = [layer for layer in (m.get("layers") or []) if isinstance(layer, dict)]
    if not layers:
        return "-"
    dead = [layer.get("dead") for layer in layers
            if isinstance(layer.get("dead"), (int, float))]
    text = (f"std {fmt(layers[0].get('std'))} -> {fmt(layers[-1].get('std'))} "
            f"over {len(layers)} layers")
    return text + (f", max dead {percent(max(dead))}" if dead else "")


def _lr_probe_figure(m: dict) -> str:
    good = m.get("good_range")
    span = f"[{fmt(good[0])}, {fmt(good[1])}]" if good else "none"
    return (f"good lr {span}, suggested {fmt(m.get('suggested_lr'))}, "
            f"recipe {fmt(m.get('recipe_lr'))}")


# part (command) -> its key figure from its metrics; one per doctor part.
KEY_FIGURES = {"sanity-loss": _sanity_figure, "gradcheck": _gradcheck_figure,
               "overfit-tiny": _overfit_figure, "init-stats": _init_stats_figure,
               "lr-probe": _lr_probe_figure}


def key_figure(command: str, metrics: dict) -> str:
    """The one number (or two) that says how a part went, from its metrics ("-" if unknown)."""
    figure = KEY_FIGURES.get(command)
    return figure(metrics or {}) if figure is not None else "-"


def top_finding(part):
    """The most severe finding of a part (the first of its severity), or None."""
    if not part.findings:
        return None
    return min(part.findings, key=lambda f: SEVERITY_ORDER[f.severity])


def finding_cell(part, wide: bool) -> Text:
    """``code (layer)`` of the top finding, its message when there is room, ``+N more``."""
    finding = top_finding(part)
    if finding is None:
        return Text("no findings", style="dim")
    cell = Text(finding.code, style=SEVERITY_STYLES[finding.severity])
    if finding.layer:
        cell.append(f" ({finding.layer})")
    if wide:
        cell.append(f": {finding.message}")
    others = len(part.findings) - 1
    if others:
        cell.append(f" +{others} more", style="dim")
    return cell


def doctor_table(result, width: int = WIDE) -> Table:
    """One row per part: status, key figure, top finding and its fix, time.

    Below ``WIDE`` columns the top finding is its code only: the findings that
    follow carry every message in full. Below ``TABLE_FINDINGS`` columns the
    table stacks each part: name, status and time in one column, key figure and
    top finding in the other (six columns would squeeze numbers).
    """
    from babysit.diagnostics.doctor import NOT_RUN

    if width < TABLE_FINDINGS:
        return _narrow_table(result)
    wide = width >= WIDE
    table = Table(title=f"Doctor: {result.recipe}", title_justify="left")
    table.add_column("part", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("key figure", ratio=2)
    # fold, not ellipsis: a finding code cut short ("cannot_overf…") is useless.
    table.add_column("top finding", ratio=3 if wide else 2, overflow="fold")
    table.add_column("fix", ratio=2, overflow="fold")
    table.add_column("time", justify="right", no_wrap=True)
    for command, status in result.metrics["statuses"].items():
        if status == NOT_RUN:
            table.add_row(command, status_badge(status), Text(_not_run_note(result), style="dim"),
                          "", "", "")
            continue
        part = result.parts[command]
        finding = top_finding(part)
        fix = Text(finding.fix or "", style="green") if finding is not None else ""
        table.add_row(command, status_badge(part.status), key_figure(command, part.metrics),
                      finding_cell(part, wide), fix, _elapsed(part))
    return table


def _elapsed(part) -> str:
    return f"{part.elapsed:.1f}s" if part.elapsed is not None else ""


def _not_run_note(result) -> str:
    return "skipped (--stop-early)" if result.metrics.get("stopped_early", True) else "skipped"


def _narrow_table(result) -> Table:
    """Two columns: part (status badge and time below its name) | key figure and top finding."""
    from babysit.diagnostics.doctor import NOT_RUN

    table = Table(title=f"Doctor: {result.recipe}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    table.add_column("part", no_wrap=True)
    table.add_column("key figure / top finding", overflow="fold")
    for command, status in result.metrics["statuses"].items():
        name = Text(command + "\n", style="bold")
        if status == NOT_RUN:
            table.add_row(name + status_badge(status), Text(_not_run_note(result), style="dim"))
            continue
        part = result.parts[command]
        name.append_text(status_badge(part.status))
        name.append(" " + _elapsed(part), style="dim")
        detail = Text(key_figure(command, part.metrics) + "\n")
        detail.append_text(finding_cell(part, wide=False))
        table.add_row(name, detail, end_section=True)
    return table


def render(console, result) -> None:
    console.print(doctor_table(result, console.width))
