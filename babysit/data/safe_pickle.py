"""Loading pickles that others made: plain values and NumPy arrays, nothing else.

A pickle is a small program. Its GLOBAL opcodes name any importable callable
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``functools.partial``)
and its REDUCE opcode calls it, so ``pickle.load`` on a downloaded file runs
whatever the file's author chose. The CIFAR-10 python batches are pickles of a
dict of bytes, lists, ints and one uint8 array; the only globals they name are
NumPy's own array-rebuilding functions.

:func:`load_data_pickle` unpickles with an :class:`pickle.Unpickler` whose
``find_class`` (the one door through which a pickle reaches any callable:
GLOBAL, STACK_GLOBAL, INST, OBJ and extension codes all resolve through it)
admits only ``ADMITTED_GLOBALS``. Any other name is refused the moment the
stream names it, before it is imported or anything is called; what was built
until then is plain containers and arrays, and is dropped. Persistent ids are
refused too (the base Unpickler has no ``persistent_load``).

Admitted, each under its NumPy 1 (``numpy.core``) and NumPy 2 (``numpy._core``)
module name:

* ``numpy.ndarray``, ``numpy.dtype`` and ``multiarray._reconstruct``: the
  arrays of every protocol up to 4 (the real files: protocol 2, Python 2 cPickle);
* ``numeric._frombuffer``: arrays pickled with protocol 5;
* ``multiarray.scalar``: NumPy scalars (labels written as ``np.int64``);
* ``_codecs.encode`` (latin-1 only) and ``bytes()`` with no argument: how
  Python 3 writes bytes in protocol 2.

None of these calls anything the pickle supplies: they build arrays, dtypes
and bytes from data.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

try:  # NumPy 2 moved numpy.core to numpy._core (numpy.core is a deprecated alias)
    from numpy._core import multiarray, numeric
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray, numeric


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a global outside ``ADMITTED_GLOBALS``; ``name`` is ``module.name``."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3's protocol-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is admitted for latin-1 text only")
    return text.encode("latin-1")


def _empty_bytes(*args):
    """``bytes()`` as Python 3's protocol-2 pickles write ``b""``; any argument is refused."""
    if args:
        raise pickle.UnpicklingError("bytes() is admitted without arguments only")
    return b""


def _admitted() -> dict:
    numpy_parts = {("multiarray", "_reconstruct"): multiarray._reconstruct,
                   ("multiarray", "scalar"): multiarray.scalar,
                   ("numeric", "_frombuffer"): numeric._frombuffer}
    admitted = {(f"{package}.{module}", name): value
                for package in ("numpy.core", "numpy._core")
                for (module, name), value in numpy_parts.items()}
    admitted.update({("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                     ("_codecs", "encode"): _latin1_encode,
                     ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes})
    return admitted


# (module, name) as a pickle spells it -> the object it gets
ADMITTED_GLOBALS = _admitted()


class DataUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ``ADMITTED_GLOBALS`` and raises RefusedPickle for the rest."""

    def find_class(self, module, name):
        try:
            return ADMITTED_GLOBALS[(module, name)]
        except (KeyError, TypeError):  # TypeError: a name that is not a string
            raise RefusedPickle(f"{module}.{name}") from None


def load_data_pickle(path: Path):
    """The object pickled in ``path``, if it is made of plain values and NumPy arrays only.

    Python 2 strings load as bytes (``encoding="bytes"``, as the CIFAR-10
    batches need). Raises RefusedPickle for any other global; other errors
    are the ones a corrupt pickle raises (UnpicklingError, EOFError, ...).
    """
    with open(path, "rb") as handle:
        return DataUnpickler(handle, encoding="bytes").load()


__all__ = ["ADMITTED_GLOBALS", "DataUnpickler", "RefusedPickle", "load_data_pickle"]
