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
and bytes from data. They are still not admitted as NumPy defines them,
because called with hostile arguments they build more than the file holds or
crash the process: ``_reconstruct(ndarray, shape, dtype)`` allocates any
shape it is given; ``ndarray(shape, dtype, buffer, offset, strides)`` makes a
view of any size of one byte, with zero strides; an object array's ``__setstate__`` reads past a short list (a segfault); a
structured dtype's ``__setstate__`` accepts fields beyond its items (reads
past each item), and BUILD calls ``__setstate__`` on whatever dtype the call
returned: for ``dtype('i8', False, False)``, NumPy's shared int64. So a
pickle gets stand-ins (:class:`_DtypeCall`, :data:`_NDARRAY`,
:class:`_PickledArray`) that check every argument and build only

* arrays and scalars of numbers, bytes or text (dtype kinds ``biufcSU``, no
  fields, subarrays or objects);
* arrays whose shape its bytes fill exactly, filled once;
* in all, at most ``GROWTH`` times the file's size plus ``SLACK`` bytes (see
  :class:`_Budget`): a real data pickle holds every array's bytes itself, so
  only shared references to one bytes object (the pickle memo) could build more.

Plain containers need no such care: a list of references to one row is as
cheap to load as its file; what it expands to is bounded by the reader that
converts it (:mod:`babysit.data.formats`).
"""

from __future__ import annotations

import contextvars
import math
import pickle
from pathlib import Path

import numpy as np

try:  # NumPy 2 moved numpy.core to numpy._core (numpy.core is a deprecated alias)
    from numpy._core import multiarray, numeric
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray, numeric

GROWTH = 2  # bytes built per byte of file: Python 3's protocol 2 builds each array's bytes twice
SLACK = 1 << 20  # bytes built beyond that (NumPy copies arrays of up to 1,000 bytes)
MAX_NDIM = 32  # dimensions of a pickled array (NumPy 1's limit; NumPy 2's is 64)
DTYPE_KINDS = "biufcSU"  # bool, integers, floats, complex, bytes, text


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a global outside ``ADMITTED_GLOBALS``; ``name`` is ``module.name``."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class UnsafePickle(pickle.UnpicklingError):
    """The pickle asks for an array, dtype or amount of data that no data pickle needs."""


class _Budget:
    """Bytes that the admitted builders may still create during one load (None: no bound)."""

    def __init__(self, limit: int | None):
        self.left = limit

    def charge(self, nbytes: int, what: str) -> None:
        if self.left is None:
            return
        if nbytes > self.left:
            raise UnsafePickle(f"{what} would build more than {GROWTH} times the file's size "
                               f"(shared references to the same bytes); refused before building it")
        self.left -= nbytes


_BUDGET = contextvars.ContextVar("babysit_pickle_budget", default=_Budget(None))


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3's protocol-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is admitted for latin-1 text only")
    _BUDGET.get().charge(len(text), "bytes from text")
    return text.encode("latin-1")


def _empty_bytes(*args):
    """``bytes()`` as Python 3's protocol-2 pickles write ``b""``; any argument is refused."""
    if args:
        raise pickle.UnpicklingError("bytes() is admitted without arguments only")
    return b""


class _DtypeCall:
    """``numpy.dtype(obj, align, copy)`` as the pickle wrote it, and the state its BUILD gave.

    Kept as words: the dtype is made by :func:`_dtype` when an array or scalar
    needs it, a new one each time, so nothing the pickle does reaches NumPy's
    shared dtypes.
    """

    def __init__(self, obj=None, align=False, copy=False):
        self.obj, self.state = obj, None

    def __setstate__(self, state):
        self.state = state


def _dtype(request) -> np.dtype:
    """The dtype a :class:`_DtypeCall` asks for; UnsafePickle unless numbers, bytes or text."""
    obj = getattr(request, "obj", None)
    if not isinstance(request, _DtypeCall) or not isinstance(obj, (str, bytes)):
        raise UnsafePickle("an array's dtype must be a numpy.dtype of numbers, bytes or text")
    name = obj.decode("latin-1") if isinstance(obj, bytes) else obj
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError, SyntaxError):
        raise UnsafePickle(f"{name[:40]!r} is not a NumPy dtype") from None
    if dtype.kind not in DTYPE_KINDS or dtype.fields or dtype.subdtype or dtype.itemsize == 0:
        raise UnsafePickle(f"arrays of dtype {name[:40]!r} are not admitted (a data pickle holds "
                           f"numbers, bytes or text; no objects, fields or subarrays)")
    state = request.state
    if state is not None:
        # only the byte order is taken from the state: the name fixes kind and size
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "=", b"<", b">", b"|", b"="):
            raise UnsafePickle("a dtype's state must give its byte order")
        order = order.decode() if isinstance(order, bytes) else order
        if order in "<>" and dtype.itemsize > 1 and dtype.kind != "S":
            dtype = dtype.newbyteorder(order)
    return dtype


