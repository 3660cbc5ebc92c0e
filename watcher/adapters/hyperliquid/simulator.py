"""Hyperliquid account simulator: the venue's margin rule replayed exactly, marks replaceable, hourly funding in time.

The rule is the adapter's (watcher/adapters/hyperliquid/position.py): the cross account value against the sum of the
cross positions' tiered maintenance margins, and each isolated position's own equity against its own. Equity is kept
as "raw" USD that does not move with the mark (cross: account value less the cross positions' size * mark; isolated:
the venue's rawUsd), so a new mark changes equity by exactly size * (new - old). Funding is charged on the hour at the
rate read, on the oracle price: account value changes by -szi * oraclePx * rate each hour (positive rates: longs pay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from watcher.adapters.hyperliquid.margin import _ratio_wad, maintenance
from watcher.adapters.hyperliquid.parse import USD, AccountState, Market
from watcher.margin import Tier

HOUR = 3600  #: Hyperliquid settles funding every hour, on the hour


@dataclass(frozen=True, slots=True)
class HlMarket:
    """One open position of the account, with what its market margins and charges it at."""

    symbol: str  #: the coin, as meta names it: the key `with_price` takes
    tiers: tuple[Tier, ...]
    size: Fraction  #: signed coins, positive long
    isolated: bool
    funding: Fraction | None  #: hourly funding rate read from the asset context; None when not served


@dataclass(frozen=True, slots=True)
class HyperliquidSimulator:
    """Exact replay of the adapter's margin verdict for one account, marks or time changed.

    Prices (`prices`, `with_price`) are micro-USD per whole coin, the Position's base unit: Hyperliquid perp prices
    have at most six decimals, so a venue price is an exact integer there.
    """

    now: int  #: unix seconds the state is at
    markets: tuple[HlMarket, ...]
    marks: tuple[Fraction, ...]  #: USD per coin, aligned with `markets`
    oracles: tuple[Fraction | None, ...]  #: oracle prices funding is charged on, aligned with `markets`
    raws: tuple[Fraction, ...]  #: isolated positions: rawUsd (equity = raw + size * mark); cross ones: 0
    cross_raw: Fraction  #: cross account value less the cross positions' size * mark

    @property
    def prices(self) -> tuple[int, ...]:
        """Each market's mark in micro-USD per whole coin (floored where a served mark is finer)."""
        return tuple((mark * USD).__floor__() for mark in self.marks)

    def groups(self) -> list[tuple[str, Fraction, Fraction]]:
        """Each margin group as (scope, equity, requirement) in micro-USD: the cross group first, then isolated ones."""
        cross_eq, cross_req, has_cross, out = self.cross_raw, Fraction(0), False, []
        for m, mark, raw in zip(self.markets, self.marks, self.raws, strict=True):
            req, _ = maintenance(abs(m.size) * mark * USD, m.tiers)
            if m.isolated:
                out.append((m.symbol, (raw + m.size * mark) * USD, req))
            else:
                has_cross = True
                cross_eq += m.size * mark
                cross_req += req
        return ([("cross", cross_eq * USD, cross_req)] if has_cross else []) + out

    def health(self) -> int | None:
        """The worst group's equity over requirement, WAD floored; None when nothing is required."""
        hs = [h for _, eq, req in self.groups() if (h := _ratio_wad(eq, req)) is not None]
        return min(hs) if hs else None

    def liquidatable(self) -> bool:
        """The venue's rule: some group's equity is below its maintenance requirement."""
        return any(eq < req for _, eq, req in self.groups())

    def funding_per_hour(self) -> list[tuple[str, Fraction]]:
        """Per group, what one hour's funding takes from its equity at the rates read (micro-USD; negative: paid in)."""
        drain: dict[str, Fraction] = {}
        for m, oracle in zip(self.markets, self.oracles, strict=True):
            if m.funding is None or oracle is None:
                continue
            scope = m.symbol if m.isolated else "cross"
            drain[scope] = drain.get(scope, Fraction(0)) + m.size * oracle * m.funding * USD
        return list(drain.items())

    def unknown_funding(self) -> list[str]:
        """Markets whose funding rate or oracle price the venue did not serve."""
        return [m.symbol for m, o in zip(self.markets, self.oracles, strict=True) if m.funding is None or o is None]

    def at_time(self, timestamp: int) -> HyperliquidSimulator:
        """The same account after the funding of every hour boundary between `now` and `timestamp` (prices held)."""
        hours = timestamp // HOUR - self.now // HOUR
        raws, cross_raw = list(self.raws), self.cross_raw
        for i, (m, oracle) in enumerate(zip(self.markets, self.oracles, strict=True)):
            if m.funding is None or oracle is None or not hours:
                continue
            paid = hours * m.size * oracle * m.funding
            if m.isolated:
                raws[i] -= paid
            else:
                cross_raw -= paid
        return replace(self, now=timestamp, raws=tuple(raws), cross_raw=cross_raw)

    def with_price(self, asset: str, price: int) -> HyperliquidSimulator:
        """One coin's mark set to `price` micro-USD; its oracle price moves by the same ratio (the mark follows it)."""
        marks, oracles = list(self.marks), list(self.oracles)
        for i, m in enumerate(self.markets):
            if m.symbol.lower() == asset.lower():
                new = Fraction(price, USD)
                old, oracle = marks[i], oracles[i]
                oracles[i] = None if oracle is None else oracle * new / old
                marks[i] = new
        return replace(self, marks=tuple(marks), oracles=tuple(oracles))

    def with_supply(self, asset: str, amount: int) -> HyperliquidSimulator:
        """After depositing `amount` micro-USD: it lands in the cross account value (isolated margins are separate)."""
        return replace(self, cross_raw=self.cross_raw + Fraction(amount, USD))

    def with_repay(self, asset: str, amount: int) -> HyperliquidSimulator:
        """A Hyperliquid account has no debt to repay."""
        raise ValueError("a Hyperliquid account has no debt")

    def ladder_market(self) -> tuple[str, int, int] | None:
        """The price ladder's market: the largest notional, moved against it (-1 down for a long, +1 up for a short)."""
        rows = [
            (abs(m.size) * mark, m.symbol, price, -1 if m.size > 0 else 1)
            for m, mark, price in zip(self.markets, self.marks, self.prices, strict=True)
            if m.size and price > 0
        ]
        if not rows:
            return None
        _, symbol, price, sign = max(rows, key=lambda r: r[0])
        return symbol, price, sign

    def liquidation_time(self, start: int, horizon: int) -> int | None:
        """The first funding hour in [start, start + horizon] at which the rule says liquidatable; None if none is.

        At constant prices and rates each group loses the same amount every hour, so the hour is solved in closed
        form per group (a group paid funding, or paying none, is never liquidated by time) and checked on the replay.
        """
        if self.liquidatable():
            return start
        drains = dict(self.funding_per_hour())
        first: int | None = None
        for scope, eq, req in self.groups():
            d = drains.get(scope, Fraction(0))
            if d <= 0:
                continue
            hours = ((eq - req) / d).__floor__() + 1  # least n with eq - n * d < req
            t = (start // HOUR + hours) * HOUR
            first = t if first is None else min(first, t)
        if first is None or first > start + horizon:
            return None
        # the closed form is re-asked of the replay itself: liquidatable at that hour and not a second before
        if not self.at_time(first).liquidatable() or self.at_time(first - 1).liquidatable():
            raise AssertionError(f"hyperliquid funding hour {first} is not the replay's boundary")
        return first


def simulator_of(
    state: AccountState,
    markets: Mapping[str, Market],
    marks: Mapping[str, Fraction],
    funding: Mapping[str, Fraction],
    oracles: Mapping[str, Fraction],
    now: int,
) -> HyperliquidSimulator:
    """The simulator of one account's clearinghouse state at the marks read."""
    rows: list[HlMarket] = []
    raws: list[Fraction] = []
    cross_raw = state.cross_account_value
    for pos in state.positions:
        rows.append(HlMarket(pos.coin, markets[pos.coin].tiers, pos.size, pos.isolated, funding.get(pos.coin)))
        if pos.isolated:
            assert pos.raw_usd is not None  # parse_position requires rawUsd for isolated positions
            raws.append(pos.raw_usd)
        else:
            raws.append(Fraction(0))
            cross_raw -= pos.size * marks[pos.coin]
    coins: Sequence[str] = [p.coin for p in state.positions]
    return HyperliquidSimulator(
        now=now,
        markets=tuple(rows),
        marks=tuple(marks[c] for c in coins),
        oracles=tuple(oracles.get(c) for c in coins),
        raws=tuple(raws),
        cross_raw=cross_raw,
    )
