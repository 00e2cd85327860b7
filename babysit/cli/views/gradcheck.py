"""How a gradient check looks: shared by ``babysit gradcheck`` and ``babysit doctor``.

:func:`array_rows` lists the checked arrays in layer order, :func:`band_range`
and :func:`worst_judged` say which error the verdict used and in which band
it fell, and :func:`draw_errors` draws them on a matplotlib axes (the PNG of
``gradcheck --plot`` and a panel of ``doctor --plot``).
"""

from __future__ import annotations

from babysit.diagnostics.gradcheck import EXCELLENT_BAND, FAIL_BAND, WARN_BAND, band

VERDICT_STYLES = {"excellent": "green", "good": "green", "suspicious": "yellow", "fail": "bold red"}


def _position(name: str, order: dict) -> int:
    """The layer position of a layer or parameter name: the engine's names lead with it
    (``2.W``); a torch model's are module paths, placed by ``order`` (layer -> position,
    the order of the layer-input checks; a parameter's layer is its path's head)."""
    head = name.split(".", 1)[0]
    if head.isdigit():
        return int(head)
    return order.get(name, order.get(name.rpartition(".")[0], 0))


def array_rows(metrics) -> list:
    """(label, check, metrics of one array): layer by layer, each layer's input check
    right before its parameters, then the L2 term."""
    rows = []
    order = {layer: i + 1 for i, layer in enumerate(metrics.get("layer_inputs") or {})}
    if metrics.get("input"):
        rows.append(((0, 0), "input", "input", metrics["input"]))
    for layer, row in (metrics.get("layer_inputs") or {}).items():
        rows.append(((_position(layer, order), 0), f"{layer} input", "input", row))
    for name, row in (metrics.get("params") or {}).items():
        rows.append(((_position(name, order), 1), name, "param", row))
    rows.sort(key=lambda r: r[0])  # stable: parameters keep their order within a layer
    rows += [((0, 2), f"{name} (L2 term)", "L2 term", row)
             for name, row in (metrics.get("reg") or {}).items()]
    return [r[1:] for r in rows]


def band_range(verdict: str, has_kinks: bool) -> str:
    """The judged-error range of a verdict: ``good`` -> ``1e-07..0.0001``."""
    fail_from = FAIL_BAND if has_kinks else WARN_BAND  # kink-free models fail above 1e-4
    return {"excellent": f"< {EXCELLENT_BAND:g}", "good": f"{EXCELLENT_BAND:g}..{WARN_BAND:g}",
            "suspicious": f"{WARN_BAND:g}..{FAIL_BAND:g}", "fail": f"> {fail_from:g}"}[verdict]


def worst_judged(metrics: dict) -> tuple:
    """``(worst judged relative error, its verdict)`` over every checked array (None, None if none)."""
    rows = [row for _, _, row in array_rows(metrics) if row.get("judged_rel_error") is not None]
    if not rows:
        return None, None
    worst = max(row["judged_rel_error"] for row in rows)
    return worst, band(worst, metrics.get("has_kinks", True))
