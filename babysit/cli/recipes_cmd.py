"""``babysit recipes``: the bundled recipes, to pick one or copy as a start."""

from __future__ import annotations

import json
import os
import re

import click
from rich.table import Table

from babysit import __version__
from babysit.cli.app import DEFAULT_RECIPE, guard, pass_app


def headline(description: str) -> str:
    """The first sentence of a description (the table stays readable at 80 columns)."""
    return re.split(r"(?<=[.!?])\s", description.strip(), maxsplit=1)[0]


def recipes_table(entries, with_paths: bool = False) -> Table:
    """Healthy recipes first, then broken ones (in yellow).

    ``entries``: (name, description, path) from ``list_recipes``. Every file is
    ``<folder>/<name>.yaml``, so narrow terminals get the folder once in the
    caption instead of a path column.
    """
    entries = sorted(entries, key=lambda e: (e[0].startswith("broken/"), e[0] != DEFAULT_RECIPE,
                                             e[0]))
    folder = os.path.commonpath([os.path.dirname(p) for _, _, p in entries])
    table = Table(title="Bundled recipes", title_justify="left",
                  caption=f"files: {folder}/<name>.yaml (copy one to start your own); "
                          f"broken/* recipes carry a deliberate bug for babysit to find",
                  caption_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("description", ratio=1)
    if with_paths:
        table.add_column("path", no_wrap=True)
    for name, description, path in entries:
        style = "yellow" if name.startswith("broken/") else None
        row = [f"{name} (default)" if name == DEFAULT_RECIPE else name,
               headline(description or "")]
        if with_paths:
            row.append(path)
        table.add_row(*row, style=style)
    return table


@click.command("recipes")
@click.option("--json", "json_path", metavar="PATH|-", default=None,
              help="Write the list as JSON to PATH ('-' = stdout only).")
@pass_app
def command(app, json_path):
    """List the bundled recipes (use a name as RECIPE in any command)."""
    with guard(app):
        from babysit.recipes import list_recipes

        entries = list_recipes()
        if json_path != "-":
            if entries:
                app.out.print(recipes_table(entries, with_paths=app.out.width >= 140))
            else:
                app.warn("no bundled recipes found: the installation looks incomplete")
        if json_path:
            doc = {"babysit": __version__, "command": "recipes",
                   "recipes": [{"name": n, "description": d, "path": p} for n, d, p in entries]}
            app.write_output(json_path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"),
                             "JSON")
