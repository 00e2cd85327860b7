"""Record lr-probe's short runs once, then replay the grid gate on the records.

A grid gate's verdict is a function of its short runs, and the short run at
one LR of one recipe and seed is the same whichever recipe LR anchors the
walk (same init, same batches, constant LR). So each recipe and seed gets
*every* lattice LR of ``1e-7 .. 10`` (4 per decade, :data:`LATTICE`) run
once, to the end of lr-probe's long run (training's length, at most
``LONG_RUN_MAX_STEPS``), with the
evaluation objective recorded at checkpoints; a gate at any grid LR is then
replayed in microseconds by the real walk and verdicts
(:func:`babysit.diagnostics.lr_probe.grid.run_grid`) on a :class:`RecordedProber`.
That is how a rule change is weighed on every recipe, seed and LR before the
gates are run again for real (the replay reproduces the real gates' exit
codes on every recorded case: :func:`check_replay`).

Job kind ``short-runs``: ``{"kind": "short-runs", "recipe": ..., "seed": ...}``.
"""

from __future__ import annotations

import math

from babysit.diagnostics.lr_probe.prober import ShortRuns, Trial
from benchmarks.calibration import score
from benchmarks.calibration.runs import job_key
from benchmarks.calibration.truth import log_grid

LATTICE = log_grid(1e-7, 10.0, 4)
CHECKPOINTS = 8   # per short run: the objective at every 1/8 of it, on to the long run's end


def short_run_jobs(recipes, seeds) -> list[dict]:
    return [{"kind": "short-runs", "recipe": recipe, "seed": seed} for recipe in recipes for seed in seeds]


def run_short_runs(job: dict) -> dict:
    """Every lattice LR's run for the job's recipe and seed, as lr-probe's prober runs it."""
    import numpy as np

    from babysit.diagnostics import common
    from babysit.diagnostics.lr_probe import DEFAULT_EVAL_EXAMPLES, LONG_RUN_MAX_STEPS, Prober, default_steps
    from babysit.diagnostics.lr_probe import training_steps
    from babysit.engine.solver import Callback, Divergence
    from benchmarks.calibration.runs import recipe_of

    recipe = recipe_of(job)
    data = common.load(recipe)
    steps = default_steps(recipe, data)
    horizon = min(training_steps(recipe, data), LONG_RUN_MAX_STEPS)
    prober = Prober(recipe, data, recipe.seed, steps, DEFAULT_EVAL_EXAMPLES)
    marks = sorted({max(1, round(steps * k / CHECKPOINTS)) for k in range(1, 2 * CHECKPOINTS + 1)}
                   | {steps, horizon})
    marks = [m for m in marks if m <= horizon]
    runs = []
    for lr in LATTICE:
        model, solver = prober.fresh()
        start = prober.objective(model)
        objective = {}

        class Checkpoints(Callback):
            def on_step_end(self, state):
                if state.iteration in marks and not state.diverged:
                    objective[state.iteration] = prober.objective(model)

        with np.errstate(all="ignore"):
            state = solver.run(data.X_train, data.y_train, steps=horizon, lr=lr,
                               divergence=Divergence(), callbacks=[Checkpoints()])
        runs.append({"lr": lr, "start": start, "diverged_at": state.iteration if state.diverged else None,
                     "objective": {str(k): (v if math.isfinite(v) else None) for k, v in objective.items()}})
    return {"steps": steps, "horizon": horizon, "runs": runs}


class RecordedProber(ShortRuns):
    """lr-probe's short runs (:class:`~babysit.diagnostics.lr_probe.prober.ShortRuns`)
    read from one recipe-seed record instead of trained."""

    def __init__(self, record: dict):
        super().__init__(record["steps"])
        self.runs = {run["lr"]: run for run in record["runs"]}

    def run_at(self, lr: float) -> dict:
        nearest = min(self.runs, key=lambda known: abs(math.log(known / lr)))
        # the walk's lattice is anchored on the recipe's LR and rounded to 3 digits:
        # within 1% of the recorded grid point
        if abs(math.log(nearest / lr)) > 0.01:
            raise KeyError(f"no recorded run near lr {lr:g}")
        return self.runs[nearest]

    def at(self, lr: float, steps: int) -> Trial:
        run = self.run_at(lr)
        diverged = run["diverged_at"] is not None and run["diverged_at"] <= steps
        end = None if diverged else run["objective"][str(steps)]   # a missing mark is an error
        return Trial(lr, run["start"], math.nan if end is None else end, steps,
                     run["diverged_at"] if diverged else None)

    def run_short(self, lr: float) -> Trial:
        return self.at(lr, self.steps)

    def extend(self, trial: Trial, steps: int) -> Trial:
        return self.at(trial.lr, steps)


