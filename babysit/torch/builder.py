"""A recipe's ``model: {torch: ...}`` section -> a :class:`~babysit.torch.model.TorchModel`.

The section (YAML form, as ``ModelSection.to_dict()`` writes it)::

    {"torch": "pkg.module:factory", "kwargs": {...}, "init": "module",
     "loss": "softmax", "reg": 1e-4, "dropout": True}

* ``factory(input_shape, num_classes, **kwargs)`` returns an ``nn.Module``
  mapping ``(N, *input_shape)`` inputs to ``(N, num_classes)`` scores; it is
  imported as custom layers are (``babysit.engine.builder.import_object``).
* Seeds: the model's ``rng`` (``np.random.default_rng(seed)`` in every
  command) spawns the torch seed the factory runs under (its own init is then
  reproducible) and the seed of the model's dropout generator. Spawning does
  not advance ``rng``, so babysit's init below draws what the engine would.
* ``init``: ``module`` keeps the module's own init; one of babysit's
  (``xavier``, ``he``, ``small``, ``zeros``, ``{normal: std}``) redraws every
  Linear and Conv weight from ``rng`` as the engine would (a Linear weight is
  drawn in the engine's ``(D_in, D_out)`` layout and transposed, so a
  Sequential of Linear layers gets the engine's numbers for the same seed)
  and sets their biases to 0, the engine's default bias.
* ``dropout: false`` sets ``p = 0`` in every dropout module (overfit-tiny's
  "dropout off"; dropout called as a function in a custom forward is not
  reached).
* ``dtype``: float32 for training, float64 for gradient checks (the module
  is converted before its parameters are exposed).

Torch runs deterministically: one intra-op thread (``THREADS``; a matrix
product's bits depend on the thread count, and babysit's numbers must not
depend on the machine) and ``torch.use_deterministic_algorithms`` (warning
on an op without a deterministic kernel). Building a torch model sets both
for the process; :func:`deterministic_torch` restores them (the notebook API).

The module is then traced once, in train mode on a batch of two zero inputs
(with the random generator and the buffers restored afterwards): that pass
names the layers, checks the output shape, finds out whether the module draws
random numbers (dropout) and whether it has kinks.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn as nn

from babysit.engine.init import get_initializer
from babysit.engine.losses import get_loss
from babysit.engine.user_code import fenced, import_object
from babysit.errors import ModelError
from babysit.torch.kinds import is_dropout
from babysit.torch.model import TORCH_DTYPES, TorchModel
from babysit.torch.passes import Tap, hooked
from babysit.validation import as_mapping

THREADS = 1
MODULE_INIT = "module"
TRACE_BATCH = 2


def configure_torch() -> None:
    """Deterministic CPU torch: ``THREADS`` intra-op threads, deterministic algorithms."""
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)
    if not torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def deterministic_torch():
    """The block runs with :func:`configure_torch`; the caller's settings come back after."""
    threads = torch.get_num_threads()
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        configure_torch()
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def spawn_seeds(rng: np.random.Generator, count: int) -> list[int]:
    """``count`` seeds from a child of ``rng`` (``rng`` itself does not advance)."""
    child = rng.spawn(1)[0] if hasattr(rng, "spawn") else rng
    return [int(s) for s in child.integers(0, 2 ** 63 - 1, size=count)]


# A factory is the user's code: a recipe must not make babysit call a function of
# the standard library or of a package babysit itself uses (os:system,
# subprocess:run, shutil:rmtree ...) with arguments of its choosing. Allowed: an
# nn.Module class, or a Python function defined anywhere else (babysit's own
# example and notebook factories included).
FOREIGN_PACKAGES = frozenset({"numpy", "torch", "h5py", "yaml", "click", "rich", "matplotlib",
                              "dask", "distributed", "scipy", "threadpoolctl", "babysit"})
OWN_FACTORIES = ("babysit.torch.examples", "babysit.torch.api", "babysit.bundled.")


def check_factory(obj, path: str):
    """``obj`` if it may serve as a factory (see ``FOREIGN_PACKAGES``); ModelError otherwise.

    Nothing of ``obj`` is called: only its kind and its module are looked at.
    """
    label = f"model.torch {path!r}"
    if inspect.isclass(obj) and issubclass(obj, nn.Module):
        return obj
    if not inspect.isfunction(obj):
        what = "a class" if inspect.isclass(obj) else (
            "a module" if inspect.ismodule(obj) else f"a {type(obj).__name__}")
        raise ModelError(f"{label} is {what}, not a function returning an nn.Module (or an "
                         "nn.Module class); nothing was called")
    module = getattr(obj, "__module__", "") or ""
    top = module.split(".")[0]
    if (top in sys.stdlib_module_names or top in FOREIGN_PACKAGES) and not module.startswith(OWN_FACTORIES):
        raise ModelError(f"{label} is a function of {module}, not a factory of your own: define "
                         "the factory in your module; nothing was called")
    return obj


