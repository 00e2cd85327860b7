"""The --json and --junit documents of a command that stops (exit 2 or 130).

CI reporters look for their files whatever the exit code. So when a command
ends with ``error:`` (exit 2: ``App.abort``, a BabysitError, an OSError) or is
interrupted (exit 130: ``App.interrupted``), the outputs it was asked for still
get a document: a :class:`~babysit.diagnostics.result.Result` with ``stopped``
= "error" | "interrupted" and ``error`` = the one-line message, which is

* the Result ``emit`` was reporting, when an output failed while emitting
  (its findings and metrics are kept, its status now agrees with the exit code);
* else ``app.partial_result(status, message)``, when the command set one
  (doctor: the parts already finished, the running one, the ones not run);
* else an empty Result naming the command, the recipe and the seed.

A file ``emit`` already wrote is rewritten; stdout, once written, is not
written twice; a document that cannot be written is skipped (the error line is
already on stderr).
"""

from __future__ import annotations

import contextlib
import dataclasses


def stopped_result(app, status: str, message: str):
    """The Result of ``app``'s command stopped with ``status`` and ``message`` (see above)."""
    from babysit.diagnostics.result import Result

    if app.emitted is not None:
        return dataclasses.replace(app.emitted, stopped=status, error=message)
    if app.partial_result is not None:
        return app.partial_result(status, message)
    recipe = app.recipe
    label = (getattr(recipe, "path", None) or getattr(recipe, "name", None)) if recipe \
        else app.recipe_arg
    seed = recipe.seed if recipe is not None else app.options.seed
    return Result(command=app.command or "babysit", recipe=label, seed=seed,
                  stopped=status, error=message)


def write_documents(app, status: str, message: str) -> None:
    """Write the --json and --junit documents of ``app``'s stopped command (once)."""
    from babysit.cli.app import result_json
    from babysit.cli.junit import junit_xml

    opts = app.options
    if app.stopping or not (opts.json_path or opts.junit_path):
        return
    app.stopping = True
    result = stopped_result(app, status, message)
    documents = ((opts.json_path, lambda: result_json(result).encode("utf-8")),
                 (opts.junit_path, lambda: junit_xml(result, strict=app.strict)))
    for path, document in documents:
        if not path or (path == "-" and app.wrote_stdout) or path in app.refused_outputs:
            continue
        with contextlib.suppress(OSError):
            app.put_output(path, document())


__all__ = ["stopped_result", "write_documents"]
