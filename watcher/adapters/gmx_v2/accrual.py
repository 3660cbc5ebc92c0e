"""GMX v2 borrowing and funding of one position over time, at constant prices and open interest, as MarketUtils runs.

Borrowing (MarketUtils.getNextCumulativeBorrowingFactor): the side's stored CUMULATIVE_BORROWING_FACTOR plus the
seconds since CUMULATIVE_BORROWING_FACTOR_UPDATED_AT times getBorrowingFactorPerSecond, which at constant prices and
open interest is a constant; the fee is applyFactor(sizeInUsd, cumulative - position.borrowingFactor). The factor per
second is computed as our stand-in does (and GMX with exponent 1 and no kink model): applyFactor(reservedUsd / poolUsd,
BORROWING_FACTOR). Funding (getNextFundingAmountPerSize): recomputed from the seconds since FUNDING_UPDATED_AT at the
current funding factor per second (FUNDING_FACTOR * |long OI - short OI| / total OI, exponent 1), so the paying side's
amount per size grows with time and the receiving side's cost stays as read (claimable funding is not in the check).
GMX's adaptive funding would move that factor over time: it is not projected, and markets using it get none (below).

A market that configures a model this does not replay (OPTIMAL_USAGE_FACTOR: the kink borrowing model; a
BORROWING_EXPONENT_FACTOR or FUNDING_EXPONENT_FACTOR other than 1; FUNDING_INCREASE_FACTOR_PER_SECOND: adaptive
funding) gets no accrual. And a position's accrual is kept only when it reproduces, at the read block, the borrowing
and funding fees the Reader itself answered (which also catches SKIP_BORROWING_FEE_FOR_SMALLER_SIDE, not read, once
any time has passed since the last update). Without an accrual the simulator holds fees as read and the forecast
refuses, rather than projecting a different rate model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from watcher.adapters.gmx_v2.keys import (
    FLOAT,
    FUNDING_DIVISOR,
    GmxMarket,
    _key,
    apply_factor,
    market_key,
    open_interest_key,
)


def funding_per_size_key(market: str, collateral: str, is_long: bool) -> bytes:
    """Keys.fundingFeeAmountPerSizeKey(market, collateral, isLong)."""
    return _key(
        ("name", "FUNDING_FEE_AMOUNT_PER_SIZE"), ("address", market), ("address", collateral), ("bool", is_long)
    )


#: per market, then per market and side: keys whose non-default values switch on a model that is not replayed
_UNREPLAYED_MARKET = ("FUNDING_EXPONENT_FACTOR", "FUNDING_INCREASE_FACTOR_PER_SECOND")
_UNREPLAYED_SIDE = ("OPTIMAL_USAGE_FACTOR", "BORROWING_EXPONENT_FACTOR")


def accrual_keys(market: str, info: GmxMarket) -> list[bytes]:
    """The DataStore uints the accrual needs for one market, beyond what the liquidation check reads."""
    keys = [market_key("FUNDING_UPDATED_AT", market), market_key("FUNDING_FACTOR", market)]
    keys += [market_key(name, market) for name in _UNREPLAYED_MARKET]
    for is_long in (True, False):
        for name in ("CUMULATIVE_BORROWING_FACTOR", "CUMULATIVE_BORROWING_FACTOR_UPDATED_AT", "BORROWING_FACTOR"):
            keys.append(market_key(name, market, is_long))
        keys += [market_key(name, market, is_long) for name in _UNREPLAYED_SIDE]
        for collateral in dict.fromkeys((info.long, info.short)):
            keys.append(funding_per_size_key(market, collateral, is_long))
    return keys


@dataclass(frozen=True, slots=True)
class MarketAccrual:
    """One market's stored borrowing and funding state as read from the DataStore."""

    info: GmxMarket
    borrowing: tuple[tuple[int, int, int], tuple[int, int, int]]  #: (long, short): cumulative, updated at, factor
    funding_updated_at: int
    funding_factor: int
    funding_per_size: tuple[tuple[str, bool, int], ...]  #: (collateral, is_long, stored amount per size)
    oi_by_collateral: tuple[tuple[str, bool, int], ...]  #: (collateral, is_long, open interest / pool divisor)
    unreplayed: str = ""  #: the model the market configures that is not replayed; "" when there is none

    @property
    def divisor(self) -> int:
        """The pool divisor: 2 when the long and short token are the same."""
        return 2 if self.info.long == self.info.short else 1

    def stored_per_size(self, collateral: str, is_long: bool) -> int:
        """The stored FUNDING_FEE_AMOUNT_PER_SIZE of (collateral, side)."""
        return next((v for c, s, v in self.funding_per_size if c == collateral and s == is_long), 0)

    def oi(self, collateral: str, is_long: bool) -> int:
        """Open interest of one side backed by one collateral token, already / divisor."""
        return next((v for c, s, v in self.oi_by_collateral if c == collateral and s == is_long), 0)


