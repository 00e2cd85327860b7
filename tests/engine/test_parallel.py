"""The engine's threads (babysit.engine.parallel): fixed partitions, same numbers on any thread count.

The grains are patched down so that small, fast models take the split paths
(products in blocks, im2col and col2im in image groups, element-wise spans).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from babysit.engine import parallel
from babysit.engine.builder import build_model
from babysit.engine.solver import Solver
from babysit.errors import BabysitError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_grains(monkeypatch):
    """Split everything: products from 4k multiply-adds, element-wise spans from 64 elements."""
    monkeypatch.setattr(parallel, "PRODUCT_GRAIN", 4096)
    monkeypatch.setattr(parallel, "BLOCK_ALIGN", 4)
    monkeypatch.setattr(parallel, "MIN_ALIGN", 2)
    monkeypatch.setattr(parallel, "ELEMENT_GRAIN", 64)
    monkeypatch.setattr("babysit.engine.conv.COL2IM_GROUP_BYTES", 2048)
    yield
    parallel.set_threads(None)


def test_spans_cover_the_range_on_aligned_boundaries():
    assert parallel.spans(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert parallel.spans(300, 4, align=64) == [(0, 64), (64, 128), (128, 256), (256, 300)]
    assert parallel.spans(5, 8) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]   # no empty spans
    assert parallel.spans(0, 3) == [(0, 0)]


def test_product_parts_follow_the_shapes_only():
    grain = parallel.PRODUCT_GRAIN
    assert parallel.product_parts(100, 500, 500) == 1                 # deep-tanh-init's training products
    assert parallel.product_parts(256, 3072, 512) == 4
    assert parallel.product_parts(64, 64, grain // 4096) == 2
    assert parallel.product_parts(10, grain, 10) == 1                 # nothing long enough to cut
    assert parallel.product_parts(32, 65536, 28) == 2                 # a first conv layer's weight gradient
    assert parallel.block_spans(32, 2) == [slice(0, 16), slice(16, 32)]
    assert parallel.block_spans(512, 4) == [slice(0, 128), slice(128, 256), slice(256, 384), slice(384, 512)]
    before = parallel.threads()
    parallel.set_threads(1)
    try:
        assert parallel.product_parts(256, 3072, 512) == 4
    finally:
        parallel.set_threads(None)
    assert parallel.threads() == before


def test_small_products_are_one_plain_call_and_large_ones_blocks():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 20), dtype=np.float32)
    b = rng.standard_normal((20, 40), dtype=np.float32)
    assert parallel.matmul(a, b).tobytes() == (a @ b).tobytes()
    a = rng.standard_normal((600, 300), dtype=np.float32)
    b = rng.standard_normal((300, 400), dtype=np.float32)
    results = []
    for threads in (1, 2, 3):
        parallel.set_threads(threads)
        try:
            results.append(parallel.matmul(a, b).tobytes())
            out = np.empty((400, 600), dtype=np.float32)
            results.append(parallel.matmul(b.T, a.T, out=out).T.copy().tobytes())
        finally:
            parallel.set_threads(None)
    assert parallel.product_parts(600, 300, 400) > 1
    assert len(set(results[0::2])) == 1 and len(set(results[1::2])) == 1
    np.testing.assert_allclose(np.frombuffer(results[0], np.float32).reshape(600, 400), a @ b,
                               rtol=1e-4, atol=1e-4)


def test_run_does_every_part_once_and_reraises_a_failure():
    parallel.set_threads(3)
    try:
        seen = np.zeros(50, dtype=int)

        def part(i):
            seen[i] += 1
        parallel.run(50, part)
        assert seen.tolist() == [1] * 50

        def failing(i):
            if i == 7:
                raise ValueError("part 7")
        with pytest.raises(ValueError, match="part 7"):
            parallel.run(20, failing)
    finally:
        parallel.set_threads(None)


def test_thread_count_from_the_environment(monkeypatch):
    for name in ("BABYSIT_THREADS",) + parallel.BLAS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    parallel.set_threads(None)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    parallel.set_threads(None)
    assert parallel.threads() == 1        # a user who limits BLAS limits babysit
    monkeypatch.setenv("BABYSIT_THREADS", "3")
    parallel.set_threads(None)
    assert parallel.threads() == 3        # babysit's own variable wins
    with parallel.limited(1):
        assert parallel.threads() == 1
    assert parallel.threads() == 3
    monkeypatch.setenv("BABYSIT_THREADS", "lots")
    parallel.set_threads(None)
    with pytest.raises(BabysitError, match="BABYSIT_THREADS must be a positive integer, got 'lots'"):
        parallel.threads()
    monkeypatch.delenv("BABYSIT_THREADS")
    parallel.set_threads(None)


NETS = {
    "channel-major": ([{"conv": {"filters": 6, "size": 3}}, "relu", {"maxpool": {"size": 2}},
                       {"conv": {"filters": 8, "size": 3}}, "relu", {"affine": {"out": 12}}, "relu",
                       {"affine": {"out": 5}}], (3, 16, 16)),
    "channels-last": ([{"conv": {"filters": 6, "size": 3, "stride": 2}}, "relu",
                       {"conv": {"filters": 12, "size": 3}}, "relu", {"maxpool": {"size": 2}},
                       {"affine": {"out": 5}}], (4, 15, 15)),
}


def run_model(layers, shape, dtype, threads):
    """Loss, gradients, input gradient, kink states and 3 SGD steps on ``threads`` threads."""
    parallel.set_threads(threads)
    rng = np.random.default_rng(0)
    section = {"init": "he", "reg": 1e-3, "layers": layers}
    model = build_model(section, shape, 5, rng=rng, dtype=dtype)
    X = np.round(rng.standard_normal((9,) + shape) * 2).astype(dtype)   # integers: ties and zeros
    y = rng.integers(0, 5, 9)
    loss, grads = model.loss(X, y)
    record = [np.float64(loss).tobytes(), model.input_grad.tobytes()]
    record += [grads[k].tobytes() for k in sorted(grads)]
    record += [np.asarray(s).tobytes() for s in model.kink_state() if s is not None]
    solver = Solver(model, {"update": "sgd", "lr": 0.05}, 9, np.random.default_rng(1))
    record += [np.float64(solver.step(X, y, 0.05)).tobytes() for _ in range(3)]
    record += [model.params[k].tobytes() for k in sorted(model.params)]
    return record


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_numbers_on_any_thread_count(small_grains, net, dtype):
    layers, shape = NETS[net]
    one = run_model(layers, shape, dtype, 1)
    for threads in (2, 3):
        assert run_model(layers, shape, dtype, threads) == one


@pytest.mark.parametrize("net", sorted(NETS))
def test_fused_relu_and_pooling_match_the_layers_one_by_one(small_grains, net):
    # recording runs every layer on its own; a plain pass fuses ReLU + max pooling
    layers, shape = NETS[net]
    rng = np.random.default_rng(3)
    model = build_model({"init": "he", "layers": layers}, shape, 5, rng=rng)
    assert model._relu_pools
    X = np.round(rng.standard_normal((6,) + shape) * 2).astype(np.float32)
    X[:, :, :4] = -1.0                       # windows whose maximum the ReLU clips to 0
    y = rng.integers(0, 5, 6)
    fused = model.loss(X, y)
    fused_kinks = [None if s is None else s.copy() for s in model.kink_state()]
    assert model._fused
    with model.recording():
        plain = model.loss(X, y)
        plain_kinks = model.kink_state()
    assert fused[0] == plain[0]
    assert all(fused[1][k].tobytes() == plain[1][k].tobytes() for k in plain[1])
    for a, b in zip(fused_kinks, plain_kinks):
        assert (a is None and b is None) or np.array_equal(a, b)
    assert model.forward(X).tobytes() == model.forward_from(0, X, False).tobytes()


def test_a_model_pins_blas_to_one_thread():
    # two BLAS threads change a product's last bits (and, measured on a busy
    # machine, even varied between runs): the engine computes with one
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        parallel._state["blas_pinned"] = False
        build_model({"layers": [{"affine": {"out": 3}}]}, (4,), 3, rng=np.random.default_rng(0))
        blas = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
        assert blas and all(lib["num_threads"] == 1 for lib in blas)
    parallel._state["blas_pinned"] = False   # the block restored the old limit: pin it again
    parallel.pin_blas()


def test_results_do_not_depend_on_the_thread_count_from_the_command_line(tmp_path):
    # end to end: products of 200 x 500 x 500 are cut in blocks, BLAS runs one thread
    outputs = []
    for threads in ("1", "2"):
        env = dict(os.environ, PYTHONPATH=str(ROOT), BABYSIT_THREADS=threads,
                   OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        env.pop("MKL_NUM_THREADS", None)
        path = tmp_path / f"overfit-{threads}.json"
        subprocess.run([sys.executable, "-m", "babysit", "overfit-tiny", "deep-tanh-init", "--examples", "200",
                        "--max-epochs", "3", "--set", "train.batch_size=200", "--json", str(path), "-q"],
                       cwd=ROOT, env=env, check=False, capture_output=True, timeout=300)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("update", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_every_update_rule_gives_the_same_bits_in_spans(small_grains, update):
    # each rule runs over spans of the flat parameter on the free cores: element-wise,
    # so any thread count gives the bits of one whole-array pass
    from babysit.engine.optim import make_optimizer

    def steps(threads):
        parallel.set_threads(threads)
        rng = np.random.default_rng(0)
        params = {"W": rng.standard_normal((37, 29)).astype(np.float32),
                  "b": rng.standard_normal(29).astype(np.float32)}
        optimizer = make_optimizer({"update": update, "lr": 0.01}, params)
        # the weight is cut into spans, the bias stays whole: one job of pieces
        assert len(optimizer.pieces()) == (1 if threads == 1 else 4 * threads) + 1
        for _ in range(3):
            grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
            optimizer.step(grads, 0.01)
        state = optimizer.state_dict()
        return [params[k].tobytes() for k in sorted(params)] + [
            np.asarray(state[k]).tobytes() for k in sorted(state)]

    one = steps(1)
    for threads in (2, 3):
        assert steps(threads) == one


def test_independent_products_side_by_side_give_the_bits_of_one_after_another(monkeypatch):
    # a linear layer's weight and input gradients: each product one BLAS call, as before
    rng = np.random.default_rng(4)
    x = rng.standard_normal((100, 120)).astype(np.float32)
    dz = rng.standard_normal((100, 90)).astype(np.float32)
    W = rng.standard_normal((120, 90)).astype(np.float32)
    calls = []
    monkeypatch.setattr(parallel, "run", lambda parts, fn: (calls.append(parts), [fn(i) for i in range(parts)]))
    try:
        parallel.set_threads(2)
        monkeypatch.setattr(parallel, "PRODUCT_GRAIN", 100 * 120 * 90 + 1)   # neither splits, both pair
        paired = parallel.matmuls((x.T, dz), (dz, W.T))
        assert calls == [2]
        parallel.set_threads(1)
        alone = parallel.matmuls((x.T, dz), (dz, W.T))
        assert calls == [2]
    finally:
        parallel.set_threads(None)
    assert [p.tobytes() for p in paired] == [a.tobytes() for a in alone] == \
        [np.matmul(x.T, dz).tobytes(), np.matmul(dz, W.T).tobytes()]


@pytest.mark.parametrize("tie", ["same", "transposed"])
def test_tied_parameters_update_one_after_another_as_on_one_thread(small_grains, tie):
    # a custom layer may expose one array under two names: side by side the updates race
    from babysit.engine.optim import make_optimizer

    def steps(threads):
        parallel.set_threads(threads)
        rng = np.random.default_rng(2)
        W = rng.standard_normal((40, 30)).astype(np.float32)
        params = {"W": W, "tied": W if tie == "same" else W.T, "other": np.zeros(500, np.float32)}
        optimizer = make_optimizer({"update": "adam", "lr": 0.01}, params)
        assert optimizer.pieces() == [("W", None), ("tied", None), ("other", None)]
        for _ in range(5):
            optimizer.step({k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()},
                           0.01)
        return W.tobytes()

    assert steps(2) == steps(1)
