"""Is a data set usable, and is it prepared the way the model needs it?

Works on the :class:`~babysit.data.DataReport` of :func:`babysit.data.inspect_data`
(plain numbers, no arrays), so it can judge data that ``load_data`` would refuse. Findings:

* ``data_not_finite`` (fail): NaN or inf in X of any split, as stored, or
  values beyond float32's range (they become inf in the model's float32).
* ``label_out_of_range`` (fail): labels below 0, at or above the declared
  number of classes, or not integers; or more classes than examples (labels
  that are ids, not class indices: {0, 1, 2**40}).
  (warn): sparse labels, most classes 0..C-1 without an example (MNIST
  labels 200..209 make 210 classes). Both rules are stated in
  :mod:`babysit.data.checks` (``too_many_classes``, ``sparse_labels``).
* ``data_not_centered`` (warn): the inputs *as the model sees them* (training
  split after the recipe's preprocessing) are far from zero mean: the largest
  per-feature mean exceeds ``CENTERING_LIMIT`` times the data's std. Inputs
  that are all positive make every weight gradient of a first-layer unit share
  one sign, so gradient descent zig-zags (CS231n, lecture 6). The raw data's
  ratio is reported beside it.

Unit Gaussian data (1,000 examples, 500 features) has a largest per-feature
mean near 0.1 std; per-channel-mean images typically stay below 0.5; raw
pixels sit at 1-3. Hence the limit of 0.5.
"""

from __future__ import annotations

import math

from babysit.data.arrays import FLOAT32_MAX
from babysit.data.checks import (beyond_float32_words, sparse_labels, sparse_labels_words,
                                 too_many_classes, too_many_classes_words)
from babysit.data.inspection import DataReport, SplitStats
from babysit.diagnostics.result import Result

CENTERING_LIMIT = 0.5

CHECKS = {
    "finite values": ["data_not_finite"],
    "label range": ["label_out_of_range"],
    "centred inputs": ["data_not_centered"],
}

CENTERING_FIX = ("zero-centre the inputs: add data.preprocess: [mean_image] to the recipe "
                 "(or standardize; per_channel_mean for natural images)")
RESCALE_FIX = "rescale the data (or fix the step that produced such values) before training"
REMAP_FIX = ("labels must be integer class indices 0..C-1: remap them "
             "(np.unique(y, return_inverse=True)) or fix num_classes")
SPARSE_FIX = ("remap the labels to 0..K-1 (np.unique(y, return_inverse=True)), unless the "
              "classes without examples are real and the model must score them")
RECENTERING_FIX = ("the preprocessing leaves features off-centre: use mean_image or standardize, "
                   "which centre every feature, instead of (or after) {steps}")


def centering_ratio(stats: SplitStats | None) -> float | None:
    """Largest |per-feature mean| in units of the data's std (None when unknown).

    Falls back to |overall mean| / std when per-feature means are unavailable
    (X with NaN/inf). Constant data (std 0) is centred only if its mean is 0.
    """
    if stats is None or stats.std is None:
        return None
    offset = stats.feature_mean_absmax
    if offset is None:
        offset = abs(stats.mean) if stats.mean is not None else None
    if offset is None:
        return None
    if stats.std == 0:
        return 0.0 if offset == 0 else float("inf")
    return float(offset) / float(stats.std)


