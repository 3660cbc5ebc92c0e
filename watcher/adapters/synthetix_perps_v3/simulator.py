"""Synthetix perps v3 account simulator: isEligibleForLiquidation replayed exactly, and the liquidation price search."""

from __future__ import annotations

from dataclasses import dataclass, replace

from watcher.adapters.synthetix_perps_v3.math import D18, YEAR, MarketState, PositionState, tdiv
from watcher.model import WAD
from watcher.risk import least_true


@dataclass(frozen=True, slots=True)
class SynthetixAccountSimulator:
    """Exact replay of isEligibleForLiquidation for one account, with market prices or collateral changed.

    Keeper costs and collateral values are held at the read block; funding and interest accrue to `now`.
    """

    account_id: int
    now: int
    markets: tuple[MarketState, ...]
    prices: tuple[int, ...]  #: index price of each market, aligned with `markets`
    positions: tuple[PositionState, ...]
    interest: tuple[int, int, int]  #: InterestRate: interestAccrued, interestRate, lastTimestamp
    collateral_discounted: int  #: what availableMargin counts
    collateral_value: int  #: totalCollateralValue (undiscounted): the keeper reward's caps and collateral reward
    debt: int
    guards: tuple[int, int, int, int]  #: minKeeperRewardUsd, minKeeperProfitRatio, maxKeeperRewardUsd, maxScaling
    collateral_reward_ratio: int
    flag_cost: int
    liquidate_cost: int
    flagged: bool

    def _market(self, market_id: int) -> tuple[MarketState, int]:
        for m, p in zip(self.markets, self.prices, strict=True):
            if m.market_id == market_id:
                return m, p
        raise KeyError(f"market {market_id} not read")

    def _next_interest(self) -> int:
        accrued, rate, last = self.interest
        elapsed = (self.now - last) * D18 // YEAR
        return accrued + rate * elapsed // D18

    def pnl(self, pos: PositionState) -> tuple[int, int, int]:
        """Position.getPnl at the market's price: (totalPnl, accruedFunding, chargedInterest)."""
        m, price = self._market(pos.market_id)
        elapsed = m.elapsed(self.now)
        avg = -tdiv((m.last_funding_rate + m.funding_rate(self.now)) * D18, 2 * D18)
        next_funding = m.last_funding_value + tdiv(tdiv(avg * elapsed, D18) * price, D18)
        accrued = tdiv(pos.size * (next_funding - pos.last_funding), D18)
        price_pnl = tdiv(pos.size * (price - pos.last_price), D18)
        locked = abs(pos.size) * price // D18 * m.locked_oi_ratio // D18
        net = self._next_interest() - pos.last_interest
        if net < 0:
            raise ValueError("position interest index is ahead of the market's")
        interest = locked * net // D18
        return price_pnl + accrued - interest, accrued, interest

    def available(self) -> int:
        """getAvailableMargin: discounted collateral + PnL - debt."""
        return self.collateral_discounted - self.debt + sum(self.pnl(p)[0] for p in self.positions)

    def maintenances(self) -> list[tuple[int, int, int]]:
        """Per position: (maintenance margin, maintenance ratio D18, notional)."""
        return [self._market(p.market_id)[0].margins(p.size, self._market(p.market_id)[1]) for p in self.positions]

    def _keeper_reward(self, rewards: int, cost: int, margin: int) -> int:
        min_usd, min_profit, max_usd, max_scaling = self.guards
        min_cap = max(cost + min_usd, cost * (min_profit + D18) // D18)
        max_cap = max_usd if margin == 0 else min(margin * max_scaling // D18, max_usd)
        return min(max(min_cap, rewards + cost), max_cap)

    def reward(self) -> int:
        """getAccountRequiredMargins' possibleLiquidationReward."""
        if not self.positions:
            return 0
        flag, windows = 0, 0
        for p in self.positions:
            m, price = self._market(p.market_id)
            flag += abs(p.size) * price // D18 * m.flag_reward_ratio // D18
            windows = max(windows, m.windows(abs(p.size)))
        collateral_reward = self.collateral_value * self.collateral_reward_ratio // D18
        out = self._keeper_reward(
            max(flag, collateral_reward), self.flag_cost + self.liquidate_cost, self.collateral_value
        )
        if windows:
            out += self._keeper_reward(0, self.liquidate_cost, 0) * (windows - 1)
        return out

    def requirement(self) -> int:
        """What the check compares with availableMargin: maintenance margins + liquidation reward."""
        return sum(mm for mm, _, _ in self.maintenances()) + self.reward() if self.positions else 0

    def liquidatable(self) -> bool:
        """canLiquidate: flagged, or requirement > availableMargin."""
        return self.flagged or self.requirement() > self.available()

    def health(self) -> int | None:
        """floor(available * 1e18 / requirement): below 1e18 exactly when the requirement exceeds the margin."""
        req = self.requirement()
        return None if req == 0 else self.available() * WAD // req

    def at_time(self, timestamp: int) -> SynthetixAccountSimulator:
        """The same account with funding and interest accrued to `timestamp` (prices and costs held)."""
        return replace(self, now=timestamp)

    def with_price(self, asset: str, price: int) -> SynthetixAccountSimulator:
        """Replace one market's index price; `asset` is the market's symbol or its id."""
        prices = list(self.prices)
        for i, m in enumerate(self.markets):
            if asset in (m.symbol, str(m.market_id)):
                prices[i] = price
        return replace(self, prices=tuple(prices))

    def with_supply(self, asset: str, amount: int) -> SynthetixAccountSimulator:
        """After depositing `amount` snxUSD (D18) as collateral."""
        return replace(
            self,
            collateral_discounted=self.collateral_discounted + amount,
            collateral_value=self.collateral_value + amount,
        )

    def with_repay(self, asset: str, amount: int) -> SynthetixAccountSimulator:
        """After payDebt(amount): the debt falls, never below zero."""
        return replace(self, debt=self.debt - min(amount, self.debt))

    def liquidation_price(self, market_id: int) -> int | None:
        """The index price of one market at which canLiquidate turns true, everything else held; None if none does.

        A long is liquidatable at this price and not one unit (1e-18 USD) above; a short at it and not one below.
        """
        if self.flagged:
            return None
        m, p0 = self._market(market_id)
        size = next(p.size for p in self.positions if p.market_id == market_id)
        hi = max(p0, 1) << 64

        key = m.symbol if m.symbol else str(market_id)

        def liq(p: int) -> bool:
            return self.with_price(key, p).liquidatable()

        def surplus(p: int) -> int:
            at = self.with_price(key, p)
            return at.available() - at.requirement()

        # A secant through the margin surplus at the mark and 10% against the position lands within a hair of the
        # root (the surplus is nearly linear in price), so the exact search that follows gallops a few steps, not ~60.
        p1 = max(1, p0 * 9 // 10) if size > 0 else p0 * 11 // 10
        f0, f1 = surplus(p0), surplus(p1)
        guess = p0 - f0 * (p1 - p0) // (f1 - f0) if f1 != f0 else p0
        guess = min(max(guess, 1), hi)
        if size > 0:
            if not liq(1):
                return None
            safe = least_true(lambda p: not liq(p), guess, 1, hi)
            return None if safe is None else safe - 1
        return least_true(liq, guess, 1, hi)
