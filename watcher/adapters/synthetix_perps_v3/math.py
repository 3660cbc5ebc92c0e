"""Synthetix perps v3 integer math: D18 helpers and the per-market state (funding, required margins, windows)."""

from __future__ import annotations

from dataclasses import dataclass

D18 = 10**18
YEAR = 31_557_600  #: InterestRate's AVERAGE_SECONDS_PER_YEAR
DAY = 86_400


def _signed(w: int, bits: int = 256) -> int:
    """A word (or its low `bits`) as a two's complement integer."""
    w &= (1 << bits) - 1
    return w - (1 << bits) if w >> (bits - 1) else w


def tdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Solidity's int256 division does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


@dataclass(frozen=True, slots=True)
class MarketState:
    """One perps market's configuration and funding state, as read at the block."""

    market_id: int
    symbol: str
    skew_scale: int
    initial_margin_ratio: int
    minimum_initial_margin_ratio: int
    maintenance_margin_scalar: int
    flag_reward_ratio: int
    minimum_position_margin: int
    locked_oi_ratio: int
    maker_fee: int
    taker_fee: int
    liquidation_multiplier: int
    liquidation_window_seconds: int
    last_funding_rate: int
    last_funding_value: int
    last_funding_time: int
    skew: int
    max_funding_velocity: int

    def funding_rate(self, now: int) -> int:
        """currentFundingRate: lastFundingRate + velocity * elapsed days, velocity = clamp(skew/skewScale) * max."""
        velocity = 0
        if self.skew_scale:
            p_skew = max(-D18, min(D18, tdiv(self.skew * D18, self.skew_scale)))
            velocity = tdiv(p_skew * self.max_funding_velocity, D18)
        return self.last_funding_rate + tdiv(velocity * self.elapsed(now), D18)

    def elapsed(self, now: int) -> int:
        """proportionalElapsed: days since the last funding update, D18."""
        return (now - self.last_funding_time) * D18 // DAY

    def margins(self, size: int, price: int) -> tuple[int, int, int]:
        """calculateRequiredMargins: (maintenance margin, maintenance ratio D18, notional), D18 floors."""
        if size == 0:
            return 0, 0, 0
        impact = 0 if self.skew_scale == 0 else abs(size) * D18 // self.skew_scale
        imr = impact * self.initial_margin_ratio // D18 + self.minimum_initial_margin_ratio
        mmr = imr * self.maintenance_margin_scalar // D18
        notional = abs(size) * price // D18
        return notional * mmr // D18 + self.minimum_position_margin, mmr, notional

    def windows(self, size_abs: int) -> int:
        """numberOfLiquidationWindows: ceil(|size| / maxLiquidationAmountInWindow), 0 when that amount is 0."""
        per = (self.maker_fee + self.taker_fee) * self.skew_scale // D18 * self.liquidation_multiplier // D18
        per *= self.liquidation_window_seconds
        return 0 if per == 0 else -(-size_abs // per)


@dataclass(frozen=True, slots=True)
class PositionState:
    """One open position's stored record (Position.Data)."""

    market_id: int
    size: int
    last_price: int
    last_funding: int
    last_interest: int
