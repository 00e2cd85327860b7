"""The NumPy engine: layers, losses, initializers, optimizers, the model and the solver.

Imports only numpy, the standard library and :mod:`babysit.errors`. Names are
resolved lazily so that importing one engine module does not import them all.
"""

import importlib

_EXPORTS = {
    "Layer": "babysit.engine.base",
    "Model": "babysit.engine.model",
    "build_model": "babysit.engine.builder",
    "LAYERS": "babysit.engine.layers",
    "get_loss": "babysit.engine.losses",
    "SoftmaxLoss": "babysit.engine.losses",
    "SVMLoss": "babysit.engine.losses",
    "get_initializer": "babysit.engine.init",
    "make_optimizer": "babysit.engine.optim",
    "make_schedule": "babysit.engine.optim",
    "ParameterAverage": "babysit.engine.optim",
    "Solver": "babysit.engine.solver",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'babysit.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
