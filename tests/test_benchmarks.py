"""The benchmark driver's bookkeeping (no timing happens here): FLOP counts,
per-round ratios and medians, the Markdown report and the README markers."""

import math

import pytest

from benchmarks import bench_engine
from benchmarks._nets import NETS, flops, plan


def test_mlp_flops_follow_the_stated_formula():
    f = flops(NETS["mlp"])
    macs = 256 * (3072 * 512 + 512 * 512 + 512 * 10)
    first = 256 * 3072 * 512
    assert f["macs"] == macs
    assert (f["forward"], f["backward"], f["total"]) == (2 * macs, 4 * macs - 2 * first, 6 * macs - 2 * first)
    assert f["first_layer_dx"] == 2 * first


def test_convnet_plan_shapes_and_macs():
    layers = plan(NETS["convnet"])
    assert [layer.out_shape for layer in layers] == [
        (32, 32, 32), (32, 32, 32), (32, 16, 16), (64, 16, 16), (64, 16, 16), (64, 8, 8), (10,)]
    conv1 = 64 * 32 * 32 * 32 * 3 * 9
    conv2 = 64 * 64 * 16 * 16 * 32 * 9
    assert flops(NETS["convnet"])["macs"] == conv1 + conv2 + 64 * 4096 * 10


def fake_worker(library, mlp_step_s, peak=100.0):
    timing = lambda s: {"median_s": s, "mean_s": s, "min_s": s / 2, "iters": 3}  # noqa: E731
    nets = {"mlp": {"fwd_bwd": timing(mlp_step_s * 0.9), "step": timing(mlp_step_s)},
            "convnet": {"fwd_bwd": timing(0.1), "step": timing(0.11)}}
    result = {"library": library, "nets": nets, "peak_gflops": peak, "versions": {}, "threads": {"torch": 2}}
    if library == "babysit":
        result["versions"] = {"numpy": "x"}
    else:
        result["versions"] = {"torch": "y"}
    return result


def test_summary_takes_the_median_of_per_round_ratios():
    # Round 2 is a slow episode for babysit only: the pairing keeps it an outlier.
    rounds = [{"babysit": fake_worker("babysit", b), "torch": fake_worker("torch", t)}
              for b, t in [(0.02, 0.03), (0.20, 0.03), (0.03, 0.03)]]
    rows = bench_engine.summarize(rounds, ["babysit", "torch"])
    step = next(r for r in rows if r["net"] == "mlp" and r["case"] == "step")
    assert step["speed"]["median"] == pytest.approx(1.0)
    assert step["speed"]["min"] == pytest.approx(0.15)
    assert step["speed"]["max"] == pytest.approx(1.5)
    total = flops(NETS["mlp"])["total"]
    assert step["babysit"]["gflops"] == pytest.approx(total / 0.03 / 1e9)
    assert step["babysit"]["peak_fraction"] == pytest.approx(total / 0.03 / 1e9 / 100.0)
    assert math.isclose(step["babysit"]["ms"], 30.0)
    fastest = bench_engine.summarize(rounds, ["babysit", "torch"], "min")
    assert next(r for r in fastest if r["net"] == "mlp" and r["case"] == "step")["babysit"]["ms"] == \
        pytest.approx(15.0)


def test_report_marks_targets_and_works_without_torch(tmp_path):
    args = bench_engine.parse_args(["--quick"])
    rounds = [{"babysit": fake_worker("babysit", 0.05), "torch": fake_worker("torch", 0.04)}]
    report = bench_engine.render(args, rounds, ["babysit", "torch"], {}, [], "")
    mlp_step = next(line for line in report.splitlines() if line.startswith("| mlp | SGD step"))
    assert "0.80x" in mlp_step and "missed" in mlp_step
    assert "--quick" in report
    assert "computed that dLoss/dX anyway" in report   # the fake babysit results do not say they skipped it
    alone = bench_engine.render(args, [{"babysit": rounds[0]["babysit"]}], ["babysit"], {}, [],
                                "torch columns omitted: PyTorch is not installed.")
    assert "torch ms" not in alone and "PyTorch is not installed" in alone


def test_write_readme_replaces_only_the_marked_block(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"intro\n{bench_engine.START}\nold\n{bench_engine.END}\nfooter\n")
    bench_engine.write_readme("new table\n", path)
    assert path.read_text() == f"intro\n{bench_engine.START}\nnew table\n{bench_engine.END}\nfooter\n"


def test_quick_defaults_and_explicit_values():
    args = bench_engine.parse_args(["--quick", "--rounds", "3"])
    assert (args.rounds, args.iters, args.warmup, args.peak_size, args.cli_runs) == (3, 5, 2, 1024, 1)
    for bad in (["--iters", "0"], ["--nets", "mlp,resnet"], ["--threads", "-1"]):
        with pytest.raises(SystemExit):
            bench_engine.parse_args(bad)
