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
    from babysit.diagnostics.train import train

    recipe = recipe_of(job)
    with tempfile.TemporaryDirectory() as folder:
        result = train(recipe, out=Path(folder) / "run.h5")
    m = result.metrics
    return {"status": result.status, "exit_code": int(result.failed()),
            "diverged": any(f.code == "loss_diverged" and f.severity == "fail"
                            and "training stopped" in f.message for f in result.findings),
            "val_accuracy": m.get("val_accuracy"), "best_val_accuracy": m.get("best_val_accuracy"),
            "train_accuracy": m.get("train_accuracy"), "final_loss": m.get("final_loss"),
            "epochs_run": m.get("epochs_run"), "findings": findings_of(result)}


GATES = {
    "lr-probe": ("babysit.diagnostics.lr_probe", "lr_probe"),
    "sanity-loss": ("babysit.diagnostics.sanity", "sanity_loss"),
    "overfit-tiny": ("babysit.diagnostics.overfit", "overfit_tiny"),
    "init-stats": ("babysit.diagnostics.init_stats", "init_stats"),
    "gradcheck": ("babysit.diagnostics.gradcheck", "gradcheck_recipe"),
    "doctor": ("babysit.diagnostics.doctor", "doctor"),
}
# the metrics a gate record keeps (the rest is dropped to keep the cache small)
KEPT_METRICS = ("good_range", "suggested_lr", "recipe_lr", "initial_loss", "expected_loss",
                "statuses", "train_accuracy", "final_loss", "epochs_run")


def run_gate(job: dict) -> dict:
    import importlib

    module, name = GATES[job["gate"]]
    function = getattr(importlib.import_module(module), name)
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
        fields = run_train(job) if job["kind"] == "train" else run_gate(job)
    return {"job": job, **fields, "seconds": round(time.perf_counter() - start, 3)}


def _init_worker():
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
        with cache.open("a") as sink, ProcessPoolExecutor(workers, mp_context=context,
                                                          initializer=_init_worker) as pool:
            futures = {pool.submit(run_job, job): job for job in todo}
            for count, future in enumerate(as_completed(futures), 1):
                record = future.result()
                done[job_key(record["job"])] = record
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                if count % 20 == 0 or count == len(todo):
                    progress(f"  {count}/{len(todo)} done")
    return {job_key(job): done[job_key(job)] for job in jobs}


__all__ = ["run_jobs", "run_job", "job_key", "load_cache", "GATES"]
