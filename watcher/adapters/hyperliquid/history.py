"""Liquidation probability of venue accounts from the venue's own hourly candles, one market a driver: Hyperliquid's
candleSnapshot, and dYdX v4's indexer candles (`DydxV4Reader.hourly_closes`).

An account holding one position is liquidated when that coin's mark reaches the position's liquidation price
(watcher's own, tiers included), so with a driftless GBM of the price the probability is `first_passage` of the log
distance to it, at the volatility the hourly closes realise. An account on several coins takes every coin's candles,
and the probability is watcher/perp_probability.py's nearest point of its margin pools' boundary. The candles are
trade prices, not the mark the venue margins at; over hours the two move together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp

from watcher.adapters.base import ReadError
from watcher.adapters.hyperliquid.candles import INTERVALS, fetch_candles
from watcher.adapters.hyperliquid.parse import PROTOCOL
from watcher.model import Position
from watcher.perp_probability import perp_driver, perp_probability
from watcher.probability import Estimate

ONE_MARKET = (
    "driftless GBM of the venue's hourly closes, first passage of the position's liquidation price (closed form)"
)
INTERVAL = "1h"


@dataclass
class CandleHistories:
    """Hourly closes per (venue, coin), kept until a new candle closes: repeated checks within the hour ask nothing."""

    candles: int = 500  #: candles to read back: about three weeks of hours
    _kept: dict[tuple[str, str], tuple[int, list[tuple[int, Fraction]]]] = field(default_factory=dict)
    _errors: dict[tuple[str, str], str] = field(default_factory=dict)  #: why a market's last read failed
    version: int = 0  #: changes with every candle read or failure: estimates at the same version can be kept
    #: (version, per venue volatilities and correlations)
    _memo: tuple[int, dict[str, dict[tuple[str, ...], Any]]] = field(default_factory=lambda: (-1, {}))
    #: candle requests in flight at once: a venue's rate limit counts them
    concurrency: int = 8

    async def estimate(
        self,
        positions: Sequence[Position],
        venues: Mapping[str, Any],
        horizons: Sequence[int],
        session: aiohttp.ClientSession | None = None,
    ) -> dict[str, list[Estimate]]:
        """By position id, each Hyperliquid position's estimates; `venues` maps a venue name to its reader."""
        await self.refresh(positions, venues, session)
        return self.cached(positions, venues, horizons)

    async def refresh(
        self, positions: Sequence[Position], venues: Mapping[str, Any], session: aiohttp.ClientSession | None = None
    ) -> None:
        """Read the candles the positions' markets need (nothing within the same hour)."""
        wanted = {
            (p.chain, leg.market) for p in positions if p.protocol in VENUES and p.chain in venues for leg in p.perps
        }
        if session is None:
            async with aiohttp.ClientSession() as own:
                errors = await self._learn(wanted, venues, own)
        else:
            errors = await self._learn(wanted, venues, session)
        for key in wanted:
            if errors.get(key, "") != self._errors.get(key, ""):
                self.version += 1
            if key in errors:
                self._errors[key] = errors[key]
            else:
                self._errors.pop(key, None)

    def cached(
        self, positions: Sequence[Position], venues: Mapping[str, Any], horizons: Sequence[int]
    ) -> dict[str, list[Estimate]]:
        """By position id, the estimates from the candles read so far (no I/O)."""
        if self._memo[0] != self.version:  # volatilities and correlations, shared until a candle is read
            self._memo = (self.version, {})
        out = {}
        for p in positions:
            if p.chain not in venues:
                out[p.key] = venue_estimates(p, {}, {"": f"venue {p.chain!r} is not configured"}, horizons)
                continue
            keys = [(p.chain, leg.market) for leg in p.perps]
            histories = {k[1]: self._kept[k][1] for k in keys if k in self._kept}
            # why a market has no history: only a market the estimate needs makes it null, saying this
            missing = {
                k[1]: self._errors.get(k, "price history is being read: the next check carries the figures")
                for k in keys
                if k[1] not in histories
            }
            out[p.key] = venue_estimates(p, histories, missing, horizons, self._memo[1].setdefault(p.chain, {}))
        return out

    async def _learn(
        self, wanted: set[tuple[str, str]], venues: Mapping[str, Any], session: aiohttp.ClientSession
    ) -> dict[tuple[str, str], str]:
        step = INTERVALS[INTERVAL]
        now_ms = int(time.time() * 1000)
        due = sorted(k for k in wanted if k not in self._kept or self._kept[k][0] != now_ms // 1000 // step)

        async def one(key: tuple[str, str]) -> str:
            reader = venues[key[0]]
            try:
                if getattr(reader, "protocol", PROTOCOL) == DYDX:
                    # dYdX's indexer pages its hourly candles itself (DydxV4Reader.hourly_closes)
                    got = await reader.hourly_closes(session, key[1], self.candles)
                else:
                    got = await fetch_candles(
                        session,
                        reader.base_url,
                        key[1],
                        now_ms - self.candles * step * 1000,
                        now_ms,
                        interval=INTERVAL,
                        timeout=reader.timeout,
                        max_bytes=reader.max_bytes,
                    )
            except ReadError as exc:
                self._kept.pop(key, None)  # an unreadable venue is not answered from an older history
                return f"price history unreadable: {exc}"
            self._kept[key] = (now_ms // 1000 // step, got)
            self.version += 1
            return ""

        # several coins at once: the slowest answer, not their sum, bounds the wait (each under the venue's deadline),
        # a few at a time so that a venue's rate limit does not refuse the hour's reads
        gate = asyncio.Semaphore(self.concurrency)

        async def gated(key: tuple[str, str]) -> str:
            async with gate:
                return await one(key)

        results = await asyncio.gather(*(gated(k) for k in due))
        return {k: r for k, r in zip(due, results, strict=True) if r}


#: the venues whose own candles this reads: Hyperliquid's candleSnapshot and dYdX's indexer candles
DYDX = "dydx_v4"
VENUES = (PROTOCOL, DYDX)


def venue_estimates(
    p: Position,
    histories: Mapping[str, Sequence[tuple[int, Fraction]]],
    missing: Mapping[str, str],
    horizons: Sequence[int],
    memo: dict[tuple[str, ...], Any] | None = None,
) -> list[Estimate]:
    """A venue account's probability of liquidation within each horizon from its markets' hourly closes (by market);
    None with the reason (`missing`, by market; "" for the whole venue) where a market it needs has none."""
    if not p.perps:
        return [Estimate(h, 0.0, None, 0, "no positions") for h in horizons]
    if "" in missing and not p.liquidatable:
        return [Estimate(h, None, None, 0, "none", missing[""]) for h in horizons]
    # a venue's driver is its market (perp_driver), so the candles key the histories as perp_probability looks them up
    by_driver = {perp_driver(leg): histories.get(leg.market, ()) for leg in p.perps if leg.market in histories}
    why = {perp_driver(leg): missing[leg.market] for leg in p.perps if leg.market in missing}
    return perp_probability(p, by_driver, horizons, memo, model=ONE_MARKET, unit="hourly close", missing=why)
