"""How a run log looks: shared by ``babysit train`` (after training) and ``babysit report``.

:func:`render_run` prints the header, summary, per-epoch table and terminal
curves of a :class:`babysit.store.RunLog`, and for an ensemble run
(``train --ensemble``) the comparison and the members; :func:`run_figure` is its PNG.
"""

from __future__ import annotations

import math

import numpy as np
from rich import box
from rich.table import Table
from rich.text import Text

from babysit.cli.render import fitted_tables, fmt, line_plot, metrics_table, percent

MAX_EPOCH_ROWS = 30
# A run log's status (RunLog.status) -> style of its status line; others are yellow.
RUN_STATUS_STYLES = {"finished": "green", "interrupted": "yellow", "diverged": "bold red"}

def render_run(console, log) -> None:
    """Header, summary, per-epoch table and terminal curves of a run log."""
    attrs = log.attrs
    epochs = log.history.get("epoch", {})
    header = Text(f"Run log {log.path}", style="bold")
    header.append(f"  {attrs.get('recipe_path') or log.name}, seed {attrs.get('seed')}", style="dim")
    console.print(header)
    console.print(status_note(log))
    if len(epochs.get("epoch", [])) == 0:
        console.print(Text("no epoch finished yet", style="yellow"))
        return
    console.print(summary_table(log))
    for table in epoch_tables(log, console.width):
        console.print(table)
    for chart in curves(log, width=min(72, console.width)):
        console.print(chart)
    if log.ensemble is not None and log.ensemble.comparison:
        console.print(ensemble_table(log.ensemble.comparison))
        console.print(ensemble_gain(log.ensemble.comparison))
        console.print(members_table(log.ensemble.comparison))


def ensemble_table(comparison: dict) -> Table:
    """Validation accuracy: the ensemble next to the single models, their Polyak averages
    and their checkpoint ensembles (best member and mean over members)."""
    count = comparison["members"]
    table = Table(title=f"Ensemble of {count} model{'s' if count != 1 else ''}: validation accuracy",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("", "best member", "mean over members"):
        table.add_column(name, justify="left" if not name else "right", no_wrap=True)
    best = comparison["best_member"]
    table.add_row("final weights", f"{percent(comparison['single']['best'])} (member {best})",
                  percent(comparison["single"]["mean"]))
    table.add_row(f"Polyak average (beta {fmt(comparison['polyak_beta'])})",
                  percent(comparison["polyak"]["best"]), percent(comparison["polyak"]["mean"]))
    table.add_row(f"checkpoint ensemble (last {comparison['checkpoint_ensemble']} epochs)",
                  percent(comparison["checkpoints"]["best"]), percent(comparison["checkpoints"]["mean"]))
    used = comparison["used"]
    table.add_row(Text(f"ensemble of {used} member{'s' if used != 1 else ''}", style="bold"),
                  Text(percent(comparison["val_accuracy"]), style="bold"), "")
    return table


def ensemble_gain(comparison: dict) -> Text:
    gain = comparison["gain_points"]
    return Text(f"ensemble gain: {_signed(gain)} points over the best member, "
                f"{_signed(comparison['gain_points_over_mean'])} over the mean member",
                style="green" if gain is not None and math.isfinite(gain) and gain > 0 else "")


def members_table(comparison: dict) -> Table:
    """One row per member: seed, status and its validation accuracies."""
    table = Table(title="Members: validation accuracy of the final weights, the best epoch, the "
                        "Polyak average and the last K checkpoints", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for name in ("#", "seed", "status", "epochs", "final", "best", "Polyak",
                 f"last {comparison['checkpoint_ensemble']}"):
        table.add_column(name, justify="right", no_wrap=True)
    for index, member in enumerate(comparison["per_member"]):
        table.add_row(str(index), fmt(member["seed"]), Text(member["status"]), fmt(member["epochs_run"]),
                      percent(member["val_accuracy"]), percent(member["best_val_accuracy"]),
                      percent(member["average_val_accuracy"]), percent(member["checkpoint_val_accuracy"]))
    return table


def _signed(points) -> str:
    return "-" if points is None or not math.isfinite(points) else f"{points:+.2f}"


def status_note(log) -> Text:
    attrs = log.attrs
    status = log.status
    done = f"{attrs.get('epochs_run', 0)} of {attrs.get('epochs', '?')} epochs, " \
           f"{attrs.get('iterations', 0)} iterations"
    note = Text(f"{status}: {done}", style=RUN_STATUS_STYLES.get(status, "yellow"))
    if log.ensemble is not None:
        note.append(f" (the first of {log.ensemble.attrs.get('members', '?')} ensemble members; "
                    f"{len(log.ensemble.members)} stored)", style="dim")
    elif status == "interrupted":
        note.append(f"; continue with `babysit train --resume {log.path}`", style="dim")
    return note


def summary_table(log) -> Table:
    epochs = log.history["epoch"]
    best = log.checkpoints.get("best")
    rows = [("final train loss", fmt(epochs["train_loss"][-1])),
            ("train accuracy", percent(epochs["train_accuracy"][-1])),
            ("val accuracy", percent(epochs["val_accuracy"][-1]))]
    if best is not None:
        rows.append(("best val accuracy", f"{percent(best.attrs.get('val_accuracy'))} "
                                          f"(epoch {best.attrs.get('epoch')})"))
    stored = (log.result or {}).get("metrics", {})
    if stored.get("average_val_accuracy") is not None:
        rows.append(("Polyak average val accuracy", percent(stored["average_val_accuracy"])))
    rows.append(("checkpoints", ", ".join(sorted(log.checkpoints))))
    return metrics_table(rows, title="Summary")


def epoch_rows(count: int, limit: int = MAX_EPOCH_ROWS) -> list[int]:
    """Which epochs to list: all of them, or an even sample that keeps the first and last."""
    if count <= limit:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, limit).round().astype(int).tolist()))


