"""Where a command's outputs may go: never onto one of its inputs or onto each other.

``train r.yaml --out data.h5`` once replaced the training data with the run
log, ``--json r.yaml`` the recipe with JSON, and ``--out run.h5 --json run.h5``
the run log (checkpoints and all) with a JSON document, all with exit 0. An
output is now refused (exit 2, before any work) when it is the same file as
another output of the command, or as one of its inputs: the recipe file, a
data file, the run log it resumes. "The same file" is judged on the resolved
path (symlinks followed), and by inode for files that exist. Outputs are
written relative to the directory the command started in (``App._target``), so
code that changes the working directory (a custom layer's ``os.chdir``) cannot
move an output elsewhere.
"""

from __future__ import annotations

import os

STDOUT = "-"


def same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:   # one of them does not exist (yet): the paths differ
        return False


def clash(outputs: list[tuple[str, str, str]], inputs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """``(message, path as given)`` for the first output that is another output or an
    input, else None.

    ``outputs`` are ``(what, path as given, where it is written)``, e.g.
    ``("--json", "r.json", "/work/r.json")``; ``inputs`` are ``(what, path)``, e.g.
    ``("the recipe", "/work/r.yaml")``. "-" (stdout) and empty entries are skipped.
    """
    outputs = [(what, given, target) for what, given, target in outputs
               if given and given != STDOUT]
    for i, (what, given, target) in enumerate(outputs):
        for other, _, other_target in outputs[i + 1:]:
            if same_file(target, other_target):
                return (f"{what} and {other} name the same file {given}: one would overwrite "
                        "the other", given)
        for source, source_path in inputs:
            if source_path and same_file(target, source_path):
                return f"{what} {given} would overwrite {source}; write the output elsewhere", given
    return None


def busy(outputs: list[tuple[str, str, str]]) -> tuple[str, str] | None:
    """``(message, path as given)`` for a document output that is a lock file's name, or
    the run log another babysit process is writing right now; else None. A lock file
    is removed by the next writer there; a live log would replace the document at its
    next checkpoint, after the document had replaced the log."""
    from babysit.locks import is_lock_name, writer_of

    for what, given, target in outputs:
        if not given or given == STDOUT:
            continue
        if is_lock_name(target):
            return f"{what} {given} is named like a babysit lock file; choose another name", given
        owner = writer_of(target)
        if owner:
            return (f"{what} {given} is being written by another babysit process ({owner}); "
                    "write the output elsewhere", given)
    return None


def module_file(spec: str) -> str | None:
    """The source file of custom layer code ``"pkg.mod:Class"``, found without importing
    anything (importing runs code): ``pkg/mod.py`` or ``pkg/mod/__init__.py`` in the
    working directory or on ``sys.path``; None when not found there."""
    import sys

    if not isinstance(spec, str) or ":" not in spec:
        return None
    parts = spec.split(":", 1)[0].split(".")
    for root in [os.getcwd(), *sys.path]:
        base = os.path.join(root or os.curdir, *parts)
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                return candidate
    return None


def command_line_inputs(params: dict) -> tuple[list, list]:
    """``(outputs, inputs)`` known from a command's own arguments before anything is loaded
    (the recipe or log named on the command line, ``--resume``, ``--out``, ``--layer``),
    so that even a stop on bad input cannot write its documents over them."""
    inputs = [(what, params[name]) for name, what in (("recipe", "the recipe"), ("target", "the file it inspects"),
                                                      ("log_path", "the log it shows"),
                                                      ("resume_path", "the run log it resumes"))
              if isinstance(params.get(name), str) and os.path.isfile(params[name])]
    if isinstance(params.get("layer"), str):
        source = module_file(params["layer"])
        if source:
            inputs.append((f"the code of {params['layer']}", source))
    out, resume = params.get("out_path"), params.get("resume_path")
    outputs = [("--out", out)] if isinstance(out, str) and out else []
    if outputs and resume and same_file(out, resume):   # train --resume run.h5 --out run.h5:
        inputs = [entry for entry in inputs if entry[1] != resume]   # the log it continues
    return outputs, inputs


def data_inputs(kind: str, location: str, base_dir: str | None = None) -> list[tuple[str, str]]:
    """The files a data source reads: the file, or every file of its directory."""
    from babysit.data.sources import resolve_path
    from babysit.errors import BabysitError

    try:
        if kind in ("hdf5", "npz"):
            return [("the data file", str(resolve_path(location, base_dir)))]
        if kind in ("cifar10", "mnist"):   # a CIFAR batch, an IDX file
            folder = resolve_path(location, base_dir, directory=True)
            return [("a file of the data directory", str(entry)) for entry in folder.iterdir()
                    if entry.is_file()]
    except (BabysitError, OSError):   # missing or unreadable: loading the data says so
        pass
    return []


def recipe_inputs(recipe) -> list[tuple[str, str]]:
    """The files a loaded recipe reads: its YAML file, its data file or the files of its
    data directory, and the source files of its custom layers."""
    inputs = []
    if getattr(recipe, "path", None) and os.path.isfile(recipe.path):
        inputs.append(("the recipe", recipe.path))
    data = getattr(recipe, "data", None)
    if data is not None:
        inputs += data_inputs(data.kind, data.location, data.base_dir)
    for layer in getattr(getattr(recipe, "model", None), "layers", None) or ():
        source = module_file(layer.options.get("class")) if layer.kind == "custom" else None
        if source:
            inputs.append((f"the code of custom layer {layer.options['class']}", source))
    return inputs


__all__ = ["same_file", "clash", "busy", "recipe_inputs", "module_file", "command_line_inputs",
           "data_inputs"]
