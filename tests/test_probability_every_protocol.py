"""Every on-chain protocol's positions through the outlook at once (the real Aave v3.0 and Morpho Blue beside our
stand-ins of the others, whose feeds keep no round history): each estimate is a number with its sigma and sample, or
null with a note saying why, per protocol; never an exception, never a probability without its data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.aave_helpers import local_client
from watcher.check import run_check
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.everything import World, deploy_everything
from watcher.outlook import Outlook
from watcher.probability import Estimate

#: deployment -> what its positions' notes say, with the world's feeds (mocks and latest-only stand-ins)
WHY = {
    "aave_v3": "no price history for",  # Aave's MockAggregator answers latestAnswer only
    "compound_v3": "the feed serves no round history",  # the Comet stand-in's placeholder feeds have no code
    "liquity_v1": "no price history for ETH: the oracle names no feed for it",  # no priceAggregator set
    "liquity_v2": "can be named as contracts.eth_usd_price_feed_",  # the world names no branch feed
    "gmx_v2": "not enough price history for",  # the stand-in feeds answer round 1 alone
    "synthetix_perps_v3": "Oracle Manager node",
    "morpho_blue": "the oracle names no feed for it",  # an OracleMock has no BASE_FEED_1
    "maker": "price history is not read for maker positions yet",
}


@pytest.fixture(scope="module")
def world(anvil: Anvil) -> Iterator[World]:
    snap = take_snapshot(anvil.w3)
    yield deploy_everything(anvil.w3, per_protocol=2)
    revert_snapshot(anvil.w3, snap)


def test_every_protocol_gets_a_number_or_a_reason(world: World) -> None:
    client = local_client(world.w3)
    readers = world.readers()
    result = run_check({"local": client}, readers)
    assert not result.unreadable, result.unreadable
    out: dict[str, list[Estimate]] = asyncio.run(
        Outlook(horizons=[86400]).estimate(result.positions, {"local": client})
    )
    assert set(out) == {p.key for p in result.positions}
    notes: dict[str, set[str]] = {}
    for p in result.positions:
        [e] = out[p.key]
        if e.probability is None:
            assert e.sigma_annual is None and e.samples == 0 and e.model == "none" and e.note, (p.protocol, e)
            notes.setdefault(p.protocol, set()).add(e.note)
        else:
            # a number only where nothing moves it (no debt) or nothing can (already liquidatable, no price does)
            assert e.model in {"no debt", "already liquidatable", "no price liquidates the perp legs"}, (p.key, e)
    print({k: sorted(v) for k, v in notes.items()})
    for protocol, why in WHY.items():
        assert protocol in notes, (protocol, notes.keys())
        assert all(why in n for n in notes[protocol]), (protocol, notes[protocol])