def market_accrual(uint: Callable[[bytes], int], market: str, info: GmxMarket) -> MarketAccrual:
    """The market's accrual state from the batch's DataStore answers (`uint(key)`)."""
    divisor = 2 if info.long == info.short else 1

    def side(is_long: bool) -> tuple[int, int, int]:
        cumulative, updated_at, factor = (
            uint(market_key(n, market, is_long))
            for n in ("CUMULATIVE_BORROWING_FACTOR", "CUMULATIVE_BORROWING_FACTOR_UPDATED_AT", "BORROWING_FACTOR")
        )
        return cumulative, updated_at, factor

    collaterals = tuple(dict.fromkeys((info.long, info.short)))
    unreplayed = [n for n in _UNREPLAYED_MARKET if uint(market_key(n, market)) not in _DEFAULTS[n]]
    unreplayed += [
        n for n in _UNREPLAYED_SIDE for side in (True, False) if uint(market_key(n, market, side)) not in _DEFAULTS[n]
    ]
    return MarketAccrual(
        info,
        (side(True), side(False)),
        uint(market_key("FUNDING_UPDATED_AT", market)),
        uint(market_key("FUNDING_FACTOR", market)),
        tuple((c, s, uint(funding_per_size_key(market, c, s))) for c in collaterals for s in (True, False)),
        tuple((c, s, uint(open_interest_key(market, c, s)) // divisor) for c in collaterals for s in (True, False)),
        ", ".join(dict.fromkeys(unreplayed)),
    )


#: the values under which the replayed model is GMX's: unset, or an exponent of exactly 1
_DEFAULTS = {
    "FUNDING_EXPONENT_FACTOR": (0, FLOAT),
    "BORROWING_EXPONENT_FACTOR": (0, FLOAT),
    "FUNDING_INCREASE_FACTOR_PER_SECOND": (0,),
    "OPTIMAL_USAGE_FACTOR": (0,),
}


def _since(updated_at: int, now: int) -> int:
    """MarketUtils.getSecondsSince...Updated: 0 while never updated."""
    return 0 if updated_at == 0 or now <= updated_at else now - updated_at


@dataclass(frozen=True, slots=True)
class GmxAccrual:
    """What one position owes in borrowing and funding at any second, prices and open interest held."""

    size_usd: int
    cumulative: int  #: the side's stored CUMULATIVE_BORROWING_FACTOR
    borrowing_updated_at: int
    borrowing_per_second: int
    position_borrowing_factor: int
    funding_stored: int  #: the stored amount per size of (collateral, side)
    funding_updated_at: int
    position_funding_per_size: int
    funding_per_second: int  #: 0 unless this side pays
    side_oi: int  #: the paying side's open interest
    collateral_oi: int  #: of it, backed by this collateral token
    divisor: int
    collateral_price_max: int

    def borrowing_fee_usd(self, now: int) -> int:
        """applyFactor(size, next cumulative borrowing factor - the position's)."""
        cumulative = self.cumulative + _since(self.borrowing_updated_at, now) * self.borrowing_per_second
        return apply_factor(self.size_usd, cumulative - self.position_borrowing_factor)

    def pending_per_size(self, now: int) -> int:
        """The funding amount per size added since FUNDING_UPDATED_AT (rounded up, as the paying side's is)."""
        duration = _since(self.funding_updated_at, now)
        if duration == 0 or self.funding_per_second == 0 or self.collateral_oi == 0:
            return 0
        funding_usd = apply_factor(self.side_oi, duration * self.funding_per_second) // self.divisor
        for_collateral = funding_usd * self.collateral_oi // self.side_oi
        if for_collateral == 0:
            return 0
        per_size = -(-for_collateral * FUNDING_DIVISOR // self.collateral_oi)
        return -(-per_size // self.collateral_price_max) * self.divisor

    def funding_fee_amount(self, now: int) -> int:
        """MarketUtils.getFundingAmount(roundUpMagnitude = true): collateral token units owed."""
        diff = self.funding_stored + self.pending_per_size(now) - self.position_funding_per_size
        return -(-self.size_usd * diff // FUNDING_DIVISOR)


def position_accrual(
    ma: MarketAccrual,
    is_long: bool,
    collateral: str,
    size_usd: int,
    numbers: tuple[int, ...],
    prices: dict[str, int],
    oi: tuple[int, int],
    oi_tokens_long: int,
    pool_amount: int,
) -> GmxAccrual | None:
    """One position's accrual (`numbers`: Position.Props numbers; `oi`: long and short open interest); None when
    the market configures a model not replayed, or the pool of its side is empty (GMX reverts on the factor then)."""
    info = ma.info
    if ma.unreplayed:
        return None
    cumulative, updated_at, factor = ma.borrowing[0 if is_long else 1]
    # MarketUtils.getReservedUsd: longs reserve their tokens at the index price, shorts their USD size
    reserved = oi_tokens_long * prices[info.index] if is_long else oi[1]
    per_second = 0
    if reserved:
        pool_usd = pool_amount * prices[info.long if is_long else info.short]
        if pool_usd == 0:
            return None
        per_second = apply_factor(reserved * FLOAT // pool_usd, factor)
    long_oi, short_oi = oi
    funding_per_second = 0
    if long_oi and short_oi and (long_oi > short_oi) == is_long:
        funding_per_second = apply_factor(abs(long_oi - short_oi) * FLOAT // (long_oi + short_oi), ma.funding_factor)
    return GmxAccrual(
        size_usd=size_usd,
        cumulative=cumulative,
        borrowing_updated_at=updated_at,
        borrowing_per_second=per_second,
        position_borrowing_factor=numbers[4],
        funding_stored=ma.stored_per_size(collateral, is_long),
        funding_updated_at=ma.funding_updated_at,
        position_funding_per_size=numbers[5],
        funding_per_second=funding_per_second,
        side_oi=long_oi if is_long else short_oi,
        collateral_oi=ma.oi(collateral, is_long),
        divisor=ma.divisor,
        collateral_price_max=prices[collateral],
    )


__all__ = ["GmxAccrual", "MarketAccrual", "accrual_keys", "market_accrual", "position_accrual"]
