"""PNG panels of the protocol's results: each command's figure, and doctor's summary of them.

One ``draw_<part>(ax, metrics, ...)`` per doctor part draws that part's key
picture on a matplotlib axes from its Result's metrics; the single commands'
``--plot`` figures and :func:`doctor_figure` (one panel per part that ran)
are built from them, so a part looks the same alone and in the doctor.
Matplotlib is imported only when a figure is drawn (``babysit[plot]``).
"""

from __future__ import annotations

import math

from babysit.cli.render import fmt
from babysit.cli.views.gradcheck import array_rows, worst_judged
from babysit.diagnostics.gradcheck import band

VERDICT_COLOURS = {"good": "tab:green", "too_low": "tab:blue", "unstable": "tab:orange",
                   "too_high": "tab:red"}
STATUS_COLOURS = {"pass": "tab:green", "warn": "tab:orange", "fail": "tab:red",
                  "not run": "0.5"}
BAND_COLOURS = {"excellent": "tab:green", "good": "yellowgreen", "suspicious": "tab:orange",
                "fail": "tab:red"}
# Judged errors of 0 are drawn at this floor (a log axis has no 0).
ERROR_FLOOR = 1e-12


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def draw_sanity(ax, m: dict) -> None:
    """Loss at init against the expected ln C / C-1 and the loss the init's scores
    give (the band it may deviate from that by shaded), and the loss with reg."""
    from babysit.diagnostics.sanity import allowed_deviation
    from babysit.plots import label_axes

    expected, given = m["expected_loss"], m.get("given_scores")
    names = ["at init\n(reg 0)", "expected", f"reg={fmt(m['reg_used'])}"]
    values = [m["initial_loss"], expected, m["loss_with_reg"]]
    heights = [v if _finite(v) else 0.0 for v in values]
    colours = ["tab:blue", "0.6", "tab:purple"]
    ax.bar(names, heights, color=colours)
    if _finite(given) and _finite(m.get("score_spread")):
        allowed = allowed_deviation(m.get("tolerance") or 0.0, m["score_spread"], given)
        ax.axhspan(given * (1 - allowed), given * (1 + allowed), color="tab:green", alpha=0.15,
                   label=f"the scores' loss ±{allowed:.0%}")
        ax.legend(fontsize="small", loc="upper left")
    for x, value in enumerate(values):
        ax.annotate(fmt(value), (x, heights[x]), ha="center", va="bottom", fontsize=9)
    label_axes(ax, "sanity-loss: loss at init", "", "loss", logy=all(h > 0 for h in heights))


def draw_gradcheck(ax, m: dict) -> None:
    """The judged relative error of every checked array (log scale) against the verdict bands."""
    from babysit.diagnostics.gradcheck import EXCELLENT_BAND, FAIL_BAND, WARN_BAND
    from babysit.plots import label_axes

    rows = [(label, row) for label, _, row in array_rows(m) if row.get("judged_rel_error") is not None]
    if not rows:
        ax.text(0.5, 0.5, "nothing judged", ha="center", va="center", transform=ax.transAxes)
        label_axes(ax, "gradcheck")
        return
    has_kinks = m.get("has_kinks", True)
    errors = [max(row["judged_rel_error"], ERROR_FLOOR) for _, row in rows]
    colours = [BAND_COLOURS[band(row["judged_rel_error"], has_kinks)] for _, row in rows]
    ax.barh(range(len(rows)), errors, color=colours, label="judged error (the verdict's)")
    textbook = [(row["max_rel_error"], i) for i, (_, row) in enumerate(rows)
                if _finite(row.get("max_rel_error")) and row["max_rel_error"] > 0]
    if textbook:
        ax.scatter(*zip(*textbook), marker="|", s=120, color="0.25", zorder=3,
                   label="textbook |a-n|/max(|a|,|n|)")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(ERROR_FLOOR / 2, 10)
    # kink-free models fail above the warn band: no "suspicious" band to draw
    bands = [(EXCELLENT_BAND, "excellent below"), (WARN_BAND, "suspicious above"),
             (FAIL_BAND, "fail above")] if has_kinks else \
        [(EXCELLENT_BAND, "excellent below"), (WARN_BAND, "fail above (no kinks)")]
    for limit, name in bands:
        ax.axvline(limit, color="0.3", linestyle="--", linewidth=0.8)
        ax.annotate(f"{name} {limit:g}", (limit, 0.0), xycoords=("data", "axes fraction"),
                    fontsize=7, rotation=90, ha="right", va="bottom", color="0.3")
    ax.legend(fontsize="x-small", loc="upper right")
    worst, verdict = worst_judged(m)
    label_axes(ax, f"gradcheck: worst judged error {fmt(worst)} ({verdict})",
               f"judged relative error (0 drawn at {ERROR_FLOOR:g})")
    ax.grid(True, axis="x", alpha=0.3)


def draw_overfit(ax, m: dict, curve: list | None = None) -> None:
    """Loss on the tiny set: its start, its end and the target (or the per-epoch curve)."""
    from babysit.plots import label_axes

    if curve:
        ax.plot([0] + [e for e, _, _ in curve], [m["initial_loss"]] + [v for _, v, _ in curve],
                color="tab:blue")
        xlabel = "epoch"
    else:
        ax.plot([0, m["epochs_run"]], [m["initial_loss"], m["final_loss"]], "o-", color="tab:blue")
        xlabel = "epoch (start and end)"
    ax.axhline(m["loss_target"], color="tab:green", linestyle="--", linewidth=1,
               label=f"target {fmt(m['loss_target'])}")
    positive = all(_finite(v) and v > 0 for v in (m["initial_loss"], m["final_loss"]))
    label_axes(ax, f"overfit-tiny: train acc {m['train_accuracy']:.0%} after "
                   f"{m['epochs_run']} epochs", xlabel, "loss on the tiny set", logy=positive)
    ax.legend(fontsize="small")


