"""What a training run records: per iteration, per epoch, per monitor and per layer.

Laid out as the run log's ``history/`` group (:mod:`babysit.store`)::

    iteration/{loss,lr}               one entry per step
    epoch/<metric>                    epoch, lr, train_loss, train_accuracy, val_loss, val_accuracy,
                                      reg_loss (the L2 term at the epoch's end)
    monitors/<monitor>/<param>        update_ratio, grad_norm (over each epoch's last step),
                                      weight_norm (||W|| at the epoch's end)
    layers/<layer>/<stat>             mean, std, near_zero, saturated, dead (NaN: not applicable)
    initial/weight_norm/<param>       ||W|| at initialization (scalar)
"""

from __future__ import annotations

import math

import numpy as np

LAYER_STATS = ("mean", "std", "near_zero", "saturated", "dead")
EPOCH_KEYS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "reg_loss")


class History:
    """Per-iteration and per-epoch records of one run (resumable from a run log)."""

    def __init__(self):
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.epoch: dict[str, list] = {}
        self.monitors: dict[str, dict[str, list]] = {"update_ratio": {}, "grad_norm": {}}
        self.layers: dict[str, dict[str, list]] = {}
        self.initial: dict[str, dict[str, float]] = {}

    def add_iteration(self, loss: float, lr: float) -> None:
        self.loss.append(float(loss))
        self.lr.append(float(lr))

    def add_epoch(self, metrics: dict, monitors: dict, layers: list) -> None:
        """Index i of every record is epoch i + 1. A layer or parameter that a resume
        brought in (``--set model.layers.1=tanh``) gets NaN for the epochs before it,
        so its first record is not shown as epoch 1's; one that a resume took out
        stops early, and NaN fills its gap if a later resume brings it back."""
        before = self.epochs
        for key, value in metrics.items():
            self.epoch.setdefault(key, []).append(value)
        for monitor, values in monitors.items():
            for name, value in values.items():
                _record(self.monitors.setdefault(monitor, {}), name, before).append(value)
        for stats in layers:
            record = self.layers.setdefault(stats.layer, {})
            for key in LAYER_STATS:
                value = getattr(stats, key)
                _record(record, key, before).append(math.nan if value is None else value)

    def cut(self, steps: int, epochs: int) -> None:
        """Keep the first ``steps`` steps and ``epochs`` epochs: the history of a checkpoint.

        A diverged run's log records the steps past its last checkpoint (the
        steps that diverged); resuming from the checkpoint must not keep them,
        or they are counted twice and averaged into the first resumed epoch.
        """
        del self.loss[steps:], self.lr[steps:]
        # a resumed run adds the keys it writes; another key (not babysit's) would stay
        # behind at the old length and make the log unreadable
        for key in [key for key in self.epoch if key not in EPOCH_KEYS]:
            del self.epoch[key]
        for records in (self.epoch, *self.monitors.values(), *self.layers.values()):
            for values in records.values():
                del values[epochs:]

    @property
    def epochs(self) -> int:
        return len(self.epoch.get("epoch", []))

    def last(self, key: str, default=math.nan):
        values = self.epoch.get(key)
        return values[-1] if values else default

    def to_tree(self) -> dict:
        def arrays(tree):
            return {k: arrays(v) if isinstance(v, dict) else np.asarray(v, dtype=np.float64)
                    for k, v in tree.items()}

        return {"iteration": {"loss": np.asarray(self.loss, dtype=np.float64),
                              "lr": np.asarray(self.lr, dtype=np.float64)},
                "epoch": arrays(self.epoch), "monitors": arrays(self.monitors),
                "layers": arrays(self.layers), "initial": arrays(self.initial)}

    @classmethod
    def from_tree(cls, tree: dict) -> "History":
        def lists(node):
            return {k: lists(v) if isinstance(v, dict) else np.asarray(v).tolist()
                    for k, v in node.items()}

        history = cls()
        iteration = tree.get("iteration", {})
        history.loss = np.asarray(iteration.get("loss", [])).tolist()
        history.lr = np.asarray(iteration.get("lr", [])).tolist()
        history.epoch = lists(tree.get("epoch", {}))
        history.monitors.update(lists(tree.get("monitors", {})))
        history.layers = lists(tree.get("layers", {}))
        history.initial = lists(tree.get("initial", {}))
        return history


def _record(records: dict, key: str, epochs: int) -> list:
    """``records[key]``, NaN-filled to ``epochs`` entries (the epochs it was not recorded in)."""
    values = records.setdefault(key, [])
    values.extend([math.nan] * (epochs - len(values)))
    return values


__all__ = ["History", "LAYER_STATS"]
