"""Running many babysit jobs (trainings, gates) in worker processes, with a result cache.

A job is a plain dict naming what to run; :func:`run_jobs` runs the ones not in
the cache on ``workers`` processes (each with one BLAS thread, so the results
do not depend on the machine's load or thread count) and appends each record
to the cache (JSON lines) as it finishes, so an interrupted calibration
resumes where it stopped.

Job kinds:

* ``train``: ``babysit train`` of a recipe with overrides and a seed; the
  record has the outcome (final and best validation accuracy, train accuracy,
  diverged), the exit code and the finding codes;
* ``short-runs``: lr-probe's short runs at every lattice LR of a recipe and
  seed, for replaying the grid gate (:mod:`.replay`);
* ``gate``: one diagnosis (``lr-probe``, ``sanity-loss``, ``doctor`` ...) of a
  recipe with overrides and a seed; the record has the status, exit code,
  finding codes and the metrics the scoring needs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

SINGLE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def job_key(job: dict) -> str:
    return json.dumps(job, sort_keys=True)


def load_cache(path: Path) -> dict:
    """``{job key: record}`` from a JSON-lines cache (a torn last line is ignored)."""
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[job_key(record["job"])] = record
    return records


def recipe_of(job: dict):
    from babysit.recipes import load_recipe

    recipe = load_recipe(job["recipe"])
    if job.get("overrides"):
        recipe = recipe.with_overrides(job["overrides"])
    return recipe.with_seed(job["seed"])


def findings_of(result) -> list:
    out = []
    for name, part in (result.parts.items() if result.parts else [(result.command, result)]):
        out += [[name, f.code, f.severity] for f in part.findings]
    return out


def run_train(job: dict) -> dict:
    """``babysit train`` of the job's recipe; the record keeps the run's history, so
    that train's verdict can be judged again by newer rules without training again
    (:func:`train_verdict`)."""
    from babysit.diagnostics.train import Trainer

    recipe = recipe_of(job)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(recipe, out=Path(folder) / "run.h5")
        result = trainer.run()
    m = result.metrics
    return {"status": result.status, "exit_code": int(result.failed()),
            "diverged": bool(m.get("diverged")),
            "val_accuracy": m.get("val_accuracy"), "best_val_accuracy": m.get("best_val_accuracy"),
            "train_accuracy": m.get("train_accuracy"), "final_loss": m.get("final_loss"),
            "epochs_run": m.get("epochs_run"), "findings": findings_of(result),
            "rejudge": {"history": jsonable_tree(trainer.history.to_tree()),
                        "num_classes": trainer.data.num_classes, "reg": trainer.model.reg,
                        "layers": list(trainer.model.names)}}


def jsonable_tree(tree):
    """A history tree as JSON-ready lists (NaN/inf as None)."""
    import math

    if isinstance(tree, dict):
        return {k: jsonable_tree(v) for k, v in tree.items()}
    values = tree.tolist()
    if not isinstance(values, list):  # a scalar (the initial weight norms)
        return values if math.isfinite(values) else None
    return [x if math.isfinite(x) else None for x in values]


def train_verdict(record: dict) -> tuple[int, list]:
    """``(exit code, findings)`` of a stored train run under today's rules.

    A diverged run fails whatever the rules (the loop stopped it); otherwise the
    findings are recomputed from its history with the functions ``train`` itself
    calls at the end of a run.
    """
    import numpy as np

    from babysit.diagnostics.train.history import History
    from babysit.diagnostics.train.verdicts import history_findings, layer_by_index

    if record["diverged"] or "rejudge" not in record:
        return record["exit_code"], record["findings"]
    stored = record["rejudge"]

    def arrays(tree):
        return {k: arrays(v) if isinstance(v, dict) else
                np.asarray(np.nan if v is None else v if not isinstance(v, list) else
                           [np.nan if x is None else x for x in v], dtype=np.float64)
                for k, v in tree.items()}

    history = History.from_tree(arrays(stored["history"]))
    with np.errstate(all="ignore"):
        findings = history_findings(history, layer_by_index(stored["layers"]),
                                    1.0 / stored["num_classes"], float(stored["reg"]))
    failed = any(f.severity == "fail" for f in findings)
    return int(failed), [["train", f.code, f.severity] for f in findings]


# the metrics a gate record keeps (the rest is dropped to keep the cache small)
KEPT_METRICS = ("good_range", "suggested_lr", "recipe_lr", "initial_loss", "expected_loss",
                "statuses", "train_accuracy", "final_loss", "epochs_run", "long_run")


def run_gate(job: dict) -> dict:
    from benchmarks._runs import diagnoses   # every doctor part, and doctor

    function = diagnoses()[job["gate"]]
    result = function(recipe_of(job), **job.get("options", {}))
    metrics = {k: result.metrics[k] for k in KEPT_METRICS if k in result.metrics}
    return {"status": result.status, "exit_code": int(result.failed()),
            "findings": findings_of(result), "metrics": metrics,
            "parts": {k: p.status for k, p in result.parts.items()}}


def run_job(job: dict) -> dict:
    """Run one job in this process; the record (job, result fields, seconds)."""
    import numpy as np

    start = time.perf_counter()
    with np.errstate(all="ignore"):
        if job["kind"] == "short-runs":
            from benchmarks.calibration.replay import run_short_runs

            fields = run_short_runs(job)
        else:
            fields = run_train(job) if job["kind"] == "train" else run_gate(job)
    return {"job": job, **fields, "seconds": round(time.perf_counter() - start, 3)}


def _init_worker():
    # a worker dies with the calibration run, even on kill -9 of it (Linux)
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    os.environ.update(SINGLE_THREAD)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def run_jobs(jobs: list[dict], cache: Path, workers: int = 2, progress=print) -> dict:
    """Run the jobs missing from ``cache``; returns ``{job key: record}`` for all ``jobs``."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = load_cache(cache)
    todo = [job for job in jobs if job_key(job) not in done]
    if todo:
        progress(f"{len(todo)} of {len(jobs)} jobs to run on {workers} worker(s)")
        os.environ.update(SINGLE_THREAD)  # inherited by the spawned workers before numpy loads
        context = get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
        try:
            with cache.open("a") as sink:
                futures = {pool.submit(run_job, job): job for job in todo}
                for count, future in enumerate(as_completed(futures), 1):
                    record = future.result()
                    done[job_key(record["job"])] = record
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    if count % 20 == 0 or count == len(todo):
                        progress(f"  {count}/{len(todo)} done")
        finally:  # on Ctrl-C or an error, stop the workers now rather than after their jobs
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
    return {job_key(job): done[job_key(job)] for job in jobs}


__all__ = ["run_jobs", "run_job", "job_key", "load_cache", "train_verdict"]