def layer_positions(layers: list) -> tuple:
    """``(x positions, tick labels)``: integer ticks named as the tables name the layers."""
    return list(range(len(layers))), [row["layer"] for row in layers]


def draw_layer_scale(ax, layers: list, label: str = "", key: str = "std",
                     colour: str = "tab:red") -> None:
    """``key`` (std or grad_norm) per layer output on a log axis, layers named on the x axis."""
    x, names = layer_positions(layers)
    values = [row.get(key) for row in layers]
    points = [(i, v) for i, v in zip(x, values) if _finite(v) and v > 0]
    if points:
        ax.plot(*zip(*points), "o-", color=colour, label=label or None)
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4
                  else "center", fontsize=8)


def draw_init_stats(ax, m: dict) -> None:
    """Std of every layer output at init (log scale), named as in the tables."""
    from babysit.plots import label_axes

    draw_layer_scale(ax, m["layers"])
    label_axes(ax, f"init-stats ({m['init']}): std per layer", "", "std of the output")


def draw_lr_probe(ax, m: dict, title: str = "") -> None:
    """Loss against the LR: verdicts coloured, the good range shaded, recipe/suggested marked.

    Grid: each short run's final loss. Sweep: the range test's smoothed loss,
    and the short runs (recipe's LR, suggestion) as larger points.
    """
    from babysit.plots import label_axes

    rows = m["trials"] if m["mode"] == "grid" else m.get("sweep", [])
    if not rows:
        ax.text(0.5, 0.5, m.get("note", "nothing probed"), ha="center", va="center",
                transform=ax.transAxes, wrap=True)
        return
    lrs = [t["lr"] for t in rows]
    start = rows[0]["loss_start"]
    cap = 3 * start if _finite(start) else None

    def clip(value):
        return min(value, cap) if _finite(value) and cap else (cap or 0.0)

    clipped = [clip(t["loss_end"]) for t in rows]
    ax.plot(lrs, clipped, color="0.6", linewidth=1, zorder=1)
    for verdict, colour in VERDICT_COLOURS.items():
        points = [(lr, v) for lr, v, t in zip(lrs, clipped, rows) if t["verdict"] == verdict]
        if points:
            ax.scatter(*zip(*points), color=colour, label=verdict.replace("_", " "), zorder=2,
                       s=10 if m["mode"] == "sweep" else 36)
    if m["mode"] == "sweep":
        for t in m["trials"]:
            ax.scatter([t["lr"]], [clip(t["loss_end"])], color=VERDICT_COLOURS[t["verdict"]],
                       edgecolor="black", s=60, zorder=3)
    if m["good_range"]:
        ax.axvspan(*m["good_range"], color="tab:green", alpha=0.12, label="good range")
    ax.axvline(m["recipe_lr"], color="black", linestyle="--", linewidth=1, label="recipe lr")
    if m["suggested_lr"] is not None:
        ax.axvline(m["suggested_lr"], color="tab:green", linestyle=":", linewidth=1.5,
                   label="suggested lr")
    ylabel = ("each run's final loss on the eval batch" if m["mode"] == "grid"
              else "smoothed training loss (dots: short runs' final loss)")
    label_axes(ax, title=title or f"lr-probe ({m['mode']}, {m['update']})",
               xlabel="learning rate", ylabel=ylabel + " (clipped at 3x start)", logx=True)
    ax.legend(fontsize="small")


def _draw_part(ax, command: str, part) -> None:
    m = part.metrics
    if command == "sanity-loss":
        draw_sanity(ax, m)
    elif command == "gradcheck" and "params" in m:
        draw_gradcheck(ax, m)
    elif command == "overfit-tiny":
        draw_overfit(ax, m)
    elif command == "init-stats":
        draw_init_stats(ax, m)
    elif command == "lr-probe":
        draw_lr_probe(ax, m)
    else:
        ax.text(0.5, 0.5, f"{command}: nothing to draw", ha="center", va="center",
                transform=ax.transAxes)
    # the part's status: a frame in its colour and the word in front of the title
    colour = STATUS_COLOURS.get(part.status, "0.5")
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2)
    ax.set_title(f"{part.status.upper()}  {ax.get_title()}", color=colour, fontweight="bold",
                 fontsize=10)


def doctor_figure(result):
    """One panel per part that ran, in protocol order, framed in its status colour."""
    from babysit.plots import new_figure

    parts = list(result.parts.items())
    if not parts:
        return None
    columns = min(3, len(parts))
    rows = math.ceil(len(parts) / columns)
    figure, axes = new_figure(rows, columns, width=5.2 * columns, height=4.2 * rows)
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, (command, part) in zip(flat, parts):
        _draw_part(ax, command, part)
    for ax in flat[len(parts):]:
        ax.set_visible(False)
    skipped = result.metrics.get("not_run") or []
    note = f"  (not run: {', '.join(skipped)})" if skipped else ""
    figure.suptitle(f"babysit doctor: {result.recipe}, seed {result.seed}: "
                    f"{result.status.upper()}{note}", fontsize=13, fontweight="bold")
    return figure


__all__ = ["doctor_figure", "draw_sanity", "draw_gradcheck", "draw_overfit", "draw_init_stats",
           "draw_lr_probe", "draw_layer_scale", "layer_positions"]
