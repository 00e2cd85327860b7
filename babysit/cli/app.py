"""The application object every command runs through, and the option decorators.

One :class:`App` per invocation holds the two consoles (results on stdout,
progress and errors on stderr) and the shared options, parsed once into
``app.options``. A command declares only the options it uses and receives the
App plus its own options::

    @click.command("sanity-loss")
    @click.argument("recipe", required=False)
    @click.option("--examples", ...)
    @recipe_options                      # --seed --set
    @output_options(plot=False)          # --json --junit [--plot] --quiet --strict
    def command(app, recipe, examples):
        spec = app.load_recipe(recipe)    # --set and --seed applied
        result = sanity_loss(spec, examples=examples)   # a diagnostics Result
        return app.emit(result, render)   # report, JSON, JUnit, PNG, exit code

``output_options`` also runs the command: it turns user errors into one line on
stderr with exit 2 and exits with the code ``emit`` returned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable

import click
from rich.console import Console
from rich.text import Text

from babysit import interrupts
from babysit.atomic import WriteError, blocking_file, make_parents, write_bytes
from babysit.cli import outputs, stopped
from babysit.errors import BabysitError
from babysit.validation import MAX_SEED

DEFAULT_RECIPE = "two-layer-digits"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class CommonOptions:
    """The shared options as parsed from the command line (defaults when not declared).

    Field names are the keyword names the option decorators give click; the
    command runner takes them out of the command's arguments into ``app.options``.
    """

    seed: int | None = None  # --seed (recipe_options)
    sets: tuple = ()  # --set, ("KEY=VALUE", ...) in command-line order (recipe_options)
    json_path: str | None = None  # --json, "-" = stdout
    junit_path: str | None = None  # --junit
    plot_path: str | None = None  # --plot (output_options(plot=True))
    quiet: bool = False
    strict: bool = False


_COMMON_NAMES = tuple(field.name for field in dataclasses.fields(CommonOptions))


class PipeConsole(Console):
    """A Rich console that ends the command with :func:`closed_pipe` when its reader goes away
    (Rich's own default is exit code 1, which reads as "a diagnosis failed")."""

    def on_broken_pipe(self) -> None:
        closed_pipe()


class App:
    """One invocation of ``babysit``: consoles, flags, recipe loading, output."""

    def __init__(self, options: CommonOptions | None = None):
        # Console(file=None) resolves sys.stdout/sys.stderr at write time, so
        # redirected streams (tests, `2>log`) are honoured.
        self.out = PipeConsole(highlight=False)
        self.err = PipeConsole(stderr=True, highlight=False)
        self.options = options or CommonOptions()
        self.exit_code = EXIT_OK
        # What the documents of a command that stops (exit 2/130) say: see cli/stopped.py.
        self.command: str | None = None         # set by output_options
        self.recipe = None                      # the recipe, once load_recipe succeeded
        self.recipe_arg: str | None = None      # RECIPE as given, before it is loaded
        self.partial_result: Callable | None = None  # (status, message) -> Result (doctor)
        self.emitted = None                     # the Result emit was reporting, if any
        self.wrote_stdout = False               # a document already went to stdout
        self.stopping = False
        self.start_dir: str | None = None       # outputs are written relative to it (cli/outputs.py)
        self.extra_outputs: list = []           # a command's own outputs, e.g. [("--out", path)]
        self.refused_outputs: set = set()       # outputs refused as clashing: never written

    @property
    def quiet(self) -> bool:
        return self.options.quiet

    @property
    def strict(self) -> bool:
        return self.options.strict

    @property
    def report(self) -> Console:
        """Where the human report goes: stdout, or stderr when ``--json -`` or
        ``--junit -`` owns stdout (stdout then carries that one document only)."""
        return self.err if "-" in (self.options.json_path, self.options.junit_path) else self.out

    # -- messages ---------------------------------------------------------

    def abort(self, message: str, code: int = EXIT_USAGE):
        """Print ``error: <message>`` on stderr (one line, no traceback) and exit.

        The --json/--junit documents say so too (:mod:`babysit.cli.stopped`).
        """
        line = Text("error: ", style="bold red")
        line.append(str(message))
        self.err.print(line, soft_wrap=True)
        stopped.write_documents(self, "error", str(message))
        raise SystemExit(code)

    def interrupted(self, message: str = "interrupted"):
        """Ctrl-C or SIGTERM: ``message`` on stderr, documents with status interrupted, exit 130."""
        interrupts.stopping()  # a second signal exits at once, no traceback
        self.err.print(Text(message, style="bold red"))
        stopped.write_documents(self, "interrupted", message)
        raise SystemExit(EXIT_INTERRUPTED)

    def info(self, message: str) -> None:
        """Progress note on stderr (silenced by --quiet); never mixes with --json -."""
        if not self.quiet:
            self.err.print(Text(message, style="dim"), soft_wrap=True)

    def warn(self, message: str) -> None:
        """A note the user should see even with --quiet (on stderr)."""
        line = Text("warning: ", style="bold yellow")
        line.append(message)
        self.err.print(line, soft_wrap=True)

    # -- inputs -----------------------------------------------------------

    def load_recipe(self, recipe_arg: str | None = None):
        """Load RECIPE (a bundled name or a YAML path; default two-layer-digits).

        Applies the ``--set`` overrides of ``app.options``, then its ``--seed``
        through ``Recipe.with_seed`` (the seed is resolved once, into the recipe).
        Raises RecipeError (exit 2) for a bad recipe or override.
        """
        from babysit.recipes import load_recipe

        self.recipe_arg = recipe_arg or DEFAULT_RECIPE
        try:
            overrides = [check_set(text) for text in self.options.sets]
        except ValueError as exc:  # an App built in code: click checked the command line
            raise click.UsageError(f"--set: {exc}") from None
        recipe = load_recipe(recipe_arg or DEFAULT_RECIPE, overrides=overrides or None)
        self.recipe = recipe.with_seed(self.options.seed)
        self.check_outputs(outputs.recipe_inputs(self.recipe))
        return self.recipe

    def check_outputs(self, inputs: list[tuple[str, str]] = ()) -> None:
        """Abort (exit 2) when an output is another output or one of ``inputs``
        (``(what, path)`` pairs; see :mod:`babysit.cli.outputs`)."""
        opts = self.options
        named = [("--json", opts.json_path), ("--junit", opts.junit_path), ("--plot", opts.plot_path)]
        problem = outputs.clash(
            [(what, path, self._target(path)) for what, path in named + self.extra_outputs],
            [(what, self._target(path)) for what, path in inputs])
        if problem is None:
            problem = outputs.busy([(what, path, self._target(path)) for what, path in named])
        if problem:
            message, path = problem
            self.refused_outputs.add(path)   # the stop's documents must not land there either
            self.abort(message)

    def _target(self, path: str | None) -> str | None:
        """Where ``path`` (as given on the command line) is written: relative to the
        directory the command started in, whatever user code did to the working directory."""
        if path in (None, "", outputs.STDOUT) or self.start_dir is None:
            return path
        return os.path.join(self.start_dir, os.path.expanduser(path))

    # -- outputs ----------------------------------------------------------

    def emit(self, result, render: Callable | None, plot: Callable | None = None) -> int:
        """Report ``result`` everywhere ``app.options`` asks; return the exit code.

        ``render(console, result)`` draws the command's own tables; emit then adds
        the shared findings table and status line (render must not). With
        ``--json -`` stdout carries only the JSON document and the human report
        goes to stderr. ``plot(result) -> matplotlib Figure`` is called only when
        a PNG was requested. Exit code: 0 pass/warn, 1 fail (warn too with --strict).
        """
        from babysit.cli import render as rendering
        from babysit.cli.junit import junit_xml

        opts = self.options
        self.emitted = result
        if not self.quiet:
            if render is not None:
                render(self.report, result)
            rendering.summary(self.report, result, strict=self.strict)
        if opts.json_path:
            self.write_output(opts.json_path, result_json(result).encode("utf-8"), "JSON")
        if opts.junit_path:
            self.write_output(opts.junit_path, junit_xml(result, strict=self.strict),
                              "JUnit XML")
        if opts.plot_path:
            self._save_plot(result, plot, opts.plot_path)

        self.exit_code = EXIT_FAILED if result.failed(self.strict) else EXIT_OK
        return self.exit_code

    def write_output(self, path: str, data: bytes, what: str) -> None:
        """Write an output file atomically ("-" = stdout); failure = one line, exit 2."""
        try:
            self.put_output(path, data)
        except OSError as exc:
            self.abort(f"cannot write {what} to {path}: {exc.strerror or exc}")

    def put_output(self, path: str, data: bytes) -> None:
        """``data`` to stdout ("-") or atomically to ``path``, its missing folders created
        (as pytest's --junitxml does); OSError when it cannot be written."""
        if path == "-":
            self.wrote_stdout = True
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            return
        make_parents(self._target(path))
        write_bytes(self._target(path), data)

    def _save_plot(self, result, plot: Callable | None, path: str) -> None:
        if plot is None:
            self.warn(f"{result.command} has nothing to plot; {path} not written")
            return
        from babysit import plots

        plots.require_matplotlib()
        figure = plot(result)
        if figure is None:
            self.warn(f"{result.command} has nothing to plot; {path} not written")
            return
        try:
            make_parents(self._target(path))
            plots.save_png(figure, self._target(path))
        except OSError as exc:
            self.abort(f"cannot write plot to {path}: {exc.strerror or exc}")


def result_json(result) -> str:
    """The --json document: deterministic (key order fixed, no timings)."""
    return json.dumps(result.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"


# -- option parsing ---------------------------------------------------------

def check_set(text: str) -> str:
    """Validate the form of one --set (KEY=VALUE, value may be empty = null).

    The value stays text: babysit.recipes reads it as YAML 1.2 and names the
    override in its errors, so there is one interpretation of --set values.
    """
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE (e.g. optim.lr=1e-3), got {text!r}")
    return text


def _sets_callback(ctx, param, values):
    try:
        return tuple(check_set(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _plot_callback(ctx, param, value):
    if value is not None and not value.lower().endswith(".png"):
        raise click.BadParameter(f"expected a .png file name, got {value!r}", ctx=ctx,
                                 param=param)
    return value


def current_app() -> App:
    """The App of the running click invocation (created on first use)."""
    return click.get_current_context().ensure_object(App)


pass_app = click.make_pass_decorator(App, ensure=True)


def _check_output_dirs(app: App, paths, inputs=()) -> None:
    # Fail before a long diagnosis, not after it, when an output cannot be written.
    app.check_outputs(list(inputs))   # first: the aborts below write documents to the outputs
    if sum(path == "-" for path in paths) > 1:
        app.abort("only one output can go to stdout ('-')")
    if "" in paths:
        app.abort("an output path is empty: give a file name, or '-' for stdout")
    for path in paths:
        if path and path != "-":
            # missing folders are created when the output is written; a file in
            # their place cannot be (--json out.txt/r.json with out.txt a file)
            blocker = blocking_file(path)
            if blocker is not None:
                app.abort(f"cannot write {path}: {blocker} is not a directory")
            if os.path.isdir(path):
                app.abort(f"cannot write {path}: it is a directory; give a file name")


def _add_options(fn, options: list):
    # Applied bottom-up, so --help lists them in the order given.
    for option in reversed(options):
        fn = option(fn)
    return fn


def recipe_options(fn):
    """Add --seed and --set, for a command that loads a recipe (``app.load_recipe``).

    Goes with :func:`output_options`, which takes their values into ``app.options``.
    """
    return _add_options(fn, [
        click.option("--seed", type=click.IntRange(min=0, max=MAX_SEED), default=None, metavar="N",
                     help="Random seed (overrides the recipe's seed)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     callback=_sets_callback,
                     help="Override a recipe value, e.g. --set optim.lr=1e-3 (repeatable)."),
    ])


def output_options(plot: bool = False, viewer: bool = False):
    """Add --json, --junit, [--plot], --quiet, --strict, and run the command in the App.

    ``viewer``: the command shows a stored result and always exits 0 (``report``);
    --strict then says it only changes the JUnit file.

    The decorated function is called as ``fn(app, *args, **its_own_params)``:
    every :class:`CommonOptions` field (these options and :func:`recipe_options`'
    ones) goes into ``app.options`` instead. Its return value (normally
    ``app.emit(...)``) is the exit code. User errors (BabysitError), failed
    output writes and Ctrl-C end the command with one line on stderr.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            app = current_app()
            app.options = CommonOptions(**{name: kwargs.pop(name) for name in _COMMON_NAMES
                                           if name in kwargs})
            app.command = click.get_current_context().command.name
            with contextlib.suppress(OSError):   # a working directory that was deleted
                app.start_dir = os.getcwd()
            with guard(app), quiet_numpy():
                interrupts.raise_if_received()  # a signal whose exception an import swallowed
                app.extra_outputs, early_inputs = outputs.command_line_inputs(kwargs)
                _check_output_dirs(app, (app.options.json_path, app.options.junit_path,
                                         app.options.plot_path), early_inputs)
                if app.options.plot_path:
                    from babysit.plots import require_matplotlib

                    require_matplotlib()
                code = fn(app, *args, **kwargs)
            code = code if isinstance(code, int) else app.exit_code
            if code:
                raise SystemExit(code)
            return code

        options = [
            click.option("--json", "json_path", metavar="PATH|-", default=None,
                         help="Write the result as JSON to PATH ('-' = stdout only)."),
            click.option("--junit", "junit_path", metavar="PATH|-", default=None,
                         help="Write a JUnit XML report to PATH (for CI; '-' = stdout only)."),
        ]
        if plot:
            options.append(click.option("--plot", "plot_path", metavar="PATH.png",
                                        default=None, callback=_plot_callback,
                                        help="Save a PNG figure (needs babysit[plot])."))
        options += [
            click.option("--quiet", "-q", is_flag=True,
                         help="No human report (errors and --json still print)."),
            click.option("--strict", is_flag=True,
                         help=("Warnings count as failures in the JUnit file (the exit code stays 0: "
                               "a viewer)." if viewer else "Warnings fail too (exit 1).")),
        ]
        return _add_options(run, options)

    return decorate


@contextlib.contextmanager
def quiet_numpy():
    """Keep NumPy's floating-point RuntimeWarnings (overflow, invalid value) off stderr.

    The diagnoses judge non-finite numbers themselves and report them as
    findings (``loss_not_finite``, ``loss_diverged`` ...); the warnings would
    only be noise around the report (``bias: 1e300`` overflowing a float32).
    """
    import warnings

    import numpy as np

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy(\.|$)")
        yield


class guard:
    """Turn user errors into ``error: <message>`` + exit 2, Ctrl-C into exit 130.

    Programming errors still raise with their traceback: they are bugs to fix,
    not messages for the user.
    """

    def __init__(self, app: App):
        self.app = app

    def __enter__(self):
        return self.app

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            return False
        if issubclass(exc_type, BabysitError):
            self.app.abort(str(exc), getattr(exc, "exit_code", EXIT_USAGE))
        if issubclass(exc_type, KeyboardInterrupt):
            self.app.interrupted()
        if issubclass(exc_type, BrokenPipeError):
            closed_pipe()  # `babysit ... | head`
        if issubclass(exc_type, OSError):
            self.app.abort(describe_os_error(exc))
        if issubclass(exc_type, MemoryError):  # sizes come from the user's data, shapes, options
            self.app.abort(f"out of memory: {exc or 'the input is too large'}")
        return False


EXIT_CLOSED_PIPE = 128 + 13  # what a shell reports for a command ended by SIGPIPE


def closed_pipe():
    """The reader of stdout went away (``babysit report run.h5 | head``): exit 141, quietly.

    Whatever is still buffered for stdout goes to /dev/null, so the flush at
    interpreter exit raises no second BrokenPipeError.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout has no file descriptor (tests)
        pass
    raise SystemExit(EXIT_CLOSED_PIPE)


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: what failed and on which file."""
    if isinstance(exc, WriteError):  # says itself: "cannot write <file>: <reason>"
        return str(exc)
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename:
        return f"{exc.filename}: {reason}"
    return reason
