"""Every on-chain protocol on one chain is read in ONE batched eth_call per check (after the first check learns).

The real Aave v3.0 and Morpho Blue sit beside our stand-ins of Compound v3, Maker, Liquity v1/v2, GMX v2 and
Synthetix perps v3 on one anvil node; `watcher check`'s own read path reads them all at one pinned block.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aave_helpers import local_client
from watcher.check import run_check
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.everything import World, deploy_everything


@pytest.fixture(scope="module")
def world(anvil: Anvil) -> Iterator[World]:
    snap = take_snapshot(anvil.w3)
    yield deploy_everything(anvil.w3, per_protocol=3)
    revert_snapshot(anvil.w3, snap)


def test_all_protocols_in_one_eth_call_per_check(world: World) -> None:
    w3 = world.w3
    client = local_client(w3)
    readers = world.readers()
    first = run_check({"local": client}, readers)  # learns markets, vaults, branches and feeds: a few rounds
    assert not first.unreadable, first.unreadable
    for _ in range(2):
        result = run_check({"local": client}, readers)
        assert not result.unreadable, result.unreadable
        stats = result.stats["local"]
        assert (stats.eth_calls, stats.rounds) == (1, 1)
        by_protocol: dict[str, int] = {}
        for p in result.positions:
            by_protocol[p.protocol] = by_protocol.get(p.protocol, 0) + 1
            assert p.block.number == result.blocks["local"].number  # one pinned block for all
        assert set(by_protocol) == {dep.name for dep in world.deployments}
        assert all(n >= 3 for n in by_protocol.values()), by_protocol
    assert world.kind["aave_v3"] == world.kind["morpho_blue"] == "real"
    assert stats.storage_reads > 0  # Maker's OSM and Synthetix's slots ride in the same HTTP request
