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
- the probability is the first passage of the boundary's nearest point in units of the prices' covariance (the
  design point, beta): P = 2 Phi(-beta / sqrt(T)), exact where the boundary is flat in log prices (one leg is), an
  approximation where it curves (a hedge of two assets bends it); the pools' probabilities add up, capped at 1, which
  errs high where they move together.
What it leaves out: a tier crossed between now and the boundary (each leg's slope is the secant to its own liquidation
price), funding and fees accruing during the horizon, and the jumps, fat tails and changing volatility lending leaves
out too. `perp_monte_carlo` simulates the same model path by path: the tests hold the closed form against it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watcher.model import PerpLeg, Position
from watcher.probability import (
    MIN_RETURNS,
    YEAR,
    Estimate,
    History,
    Volatility,
    cholesky,
    correlation,
    first_passage,
    realised_volatility,
)

PERP_CLOSED_FORM = "driftless GBM of the perp's price, first passage of its liquidation price (closed form)"
PERP_SEVERAL = (
    "driftless correlated GBM of the perps' prices, each margin pool's excess affine in them (slopes from each leg's "
    "liquidation price), first passage of the boundary's nearest point (closed form)"
)
PERP_MONTE_CARLO = (
    "driftless correlated GBM of the perps' prices, each margin pool's excess affine in them (Monte Carlo, {paths} "
    "paths x {steps} steps)"
)


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
    memo = memo if memo is not None else {}
    vols: dict[str, Volatility] = {}
    for driver in drivers:
        key = ("vol", driver)
        if key not in memo:
            memo[key] = realised_volatility(histories.get(driver, ()))
        vol: Volatility | None = memo[key]
        if vol is None:
            got = len(histories.get(driver, ()))
            market = next(leg.market for leg in p.perps if perp_driver(leg) == driver)
            note = f"not enough price history for {market}: {got} {unit}{'' if got == 1 else 's'}"
            return each(None, 0, "none", note + f" (at least {MIN_RETURNS + 1})")
        vols[driver] = vol
    if len(drivers) > 1:
        return _several(p, drivers, vols, histories, horizons, memo, unit)
    distance = perp_distance(p.perps)
    if distance is None:
        return each(0.0, 0, "no price liquidates the perp legs")
    vol = vols[drivers[0]]
    return [
        Estimate(h, first_passage(distance, vol.sigma_annual, h), vol.sigma_annual, vol.samples, model)
        for h in horizons
    ]


@dataclass(frozen=True, slots=True)
class Pool:
    """One margin pool: where 1 + sum over drivers of slope * (exp(x) - 1) reaches 0, the pool is liquidated."""

    name: str  #: "cross", or the isolated leg's market
    slopes: dict[str, float]  #: by driver, the sum of its legs' g = mark / (mark - liquidation price)

    def excess(self, moves: Mapping[str, float]) -> float:
        """The pool's margin excess after the log moves, as a fraction of today's (0 at the boundary)."""
        return 1.0 + sum(g * math.expm1(moves.get(d, 0.0)) for d, g in self.slopes.items())

    def reachable(self) -> bool:
        """Whether any prices liquidate it: a short's excess falls without end, longs' only by their sum."""
        return any(g < 0 for g in self.slopes.values()) or sum(self.slopes.values()) > 1.0


def margin_pools(legs: Sequence[PerpLeg]) -> list[Pool] | str:
    """The position's margin pools with each driver's slope; a note where a cross leg has no liquidation price.

    A cross leg without one cannot be weighed: its price alone never liquidates the account, which bounds its slope
    but does not fix it. An isolated leg without one is a pool no price liquidates, and is left out."""
    cross: dict[str, float] = {}
    pools: list[Pool] = []
    for leg in legs:
        liq, mark = leg.liquidation_price, leg.mark_price
        if liq is None or liq <= 0 or mark <= 0:
            if leg.margin_mode != "isolated":
                return f"{leg.market} has no liquidation price to weigh it by in the cross account"
            continue
        g = float(mark / (mark - liq)) if liq != mark else math.inf
        if leg.margin_mode == "isolated":
            pools.append(Pool(leg.market, {perp_driver(leg): g}))
        else:
            cross[perp_driver(leg)] = cross.get(perp_driver(leg), 0.0) + g
    if cross:
        pools.insert(0, Pool("cross", cross))
    return [pool for pool in pools if pool.reachable()]


