"""Price history from the oracle a protocol reads: a Chainlink-style feed's past rounds, walked back in batches."""

from __future__ import annotations

from dataclasses import dataclass

from watcher.abi import Contract, words
from watcher.adapters.base import Call
from watcher.chain import ChainClient, ReadStats

FEED = Contract("IChainlinkAggregator")
#: round ids carry the aggregator phase in their top bits: (phase << 64) | round within the phase
PHASE_SHIFT = 64
BATCH = 200  #: getRoundData calls per aggregate eth_call: a 500-round walk is three calls
_GAS = 15_000


@dataclass(frozen=True, slots=True)
class FeedHistory:
    """A feed's rounds, oldest first, and why the walk stopped."""

    feed: str
    rounds: list[tuple[int, int]]  #: (updatedAt, answer) per round, oldest first
    decimals: int
    stopped: str  #: "limit", "phase start" or "missing round"


async def feed_history(
    client: ChainClient, feed: str, block: int, max_rounds: int = 500, stats: ReadStats | None = None
) -> FeedHistory:
    """The feed's last `max_rounds` rounds at `block`: latestRoundData, then getRoundData walking back.

    The walk stays within the current aggregator phase (round ids below its first round belong to an earlier
    aggregator, reached only through the proxy's phaseAggregators) and stops at a round that reverts or answers
    nothing (updatedAt 0), as a feed's very first rounds can. Answers that are not positive are left out: a feed
    answering zero or less is broken, not a price.
    """
    _, [(ok_d, dec), (ok_l, latest)] = await client.read(
        [Call(feed, FEED.decimals.encode(), _GAS), Call(feed, FEED.latestRoundData.encode(), _GAS)], block, stats
    )
    if not ok_d or not ok_l or len(latest) < 160 or len(dec) < 32:
        raise ValueError(f"feed {feed}: latestRoundData or decimals reverted at block {block}")
    round_id, answer, _, updated, _ = words(latest)[:5]
    phase, first = round_id >> PHASE_SHIFT, round_id & ((1 << PHASE_SHIFT) - 1)
    got: list[tuple[int, int]] = [(updated, _signed(answer))]
    stopped = "limit"
    n = first - 1
    while len(got) < max_rounds:
        if n < 1:
            stopped = "phase start"
            break
        ids = list(range(n, max(0, n - min(BATCH, max_rounds - len(got))), -1))
        _, answers = await client.read(
            [Call(feed, FEED.getRoundData.encode((phase << PHASE_SHIFT) | i), _GAS) for i in ids], block, stats
        )
        for ok, data in answers:
            if not ok or len(data) < 160 or words(data)[3] == 0:
                stopped = "missing round"
                break
            w = words(data)
            got.append((w[3], _signed(w[1])))
        else:
            n = ids[-1] - 1
            continue
        break
    rounds = [(t, a) for t, a in reversed(got) if a > 0]
    return FeedHistory(feed, rounds, words(dec)[0], stopped)


def _signed(w: int) -> int:
    return w - (1 << 256) if w >> 255 else w


__all__ = ["FEED", "FeedHistory", "feed_history"]
