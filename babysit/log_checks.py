"""What a babysit log must be before its data is read, and the typed readers of its values.

A log is untrusted input (a file someone handed over, a disk that failed): it
may be damaged or built to hurt. :func:`babysit.store.read_log` first checks
the whole file with :func:`check_structure`, then each kind's reader takes
every value through the readers below, which say what they expected. The rules:

* **A tree of hard links.** babysit writes no soft or external links, so any
  link is damage (a soft link may loop), and so is a group or dataset reached
  twice (a hard-link cycle makes every walk endless).
* **Scalar attributes.** Every attribute is one number, boolean or UTF-8
  string: all babysit writes. An array attribute is refused unread.
* **Stored data only.** A dataset holds numbers, booleans or strings, and its
  declared size (elements x element size) is at most the bytes it has stored
  in the file; the stored bytes of all datasets together are at most the
  file's size. babysit writes only contiguous, uncompressed datasets, so this
  costs a genuine log nothing, while a dataset that declares more than it
  stores (chunked with unwritten chunks, compressed, external or virtual) is
  refused before it is read: reading a log never needs much more memory than
  the file's size. Variable-length strings are read one at a time against the
  same budget (many entries may point at one stored string).
* **Meaning.** Each kind's reader then checks shapes and types (a history
  array is 1-D and as long as its siblings, a checkpoint holds numeric
  arrays, ``recipe`` is text, ``result`` a JSON object ...).

Every violation is a :class:`DamagedLog` (a ValueError) saying what is wrong
and where; ``read_log`` adds the file's name and makes it a StoreError.
"""

from __future__ import annotations

import json
import re

import numpy as np

from babysit.validation import Rule, show

NUMERIC_KINDS = "biuf"     # numpy kinds babysit stores in datasets (besides strings)
# Objects and attributes in one log, at most. A run log of a 200-layer net holds about
# 5,000 objects; every object costs h5py about half a millisecond, so a log of 250,000
# empty datasets (91 MB) kept `report` busy for minutes and used 2.9 GB.
MAX_OBJECTS = 50_000
MAX_ATTRIBUTES = 50_000


class DamagedLog(ValueError):
    """What is wrong with a log and where inside it (the file's name is added by read_log)."""


def _is_text(dtype) -> bool:
    import h5py

    return h5py.check_string_dtype(dtype) is not None


def check_structure(handle, file_size: int) -> None:
    """Apply the tree, attribute and stored-data rules (module docstring) to the whole file."""
    import h5py

    seen = {handle.id}
    stored_total = attribute_count = 0
    pending = [("", handle)]   # a stack, not recursion: a deep file cannot exhaust Python's
    while pending:
        where, group = pending.pop()
        attribute_count += len(group.attrs)
        check_attributes(group, where or "/")
        if len(seen) + len(group) > MAX_OBJECTS or attribute_count > MAX_ATTRIBUTES:
            raise DamagedLog(f"it holds more than {MAX_OBJECTS} objects or {MAX_ATTRIBUTES} "
                             "attributes, far more than any babysit log")
        for key in group:
            path = f"{where}/{key}"
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise DamagedLog(f"{path} is a {type(link).__name__} (babysit logs hold no links)")
            item = group[key]
            if item.id in seen:
                raise DamagedLog(f"{path} is an object already linked elsewhere in the file "
                                 f"(a hard-link cycle or a shared object)")
            seen.add(item.id)
            if isinstance(item, h5py.Group):
                pending.append((path, item))
            elif isinstance(item, h5py.Dataset):
                attribute_count += len(item.attrs)
                if attribute_count > MAX_ATTRIBUTES:
                    raise DamagedLog(f"it holds more than {MAX_ATTRIBUTES} attributes, far more "
                                     "than any babysit log")
                check_attributes(item, path)
                stored_total += check_dataset(item, path)
                if stored_total > file_size:
                    raise DamagedLog(f"its datasets claim {stored_total} stored bytes, more than the "
                                     f"file's {file_size}")
            else:
                raise DamagedLog(f"{path} is a {type(item).__name__}, not a group or dataset")


def check_attributes(item, where: str) -> None:
    """Every attribute of ``item`` is a scalar number, boolean or string (checked unread)."""
    for name in item.attrs:
        check_attribute(item, name, where)


