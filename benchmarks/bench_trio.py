"""How long the CI trio takes: sanity-loss, gradcheck, lr-probe on one recipe.

Targets on the default recipe (two-layer-digits), 2-core machine: gradcheck
under 1 s, sanity-loss under 2 s, lr-probe under 15 s.

Every measurement runs in a fresh process, rounds alternating between the
commands so that a burst of load from elsewhere on the machine hits all of
them alike. Two figures per run (see ``benchmarks/_runs.py``):

* ``diagnosis``: the diagnostics call alone (data loading included, imports
  and recipe parsing not), timed inside the child;
* ``cli``: the whole ``babysit <command> --quiet`` process, start to exit, as a
  CI job sees it (interpreter start-up and imports included).

Usage::

    python -m benchmarks.bench_trio                    # 5 rounds, default recipe
    python -m benchmarks.bench_trio --rounds 3 --recipe convnet-digits
    python -m benchmarks.bench_trio --threads 1        # BABYSIT_THREADS=1 in the children

The children run without thread variables (babysit's own policy) unless
``--threads`` is given. The report gives the median and the range over
rounds, and the load average before and after (the figures mean little on a
machine busy with other work).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):   # run as a script: make `benchmarks` importable like `-m` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._runs import load_average, summary, thread_setting, time_cli, time_diagnosis  # noqa: E402

TARGETS = {"sanity-loss": 2.0, "gradcheck": 1.0, "lr-probe": 15.0}   # seconds, diagnosis alone


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--recipe", default="two-layer-digits")
    parser.add_argument("--commands", default=",".join(TARGETS),
                        help="comma-separated subset of " + ",".join(TARGETS))
    parser.add_argument("--threads", type=int, default=0,
                        help="BABYSIT_THREADS in the children (0: no thread variable, babysit's default)")
    args = parser.parse_args(argv)
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = sorted(set(commands) - set(TARGETS))
    if unknown:
        raise SystemExit(f"unknown command(s) {unknown}; choose from {list(TARGETS)}")

    print(f"recipe {args.recipe}, {args.rounds} rounds, {os.cpu_count()} cores, threads: "
          f"{thread_setting(args.threads)}, load average before: {load_average()}")
    diagnosis = {c: [] for c in commands}
    cli = {c: [] for c in commands}
    statuses = {c: set() for c in commands}
    for _ in range(args.rounds):
        for command in commands:
            timing = time_diagnosis(command, args.recipe, threads=args.threads)
            diagnosis[command].append(timing["diagnosis_s"])
            statuses[command].add(timing["status"])
            cli[command].append(time_cli([command, args.recipe], threads=args.threads)["seconds"])
    print(f"load average after: {load_average()}\n")
    print("| command | status | diagnosis (median, range) | whole CLI process (median, range) | target |")
    print("|---|---|---|---|---|")
    for command in commands:
        target = TARGETS[command]
        verdict = "ok" if statistics.median(diagnosis[command]) < target else "OVER"
        print(f"| {command} | {'/'.join(sorted(statuses[command]))} | {summary(diagnosis[command])} | "
              f"{summary(cli[command])} | < {target:g} s ({verdict}) |")


if __name__ == "__main__":
    main()
