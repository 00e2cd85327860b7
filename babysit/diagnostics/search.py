"""Random hyperparameter search with coarse-to-fine stages (``babysit search``).

The CS231n recipe: sample hyperparameters at random (log space for learning
rates and regularization), train each trial briefly, look at the validation
accuracy, then zoom in on the best region and search again; a best value at the
edge of its range means the range should be widened.

Pieces: :mod:`search_space` (parsing, sampling, narrowing), :mod:`search_trial`
(one short training run), :mod:`search_backends` (where trials run), this module
(stages, ranking, findings) and :mod:`babysit.search_store` (the HDF5 log).

Determinism: stage ``s`` samples from ``stream(seed, "search_sampling", s)``;
trial ``i`` draws its batches from its own seed ``trial_seed(seed, i)`` and starts
from the search seed's initial weights (see :mod:`search_trial`); the backend and
the worker count change nothing but the wall time. Timings stay out of the Result.
"""

from __future__ import annotations

import math


from babysit.diagnostics.common import new_result, seeded, stream
from babysit.diagnostics.search_backends import InProcess
from babysit.diagnostics.search_space import EDGE_FRACTION, SearchSpace, top_k
from babysit.diagnostics.search_trial import Trial, run_trial, trial_seed
from babysit.validation import POSITIVE_INT


CHECKS = {"divergence": ["loss_diverged"], "range edges": ["lr_range_edge"]}


def rank_key(trial: dict):
    """Sort key: finished trials by validation accuracy (high first), then lower
    final loss, then index; diverged trials last, by index."""
    if trial["status"] != "ok" or trial["val_accuracy"] is None:
        return (1, 0.0, 0.0, trial["index"])
    loss = trial["final_loss"]
    loss = loss if loss is not None and math.isfinite(loss) else math.inf
    return (0, -trial["val_accuracy"], loss, trial["index"])


def rank(trials) -> list[dict]:
    """The trials best first (see :func:`rank_key`)."""
    return sorted(trials, key=rank_key)


def finished(trials) -> list[dict]:
    return [t for t in trials if t["status"] == "ok" and t["val_accuracy"] is not None]


def check_space(recipe, space: SearchSpace) -> None:
    """Validate every key of ``space`` against the recipe at both ends of its range
    (every option of a choice): a RecipeError names the bad key or value before any
    trial runs."""
    from babysit.diagnostics.search_space import Choice

    from babysit.errors import RecipeError

    for key, dist in space.params.items():
        values = dist.options if isinstance(dist, Choice) else (dist.low, dist.high)
        for value in values:
            try:
                recipe.with_overrides({key: value})
            except RecipeError as exc:
                # the recipe names the override "--set KEY=VALUE"; the user typed --param
                message = str(exc)
                if message.startswith("--set "):
                    message = message.split(": ", 1)[-1]
                raise RecipeError(f"--param {key} (value {value!r}): {message}") from None


def plan_stage(recipe, space: SearchSpace, seed: int, stage: int, first_index: int,
               trials: int, epochs: int) -> list[Trial]:
    """The ``trials`` trials of one stage, with their sampled values and seeds.

    Every sampled recipe is validated here, in this process, so a value the
    recipe rejects (e.g. an unknown key) is a usage error before any work starts.
    """
    rng = stream(seed, "search_sampling", stage)
    planned = []
    for offset, params in enumerate(space.sample(rng, trials)):
        recipe.with_overrides(dict(params))  # raises RecipeError for a bad key/value
        index = first_index + offset
        planned.append(Trial(index=index, stage=stage, seed=trial_seed(seed, index),
                             init_seed=int(seed), params=params, recipe=recipe, epochs=epochs))
    return planned


def edge_findings(result, space: SearchSpace, best: dict) -> None:
    """``lr_range_edge`` for every numeric key whose best value sits in the outer
    ``EDGE_FRACTION`` of its command-line range (in log space for ``log``)."""
    for key, dist in space.numeric().items():
        value = best["params"][key]
        position = dist.position(value)
        if EDGE_FRACTION < position < 1.0 - EDGE_FRACTION:
            continue
        edge = "high" if position >= 1.0 - EDGE_FRACTION else "low"
        bound = dist.high if edge == "high" else dist.low
        how = ", by a decade or more," if dist.kind == "log" else ""
        result.add(
            "lr_range_edge", "warn",
            f"the best {key} ({value:.4g}) sits at the {edge} edge of the searched range "
            f"[{dist.low:.4g}, {dist.high:.4g}]; the optimum may lie outside it",
            fix=f"widen the range of {key} past its {edge} end ({bound:.4g}){how} and search again",
            param=key, value=value, low=dist.low, high=dist.high, edge=edge,
            position=round(position, 4))


