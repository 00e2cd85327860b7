"""User code: custom layers are imported and run as code, so they are checked and fenced.

A recipe (or a ``--set``, or the recipe stored in a run log) may name a custom
layer ``custom: pkg.module:Class``. Importing ``pkg.module`` runs it: that is
the point of a custom layer, and the README says so. What a recipe cannot do
is make babysit call an arbitrary callable (``subprocess:run``,
``os:system``) with arguments of its choosing:

* :func:`load_layer_class` accepts only a **class** that implements the layer
  contract (callable ``forward`` and ``backward`` on the class), checked before
  anything of it is called; a function, a module or another class is refused
  with a ModelError (exit 2) and nothing is called.
* :func:`fenced` runs a piece of user code (import, constructor, ``build``,
  ``forward``, ``backward``) and turns whatever escapes it, including
  ``SystemExit`` (``sys.exit(0)`` would otherwise end babysit with exit 0 and
  no output, and a CI step would pass) and a ``KeyboardInterrupt`` the code
  raised itself, into a ModelError naming the layer. A real Ctrl-C or SIGTERM
  (:class:`babysit.errors.Interrupted`, from babysit's own handlers, or any
  KeyboardInterrupt while Python's default SIGINT handler is in place) still
  stops the command.

The current directory is importable (appended to ``sys.path``, after the
installed packages, so a file in it cannot shadow a library babysit imports).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import signal
import sys

from babysit.errors import BabysitError, Interrupted, ModelError

LAYER_METHODS = ("forward", "backward")
CONTRACT = "a layer class with params and grads dicts, forward(x, train) and backward(dout)"


def _is_real_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, Interrupted):
        return True
    # Without babysit's handlers (the Python API), a KeyboardInterrupt may be a real Ctrl-C.
    return isinstance(exc, KeyboardInterrupt) and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler


def describe_escape(exc: BaseException) -> str:
    """What escaped user code, in words: ``ValueError: bad``, ``SystemExit: the code called sys.exit(0)``."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the code called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt: raised by the code itself (not a Ctrl-C)"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def fenced(prefix: str):
    """Run user code: anything it raises (SystemExit included) -> ModelError
    ``"<prefix> <what escaped>"``, e.g. ``fenced("layer 2 (custom Scale): forward raised")``.

    BabysitErrors pass through (user code calling babysit), and so do real
    interrupts (see the module docstring).
    """
    try:
        yield
    except BabysitError:
        raise
    except BaseException as exc:
        if _is_real_interrupt(exc):   # no fenced block holds a yield: a GeneratorExit is theirs too
            raise
        raise ModelError(f"{prefix} {describe_escape(exc)}") from None


def _importable_cwd() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)


def import_object(path: str, what: str = "custom layer"):
    """Import ``"pkg.module:Name"`` (``Name`` may be dotted) and return the object.

    Importing runs the module: any error it raises (SystemExit included) is a ModelError.
    ``what`` names the object in messages (a torch model factory is imported the same way).
    """
    if not isinstance(path, str) or ":" not in path:
        raise ModelError(f"{what} {path!r} must look like 'pkg.module:Class'")
    module_name, _, attr = path.partition(":")
    _importable_cwd()
    with fenced(f"cannot import {what} module {module_name!r}:"):
        module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def check_layer_class(obj, name: str) -> type:
    """``obj`` if it is a class implementing the layer contract; ModelError otherwise.

    Nothing of ``obj`` is called: only its kind and its class attributes are looked at.
    """
    if not inspect.isclass(obj):
        what = "a function" if inspect.isroutine(obj) else (
            "a module" if inspect.ismodule(obj) else f"a {type(obj).__name__}")
        raise ModelError(f"custom layer {name} is not a layer: it is {what}, not a class "
                         f"(a custom layer must be {CONTRACT}); nothing was called")
    missing = [m for m in LAYER_METHODS if not callable(inspect.getattr_static(obj, m, None))]
    if missing:
        raise ModelError(f"custom layer {name} is not a layer: the class lacks {', '.join(missing)} "
                         f"(a custom layer must be {CONTRACT}); nothing was called")
    return obj


def load_layer_class(spec) -> type:
    """A layer class from ``"pkg.module:Class"`` (imported) or a class; checked, never called."""
    if isinstance(spec, str):
        return check_layer_class(import_object(spec), repr(spec))
    return check_layer_class(spec, repr(getattr(spec, "__qualname__", spec)))


def custom_layer_modules(model_section) -> list[str]:
    """The modules the ``custom:`` layers of a model section (YAML form) would import."""
    modules = []
    for entry in (model_section or {}).get("layers") or []:
        if not isinstance(entry, dict) or len(entry) != 1 or "custom" not in entry:
            continue
        options = entry["custom"]
        spec = options.get("class") if isinstance(options, dict) else options
        if isinstance(spec, str):
            module = spec.partition(":")[0]
            if module not in modules:
                modules.append(module)
    return modules


__all__ = ["load_layer_class", "check_layer_class", "import_object", "fenced", "describe_escape",
           "custom_layer_modules", "CONTRACT"]
