"""How long the CI trio takes: sanity-loss, gradcheck, lr-probe on one recipe.

Targets on the default recipe (two-layer-digits), 2-core machine: gradcheck
under 1 s, sanity-loss under 2 s, lr-probe under 15 s.

Every measurement runs in a fresh process, rounds alternating between the
commands so that a burst of load from elsewhere on the machine hits all of
them alike. Two figures per run:

* ``diagnosis``: the diagnostics call alone (data loading included, imports
  and recipe parsing not), timed inside the child;
* ``cli``: the whole ``babysit <command> --quiet`` process, start to exit, as a
  CI job sees it (interpreter start-up and imports included).

Usage::

    python -m benchmarks.bench_trio                    # 5 rounds, default recipe
    python -m benchmarks.bench_trio --rounds 3 --recipe convnet-digits
    python -m benchmarks.bench_trio --blas-threads 1   # pin OpenBLAS/OpenMP threads in the children

The report gives the median and the range over rounds, and the load average
before and after (the figures mean little on a machine busy with other work).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "sanity-loss": ("babysit.diagnostics.sanity", "sanity_loss", 2.0),
    "gradcheck": ("babysit.diagnostics.gradcheck", "gradcheck_recipe", 1.0),
    "lr-probe": ("babysit.diagnostics.lr_probe", "lr_probe", 15.0),
}
CLI = "import sys; from babysit.cli import main; main(sys.argv[1:])"


def child(command: str, recipe_name: str) -> None:
    """Run one diagnosis in this process; print its timing as JSON on the last line."""
    import importlib

    from babysit.recipes import load_recipe

    module, function, _ = COMMANDS[command]
    diagnose = getattr(importlib.import_module(module), function)
    recipe = load_recipe(recipe_name)
    start = time.perf_counter()
    result = diagnose(recipe)
    elapsed = time.perf_counter() - start
    print(json.dumps({"command": command, "diagnosis_s": elapsed, "status": result.status}))


def run_child(command: str, recipe: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_trio", "--child", command,
                          "--recipe", recipe], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(command: str, recipe: str, env: dict) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLI, command, recipe, "--quiet"], cwd=REPO,
                          env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def summarize(values: list) -> str:
    return (f"{statistics.median(values):6.2f} s (range {min(values):.2f}-{max(values):.2f}, "
            f"{len(values)} rounds)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--recipe", default="two-layer-digits")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help="comma-separated subset of " + ",".join(COMMANDS))
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="set OPENBLAS_NUM_THREADS/OMP_NUM_THREADS in the children")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.recipe)
        return
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = sorted(set(commands) - set(COMMANDS))
    if unknown:
        raise SystemExit(f"unknown command(s) {unknown}; choose from {list(COMMANDS)}")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.blas_threads:
        env.update(OPENBLAS_NUM_THREADS=str(args.blas_threads), OMP_NUM_THREADS=str(args.blas_threads))

    print(f"recipe {args.recipe}, {args.rounds} rounds, {os.cpu_count()} cores, BLAS threads "
          f"{env.get('OPENBLAS_NUM_THREADS', 'default')}, load average before: {load_average()}")
    diagnosis = {c: [] for c in commands}
    cli = {c: [] for c in commands}
    statuses = {c: set() for c in commands}
    for _ in range(args.rounds):
        for command in commands:
            timing = run_child(command, args.recipe, env)
            diagnosis[command].append(timing["diagnosis_s"])
            statuses[command].add(timing["status"])
            seconds, _ = run_cli(command, args.recipe, env)
            cli[command].append(seconds)
    print(f"load average after: {load_average()}\n")
    print(f"| command | status | diagnosis (median) | whole CLI process (median) | target |")
    print("|---|---|---|---|---|")
    for command in commands:
        target = COMMANDS[command][2]
        verdict = "ok" if statistics.median(diagnosis[command]) < target else "OVER"
        print(f"| {command} | {'/'.join(sorted(statuses[command]))} | "
              f"{summarize(diagnosis[command])} | {summarize(cli[command])} | "
              f"< {target:g} s ({verdict}) |")


if __name__ == "__main__":
    main()
