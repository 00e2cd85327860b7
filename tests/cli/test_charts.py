"""Terminal charts: sparklines and line plots drawn in text (every command's curves)."""


def test_sparkline_scales_to_the_largest_bin_and_blanks_empty_bins():
    from babysit.cli.render import sparkline

    assert sparkline([0, 1, 2, 4, 8]) == " ▂▃▅█"
    assert sparkline([0, 0]) == "  "
    assert sparkline([]) == ""


def test_line_plot_fits_width_and_skips_non_finite_points():
    from babysit.cli.render import line_plot

    lrs = [10.0 ** e for e in range(-6, 1)]
    losses = [2.3, 2.2, 1.5, 0.7, 0.9, float("nan"), float("inf")]
    chart = line_plot({"loss": (lrs, losses), "start": (lrs, [2.3] * 7)}, width=64,
                      height=8, logx=True, title="loss vs lr", xlabel="lr").plain
    lines = chart.splitlines()
    assert lines[0] == "loss vs lr"
    assert max(len(line) for line in lines) <= 64
    assert "1.00e-06" in chart and "lr (log)" in chart
    assert "2.30" in lines[1] and "0.700" in chart  # y range from the finite points only
    assert "● loss" in chart and "× start" in chart


def test_line_plot_with_nothing_finite_says_so():
    from babysit.cli.render import line_plot

    assert "nothing to plot" in line_plot({"loss": ([1, 2], [float("nan")] * 2)}).plain
