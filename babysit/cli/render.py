"""Shared Rich rendering: status, findings, metrics, numbers, terminal charts.

Every command draws its own tables with these helpers; ``App.emit`` closes each
report with :func:`summary` (findings table + status line), so the verdict looks
the same everywhere.
"""

from __future__ import annotations

import io
import math
from typing import Iterable, Mapping, Sequence

from rich.console import Console, Group
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

# One style table per vocabulary. Result/part statuses (doctor's skipped parts
# are "not run", diagnostics.doctor.NOT_RUN):
STATUS_STYLES = {"pass": "bold white on green", "warn": "bold black on yellow",
                 "fail": "bold white on red", "not run": "dim reverse"}
# Finding severities, most severe first (the order of every findings listing):
SEVERITY_ORDER = {"fail": 0, "warn": 1, "info": 2}
SEVERITY_STYLES = {"fail": "bold red", "warn": "yellow", "info": "cyan"}
SERIES_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "red")
SERIES_MARKS = ("●", "×", "+", "o", "*", "#")
SPARKS = "▁▂▃▄▅▆▇█"
WIDE = 120  # columns from which the findings table gets a separate "fix" column
# Below this many columns findings are listed one block each (severity, code,
# where; then message and fix at full width) instead of squeezed into a table.
TABLE_FINDINGS = 100


# -- numbers ------------------------------------------------------------------

def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; scientific when tiny or huge.

    ``2.302585 -> "2.30"``, ``0.01234 -> "0.0123"``, ``1.5e-5 -> "1.50e-05"``,
    ``12345.0 -> "1.23e+04"``; ints stay ints below 1e6; None -> "-".
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    if _is_integer(value):
        value = int(value)
        return str(value) if abs(value) < 10**6 else f"{value:.{digits - 1}e}"
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 1e-3 or magnitude >= 1e4:
        return f"{value:.{digits - 1}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    text = f"{value:.{decimals}f}"
    if abs(float(text)) >= 1e4:  # rounding pushed it over the edge (9999.6)
        return f"{value:.{digits - 1}e}"
    return text


def _is_integer(value) -> bool:
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return True
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return isinstance(value, int)


def percent(fraction, digits: int = 3) -> str:
    """0.1234 -> "12.3%"."""
    if fraction is None:
        return "-"
    return fmt(100.0 * float(fraction), digits) + "%"


# -- status and findings ------------------------------------------------------

def status_badge(status: str) -> Text:
    """`` PASS `` / `` WARN `` / `` FAIL `` on green / yellow / red (`` NOT RUN `` dimmed)."""
    return Text(f" {status.upper()} ", style=STATUS_STYLES.get(status, "bold"))


def status_line(result, strict: bool = False) -> Text:
    """"<badge> <command>: N failures, M warnings" (+ the --strict consequence)."""
    counts = _severity_counts(all_findings(result))
    line = status_badge(result.status)
    line.append(f" {result.command}")
    parts = []
    if counts["fail"]:
        parts.append(_plural(counts["fail"], "failure"))
    if counts["warn"]:
        parts.append(_plural(counts["warn"], "warning"))
    line.append(": " + (", ".join(parts) if parts else "healthy"))
    if strict and result.status == "warn":
        line.append(" (--strict: warnings fail)", style="yellow")
    return line


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _severity_counts(pairs) -> dict:
    counts = dict.fromkeys(SEVERITY_ORDER, 0)
    for _, finding in pairs:
        counts[finding.severity] += 1
    return counts


def all_findings(result) -> list:
    """(part name or None, finding) pairs: the result's own, then each part's."""
    pairs = [(None, f) for f in result.findings]
    for name, part in result.parts.items():
        pairs.extend((name, f) for f in part.findings)
    return pairs


