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


# -- the load and cost-curve benchmarks (bookkeeping only; no timing here) ------

from benchmarks import _runs, bench_cost, bench_load  # noqa: E402


def test_children_run_without_thread_variables_unless_asked(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("BABYSIT_THREADS", "1")
    env = _runs.child_env()
    assert not set(_runs.THREAD_VARIABLES) & set(env)          # babysit's own policy is measured
    assert env["PYTHONPATH"].split(":")[0] == str(_runs.ROOT)
    assert _runs.child_env(3)["BABYSIT_THREADS"] == "3"


def test_write_section_replaces_its_markers_or_appends(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("intro\n<!-- a -->\nold\n<!-- b -->\nrest\n")
    _runs.write_section("new\n", path, "<!-- a -->", "<!-- b -->", "A")
    assert path.read_text() == "intro\n<!-- a -->\nnew\n<!-- b -->\nrest\n"
    _runs.write_section("x\n", path, "<!-- c -->", "<!-- d -->", "Cost")
    assert path.read_text().endswith("## Cost\n\n<!-- c -->\nx\n<!-- d -->\n")


def fake_run(seconds, json=b"{}", error=""):
    return {"seconds": seconds, "exit_code": 0, "error": error, "json": json}


def test_load_report_takes_per_round_ratios_and_checks_the_numbers():
    args = bench_load.parse_args(["--quick", "--recipes", "r1", "--commands", "gradcheck,doctor"])
    assert args.rounds == 1 and args.commands == ["gradcheck", "doctor"]
    results = {("r1", "gradcheck"): [{"quiet": fake_run(1.0), "loaded": fake_run(2.0)},
                                     {"quiet": fake_run(2.0), "loaded": fake_run(2.4)},
                                     {"quiet": fake_run(1.0), "loaded": fake_run(9.0)}],
               ("r1", "doctor"): [{"quiet": fake_run(10.0), "loaded": fake_run(40.0, json=b"{1}")}]}
    report = bench_load.render(args, results, ["0.1", "0.2"])
    gradcheck = next(line for line in report.splitlines() if "| gradcheck |" in line)
    assert "**2.00x** (1.20-9.00)" in gradcheck and "(met)" in gradcheck and "| yes |" in gradcheck
    doctor = next(line for line in report.splitlines() if "| doctor |" in line)
    assert "**4.00x**" in doctor and "**missed**" in doctor and "| **no** |" in doctor
    with pytest.raises(SystemExit):
        bench_load.parse_args(["--commands", "train"])


def test_cost_variants_grow_one_axis_around_the_recipe():
    base = bench_cost.BASE
    assert bench_cost.layers(1.0, 3)[::3] == [{"conv": {"filters": 16, "size": 3}},
                                               {"conv": {"filters": 32, "size": 3}},
                                               {"conv": {"filters": 64, "size": 3}},
                                               {"affine": {"out": 10, "init": {"normal": 1.0e-3}}}]
    assert len(bench_cost.configs(["width", "depth", "batch", "input"])) == 9   # the base counted once
    sets = bench_cost.overrides(bench_cost.variant("input", 64))
    assert "data.source.size=64" in sets and f"train.batch_size={base['batch']}" in sets
    # 3x3 convs at 32x32, 16x16, 8x8 plus the affine layer, per example
    assert bench_cost.macs_per_example(base) == (3 * 9 * 16 * 1024 + 16 * 9 * 32 * 256 + 32 * 9 * 64 * 64
                                                 + 64 * 16 * 10)
    assert bench_cost.slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)


def test_cost_variants_are_valid_recipes():
    from babysit.recipes import load_recipe

    for config in bench_cost.configs(list(bench_cost.AXES)):
        recipe = load_recipe(bench_cost.RECIPE, overrides=bench_cost.overrides(config))
        assert recipe.train.batch_size == config["batch"]


def test_cost_report_fits_the_growth_exponent():
    args = bench_cost.parse_args(["--quick", "--axes", "batch", "--diagnoses", "sanity-loss,gradcheck"])
    results = [(bench_cost.variant("batch", b), {"sanity-loss": [b / 32], "gradcheck": [1.0]})
               for b in bench_cost.AXES["batch"]]
    report = bench_cost.render(args, results, ["0", "0"])
    sanity = next(line for line in report.splitlines() if line.startswith("| sanity-loss"))
    assert sanity.endswith("| p = 1.00 |") and "| gradcheck | 1.00 s | 1.00 s | 1.00 s | p = 0.00 |" in report
    assert "| sum of the rows above | 2.00 s | 3.00 s | 5.00 s |" in report   # not every part: no doctor
    with pytest.raises(SystemExit):
        bench_cost.parse_args(["--axes", "height"])


def _train_record(lr, seed, val, train, exit_code, recipe="two-layer-digits"):
    return {"job": {"recipe": recipe, "axis": "lr", "value": lr, "seed": seed},
            "diverged": False, "val_accuracy": val, "train_accuracy": train,
            "exit_code": exit_code, "findings": []}


def _curve(outcomes: dict):
    """A calibration Curve from ``{lr: [outcome of seed 0, 1, 2]}``."""
    from benchmarks.calibration import truth

    records = [_train_record(lr, seed, value, 1.0, 0)
               for lr, values in outcomes.items() for seed, value in enumerate(values)]
    return truth.Curve(records, chance_level=0.1)


def test_paired_noise_cancels_what_a_seed_makes_easy_or_hard():
    # seeds 20-30 points apart at every LR; 1e-4 ends 15-20 points below the best on every seed
    curve = _curve({1e-3: [0.70, 0.95, 0.85], 1e-4: [0.55, 0.75, 0.70], 1e-2: [0.69, 0.96, 0.84]})
    assert curve.best == 1e-3
    assert curve.within_noise(1e-4)              # unpaired: the seeds' spread hides it
    assert not curve.within_noise_paired(1e-4)   # paired: below the best on every seed
    assert curve.within_noise_paired(1e-2)       # +-1 point on each seed: within noise
    assert curve.within_noise_paired(1e-3)


def test_paired_noise_keeps_a_real_tie_within_noise():
    curve = _curve({1e-3: [0.90, 0.92, 0.91], 3e-3: [0.93, 0.89, 0.91]})
    assert curve.within_noise_paired(3e-3) and curve.within_noise_paired(1e-3)


def test_held_out_seeds_run_the_lr_axis_and_the_default_gate_only():
    from benchmarks.calibration.__main__ import plan_jobs

    trainings, probes = plan_jobs(["two-layer-digits"], (3, 4))
    assert {job["seed"] for job in trainings + probes} == {3, 4}
    assert {job["axis"] for job in trainings} == {"lr"}
    assert {job["gate"] for job in probes} == {"lr-probe"}
    assert {job["options"]["mode"] for job in probes} == {"grid"}
    assert [job["value"] for job in trainings] == [job["value"] for job in probes]
    default_trainings, default_gates = plan_jobs(["two-layer-digits"], (0, 1, 2))
    assert {"lr", "reg", "init"} <= {job["axis"] for job in default_trainings}
    assert {"sanity-loss", "doctor"} <= {job["gate"] for job in default_gates}


def test_train_table_scores_the_model_on_validation_data():
    # deep-tanh-init's random labels: training accuracy 99% (the lr-probe
    # tables' outcome there), validation at chance on every LR. No run is "near
    # the best" (the best is at chance), so train exiting 1 on all of them is
    # right; an exit 0 is a miss.
    from benchmarks.calibration import score

    records = {f"{lr}-{seed}": _train_record(lr, seed, 0.11, 0.99, int(seed != 2), "deep-tanh-init")
               for lr in (1e-3, 1e-2) for seed in range(3)}
    table, notes = score.train_table(records)
    assert "| deep-tanh-init | 6 | 0/0 | 4/6 | 0/0 |" in table
    assert len(notes["misses"]) == 2 and all("ended at chance, exit 0" in m for m in notes["misses"])
    # a learnable task: the runs near the best validation accuracy must pass
    records = {f"{lr}-{seed}": _train_record(lr, seed, val, 1.0, 1)
               for lr, val in ((1e-3, 0.97), (1e-2, 0.60)) for seed in range(3)}
    table, notes = score.train_table(records)
    assert "| two-layer-digits | 6 | 3/3 | 0/0 | 3/3 |" in table
    assert sum("near the best, exit 1" in m for m in notes["misses"]) == 3


def test_a_run_far_below_the_best_is_a_bad_case_even_at_an_lr_within_noise():
    # 0.1's seeds spread widely (96%, 70%, 97%): its mean is within noise of the
    # best, but seed 1's run ended 27 points below it. The criteria ask the gate
    # to fail that run, so failing it is a hit, not a "good LR failed".
    from benchmarks.calibration import score

    outcomes = {0.01: [0.97, 0.97, 0.97], 0.1: [0.96, 0.70, 0.97]}
    truth_records = {f"{lr}-{seed}": _train_record(lr, seed, value, 1.0, 0)
                     for lr, values in outcomes.items() for seed, value in enumerate(values)}
    gate_records = {f"{lr}-{seed}": {
        "job": {"gate": "lr-probe", "recipe": "two-layer-digits", "seed": seed, "value": lr,
                "options": {"mode": "grid"}},
        "exit_code": int(lr == 0.1 and seed == 1), "metrics": {"suggested_lr": 0.03}}
        for lr in outcomes for seed in range(3)}
    table, notes = score.lr_probe_table(truth_records, gate_records)
    row = next(line for line in table.splitlines() if "| grid |" in line)
    # good passed 5/5 (seed 1 at 0.1 is not among them), bad failed 1/1
    assert "| grid | 5/5 | 5/5 | 1/1 | 1/1 |" in row
    assert notes["misses"] == []


def test_the_replayed_grid_gate_is_the_real_one():
    # calibration's replay records every lattice LR's short run once and replays
    # lr-probe's walk and verdicts on the records: it must give the real gate's
    # answer (a 2-epoch two-layer-digits: 30 training steps, 20-step short runs)
    from babysit.diagnostics.lr_probe import lr_probe
    from babysit.recipes import load_recipe
    from benchmarks.calibration import replay

    overrides = {"train.epochs": 2}
    record = replay.run_short_runs({"kind": "short-runs", "recipe": "two-layer-digits", "seed": 0,
                                    "overrides": overrides})
    assert (record["steps"], record["horizon"]) == (20, 30) and len(record["runs"]) == 33
    long_runs = 0
    for lr in (1e-3, 0.0316, 0.316, 3.16):   # recorded lattice points
        real = lr_probe(load_recipe("two-layer-digits", overrides={**overrides, "optim.lr": lr}), seed=0)
        replayed = replay.replay_gate(record, lr)
        assert replayed["exit_code"] == int(real.failed()), lr
        assert replayed["metrics"]["good_range"] == real.metrics["good_range"], lr
        assert sorted(c for _, c, _ in replayed["findings"]) == sorted(f.code for f in real.findings)
        long_runs += real.metrics["long_run"] is not None
    assert long_runs   # the long run is replayed too


def test_seed_conflict_table_counts_the_misses_no_seed_stable_gate_can_avoid():
    # 0.1 trains well on seeds 0 and 2 and badly on seed 1: the criteria ask
    # "pass" twice and "fail" once, so one verdict for every seed misses at
    # least one run there. The gate passing 0.1 everywhere makes exactly that
    # forced miss; failing the best LR 0.01 on seed 2 is a miss of its own.
    from benchmarks.calibration import score

    outcomes = {0.01: [0.97, 0.97, 0.97], 0.1: [0.96, 0.70, 0.97], 1.0: [0.10, 0.10, 0.10]}
    truth_records = {f"{lr}-{seed}": _train_record(lr, seed, value, 1.0, 0)
                     for lr, values in outcomes.items() for seed, value in enumerate(values)}
    failing = {(0.01, 2)} | {(1.0, seed) for seed in range(3)}
    gate_records = {f"{lr}-{seed}": {
        "job": {"gate": "lr-probe", "recipe": "two-layer-digits", "seed": seed, "value": lr,
                "options": {"mode": "grid"}},
        "exit_code": int((lr, seed) in failing), "metrics": {"suggested_lr": 0.03}}
        for lr in outcomes for seed in range(3)}
    curve = score.curves_by(truth_records, "lr")["two-layer-digits"]
    assert [score.required_verdicts(curve, seed, 0.1, "unpaired") for seed in range(3)] == \
        ["pass", "fail", "pass"]
    assert score.required_verdicts(curve, 0, 1.0, "own seed") == "fail"
    table = score.seed_conflict_table(truth_records, gate_records)
    # per view: 1 LR the seeds disagree on, 1 forced miss, 2 misses of which 1 at that LR
    assert "| two-layer-digits | 1 | 1 | 2 (1) | 1 | 1 | 2 (1) |" in table
    assert table.splitlines()[-1] == "| all | 1 | 1 | 2 (1) | 1 | 1 | 2 (1) |"


def test_seed_table_tells_a_verdict_that_flips_from_a_warning_that_does():
    # doctor's exit code is the gate; a warning on some seeds only is listed as
    # such, naming the warning and the seeds, not as a verdict that changed
    from benchmarks.calibration import score

    def record(recipe, seed, status, exit_code, findings=()):
        return {"job": {"gate": "doctor", "recipe": recipe, "seed": seed}, "status": status,
                "exit_code": exit_code, "findings": [["lr-probe", *f] for f in findings]}

    warn = [("lr_marginal", "warn")]
    records = {f"a{seed}": record("a", seed, "warn" if seed != 2 else "pass", 0,
                                  warn if seed != 2 else ()) for seed in range(4)}
    records.update({f"b{seed}": record("b", seed, "fail" if seed else "pass", int(seed > 0),
                                       [("lr_too_low", "fail")] if seed else ()) for seed in range(2)})
    table, info = score.seed_table(records)
    assert "| a | - | pass x1, warn x3 | - | pass (exit 0) |" in table
    assert info["misses"] == [
        "a doctor: exit code 0 on every seed, but the warning lr_marginal on 3 of 4 (seeds 0, 1, 3)",
        "b doctor: ['fail', 'pass'] across seeds", "b: a healthy recipe's doctor failed on some seed"]
