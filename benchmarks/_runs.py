"""Timing babysit's diagnoses and commands in fresh processes: what bench_trio, bench_load and bench_cost share.

Two ways to time a diagnosis, each in a fresh process so that no cache or
thread pool carries over:

* :func:`time_diagnosis`: the diagnosis function alone (data loading
  included, interpreter start-up, imports and recipe parsing not), timed inside
  a child (``python -m benchmarks._runs COMMAND RECIPE [--set K=V ...]``),
  which prints ``{"command", "diagnosis_s", "cpu_s", "status", "digest"}`` on
  its last line (``cpu_s``: the process's CPU time over the same span;
  ``digest``: a hash of the result's JSON, so runs can be checked for equal
  numbers);
* :func:`time_cli`: the whole ``babysit COMMAND RECIPE --quiet`` process, as a
  CI job sees it, optionally writing ``--json`` for comparison.

:func:`child_env` decides the threads: by default every thread variable
(``BABYSIT_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``) is removed, so babysit's own policy is what gets
measured; ``threads=N`` sets ``BABYSIT_THREADS=N`` instead.
:func:`busy_processes` starts the busy neighbours of the load benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARIABLES = ("BABYSIT_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
BUSY_LOOP = "while True: pass"


def diagnoses() -> dict:
    """``{command: function}``: the doctor's parts in protocol order, then doctor itself."""
    from babysit.diagnostics.doctor import doctor, part_function, PARTS

    table = {command: part_function(command) for command in PARTS}
    table["doctor"] = doctor
    return table


def child_env(threads: int = 0) -> dict:
    """A child's environment: the repo importable; thread variables removed (or ``BABYSIT_THREADS``)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    if threads:
        env["BABYSIT_THREADS"] = str(threads)
    return env


def thread_setting(threads: int = 0) -> str:
    return f"BABYSIT_THREADS={threads}" if threads else "babysit's default (no thread variable set)"


def child(command: str, recipe_name: str, sets: list) -> None:
    """Run one diagnosis in this process; print its timing as JSON on the last line."""
    from babysit.recipes import load_recipe

    diagnose = diagnoses()[command]
    recipe = load_recipe(recipe_name, overrides=list(sets) or None)
    start, cpu = time.perf_counter(), time.process_time()
    result = diagnose(recipe)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    digest = hashlib.sha256(json.dumps(result.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    print(json.dumps({"command": command, "diagnosis_s": elapsed, "cpu_s": cpu, "status": result.status,
                      "digest": digest[:16]}))


def time_diagnosis(command: str, recipe: str, sets=(), threads: int = 0) -> dict:
    """The child's JSON for one diagnosis in a fresh process (RuntimeError with its stderr on failure)."""
    words = [sys.executable, "-m", "benchmarks._runs", command, recipe]
    for item in sets:
        words += ["--set", item]
    done = subprocess.run(words, cwd=ROOT, env=child_env(threads), capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"{command} {recipe} {' '.join(sets)} failed (exit {done.returncode}):\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_cli(words, threads: int = 0, json_path: Path | None = None) -> dict:
    """Wall time and exit code of ``babysit WORDS --quiet`` (plus ``--json json_path``) in a fresh process."""
    command = [sys.executable, "-m", "babysit", *words, "--quiet"]
    if json_path is not None:
        command += ["--json", str(json_path)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=child_env(threads), capture_output=True, text=True)
    return {"seconds": time.perf_counter() - start, "exit_code": done.returncode,
            "error": (done.stderr.strip().splitlines() or [""])[-1] if done.returncode not in (0, 1) else ""}


@contextlib.contextmanager
def busy_processes(count: int):
    """``count`` processes spinning ``while True: pass`` for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        time.sleep(0.5)   # let them start spinning before anything is timed
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (nproc is the quiet ceiling)."""
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def summary(values: list, unit: str = " s") -> str:
    """``median (min-max)`` of a list of numbers."""
    if len(values) == 1:
        return f"{values[0]:.2f}{unit}"
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def write_section(report: str, path: Path, start: str, end: str, title: str) -> None:
    """Replace what lies between the markers ``start``/``end`` of ``path`` (append a ``title`` section if absent)."""
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{report}{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n" + block + "\n"
    path.write_text(text)


# -- the drivers of bench_load and bench_cost ------------------------------------

def add_round_options(parser: argparse.ArgumentParser, readme: Path) -> None:
    """``--rounds --threads --quick --write-readme``, resolved by :func:`resolve_round_options`."""
    parser.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=0,
                        help="BABYSIT_THREADS in the children (0: none set, babysit's default)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--write-readme", action="store_true", help=f"store the report in {readme.name}")


def resolve_round_options(parser: argparse.ArgumentParser, args, argv) -> None:
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.rounds < 1 or args.threads < 0:
        parser.error("--rounds must be positive and --threads non-negative")
    args.argv = list(argv)


def measure_and_report(argv, parse_args, run_rounds, render, readme: Path, markers: tuple, title: str) -> int:
    """Parse, run the rounds between two load readings, print the report, store it if asked."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    load = [load_average()]
    results = run_rounds(args)
    load.append(load_average())
    report = render(args, results, load)
    print(report, end="")
    if args.write_readme:
        write_section(report, readme, *markers, title)
    return 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="run one diagnosis and print its timing (a benchmark child)")
    parser.add_argument("command")
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args(argv)
    child(args.command, args.recipe, args.sets)


if __name__ == "__main__":
    main()