def findings_table(pairs: Sequence, title: str | None = "Findings",
                   fix_column: bool = True) -> Table:
    """Severity, code, layer, message, fix; a "part" column when parts are given.

    ``pairs`` is a list of (part or None, Finding) as from :func:`all_findings`,
    or plain findings. Failures first, then warnings, then info. With
    ``fix_column=False`` (narrow terminals) the fix goes under the message.
    """
    pairs = [p if isinstance(p, tuple) else (None, p) for p in pairs]
    pairs = sorted(pairs, key=lambda p: SEVERITY_ORDER[p[1].severity])  # stable within severity
    with_part = any(part is not None for part, _ in pairs)
    table = Table(title=title, title_justify="left", show_lines=not fix_column)
    table.add_column("severity", no_wrap=True)
    if with_part:
        table.add_column("part", no_wrap=True)
    table.add_column("code", no_wrap=True)
    table.add_column("layer", no_wrap=True)
    table.add_column("message" if fix_column else "message / fix", ratio=3)
    if fix_column:
        table.add_column("fix", ratio=2)
    for part, finding in pairs:
        row = [Text(finding.severity.upper(), style=SEVERITY_STYLES[finding.severity])]
        if with_part:
            row.append(part or "")
        row += [Text(finding.code), Text(finding.layer or "-")]
        fix = Text(finding.fix or "", style="green")
        if fix_column:
            row += [Text(finding.message), fix]
        else:
            message = Text(finding.message)
            if finding.fix:
                message.append("\nfix: ", style="bold green")
                message.append(fix)
            row.append(message)
        table.add_row(*row)
    return table


def findings_list(pairs: Sequence, title: str | None = "Findings") -> Group:
    """The findings for narrow terminals: one block each, nothing cut.

    ``FAIL  code  (part, layer)`` on one line, then the message and the fix
    indented below it, wrapped at the terminal's width (a table would squeeze
    them into a column a few characters wide).
    """
    pairs = [p if isinstance(p, tuple) else (None, p) for p in pairs]
    pairs = sorted(pairs, key=lambda p: SEVERITY_ORDER[p[1].severity])
    blocks = [Text(title, style="bold")] if title else []
    for part, finding in pairs:
        head = Text(finding.severity.upper().ljust(5), style=SEVERITY_STYLES[finding.severity])
        head.append(" " + finding.code, style="bold")
        where = [w for w in (part, finding.layer) if w]
        if where:
            head.append(f" ({', '.join(where)})")
        body = Text(finding.message)
        if finding.fix:
            body.append("\nfix: ", style="bold green")
            body.append(finding.fix, style="green")
        blocks += [head, Padding(body, (0, 0, 0, 6))]
    return Group(*blocks)


def findings_view(pairs: Sequence, width: int, title: str | None = "Findings"):
    """A findings table from ``TABLE_FINDINGS`` columns on, else :func:`findings_list`."""
    if width >= TABLE_FINDINGS:
        return findings_table(pairs, title=title, fix_column=width >= WIDE)
    return findings_list(pairs, title=title)


def summary(console, result, strict: bool = False) -> None:
    """Findings (if any, parts' findings included) and the status line.

    Called by ``App.emit`` after the command's own ``render``: every report ends
    the same way. (A doctor render draws its own per-part overview.)
    """
    pairs = all_findings(result)
    if pairs:
        console.print(findings_view(pairs, console.width))
    console.print(status_line(result, strict=strict))


# -- tables that fit the terminal ------------------------------------------------

def fitted_tables(columns: Sequence, rows: Sequence, width: int, keep: int = 1,
                  title: str | None = None, caption: str | None = None,
                  row_styles: Sequence | None = None, **options) -> list[Table]:
    """A table of numbers that fits ``width`` columns without cutting a cell.

    ``columns``: ``(header, justify)`` pairs (a header may have a second line
    after ``\n``); ``rows``: cells (str or Text) per row; ``row_styles``: a
    style (or None) per row; ``options`` go to every ``rich.table.Table``.
    Cells never wrap: when all columns do not fit, the table is split into
    several, each repeating the first ``keep`` columns (the row's key), the
    later ones titled "(continued)". Overflow folds rather than ends in "…"
    (only a single column wider than the terminal could get there).
    """
    groups = _column_groups(columns, rows, width, keep, options)
    tables = []
    for n, group in enumerate(groups):
        last = n == len(groups) - 1
        heading = title if n == 0 else (title and f"{title} (continued)")
        # as wide as its title where the terminal allows (a narrow table would wrap it)
        minimum = min(width, len(heading)) if heading else None
        table = _table([columns[i] for i in group], [[row[i] for i in group] for row in rows],
                       row_styles, title=heading, caption=caption if last else None,
                       min_width=minimum, **options)
        tables.append(table)
    return tables


