"""Each position's liquidation probability, from the price history of the feeds its protocol's oracle reads.

Off the check's critical path: a check's positions go in, estimates come out, and the feed histories are cached
per chain and feed so that a later call reads only the rounds added since (or nothing, at the same block).
Where the oracle's feeds are known (watcher/feed_sources.py: Aave and its forks, Compound v3, Liquity v1, GMX v2,
Morpho Blue's Chainlink oracle) the history is the feed's own rounds; Hyperliquid's and dYdX's are the venue's
hourly candles (watcher/adapters/hyperliquid/history.py); other protocols say that their price history is not read
yet, never a probability without its data. Each estimate names the feed every history came from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from watcher.chain import ChainClient, ChainError
from watcher.feed_sources import MATCH_WITHIN, Lookup, Need, feed_needs, product_history, resolve
from watcher.feeds import feed_histories
from watcher.model import WAD, Position
from watcher.probability import DEFAULT_HORIZONS, MIN_RETURNS, Estimate, liquidation_probability
from watcher.readings import Readings

log = logging.getLogger("watcher.outlook")


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
    _sources: dict[tuple[str, Lookup], str] = field(default_factory=dict)  #: (chain, path to the feed) -> feed
    _feeds: dict[tuple[str, str], _Feed] = field(default_factory=dict)
    readings: Readings | None = None  #: the watcher's own sampled prices, where a feed keeps no rounds (watcher run)
    _version: int = 0
    _asked: set[tuple[str, Lookup]] = field(default_factory=set)  #: feed paths asked for, found or not
    #: off-chain venue readers by venue name: Hyperliquid positions take their history from the venue's candles
    venues: Mapping[str, Any] = field(default_factory=dict)
    _candles: Any = None  #: CandleHistories, made on first use with `rounds` candles

    async def estimate(
        self, positions: Sequence[Position], clients: Mapping[str, ChainClient]
    ) -> dict[str, list[Estimate]]:
        """By position id, the probability of liquidation within each horizon: `refresh`, then `cached`.

        Per chain one eth_call per step of the feed paths not yet known (one for Aave, Compound, GMX and Morpho, two
        for Liquity v1) and one reads every feed's latest round, then one more for each 200 rounds walked back; the
        same block again reads nothing.
        """
        errors = await self.refresh(positions, clients)
        return self.cached(positions, {name: c.name for name, c in clients.items()}, errors)

    async def refresh(
        self, positions: Sequence[Position], clients: Mapping[str, ChainClient], session: Any = None
    ) -> dict[str, str]:
        """Read what the estimates need (feeds not yet known, rounds added since, a venue's new candles); per chain,
        the error that stopped it. The daemon runs this off the check path and `cached` on it; `session` is the
        aiohttp session venues are read through (None: one of its own)."""
        errors: dict[str, str] = {}
        on_venue = [p for p in positions if self._on_venue(p)]
        if on_venue:
            await self._venue_candles().refresh(on_venue, self.venues, session)
        for chain, group in self._by_chain(positions, clients).items():
            client = clients[chain]
            block = max(p.block.number for p in group)
            lookups = [n.lookup for p in group for n in _needs(p) if n.lookup is not None]
            try:
                await self._learn_sources(client, lookups, block)
                await self._learn_histories(client, lookups, block)
            except ChainError as exc:
                log.warning("price history unreadable", extra={"chain": chain, "error": str(exc)})
                errors[chain] = str(exc)
        return errors

    def cached(
        self,
        positions: Sequence[Position],
        chains: Mapping[str, str],
        errors: Mapping[str, str] | None = None,
        memo: dict[tuple[str, ...], Any] | None = None,
    ) -> dict[str, list[Estimate]]:
        """By position id, the estimates from what `refresh` has read so far (no I/O); `chains` maps a chain's
        config name to its client's name, `errors` says why a chain's history could not be read, and `memo`
        carries volatilities between calls made while no history changed."""
        out: dict[str, list[Estimate]] = {}
        # volatilities and correlations of the feeds' histories, shared across positions
        memo = {} if memo is None else memo
        own: dict[tuple[str, ...], Any] = {}  # the same from the readings: other series of the same assets
        for p in positions:
            if self._on_venue(p):
                out[p.key] = self._venue_candles().cached([p], self.venues, self.horizons)[p.key]
            elif not self._readable(p, chains):
                got = feed_needs(p)
                out[p.key] = self._none(p, got if isinstance(got, str) else f"no client for chain {p.chain}")
            elif errors and p.chain in errors:
                out[p.key] = self._none(p, f"price history unreadable: {errors[p.chain]}")
            else:
                out[p.key] = self._for(p, _needs(p), chains[p.chain], memo)
            if self.readings is not None and (p.has_debt or p.perps) and out[p.key][0].probability is None:
                out[p.key] = self._from_readings(p, out[p.key][0].note, own)
        return out

    def _from_readings(self, p: Position, why: str, memo: dict[tuple[str, ...], Any]) -> list[Estimate]:
        """The estimate from the watcher's own readings, where the oracle's history gave none (and said why)."""
        assert self.readings is not None
        have = self.readings.count(p)
        if have <= MIN_RETURNS:
            return self._none(p, f"{why}; the watcher's own price readings: {have} of {MIN_RETURNS + 1} so far")
        got = liquidation_probability(p, self.readings.histories(p), self.horizons, cache=memo)
        source = f"from the watcher's own price readings, one every {self.readings.every:g} s ({why})"
        return [replace(e, note=f"{e.note}; {source}" if e.note else source) for e in got]

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever a feed or a history is learned: estimates computed at the same version can be kept."""
        return self._version, (self._candles.version if self._candles is not None else 0)

    def _on_venue(self, p: Position) -> bool:
        return p.protocol in ("hyperliquid", "dydx_v4") and p.chain in self.venues

    def _venue_candles(self) -> Any:
        if self._candles is None:
            from watcher.adapters.hyperliquid.history import CandleHistories  # only where a venue is watched

            self._candles = CandleHistories(self.rounds)
        return self._candles

    @staticmethod
    def _readable(p: Position, chains: Mapping[str, object]) -> bool:
        return isinstance(feed_needs(p), list) and p.chain in chains and (p.has_debt or bool(p.perps))

    def _by_chain(self, positions: Sequence[Position], clients: Mapping[str, ChainClient]) -> dict[str, list[Position]]:
        by_chain: dict[str, list[Position]] = {}
        for p in positions:
            if self._readable(p, clients):
                by_chain.setdefault(p.chain, []).append(p)
        return by_chain

    def _for(self, p: Position, needs: Sequence[Need], chain: str, memo: dict[tuple[str, ...], Any]) -> list[Estimate]:
        parts: dict[str, list[tuple[list[tuple[int, int]], int]]] = {}
        sources: list[tuple[str, str]] = []
        signature: dict[str, str] = {}  #: asset -> where its history comes from
        for n in needs:
            if n.lookup is None:
                sources.append((n.label, n.fixed))
                signature[n.key] = "fixed"
                continue
            feed = self._sources.get((chain, n.lookup))
            known = self._feeds.get((chain, feed)) if feed else None
            if (chain, n.lookup) not in self._asked or (feed is not None and known is None):
                # the daemon reads histories after a check commits: its first check of a position has none yet
                return self._none(p, "price history is being read: the next check carries the figures")
            if feed is None and n.optional:
                continue  # an unset feed of a product (Morpho's): it counts as 1
            if feed is None or known is None or known.error:
                why = "the oracle names no feed for it" if feed is None else (known.error if known else "not read")
                return self._none(p, f"no price history for {n.label}: {why} ({n.lookup.describe()})")
            answered = _price_of(p, n.key) if n.matches_price else 0
            if answered and known.rounds and _far(known.rounds[-1][1], n.feed_decimals, answered):
                latest = known.rounds[-1][1] / 10**n.feed_decimals
                return self._none(
                    p,
                    f"no price history for {n.label}: {feed} answers {latest:,.2f}, not the {answered / WAD:,.2f} the "
                    f"protocol prices it at ({n.lookup.describe()}): not the feed of its price",
                )
            parts.setdefault(n.key, []).append((known.rounds, n.exponent))
            sources.append((n.label, feed))
            signature[n.key] = f"{signature.get(n.key, '')} {feed}^{n.exponent}"
        histories: dict[str, Any] = {
            k: ps[0][0] if len(ps) == 1 and ps[0][1] == 1 else product_history(ps) for k, ps in parts.items()
        }
        for n in needs:
            if n.lookup is not None and n.key not in histories:  # every feed of a product unset: no price at all
                return self._none(p, f"no price history for {n.label}: the oracle names no feed for it")
        fixed = [n.key for n in needs if n.lookup is None]
        if fixed:  # a price the protocol fixes never moves: held flat at every time another feed moved
            times = sorted({t for h in histories.values() for t, _ in h})
            histories.update({k: [(t, 1) for t in times] for k in fixed})
        shared = _namespace(memo, signature)
        feeds = tuple(sources)
        return [
            Estimate(e.horizon_s, e.probability, e.sigma_annual, e.samples, e.model, e.note, feeds)
            for e in liquidation_probability(p, histories, self.horizons, cache=shared)
        ]

    def _none(self, p: Position, note: str) -> list[Estimate]:
        if not p.has_debt and not p.perps:
            return [Estimate(h, 0.0, None, 0, "no debt") for h in self.horizons]
        return [Estimate(h, None, None, 0, "none", note) for h in self.horizons]

    async def _learn_sources(self, client: ChainClient, lookups: Sequence[Lookup], block: int) -> None:
        # paths not found yet are asked again: an oracle may be given a feed later
        wanted = {lk for lk in lookups if (client.name, lk) not in self._sources}
        if not wanted:
            return
        await resolve(client, wanted, block, self._sources)
        self._version += 1
        self._asked.update((client.name, lk) for lk in wanted)

    async def _learn_histories(self, client: ChainClient, lookups: Sequence[Lookup], block: int) -> None:
        feeds = {self._sources[key] for lk in lookups if (key := (client.name, lk)) in self._sources}
        # a feed read at this block is known; one that served no rounds stays so (a mock answering latestAnswer)
        due = sorted(
            f for f in feeds if (k := self._feeds.get((client.name, f))) is None or (k.block != block and not k.error)
        )
        if not due:
            return
        got = await feed_histories(client, due, block, self.rounds)
        for f, h in got.items():
            old = self._feeds.get((client.name, f))
            if isinstance(h, str):
                new = _Feed([], block, f"the feed serves no round history ({h})")
            else:
                new = _Feed(h.rounds, block)
            if old is None or (old.rounds, old.error) != (new.rounds, new.error):
                self._version += 1  # a new round (or a feed gone quiet) changes estimates; the same rounds do not
            self._feeds[(client.name, f)] = new


def _price_of(p: Position, asset: str) -> int:
    """The price (18 decimals) the check read for the position's leg in `asset`; 0 where it has none."""
    return next((leg.price for leg in (*p.collateral, *p.debt) if leg.asset == asset), 0)


def _far(latest: int, decimals: int, answered: int) -> bool:
    """Whether a feed's latest round is further than MATCH_WITHIN from the price the protocol answered."""
    return abs(latest * 10 ** (18 - decimals) - answered) > MATCH_WITHIN * answered


def _needs(p: Position) -> list[Need]:
    got = feed_needs(p)
    return got if isinstance(got, list) else []


def _namespace(memo: dict[tuple[str, ...], Any], signature: Mapping[str, str]) -> dict[tuple[str, ...], Any]:
    """The share of `memo` for a position whose assets' histories come from `signature` (asset -> sources).

    Volatilities are cached by asset, so positions share them only where every asset they hold comes from the same
    feeds: one token has other feeds in another market (two Comets, two Morpho oracles). Usually one share serves all.
    """
    spaces: list[tuple[dict[str, str], dict[tuple[str, ...], Any]]] = memo.setdefault(("namespaces",), [])
    for mapping, share in spaces:
        if all(mapping.get(a, s) == s for a, s in signature.items()):
            mapping.update(signature)
            return share
    spaces.append((dict(signature), {}))
    return spaces[-1][1]


__all__ = ["Outlook"]