def _shape(shape) -> tuple:
    if (not isinstance(shape, tuple) or len(shape) > MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise UnsafePickle(f"an array's shape must be at most {MAX_NDIM} non-negative integers")
    return shape


def _filled(shape, dtype: np.dtype, data, what: str) -> int:
    """The bytes an array of ``shape`` and ``dtype`` takes, when ``data`` holds exactly that many."""
    nbytes = math.prod(shape) * dtype.itemsize
    if not isinstance(data, (bytes, bytearray)) or len(data) != nbytes:
        size = f"{len(data)} bytes" if isinstance(data, (bytes, bytearray)) else type(data).__name__
        raise UnsafePickle(f"{what} of shape {shape} and dtype {dtype} needs {nbytes} bytes; "
                           f"the pickle gives {size}")
    _BUDGET.get().charge(nbytes, what)
    return nbytes


class _NdarrayName:
    """What ``numpy.ndarray`` names in a pickle: the type handed to ``_reconstruct``, never called."""

    def __repr__(self):
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        raise UnsafePickle("numpy.ndarray(...) is not admitted (it views any buffer with any shape "
                           "and strides); a pickled array is built by _reconstruct from its bytes")


_NDARRAY = _NdarrayName()


class _PickledArray(np.ndarray):
    """An array made by ``_reconstruct``: empty until BUILD fills it, once, from bytes that fit.

    A subclass only so that its ``__setstate__`` checks the state before
    NumPy's; the readers take ``np.asarray`` of it, a plain ndarray.
    """

    def __setstate__(self, state):
        if not self.__dict__.pop("_unfilled", False):
            raise UnsafePickle("an array is filled twice")
        if not isinstance(state, tuple) or len(state) != 5:
            raise UnsafePickle("an array's state must be (version, shape, dtype, fortran, bytes)")
        version, shape, request, fortran, data = state
        shape, dtype = _shape(shape), _dtype(request)
        if type(version) is not int or fortran not in (True, False):
            raise UnsafePickle("an array's state must be (version, shape, dtype, fortran, bytes)")
        _filled(shape, dtype, data, "an array")
        np.ndarray.__setstate__(self, (version, shape, dtype, bool(fortran), bytes(data)))


def _reconstruct(subtype, shape, dtype):
    """``multiarray._reconstruct``: an empty plain array, to be filled by :class:`_PickledArray`."""
    if subtype is not _NDARRAY or not isinstance(shape, tuple) or math.prod(_shape(shape)) != 0:
        raise UnsafePickle("_reconstruct is admitted only for an empty numpy.ndarray (as NumPy "
                           "pickles arrays); the array's size comes from its bytes")
    array = np.ndarray.__new__(_PickledArray, (0,), np.uint8)
    array._unfilled = True
    return array


def _frombuffer(buffer, dtype, shape, order="C"):
    """``numeric._frombuffer`` (protocol 5): an array of the bytes given, which must fill ``shape``."""
    dtype, shape = _dtype(dtype), _shape(shape)
    if order not in ("C", "F"):
        raise UnsafePickle("_frombuffer's order must be 'C' or 'F'")
    _filled(shape, dtype, buffer, "an array")
    # a plain ndarray: BUILD on it reaches NumPy's own __setstate__, which needs a real
    # dtype, and a pickle holds only _DtypeCall stand-ins, so that BUILD fails
    return numeric._frombuffer(buffer, dtype, shape, order)


def _scalar(dtype, data=None):
    """``multiarray.scalar``: one NumPy number (or bytes, text) from exactly its bytes."""
    dtype = _dtype(dtype)
    _filled((), dtype, data, "a scalar")
    return multiarray.scalar(dtype, data)


def _admitted() -> dict:
    numpy_parts = {("multiarray", "_reconstruct"): _reconstruct,
                   ("multiarray", "scalar"): _scalar,
                   ("numeric", "_frombuffer"): _frombuffer}
    admitted = {(f"{package}.{module}", name): value
                for package in ("numpy.core", "numpy._core")
                for (module, name), value in numpy_parts.items()}
    admitted.update({("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _DtypeCall,
                     ("_codecs", "encode"): _latin1_encode,
                     ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes})
    return admitted


# (module, name) as a pickle spells it -> the object it gets
ADMITTED_GLOBALS = _admitted()


class DataUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ``ADMITTED_GLOBALS`` and raises RefusedPickle for the rest.

    ``limit``: the bytes its arrays, scalars and bytes may take in all (None: no bound).
    """

    def __init__(self, file, *, limit: int | None, **options):
        super().__init__(file, **options)
        self._budget = _Budget(limit)

    def load(self):
        token = _BUDGET.set(self._budget)
        try:
            return super().load()
        finally:
            _BUDGET.reset(token)

    def find_class(self, module, name):
        try:
            return ADMITTED_GLOBALS[(module, name)]
        except (KeyError, TypeError):  # TypeError: a name that is not a string
            raise RefusedPickle(f"{module}.{name}") from None


def load_data_pickle(path: Path):
    """The object pickled in ``path``, if it is made of plain values and NumPy arrays only.

    Python 2 strings load as bytes (``encoding="bytes"``, as the CIFAR-10
    batches need). Raises RefusedPickle for any other global, UnsafePickle for
    arrays that do not fit their bytes or that would build more than GROWTH
    times the file plus SLACK; other errors are the ones a corrupt pickle
    raises (UnpicklingError, EOFError, ...).
    """
    with open(path, "rb") as handle:
        limit = GROWTH * Path(path).stat().st_size + SLACK
        return DataUnpickler(handle, limit=limit, encoding="bytes").load()


__all__ = ["ADMITTED_GLOBALS", "DataUnpickler", "RefusedPickle", "UnsafePickle", "load_data_pickle",
           "GROWTH", "SLACK"]
