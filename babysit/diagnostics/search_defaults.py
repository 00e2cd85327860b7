"""The search space ``babysit search`` uses when no ``--param`` is given.

The lectures' first, coarse search: the learning rate and the L2 strength,
both log-uniform, wide enough to find the region worth a finer look.

* ``optim.lr``: one decade either side of the LR that lr-probe suggests for
  the recipe (``LR_SPAN``); when lr-probe finds no good LR, around the
  recipe's own LR (the trials that blow up are aborted early anyway);
* ``model.reg``: two decades either side of the recipe's reg (``REG_SPAN``),
  or ``REG_WITHOUT_L2`` when the recipe has none.

lr-probe runs through its public function and only its documented metrics
(``suggested_lr``, ``good_range``) are read, so its rules can change freely.
"""

from __future__ import annotations

from dataclasses import dataclass

from babysit.diagnostics import common

LR_SPAN = 10.0
REG_SPAN = 100.0
REG_WITHOUT_L2 = (1e-5, 1e-1)


@dataclass(frozen=True)
class DefaultSpace:
    """The ``--param`` strings chosen, and why (one sentence per key)."""

    params: tuple
    reasons: dict
    probe: object  # the lr-probe Result it is centred on


def _g(value: float) -> str:
    return f"{value:.3g}"


def default_space(recipe, seed=None, progress=None) -> DefaultSpace:
    """lr and reg in log space, centred on what lr-probe finds (see the module doc).

    ``progress`` goes to lr-probe (its steps, one per probed LR).
    """
    from babysit.diagnostics.lr_probe import lr_probe

    recipe = common.seeded(recipe, seed)
    probe = lr_probe(recipe, progress=progress)
    suggested = probe.metrics.get("suggested_lr")
    good = probe.metrics.get("good_range")
    recipe_lr = float(common.section_dict(recipe.optim)["lr"])
    if suggested:
        centre, why = float(suggested), (f"around lr-probe's suggested {_g(suggested)} "
                                         f"(good range {_g(good[0])}..{_g(good[1])})" if good
                                         else f"around lr-probe's suggested {_g(suggested)}")
    else:
        centre, why = recipe_lr, f"around the recipe's lr {_g(recipe_lr)} (lr-probe found no good LR)"
    reg = float(common.section_dict(recipe.model).get("reg") or 0.0)
    if reg > 0:
        reg_range, reg_why = (reg / REG_SPAN, reg * REG_SPAN), f"around the recipe's reg {_g(reg)}"
    else:
        reg_range, reg_why = REG_WITHOUT_L2, "the recipe has no L2: a wide default range"
    params = (f"optim.lr=log:{_g(centre / LR_SPAN)}:{_g(centre * LR_SPAN)}",
              f"model.reg=log:{_g(reg_range[0])}:{_g(reg_range[1])}")
    return DefaultSpace(params, {"optim.lr": why, "model.reg": reg_why}, probe)


__all__ = ["default_space", "DefaultSpace", "LR_SPAN", "REG_SPAN", "REG_WITHOUT_L2"]