def check_attribute(item, name: str, where: str) -> None:
    """One attribute: a scalar number or string that stores what its type declares."""
    info = item.attrs.get_id(name)
    if info.shape != () or not (info.dtype.kind in NUMERIC_KINDS and info.dtype.shape == ()
                                or _is_text(info.dtype)):
        raise DamagedLog(f"attribute {name!r} of {where} is not a single number or text "
                         f"(shape {info.shape}, type {info.dtype})")
    declared, stored = info.get_type().get_size(), info.get_storage_size()
    if declared > stored:   # a fixed-size text type of gigabytes with a few bytes behind it
        raise DamagedLog(f"attribute {name!r} of {where} declares {declared} bytes but stores {stored}")


def check_dataset(dataset, where: str) -> int:
    """Stored bytes of ``dataset``, once its type and declared size are checked (see module doc)."""
    dtype = dataset.dtype
    if dataset.shape is None or not (dtype.kind in NUMERIC_KINDS and dtype.shape == () or _is_text(dtype)):
        raise DamagedLog(f"{where} holds {dtype} data (babysit stores numbers and text only)")
    if dataset.is_virtual or dataset.external:
        raise DamagedLog(f"{where} keeps its data outside the file")
    declared = dataset.size * dataset.id.get_type().get_size()
    stored = dataset.id.get_storage_size()
    if declared > stored:
        raise DamagedLog(f"{where} declares shape {dataset.shape} ({declared} bytes) but stores "
                         f"{stored} bytes (babysit writes neither compressed nor sparse datasets)")
    return stored


# ---------------------------------------------------------------------------
# typed readers: each says what it expected, naming the place in the log


def group_at(parent, key: str, where: str):
    """The group ``parent[key]``; DamagedLog when it is missing or a dataset."""
    import h5py

    item = parent.get(key)
    if not isinstance(item, h5py.Group):
        raise DamagedLog(f"{where} is {'missing' if item is None else 'a dataset'}, expected a group")
    return item


def numbers(item, where: str, ndim: int | None = None) -> np.ndarray:
    """A dataset of numbers (``ndim`` dimensions when given), read."""
    import h5py

    if not isinstance(item, h5py.Dataset):
        raise DamagedLog(f"{where} is {'missing' if item is None else 'a group'}, "
                         f"expected an array of numbers")
    if item.dtype.kind not in NUMERIC_KINDS:
        raise DamagedLog(f"{where} holds {item.dtype} values, expected numbers")
    if ndim is not None and item.ndim != ndim:
        raise DamagedLog(f"{where} has shape {item.shape}, expected {ndim} dimension(s)")
    return item[()]


def numbers_tree(group, where: str) -> dict:
    """Nested dict of the numeric arrays under ``group`` (subgroups become dicts)."""
    import h5py

    return {key: numbers_tree(item, f"{where}/{key}") if isinstance(item, h5py.Group)
            else numbers(item, f"{where}/{key}") for key, item in group.items()}


def numbers_flat(group, where: str) -> dict:
    """``{"t": 3, "0.W/m": array}``: the numeric datasets under ``group`` by relative path
    (0-d ones as Python scalars)."""
    import h5py

    out = {}
    pending = [("", group)]
    while pending:
        prefix, node = pending.pop()
        for key, item in node.items():
            name = f"{prefix}{key}"
            if isinstance(item, h5py.Group):
                pending.append((f"{name}/", item))
            else:
                value = numbers(item, f"{where}/{name}")
                out[name] = value.item() if value.ndim == 0 else value
    return dict(sorted(out.items()))


