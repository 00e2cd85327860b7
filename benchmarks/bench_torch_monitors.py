"""What babysit's monitors cost a torch training step (issue 14's target: at most 10% more).

    python -m benchmarks.bench_torch_monitors            # 3 rounds, all nets
    python -m benchmarks.bench_torch_monitors --quick    # 1 short round
    python -m benchmarks.bench_torch_monitors --nets mlp --rounds 5

Both sides train the same ``nn.Sequential`` (``benchmarks._worker_torch.make_model``
of a ``_nets`` spec, or the bundled ``torch-two-layer-digits`` net), float32, softmax
cross-entropy, plain SGD, no L2 term, on the same shuffled mini-batches, in this one
process with one torch thread (babysit's setting; see ``babysit.torch.builder``):

* **plain torch step**: the loop a user writes: slice the batch from tensors,
  ``zero_grad``, forward, ``F.cross_entropy``, ``backward``, ``step``, ``loss.item()``;
* **babysit step under its monitors**: ``babysit train``'s own run
  (``babysit.diagnostics.train.Trainer`` on a torch recipe: ``Solver.run`` with
  the Monitor, Checkpointer, Progress and StopOnSignal callbacks), each step timed
  from the end of the previous pair (below), so the loop, the batch slicing, the NumPy
  views, the loss, the optimizer adapter and every per-step callback are in it.
  Epoch-end work (evaluation, layer statistics, checkpoint) is per epoch, not per
  step, and is reported separately, per step of the epoch.

The two sides run step by step side by side: right after each babysit step, one
plain torch step (timed on its own), so a busy moment of a shared machine hits
both. The overhead is the median over all pairs of ``babysit / torch - 1``; the
range shown is that of the per-round medians.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._nets import NETS
from benchmarks._worker_torch import make_model

TARGET = 0.10
LR = 1e-3
DIGITS = "digits"   # the bundled torch-two-layer-digits net, on the real digits


def factory(input_shape, num_classes, net: str):
    """The benchmarked module (a recipe's ``model.torch``)."""
    from babysit.torch.examples import two_layer

    return two_layer(input_shape, num_classes) if net == DIGITS else make_model(NETS[net])


def problem(net: str, steps: int, folder: Path):
    """``(recipe, batch)``: a one-epoch torch recipe of ``steps`` batches for ``net``."""
    from babysit.recipes import load_recipe

    if net == DIGITS:
        base = load_recipe("torch-two-layer-digits")
        batch = 100
        data = {}   # the recipe's own: 1438 training digits, 15 steps an epoch
    else:
        spec = NETS[net]
        batch = spec.batch
        rng = np.random.default_rng(0)
        n = batch * steps
        X = rng.standard_normal((n + 10,) + tuple(spec.input_shape)).astype(np.float32)
        y = rng.integers(0, spec.num_classes, n + 10)
        path = folder / f"{net}.npz"
        np.savez(path, X_train=X[:n], y_train=y[:n], X_val=X[n:], y_val=y[n:])
        base = load_recipe("torch-two-layer-digits")
        data = {"data.source": str(path), "data.preprocess": []}
    recipe = base.with_overrides({
        **data, "model": {"torch": "benchmarks.bench_torch_monitors:factory", "kwargs": {"net": net},
                          "loss": "softmax", "reg": 0.0},
        "optim": {"update": "sgd", "lr": LR}, "train.epochs": 1, "train.batch_size": batch})
    return recipe, batch


class PlainTorch:
    """The plain torch loop over the recipe's batches, one step per call."""

    def __init__(self, recipe):
        from babysit.diagnostics.common import load, stream

        data = load(recipe)
        torch.manual_seed(0)
        self.model = factory(data.input_shape, data.num_classes, recipe.model.kwargs["net"])
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.X, self.y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
        self.order = torch.from_numpy(stream(recipe.seed, "batches").permutation(len(self.X)))
        self.batch = recipe.train.batch_size
        self.position = 0

    def step(self) -> float:
        """One step (batches wrap around); its wall time."""
        start = time.perf_counter()
        if self.position >= len(self.X):
            self.position = 0
        index = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(self.X[index]), self.y[index])
        loss.backward()
        self.optimizer.step()
        loss.item()
        return time.perf_counter() - start


