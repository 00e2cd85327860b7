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
  from the end of the previous one, so the loop, the batch slicing, the NumPy
  views, the loss, the optimizer adapter and every per-step callback are in it.
  Epoch-end work (evaluation, layer statistics, checkpoint) is per epoch, not per
  step, and is reported separately, per step of the epoch.

Each round runs both sides (alternating which goes first) for ``--steps`` steps
after ``--warmup`` untimed ones and takes each side's median step (``--stat min``:
its fastest, steadier while other jobs load the machine); the overhead is the
median over rounds of ``babysit / torch - 1``.
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


def babysit_steps(recipe, folder: Path, warmup: int) -> tuple[list[float], float]:
    """Per-step wall times of one ``babysit train`` epoch, and its epoch-end time."""
    from babysit.diagnostics.train import Trainer
    from babysit.engine.solver import Callback

    class Clock(Callback):
        def __init__(self):
            self.times, self.last, self.epoch_end = [], None, 0.0

        def on_epoch_start(self, state):
            self.last = time.perf_counter()

        def on_step_end(self, state):
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now
            if state.last_in_epoch:
                self.epoch_end = now

    trainer = Trainer(recipe.with_overrides({"train.epochs": 1}), out=folder / "run.h5")
    clock = Clock()
    solver_run = trainer.solver.run

    def run_with_clock(*args, callbacks=(), **kwargs):   # the Trainer's callbacks, then the clock
        return solver_run(*args, callbacks=[*callbacks, clock], **kwargs)

    trainer.solver.run = run_with_clock
    trainer.run()
    finished = time.perf_counter()
    return clock.times[warmup:], finished - clock.epoch_end


def torch_steps(recipe, warmup: int) -> list[float]:
    """Per-step wall times of the plain torch loop over the same batches."""
    from babysit.diagnostics.common import load, stream

    data = load(recipe)
    torch.manual_seed(0)
    model = factory(data.input_shape, data.num_classes, recipe.model.kwargs["net"])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    order = torch.from_numpy(stream(recipe.seed, "batches").permutation(len(X)))
    batch = recipe.train.batch_size
    model.train()
    times, last = [], time.perf_counter()
    for start in range(0, len(X), batch):
        index = order[start:start + batch]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X[index]), y[index])
        loss.backward()
        optimizer.step()
        loss.item()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times[warmup:]


def measure(nets, rounds: int, steps: int, warmup: int, stat=statistics.median) -> dict:
    from babysit.torch.builder import configure_torch

    configure_torch()   # one thread for both sides
    results = {}
    with tempfile.TemporaryDirectory(prefix="babysit-bench-") as folder:
        folder = Path(folder)
        for net in nets:
            recipe, batch = problem(net, steps + warmup, folder)
            rows = []
            for r in range(rounds):
                order = ("torch", "babysit") if r % 2 == 0 else ("babysit", "torch")
                got = {}
                for side in order:
                    if side == "torch":
                        got["torch"] = stat(torch_steps(recipe, warmup))
                    else:
                        times, epoch_end = babysit_steps(recipe, folder, warmup)
                        got["babysit"] = stat(times)
                        got["epoch_end"] = epoch_end / (steps + warmup)
                rows.append(got)
            results[net] = {"batch": batch, "rounds": rows}
    return results


def render(results: dict, args) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    lines = [f"torch {torch.__version__}, 1 torch thread; {args.rounds} round(s) of {args.steps} timed "
             f"steps after {args.warmup} warm-up, {args.stat} step per side and round; 1-minute load "
             f"average {load:.1f}", "",
             "| net | batch | plain torch step ms | babysit step ms | overhead (range) | target | "
             "epoch-end work per step ms |", "|---|---|---|---|---|---|---|"]
    for net, result in results.items():
        rows = result["rounds"]
        ratios = [row["babysit"] / row["torch"] - 1 for row in rows]
        overhead = statistics.median(ratios)
        met = "met" if overhead <= TARGET else "missed"
        title = "digits two-layer (64-50-10)" if net == DIGITS else NETS[net].title.split(",")[0]
        lines.append(f"| {title} | {result['batch']} | "
                     f"{1e3 * statistics.median(r['torch'] for r in rows):.2f} | "
                     f"{1e3 * statistics.median(r['babysit'] for r in rows):.2f} | "
                     f"**{100 * overhead:+.1f}%** ({100 * min(ratios):+.1f}..{100 * max(ratios):+.1f}%) | "
                     f"<= {100 * TARGET:.0f}% ({met}) | "
                     f"{1e3 * statistics.median(r['epoch_end'] for r in rows):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=f"mlp,convnet,{DIGITS}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="each side's step time per round: its median or its fastest step")
    parser.add_argument("--quick", action="store_true", help="1 round of 8 steps")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 1, 8
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    stat = statistics.median if args.stat == "median" else min
    print(render(measure(nets, args.rounds, args.steps, args.warmup, stat), args))


if __name__ == "__main__":
    main()
