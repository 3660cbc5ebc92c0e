"""Each position's liquidation probability, from the price history of the feeds its protocol's oracle reads.

Off the check's critical path: a check's positions go in, estimates come out, and the feed histories are cached
per chain and feed so that a later call reads only the rounds added since (or nothing, at the same block).
Where the oracle's feeds are known (watcher/feed_sources.py: Aave and its forks, Compound v3, Liquity v1, GMX v2,
Morpho Blue's Chainlink oracle) the history is the feed's own rounds; other protocols say that their price history is
not read yet, never a probability without its data. Each estimate names the feed every history came from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.chain import ChainClient, ChainError
from watcher.feed_sources import Lookup, Need, feed_needs, product_history, resolve
from watcher.feeds import feed_histories
from watcher.model import Position
from watcher.probability import DEFAULT_HORIZONS, Estimate, liquidation_probability

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

    async def estimate(
        self, positions: Sequence[Position], clients: Mapping[str, ChainClient]
    ) -> dict[str, list[Estimate]]:
        """By position id, the probability of liquidation within each horizon.

        Per chain one eth_call per step of the feed paths not yet known (one for Aave, Compound and GMX, two for
        Liquity v1) and one reads every feed's latest round, then one more for each 200 rounds walked back; the same
        block again reads nothing.
        """
        out: dict[str, list[Estimate]] = {}
        memo: dict[tuple[str, ...], Any] = {}  # one call's volatilities and correlations, shared across positions
        by_chain: dict[str, list[Position]] = {}
        needs: dict[str, list[Need]] = {}
        for p in positions:
            got = feed_needs(p)
            if isinstance(got, list) and p.chain in clients and (p.has_debt or p.perps):
                by_chain.setdefault(p.chain, []).append(p)
                needs[p.key] = got
            else:
                out[p.key] = self._none(p, got if isinstance(got, str) else f"{p.chain} has no client")
        for chain, group in by_chain.items():
            client = clients[chain]
            block = max(p.block.number for p in group)
            lookups = [n.lookup for p in group for n in needs[p.key] if n.lookup is not None]
            try:
                await resolve(client, lookups, block, self._sources)
                await self._learn_histories(client, lookups, block)
            except ChainError as exc:
                log.warning("price history unreadable", extra={"chain": chain, "error": str(exc)})
                for p in group:
                    out[p.key] = self._none(p, f"price history unreadable: {exc}")
                continue
            for p in group:
                out[p.key] = self._for(p, needs[p.key], client.name, memo)
        return out

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
            if feed is None and n.optional:
                continue  # an unset feed of a product (Morpho's): it counts as 1
            known = self._feeds.get((chain, feed)) if feed else None
            if feed is None or known is None or known.error:
                why = "the oracle names no feed for it" if feed is None else (known.error if known else "not read")
                return self._none(p, f"no price history for {n.label}: {why} ({n.lookup.describe()})")
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
            if isinstance(h, str):
                self._feeds[(client.name, f)] = _Feed([], block, f"the feed serves no round history ({h})")
            else:
                self._feeds[(client.name, f)] = _Feed(h.rounds, block)


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
