"""The PyTorch backend (extra ``babysit[torch]``): a user's ``nn.Module`` behind the model protocol.

A recipe whose model section names a factory instead of layers::

    model:
      torch: pkg.module:factory     # factory(input_shape, num_classes, **kwargs) -> nn.Module
      kwargs: {hidden: 50}
      loss: softmax
      reg: 1.0e-4

runs through every command unchanged: diagnostics build their model with
``babysit.diagnostics.common.build``, which comes here for such a section.
Modules:

* ``builder``: section -> TorchModel (factory, seeds, init, tracing, determinism);
* ``model``: TorchModel, the model protocol on a module;
* ``passes``: hooked passes (layer calls, recording, substitution, kinks);
* ``kinds``: module types -> babysit's layer kinds, weights, kink rules;
* ``optim``: the recipe's optimizer as torch.optim;
* ``layer``: ``gradcheck --layer`` for an ``nn.Module`` or ``autograd.Function``;
* ``api``: :func:`diagnose`, the protocol on a module plus arrays (notebooks);
* ``examples``: the factories of the bundled torch recipes.

Nothing of babysit imports this package unless a torch model is asked for:
``import babysit`` and every NumPy recipe work without torch installed.
"""

from __future__ import annotations

from babysit.errors import ModelError

INSTALL_HINT = "install PyTorch (>= 2.1) with: pip install 'babysit[torch]'"

__all__ = ["require_torch", "build_torch_model", "diagnose", "is_torch_section", "is_torch_layer",
           "INSTALL_HINT"]


def is_torch_section(section) -> bool:
    """A model section (frozen, or a mapping) that names a torch factory."""
    if hasattr(section, "to_dict"):
        section = section.to_dict()
    return hasattr(section, "get") and section.get("torch") is not None


def require_torch():
    """``import torch``, or ModelError with the install hint."""
    try:
        import torch
    except ImportError:
        raise ModelError(f"this model needs PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


def __getattr__(name):
    if name == "build_torch_model":
        require_torch()
        from babysit.torch.builder import build_torch_model

        return build_torch_model
    if name == "diagnose":
        require_torch()
        from babysit.torch.api import diagnose

        return diagnose
    raise AttributeError(f"module 'babysit.torch' has no attribute {name!r}")


def is_torch_layer(obj) -> bool:
    """A torch ``nn.Module`` or ``autograd.Function`` class (torch is not imported to tell:
    a class of either kind means the user's module already imported it)."""
    import sys

    torch = sys.modules.get("torch")
    return (torch is not None and isinstance(obj, type)
            and issubclass(obj, (torch.nn.Module, torch.autograd.Function)))
