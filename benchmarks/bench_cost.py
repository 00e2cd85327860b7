"""The cost curve: how each diagnosis's time grows with the model and the data.

    python -m benchmarks.bench_cost                      # 3 rounds, every axis and diagnosis
    python -m benchmarks.bench_cost --quick              # 1 round
    python -m benchmarks.bench_cost --axes width,batch --diagnoses sanity-loss,gradcheck
    python -m benchmarks.bench_cost --write-readme       # store the tables in benchmarks/README.md

Starts from the bundled CIFAR-sized ConvNet (``convnet-gratings``: three
blocks of conv 3x3 - relu - maxpool 2x2, 16/32/64 filters, an affine layer,
3x32x32 generated images, batch 64) and grows one thing at a time, three
sizes each, the recipe's own in the middle:

* ``width``: every conv layer's filters x0.5, x1, x2;
* ``depth``: 2, 3, 4 conv blocks (filters doubling from 16);
* ``batch``: ``train.batch_size`` 32, 64, 128;
* ``input``: images 16x16, 32x32, 64x64 (``data.source.size``).

Every (variant, diagnosis) runs in a fresh process (``benchmarks/_runs.py``:
the diagnosis call alone, data generation included); the figure is the
median over rounds. For each diagnosis and axis the report fits ``time ~
size^p`` through the three points (least squares on logs) and shows it next
to the growth of the model's multiply-adds per example, so a user can scale
the measured times to their own model. The doctor's time is the sum of its
parts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):   # run as a script: make `benchmarks` importable like `-m` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._nets import NetSpec, flops  # noqa: E402
from benchmarks._runs import (add_round_options, measure_and_report, resolve_round_options,  # noqa: E402
                              thread_setting, time_diagnosis)

README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- cost:start -->", "<!-- cost:end -->"
RECIPE = "convnet-gratings"
DIAGNOSES = ("sanity-loss", "gradcheck", "overfit-tiny", "init-stats", "lr-probe")
BASE = {"width": 1.0, "depth": 3, "batch": 64, "input": 32}
AXES = {"width": (0.5, 1.0, 2.0), "depth": (2, 3, 4), "batch": (32, 64, 128), "input": (16, 32, 64)}
AXIS_WORDS = {"width": "filters x{}", "depth": "{} conv blocks", "batch": "batch {}", "input": "{0}x{0} images"}


def layers(width: float, depth: int) -> list:
    """The variant's model layers: ``depth`` blocks of conv-relu-maxpool, filters 16 * width doubling."""
    out = []
    for block in range(depth):
        out += [{"conv": {"filters": max(1, round(16 * width * 2 ** block)), "size": 3}}, "relu",
                {"maxpool": {"size": 2}}]
    return out + [{"affine": {"out": 10, "init": {"normal": 1.0e-3}}}]


def variant(axis: str, value) -> dict:
    return dict(BASE, **{axis: value})


def overrides(config: dict) -> list:
    """``--set`` strings turning the base recipe into ``config``."""
    return [f"model.layers={json.dumps(layers(config['width'], config['depth']))}",
            f"train.batch_size={config['batch']}", f"data.source.size={config['input']}"]


def macs_per_example(config: dict) -> int:
    size = config["input"]
    spec = NetSpec("variant", "", tuple(layers(config["width"], config["depth"])), (3, size, size), 10, 1)
    return flops(spec)["macs"]


def slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x): the p of ``y ~ x^p``."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / den if den else float("nan")


def configs(axes) -> list:
    """Every distinct variant the axes need (the base once)."""
    seen = []
    for axis in axes:
        for value in AXES[axis]:
            config = variant(axis, value)
            if config not in seen:
                seen.append(config)
    return seen


def run_rounds(args) -> list:
    """``[(config, {diagnosis: [seconds per round]})]``."""
    results = [(config, {d: [] for d in args.diagnoses}) for config in configs(args.axes)]
    for r in range(args.rounds):
        for config, times in results:
            for diagnosis in args.diagnoses:
                timing = time_diagnosis(diagnosis, args.recipe, overrides(config), args.threads)
                times[diagnosis].append(timing[args.clock])
                print(f"round {r + 1}/{args.rounds}: {diagnosis} {config}: {times[diagnosis][-1]:.2f} s",
                      file=sys.stderr, flush=True)
    return results


def render(args, results, load) -> str:
    medians = {json.dumps(config, sort_keys=True): {d: statistics.median(t) for d, t in times.items()}
               for config, times in results}
    clock = "wall time" if args.clock == "diagnosis_s" else "CPU time of the process"
    out = [f"Measured {datetime.date.today().isoformat()} with", "", "```",
           f"python -m benchmarks.bench_cost {shlex.join(args.argv)}".rstrip(), "```", "",
           f"- recipe `{args.recipe}` grown one axis at a time; {args.rounds} round(s), median "
           f"{clock} of the diagnosis call, each in a fresh process",
           f"- nproc {os.cpu_count()}; threads: {thread_setting(args.threads)}; "
           f"load average (1/5/15 min) before: {load[0]}; after: {load[1]}", ""]
    for axis in args.axes:
        values = AXES[axis]
        points = [variant(axis, v) for v in values]
        header = ["diagnosis"] + [AXIS_WORDS[axis].format(v) for v in values] + ["growth: time ~ size^p"]
        out += [f"**{axis}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        macs = [macs_per_example(p) for p in points]
        out.append("| MACs per example | " + " | ".join(f"{m / 1e6:.1f} M" for m in macs)
                   + f" | p = {slope(values, macs):.2f} |")
        rows = {d: [medians[json.dumps(p, sort_keys=True)][d] for p in points] for d in args.diagnoses}
        total = "doctor (sum)" if set(args.diagnoses) == set(DIAGNOSES) else "sum of the rows above"
        rows[total] = [sum(rows[d][i] for d in args.diagnoses) for i in range(len(points))]
        for name, times in rows.items():
            out.append(f"| {name} | " + " | ".join(f"{t:.2f} s" for t in times)
                       + f" | p = {slope(values, times):.2f} |")
        out.append("")
    return "\n".join(out)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE, help="base recipe (its layers are replaced per variant)")
    parser.add_argument("--axes", default=",".join(AXES), help="comma-separated subset of " + ",".join(AXES))
    parser.add_argument("--diagnoses", default=",".join(DIAGNOSES),
                        help="comma-separated subset of " + ",".join(DIAGNOSES))
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default) or the process's CPU time (steadier on a busy machine)")
    add_round_options(parser, README)
    args = parser.parse_args(argv)
    resolve_round_options(parser, args, argv)
    args.axes = [a.strip() for a in args.axes.split(",") if a.strip()]
    args.diagnoses = [d.strip() for d in args.diagnoses.split(",") if d.strip()]
    bad = sorted(set(args.axes) - set(AXES)) + sorted(set(args.diagnoses) - set(DIAGNOSES))
    if bad:
        parser.error(f"unknown axis or diagnosis {bad}; axes: {', '.join(AXES)}; "
                     f"diagnoses: {', '.join(DIAGNOSES)}")
    args.clock = "diagnosis_s" if args.clock == "wall" else "cpu_s"
    return args


def main(argv=None) -> int:
    return measure_and_report(argv, parse_args, run_rounds, render, README, (START, END), "Cost curve")


if __name__ == "__main__":
    sys.exit(main())
