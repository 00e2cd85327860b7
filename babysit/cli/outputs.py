"""Where a command's outputs may go: never onto one of its inputs or onto each other.

``train r.yaml --out data.h5`` once replaced the training data with the run
log, ``--json r.yaml`` the recipe with JSON, and ``--out run.h5 --json run.h5``
the run log (checkpoints and all) with a JSON document, all with exit 0. An
output is now refused (exit 2, before any work) when it is the same file as
another output of the command, or as one of its inputs: the recipe file, a
data file, the run log it resumes. "The same file" is judged on the resolved
path (symlinks followed), and by inode for files that exist. Paths are made
absolute once, when the command starts, so code that changes the working
directory (a custom layer's ``os.chdir``) cannot move an output elsewhere.
"""

from __future__ import annotations

import os

STDOUT = "-"


def absolute(path: str | None) -> str | None:
    """``path`` made absolute against the working directory now ("-" and None as they are)."""
    return path if path in (None, STDOUT) else os.path.abspath(os.path.expanduser(path))


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


def recipe_inputs(recipe) -> list[tuple[str, str]]:
    """The files a loaded recipe reads: its YAML file and its data file (when a file)."""
    inputs = []
    if getattr(recipe, "path", None) and os.path.isfile(recipe.path):
        inputs.append(("the recipe", recipe.path))
    data = getattr(recipe, "data", None)
    if data is not None and data.kind in ("hdf5", "npz"):
        from babysit.data.sources import resolve_path
        from babysit.errors import BabysitError

        try:
            inputs.append(("the data file", str(resolve_path(data.location, data.base_dir))))
        except BabysitError:   # missing: loading the data says so
            pass
    return inputs


__all__ = ["absolute", "same_file", "clash", "recipe_inputs"]
