"""The gates, run on the same settings as the ground truth.

* lr-probe with the recipe's LR set to every LR of the truth grid: grid mode
  (the default gate) for every seed, sweep mode for seed 0: does its exit code
  say what training did?
* sanity-loss and doctor on every bundled recipe for seeds 0-9: the same
  verdict under every seed?
* train: its exit code comes with every truth run (no extra job).
"""

from __future__ import annotations

from benchmarks.calibration import truth

DOCTOR_SEEDS = tuple(range(10))


def bundled() -> list[str]:
    from babysit.recipes import bundled_recipes

    return [name for name in bundled_recipes() if name != "cifar10-two-layer"]


# the default gate (grid) on every seed; the cheaper sweep on the first
SWEEP_SEEDS = (0,)


def lr_probe_jobs(recipes=truth.RECIPES, seeds=truth.SEEDS) -> list[dict]:
    jobs = []
    for recipe in recipes:
        for seed in seeds:
            for lr in truth.lr_grid(recipe):
                for mode in ("grid", "sweep") if seed in SWEEP_SEEDS else ("grid",):
                    jobs.append({"kind": "gate", "gate": "lr-probe", "recipe": recipe, "seed": seed,
                                 "overrides": {"optim.lr": lr}, "value": lr,
                                 "options": {"mode": mode}})
    return jobs


def seed_jobs(gates=("sanity-loss", "doctor"), seeds=DOCTOR_SEEDS) -> list[dict]:
    recipes = bundled()
    return [{"kind": "gate", "gate": gate, "recipe": recipe, "seed": seed}
            for gate in gates for recipe in recipes for seed in seeds]


__all__ = ["lr_probe_jobs", "seed_jobs", "bundled", "DOCTOR_SEEDS"]
