"""``python -m benchmarks.calibration [truth|gates|report|all]``: see the package doc.

    python -m benchmarks.calibration truth               # the trainings (cached)
    python -m benchmarks.calibration all --write-readme  # truth, gates, tables into README
    python -m benchmarks.calibration report              # tables from the cache only
    python -m benchmarks.calibration all --seeds 3,4 --cache .calibration-held-out
                                  # held-out seeds: the LR trainings and lr-probe grid gates only
    python -m benchmarks.calibration report --held-out .calibration-held-out --write-readme
    python -m benchmarks.calibration replay              # lr-probe's short runs recorded, the
                                  # grid gate replayed on them without and with the long run
    python -m benchmarks.calibration replay --seeds 3,4 --cache .calibration-held-out

The cache (``--cache``, default ``.calibration/`` in the current folder) keeps
every finished job, so a run resumes where it stopped; ``--fresh`` starts
over, ``--fresh-gates`` re-runs only the gates (after a rule changed; train's
verdicts are judged again from the stored histories at every report).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from benchmarks._runs import write_section
from benchmarks.calibration import gates, replay, score, truth
from benchmarks.calibration.runs import load_cache, run_jobs

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- calibration:start -->", "<!-- calibration:end -->"


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration")
    parser.add_argument("stage", nargs="?", default="all",
                        choices=["truth", "gates", "report", "all", "replay"])
    parser.add_argument("--cache", type=Path, default=Path(".calibration"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recipes", default=",".join(truth.RECIPES))
    parser.add_argument("--seeds", default=",".join(map(str, truth.SEEDS)),
                        help="seeds of the LR trainings and lr-probe gates (other seeds than "
                             "the default run only those: a held-out check of the rules)")
    parser.add_argument("--held-out", type=Path, default=None, metavar="CACHE",
                        help="a cache of held-out seeds (--seeds) to score as its own table")
    parser.add_argument("--fresh", action="store_true", help="forget every cached result")
    parser.add_argument("--fresh-gates", action="store_true", help="forget the cached gate results")
    parser.add_argument("--write-readme", action="store_true",
                        help="replace the calibration section of benchmarks/README.md")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def plan_jobs(recipes, seeds) -> tuple[list, list]:
    """``(training jobs, gate jobs)``: everything on the default seeds; on other
    (held-out) seeds the LR axis and the default gate (lr-probe grid) only."""
    if tuple(seeds) == truth.SEEDS:
        return truth.train_jobs(recipes), gates.lr_probe_jobs(recipes) + gates.seed_jobs()
    return ([job for job in truth.train_jobs(recipes, seeds) if job["axis"] == "lr"],
            [job for job in gates.lr_probe_jobs(recipes, seeds) if job["options"]["mode"] == "grid"])


def held_out_part(truth_records: dict, held_out: Path | None, recipes) -> tuple[list, list]:
    """The held-out table: lr-probe on seeds the rules were not set on, against
    the truth of all seeds (see benchmarks/README.md)."""
    if held_out is None:
        return [], []
    extra = {k: v for k, v in load_cache(held_out / "truth.jsonl").items()
             if v["job"]["recipe"] in recipes}
    every_run = {**truth_records, **extra}
    gate_records = load_cache(held_out / "gates.jsonl")
    seeds = sorted({r["job"]["seed"] for r in gate_records.values()})
    table, notes = score.lr_probe_table(every_run, gate_records)
    names = ", ".join(map(str, seeds))
    every = ", ".join(map(str, sorted({r["job"]["seed"] for r in every_run.values()})))
    heading = (f"### Held out: lr-probe on seeds {names} (the rules were set on seeds 0-2; "
               f"the real good range from the trainings of seeds {every})")
    return [heading, "", table, ""], [f"held out: {m}" for m in notes["misses"]]


def report(truth_records: dict, gate_records: dict, held_out: Path | None = None,
           recipes=truth.RECIPES) -> str:
    lr_table, lr_notes = score.lr_probe_table(truth_records, gate_records)
    train_table, train_notes = score.train_table(truth_records)
    seed_table, seed_notes = score.seed_table(gate_records)
    held_out_lines, held_out_misses = held_out_part(truth_records, held_out, recipes)
    misses = lr_notes["misses"] + train_notes["misses"] + seed_notes["misses"] + held_out_misses
    parts = [
        "### lr-probe against training (recipe LR set to every LR of the grid, seeds 0-2)", "",
        lr_table, "",
        "### The grid gate's passes, with and without the `lr_marginal` warning (seeds 0-2)", "",
        score.marginal_table(truth_records, gate_records), "",
        "### The grid gate's misses against the misses no seed-stable gate can avoid (seeds 0-2)", "",
        score.seed_conflict_table(truth_records, gate_records), "",
        *held_out_lines,
        "### train's exit code against the run's outcome (every LR, L2 strength and init run)", "",
        train_table, "",
        "### Same verdict under every seed (bundled recipes, seeds 0-9)", "", seed_table, "",
        "### L2 strength (at the recipe's LR)", "", score.axis_table(truth_records, "reg"), "",
        "### Initialization (model.init; layers with their own init keep it)", "",
        score.axis_table(truth_records, "init"), "",
        "### Disagreements", "",
        "\n".join(f"- {m}" for m in misses) if misses else "none",
    ]
    return "\n".join(parts) + "\n"


def replay_report(args, recipes) -> str:
    """Record the short runs of ``--seeds`` (cached) and replay the grid gate on them.

    The real good range comes from every training in the cache (and in
    ``--held-out``'s, for held-out seeds scored against all seeds' truth)."""
    seeds = [int(s) for s in args.seeds.split(",") if s]
    records = run_jobs(replay.short_run_jobs(recipes, seeds), args.cache / "short-runs.jsonl",
                       args.workers, log)
    truth_records = {k: v for k, v in load_cache(args.cache / "truth.jsonl").items()
                     if v["job"]["recipe"] in recipes}
    if args.held_out is not None:
        truth_records.update({k: v for k, v in load_cache(args.held_out / "truth.jsonl").items()
                              if v["job"]["recipe"] in recipes})
    compared, differ = replay.check_replay(truth_records, records, load_cache(args.cache / "gates.jsonl"))
    lines = [f"replay of lr-probe's grid gate, seeds {args.seeds}: agrees with the real gates' exit "
             f"code on {compared - len(differ)}/{compared} cases", *[f"  {d}" for d in differ],
             replay.long_run_report(truth_records, records)]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    write_section(text, README, START, END, "Calibration")


def main(argv=None) -> int:
    args = parse(argv)
    if args.fresh and args.cache.exists():
        shutil.rmtree(args.cache)
    if args.fresh_gates and (args.cache / "gates.jsonl").exists():
        (args.cache / "gates.jsonl").unlink()
    recipes = [r for r in args.recipes.split(",") if r]
    truth_jobs, gate_jobs = plan_jobs(recipes, tuple(int(s) for s in args.seeds.split(",") if s))
    if args.stage in ("truth", "all"):
        run_jobs(truth_jobs, args.cache / "truth.jsonl", args.workers, log)
    if args.stage in ("gates", "all"):
        run_jobs(gate_jobs, args.cache / "gates.jsonl", args.workers, log)
    if args.stage == "replay":
        print(replay_report(args, recipes))
    if args.stage in ("report", "all"):
        truth_records = {k: v for k, v in load_cache(args.cache / "truth.jsonl").items()
                         if v["job"]["recipe"] in recipes}
        gate_records = load_cache(args.cache / "gates.jsonl")
        text = report(truth_records, gate_records, args.held_out, recipes)
        print(text)
        if args.write_readme:
            write_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