def paired_steps(recipe, folder: Path, warmup: int):
    """One ``babysit train`` epoch with a plain torch step right after each of its steps.

    Returns ``(babysit step times, plain step times, epoch-end time)``: pairs taken
    side by side, so a busy moment of the machine hits both.
    """
    from babysit.diagnostics.train import Trainer
    from babysit.engine.solver import Callback

    plain = PlainTorch(recipe)

    class Pairs(Callback):
        def __init__(self):
            self.babysit, self.plain, self.last, self.epoch_end = [], [], None, 0.0

        def on_epoch_start(self, state):
            self.last = time.perf_counter()

        def on_step_end(self, state):   # the last callback: the Trainer's own ran before it
            self.babysit.append(time.perf_counter() - self.last)
            self.plain.append(plain.step())
            self.last = self.epoch_end = time.perf_counter()

    trainer = Trainer(recipe.with_overrides({"train.epochs": 1}), out=folder / "run.h5")
    pairs = Pairs()
    solver_run = trainer.solver.run

    def run_with_pairs(*args, callbacks=(), **kwargs):
        return solver_run(*args, callbacks=[*callbacks, pairs], **kwargs)

    trainer.solver.run = run_with_pairs
    trainer.run()
    finished = time.perf_counter()
    return pairs.babysit[warmup:], pairs.plain[warmup:], finished - pairs.epoch_end


def measure(nets, rounds: int, steps: int, warmup: int) -> dict:
    from babysit.torch.builder import configure_torch

    configure_torch()   # one thread for both sides
    results = {}
    with tempfile.TemporaryDirectory(prefix="babysit-bench-") as folder:
        folder = Path(folder)
        for net in nets:
            recipe, batch = problem(net, steps + warmup, folder)
            rows = []
            for _ in range(rounds):
                babysit, plain, epoch_end = paired_steps(recipe, folder, warmup)
                rows.append({"babysit": babysit, "torch": plain,
                             "epoch_end": epoch_end / (len(babysit) + warmup)})
            results[net] = {"batch": batch, "rounds": rows}
    return results


def render(results: dict, args) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    lines = [f"torch {torch.__version__}, 1 torch thread; {args.rounds} round(s) of {args.steps} timed "
             f"step pairs after {args.warmup} warm-up; 1-minute load average {load:.1f}", "",
             "| net | batch | plain torch step ms | babysit step ms | overhead (per-round range) | "
             "target | epoch-end work per step ms |", "|---|---|---|---|---|---|---|"]
    for net, result in results.items():
        rows = result["rounds"]
        ratios = [b / t - 1 for row in rows for b, t in zip(row["babysit"], row["torch"])]
        per_round = [statistics.median(b / t - 1 for b, t in zip(row["babysit"], row["torch"]))
                     for row in rows]
        overhead = statistics.median(ratios)
        met = "met" if overhead <= TARGET else "missed"
        title = "digits two-layer (64-50-10)" if net == DIGITS else NETS[net].title.split(",")[0]
        lines.append(f"| {title} | {result['batch']} | "
                     f"{1e3 * statistics.median(t for row in rows for t in row['torch']):.2f} | "
                     f"{1e3 * statistics.median(b for row in rows for b in row['babysit']):.2f} | "
                     f"**{100 * overhead:+.1f}%** ({100 * min(per_round):+.1f}..{100 * max(per_round):+.1f}%) | "
                     f"<= {100 * TARGET:.0f}% ({met}) | "
                     f"{1e3 * statistics.median(row['epoch_end'] for row in rows):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=f"mlp,convnet,{DIGITS}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round of 8 steps")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 1, 8
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    print(render(measure(nets, args.rounds, args.steps, args.warmup), args))


if __name__ == "__main__":
    main()
