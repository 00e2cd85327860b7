"""What the parts of a run log must be, beyond :mod:`babysit.log_checks`' structure rules.

:class:`babysit.store.RunLog` reads a run log through these checks, so that a
damaged log is refused, naming the part, before ``train --resume`` trains or
``report`` renders anything (a 2-D history array used to crash the resumed
run's first save, after the work was done):

* root attributes (:data:`RUN_ATTRS`) and a checkpoint's (:data:`CHECKPOINT_ATTRS`)
  have the types babysit writes;
* ``history/iteration/*`` are 1-D with one entry per step, all as long;
  ``history/epoch/*`` are 1-D with one entry per finished epoch, as many as
  the log's ``epochs_run``; ``monitors/*/*`` and ``layers/*/*`` at most as many
  (a resume's ``--set`` may change a layer: its records stop, the new one's start);
  ``initial/*/*`` are scalars. No more epochs than steps. (The step count is
  not held to the ``iterations`` attribute: a diverged run that was resumed
  records the steps after its checkpoint twice. The sizes of all of these are
  bounded by the file's size, see :mod:`babysit.log_checks`.)
* ``result`` is a JSON object whose ``findings`` are objects with text
  ``code``, ``severity`` and ``message`` and whose ``metrics`` is an object.
* an ensemble's ``comparison`` is empty (the run stopped before it) or has
  every key of :data:`COMPARISON`, each member every key of :data:`MEMBER`
  (what ``report``'s ensemble tables read), as many members and seeds as it
  counts, and no number too large for a float.
"""

from __future__ import annotations

import sys

import numpy as np

from babysit.log_checks import DamagedLog, checked_attrs, equal_lengths, json_text, leaves, numbers_tree
from babysit.validation import CLASS_COUNT, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT

RUN_ATTRS = {"name": str, "status": str, "seed": NON_NEGATIVE_INT, "epochs": NON_NEGATIVE_INT,
             "epochs_run": NON_NEGATIVE_INT, "iterations": NON_NEGATIVE_INT,
             "iterations_per_epoch": POSITIVE_INT, "num_classes": CLASS_COUNT, "reg": NON_NEGATIVE,
             "start_loss": float, "line_search": bool, "recipe_path": str, "recipe_base_dir": str,
             "babysit_version": str}
# The loop state of ``last`` (epoch, iteration, generators) is checked where it is
# used, by the resume (it needs the recipe); these are what ``report`` shows.
CHECKPOINT_ATTRS = {"score": float, "val_accuracy": float}

# train --ensemble's comparison (its result's metrics["ensemble"]); a number (float) may
# also be null
SPREAD = {"best": float, "mean": float}   # over the members
MEMBER = {"seed": NON_NEGATIVE_INT, "status": str, "epochs_run": NON_NEGATIVE_INT,
          "val_accuracy": float, "best_val_accuracy": float, "average_val_accuracy": float,
          "checkpoint_val_accuracy": float}
COMPARISON = {"members": NON_NEGATIVE_INT, "used": NON_NEGATIVE_INT, "best_member": NON_NEGATIVE_INT,
              "checkpoint_ensemble": NON_NEGATIVE_INT, "polyak_beta": float, "val_accuracy": float,
              "gain_points": float, "gain_points_over_mean": float, "single": SPREAD,
              "polyak": SPREAD, "checkpoints": SPREAD, "seeds": [NON_NEGATIVE_INT],
              "per_member": [MEMBER]}

# history part -> (levels of groups above its arrays, what one entry stands for)
# ("epochs at most": a layer or parameter that a resume's --set changed, e.g. 1.relu ->
# 1.tanh, has the epochs before the change; its successor those after)
HISTORY_PARTS = {"iteration": (1, "step"), "epoch": (1, "epoch"), "monitors": (2, "epochs at most"),
                 "layers": (2, "epochs at most"), "initial": (2, None)}


