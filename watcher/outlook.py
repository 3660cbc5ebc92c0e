"""Each position's liquidation probability, from the price history of the feeds its protocol's oracle reads.

Off the check's critical path: a check's positions go in, estimates come out, and the feed histories are cached
per chain and feed so that a later call reads only the rounds added since (or nothing, at the same block).
Where the oracle's feeds are known (Aave and its forks: `AaveOracle.getSourceOfAsset`) the history is the feed's own
rounds; Hyperliquid's is the venue's hourly candles (candleSnapshot, watcher/adapters/hyperliquid/history.py); other
protocols say that their price history is not read yet, never a probability without its data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.abi import Contract, word_address
from watcher.adapters.base import Call
from watcher.chain import ChainClient, ChainError
from watcher.feeds import feed_histories
from watcher.model import Position
from watcher.probability import DEFAULT_HORIZONS, Estimate, liquidation_probability

log = logging.getLogger("watcher.outlook")
ORACLE = Contract("IAaveOracle")
ZERO = "0x" + "00" * 20


@dataclass
class _Feed:
    rounds: list[tuple[int, int]]
    block: int
    error: str = ""


@dataclass
class Outlook:
    """Liquidation probabilities for a check's positions, with the feeds and histories it learned kept between calls."""

    horizons: Sequence[int] = DEFAULT_HORIZONS
    rounds: int = 500  #: feed rounds to walk back: about three weeks of an hourly heartbeat
    _sources: dict[tuple[str, str, str], str] = field(default_factory=dict)  #: (chain, oracle, asset) -> feed
    _feeds: dict[tuple[str, str], _Feed] = field(default_factory=dict)
    #: off-chain venue readers by venue name: Hyperliquid positions take their history from the venue's candles
    venues: Mapping[str, Any] = field(default_factory=dict)
    _candles: Any = None  #: CandleHistories, made on first use with `rounds` candles

    async def estimate(
        self, positions: Sequence[Position], clients: Mapping[str, ChainClient]
    ) -> dict[str, list[Estimate]]:
        """By position id, the probability of liquidation within each horizon.

        Per chain at most one eth_call asks the oracles for the feeds not yet known and one reads every feed's
        latest round, then one more for each 200 rounds walked back; the same block again reads nothing.
        """
        out: dict[str, list[Estimate]] = {}
        memo: dict[tuple[str, ...], Any] = {}  # one call's volatilities and correlations, shared across positions
        by_chain: dict[str, list[Position]] = {}
        on_venue = []
        for p in positions:
            if p.protocol == "hyperliquid" and p.chain in self.venues:
                on_venue.append(p)
            elif isinstance(p.details.get("oracle"), str) and p.chain in clients and p.has_debt:
                by_chain.setdefault(p.chain, []).append(p)
            else:
                out[p.key] = self._none(p, f"price history is not read for {p.protocol} positions yet")
        if on_venue:
            from watcher.adapters.hyperliquid.history import CandleHistories

            self._candles = self._candles or CandleHistories(self.rounds)
            out |= await self._candles.estimate(on_venue, self.venues, self.horizons)
        for chain, group in by_chain.items():
            client = clients[chain]
            block = max(p.block.number for p in group)
            try:
                await self._learn_sources(client, group, block)
                await self._learn_histories(client, group, block)
            except ChainError as exc:
                log.warning("price history unreadable", extra={"chain": chain, "error": str(exc)})
                for p in group:
                    out[p.key] = self._none(p, f"price history unreadable: {exc}")
                continue
            for p in group:
                out[p.key] = self._for(p, client.name, memo)
        return out

    def _for(self, p: Position, chain: str, memo: dict[tuple[str, ...], Any]) -> list[Estimate]:
        histories: dict[str, list[tuple[int, int]]] = {}
        for leg in (*p.collateral, *p.debt):
            feed = self._sources.get((chain, str(p.details["oracle"]), leg.asset))
            known = self._feeds.get((chain, feed)) if feed else None
            if feed is None or known is None or known.error:
                why = "the oracle names no feed for it" if feed is None else (known.error if known else "not read")
                return self._none(p, f"no price history for {leg.symbol}: {why}")
            histories[leg.asset] = known.rounds
        return liquidation_probability(p, histories, self.horizons, cache=memo)

    def _none(self, p: Position, note: str) -> list[Estimate]:
        if not p.has_debt:
            return [Estimate(h, 0.0, None, 0, "no debt") for h in self.horizons]
        return [Estimate(h, None, None, 0, "none", note) for h in self.horizons]

    async def _learn_sources(self, client: ChainClient, group: Sequence[Position], block: int) -> None:
        wanted = sorted(
            {
                (str(p.details["oracle"]), leg.asset)
                for p in group
                for leg in (*p.collateral, *p.debt)
                if (client.name, str(p.details["oracle"]), leg.asset) not in self._sources
            }
        )
        if not wanted:
            return
        calls = [Call(oracle, ORACLE.getSourceOfAsset.encode(asset)) for oracle, asset in wanted]
        _, answers = await client.read(calls, block)
        for (oracle, asset), (ok, data) in zip(wanted, answers, strict=True):
            try:
                source = word_address(data) if ok else ZERO
            except ValueError:
                source = ZERO
            if source != ZERO:
                self._sources[(client.name, oracle, asset)] = source

    async def _learn_histories(self, client: ChainClient, group: Sequence[Position], block: int) -> None:
        feeds = {
            self._sources[key]
            for p in group
            for leg in (*p.collateral, *p.debt)
            if (key := (client.name, str(p.details["oracle"]), leg.asset)) in self._sources
        }
        # a feed read at this block is known; one that served no rounds stays so (a mock answering latestAnswer)
        due = sorted(
            f for f in feeds if (k := self._feeds.get((client.name, f))) is None or (k.block != block and not k.error)
        )
        if not due:
            return
        got = await feed_histories(client, due, block, self.rounds)
        for f, h in got.items():
            if isinstance(h, str):
                self._feeds[(client.name, f)] = _Feed([], block, f"the feed serves no round history ({h})")
            else:
                self._feeds[(client.name, f)] = _Feed(h.rounds, block)


__all__ = ["Outlook"]
