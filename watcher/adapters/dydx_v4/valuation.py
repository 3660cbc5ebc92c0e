"""A dYdX v4 holding valued at the oracle price, and the price at which its subaccount becomes liquidatable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from watcher.adapters.base import ReadError
from watcher.adapters.dydx_v4.math import (
    USDC,
    _ceil_div,
    adjusted_imf_ppm,
    initial_requirement,
    is_liquidatable,
    maintenance_requirement,
    notional_quantums,
)
from watcher.adapters.dydx_v4.parse import (
    PROTOCOL,
    Holding,
    Market,
)


@dataclass(frozen=True, slots=True)
class Valued:
    """One position under the chain's math at one oracle price."""

    holding: Holding
    market: Market
    quantums: int  #: signed base quantums
    notional: int  #: signed, truncated toward zero
    mmr: int
    imr: int  #: OI-scaled
    imr_base: int  #: at the base IMF (what the indexer's freeCollateral subtracts)
    imf_effective_ppm: int


def quantums_of(size: Fraction, market: Market) -> int:
    """A served size in coins as base quantums; ReadError when it is finer than the market's atomic resolution."""
    q = size / Fraction(10) ** market.atomic_resolution
    if q.denominator != 1:
        raise ReadError(
            f"{PROTOCOL}: {market.ticker}: size {size} is finer than atomicResolution {market.atomic_resolution}"
        )
    return int(q)


def value(holding: Holding, market: Market) -> Valued:
    """Notional, maintenance and initial requirement of one position, in quantums, as the chain computes them."""
    q = quantums_of(holding.size, market)
    notional = notional_quantums(q, market.atomic_resolution, market.oracle_price)
    imf = adjusted_imf_ppm(market.imf_ppm, market.oi_lower_cap, market.oi_upper_cap, market.oi_notional)
    return Valued(
        holding,
        market,
        q,
        notional,
        maintenance_requirement(notional, market.imf_ppm, market.fraction_ppm),
        initial_requirement(notional, imf),
        initial_requirement(notional, market.imf_ppm),
        imf,
    )


def _usdc_quantums(usdc: Fraction) -> int:
    # the chain adds floor(settlement ppm / 1e6) to the balance: floor the (funding-adjusted) served balance likewise
    return (usdc * USDC).__floor__()


def _least(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Least n in [lo, hi] with pred(n), for pred monotone False->True; None when pred(hi) is False."""
    if not pred(hi):
        return None
    lo -= 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def liquidation_price(v: Valued, base: int, others_mmr: int) -> Fraction | None:
    """Oracle price (USDC per coin, on the market's search grid) at which the subaccount turns liquidatable.

    Everything but this market's price is held: `base` is USDC plus the other notionals, `others_mmr` their MMR.
    The check depends on the price only through N = floor(|q| * p * 10**(ar+6)); N - MMR(N) never falls as N grows
    (each step adds at most one quantum of MMR), so for a long the liquidatable N are those up to some N*, and for a
    short those from some N* on. The answer is the grid price nearest the safe side that still maps into that set:
    liquidatable there, and not one grid unit (10**-price_decimals) further toward safety.
    """
    m, q = v.market, v.quantums
    if q == 0:
        return None
    sign = 1 if q > 0 else -1

    def liq(n: int) -> bool:
        return is_liquidatable(base + sign * n, others_mmr + maintenance_requirement(n, m.imf_ppm, m.fraction_ppm))

    scale = abs(q) * Fraction(10) ** (m.atomic_resolution + 6)  # N = floor(scale * p)
    unit = Fraction(1, 10**m.price_decimals)
    hi = max(2 * abs(v.notional), 1)
    if sign > 0:
        # largest liquidatable N: first find a safe N above it
        while liq(hi):
            hi *= 2
            if hi > 1 << 200:
                return None  # liquidatable at every price (a 100% maintenance fraction): no boundary to report
        # from N = 1: at N = 0 the MMR may be 0, and a zero MMR is never liquidatable whatever the collateral
        first_safe = _least(lambda n: not liq(n), 1, hi)
        if first_safe is None or first_safe == 1:
            return None  # no positive notional of this position is liquidatable
        # liquidatable iff scale * p < first_safe: the largest grid price strictly below first_safe / scale
        bound = first_safe / scale / unit
        p = (_ceil_div(bound.numerator, bound.denominator) - 1) * unit
        # a grid coarser than one quantum of notional could land on N = 0: then there is no grid price to report
        return p if p > 0 and liq((scale * p).__floor__()) else None
    while not liq(hi):
        hi *= 2
        if hi > 1 << 200:
            return None
    n_star = _least(liq, 0, hi)
    assert n_star is not None
    # liquidatable iff scale * p >= n_star: the least positive grid price at or above n_star / scale
    bound = n_star / scale / unit
    steps = max(_ceil_div(bound.numerator, bound.denominator), 1)
    return steps * unit
