"""The ``babysit`` command line: one click group, one module per command.

Commands are registered from :data:`COMMAND_MODULES` in protocol order; each
module ``babysit.cli.<name>`` exposes a click command named ``command`` that
runs through the shared :class:`babysit.cli.app.App`. Renderings shared by
several commands live in :mod:`babysit.cli.views`: commands never import
each other.
"""

from __future__ import annotations

import importlib
import sys

import click

from babysit import __version__
from babysit.cli.app import EXIT_INTERRUPTED, App, guard

# Listing order of `babysit --help`: look at the data, then the protocol steps.
COMMAND_MODULES = (
    "recipes_cmd", "data_cmd", "sanity_loss", "gradcheck", "lr_probe", "init_stats",
    "overfit_tiny", "train", "report", "doctor", "search",
)

HELP = """Babysit the training of a neural network (the CS231n protocol).

\b
Work through the protocol in order; each step reports findings with
evidence and a fix, and exits 0 (healthy), 1 (a diagnosis failed) or
2 (bad usage or input):
  1. data          look at the data: shapes, balance, centring, NaN
  2. sanity-loss   loss at init is ln C (softmax) and rises with reg
  3. gradcheck     analytic vs numerical gradients (float64)
  4. lr-probe      find the learning-rate range
  5. init-stats    per-layer activations and gradients at init
  6. overfit-tiny  the model must overfit ~20 examples
  7. train         train, watching loss, accuracy gap, update ratios
  doctor runs steps 2-6 in one report; search tunes hyperparameters.

\b
Every command takes a RECIPE: a bundled name (see `babysit recipes`) or a
YAML path; the default is two-layer-digits. Common options: --seed N,
--set KEY=VALUE, --json PATH|-, --junit PATH|-, --plot PATH.png, --quiet,
--strict (warnings fail too).

\b
A custom layer (`custom: pkg.module:Class` in a recipe, a --set, a run log's
recipe, or gradcheck --layer) is imported and run as code: use only recipes
and run logs you trust. Anything else babysit reads (YAML, HDF5, NPZ,
CIFAR-10 pickles) is data and never runs code. Ctrl-C or SIGTERM: exit 130.
"""


class BabysitGroup(click.Group):
    """Lists commands in registration (protocol) order and guards every command."""

    def list_commands(self, ctx):
        return list(self.commands)

    def format_commands(self, ctx, formatter):
        """Each command with the first sentence of its help, wrapped, never cut with "..."."""
        rows = [(name, one_line_help(self.commands[name])) for name in self.list_commands(ctx)
                if not self.commands[name].hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        # Commands built with output_options guard themselves; this catches the rest
        # (commands without them, and errors raised while resolving the command).
        with guard(ctx.ensure_object(App)):
            return super().invoke(ctx)


def one_line_help(command: click.Command) -> str:
    """A command's ``short_help``, else the first sentence of its help."""
    if command.short_help:
        return command.short_help
    first = (command.help or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split(". ", 1)[0].split()).rstrip(".") + "."


@click.group(cls=BabysitGroup, help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="babysit")
@click.pass_context
def cli(ctx):
    ctx.ensure_object(App)


def register_commands(group: click.Group, names=COMMAND_MODULES) -> None:
    """Add the ``command`` of each module ``babysit.cli.<name>``, in order."""
    for name in names:
        group.add_command(importlib.import_module(f"{__name__}.{name}").command)


register_commands(cli)


def main(argv=None) -> None:
    """Run the command line (the console script is :func:`babysit.__main__.main`).

    SIGINT and SIGTERM end it with exit 130 (:mod:`babysit.interrupts`); the
    caller's handlers are back when it returns (a program calling it in-process).
    """
    from babysit import interrupts

    previous = interrupts.install()
    try:
        code = cli.main(args=argv, prog_name="babysit", standalone_mode=False)
    except click.ClickException as exc:  # usage errors: click's message, exit 2
        exc.show()
        code = exc.exit_code
    except (click.Abort, KeyboardInterrupt):  # click.Abort: Ctrl-C while click was parsing
        interrupts.stopping()
        App().err.print("interrupted")
        code = EXIT_INTERRUPTED
    finally:
        interrupts.restore(previous)
    sys.exit(code if isinstance(code, int) else 0)
