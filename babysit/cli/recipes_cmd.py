"""``babysit recipes [show NAME | copy NAME [DEST]]``: the bundled recipes, to pick one or
copy as a start."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from babysit import __version__
from babysit.atomic import write_bytes
from babysit.cli.app import DEFAULT_RECIPE, App, guard, pass_app
from babysit.errors import BabysitError


def headline(description: str) -> str:
    """The first sentence of a description (the table stays readable at 80 columns)."""
    return re.split(r"(?<=[.!?])\s", description.strip(), maxsplit=1)[0]


def recipes_table(entries, with_paths: bool = False) -> Table:
    """Healthy recipes first, then broken ones (in yellow).

    ``entries``: (name, description, path) from ``list_recipes``. Every file is
    ``<folder>/<name>.yaml``, so only wide terminals get a path column; the
    folder is printed once under the table (see :func:`folder_line`).
    """
    entries = sorted(entries, key=lambda e: (e[0].startswith("broken/"), e[0] != DEFAULT_RECIPE,
                                             e[0]))
    table = Table(title="Bundled recipes", title_justify="left",
                  caption="broken/* recipes carry a deliberate bug for babysit to find; "
                          "`babysit recipes show NAME` prints one, `babysit recipes copy NAME` "
                          "starts your own from it",
                  caption_justify="left")
    table.add_column("name", no_wrap=True)
    # fold, never "…": a class path in a description is one long word
    table.add_column("description", ratio=1, overflow="fold")
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


def folder_line(entries) -> Text:
    """``files: <folder>/<name>.yaml`` on one line: printed without inserted breaks, so a
    long install path is never split mid-word by babysit (copy it whole from a log)."""
    folder = os.path.commonpath([os.path.dirname(p) for _, _, p in entries])
    return Text(f"files: {folder}/<name>.yaml", style="dim")


@click.group("recipes", invoke_without_command=True)
@click.option("--json", "json_path", metavar="PATH|-", default=None,
              help="Write the list as JSON to PATH ('-' = stdout only).")
@click.pass_context
def command(ctx, json_path):
    """List the bundled recipes (use a name as RECIPE in any command).

    \b
    babysit recipes show NAME          print a bundled recipe's YAML
    babysit recipes copy NAME [DEST]   copy it to start your own
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.ensure_object(App)
    with guard(app):
        from babysit.recipes import list_recipes

        entries = list_recipes()
        if json_path != "-":
            if entries:
                app.out.print(recipes_table(entries, with_paths=app.out.width >= 140))
                app.out.print(folder_line(entries), soft_wrap=True)
            else:
                app.warn("no bundled recipes found: the installation looks incomplete")
        if json_path:
            doc = {"babysit": __version__, "command": "recipes",
                   "recipes": [{"name": n, "description": d, "path": p} for n, d, p in entries]}
            app.write_output(json_path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"),
                             "JSON")


def bundled_file(name: str) -> Path:
    """The YAML file of bundled recipe ``name`` (``broken/<name>`` for broken ones).

    Raises BabysitError (exit 2) naming the nearest bundled recipe for an unknown name.
    """
    from babysit.recipes import bundled_recipes
    from babysit.recipes.validate import suggest

    files = bundled_recipes()
    key = name[:-5] if name.endswith(".yaml") else name
    if key not in files:
        raise BabysitError(f"no bundled recipe {name!r}{suggest(key, sorted(files))} "
                           "(`babysit recipes` lists them)")
    return Path(files[key])


@command.command("show", short_help="Print a bundled recipe's YAML.")
@click.argument("name")
@pass_app
def show(app, name):
    """Print the YAML of bundled recipe NAME, comments included (redirect it to a file)."""
    with guard(app):
        text = bundled_file(name).read_text(encoding="utf-8")
        sys.stdout.write(text)
        sys.stdout.flush()


@command.command("copy", short_help="Copy a bundled recipe to start your own.")
@click.argument("name")
@click.argument("dest", required=False, metavar="[DEST]")
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@pass_app
def copy(app, name, dest, force):
    """Copy bundled recipe NAME to DEST (default ./NAME.yaml; a folder gets NAME.yaml inside).

    Never replaces an existing file unless --force. Then edit it and run any
    command on it, e.g. `babysit doctor DEST`.
    """
    from babysit.atomic import make_parents

    with guard(app):
        source = bundled_file(name)
        target = Path(dest) if dest else Path(source.name)
        if target.is_dir() or (dest and dest.endswith(("/", os.sep))):
            target = target / source.name
        if target.exists() and not force:
            app.abort(f"{target} exists; give another DEST or add --force to replace it")
        try:
            make_parents(target)
            write_bytes(target, source.read_bytes())
        except OSError as exc:
            app.abort(f"cannot write {target}: {exc.strerror or exc}")
        app.info(f"copied bundled recipe {name} to {target}; try `babysit doctor {target}`")
