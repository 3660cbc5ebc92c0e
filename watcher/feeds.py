"""Price history from the oracle a protocol reads: a Chainlink-style feed's past rounds, walked back in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from watcher.abi import Contract, word_address, words
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
    """The feed's last `max_rounds` rounds at `block` (see feed_histories); ValueError if it serves no rounds."""
    got = (await feed_histories(client, [feed], block, max_rounds, stats))[feed]
    if isinstance(got, str):
        raise ValueError(f"feed {feed}: {got}")
    return got


async def feed_histories(
    client: ChainClient, feeds: Sequence[str], block: int, max_rounds: int = 500, stats: ReadStats | None = None
) -> dict[str, FeedHistory | str]:
    """Each feed's last `max_rounds` rounds at `block`, walked back together: one eth_call for every feed's
    latestRoundData, then one for each BATCH rounds further back. A feed that serves no rounds gets the reason.

    At the first round of a phase (the proxy's aggregator was replaced) the walk goes on into the phase before:
    the proxy's `phaseAggregators(phase - 1)` names that aggregator and its `latestRound()` the round to go on
    from, two more eth_calls for all the feeds at that point. It stops at phase 1, at a feed that is no proxy (those
    calls revert), and at a round that reverts or answers nothing (updatedAt 0), as a feed's very first rounds can.
    Answers that are not positive are left out: a feed answering zero or less is broken, not a price.
    """
    feeds = list(dict.fromkeys(feeds))
    calls = [
        c for f in feeds for c in (Call(f, FEED.decimals.encode(), _GAS), Call(f, FEED.latestRoundData.encode(), _GAS))
    ]
    _, answers = await client.read(calls, block, stats)
    out: dict[str, FeedHistory | str] = {}
    walks: dict[str, _Walk] = {}
    for i, f in enumerate(feeds):
        (ok_d, dec), (ok_l, latest) = answers[2 * i], answers[2 * i + 1]
        if not ok_d or not ok_l or len(latest) < 160 or len(dec) < 32:
            out[f] = "latestRoundData or decimals reverted"
            continue
        round_id, answer, _, updated, _ = words(latest)[:5]
        first = round_id & ((1 << PHASE_SHIFT) - 1)
        walks[f] = _Walk(round_id >> PHASE_SHIFT, first - 1, words(dec)[0], [(updated, _signed(answer))])
    while True:
        asked: list[tuple[str, list[int]]] = []
        for f, w in walks.items():
            if w.stopped:
                continue
            if len(w.got) >= max_rounds:
                w.stopped = "limit"
            elif w.next < 1 and w.phase <= 1:
                w.stopped = "phase start"
            elif w.next < 1:
                continue  # its earlier phase is looked up below, with every other feed at the same point
            else:
                asked.append((f, list(range(w.next, max(0, w.next - min(BATCH, max_rounds - len(w.got))), -1))))
        hops = [f for f, w in walks.items() if not w.stopped and w.next < 1]
        if hops:
            await _earlier_phases(client, walks, hops, block, stats)
            continue
        if not asked:
            break
        batch = [
            Call(f, FEED.getRoundData.encode((walks[f].phase << PHASE_SHIFT) | i), _GAS)
            for f, ids in asked
            for i in ids
        ]
        _, answers = await client.read(batch, block, stats)
        it = iter(answers)
        for f, ids in asked:
            w = walks[f]
            for _ in ids:
                ok, data = next(it)
                if w.stopped:
                    continue
                if not ok or len(data) < 160 or words(data)[3] == 0:
                    w.stopped = "missing round"
                    continue
                r = words(data)
                w.got.append((r[3], _signed(r[1])))
            w.next = ids[-1] - 1
    for f, w in walks.items():
        out[f] = FeedHistory(f, [(t, a) for t, a in reversed(w.got) if a > 0], w.decimals, w.stopped)
    return out


async def _earlier_phases(
    client: ChainClient, walks: dict[str, _Walk], feeds: list[str], block: int, stats: ReadStats | None
) -> None:
    """Move each walk at the start of its phase to the last round of the phase before, or stop it there."""
    calls = [Call(f, FEED.phaseAggregators.encode(walks[f].phase - 1), _GAS) for f in feeds]
    _, answers = await client.read(calls, block, stats)
    aggregators: dict[str, str] = {}
    for f, (ok, data) in zip(feeds, answers, strict=True):
        try:
            address = word_address(data) if ok else ""
        except ValueError:
            address = ""
        if int(address or "0x0", 16) == 0:
            walks[f].stopped = "phase start"  # not a proxy, or no aggregator recorded for that phase
        else:
            aggregators[f] = address
    if not aggregators:
        return
    calls = [Call(a, FEED.latestRound.encode(), _GAS) for a in aggregators.values()]
    _, answers = await client.read(calls, block, stats)
    for f, (ok, data) in zip(aggregators, answers, strict=True):
        w = walks[f]
        if not ok or len(data) < 32 or not 0 < words(data)[0] < 1 << PHASE_SHIFT:
            w.stopped = "phase start"
            continue
        w.phase -= 1
        w.next = words(data)[0]


@dataclass
class _Walk:
    phase: int
    next: int  #: the next round (within the phase) to ask for
    decimals: int
    got: list[tuple[int, int]]  #: newest first
    stopped: str = ""


def _signed(w: int) -> int:
    return w - (1 << 256) if w >> 255 else w


__all__ = ["FEED", "FeedHistory", "feed_histories", "feed_history"]
