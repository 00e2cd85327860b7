"""The ground truth: what ``babysit train`` really reaches, per setting and seed.

For every calibration recipe the recipe is trained, as ``babysit train`` does,
over

* a log grid of learning rates (``LR_PER_DECADE`` per decade over the
  ``LR_RANGES`` of the recipe's update rule, from nothing-happens to divergence),
* a log grid of L2 strengths at the recipe's own learning rate,
* a set of initializations at the recipe's own learning rate,

each with every seed. A run's *outcome* is its final validation accuracy
(the training accuracy for ``deep-tanh-init``, whose labels are random: there
is nothing to generalize, only to memorize); a diverged run's outcome is
chance. The *real good range* of a recipe is the set of learning rates whose
mean outcome is within noise of the best learning rate's: ``best - mean <=
max(1 point, 2 standard errors of the difference)``.
"""

from __future__ import annotations

import functools
import math
import statistics

# Bundled recipes calibrated only after every rule was set (2026-11-29,
# evening): a held-out check.
HELD_OUT_RECIPES = ("convnet-gratings", "torch-two-layer-digits", "torch-convnet-digits")
# Every bundled recipe with a learning rate to calibrate that runs offline
# (cifar10-two-layer needs the CIFAR-10 files; two-layer-digits-lbfgs has no
# LR, its line search sets the steps) and the three recipes of other kinds made
# for the calibration.
RECIPES = ("two-layer-digits", "convnet-digits", "spiral-mlp", "deep-tanh-init",
           "deep-batchnorm-momentum", "tanh-rmsprop", "dropout-convnet-nesterov", *HELD_OUT_RECIPES)
RANDOM_LABELS = {"deep-tanh-init"}   # outcome: train accuracy
SEEDS = (0, 1, 2)
AXIS_SEEDS = (0,)          # the L2 and init axes are recorded on one seed
# learning rates from "nothing happens" to "diverges at once", per kind of update rule
LR_RANGES = {"sgd": (1e-4, 10.0), "momentum": (1e-4, 10.0), "nesterov": (1e-4, 10.0),
             "adagrad": (1e-5, 3.16), "rmsprop": (1e-6, 1.0), "adam": (1e-6, 1.0)}
LR_PER_DECADE = 4
REG_RANGE = (1e-6, 10.0)
REG_PER_DECADE = 1
INITS = ("xavier", "he", "small", {"normal": 1.0}, "zeros")
NOISE_FLOOR = 0.01         # a point of accuracy
BAD_MARGIN = 0.10          # a run ending 10 points below the best is bad
CHANCE_MARGIN = 0.05       # within 5 points of chance counts as "at chance"


def log_grid(lo: float, hi: float, per_decade: int) -> list[float]:
    count = round(math.log10(hi / lo) * per_decade) + 1
    return [float(f"{lo * 10 ** (k / per_decade):.3g}") for k in range(count)]


def lr_grid(recipe: str) -> list[float]:
    from babysit.recipes import load_recipe

    return log_grid(*LR_RANGES[load_recipe(recipe).optim.update], LR_PER_DECADE)


def train_jobs(recipes=RECIPES, seeds=SEEDS) -> list[dict]:
    jobs = []
    for recipe in recipes:
        lrs = lr_grid(recipe)
        for seed in seeds:
            for lr in lrs:
                jobs.append({"kind": "train", "recipe": recipe, "axis": "lr", "value": lr,
                             "overrides": {"optim.lr": lr}, "seed": seed})
            if seed not in AXIS_SEEDS:
                continue
            for reg in log_grid(*REG_RANGE, REG_PER_DECADE):
                jobs.append({"kind": "train", "recipe": recipe, "axis": "reg", "value": reg,
                             "overrides": {"model.reg": reg}, "seed": seed})
            for init in INITS:
                jobs.append({"kind": "train", "recipe": recipe, "axis": "init", "value": init,
                             "overrides": {"model.init": init}, "seed": seed})
    return jobs


@functools.lru_cache(maxsize=None)   # scoring asks once per record: load each data set once
def chance(recipe: str) -> float:
    from babysit.recipes import load_recipe
    from babysit.data import load_data

    data = load_data(load_recipe(recipe).data)
    return 1.0 / data.num_classes