def call_factory(path: str, factory, input_shape: tuple, num_classes: int, kwargs: Mapping,
                 seed: int) -> nn.Module:
    label = f"model.torch {path!r}"
    factory = check_factory(factory, path)
    call = (f"{label}(input_shape={tuple(input_shape)}, num_classes={num_classes}"
            + "".join(f", {k}={v!r}" for k, v in kwargs.items()) + ") raised")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with fenced(call):   # the user's factory failing is their input
            module = factory(tuple(input_shape), int(num_classes), **dict(kwargs))
    if not isinstance(module, nn.Module):
        raise ModelError(f"{label} returned {type(module).__name__}, not a torch nn.Module")
    parameters = dict(module.named_parameters())
    for name, tensor in list(parameters.items()) + list(module.named_buffers()):
        if tensor.device.type != "cpu":
            raise ModelError(f"{label}: {name} lives on {tensor.device}; babysit runs torch on the CPU")
        if tensor.is_floating_point() is False and name in parameters:
            raise ModelError(f"{label}: parameter {name} is not floating point ({tensor.dtype})")
    return module


def apply_init(module: nn.Module, spec, rng: np.random.Generator) -> None:
    """babysit's init ``spec`` on every Linear and Conv weight (biases to 0), drawn from ``rng``."""
    init = get_initializer(spec)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear):
                out_features, in_features = sub.weight.shape
                values = init((in_features, out_features), in_features, rng, np.float64).T
            elif isinstance(sub, nn.modules.conv._ConvNd):
                shape = tuple(sub.weight.shape)
                values = init(shape, math.prod(shape[1:]), rng, np.float64)
            else:
                continue
            sub.weight.copy_(torch.from_numpy(np.ascontiguousarray(values)))
            if sub.bias is not None:
                sub.bias.zero_()


def trace(module: nn.Module, input_shape: tuple, dtype: torch.dtype, label: str):
    """The traced pass (see the module doc): ``(tap, output_layer, draws, output)``."""
    x = torch.zeros((TRACE_BATCH,) + tuple(input_shape), dtype=dtype)
    buffers = {name: buffer.clone() for name, buffer in module.named_buffers()}
    tap = Tap(None, kinks=True)
    module.train(True)
    with torch.random.fork_rng(devices=[]):
        before = torch.get_rng_state()
        with fenced(f"{label}: the module's forward failed on a batch of shape {tuple(x.shape)}:"):
            with torch.no_grad(), hooked(module, tap):
                out = module(x)
        draws = not torch.equal(before, torch.get_rng_state())
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            buffer.copy_(buffers[name])
    if not isinstance(out, torch.Tensor) or out.dim() < 1 or len(out) != TRACE_BATCH:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"{label}: the module returns {got} for a batch of {TRACE_BATCH}; it must "
                         "return a tensor with the batch dimension first")
    output_layer = not tap.trace_tensors or tap.trace_tensors[-1][1] is not out
    return tap, output_layer, draws, out


def build_torch_model(model, input_shape, num_classes, rng=None, dtype=np.float32) -> TorchModel:
    """Build a :class:`TorchModel` from a recipe's torch ``model`` section (see the module doc)."""
    section = as_mapping(model, "the model section", ModelError)
    dtype = np.dtype(dtype)
    if dtype not in TORCH_DTYPES:
        raise ModelError(f"torch models train in float32 or float64, not {dtype}")
    rng = np.random.default_rng(0) if rng is None else rng
    path = section.get("torch")
    label = f"model.torch {path!r}"
    configure_torch()
    factory = import_object(path, "model.torch factory")
    init_seed, generator_seed = spawn_seeds(rng, 2)
    kwargs = as_mapping(section.get("kwargs") or {}, "model.kwargs", ModelError)
    module = call_factory(path, factory, tuple(input_shape), num_classes, kwargs, init_seed)
    module.to(TORCH_DTYPES[dtype])
    init = section.get("init", MODULE_INIT)
    if init is not None and init != MODULE_INIT:
        apply_init(module, init, rng)
    if section.get("dropout", True) is False:
        for sub in module.modules():
            if is_dropout(sub):
                sub.p = 0.0
    tap, output_layer, draws, out = trace(module, tuple(input_shape), TORCH_DTYPES[dtype], label)
    expected = (TRACE_BATCH, int(num_classes))
    if tuple(out.shape) != expected:
        raise ModelError(f"{label}: the module returns shape {tuple(out.shape)} for a batch of "
                         f"{TRACE_BATCH}; it must return class scores of shape {expected} (the data "
                         f"has {num_classes} classes)")
    generator = torch.Generator().manual_seed(generator_seed).get_state()
    return TorchModel(module, get_loss(section.get("loss", "softmax")), section.get("reg", 0.0) or 0.0,
                      input_shape, num_classes, dtype, tap.traced, output_layer=output_layer,
                      has_kinks=bool(tap.kinks), draws=draws, generator=generator)


__all__ = ["build_torch_model", "configure_torch", "deterministic_torch", "apply_init", "trace",
           "call_factory", "check_factory", "spawn_seeds",
           "THREADS", "MODULE_INIT"]
