"""Hyperliquid's tiered maintenance margin and liquidation prices, replayed exactly in micro-USD."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from watcher.adapters.base import ReadError
from watcher.adapters.hyperliquid.parse import (
    USD,
    Market,
    PerpPosition,
)
from watcher.margin import Tier, isolated_liquidation_price
from watcher.model import WAD


def _tier_index(notional: Fraction, tiers: Sequence[Tier]) -> int:
    """Index of the tier a (micro-USD) notional falls in."""
    index = 0
    for i, t in enumerate(tiers):
        if notional >= t.lower_bound:
            index = i
    return index


def maintenance(notional: Fraction, tiers: Sequence[Tier]) -> tuple[Fraction, int]:
    """Exact maintenance requirement (micro-USD) of a notional and its tier index; notional need not be integral."""
    i = _tier_index(abs(notional), tiers)
    return abs(notional) * tiers[i].rate - tiers[i].deduction, i


def _base(pos: PerpPosition, market: Market) -> tuple[int, Fraction]:
    """Size in base units and the factor from USD per coin to micro-USD per base unit."""
    units = pos.size * 10**market.sz_decimals
    if units.denominator != 1:
        raise ReadError(f"hyperliquid: {pos.coin}: size {pos.size} is finer than szDecimals={market.sz_decimals}")
    return int(units), Fraction(USD, 10**market.sz_decimals)


def liquidation_price(pos: PerpPosition, market: Market, mark: Fraction, margin: Fraction) -> Fraction | None:
    """Our own liquidation price in USD per coin: where margin + size * (p - mark) meets the tiered requirement.

    `margin` is the position's equity at `mark` (USD) less whatever else must stay covered; for isolated positions
    it is the isolated equity, for cross the account value less the other positions' requirements at their marks.
    """
    units, per_base = _base(pos, market)
    p = isolated_liquidation_price(units, mark * per_base, margin * USD, market.tiers)
    return None if p is None else p / per_base


def _ratio_wad(equity: Fraction, req: Fraction) -> int | None:
    """equity / requirement in WAD, floored; None when nothing is required."""
    return None if req <= 0 else (equity * WAD / req).__floor__()


def _ceil(x: Fraction) -> int:
    return -((-x).__floor__())
