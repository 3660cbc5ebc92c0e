"""Time to liquidation at constant prices for perps: GMX v2 (borrowing and funding) and Synthetix perps v3 (funding).

GMX v2: at constant prices and open interest, a position's borrowing fee grows linearly with time (the cumulative
borrowing factor gains a constant factor per second) and a paying side's funding amount per size grows with time
(the current funding factor per second held, see watcher/adapters/gmx_v2/accrual.py); the receiving side's claimable
funding is not counted by isPositionLiquidatable. So remaining collateral only falls, the liquidatable seconds are a
ray [T, oo) and forecast.py's single search is exact. Positions in markets configuring a model that is not replayed
(a kink, exponents, adaptive funding), or whose read fees the replay does not reproduce, get no time.

Synthetix perps v3: at constant prices and skew the funding rate moves at a constant velocity (skew / skewScale *
maxFundingVelocity per day), so the funding a position accrues is quadratic in time; the account's interest (a
constant rate on locked open interest) is linear, and the maintenance margins and keeper reward depend on sizes,
prices and collateral, which are held. The margin surplus (available margin - requirement) is therefore a quadratic
in time, and its derivative is linear: it is zero at no more than one second t*, the turning point, where the sum
over positions of size * price * funding rate balances the interest charged. On each side of t* the surplus is
monotone, so the liquidatable seconds within each piece are one interval touching one of its ends. The search splits
[start, start + horizon] at t* and takes the pieces in order: a piece whose start is liquidatable answers its start;
a piece whose end is liquidatable (its start not) holds the boundary, found by an exact search over the piece; a
piece with neither end liquidatable holds none. So a dip below the requirement that recovers before the horizon
(funding turning in the account's favour) is found, and an account that funding only favours gets none. The D18
integer math rounds by a few wei per term; that can only matter when the surplus's extremum is within those few wei
of zero. The answer is checked where it is found: liquidatable at T and not at T - 1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from watcher.adapters.synthetix_perps_v3.math import D18, DAY
from watcher.adapters.synthetix_perps_v3.math import YEAR as SNX_YEAR
from watcher.model import Position
from watcher.risk import least_true

GMX_BASIS = (
    "GMX borrowing (cumulative factor + seconds x factor per second) and funding at the current funding factor per "
    "second, prices and open interest held"
)
SYNTHETIX_BASIS = (
    "Synthetix funding at constant velocity (quadratic in time, searched on each side of its turning point) and "
    "interest at the rate read, prices and skew held"
)


# --- GMX v2


def gmx_refuse(p: Position, sim: Any) -> str | None:
    """A reason no time is given: some position's read fees were not reproduced by the replayed rate model."""
    if not getattr(sim, "accrues", False):
        return (
            "not modelled: GMX borrowing and funding fees are held as read (the market configures a kink, exponents "
            "or adaptive funding, or the replay did not give the Reader's fees at the read block)"
        )
    return None


def gmx_fees_usd(sim: Any) -> int:
    """What the account's positions owe in borrowing and funding, in USD * 1e30 (GMX's unit)."""
    return sum(p.borrowing_fee_usd + p.funding_fee_amount * p.collateral_price for p in sim.positions)


# --- Synthetix perps v3


def synthetix_costs(sim: Any) -> int:
    """Interest charged minus funding accrued over all positions, D18 USD (negative while funding pays more)."""
    total = 0
    for pos in sim.positions:
        _, accrued, interest = sim.pnl(pos)
        total += interest - accrued
    return total


def synthetix_turning_point(sim: Any) -> Fraction | None:
    """The second at which the margin's time derivative is zero (funding's linear rate balances interest), if any.

    Per position (size s, price p, funding rate r(t) = r0 + v (t - L) / DAY), funding accrues at -s p r(t) /
    (1e36 DAY) per second and interest costs locked * rate / (1e18 YEAR); scaled by 1e36 DAY the derivative is
    g(t) = -sum(s p r(t)) - sum(locked) * rate * 1e18 * DAY / YEAR, linear in t with slope -sum(s p v) / DAY.
    """
    rate = sim.interest[1]
    const = Fraction(0)  #: g(t) = const + slope * t
    slope = Fraction(0)
    for pos in sim.positions:
        m, price = sim._market(pos.market_id)
        velocity = m.funding_rate(m.last_funding_time + DAY) - m.last_funding_rate
        k = pos.size * price
        slope -= Fraction(k * velocity, DAY)
        const -= k * m.last_funding_rate - Fraction(k * velocity * m.last_funding_time, DAY)
        locked = abs(pos.size) * price // D18 * m.locked_oi_ratio // D18
        const -= Fraction(locked * rate * D18 * DAY, SNX_YEAR)
    if slope == 0:
        return None
    return -const / slope


def synthetix_search(sim: Any, start: int, horizon: int) -> int | None:
    """The first liquidatable second in [start, start + horizon], the range split at the turning point."""
    cuts = []
    t_star = synthetix_turning_point(sim)
    if t_star is not None:
        cuts.append(math.floor(t_star))
    return first_liquidatable_in_pieces(sim, start, horizon, cuts)


def first_liquidatable_in_pieces(sim: Any, start: int, horizon: int, cuts: Sequence[int]) -> int | None:
    """The least liquidatable second in [start, start + horizon], where the verdict is monotone between `cuts`.

    Each piece [a, b] is searched only when b is liquidatable and a is not (a monotone piece then holds one
    boundary); the pieces share their ends, so only the first piece's start is asked on its own.
    """
    end = start + horizon

    def liq(t: int) -> bool:
        return bool(sim.at_time(t).liquidatable())

    if liq(start):
        return start
    bounds = [start, *sorted({c for c in cuts if start < c < end}), end]
    for a, b in itertools.pairwise(bounds):
        if not liq(b):
            continue  # liq(a) is False too: a monotone piece with neither end liquidatable holds none
        t = least_true(liq, _guess(sim, a, b), a + 1, b)
        if t is None or not liq(t) or liq(t - 1):
            raise AssertionError(f"time search is not at a boundary at {t}")
        return t
    return None


def _guess(sim: Any, a: int, b: int) -> int:
    """Where the surplus (margin - requirement) reaches zero on [a, b], by a secant: a start for the exact search."""
    fa = _surplus(sim, a)
    fb = _surplus(sim, b)
    if fa == fb:
        return b
    return min(max(a + (b - a) * fa // (fa - fb), a + 1), b)


def _surplus(sim: Any, t: int) -> int:
    at = sim.at_time(t)
    return int(at.available() - at.requirement())


__all__ = [
    "GMX_BASIS",
    "SYNTHETIX_BASIS",
    "first_liquidatable_in_pieces",
    "gmx_fees_usd",
    "gmx_refuse",
    "synthetix_costs",
    "synthetix_search",
    "synthetix_turning_point",
]
