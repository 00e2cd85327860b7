"""The gates, run on the same settings as the ground truth.

* lr-probe (grid, the default, and sweep) with the recipe's LR set to every LR
  of the truth grid, per seed: does its exit code say what training did?
* sanity-loss and doctor on every bundled recipe for seeds 0-9: the same
  verdict under every seed?
* train: its exit code comes with every truth run (no extra job).
"""

from __future__ import annotations

from benchmarks.calibration import truth

DOCTOR_SEEDS = tuple(range(10))


def bundled() -> list[str]:
    from babysit.recipes import list_recipes

    return [name for name, _, _ in list_recipes() if name != "cifar10-two-layer"]


def lr_probe_jobs(recipes=truth.RECIPES, seeds=truth.SEEDS, modes=("grid", "sweep")) -> list[dict]:
    jobs = []
    for recipe in recipes:
        for seed in seeds:
            for lr in truth.lr_grid(recipe):
                for mode in modes:
                    jobs.append({"kind": "gate", "gate": "lr-probe", "recipe": recipe, "seed": seed,
                                 "overrides": {"optim.lr": lr}, "value": lr,
                                 "options": {"mode": mode}})
    return jobs


def seed_jobs(gates=("sanity-loss", "doctor"), seeds=DOCTOR_SEEDS) -> list[dict]:
    return [{"kind": "gate", "gate": gate, "recipe": recipe, "seed": seed}
            for gate in gates for recipe in bundled() for seed in seeds]


__all__ = ["lr_probe_jobs", "seed_jobs", "bundled", "DOCTOR_SEEDS"]