def read_history(group, attrs: dict) -> dict:
    """The ``history/`` group as a nested dict of arrays, checked (module docstring)."""
    tree = numbers_tree(group, "/history")
    counts = {"step": None, "epoch": attrs.get("epochs_run")}
    for part, (depth, unit) in HISTORY_PARTS.items():
        node = tree.get(part, {})
        if not isinstance(node, dict):
            raise DamagedLog(f"/history/{part} is a dataset, expected a group")
        arrays = leaves(node, f"/history/{part}", depth)
        if unit is None:
            for path, value in arrays:
                if value.ndim != 0:
                    raise DamagedLog(f"{path} has shape {value.shape}, expected a single number")
        elif unit == "epochs at most":
            for path, value in arrays:
                if value.ndim != 1 or (counts["epoch"] is not None and len(value) > counts["epoch"]):
                    raise DamagedLog(f"{path} has shape {value.shape}, expected at most one value "
                                     f"per epoch ({counts['epoch']})")
        else:
            counts[unit] = equal_lengths(arrays, unit, counts[unit])
    numbers = tree.get("epoch", {}).get("epoch")
    if numbers is not None and numbers.size and not (np.all(np.isfinite(numbers)) and numbers.min() >= 1
                                                     and np.all(numbers == np.round(numbers))):
        raise DamagedLog("/history/epoch/epoch holds epoch numbers that are not whole numbers from 1")
    if None not in counts.values() and counts["epoch"] > counts["step"]:
        raise DamagedLog(f"the history has {counts['epoch']} epochs but only {counts['step']} steps")
    return tree


def checked_result(value) -> dict:
    """The ``result`` attribute parsed: a JSON object with findings and metrics of the right kinds."""
    result = json_text(value, "attribute 'result'")
    findings = result.get("findings", [])
    if not isinstance(findings, list) or not all(
            isinstance(f, dict) and all(isinstance(f.get(key), str) for key in ("code", "severity", "message"))
            for f in findings):
        raise DamagedLog("attribute 'result' has findings that are not {code, severity, message} objects")
    if not isinstance(result.get("metrics", {}), dict):
        raise DamagedLog("attribute 'result' has metrics that are not a JSON object")
    return result


def checked_comparison(value) -> dict:
    """An ensemble's ``comparison`` attribute parsed and checked (module docstring)."""
    comparison = json_text(value, "attribute 'comparison' of /ensemble")
    if comparison:
        where = "/ensemble's comparison"
        _check_object(comparison, COMPARISON, where)
        members = comparison["members"]
        if not len(comparison["per_member"]) == len(comparison["seeds"]) == members:
            raise DamagedLog(f"{where} counts {members} members but lists {len(comparison['per_member'])} "
                             f"and {len(comparison['seeds'])} seeds")
        if comparison["used"] > members or (members and comparison["best_member"] >= members):
            raise DamagedLog(f"{where} names more members used, or a best member, than it has")
    return comparison


def _check_object(value, rules: dict, where: str) -> None:
    """Every key of ``rules`` present in the JSON object ``value`` and obeying its rule: one
    of :func:`babysit.log_checks.checked_attrs`', a dict of rules (an object) or ``[rule]``
    (a list of such values)."""
    if not isinstance(value, dict):
        raise DamagedLog(f"{where} must be a JSON object, got {type(value).__name__}")
    missing = sorted(set(rules) - set(value))
    if missing:
        raise DamagedLog(f"{where} lacks {', '.join(missing)}")
    plain = {}
    for key, rule in rules.items():
        if isinstance(rule, dict):
            _check_object(value[key], rule, f"{key!r} of {where}")
        elif isinstance(rule, list):
            if not isinstance(value[key], list):
                raise DamagedLog(f"{key!r} of {where} must be a JSON list")
            for index, item in enumerate(value[key]):
                if isinstance(rule[0], dict):
                    _check_object(item, rule[0], f"{key}[{index}] of {where}")
                else:
                    checked_attrs({f"{key}[{index}]": item}, {f"{key}[{index}]": rule[0]}, where)
        elif rule is float and isinstance(value[key], int) and abs(value[key]) > sys.float_info.max:
            raise DamagedLog(f"attribute {key!r} of {where} is a number too large for a float")
        elif not (rule is float and value[key] is None):   # a diverged member has no accuracy
            plain[key] = rule
    checked_attrs(value, plain, where)


__all__ = ["RUN_ATTRS", "CHECKPOINT_ATTRS", "COMPARISON", "MEMBER", "read_history", "checked_result",
           "checked_comparison"]