def _table(columns, rows, row_styles=None, **options) -> Table:
    options.setdefault("title_justify", "left")
    options.setdefault("caption_justify", "left")
    table = Table(**options)
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=True, overflow="fold")
    for index, row in enumerate(rows):
        table.add_row(*row, style=row_styles[index] if row_styles else None)
    return table


def table_width(table) -> int:
    """The columns ``table`` needs to show every cell on one line."""
    console = Console(width=100_000, file=io.StringIO())
    return Measurement.get(console, console.options, table).maximum


def _column_groups(columns, rows, width: int, keep: int, options) -> list[list[int]]:
    """Indexes of the columns of each table: greedily as many as fit, key columns in each."""
    key = list(range(min(keep, len(columns))))
    groups, current = [], list(key)
    for index in range(len(key), len(columns)):
        trial = current + [index]
        fits = table_width(_table([columns[i] for i in trial], [[row[i] for i in trial]
                                                                for row in rows], **options)) <= width
        if fits or len(current) == len(key):
            current = trial
        else:
            groups.append(current)
            current = key + [index]
    groups.append(current)
    return groups


def metrics_table(metrics: Mapping | Iterable, title: str | None = None,
                  headers: Sequence[str] = ("metric", "value")) -> Table:
    """Two columns of key/value rows; values go through :func:`fmt`."""
    items = metrics.items() if isinstance(metrics, Mapping) else metrics
    table = Table(title=title, title_justify="left")
    table.add_column(headers[0], no_wrap=True)
    table.add_column(headers[1], justify="right")
    for key, value in items:
        table.add_row(str(key), value if isinstance(value, Text) else fmt(value))
    return table


# -- terminal charts ----------------------------------------------------------

def sparkline(counts: Sequence[float]) -> str:
    """One character per bin, ▁..█ scaled to the largest count; empty bins are spaces."""
    values = [float(c) for c in counts]
    top = max(values, default=0.0)
    if top <= 0:
        return " " * len(values)
    chars = []
    for value in values:
        if value <= 0 or not math.isfinite(value):
            chars.append(" ")
        else:
            chars.append(SPARKS[min(len(SPARKS) - 1, int(value / top * (len(SPARKS) - 1) + 0.5))])
    return "".join(chars)


def histogram_line(counts: Sequence[float], edges: Sequence[float]) -> Text:
    """"lo ▁▃█▅▂ hi": a compact per-layer histogram (edges has len(counts)+1 values)."""
    line = Text(fmt(edges[0]) + " ", style="dim")
    line.append(sparkline(counts), style="cyan")
    line.append(" " + fmt(edges[-1]), style="dim")
    return line