class _Findings:
    def __init__(self):
        self.findings = []

    def add(self, code, severity, *args, **evidence):
        self.findings.append(["lr-probe", code, severity])


def replay_gate(record: dict, recipe_lr: float, long_run: bool = True) -> dict:
    """The grid gate at ``recipe_lr`` replayed on one recipe-seed record (a gate record's fields)."""
    from babysit.diagnostics.lr_probe import DEFAULT_LR_MAX, DEFAULT_LR_MIN, DEFAULT_PER_DECADE
    from babysit.diagnostics.lr_probe.grid import run_grid

    prober, result = RecordedProber(record), _Findings()
    training = record["horizon"] if long_run else record["steps"]   # no long run: as long as the short
    good_range, suggested, _ = run_grid(result, prober, recipe_lr, "replay", DEFAULT_LR_MIN,
                                        DEFAULT_LR_MAX, DEFAULT_PER_DECADE, training)
    return {"exit_code": int(any(s == "fail" for *_, s in result.findings)),
            "findings": result.findings, "metrics": {"suggested_lr": suggested, "good_range": good_range}}


def replayed_gates(truth_records: dict, short_runs: dict, long_run: bool = True) -> dict:
    """Gate records as :mod:`.gates` makes them, for every LR-axis training with a record."""
    by_pair = {(r["job"]["recipe"], r["job"]["seed"]): r for r in short_runs.values()}
    out = {}
    for record in truth_records.values():
        job = record["job"]
        pair = (job["recipe"], job["seed"])
        if job["axis"] != "lr" or pair not in by_pair:
            continue
        gate_job = {"kind": "gate", "gate": "lr-probe", "recipe": job["recipe"], "seed": job["seed"],
                    "overrides": {"optim.lr": job["value"]}, "value": job["value"],
                    "options": {"mode": "grid"}}
        out[job_key(gate_job)] = {"job": gate_job,
                                               **replay_gate(by_pair[pair], job["value"], long_run)}
    return out


def check_replay(truth_records: dict, short_runs: dict, gate_records: dict) -> tuple[int, list]:
    """``(cases compared, [disagreements])`` between the real grid gates and their replay
    under the rules each was made with (a record without ``long_run`` predates the long run)."""
    replays = {flag: {(r["job"]["recipe"], r["job"]["seed"], r["job"]["value"]): r
                      for r in replayed_gates(truth_records, short_runs, flag).values()}
               for flag in (False, True)}
    compared, differ = 0, []
    for real in gate_records.values():
        job = real["job"]
        if job["gate"] != "lr-probe" or job["options"]["mode"] != "grid":
            continue
        twin = replays["long_run" in real["metrics"]].get((job["recipe"], job["seed"], job["value"]))
        if twin is None:
            continue
        compared += 1
        if twin["exit_code"] != real["exit_code"]:
            differ.append(f"{job['recipe']} seed {job['seed']} lr {job['value']:g}: real exit "
                          f"{real['exit_code']}, replayed {twin['exit_code']}")
    return compared, differ


def long_run_report(truth_records: dict, short_runs: dict) -> str:
    """The grid gate without and with the long run, replayed: agreement and every changed verdict."""
    without = replayed_gates(truth_records, short_runs, long_run=False)
    with_long = replayed_gates(truth_records, short_runs, long_run=True)
    lines = []
    for name, gates in (("short runs only", without), ("with the long run", with_long)):
        _, notes = score.lr_probe_table(truth_records, gates)
        t = notes["totals"]
        lines.append(f"- {name}: good LRs passed {t['grid_passed']}/{t['grid_good']}, "
                     f"bad LRs failed {t['grid_failed']}/{t['grid_bad']}")
    changed = [key for key in without if without[key]["exit_code"] != with_long[key]["exit_code"]]
    for key in changed:
        job = without[key]["job"]
        lines.append(f"- changed: {job['recipe']} seed {job['seed']} lr {job['value']:g}: exit "
                     f"{without[key]['exit_code']} -> {with_long[key]['exit_code']}")
    return "\n".join(lines + ([] if changed else ["- no verdict changed"]))


__all__ = ["short_run_jobs", "run_short_runs", "RecordedProber", "replay_gate", "replayed_gates",
           "check_replay", "long_run_report", "LATTICE"]
