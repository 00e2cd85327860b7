"""benchmarks/bench_torch_monitors runs end to end and reports what it measured (no timing asserted)."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from benchmarks import bench_torch_monitors as bench  # noqa: E402


def test_the_monitor_benchmark_pairs_babysit_and_plain_steps():
    results = bench.measure(["digits"], rounds=1, steps=3, warmup=1)
    row = results["digits"]["rounds"][0]
    assert len(row["babysit"]) == len(row["torch"]) == 14   # 15 digits batches, 1 warm-up
    assert all(t > 0 for t in row["babysit"] + row["torch"])
    table = bench.render(results, argparse.Namespace(rounds=1, steps=3, warmup=1))
    assert "| digits two-layer (64-50-10) | 100 |" in table and "<= 10%" in table
