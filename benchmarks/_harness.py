"""What both workers share: their command line, the timing loop, the JSON they print.

A worker measures one library in a fresh process and prints one JSON object
on its last stdout line::

    {"library": "babysit", "versions": {...}, "threads": {...},
     "peak_gflops": 93.1,                      # square float32 matmul, best of reps
     "nets": {"mlp": {"fwd_bwd": TIMING, "step": TIMING}, ...}}

    TIMING = {"median_s": .., "mean_s": .., "min_s": .., "iters": N}

Only per-iteration wall times from ``time.perf_counter`` are used; the driver
turns them into ratios and GFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks._nets import NETS

STEP_LR = 1e-3   # small, so that repeated steps on one batch stay in a normal numeric range


def worker_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing")
    parser.add_argument("--nets", default=",".join(NETS), help="comma-separated subset of " + ",".join(NETS))
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="side of the square float32 matmul that measures peak GFLOP/s (0: skip)")
    parser.add_argument("--profile", action="store_true",
                        help="print a per-layer/per-op time breakdown instead of the JSON timings")
    return parser


def selected_nets(arg: str) -> list:
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETS]
    if unknown:
        raise SystemExit(f"unknown net(s) {unknown}; choose from {sorted(NETS)}")
    return [NETS[n] for n in names]


def time_iterations(fn, iters: int, warmup: int) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``iters`` times, timing each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, iters)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {
        "median_s": statistics.median(times),
        "mean_s": statistics.fmean(times),
        "min_s": min(times),
        "iters": len(times),
    }


def peak_gflops(matmul, n: int, reps: int = 5) -> float:
    """Best GFLOP/s of ``matmul()`` (one n x n by n x n product, 2 n^3 FLOPs) over ``reps`` calls."""
    matmul()   # first call pays for thread start-up and page faults
    best = min(_timed(matmul) for _ in range(reps))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def emit(payload: dict) -> None:
    """Print the worker's result as the last line of stdout."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def print_profile_table(title: str, rows: list) -> None:
    """``rows`` of ``(label, forward_s, backward_s)``; prints milliseconds and shares of the total."""
    total = sum(f + b for _, f, b in rows) or 1.0
    print(f"\n{title}")
    print(f"  {'layer':<28}{'forward ms':>12}{'backward ms':>13}{'share':>8}")
    for label, fwd, bwd in rows:
        print(f"  {label:<28}{fwd * 1e3:>12.2f}{bwd * 1e3:>13.2f}{(fwd + bwd) / total:>8.1%}")
    print(f"  {'total':<28}{sum(r[1] for r in rows) * 1e3:>12.2f}{sum(r[2] for r in rows) * 1e3:>13.2f}")