def epoch_tables(log, width: int = 200) -> list[Table]:
    """One row per epoch: lr, losses, accuracies and the monitors' worst values.

    Two-line headers keep the columns as narrow as their numbers; a terminal
    narrower than that gets the monitors in a second table (see
    :func:`babysit.cli.render.fitted_tables`).
    """
    epochs = log.history["epoch"]
    ratios = log.history.get("monitors", {}).get("update_ratio", {})
    layers = log.history.get("layers", {})
    count = len(epochs["epoch"])
    columns = [(name, "right") for name in ("epoch", "lr", "train\nloss", "val\nloss", "train\nacc",
                                            "val\nacc", "max\nupdate/W", "dead", "satu-\nrated")]
    rows = [[fmt(int(epochs["epoch"][i])), fmt(epochs["lr"][i]), fmt(epochs["train_loss"][i]),
             fmt(epochs["val_loss"][i]), percent(epochs["train_accuracy"][i]),
             percent(epochs["val_accuracy"][i]), _ratio_cell(ratios, i),
             _worst(layers, "dead", i), _worst(layers, "saturated", i)]
            for i in epoch_rows(count)]
    return fitted_tables(columns, rows, width, keep=1, title="Per epoch", box=box.SIMPLE_HEAD,
                         pad_edge=False)


def _ratio_cell(ratios: dict, i: int) -> Text:
    """Largest update/weight ratio of the epoch, red outside the healthy band."""
    from babysit.diagnostics.train import UPDATE_RATIO_HIGH, UPDATE_RATIO_LOW

    values = [float(v[i]) for v in ratios.values() if len(v) > i and math.isfinite(v[i])]
    if not values:
        return Text("-", style="dim")
    worst = max(values)
    bad = worst > UPDATE_RATIO_HIGH or min(values) < UPDATE_RATIO_LOW
    return Text(fmt(worst), style="red" if bad else "")


def _worst(layers: dict, key: str, i: int) -> str:
    values = [float(stats[key][i]) for stats in layers.values()
              if key in stats and len(stats[key]) > i and math.isfinite(stats[key][i])]
    return percent(max(values)) if values else "-"


