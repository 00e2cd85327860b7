"""``python -m benchmarks.calibration [truth|gates|report|all]``: see the package doc.

    python -m benchmarks.calibration truth               # the trainings (cached)
    python -m benchmarks.calibration all --write-readme  # truth, gates, tables into README
    python -m benchmarks.calibration report              # tables from the cache only

The cache (``--cache``, default ``.calibration/`` in the current folder) keeps
every finished job, so a run resumes where it stopped; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from benchmarks.calibration import truth
from benchmarks.calibration.runs import job_key, run_jobs


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration")
    parser.add_argument("stage", nargs="?", default="all", choices=["truth", "gates", "report", "all"])
    parser.add_argument("--cache", type=Path, default=Path(".calibration"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recipes", default=",".join(truth.RECIPES))
    parser.add_argument("--fresh", action="store_true", help="forget the cached results")
    parser.add_argument("--write-readme", action="store_true",
                        help="replace the calibration section of benchmarks/README.md")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def truth_records(args) -> dict:
    recipes = [r for r in args.recipes.split(",") if r]
    jobs = truth.train_jobs(recipes)
    return run_jobs(jobs, args.cache / "truth.jsonl", args.workers, log)


def summarize_truth(records: dict) -> None:
    by_recipe: dict = {}
    for record in records.values():
        job = record["job"]
        by_recipe.setdefault((job["recipe"], job["axis"]), []).append(record)
    for (recipe, axis), rows in sorted(by_recipe.items()):
        curve = truth.Curve(rows, truth.chance(recipe))
        good = curve.good()
        print(f"{recipe} / {axis}: best {curve.best} ({100 * curve.mean(curve.best):.1f}%), "
              f"good {good[0]} .. {good[-1]} ({len(good)} values)")
        for value in curve.ordered():
            runs = curve.runs[value]
            codes = sorted({c for r in runs.values() for _, c, s in r["findings"] if s == "fail"})
            print(f"    {value!s:>10}  mean {100 * curve.mean(value):5.1f}%  "
                  f"se {100 * curve.se(value):4.1f}  exit {[r['exit_code'] for _, r in sorted(runs.items())]}"
                  f"  div {[int(r['diverged']) for _, r in sorted(runs.items())]}  "
                  f"{'GOOD' if curve.within_noise(value) else '    '}  {','.join(codes)}")


def main(argv=None) -> int:
    args = parse(argv)
    if args.fresh and args.cache.exists():
        shutil.rmtree(args.cache)
    if args.stage in ("truth", "all"):
        summarize_truth(truth_records(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
