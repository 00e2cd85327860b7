"""``babysit recipes``: the bundled recipes, to pick one or copy as a start."""

from __future__ import annotations

import json

import click
from rich.table import Table

from babysit import __version__
from babysit.cli.app import DEFAULT_RECIPE, guard, pass_app


def recipes_table(entries) -> Table:
    """name / description / path; the default first-class, broken ones marked."""
    table = Table(title="Bundled recipes", title_justify="left",
                  caption="broken/* recipes carry a deliberate bug for babysit to find",
                  caption_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    table.add_column("path", overflow="fold")
    for name, description, path in entries:
        style = "yellow" if name.startswith("broken/") else None
        shown = f"{name} (default)" if name == DEFAULT_RECIPE else name
        table.add_row(shown, description or "", path, style=style)
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
                app.out.print(recipes_table(entries))
            else:
                app.warn("no bundled recipes found: the installation looks incomplete")
        if json_path:
            doc = {"babysit": __version__, "command": "recipes",
                   "recipes": [{"name": n, "description": d, "path": p} for n, d, p in entries]}
            app.write_output(json_path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"),
                             "JSON")
