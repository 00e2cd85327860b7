"""Times the babysit engine (NumPy) in its own process; prints one JSON line.

    python -m benchmarks._worker_numpy [--iters N] [--warmup W] [--nets mlp,convnet] [--profile]

Never imports torch: its worker threads would compete with OpenBLAS's.
Measured per net: ``fwd_bwd`` = ``model.loss(X, y, input_grad=False)``
(train-mode forward, softmax loss, backward without dLoss/dX of the data, as
torch); ``step`` = ``Solver.step(X, y, lr)`` with plain SGD (the same call
every babysit command trains with). Each reports ``input_grad_skipped``. Also the NumPy float32
matmul peak that GFLOP/s figures are compared with.
"""

from __future__ import annotations

import inspect
import statistics
import time

import numpy as np

from benchmarks._harness import (STEP_LR, emit, peak_gflops, print_profile_table, selected_nets,
                                 time_iterations, worker_parser)


def make_model(spec, rng):
    from babysit.engine.builder import build_model

    return build_model(spec.model_section(), spec.input_shape, spec.num_classes, rng=rng, dtype=np.float32)


def make_batch(spec, rng):
    X = rng.standard_normal((spec.batch,) + tuple(spec.input_shape), dtype=np.float32)
    y = rng.integers(0, spec.num_classes, size=spec.batch)
    return X, y


def measure_net(spec, iters, warmup) -> dict:
    from babysit.engine.solver import Solver

    rng = np.random.default_rng(0)
    model = make_model(spec, rng)
    X, y = make_batch(spec, rng)
    # Training needs no dLoss/dX (torch skips it too); older engines always compute it.
    kwargs = {"input_grad": False} if "input_grad" in inspect.signature(model.loss).parameters else {}
    fwd_bwd = time_iterations(lambda: model.loss(X, y, **kwargs), iters, warmup)
    fwd_bwd["input_grad_skipped"] = model.input_grad is None
    solver = Solver(model, {"update": "sgd", "lr": STEP_LR}, spec.batch, np.random.default_rng([0, 1]))
    model.input_grad = None
    step = time_iterations(lambda: solver.step(X, y, STEP_LR), iters, warmup)
    step["input_grad_skipped"] = model.input_grad is None
    return {"fwd_bwd": fwd_bwd, "step": step}


def profile_net(spec, iters, warmup) -> None:
    """Median time of each layer's forward and backward, then of the loss and the SGD update."""
    from babysit.engine.optim import make_optimizer

    rng = np.random.default_rng(0)
    model = make_model(spec, rng)
    X, y = make_batch(spec, rng)
    optimizer = make_optimizer({"update": "sgd", "lr": STEP_LR}, model.params)
    first = model.layers[0]
    if getattr(first, "needs_input_grad", None) is True:
        first.needs_input_grad = False   # as in a training step: no dLoss/dX of the data
    samples = {name: ([], []) for name in model.names + ["loss", "sgd update"]}
    for it in range(warmup + iters):
        record = it >= warmup
        out = X
        for name, layer in zip(model.names, model.layers):
            start = time.perf_counter()
            out = layer.forward(out, True)
            if record:
                samples[name][0].append(time.perf_counter() - start)
        start = time.perf_counter()
        _, dout = model.loss_fn(out, y)
        if record:
            samples["loss"][0].append(time.perf_counter() - start)
        for name, layer in zip(reversed(model.names), reversed(model.layers)):
            start = time.perf_counter()
            dout = layer.backward(dout)
            if record:
                samples[name][1].append(time.perf_counter() - start)
        grads = {f"{n.split('.', 1)[0]}.{k}": layer.grads[k]
                 for n, layer in zip(model.names, model.layers) for k in layer.params}
        start = time.perf_counter()
        optimizer.step(grads, STEP_LR)
        if record:
            samples["sgd update"][1].append(time.perf_counter() - start)
    rows = []
    for name, (fwd, bwd) in samples.items():
        label = name
        if name in model.names:
            layer = model.layers[model.names.index(name)]
            shapes = " x ".join(str(tuple(v.shape)) for v in layer.params.values() if v.ndim > 1)
            label = f"{name} {shapes}".strip()
        rows.append((label, statistics.median(fwd) if fwd else 0.0, statistics.median(bwd) if bwd else 0.0))
    print_profile_table(f"babysit {spec.title} (median of {iters} iterations)", rows)


def blas_description() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:   # older numpy without mode="dicts": the name is informative only
        return "unknown"


def thread_info() -> dict:
    """BLAS's threads (pinned to 1 by the engine) and the engine's own (``babysit.engine.parallel``)."""
    info = {}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        info = {f"{p['internal_api']}": p["num_threads"] for p in threadpool_info()}
    try:
        from babysit.engine.parallel import threads
    except ImportError:   # an engine from before its own threads
        return info
    info["babysit engine"] = threads()
    return info


def main() -> None:
    args = worker_parser(__doc__.splitlines()[0]).parse_args()
    nets = selected_nets(args.nets)
    if args.profile:
        for spec in nets:
            profile_net(spec, args.iters, args.warmup)
        return
    payload = {"library": "babysit", "versions": {"numpy": np.__version__}, "blas": blas_description()}
    if args.peak_size:
        n = args.peak_size
        rng = np.random.default_rng(0)
        A = rng.standard_normal((n, n), dtype=np.float32)
        B = rng.standard_normal((n, n), dtype=np.float32)
        C = np.empty((n, n), dtype=np.float32)
        payload["peak_gflops"] = peak_gflops(lambda: np.matmul(A, B, out=C), n)
        payload["peak_size"] = n
    payload["nets"] = {spec.name: measure_net(spec, args.iters, args.warmup) for spec in nets}
    payload["threads"] = thread_info()
    emit(payload)


if __name__ == "__main__":
    main()
