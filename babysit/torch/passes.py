"""Hooked passes: what babysit sees of a torch module while it runs.

A training step is a *plain* pass: the module runs with nothing attached.
Everything babysit observes comes from a *hooked* pass, whose observers exist
only for its duration (so hooks cost nothing when nothing is recorded):

* forward pre-hooks and forward hooks on the leaf modules,
* a wrapper around ``torch.autograd.Function.apply`` (custom Functions;
  installed while any hooked pass runs, reference-counted, and a no-op for
  threads without a pass of their own),
* a ``TorchFunctionMode`` that keeps the branch record of every kinked torch
  function (:data:`babysit.torch.kinds.KINK_RULES`), when kinks are wanted.

The *layers* of a model are the calls it makes, in execution order, of leaf
modules and of custom Functions, at the top level (a Function called inside a
leaf module belongs to that module; modules called inside a Function belong
to the Function) whose first positional argument and result are tensors. A
layer is named by its module path (``features.0``) or its Function's class
name; the k-th call of the same one (k >= 2) gets ``#k``. The sequence is
traced once when the model is built; every later hooked pass must make the
same calls (:class:`Tap` raises ModelError otherwise).

What a :class:`Tap` does at each layer call: count it, optionally replace its
input (``forward_from``'s substitution: any graph, not only chains), record
its output (a NumPy copy, taken before any in-place op) and, in passes that
build a graph, its input, and hook the gradients arriving at both: at the
output the total gradient of that tensor, at the input the gradient through
this layer alone (the input is aliased with ``view_as``, so a skip
connection's share is not counted).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd.function import Function
from torch.overrides import TorchFunctionMode

from babysit.errors import ModelError
from babysit.torch.kinds import FUNCTION_KIND, OUTPUT_KIND, kind_of_module, kink_rule


# The module's result, when it is not the last layer's output, is recorded as one
# more layer (``output``) after the traced calls.
OUTPUT = "output"


@dataclass
class Call:
    """One layer call of the traced pass: how it is found again and what it is."""

    key: object          # the leaf module, or the Function class
    name: str
    kind: str
    owner: str | None    # module path owning its parameters (None for Functions)
    visible: bool = True  # False: its result is not a tensor (not a layer)


OUTPUT_CALL = Call(OUTPUT, OUTPUT, OUTPUT_KIND, None)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy of a tensor (detached)."""
    return tensor.detach().cpu().numpy().copy()


class Tap:
    """The observer of one hooked pass (see the module doc).

    ``calls`` is the traced sequence (None while tracing, which builds it);
    ``substitute`` is ``(call position, tensor)``; ``record`` keeps inputs,
    outputs and their gradients by layer name; ``kinks`` collects branch
    records.
    """

    def __init__(self, calls=None, *, record=False, substitute=None, kinks=False):
        self.calls = calls
        self.record = record
        self.substitute = substitute
        self.kinks = [] if kinks else None
        self.position = 0
        self.depth = 0
        self.stack = []
        self.traced: list[Call] = []
        self.trace_tensors: list = []    # (input, output) per call, while tracing
        self.outputs, self.output_grads = {}, {}
        self.inputs, self.input_grads = {}, {}

    def _call_at(self, position: int, key, label: str, kind: str, owner) -> Call:
        if key is OUTPUT and self.calls is not None and position == len(self.calls):
            return OUTPUT_CALL   # the scores as a pseudo-layer (TorchModel's ``output``)
        if self.calls is None:   # tracing: name it
            base = label
            count = sum(1 for call in self.traced if call.key is key)
            call = Call(key, base if count == 0 else f"{base}#{count + 1}", kind, owner)
            self.traced.append(call)
            return call
        if position >= len(self.calls) or self.calls[position].key is not key:
            expected = self.calls[position].name if position < len(self.calls) else "nothing"
            raise ModelError(f"the torch module called {label} where its traced pass called "
                             f"{expected}: babysit needs the same sequence of layer calls on every "
                             "pass (no data-dependent control flow between layers)")
        return self.calls[position]

    def enter(self, key, label: str, kind: str, owner, args: tuple):
        """A layer call starts: returns ``(args, token)`` (args possibly substituted)."""
        self.depth += 1
        if self.depth > 1 or not args or not isinstance(args[0], torch.Tensor):
            self.stack.append(None)
            return args, None
        position = self.position
        self.position += 1
        call = self._call_at(position, key, label, kind, owner)
        x = args[0]
        if self.substitute is not None and self.substitute[0] == position:
            x = self.substitute[1]
        if self.record and call.visible and torch.is_grad_enabled():   # inputs: for gradient checks
            self.inputs[call.name] = to_numpy(x)
            if x.requires_grad:
                x = x.view_as(x)
                x.register_hook(self._keeper(self.input_grads, call.name))
        token = (position, call, x)
        self.stack.append(token)
        return (x,) + tuple(args[1:]), token

    def leave(self, output):
        """A layer call ends with ``output`` (returned unchanged)."""
        self.depth -= 1
        token = self.stack.pop()
        if token is None:
            return output
        _, call, x = token
        if not isinstance(output, torch.Tensor):
            call.visible = False
            return output
        if self.calls is None:
            self.trace_tensors.append((x, output))
        if self.record and call.visible:
            self.outputs[call.name] = to_numpy(output)
            if output.requires_grad:
                output.register_hook(self._keeper(self.output_grads, call.name))
        return output

    @staticmethod
    def _keeper(store: dict, name: str):
        def keep(grad):
            store[name] = to_numpy(grad)
        return keep


