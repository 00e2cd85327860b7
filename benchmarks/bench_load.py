"""How babysit behaves on a shared machine: each command quiet, then beside busy processes.

    python -m benchmarks.bench_load                       # 3 rounds: trio + doctor on two recipes
    python -m benchmarks.bench_load --quick               # 1 round
    python -m benchmarks.bench_load --recipes two-layer-digits --commands gradcheck,lr-probe
    python -m benchmarks.bench_load --threads 1           # BABYSIT_THREADS=1 in the children
    python -m benchmarks.bench_load --write-readme        # store the table in benchmarks/README.md

For every recipe and command, each round times the whole ``babysit COMMAND
RECIPE --quiet --json ...`` process twice: on the machine as it is ("quiet"),
and beside ``--busy`` processes (default 2) that spin ``while True: pass``
("loaded"); rounds alternate which comes first. The figure is the ratio
loaded / quiet of one round (median and range over rounds); the target is at
most 3x. The JSON results of every run of a command must be byte-identical
(the "same numbers" column): neither the machine's load nor the thread count
may change a number.

The children run with no thread variable set (babysit's own policy, see
``babysit/engine/parallel.py``) unless ``--threads`` is given. A "quiet"
figure is only quiet if the rest of the machine is: the report shows the
load average before and after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):   # run as a script: make `benchmarks` importable like `-m` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._runs import (add_round_options, busy_processes, measure_and_report,  # noqa: E402
                              resolve_round_options, summary, thread_setting, time_cli)

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- load:start -->", "<!-- load:end -->"
COMMANDS = ("sanity-loss", "gradcheck", "lr-probe", "doctor")
RECIPES = ("convnet-digits", "deep-tanh-init")
TARGET_RATIO = 3.0


def measure(recipe: str, command: str, loaded_first: bool, busy: int, threads: int, folder: Path) -> dict:
    """One round of one command: ``{"quiet": run, "loaded": run}``, runs with their JSON bytes."""
    runs = {}
    for condition in (("loaded", "quiet") if loaded_first else ("quiet", "loaded")):
        path = folder / f"{condition}.json"
        if condition == "loaded":
            with busy_processes(busy):
                run = time_cli([command, recipe], threads=threads, json_path=path)
        else:
            run = time_cli([command, recipe], threads=threads, json_path=path)
        run["json"] = path.read_bytes() if path.exists() else b""
        runs[condition] = run
    return runs


def run_rounds(args) -> dict:
    """``{(recipe, command): [round, ...]}`` with ``round = {"quiet": run, "loaded": run}``."""
    results = {(recipe, command): [] for recipe in args.recipes for command in args.commands}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for (recipe, command), rounds in results.items():
                rounds.append(measure(recipe, command, r % 2 == 1, args.busy, args.threads, Path(tmp)))
                last = rounds[-1]
                print(f"round {r + 1}/{args.rounds}: {command} {recipe}: quiet {last['quiet']['seconds']:.1f} s, "
                      f"loaded {last['loaded']['seconds']:.1f} s", file=sys.stderr, flush=True)
    return results


def render(args, results, load) -> str:
    out = [f"Measured {datetime.date.today().isoformat()} with", "", "```",
           f"python -m benchmarks.bench_load {shlex.join(args.argv)}".rstrip(), "```", "",
           f"- {args.rounds} round(s); each runs every command once quiet and once beside {args.busy} "
           f"`python -c \"{'while True: pass'}\"` processes, alternating which comes first",
           f"- nproc {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}; "
           f"threads: {thread_setting(args.threads)}",
           f"- load average (1/5/15 min) before: {load[0]}; after: {load[1]}", "",
           "| recipe | command | quiet | beside busy processes | ratio (range) | target | same numbers |",
           "|---|---|---|---|---|---|---|"]
    for (recipe, command), rounds in results.items():
        quiet = [r["quiet"]["seconds"] for r in rounds]
        loaded = [r["loaded"]["seconds"] for r in rounds]
        ratios = [lo / qu for lo, qu in zip(loaded, quiet)]
        failed = [r[c]["error"] for r in rounds for c in r if r[c]["error"]]
        ratio = statistics.median(ratios)
        if failed:
            verdict = f"not judged: {failed[0][:80]}"
        else:
            verdict = f"<= {TARGET_RATIO:g}x ({'met' if ratio <= TARGET_RATIO else '**missed**'})"
        same = len({r[c]["json"] for r in rounds for c in r}) == 1
        out.append(f"| {recipe} | {command} | {summary(quiet)} | {summary(loaded)} | "
                   f"**{ratio:.2f}x** ({min(ratios):.2f}-{max(ratios):.2f}) | {verdict} | "
                   f"{'yes' if same else '**no**'} |")
    return "\n".join(out) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipes")
    parser.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated subset of "
                        + ",".join(COMMANDS))
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the loaded runs")
    add_round_options(parser, README)
    args = parser.parse_args(argv)
    resolve_round_options(parser, args, argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    args.commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = sorted(set(args.commands) - set(COMMANDS))
    if unknown:
        parser.error(f"unknown command(s) {unknown}; choose from {', '.join(COMMANDS)}")
    if args.busy < 0:
        parser.error("--busy must be non-negative")
    return args


def main(argv=None) -> int:
    return measure_and_report(argv, parse_args, run_rounds, render, README, (START, END), "Shared machine")


if __name__ == "__main__":
    sys.exit(main())
