"""Dotted overrides (``--set KEY=VALUE``) applied to a raw recipe before validation.

A key is a dotted path into the recipe, list indexes included
(``model.layers.0.affine.out=100``). String values are read as YAML 1.2
(``"1e-3"`` -> 0.001, ``""`` -> null); other values are used as they are.
:func:`apply_overrides` records which override set which path, so a
validation error at, inside or above that path names the override instead of
a file line.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from babysit.errors import RecipeError
from babysit.recipes.yaml12 import compose, dotted
from babysit.validation import show


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)


def _override_items(overrides) -> list[tuple[str, Any, str]]:
    """``{"a.b": v}`` or ``["a.b=v", ...]`` -> ``[(key, value, "--set a.b=v")]``."""
    if overrides is None:
        return []
    items = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            shown = _printable(value) if isinstance(value, str) else show(value)
            items.append((key, value, f"--set {_printable(str(key))}={shown}"))
        return items
    if isinstance(overrides, str):
        overrides = [overrides]
    for text in overrides:
        if not isinstance(text, str) or "=" not in text:
            raise RecipeError(f"--set expects KEY=VALUE (e.g. optim.lr=1e-3), got {show(text)}")
        key, _, value = text.partition("=")
        items.append((key.strip(), value, f"--set {_printable(key.strip())}={_printable(value)}"))
    return items


def _override_value(value, label: str):
    if not isinstance(value, str):
        return copy.deepcopy(value)
    value = value.strip()
    if not value:
        return None
    parsed, _ = compose(value, label)
    return parsed


def apply_overrides(raw, overrides, lines: dict) -> dict:
    """Set each dotted key in ``raw`` (in place); returns ``{path: label}`` for error messages.

    Missing mapping keys are created (validation then names them if unknown);
    list indexes must exist. A layer or step written as a bare name (``relu``)
    is expanded when the path goes into it (``model.layers.1.relu.init``).
    """
    sources: dict = {}
    for key, value, label in _override_items(overrides):
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise RecipeError(f"{label}: the key must be a dotted path such as optim.lr")
        value = _override_value(value, label)
        parts = key.split(".")
        if not isinstance(raw, dict):
            raise RecipeError(f"{label}: the recipe is not a mapping")
        container, walked = raw, []
        for i, part in enumerate(parts):
            if isinstance(container, list):
                if not part.isdigit() or int(part) >= len(container):
                    raise RecipeError(f"{label}: {dotted(walked)} is a list of {len(container)} entries; "
                                      f"use an index 0..{len(container) - 1}, got {part!r}")
                step: Any = int(part)
            elif isinstance(container, dict):
                step = part
            else:
                raise RecipeError(f"{label}: {dotted(walked)} is {show(container)}, "
                                  f"not a mapping or a list")
            walked.append(step)
            if i == len(parts) - 1:
                container[step] = value
                break
            child = container.get(step) if isinstance(container, dict) else container[step]
            if child is None:
                child = {}
            elif isinstance(child, str) and parts[i + 1] == child:
                child = {child: {}}
            container[step] = child
            container = child
        path = tuple(walked)
        for known in [p for p in lines if p[:len(path)] == path]:
            del lines[known]
        sources = {p: s for p, s in sources.items() if p[:len(path)] != path}
        sources[path] = label
    return sources


__all__ = ["apply_overrides"]
