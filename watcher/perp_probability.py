"""Liquidation probability of perpetual positions: the closed form for one driver, and the nearest point of the
boundary for several.

A perp leg has no collateral/debt boundary but a liquidation price (ours, the venue's tiers and scaling included).
With every leg on one asset, that asset's log price is the driftless Brownian motion of watcher/probability.py and
the boundary is the nearest leg's liquidation price: the same first-passage closed form at d = |ln(liquidation price /
mark)|. Several legs on one asset in a cross account share their boundary (each leg's liquidation price already holds
the others at the same price), so the nearest is the account's.

Perps on several assets (a cross account on BTC and ETH, or isolated positions on each) are liquidated where the
prices meet a boundary, not a price. The model, stated in every such estimate:
- the margin pool (the cross legs together, or one isolated leg) has an excess of margin over its requirement that
  is affine in each leg's price, every other price held: PnL is, and a requirement proportional to notional or fixed
  is. Each leg's slope is fixed by its own liquidation price, which is where the excess reaches 0 on that price
  alone, so the pool is liquidated where 1 + sum_i g_i (exp(x_i) - 1) <= 0, x_i the log move of leg i's price and
  g_i = mark / (mark - liquidation price);
- the log prices are correlated driftless Brownian motions (sigmas and correlations of the histories, as lending's);
- the probability is the first passage of the boundary's nearest points in units of the prices' covariance (design
  points, beta): P = 2 Phi(-beta / sqrt(T)) for one, exact where the boundary is flat in log prices (one leg is), an
  approximation where it curves: high where it curves round today's prices (a hedge), low where it bulges away
  (shorts); several (pools, or two shorts on coins moving apart) combine by Ditlevsen's upper bound
  (watcher/perp_boundary.py);
- a cross leg without a liquidation price of its own is weighed by its signed notional less its requirement against
  the excess its nearest cross leg with one implies.
What it leaves out: a tier crossed between now and the boundary (each leg's slope is the secant to its own liquidation
price), funding and fees accruing during the horizon, and the jumps, fat tails and changing volatility lending leaves
out too. `perp_monte_carlo` simulates the same model path by path: the tests hold the closed form against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.model import PerpLeg, Position
from watcher.perp_boundary import design_points, margin_pools, union_probability
from watcher.probability import (
    MIN_RETURNS,
    Estimate,
    History,
    Volatility,
    correlation,
    first_passage,
    realised_volatility,
)

MAX_DRIVERS = 8  #: more assets than this in one account get no figure: the search would hold the loop for long
PERP_CLOSED_FORM = "driftless GBM of the perp's price, first passage of its liquidation price (closed form)"
PERP_SEVERAL = (
    "driftless correlated GBM of the perps' prices, each margin pool's excess affine in them (slopes from each leg's "
    "liquidation price), first passage of the boundary's nearest points (closed form)"
)


def perp_driver(leg: PerpLeg) -> str:
    """The asset whose price moves a perp leg: the index token where the venue names one, else the market."""
    return str(leg.details.get("index_token") or leg.market)


def log_distance(leg: PerpLeg) -> float | None:
    """ln(liquidation price / mark) of one leg; None where no price liquidates it (or its mark is not read)."""
    liq, mark = leg.liquidation_price, leg.mark_price
    return math.log(liq / mark) if liq is not None and liq > 0 and mark > 0 else None


def perp_distance(legs: Sequence[PerpLeg]) -> float | None:
    """|ln(liquidation price / mark)| of the nearest leg; None where no price liquidates any of them."""
    out = [abs(d) for leg in legs if (d := log_distance(leg)) is not None]
    return min(out) if out else None


def perp_probability(
    p: Position,
    histories: Mapping[str, History],
    horizons: Sequence[int],
    memo: dict[tuple[str, ...], Any] | None = None,
    *,
    model: str = PERP_CLOSED_FORM,
    unit: str = "round",
    missing: Mapping[str, str] | None = None,
) -> list[Estimate]:
    """By horizon, the probability a perp position is liquidated: its one driver reaching the nearest leg's
    liquidation price, or with several drivers its margin pools' boundary.

    `model` names where the history came from in a one-driver estimate; `unit` is what one of its points is called.
    `memo`, kept for one set of histories, shares volatilities and correlations among positions; `missing` says, by
    driver, why a history is absent, for the note where the estimate needs it."""

    def each(prob: float | None, samples: int, kind: str, note: str = "") -> list[Estimate]:
        return [Estimate(h, prob, None, samples, kind, note) for h in horizons]

    if p.liquidatable:
        return each(1.0, 0, "already liquidatable")
    memo = memo if memo is not None else {}
    drivers = {i: perp_driver(leg) for i, leg in enumerate(p.perps)}
    if len(set(drivers.values())) == 1:
        distance = perp_distance(p.perps)
        if distance is None:
            return each(0.0, 0, "no price liquidates the perp legs")
        vols = _vols(p, set(drivers.values()), histories, memo, unit, missing)
        if isinstance(vols, str):
            return each(None, 0, "none", vols)
        [vol] = vols.values()
        return [
            Estimate(h, first_passage(distance, vol.sigma_annual, h), vol.sigma_annual, vol.samples, model)
            for h in horizons
        ]
    if any(_at_or_past(leg) for leg in p.perps):
        return each(1.0, 0, "already liquidatable")  # as the one-driver path reads a distance of 0
    pools = margin_pools(p.perps, drivers)
    if isinstance(pools, str):
        return each(None, 0, "none", f"perps on several assets: {pools}")
    # only the drivers a reachable pool moves with need a history: a leg no price liquidates changes nothing
    needed = sorted({d for pool in pools for d in pool.slopes})
    if len(needed) > MAX_DRIVERS:
        note = (
            f"perps on {len(needed)} assets: the boundary's search grows with the fourth power, at most {MAX_DRIVERS}"
        )
        return each(None, 0, "none", note)
    vols = _vols(p, set(needed), histories, memo, unit, missing)
    if isinstance(vols, str):
        return each(None, 0, "none", vols)
    # a pool whose prices never moved in their history never moves in the model either
    pools = [pool for pool in pools if any(vols[d].sigma_annual > 0 for d in pool.slopes)]
    if not pools:
        return each(0.0, 0, "no price liquidates the perp legs")
    needed = sorted({d for pool in pools for d in pool.slopes})
    vols = {d: vols[d] for d in needed}
    key = ("corr", *needed)
    if key not in memo:
        memo[key] = correlation([histories[d] for d in needed])
    corr = memo[key]
    cov = {
        (a, b): corr[i][j] * vols[a].sigma_annual * vols[b].sigma_annual
        for i, a in enumerate(needed)
        for j, b in enumerate(needed)
    }
    points = []
    for pool in pools:
        names = sorted(pool.slopes)
        found = design_points(pool, names, cov)
        if found is None:
            where = f"the nearest point of the {pool.name} pool's boundary was not found"
            return each(None, 0, "none", f"perps on several assets: {where}")
        points.extend(found)
    sigma = max(v.sigma_annual for v in vols.values())
    samples = min(v.samples for v in vols.values())
    note = "" if unit == "round" else f"from {unit}s"
    return [Estimate(h, union_probability(points, cov, h), sigma, samples, PERP_SEVERAL, note) for h in horizons]


def _at_or_past(leg: PerpLeg) -> bool:
    """A leg whose mark is at or past its own liquidation price."""
    liq, mark = leg.liquidation_price, leg.mark_price
    if liq is None or liq <= 0 or mark <= 0:
        return False
    return mark <= liq if leg.size > 0 else mark >= liq


def _vols(
    p: Position,
    drivers: set[str],
    histories: Mapping[str, History],
    memo: dict[tuple[str, ...], Any],
    unit: str,
    missing: Mapping[str, str] | None,
) -> dict[str, Volatility] | str:
    """Each driver's volatility, or the note naming the first market without enough history."""
    out: dict[str, Volatility] = {}
    for driver in sorted(drivers):
        if missing and driver in missing:
            return missing[driver]
        key = ("vol", driver)
        if key not in memo:
            memo[key] = realised_volatility(histories.get(driver, ()))
        vol: Volatility | None = memo[key]
        if vol is None:
            got = len(histories.get(driver, ()))
            market = next(leg.market for leg in p.perps if perp_driver(leg) == driver)
            points = f"{got} {unit}{'' if got == 1 else 's'}"
            return f"not enough price history for {market}: {points} (at least {MIN_RETURNS + 1})"
        out[driver] = vol
    return out


__all__ = [
    "MAX_DRIVERS",
    "PERP_CLOSED_FORM",
    "PERP_SEVERAL",
    "log_distance",
    "perp_distance",
    "perp_driver",
    "perp_probability",
]
