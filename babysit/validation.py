"""One set of input checks, used at every boundary.

Recipes, engine constructors, optimizers, initializers, data steps and
diagnosis options all say what a value may be with the same :class:`Rule`
objects, so a bound is written once and every place that checks it agrees
(the recipe schema is derived from the engine's option tables, which use
these rules). NumPy and the standard library only: the engine imports it.

A rule checks one scalar::

    POSITIVE_INT.check(value, "train.epochs")            # -> int, or BabysitError
    KEEP_PROB.check(value, "dropout: keep", ModelError)  # -> float, or ModelError
    POSITIVE.accepts(1e-3)                               # -> True

The message is always ``"<name> must be <phrase>, got <value>"``.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

from babysit.errors import BabysitError

REQUIRED: Any = object()  # an option table's default for "must be given"

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def show(value) -> str:
    """A short printable form of a user's value, for messages."""
    return _repr.repr(value)


def size_text(nbytes: float) -> str:
    """A byte count for messages: ``"3.73 GiB"``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return ""


@dataclass(frozen=True)
class Rule:
    """What one scalar option may be: ``phrase`` completes "<name> must be ...".

    ``test`` receives the value as a finite float (or int, for ``integer``
    rules). Integer rules also accept integral floats (``1e3`` -> 1000); other
    rules keep integers integral (``20`` stays 20). ``nullable`` admits None.
    Booleans, strings and non-finite numbers are never numbers here.
    """

    phrase: str
    test: Callable[[Any], bool]
    integer: bool = False
    nullable: bool = False

    def convert(self, value):
        """``value`` as int/float (None for a nullable None); ValueError when it breaks the rule."""
        if value is None and self.nullable:
            return None
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an integer too large for any float
                number = math.inf
            if math.isfinite(number):
                if self.integer:
                    if number.is_integer():
                        whole = int(value) if isinstance(value, numbers.Integral) else int(number)
                        if self.test(whole):
                            return whole
                elif self.test(number):
                    return int(value) if isinstance(value, numbers.Integral) else number
        raise ValueError(self.phrase)

    def accepts(self, value) -> bool:
        try:
            self.convert(value)
        except ValueError:
            return False
        return True

    def check(self, value, name: str, error: type[Exception] = BabysitError):
        """The converted value, or ``error("<name> must be <phrase>, got <value>")``."""
        try:
            return self.convert(value)
        except ValueError:
            raise error(f"{name} must be {self.phrase}, got {show(value)}") from None

    def or_null(self) -> "Rule":
        """The same rule, also admitting None."""
        return replace(self, phrase=f"null or {self.phrase}", nullable=True)


NUMBER = Rule("a finite number", lambda x: True)
POSITIVE = Rule("a positive number", lambda x: x > 0)
NON_NEGATIVE = Rule("a non-negative number", lambda x: x >= 0)
OPEN_UNIT = Rule("a number strictly between 0 and 1", lambda x: 0 < x < 1)
HALF_OPEN_UNIT = Rule("a number in [0, 1)", lambda x: 0 <= x < 1)
KEEP_PROB = Rule("a number in (0, 1]", lambda x: 0 < x <= 1)
POSITIVE_INT = Rule("a positive integer", lambda x: x >= 1, integer=True)
NON_NEGATIVE_INT = Rule("a non-negative integer", lambda x: x >= 0, integer=True)
CLASS_COUNT = Rule("an integer >= 2", lambda x: x >= 2, integer=True)
# Seeds are stored as HDF5 64-bit integers, and an ensemble's members take seed + 1,
# seed + 2 ...: 2**62 leaves that room (a 20-digit --seed crashed the log's first save)
MAX_SEED = 2 ** 62
SEED = Rule("an integer from 0 to 2**62", lambda x: 0 <= x <= MAX_SEED, integer=True)


def check_keys(mapping: Mapping, valid: Iterable[str], where: str,
               error: type[Exception] = BabysitError) -> None:
    """``error("unknown key 'k' in <where>; valid keys: ...")`` for the first key not in ``valid``."""
    valid = list(valid)
    for key in mapping:
        if key not in valid:
            raise error(f"unknown key {key!r} in {where}; valid keys: {', '.join(valid) or 'none'}")


def as_mapping(section, what: str, error: type[Exception] = BabysitError) -> Mapping:
    """A mapping, or a recipe section's ``to_dict()``; ``error`` for anything else."""
    if isinstance(section, Mapping):
        return section
    to_dict = getattr(section, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    raise error(f"{what} must be a mapping, got {type(section).__name__}")


def resolve_options(given: Mapping, table: Mapping, where: str,
                    error: type[Exception] = BabysitError, *,
                    key_error: type[Exception] | None = None) -> dict:
    """Check ``given`` against an option table ``{name: (default, rule)}``.

    Unknown keys, missing REQUIRED ones and values breaking their rule raise
    ``error`` naming ``where``; absent options take their defaults. The
    result has the table's key order. ``key_error`` (default ``error``) is
    raised instead for unknown and missing keys: an engine constructor raises
    TypeError there, as Python does for a bad keyword argument, and
    ValueError for a bad value.
    """
    key_error = key_error or error
    check_keys(given, table, where, key_error)
    out = {}
    for key, (default, rule) in table.items():
        if key in given:
            out[key] = rule.check(given[key], f"{where}: {key}", error)
        elif default is REQUIRED:
            raise key_error(f"{where} needs the option {key!r}")
        else:
            out[key] = default
    return out


__all__ = ["Rule", "REQUIRED", "show", "size_text", "check_keys", "as_mapping", "resolve_options",
           "NUMBER", "POSITIVE", "NON_NEGATIVE", "OPEN_UNIT", "HALF_OPEN_UNIT", "KEEP_PROB",
           "POSITIVE_INT", "NON_NEGATIVE_INT", "CLASS_COUNT", "MAX_SEED", "SEED"]
