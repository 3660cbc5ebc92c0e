"""Exact integer replay of GMX v2.2 isPositionLiquidatable for a position and an account, prices replaceable."""

from __future__ import annotations

from dataclasses import dataclass, replace

from watcher.adapters.gmx_v2.accrual import GmxAccrual
from watcher.adapters.gmx_v2.keys import apply_factor
from watcher.model import WAD

_SEARCH_DOUBLINGS = 256


@dataclass(frozen=True, slots=True)
class GmxPositionSim:
    """Exact replay of v2.2 isPositionLiquidatable(forLiquidation = true) for one position, prices replaceable."""

    is_long: bool
    size_usd: int
    size_tokens: int
    collateral_amount: int
    pending_impact_amount: int
    index_token: str
    collateral_token: str
    index_price: int  #: USD*1e30 per index token base unit (min = max)
    collateral_price: int  #: USD*1e30 per collateral token base unit
    price_impact_usd: int  #: impact of closing the whole position, positive side capped (read)
    position_fee_factor: int
    pro_discount_factor: int  #: 0 unless the account has a pro tier with a discount
    referral_discount_factor: int  #: the trader discount factor; 0 without a referral code
    borrowing_fee_usd: int  #: pending, read
    funding_fee_amount: int  #: pending, collateral token base units, read
    max_impact_factor_for_liquidations: int
    min_collateral_factor: int  #: MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION
    min_collateral_usd: int
    # The pool cap on positive pnl; all 0 (no open interest) leaves pnl uncapped, as GMX's getPnl returns 0 then.
    pool_token: str = ""  #: the pnl token: the market's long token for a long, short token for a short
    pool_token_price: int = 0  #: its price per base unit (P.min)
    pool_amount: int = 0  #: getPoolAmount(market, pool_token), already / poolDivisor
    open_interest_usd: int = 0  #: getOpenInterest(market, isLong) of the position's side
    open_interest_tokens: int = 0  #: getOpenInterestInTokens(market, isLong) of the position's side
    max_pnl_factor: int = 0  #: MAX_PNL_FACTOR(MAX_PNL_FACTOR_FOR_TRADERS, market, isLong)
    #: borrowing and funding over time; None: fees held as read (the read fees were not reproduced)
    accrual: GmxAccrual | None = None

    def at_time(self, timestamp: int) -> GmxPositionSim:
        """Borrowing and funding fees as GMX accrues them to `timestamp`, prices and open interest held."""
        a = self.accrual
        if a is None:
            return self
        return replace(
            self, borrowing_fee_usd=a.borrowing_fee_usd(timestamp), funding_fee_amount=a.funding_fee_amount(timestamp)
        )

    def uncapped_pnl(self) -> int:
        """The position's pnl before the pool cap (uncappedBasePnlUsd)."""
        value = self.size_tokens * self.index_price
        return value - self.size_usd if self.is_long else self.size_usd - value

    def pool_pnl(self) -> int:
        """MarketUtils.getPnl(market, indexPrice, isLong, maximize = true) for the position's side."""
        if self.open_interest_usd == 0 or self.open_interest_tokens == 0:
            return 0
        value = self.open_interest_tokens * self.index_price
        return value - self.open_interest_usd if self.is_long else self.open_interest_usd - value

    def max_pool_pnl(self) -> int:
        """applyFactor(poolUsd, MAX_PNL_FACTOR_FOR_TRADERS): the most pnl the pool pays the side."""
        return apply_factor(self.pool_amount * self.pool_token_price, self.max_pnl_factor)

    def pnl(self) -> int:
        """getPositionPnlUsd for the whole size, positive pnl scaled by cappedPoolPnl / poolPnl as GMX does."""
        total = self.uncapped_pnl()
        if total <= 0:
            return total
        pool = self.pool_pnl()
        capped = pool if pool < 0 else min(pool, self.max_pool_pnl())  # MarketUtils.getCappedPnl
        if capped != pool and capped > 0 and pool > 0:
            # Precision.mulDiv(uint, int, uint) with a positive numerator: floor. Then * sizeDeltaInTokens /
            # sizeInTokens for the whole size is exact.
            total = total * capped // pool
        return total

    def impact(self) -> int:
        """Price impact as the liquidation check counts it: pending impact added, positive dropped, negative capped."""
        impact = self.price_impact_usd + self.pending_impact_amount * self.index_price
        if impact >= 0:
            return 0
        return max(impact, -apply_factor(self.size_usd, self.max_impact_factor_for_liquidations))

    def fee_amounts(self) -> dict[str, int]:
        """getPositionFees in collateral token units at the collateral price (isLiquidation = false)."""
        c = self.collateral_price
        if c <= 0:
            # GMX's oracle refuses a zero price; for the search, worthless collateral owes no token amounts.
            return {"position": 0, "borrowing": 0, "discount": 0, "total": 0}
        position_fee = apply_factor(self.size_usd, self.position_fee_factor) // c
        pro = apply_factor(position_fee, self.pro_discount_factor) if self.pro_discount_factor else 0
        referral = apply_factor(position_fee, self.referral_discount_factor)
        borrowing = self.borrowing_fee_usd // c
        discount = max(pro, referral)
        total = position_fee + borrowing - discount + self.funding_fee_amount
        return {"position": position_fee, "borrowing": borrowing, "discount": discount, "total": total}

    def remaining(self) -> int:
        """remainingCollateralUsd."""
        c = self.collateral_price
        return self.collateral_amount * c + self.pnl() + self.impact() - self.fee_amounts()["total"] * c

    def min_collateral_usd_for_leverage(self) -> int:
        """applyFactor(sizeInUsd, minCollateralFactor)."""
        return apply_factor(self.size_usd, self.min_collateral_factor)

    def requirement(self) -> int:
        """The least remaining collateral that is not liquidatable (both thresholds are strict)."""
        return max(self.min_collateral_usd, self.min_collateral_usd_for_leverage())

    def reason(self) -> str:
        """The check's verdict as its reason string; "" when not liquidatable."""
        r = self.remaining()
        if r < self.min_collateral_usd:
            return "min collateral"
        if r <= 0:
            return "< 0"
        if r < self.min_collateral_usd_for_leverage():
            return "min collateral for leverage"
        return ""

    def liquidatable(self) -> bool:
        """isPositionLiquidatable's verdict."""
        return self.reason() != ""

    def health(self) -> int | None:
        """floor(remaining * WAD / requirement), 0 when remaining <= 0; None when nothing is required.

        With requirement > 0: health < WAD iff remaining < requirement iff liquidatable.
        """
        req = self.requirement()
        if req <= 0:
            return None
        return max(self.remaining(), 0) * WAD // req

    def with_index_price(self, price: int) -> GmxPositionSim:
        """The index price moved; the collateral and pnl token too when they are the index token (one feed)."""
        out = replace(self, index_price=price)
        if self.collateral_token.lower() == self.index_token.lower():
            out = replace(out, collateral_price=price)
        if self.pool_token.lower() == self.index_token.lower():
            out = replace(out, pool_token_price=price)
        return out

    def liquidation_index_price(self) -> int | None:
        """The index price (per base unit) at which the check turns liquidatable, all else held.

        Long: the largest price that is liquidatable with the next unit up safe. Short: the least liquidatable price
        with the unit below safe. None when no positive price liquidates (or no price is safe).
        """
        p0 = self.index_price

        def liq(p: int) -> bool:
            return self.with_index_price(p).liquidatable()

        if self.is_long:
            if not liq(0):
                return None
            hi = max(p0, 1)
            for _ in range(_SEARCH_DOUBLINGS):
                if not liq(hi):
                    break
                hi *= 2
            else:
                return None
            lo = 0  # liq(lo) and not liq(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if liq(mid):
                    lo = mid
                else:
                    hi = mid
            return lo
        lo = p0
        while lo > 0 and liq(lo):
            lo //= 2
        if liq(lo):
            return None
        hi = max(2 * lo, 1)
        for _ in range(_SEARCH_DOUBLINGS):
            if liq(hi):
                break
            hi *= 2
        else:
            return None
        while hi - lo > 1:  # not liq(lo), liq(hi)
            mid = (lo + hi) // 2
            if liq(mid):
                hi = mid
            else:
                lo = mid
        return hi