def design_distance(pool: Pool, cov: Mapping[tuple[str, str], float]) -> float:
    """beta: the distance from today's prices to the nearest point of the pool's boundary, in units of the prices'
    annual covariance (x' C^-1 x at the nearest x), found by Hasofer-Lind-Rackwitz-Fiessler iteration."""
    names = list(pool.slopes)
    x = dict.fromkeys(names, 0.0)
    beta = math.inf
    for _ in range(200):
        f = pool.excess(x)
        grad = {d: pool.slopes[d] * math.exp(x[d]) for d in names}
        c_grad = {a: sum(cov[a, b] * grad[b] for b in names) for a in names}
        norm2 = sum(grad[a] * c_grad[a] for a in names)
        if norm2 <= 0:
            return math.inf
        lam = (sum(grad[a] * x[a] for a in names) - f) / norm2
        x = {a: max(-30.0, min(30.0, lam * c_grad[a])) for a in names}
        # at the fixed point x = lam C grad, so x' C^-1 x = lam^2 grad' C grad: no inverse of C is needed
        new = abs(lam) * math.sqrt(norm2)
        if abs(new - beta) < 1e-12 * max(1.0, new) and abs(pool.excess(x)) < 1e-9:
            return new
        beta = new
    return beta


def _covariance(
    drivers: Sequence[str], vols: Mapping[str, Volatility], histories: Mapping[str, History], memo: dict
) -> dict[tuple[str, str], float]:
    key = ("corr", *drivers)
    if key not in memo:
        memo[key] = correlation([histories[d] for d in drivers])
    corr = memo[key]
    return {
        (a, b): corr[i][j] * vols[a].sigma_annual * vols[b].sigma_annual
        for i, a in enumerate(drivers)
        for j, b in enumerate(drivers)
    }


def _several(
    p: Position,
    drivers: Sequence[str],
    vols: Mapping[str, Volatility],
    histories: Mapping[str, History],
    horizons: Sequence[int],
    memo: dict,
    unit: str,
) -> list[Estimate]:
    samples = min(v.samples for v in vols.values())
    sigma = max(v.sigma_annual for v in vols.values())
    pools = margin_pools(p.perps)
    if isinstance(pools, str):
        return [Estimate(h, None, None, 0, "none", f"perps on several assets: {pools}") for h in horizons]
    if not pools:
        return [Estimate(h, 0.0, None, samples, "no price liquidates the perp legs") for h in horizons]
    cov = _covariance(drivers, vols, histories, memo)
    betas = [design_distance(pool, cov) for pool in pools]
    note = "" if unit == "round" else f"from {unit}s"
    return [
        # first passage of a unit-variance Brownian motion to beta: the distance is already in sigma units
        Estimate(h, min(1.0, sum(first_passage(b, 1.0, h) for b in betas)), sigma, samples, PERP_SEVERAL, note)
        for h in horizons
    ]


def perp_monte_carlo(
    legs: Sequence[PerpLeg],
    vols: Mapping[str, float],
    corr: Sequence[Sequence[float]],
    horizon_s: float,
    *,
    paths: int = 4000,
    steps: int = 48,
    seed: int = 0,
) -> tuple[float, float]:
    """(probability, its standard error) that any margin pool of `legs` reaches its boundary within the horizon,
    over correlated paths of the drivers' log prices (`vols` by driver, in the order of `corr`'s rows).

    Between steps the crossing is corrected with a Brownian bridge on each pool's excess, linearised over the step."""
    pools = margin_pools(legs)
    if isinstance(pools, str):
        raise ValueError(pools)
    names = list(vols)
    low = cholesky([list(r) for r in corr])
    dt = horizon_s / YEAR / steps
    scale = [vols[a] * math.sqrt(dt) for a in names]
    cov = {(a, b): corr[i][j] * vols[a] * vols[b] * dt for i, a in enumerate(names) for j, b in enumerate(names)}
    rng = random.Random(seed)
    hits = 0.0
    for _ in range(paths):
        x = dict.fromkeys(names, 0.0)
        before = [pool.excess(x) for pool in pools]
        survive = 1.0
        for _ in range(steps):
            z = [rng.gauss(0.0, 1.0) for _ in names]
            step_var = [
                sum(pool.slopes.get(a, 0.0) * math.exp(x[a]) * pool.slopes.get(b, 0.0) * math.exp(x[b]) * cov[a, b]
                    for a in names for b in names)
                for pool in pools
            ]  # fmt: skip
            for i, a in enumerate(names):
                x[a] += scale[i] * sum(low[i][k] * z[k] for k in range(i + 1))
            after = [pool.excess(x) for pool in pools]
            if min(after) <= 0:
                survive = 0.0
                break
            for f0, f1, v in zip(before, after, step_var, strict=True):
                if v > 0:
                    survive *= 1.0 - math.exp(-2.0 * f0 * f1 / v)
            before = after
        hits += 1.0 - survive
    prob = hits / paths
    return prob, math.sqrt(max(prob * (1 - prob), 0.0) / paths)


__all__ = [
    "PERP_CLOSED_FORM",
    "PERP_MONTE_CARLO",
    "PERP_SEVERAL",
    "Pool",
    "design_distance",
    "margin_pools",
    "perp_distance",
    "perp_driver",
    "perp_monte_carlo",
    "perp_probability",
]