def check_data(report: DataReport, recipe: str | None = None, seed: int | None = None) -> Result:
    """Findings for an :func:`~babysit.data.inspect_data` report; metrics carry its JSON form.

    ``recipe`` names the recipe the data came from (None for a raw source) and
    ``seed`` the seed of its validation split; both only label the Result.
    """
    result = Result("data", recipe=recipe, seed=seed, checks={k: list(v) for k, v in CHECKS.items()})
    raw = report.raw or {}
    _check_finite(result, raw)
    _check_labels(result, raw, report.num_classes)
    loaded = report.loaded
    seen = loaded.splits.get("train") if loaded and loaded.splits else raw.get("train")
    steps = list(loaded.preprocess) if loaded else []
    ratio, raw_ratio = centering_ratio(seen), centering_ratio(raw.get("train"))
    if ratio is not None and ratio > CENTERING_LIMIT:
        where = f"after {', '.join(steps)}" if steps else "with no preprocessing"
        result.add("data_not_centered", "warn",
                   f"inputs the model sees ({where}) are not zero-centred: the largest "
                   f"per-feature mean is {ratio:.3g} std (mean {seen.mean:.3g}, "
                   f"std {seen.std:.3g}; limit {CENTERING_LIMIT} std)",
                   fix=RECENTERING_FIX.format(steps=", ".join(steps)) if steps else CENTERING_FIX,
                   split="train", ratio=ratio, raw_ratio=raw_ratio, mean=seen.mean,
                   std=seen.std, feature_mean_absmax=seen.feature_mean_absmax,
                   preprocess=steps)
    document = report.to_dict()
    result.metrics = {
        "source": document["source"],
        "usable": bool(report.ok),
        "problems": document["problems"],
        "num_classes": document["num_classes"],
        "class_names": document["class_names"],
        "centering": {"ratio": ratio, "raw_ratio": raw_ratio, "limit": CENTERING_LIMIT},
        "raw": document["raw"] or None,
        "loaded": document["loaded"],
    }
    return result


def _check_finite(result: Result, raw: dict) -> None:
    for split, stats in raw.items():
        if stats.nan or stats.inf:
            total = math.prod(stats.X_shape or (0,))  # a 0-d X holds no examples
            result.add("data_not_finite", "fail",
                       f"X_{split} contains {stats.nan} NaN and {stats.inf} inf values "
                       f"(of {total} numbers); every loss and gradient would turn NaN",
                       fix="drop or impute the non-finite entries (and find the step that "
                           "produced them) before training",
                       split=split, nan=stats.nan, inf=stats.inf, values=total)
        if any(value is not None and abs(value) > FLOAT32_MAX for value in (stats.min, stats.max)):
            words = f"{beyond_float32_words(f'X_{split}')} (min {stats.min:.3g}, max {stats.max:.3g})"
            result.add("data_not_finite", "fail", words, fix=RESCALE_FIX, split=split,
                       min=stats.min, max=stats.max, limit=FLOAT32_MAX)


def _check_labels(result: Result, raw: dict, num_classes: int | None) -> None:
    for split, stats in raw.items():
        low, high = stats.label_min, stats.label_max
        bad_type = stats.non_integer_labels
        reasons = []
        if bad_type:
            reasons.append(f"{bad_type} non-integer labels")
        if low is not None and low < 0:
            reasons.append(f"minimum label {low}")
        if high is not None and num_classes is not None and high >= num_classes:
            reasons.append(f"maximum label {high} with {num_classes} classes")
        if reasons:
            top = f"0..{num_classes - 1}" if num_classes else "0..C-1"
            result.add("label_out_of_range", "fail",
                       f"y_{split} has labels outside {top}: {'; '.join(reasons)}",
                       fix=REMAP_FIX, split=split, label_min=low, label_max=high,
                       num_classes=num_classes, non_integer_labels=bad_type)
    if not any(finding.code == "label_out_of_range" for finding in result.findings):
        _check_label_spread(result, raw, num_classes)


def _check_label_spread(result: Result, raw: dict, num_classes: int | None) -> None:
    """More classes than examples (fail) or sparse labels (warn), over all splits together."""
    counts = [stats.class_counts for stats in raw.values()]
    if not counts or num_classes is None or any(c is None for c in counts):
        return
    examples = sum(sum(c.values()) for c in counts)
    distinct = len(set().union(*counts))
    largest = max(max(c) for c in counts)
    evidence = dict(num_classes=num_classes, label_max=largest, examples=examples,
                    distinct_labels=distinct)
    if too_many_classes(num_classes, examples):
        result.add("label_out_of_range", "fail",
                   too_many_classes_words(num_classes, largest, examples, distinct),
                   fix=REMAP_FIX, **evidence)
    elif sparse_labels(num_classes, distinct):
        result.add("label_out_of_range", "warn", sparse_labels_words(num_classes, largest, distinct),
                   fix=SPARSE_FIX, **evidence)