def outcome(record: dict, chance_level: float, measure: str | None = None) -> float:
    """The accuracy a run ended at (chance when it diverged or ended non-finite).

    ``measure``: ``"val_accuracy"`` or ``"train_accuracy"``; by default the
    validation accuracy, the training accuracy on random labels (what an LR's
    progress is: on random labels only memorizing them is progress).
    """
    if record["diverged"]:
        return chance_level
    key = measure or ("train_accuracy" if record["job"]["recipe"] in RANDOM_LABELS else "val_accuracy")
    value = record.get(key)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else chance_level


class Curve:
    """Outcomes along one axis of one recipe: ``{value: [outcome per seed]}``, and what is good."""

    def __init__(self, records: list[dict], chance_level: float, measure: str | None = None):
        self.chance = chance_level
        self.measure = measure
        self.runs: dict = {}
        for record in records:
            value = json_value(record["job"]["value"])
            self.runs.setdefault(value, {})[record["job"]["seed"]] = record
        self.outcomes = {v: [outcome(r, chance_level, measure) for _, r in sorted(seeds.items())]
                         for v, seeds in self.runs.items()}

    def outcome(self, record: dict) -> float:
        return outcome(record, self.chance, self.measure)

    def mean(self, value) -> float:
        return statistics.fmean(self.outcomes[value])

    def se(self, value) -> float:
        values = self.outcomes[value]
        return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0

    @property
    def best(self):
        return max(self.outcomes, key=self.mean)

    def within_noise(self, value) -> bool:
        best = self.best
        noise = max(NOISE_FLOOR, 2 * math.sqrt(self.se(value) ** 2 + self.se(best) ** 2))
        return self.mean(best) - self.mean(value) <= noise

    def within_noise_paired(self, value) -> bool:
        """Within noise of the best, the seeds paired: ``mean(d) <= max(1 point, 2 SE(d))``.

        ``d`` is, per seed, the best LR's outcome minus this LR's. Seed s starts
        from the same weights and draws the same batches at every LR, so what a
        seed makes easy or hard (deep-tanh-init's random labels: 20-30 points
        between seeds at one LR) cancels in ``d``; the unpaired view counts it
        as noise and calls LRs 20 points below the best on every seed "within
        noise". Both views are published.
        """
        best = self.best
        seeds = sorted(set(self.runs[value]) & set(self.runs[best]))
        if value == best or len(seeds) < 2:
            return self.within_noise(value)
        diffs = [self.outcome(self.runs[best][s]) - self.outcome(self.runs[value][s])
                 for s in seeds]
        noise = max(NOISE_FLOOR, 2 * statistics.stdev(diffs) / math.sqrt(len(diffs)))
        return statistics.fmean(diffs) <= noise

    def good(self) -> list:
        return [v for v in self.ordered() if self.within_noise(v)]

    def ordered(self) -> list:
        return sorted(self.outcomes, key=lambda v: v if isinstance(v, float) else str(v))

    def bad_run(self, value, seed) -> bool:
        """This seed's run ended 10 points or more below the best mean, or diverged."""
        record = self.runs[value][seed]
        return record["diverged"] or self.outcome(record) <= self.mean(self.best) - BAD_MARGIN

    def bad_for_its_seed(self, value, seed) -> bool:
        """This seed's run ended 10 points or more below the same seed's best run, or diverged.

        The view that holds when seeds differ a lot (deep-tanh-init's random labels:
        20-30 points between seeds at one LR), where the mean-based view calls a
        poor seed's every run bad.
        """
        record = self.runs[value][seed]
        own_best = max(self.outcome(runs[seed]) for runs in self.runs.values() if seed in runs)
        return record["diverged"] or self.outcome(record) <= own_best - BAD_MARGIN


def json_value(value):
    """A grid value as a hashable key (an init mapping as 'normal:1')."""
    if isinstance(value, dict):
        (k, v), = value.items()
        return f"{k}:{v:g}"
    return value


__all__ = ["RECIPES", "HELD_OUT_RECIPES", "SEEDS", "train_jobs", "Curve", "outcome", "chance", "log_grid",
           "json_value", "RANDOM_LABELS"]