_LOCAL = threading.local()


def current_tap() -> Tap | None:
    return getattr(_LOCAL, "tap", None)


@contextlib.contextmanager
def tapping(tap: Tap):
    """Make ``tap`` the observer of this thread's passes for the block."""
    previous = current_tap()
    _LOCAL.tap = tap
    try:
        yield tap
    finally:
        _LOCAL.tap = previous


# -- custom autograd Functions ----------------------------------------------------------

_ORIGINAL_APPLY = Function.__dict__["apply"]
_PATCH_LOCK = threading.Lock()
_PATCH_USERS = [0]


def _tapped_apply(cls, *args, **kwargs):
    original = _ORIGINAL_APPLY.__get__(None, cls)
    tap = current_tap()
    if tap is None:
        return original(*args, **kwargs)
    args, _ = tap.enter(cls, cls.__name__, FUNCTION_KIND, None, args)
    return tap.leave(original(*args, **kwargs))


@contextlib.contextmanager
def functions_tapped():
    """While any thread is inside, ``Function.apply`` reports calls to that thread's Tap."""
    with _PATCH_LOCK:
        if _PATCH_USERS[0] == 0:
            Function.apply = classmethod(_tapped_apply)
        _PATCH_USERS[0] += 1
    try:
        yield
    finally:
        with _PATCH_LOCK:
            _PATCH_USERS[0] -= 1
            if _PATCH_USERS[0] == 0:
                Function.apply = _ORIGINAL_APPLY


# -- kinks --------------------------------------------------------------------------------


class KinkRecorder(TorchFunctionMode):
    """Appends the branch record of every kinked torch function called to ``records``."""

    def __init__(self, records: list):
        super().__init__()
        self.records = records

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = kink_rule(func)
        if rule is not None and args and isinstance(args[0], torch.Tensor):
            pattern = rule(args, kwargs)
            if pattern is not None:
                self.records.append(to_numpy(pattern))
        return func(*args, **kwargs)


# -- hooks on leaf modules ------------------------------------------------------------------


def leaf_modules(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``[(path, module)]`` of the modules without children (the root: ``"model"``)."""
    leaves = [(path, m) for path, m in module.named_modules() if not any(True for _ in m.children())]
    return [(path or "model", m) for path, m in leaves]


@contextlib.contextmanager
def hooked(module: torch.nn.Module, tap: Tap):
    """Run the block as a hooked pass observed by ``tap`` (see the module doc)."""
    handles = []

    def pre(path, kind, mod, args):
        if current_tap() is not tap:
            return None
        args, _ = tap.enter(mod, path, kind, path, args)
        return args

    def post(mod, args, output):
        if current_tap() is not tap:
            return None
        return tap.leave(output)

    try:
        for path, leaf in leaf_modules(module):
            kind = kind_of_module(leaf)
            handles.append(leaf.register_forward_pre_hook(
                lambda mod, args, path=path, kind=kind: pre(path, kind, mod, args)))
            handles.append(leaf.register_forward_hook(post))
        with contextlib.ExitStack() as stack:
            stack.enter_context(functions_tapped())
            stack.enter_context(tapping(tap))
            if tap.kinks is not None:
                stack.enter_context(KinkRecorder(tap.kinks))
            yield tap
    finally:
        for handle in handles:
            handle.remove()


__all__ = ["OUTPUT", "Call", "Tap", "hooked", "leaf_modules", "to_numpy", "current_tap", "KinkRecorder"]