def divergence_findings(result, trials) -> None:
    diverged = [t for t in trials if t["status"] == "diverged"]
    if not diverged:
        return
    evidence = dict(diverged=len(diverged), trials=len(trials),
                    indices=sorted(t["index"] for t in diverged))
    if len(diverged) == len(trials):
        result.add("loss_diverged", "fail",
                   f"every one of the {len(trials)} trials diverged "
                   "(loss NaN or above 3x its start)",
                   fix="lower the learning-rate range (run `babysit lr-probe` to find it)",
                   **evidence)
    else:
        result.add("loss_diverged", "info",
                   f"{len(diverged)} of {len(trials)} trials diverged and were aborted early",
                   fix="if they share a region (high learning rates), narrow the range",
                   **evidence)


def search(recipe, params, seed: int | None = None, trials: int = 20, epochs: int = 2,
           stages: int = 1, backend=None, log=None, on_trial=None):
    """Run a random search; returns a Result with ``metrics.trials`` best first.

    ``params``: a :class:`SearchSpace` or ``--param`` strings. ``trials`` per stage.
    ``backend``: see :mod:`search_backends` (default: in this process). ``log``: a
    :class:`babysit.search_store.SearchLogWriter` (or None) that gets every trial
    as it finishes. ``on_trial(record)`` is called after each trial (progress).

    Ctrl-C (KeyboardInterrupt) propagates after the log is closed as
    "interrupted" (any other error: "failed"); the trials finished so far are in it.
    """
    space = params if isinstance(params, SearchSpace) else SearchSpace.parse(params)
    trials = POSITIVE_INT.check(trials, "--trials")
    epochs = POSITIVE_INT.check(epochs, "--epochs")
    stages = POSITIVE_INT.check(stages, "--stages")
    recipe = seeded(recipe, seed)
    seed = recipe.seed
    backend = backend or InProcess()
    result = new_result("search", recipe, seed, CHECKS)

    records: list[dict] = []
    stage_spaces = []
    stage_space = space
    try:
        with backend:
            for stage in range(1, stages + 1):
                if stage > 1:
                    stage_space = next_space(stage_space, records)
                stage_spaces.append(stage_space)
                planned = plan_stage(recipe, stage_space, seed, stage, len(records), trials, epochs)
                if log is not None:
                    log.start_stage(stage_space.to_dict())
                for record in backend.imap_unordered(run_trial, planned):
                    records.append(record)
                    if log is not None:
                        log.add_trial(record)
                    if on_trial is not None:
                        on_trial(record)
    except BaseException as exc:
        if log is not None:
            log.close("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    if log is not None:
        log.close("complete")

    return summarize(result, space, stage_spaces, records, epochs, trials,
                     str(log.path) if log is not None else None)


def summarize(result, space: SearchSpace, stage_spaces: list, records: list[dict], epochs: int,
              trials_per_stage: int, log_path: str | None):
    """Fill ``result`` (findings, metrics) from the finished trial records.

    Shared by :func:`search` and :func:`result_from_log`, so a search log read
    back gives the very JSON the search printed.
    """
    ranked = rank(records)
    best = ranked[0] if finished(ranked) else None
    if best is not None:
        edge_findings(result, space, best)
    divergence_findings(result, records)
    result.metrics = {
        "trials": [public(t, rank_no) for rank_no, t in enumerate(ranked, start=1)],
        "best": public(best, 1) if best is not None else None,
        "space": space.to_dict(),
        "stages": [s if isinstance(s, dict) else s.to_dict() for s in stage_spaces],
        "epochs": int(epochs),
        "trials_per_stage": int(trials_per_stage),
        "search_log": log_path,
    }
    return result


def result_from_log(log):
    """The search Result of a search log (:class:`babysit.search_store.SearchLog`).

    For a complete log this equals the Result the search returned (same JSON);
    an interrupted one gives the ranking of the trials that finished.
    """
    from babysit.diagnostics.result import Result

    meta = log.meta
    result = Result(command="search", recipe=meta.get("recipe_path") or meta.get("recipe_name"),
                    seed=int(meta.get("seed", 0)),
                    checks={name: list(codes) for name, codes in CHECKS.items()})
    return summarize(result, SearchSpace.from_dict(log.space), log.stage_spaces, log.trials,
                     meta.get("epochs", 0), meta.get("trials_per_stage", 0),
                     str(log.path) if log.path is not None else None)


def next_space(space: SearchSpace, records: list[dict]) -> SearchSpace:
    """Stage ``s+1``'s space: narrowed around the top trials so far (unchanged if none finished)."""
    done = rank(finished(records))
    if not done:
        return space
    top = [t["params"] for t in done[:top_k(len(done))]]
    return space.narrow(top, top[0])


# A trial in the JSON, in this key order; its wall time is left out on purpose.
PUBLIC_KEYS = ("index", "stage", "seed", "params", "status", "val_accuracy", "train_accuracy",
               "final_loss", "epochs_run")


def public(trial: dict, rank_no: int) -> dict:
    """A trial record for the JSON: rank first, everything but its wall time."""
    out = {"rank": rank_no}
    out.update({key: trial[key] for key in PUBLIC_KEYS})
    return out


__all__ = ["search", "summarize", "result_from_log", "check_space", "rank", "rank_key",
           "plan_stage", "next_space", "edge_findings", "CHECKS"]
