"""Liquidation probability of perpetual positions: one driver, the price of the asset every perp leg is on.

A perp leg has no collateral/debt boundary but a liquidation price (ours, the venue's tiers and scaling included).
With every leg on one asset, that asset's log price is the driftless Brownian motion of watcher/probability.py and
the boundary is the nearest leg's liquidation price: the same first-passage closed form at d = |ln(liquidation price /
mark)|. Several legs on one asset in a cross account share their boundary (each leg's liquidation price already holds
the others at the same price), so the nearest is the account's. Perps on several assets are not modelled: the legs'
liquidation prices each hold the other assets still, and no one boundary exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.model import PerpLeg, Position
from watcher.probability import MIN_RETURNS, Estimate, History, Volatility, first_passage, realised_volatility

PERP_CLOSED_FORM = "driftless GBM of the perp's price, first passage of its liquidation price (closed form)"


def perp_driver(leg: PerpLeg) -> str:
    """The asset whose price moves a perp leg: the index token where the venue names one, else the market."""
    return str(leg.details.get("index_token") or leg.market)


def perp_distance(legs: Sequence[PerpLeg]) -> float | None:
    """|ln(liquidation price / mark)| of the nearest leg; None where no price liquidates any of them."""
    out = [
        abs(math.log(leg.liquidation_price / leg.mark_price))
        for leg in legs
        if leg.liquidation_price is not None and leg.liquidation_price > 0 and leg.mark_price > 0
    ]
    return min(out) if out else None


def perp_probability(
    p: Position,
    histories: Mapping[str, History],
    horizons: Sequence[int],
    memo: dict[tuple[str, ...], Any] | None = None,
    *,
    model: str = PERP_CLOSED_FORM,
    unit: str = "round",
) -> list[Estimate]:
    """By horizon, the probability a perp position's one driver reaches the nearest leg's liquidation price.

    `model` names where the history came from in the estimate; `unit` is what one of its points is called."""

    def each(prob: float | None, samples: int, kind: str, note: str = "") -> list[Estimate]:
        return [Estimate(h, prob, None, samples, kind, note) for h in horizons]

    if p.liquidatable:
        return each(1.0, 0, "already liquidatable")
    drivers = sorted({perp_driver(leg) for leg in p.perps})
    if len(drivers) > 1:
        names = ", ".join(sorted({leg.market for leg in p.perps}))
        return each(None, 0, "none", f"perps on several assets are not modelled ({names})")
    distance = perp_distance(p.perps)
    if distance is None:
        return each(0.0, 0, "no price liquidates the perp legs")
    [driver] = drivers
    memo = memo if memo is not None else {}
    key = ("vol", driver)
    if key not in memo:
        memo[key] = realised_volatility(histories.get(driver, ()))
    vol: Volatility | None = memo[key]
    if vol is None:
        got = len(histories.get(driver, ()))
        note = f"not enough price history for {p.perps[0].market}: {got} {unit}{'' if got == 1 else 's'}"
        note += f" (at least {MIN_RETURNS + 1})"
        return each(None, 0, "none", note)
    return [
        Estimate(h, first_passage(distance, vol.sigma_annual, h), vol.sigma_annual, vol.samples, model)
        for h in horizons
    ]


__all__ = ["PERP_CLOSED_FORM", "perp_distance", "perp_driver", "perp_probability"]