@dataclass(frozen=True, slots=True)
class GmxAccountSim:
    """All of an account's GMX positions; each is isolated, so health is the worst position's."""

    positions: tuple[GmxPositionSim, ...]

    def health(self) -> int | None:
        """The worst position's health; None when nothing is required."""
        hs = [h for p in self.positions if (h := p.health()) is not None]
        return min(hs) if hs else None

    def liquidatable(self) -> bool:
        """Whether any position is liquidatable."""
        return any(p.liquidatable() for p in self.positions)

    def at_time(self, timestamp: int) -> GmxAccountSim:
        """Every position's borrowing and funding accrued to `timestamp` (those without an accrual held as read)."""
        return GmxAccountSim(tuple(p.at_time(timestamp) for p in self.positions))

    @property
    def accrues(self) -> bool:
        """Whether every position's fees move with time (each reproduced the Reader's fees at the read block)."""
        return bool(self.positions) and all(p.accrual is not None for p in self.positions)

    def with_price(self, asset: str, price: int) -> GmxAccountSim:
        """Replace a token's price, per base unit (USD*1e30): the index price, collateral price, or both."""
        out = []
        for p in self.positions:
            if asset.lower() == p.index_token.lower():
                p = p.with_index_price(price)
            else:
                if asset.lower() == p.collateral_token.lower():
                    p = replace(p, collateral_price=price)
                if asset.lower() == p.pool_token.lower():
                    p = replace(p, pool_token_price=price)
            out.append(p)
        return GmxAccountSim(tuple(out))

    def with_supply(self, asset: str, amount: int) -> GmxAccountSim:
        """Deposit collateral into every position that uses `asset` as collateral (each one is isolated)."""
        out = tuple(
            replace(p, collateral_amount=p.collateral_amount + amount)
            if p.collateral_token.lower() == asset.lower()
            else p
            for p in self.positions
        )
        return GmxAccountSim(out)

    def with_repay(self, asset: str, amount: int) -> GmxAccountSim:
        """A GMX position has no debt to repay."""
        raise ValueError("a GMX position has no debt")
