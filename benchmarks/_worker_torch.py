"""Times PyTorch (CPU, float32) on the same networks in its own process; prints one JSON line.

    python -m benchmarks._worker_torch [--iters N] [--warmup W] [--nets mlp,convnet] [--profile]

The model is ``nn.Sequential`` built from ``benchmarks._nets`` (Linear, Conv2d
with the same padding, ReLU, MaxPool2d, Flatten before the first Linear of an
image net); loss ``F.cross_entropy``; update ``torch.optim.SGD``. Measured per
net: ``fwd_bwd`` = zero grads, forward, loss, backward; ``step`` = the same plus
``optimizer.step()`` and ``loss.item()`` (babysit's step returns the loss as a
float too). Torch keeps its default thread count and backends (oneDNN).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks._harness import STEP_LR, emit, peak_gflops, selected_nets, time_iterations, worker_parser
from benchmarks._nets import plan


def make_model(spec) -> nn.Sequential:
    modules = []
    for layer in plan(spec):
        options = layer.options
        if layer.kind == "affine":
            if len(layer.in_shape) > 1:
                modules.append(nn.Flatten())
            modules.append(nn.Linear(math.prod(layer.in_shape), options["out"]))
        elif layer.kind == "conv":
            size = options.get("size", 3)
            pad = options.get("pad")
            modules.append(nn.Conv2d(layer.in_shape[0], options["filters"], size,
                                     stride=options.get("stride", 1),
                                     padding=(size - 1) // 2 if pad is None else pad))
        elif layer.kind == "maxpool":
            size = options.get("size", 2)
            modules.append(nn.MaxPool2d(size, stride=options.get("stride") or size))
        elif layer.kind == "relu":
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def make_batch(spec):
    generator = torch.Generator().manual_seed(0)
    X = torch.randn((spec.batch,) + tuple(spec.input_shape), generator=generator, dtype=torch.float32)
    y = torch.randint(0, spec.num_classes, (spec.batch,), generator=generator)
    return X, y


def measure_net(spec, iters, warmup) -> dict:
    torch.manual_seed(0)
    model = make_model(spec)
    X, y = make_batch(spec)
    optimizer = torch.optim.SGD(model.parameters(), lr=STEP_LR)

    def fwd_bwd():
        model.zero_grad()
        F.cross_entropy(model(X), y).backward()

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return {"fwd_bwd": time_iterations(fwd_bwd, iters, warmup), "step": time_iterations(step, iters, warmup)}


def profile_net(spec, iters, warmup) -> None:
    """Per-op breakdown of ``iters`` SGD steps (torch.profiler, sorted by self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = make_model(spec)
    X, y = make_batch(spec)
    optimizer = torch.optim.SGD(model.parameters(), lr=STEP_LR)

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            step()
    print(f"\ntorch {spec.title}: {iters} SGD steps, ops by self CPU time (totals over all steps)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


def main() -> None:
    args = worker_parser(__doc__.splitlines()[0]).parse_args()
    nets = selected_nets(args.nets)
    if args.profile:
        for spec in nets:
            profile_net(spec, args.iters, args.warmup)
        return
    payload = {"library": "torch", "versions": {"torch": torch.__version__},
               "threads": {"torch": torch.get_num_threads()}}
    if args.peak_size:
        # Informative only: GFLOP/s fractions always use NumPy's peak.
        n = args.peak_size
        generator = torch.Generator().manual_seed(0)
        A = torch.randn((n, n), generator=generator)
        B = torch.randn((n, n), generator=generator)
        C = torch.empty((n, n))
        payload["peak_gflops"] = peak_gflops(lambda: torch.matmul(A, B, out=C), n)
        payload["peak_size"] = n
    payload["nets"] = {spec.name: measure_net(spec, args.iters, args.warmup) for spec in nets}
    emit(payload)


if __name__ == "__main__":
    main()