def strings(item, where: str, budget: int) -> list[str]:
    """A 1-D dataset of text, read one entry at a time: at most ``budget`` characters in all
    (entries may share one stored string, so the total is checked as they are read)."""
    import h5py

    if item is None:
        raise DamagedLog(f"{where} is missing")
    if not isinstance(item, h5py.Dataset) or not _is_text(item.dtype) or item.ndim != 1:
        raise DamagedLog(f"{where} is not a 1-D array of text")
    out, total = [], 0
    text = item.asstr()
    for row in range(len(item)):
        value = text[row]
        total += len(value)
        if total > budget:
            raise DamagedLog(f"{where} holds more text than the file stores")
        out.append(value)
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD: no strict terminal, JSON reader
    or HDF5 write accepts one (a valid pair is one character in a Python str already)."""
    return _SURROGATE.sub("\ufffd", text)


def decode(value, where: str):
    """An attribute value as plain Python: str, int, float or bool. h5py hands UTF-8 text
    with invalid bytes over as lone surrogates: they become U+FFFD."""
    if isinstance(value, str):
        return _without_surrogates(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise DamagedLog(f"{where} is not UTF-8 text: {show(value)}") from None
    if isinstance(value, np.generic):
        return value.item()
    return value


def attributes(item, where: str, skip=()) -> dict:
    """Every attribute of ``item`` (already checked scalar) decoded, but those in ``skip``."""
    return {name: decode(item.attrs[name], f"attribute {name!r} of {where}")
            for name in item.attrs if name not in skip}


def text(attrs: dict, key: str, where: str = "/") -> str:
    value = attrs[key]
    if not isinstance(value, str):
        raise DamagedLog(f"attribute {key!r} of {where} must be text, got {show(value)}")
    return value


def json_text(value, what: str, expected: type = dict):
    """Parsed JSON text of the ``expected`` type (a dict or list)."""
    if not isinstance(value, str):
        raise DamagedLog(f"{what} must be JSON text, got {show(value)}")
    try:
        parsed = json.loads(value)
    except RecursionError:
        raise DamagedLog(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise DamagedLog(f"{what} is not JSON ({exc})") from None
    if not isinstance(parsed, expected):
        raise DamagedLog(f"{what} must be a JSON {'object' if expected is dict else 'list'}, "
                         f"got {type(parsed).__name__}")
    return _printable(parsed)


def _printable(tree):
    """``tree`` with every text free of lone surrogates (U+FFFD instead): JSON's ``\\ud800``
    escape parses to a str no terminal or file can encode, and report crashed on it."""
    root = [tree]
    stack = [(root, 0)]
    while stack:   # iterative: the parser's own depth limit is the only one
        parent, key = stack.pop()
        value = parent[key]
        if isinstance(value, str):
            parent[key] = _without_surrogates(value)
        elif isinstance(value, list):
            stack.extend((value, index) for index in range(len(value)))
        elif isinstance(value, dict):
            for name in list(value):
                if isinstance(name, str) and _without_surrogates(name) != name:
                    value[_without_surrogates(name)] = value.pop(name)
            stack.extend((value, name) for name in value)
    return root[0]


def checked_attrs(attrs: dict, rules: dict, where: str = "/") -> None:
    """The attributes named in ``rules`` that are present obey them: a babysit.validation
    Rule, ``str``, ``bool`` (may be stored as 0/1) or ``float`` (any number, NaN and inf
    included: a recorded loss may be either)."""
    for key, rule in rules.items():
        if key not in attrs:
            continue
        value = attrs[key]
        if isinstance(rule, Rule):
            ok, phrase = rule.accepts(value), rule.phrase
        elif rule is bool:
            ok, phrase = isinstance(value, (bool, int)) and value in (0, 1), "true or false"
        elif rule is float:
            ok, phrase = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            ok, phrase = isinstance(value, rule), rule.__name__
        if not ok:
            raise DamagedLog(f"attribute {key!r} of {where} must be {phrase}, got {show(value)}")


def leaves(tree: dict, where: str, depth: int):
    """``(path, array)`` of a nested dict whose arrays sit exactly ``depth`` levels down."""
    for key, value in tree.items():
        path = f"{where}/{key}"
        if depth == 1:
            if isinstance(value, dict):
                raise DamagedLog(f"{path} is a group, expected an array")
            yield path, value
        elif not isinstance(value, dict):
            raise DamagedLog(f"{path} is a dataset, expected a group")
        else:
            yield from leaves(value, path, depth - 1)


def equal_lengths(arrays, unit: str, length: int | None = None) -> int | None:
    """Check that every ``(path, array)`` is 1-D with ``length`` entries (default: the first
    one's), one per ``unit``; returns the length (None when there were no arrays)."""
    for path, value in arrays:
        if value.ndim != 1:
            raise DamagedLog(f"{path} has shape {value.shape}, expected one value per {unit}")
        if length is None:
            length = len(value)
        elif len(value) != length:
            raise DamagedLog(f"{path} has {len(value)} entries, expected {length} (one per {unit})")
    return length


__all__ = ["DamagedLog", "check_structure", "check_attributes", "check_attribute", "check_dataset", "group_at", "numbers",
           "numbers_tree", "numbers_flat", "strings", "decode", "attributes", "text", "json_text",
           "checked_attrs", "leaves", "equal_lengths"]