def line_plot(series: Mapping[str, tuple], width: int = 72, height: int = 14,
              logx: bool = False, logy: bool = False, title: str | None = None,
              xlabel: str = "", ylim: tuple | None = None) -> Text:
    """A small terminal chart of one or more (x, y) series.

    ``series`` maps a label to ``(xs, ys)`` (equal-length sequences); points with
    a non-finite y (NaN loss) or a non-positive coordinate on a log axis are
    skipped. ``width`` is the whole chart including the y labels (fits 60-80
    columns). ``ylim`` clips the y range (useful when a diverging run would
    squash every other curve). Returns a Rich Text: print it.
    """
    prepared = {}
    for label, (xs, ys) in series.items():
        points = [(float(x), float(y)) for x, y in zip(xs, ys)
                  if _plottable(x, logx) and _plottable(y, logy)]
        if ylim is not None:
            points = [(x, min(max(y, ylim[0]), ylim[1])) for x, y in points]
        prepared[label] = sorted(points)
    text = Text()
    if title:
        text.append(title + "\n", style="bold")
    all_points = [p for points in prepared.values() for p in points]
    if not all_points:
        text.append("(nothing to plot: no finite values)\n", style="dim")
        return text

    tx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    ty = (lambda v: math.log10(v)) if logy else (lambda v: v)
    x_lo, x_hi = _span([tx(x) for x, _ in all_points])
    y_lo, y_hi = _span([ty(y) for _, y in all_points])
    y_labels = [fmt(10**v if logy else v) for v in (y_hi, (y_lo + y_hi) / 2, y_lo)]
    label_width = max(len(s) for s in y_labels)
    cols = max(10, width - label_width - 2)
    rows = max(4, height)
    grid = [[(" ", None)] * cols for _ in range(rows)]

    def row_of(y):
        return rows - 1 - round((ty(y) - y_lo) / (y_hi - y_lo) * (rows - 1))

    for index, (label, points) in enumerate(prepared.items()):
        mark, style = SERIES_MARKS[index % len(SERIES_MARKS)], SERIES_STYLES[index % len(SERIES_STYLES)]
        previous = None
        for col, y in _resample(points, tx, x_lo, x_hi, cols):
            row = row_of(y)
            if previous is not None and previous[0] == col - 1 and abs(previous[1] - row) > 1:
                # Join steep segments so a curve reads as a line, not scattered dots.
                step = 1 if row > previous[1] else -1
                for r in range(previous[1] + step, row, step):
                    if grid[r][col - 1][0] == " ":
                        grid[r][col - 1] = ("│", style)
            grid[row][col] = (mark, style)
            previous = (col, row)

    for r in range(rows):
        if r == 0:
            label = y_labels[0]
        elif r == rows // 2:
            label = y_labels[1]
        elif r == rows - 1:
            label = y_labels[2]
        else:
            label = ""
        text.append(label.rjust(label_width) + " ┤", style="dim")
        for char, style in grid[r]:
            text.append(char, style=style)
        text.append("\n")
    text.append(" " * label_width + " └" + "─" * cols + "\n", style="dim")
    left = fmt(10**x_lo if logx else x_lo)
    right = fmt(10**x_hi if logx else x_hi)
    middle = xlabel + (" (log)" if logx and xlabel else "")
    gap = max(1, cols - len(left) - len(right) - len(middle))
    axis = left + " " * (gap // 2) + middle + " " * (gap - gap // 2) + right
    text.append(" " * (label_width + 2) + axis + "\n", style="dim")
    if len(prepared) > 1 or logy:
        legend = Text(" " * (label_width + 2))
        for index, label in enumerate(prepared):
            legend.append(SERIES_MARKS[index % len(SERIES_MARKS)] + " " + label + "  ",
                          style=SERIES_STYLES[index % len(SERIES_STYLES)])
        if logy:
            legend.append("(log y)", style="dim")
        text.append(legend)
        text.append("\n")
    return text


def _plottable(value, log: bool) -> bool:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and (value > 0 or not log)


def _span(values: list) -> tuple:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = 0.5 * abs(hi) if hi else 1.0
        return lo - pad, hi + pad
    return lo, hi


def _resample(points: list, tx, x_lo: float, x_hi: float, cols: int):
    """(column, y) for each column the series covers, interpolating between points.

    Interpolating keeps sparse series (a handful of probed LRs) connected and
    dense ones (thousands of iterations) to one mark per column (the mean).
    """
    if len(points) == 1:
        x, y = points[0]
        yield _column(tx(x), x_lo, x_hi, cols), y
        return
    buckets: dict = {}
    for x, y in points:
        buckets.setdefault(_column(tx(x), x_lo, x_hi, cols), []).append(y)
    columns = sorted(buckets)
    means = {c: sum(buckets[c]) / len(buckets[c]) for c in columns}
    for left, right in zip(columns, columns[1:]):
        yield left, means[left]
        for c in range(left + 1, right):
            t = (c - left) / (right - left)
            yield c, means[left] + t * (means[right] - means[left])
    yield columns[-1], means[columns[-1]]


def _column(x: float, lo: float, hi: float, cols: int) -> int:
    return min(cols - 1, max(0, round((x - lo) / (hi - lo) * (cols - 1))))
