"""Price history from the feed itself: the rounds of a Chainlink-style feed on anvil, walked back through the chain
client, give the sigma of the random walk they were drawn from, and a probability from it."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from tests.aave_helpers import local_client
from tests.test_probability import PRICE, USDC, WETH, flat, leg, position, walk
from watcher.chain import ReadStats
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.feeds import deploy_feed_proxy, deploy_round_feed
from watcher.feeds import feed_history
from watcher.probability import CLOSED_FORM, first_passage, liquidation_probability, realised_volatility


def test_a_feeds_round_history_is_read_back_whole_and_gives_the_walks_sigma(anvil: Anvil) -> None:
    snap = take_snapshot(anvil.w3)
    try:
        rounds = [(t, int(p)) for t, p in walk(0.8, 600, seed=31, t0=1_600_000_000)]
        feed = deploy_round_feed(anvil.w3, rounds)
        client = local_client(anvil.w3)
        block = anvil.w3.eth.block_number
        stats = ReadStats()
        whole = asyncio.run(feed_history(client, feed.address, block, max_rounds=1_000, stats=stats))
        assert whole.rounds == rounds and whole.decimals == 8 and whole.stopped == "phase start"
        print(f"feed history: {len(whole.rounds)} rounds in {stats.eth_calls} eth_calls")
        assert stats.eth_calls == 1 + math.ceil(600 / 200)  # latestRoundData, then 200 rounds a call
        last = asyncio.run(feed_history(client, feed.address, block, max_rounds=250))
        assert last.rounds == rounds[-250:] and last.stopped == "limit"
        vol = realised_volatility(whole.rounds)
        assert vol is not None and vol.samples == 600
        print(f"sigma from the feed: {vol.sigma_annual:.4f} +- {vol.standard_error:.4f} (walk drawn at 0.8)")
        assert abs(vol.sigma_annual - 0.8) < 3 * vol.standard_error
        p = position(1.2, [leg(WETH, "WETH", 10_000 * PRICE, 8_250)], [leg(USDC, "USDC", 6_875 * PRICE)])
        [day] = liquidation_probability(p, {WETH: whole.rounds, USDC: flat(whole.rounds)}, horizons=[86400])
        assert day.model == CLOSED_FORM and day.samples == 600
        assert day.probability == first_passage(math.log(1.2), vol.sigma_annual, 86400)
    finally:
        revert_snapshot(anvil.w3, snap)


def test_a_node_down_after_the_check_gives_no_probability_and_says_why() -> None:
    """The check read the positions; then the node is gone: each probability is null, naming the failure, at once."""
    import time
    from dataclasses import replace

    from watcher.chain import ChainClient
    from watcher.outlook import Outlook

    down = ChainClient.from_urls("local", 31337, ["http://127.0.0.1:9"], "0x" + "ab" * 20, 50_000_000, timeout=2.0)
    p = position(1.2, [leg(WETH, "WETH", 10_000 * PRICE, 8_250)], [leg(USDC, "USDC", 6_875 * PRICE)])
    p = replace(p, details={"oracle": "0x" + "0c" * 20})

    async def once() -> dict[str, Any]:
        try:
            return await Outlook(horizons=[86400]).estimate([p], {"local": down})
        finally:
            await down.close()

    t0 = time.monotonic()
    [estimates] = asyncio.run(once()).values()
    took = time.monotonic() - t0
    [e] = estimates
    assert e.probability is None and e.model == "none" and e.note.startswith("price history unreadable: "), e
    assert took < 2.0 + 1.0, took  # a refused connection fails fast; a silent node would take its timeout


def test_the_walk_goes_on_into_the_phases_before_an_aggregator_was_replaced(anvil: Anvil) -> None:
    """A feed whose proxy replaced its aggregator twice: the rounds of all three phases come back as one history,
    in order, and a limit stops the walk inside an earlier phase."""
    snap = take_snapshot(anvil.w3)
    try:
        rounds = [(t, int(p)) for t, p in walk(0.8, 599, seed=32, t0=1_600_000_000)]
        parts = [rounds[:200], rounds[200:350], rounds[350:]]  # phases 1, 2 and 3 (current): 200, 150, 250 rounds
        proxy = deploy_feed_proxy(anvil.w3, [deploy_round_feed(anvil.w3, part) for part in parts])
        client = local_client(anvil.w3)
        block = anvil.w3.eth.block_number
        stats = ReadStats()
        whole = asyncio.run(feed_history(client, proxy.address, block, max_rounds=1_000, stats=stats))
        assert whole.rounds == rounds and whole.stopped == "phase start" and whole.decimals == 8
        print(f"three phases: {len(whole.rounds)} rounds in {stats.eth_calls} eth_calls")
        # latest; phase 3 in two calls (200 + 49); two hops of two calls; phase 2 in one (150); phase 1 in one (200)
        assert stats.eth_calls == 1 + 2 + 2 + 1 + 2 + 1
        last = asyncio.run(feed_history(client, proxy.address, block, max_rounds=300))
        assert last.rounds == rounds[-300:] and last.stopped == "limit"  # 250 of phase 3, then 50 of phase 2
        vol = realised_volatility(whole.rounds)
        assert vol is not None and abs(vol.sigma_annual - 0.8) < 3 * vol.standard_error
        # a plain feed (no proxy) still stops at its phase's start, the lookup of an earlier phase reverting
        feed = deploy_round_feed(anvil.w3, parts[0])
        plain = asyncio.run(feed_history(client, feed.address, anvil.w3.eth.block_number, 1_000))
        assert plain.rounds == parts[0] and plain.stopped == "phase start"
    finally:
        revert_snapshot(anvil.w3, snap)