def curves(log, width: int = 72) -> list[Text]:
    """Terminal charts: loss per iteration (a diverged run is clipped) and accuracies per epoch."""
    from babysit.diagnostics.curves import smooth

    loss = np.asarray(log.history.get("iteration", {}).get("loss", []), dtype=np.float64)
    epochs = log.history["epoch"]
    charts = []
    if len(loss):
        per_epoch = max(1, int(log.attrs.get("iterations_per_epoch") or 1))
        x = np.arange(1, len(loss) + 1) / per_epoch
        finite = loss[np.isfinite(loss)]
        if len(loss) >= 20 and len(finite) == len(loss):
            smoothed = smooth(loss)
            series, title = {"loss": (x[len(x) - len(smoothed):], smoothed)}, "Training loss (smoothed)"
        else:
            series, title = {"loss": (x, loss)}, "Training loss"
        # A diverged run would squash the rest of the curve: clip at 3x the start.
        ylim = (float(finite.min()), 3.0 * float(finite[0])) if len(finite) else None
        charts.append(line_plot(series, width=width, title=title, xlabel="epoch", ylim=ylim))
    accuracy = {"train": (epochs["epoch"], epochs["train_accuracy"])}
    if np.any(np.isfinite(epochs["val_accuracy"])):
        accuracy["val"] = (epochs["epoch"], epochs["val_accuracy"])
    charts.append(line_plot(accuracy, width=width, title="Accuracy", xlabel="epoch", height=10))
    return charts


def run_figure(log, log_loss: bool = False):
    """PNG: losses, accuracies and update/weight ratios of a run log.

    Left: training loss per iteration (raw and smoothed) with the validation
    loss per epoch (log scale with ``log_loss``). Middle: train and val
    accuracy per epoch. Right: ``||lr*update|| / ||W||`` per weight per epoch,
    on a log scale, the lecture's ~1e-3 marked and the healthy band shaded.
    """
    from babysit.diagnostics.curves import smooth
    from babysit.diagnostics.train import UPDATE_RATIO_HIGH, UPDATE_RATIO_LOW
    from babysit.plots import label_axes, new_figure

    loss = np.asarray(log.history.get("iteration", {}).get("loss", []), dtype=np.float64)
    epochs = log.history.get("epoch", {})
    if not len(loss):
        return None
    figure, (loss_ax, acc_ax, ratio_ax) = new_figure(1, 3, width=15, height=4.4)
    per_epoch = max(1, int(log.attrs.get("iterations_per_epoch") or 1))
    x = np.arange(1, len(loss) + 1) / per_epoch
    loss_ax.plot(x, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="train (per iteration)")
    if len(loss) >= 20 and np.all(np.isfinite(loss)):
        smoothed = smooth(loss)
        loss_ax.plot(x[len(x) - len(smoothed):], smoothed, color="tab:blue", label="train (smoothed)")
    if len(epochs.get("epoch", [])) and np.any(np.isfinite(epochs["val_loss"])):
        loss_ax.plot(epochs["epoch"], epochs["val_loss"], "o-", color="tab:orange", label="val")
    positive = bool(np.all(loss[np.isfinite(loss)] > 0))
    label_axes(loss_ax, "loss", "epoch", "loss" + (" (log)" if log_loss and positive else ""),
               logy=log_loss and positive)
    loss_ax.legend(fontsize="small")
    if len(epochs.get("epoch", [])):
        acc_ax.plot(epochs["epoch"], epochs["train_accuracy"], "o-", label="train")
        acc_ax.plot(epochs["epoch"], epochs["val_accuracy"], "o-", label="val")
        acc_ax.legend(fontsize="small")
    label_axes(acc_ax, "accuracy", "epoch", "accuracy")
    ratios = log.history.get("monitors", {}).get("update_ratio", {})
    ratio_ax.axhspan(UPDATE_RATIO_LOW, UPDATE_RATIO_HIGH, color="tab:green", alpha=0.08,
                     label=f"healthy {UPDATE_RATIO_LOW:g}..{UPDATE_RATIO_HIGH:g}")
    ratio_ax.axhline(1e-3, color="tab:green", linestyle="--", linewidth=1.2, label="~1e-3 (lecture)")
    for name, values in ratios.items():
        values = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(values) & (values > 0)
        if np.any(keep):
            ratio_ax.plot(np.asarray(epochs["epoch"])[:len(values)][keep], values[keep], "o-",
                          markersize=3, label=name)
    label_axes(ratio_ax, "update/weight ratio ||lr*update|| / ||W||", "epoch", "ratio (log)",
               logy=True)
    ratio_ax.legend(fontsize="x-small", ncol=2)
    figure.suptitle(f"{log.name}: {log.status}, {log.attrs.get('epochs_run', 0)} of "
                    f"{log.attrs.get('epochs', '?')} epochs", fontweight="bold")
    return figure
