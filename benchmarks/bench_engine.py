"""Speed of the babysit engine against PyTorch CPU and against NumPy's matmul peak (spec section 7).

    python -m benchmarks.bench_engine                  # 5 rounds, prints a Markdown report
    python -m benchmarks.bench_engine --quick          # smoke run: 2 short rounds
    python -m benchmarks.bench_engine --write-readme   # also store the report in benchmarks/README.md
    python -m benchmarks.bench_engine --profile        # per-layer / per-op breakdown of both libraries

Each library runs in a fresh subprocess per round (``_worker_numpy``,
``_worker_torch``): on a small machine both keep worker threads spinning, and
sharing one process distorts either by up to 8x. Rounds alternate which
library goes first; every figure quoted is the median over rounds of a
per-round quantity (a time, a ratio of the two libraries' times in that round,
a GFLOP/s over that round's NumPy peak), because slow episodes of a shared
machine hit whole rounds. The driver itself imports neither numpy nor torch.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):   # run as a script: make `benchmarks` importable like `-m` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._nets import NETS, flops  # noqa: E402
from benchmarks._runs import THREAD_VARIABLES, child_env, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
WORKERS = {"babysit": "benchmarks._worker_numpy", "torch": "benchmarks._worker_torch"}
CASES = {"fwd_bwd": "forward+backward", "step": "SGD step"}
# Spec section 7: babysit speed / torch speed must reach these ratios.
SPEED_TARGETS = {"mlp": 1.1, "convnet": 1.0}
# Spec section 7, seconds of wall time: {label: (babysit arguments, target)}.
CLI_TARGETS = {"gradcheck": (["gradcheck"], 1.0), "doctor": (["doctor"], 30.0),
               "doctor deep-tanh-init": (["doctor", "deep-tanh-init"], 10.0),
               "doctor convnet-gratings": (["doctor", "convnet-gratings"], 60.0)}


class WorkerFailed(RuntimeError):
    pass


# -- running workers -------------------------------------------------------------

def worker_env(threads: int = 0) -> dict:
    """The environment of a child process: the repo importable, no thread variable inherited
    (both libraries' defaults); ``threads`` > 0 caps both (BLAS/OpenMP pools and BABYSIT_THREADS)."""
    env = child_env()
    if threads:
        # read by OpenBLAS and by torch's OpenMP pool when they load, hence before any import
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env


def worker_command(library: str, args, extra=()) -> list:
    return [sys.executable, "-m", WORKERS[library], "--iters", str(args.iters), "--warmup", str(args.warmup),
            "--nets", args.nets, "--peak-size", str(args.peak_size), *extra]


def run_worker(library: str, args, extra=()) -> str:
    """Stdout of one fresh worker process (WorkerFailed with its stderr when it fails)."""
    command = worker_command(library, args, extra)
    proc = subprocess.run(command, cwd=ROOT, env=worker_env(args.threads), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise WorkerFailed(f"{library} worker failed (exit {proc.returncode}): {shlex.join(command)}\n{tail}")
    return proc.stdout


def measure(library: str, args) -> dict:
    """The JSON result a worker prints on its last line."""
    lines = run_worker(library, args).strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise WorkerFailed(f"{library} worker printed no JSON result:\n{lines[-20:]}") from None


def run_rounds(args, libraries) -> list:
    """One ``{library: worker result}`` per round; rounds alternate which library starts."""
    rounds = []
    for r in range(args.rounds):
        order = libraries if r % 2 == 0 else list(reversed(libraries))
        results = {}
        for library in order:
            start = time.perf_counter()
            results[library] = measure(library, args)
            log(f"round {r + 1}/{args.rounds}: {library} done in {time.perf_counter() - start:.1f} s")
        rounds.append(results)
    return rounds


def load_average() -> str:
    """1-minute load average: how busy the machine was (nproc is the quiet ceiling)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "unknown"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- summarising ---------------------------------------------------------------

def summarize(rounds, libraries, stat: str = "median") -> list:
    """One row per (net, case) with medians over rounds of times, ratios and GFLOP/s.

    ``stat`` picks each process's figure: its ``median`` or ``min`` iteration.
    """
    key = f"{stat}_s"
    rows = []
    for net in [n for n in NETS if n in rounds[0]["babysit"]["nets"]]:
        total_flops = flops(NETS[net])["total"]
        for case in CASES:
            row = {"net": net, "case": case}
            for library in libraries:
                times = [rnd[library]["nets"][net][case][key] for rnd in rounds]
                gflops = [total_flops / t / 1e9 for t in times]
                row[library] = {
                    "ms": 1e3 * statistics.median(times),
                    "gflops": statistics.median(gflops),
                    "peak_fraction": median_or_none([g / rnd["babysit"]["peak_gflops"]
                                                    for g, rnd in zip(gflops, rounds)
                                                    if rnd["babysit"].get("peak_gflops")]),
                }
            if "torch" in libraries:
                ratios = [rnd["torch"]["nets"][net][case][key] / rnd["babysit"]["nets"][net][case][key]
                          for rnd in rounds]
                row["speed"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
            rows.append(row)
    return rows


def median_or_none(values):
    return statistics.median(values) if values else None


# -- CLI timings ---------------------------------------------------------------

def cli_command() -> list:
    if (ROOT / "babysit" / "__main__.py").exists():
        return [sys.executable, "-m", "babysit"]
    return [sys.executable, "-c", "import sys; from babysit.cli import main; sys.exit(main())"]


def cli_env() -> dict:
    # An installed package has its bytecode compiled (pip does it); let the
    # untimed first run write it rather than recompile on every timed run.
    env = worker_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_cli(words, runs: int) -> dict:
    """Median wall time of ``babysit <words>`` over ``runs`` fresh subprocesses, after one untimed run."""
    times, codes, failed = [], set(), ""
    subprocess.run(cli_command() + list(words), cwd=ROOT, env=cli_env(), capture_output=True)
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cli_command() + list(words), cwd=ROOT, env=cli_env(),
                              capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        codes.add(proc.returncode)
        if proc.returncode not in (0, 1):   # 0 healthy, 1 a diagnosis failed: both ran to the end
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            failed = f"exit {proc.returncode} ({last.replace('|', '/')[:120]})"
    return {"seconds": statistics.median(times), "runs": runs, "exit_codes": sorted(codes), "failed": failed}


def cli_available(command: str) -> bool:
    proc = subprocess.run(cli_command() + [command, "--help"], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True)
    return proc.returncode == 0


def measure_cli(runs: int) -> tuple:
    """(timings {label: timing}, notes) for start-up and the commands of CLI_TARGETS."""
    timings, notes = {}, []
    if not (ROOT / "babysit" / "cli" / "__init__.py").exists():
        return timings, ["CLI timings skipped: babysit.cli does not exist yet."]
    timings["--help"] = time_cli(["--help"], runs)
    if timings["--help"]["exit_codes"] != [0]:
        return {}, [f"CLI timings skipped: `babysit --help` fails ({timings['--help']['failed']})."]
    for label, (words, _) in CLI_TARGETS.items():
        if not cli_available(words[0]):
            notes.append(f"`babysit {label}` skipped: the command does not exist yet.")
            continue
        log(f"timing `babysit {label}` ({runs} run(s))")
        timings[label] = time_cli(words, runs)
    return timings, notes


# -- report --------------------------------------------------------------------

def fmt_ratio(speed) -> str:
    return f"**{speed['median']:.2f}x** ({speed['min']:.2f}-{speed['max']:.2f})"


def fmt_gflops(entry) -> str:
    if entry["peak_fraction"] is None:
        return f"{entry['gflops']:.1f}"
    return f"{entry['gflops']:.1f} ({entry['peak_fraction']:.0%})"


def machine_lines(rounds, libraries) -> list:
    first = rounds[0]
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    babysit = first["babysit"]
    threads = ", ".join(f"{k}: {v} thread{'' if v == 1 else 's'}" for k, v in babysit.get("threads", {}).items()) or "default threads"
    lines = [f"- Machine: {platform.system()} {platform.machine()}, {cpu}, nproc {ncpu}; "
             f"Python {platform.python_version()}",
             f"- NumPy {babysit['versions']['numpy']}, BLAS {babysit.get('blas', 'unknown')} ({threads})"]
    if "torch" in libraries:
        lines.append(f"- PyTorch {first['torch']['versions']['torch']} "
                     f"(torch: {first['torch']['threads']['torch']} thread"
                     f"{'' if first['torch']['threads']['torch'] == 1 else 's'}, default backends)")
    return lines


def render(args, rounds, libraries, cli, cli_notes, torch_note) -> str:
    has_torch = "torch" in libraries
    peaks = [rnd["babysit"].get("peak_gflops") for rnd in rounds if rnd["babysit"].get("peak_gflops")]
    out = [f"Measured {datetime.date.today().isoformat()} with",
           "", "```", f"python -m benchmarks.bench_engine {shlex.join(args.argv)}".rstrip(), "```", ""]
    out += machine_lines(rounds, libraries)
    out.append(f"- {args.rounds} rounds, one fresh process per library per round, each timing "
               f"{args.iters} iterations after {args.warmup} warm-up ones and reporting its {args.stat} "
               "iteration; medians over rounds")
    out.append(f"- 1-minute load average before / after the rounds: {args.load[0]} / {args.load[1]}"
               f" (a quiet machine stays well below nproc)")
    if args.threads:
        out.append(f"- Thread pools capped at {args.threads} (--threads): a per-core comparison, "
                   "not the configuration of the spec's targets")
    if args.note:
        out.append(f"- Note: {args.note}")
    if peaks:
        line = (f"- NumPy float32 matmul peak ({args.peak_size}x{args.peak_size} by {args.peak_size}x"
                f"{args.peak_size}): **{statistics.median(peaks):.1f} GFLOP/s**")
        torch_peaks = [rnd["torch"].get("peak_gflops") for rnd in rounds if has_torch and rnd["torch"].get("peak_gflops")]
        if torch_peaks:
            line += f" (torch's own matmul: {statistics.median(torch_peaks):.1f} GFLOP/s)"
        out.append(line)
    out.append("")
    header = ["net", "measurement", "babysit ms"]
    if has_torch:
        header += ["torch ms", "babysit speed / torch (range)", "target"]
    header += ["babysit GFLOP/s (of peak)"] + (["torch GFLOP/s (of peak)"] if has_torch else [])
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summarize(rounds, libraries, args.stat):
        cells = [row["net"], CASES[row["case"]], f"{row['babysit']['ms']:.1f}"]
        if has_torch:
            target = SPEED_TARGETS[row["net"]]
            met = "met" if row["speed"]["median"] >= target else "**missed**"
            cells += [f"{row['torch']['ms']:.1f}", fmt_ratio(row["speed"]), f">= {target:g}x ({met})"]
        cells.append(fmt_gflops(row["babysit"]))
        if has_torch:
            cells.append(fmt_gflops(row["torch"]))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for net in [n for n in NETS if n in rounds[0]["babysit"]["nets"]]:
        f = flops(NETS[net])
        line = (f"- {NETS[net].title}: {f['macs'] / 1e6:.1f} M MACs; counted work {f['total'] / 1e9:.2f} GFLOP "
                "per forward+backward (6 x MACs - 2 x MACs of the first layer, whose dLoss/dX training "
                "never needs).")
        computed = [CASES[case] for case in CASES
                    if not all(rnd["babysit"]["nets"][net][case].get("input_grad_skipped", False) for rnd in rounds)]
        if computed:
            line += (f" babysit computed that dLoss/dX anyway in: {', '.join(computed)} "
                     f"(+{f['first_layer_dx'] / f['total']:.0%} work, not credited).")
        out.append(line)
    if torch_note:
        out.append(f"- {torch_note}")
    out.append("")
    if cli:
        out += ["| command (default recipe unless named) | wall time, median | runs | target | exit code |",
                "|---|---|---|---|---|"]
        for label, timing in cli.items():
            target = CLI_TARGETS[label][1] if label in CLI_TARGETS else None
            if timing["failed"]:
                target_cell = f"not judged: {timing['failed']}"
            elif target is None:
                target_cell = "-"
            else:
                target_cell = f"< {target:g} s ({'met' if timing['seconds'] < target else '**missed**'})"
            name = "`babysit --help` (start-up cost)" if label == "--help" else f"`babysit {label}`"
            codes = ", ".join(map(str, timing["exit_codes"]))
            out.append(f"| {name} | {timing['seconds']:.2f} s | {timing['runs']} | {target_cell} | {codes} |")
        out.append("")
    for note in cli_notes:
        out.append(f"- {note}")
    return "\n".join(out).rstrip() + "\n"


def write_readme(report: str, path: Path = README) -> None:
    """Replace what lies between the markers of ``path`` with ``report`` (append a section if absent)."""
    write_section(report, path, START, END, "Latest results")


# -- entry point ---------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="rounds of one process per library (default 5; quick 2)")
    parser.add_argument("--iters", type=int, help="timed iterations per process (default 20; quick 5)")
    parser.add_argument("--warmup", type=int, help="warm-up iterations per process (default 3; quick 2)")
    parser.add_argument("--peak-size", type=int, help="side of the peak matmul (default 2048; quick 1024)")
    parser.add_argument("--cli-runs", type=int, help="runs of each CLI command (default 3; quick 1)")
    parser.add_argument("--nets", default=",".join(NETS), help="comma-separated subset of " + ",".join(NETS))
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="each process's figure: its median iteration (default) or its fastest "
                             "(steadier when other jobs load the machine)")
    parser.add_argument("--threads", type=int, default=0,
                        help="cap both libraries' threads (0: their defaults, as the spec's targets "
                             "assume; 1 isolates per-core efficiency from thread scheduling)")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer rounds and iterations")
    parser.add_argument("--no-torch", action="store_true", help="time babysit only")
    parser.add_argument("--no-cli", action="store_true", help="skip the gradcheck/doctor CLI timings")
    parser.add_argument("--profile", action="store_true",
                        help="print per-layer (babysit) and per-op (torch) breakdowns, then stop")
    parser.add_argument("--note", default="", help="a remark to print with the results (e.g. machine busy)")
    parser.add_argument("--write-readme", action="store_true",
                        help=f"store the report in {README.relative_to(ROOT)} between {START} and {END}")
    args = parser.parse_args(argv)
    defaults = {"rounds": (5, 2), "iters": (20, 5), "warmup": (3, 2), "peak_size": (2048, 1024), "cli_runs": (3, 1)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
        if getattr(args, key) < (0 if key == "peak_size" else 1):
            parser.error(f"--{key.replace('_', '-')} must be positive")
    unknown = [n for n in args.nets.split(",") if n.strip() not in NETS]
    if unknown:
        parser.error(f"unknown net(s) {unknown}; choose from {', '.join(NETS)}")
    if args.threads < 0:
        parser.error("--threads must be 0 (library defaults) or positive")
    args.argv = list(argv)
    args.load = ["unknown", "unknown"]
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    libraries, torch_note = ["babysit"], ""
    if args.no_torch:
        torch_note = "torch columns omitted (--no-torch)."
    elif importlib.util.find_spec("torch") is None:
        torch_note = "torch columns omitted: PyTorch is not installed."
    else:
        libraries.append("torch")
    try:
        if args.profile:
            for library in libraries:
                print(run_worker(library, args, ["--profile"]), end="")
            return 0
        args.load = [load_average()]
        rounds = run_rounds(args, libraries)
        args.load.append(load_average())
    except WorkerFailed as exc:
        log(str(exc))
        return 1
    cli, cli_notes = ({}, ["CLI timings skipped (--no-cli)."]) if args.no_cli else measure_cli(args.cli_runs)
    report = render(args, rounds, libraries, cli, cli_notes, torch_note)
    print(report, end="")
    if args.write_readme:
        write_readme(report)
        log(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
