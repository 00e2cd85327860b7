"""YAML 1.2 for recipes: a loader with a key-path -> line map and a node budget, and a dumper.

PyYAML implements YAML 1.1, where ``1e-3`` is a string and ``yes`` a boolean;
recipes are read the YAML 1.2 way instead: ``1e-3`` is a float and only
true/false are booleans. :func:`compose` parses text into plain dicts, lists
and scalars plus ``{key path: line}`` for error messages, refusing tags other
than the plain ones, documents over ``_MAX_NODES`` nodes or deeper than
``_MAX_DEPTH``. :func:`dump` writes the resolved form back (sections in block
style, small leaf collections in flow style), quoting exactly the strings the
loader would read as something else, so dump -> compose round-trips.
"""

from __future__ import annotations

import re

import yaml

from babysit.errors import RecipeError
from babysit.validation import show

_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
# YAML 1.2 core floats (1e-3 included); plain integers stay with the int resolver.
_FLOAT_RE = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                              |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                              |[0-9][0-9_]*[eE][-+]?[0-9]+)
                            |[-+]?\.(?:inf|Inf|INF)
                            |\.(?:nan|NaN|NAN))$""", re.X)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


def _yaml12_resolvers():
    table = {first: [(tag, rx) for tag, rx in resolvers if tag not in (_FLOAT_TAG, _BOOL_TAG)]
             for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    for first in "tTfF":
        table.setdefault(first, []).insert(0, (_BOOL_TAG, _BOOL_RE))
    for first in "-+0123456789.":
        table.setdefault(first, []).insert(0, (_FLOAT_TAG, _FLOAT_RE))
    return table


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when present
    """Safe loader reading numbers and booleans the YAML 1.2 way."""

    yaml_implicit_resolvers = _yaml12_resolvers()


class _Dumper(yaml.SafeDumper):
    """Quotes exactly the strings that :class:`_Loader` would read as non-strings."""

    yaml_implicit_resolvers = _yaml12_resolvers()


class _FlowDict(dict):
    """Written in flow style: ``{out: 50}``."""


class _FlowList(list):
    """Written in flow style: ``[mean_image]``."""


_Dumper.add_representer(_FlowDict, lambda d, v: d.represent_mapping(
    "tag:yaml.org,2002:map", v.items(), flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence(
    "tag:yaml.org,2002:seq", v, flow_style=True))


def _flow_leaves(value, depth=0):
    """Sections and lists of layers in block style, small leaf collections in flow style."""
    if isinstance(value, dict):
        inner = {k: _flow_leaves(v, depth + 1) for k, v in value.items()}
        leaf = depth >= 2 and not any(isinstance(v, (dict, list)) for v in value.values())
        return _FlowDict(inner) if leaf else inner
    if isinstance(value, list):
        inner = [_flow_leaves(v, depth + 1) for v in value]
        leaf = depth >= 2 and not any(isinstance(v, (dict, list)) for v in value)
        return _FlowList(inner) if leaf else inner
    return value


def dump(value) -> str:
    """A recipe's resolved dict as YAML text that :func:`compose` reads back equal."""
    return yaml.dump(_flow_leaves(value), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


_MAX_NODES = 100_000
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_MERGE_TAG = "tag:yaml.org,2002:merge"  # the key ``<<``
_MAX_DEPTH = 64


def dotted(path) -> str:
    """A key path as the user writes it: ``("model", "layers", 0)`` -> ``model.layers.0``."""
    return ".".join(str(p) for p in path)


def at(path) -> str:
    """:func:`dotted`, or "the top level" for the empty path."""
    return dotted(path) if path else "the top level"


def _yaml_problem(exc: yaml.YAMLError) -> tuple[str, int | None]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context and "could not determine" not in problem else problem
    return " ".join(text.split()), (mark.line + 1 if mark is not None else None)


def compose(text: str, origin: str):
    """Parse YAML text into plain values plus ``{key path: line}`` (paths are tuples of keys
    and list indexes; ``()`` is the document). Errors are one-line RecipeErrors naming ``origin``."""
    loader = None
    lines: dict = {(): 1}
    budget = [_MAX_NODES]

    def build_mapping(node, path) -> dict:
        # Merge keys (``<<: *base``, ``<<: [*a, *b]``) the YAML way: a key written
        # in the mapping overrides a merged one, and of several merged mappings
        # the first that has a key wins. A key written twice is still an error.
        merged, out, merge_seen = {}, {}, False
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                if merge_seen:
                    raise RecipeError(f"{origin}: duplicate key '<<' at {at(path)} (line {line})")
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) \
                    else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise RecipeError(f"{origin}: '<<' at {at(path)} (line {line}) must merge "
                                          "a mapping or a list of mappings")
                    for key, value in build(source, path).items():
                        merged.setdefault(key, value)
                merge_seen = True
                continue
            key = loader.construct_object(key_node, deep=True) \
                if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise RecipeError(f"{origin}: keys must be names, got {show(key)} at "
                                  f"{at(path)} (line {line})")
            if key in out:
                raise RecipeError(f"{origin}: duplicate key {key!r} at {at(path)} (line {line})")
            lines[path + (key,)] = line
            out[key] = build(value_node, path + (key,))
        return {**merged, **out}

    def build(node, path):
        budget[0] -= 1
        if budget[0] < 0 or len(path) > _MAX_DEPTH:
            raise RecipeError(f"{origin}: the YAML is nested too deeply or too large "
                              f"(line {node.start_mark.line + 1})")
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise RecipeError(f"{origin}: unsupported YAML tag {node.tag!r} at {at(path)} "
                              f"(line {node.start_mark.line + 1})")
        if isinstance(node, yaml.MappingNode):
            return build_mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [build(item, path + (i,)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        loader = _Loader(text)  # the reader already rejects control characters
        node = loader.get_single_node()
        value = None if node is None else build(node, ())
    except yaml.YAMLError as exc:
        problem, line = _yaml_problem(exc)
        where = f" (line {line})" if line is not None else ""
        raise RecipeError(f"{origin}: YAML syntax error{where}: {problem}") from None
    except RecursionError:
        raise RecipeError(f"{origin}: the YAML is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, lines


__all__ = ["compose", "dump", "dotted", "at"]
