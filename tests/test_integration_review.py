"""Review of the integration work: failures in one reader or venue stay contained, unknown, and never leak secrets.

A reader that raises something other than ReadError (an adapter bug, a ZeroDivisionError on a zero price) must mark
its own accounts unknown without stopping the chain's other readers; a malformed Morpho event must not poison the
reader's market list; a venue's error must not echo its URL's path or query (they may hold an API key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from web3 import Web3

from tests.aave_helpers import batch_reader
from watcher.adapters.base import Account, Call, ReadError
from watcher.adapters.morpho_blue import SUPPLY_COLLATERAL_TOPIC, MorphoBlueReader
from watcher.chain import ChainClient
from watcher.check import check_venues, run_check
from watcher.model import BlockRef, Position

ALICE = Account("0x" + "a1" * 20, "alice")
BOB = Account("0x" + "b0" * 20, "bob")


class StubReader:
    """A reader asking one call (the aggregator's own block number), failing where told."""

    def __init__(self, protocol: str, chain: str, agg: str, fail_in: str = "") -> None:
        self.protocol, self.chain, self.agg, self.fail_in = protocol, chain, agg, fail_in
        self.accounts = [ALICE] if fail_in else [BOB]
        self.parsed = 0

    def calls(self) -> list[Call]:
        if self.fail_in == "calls":
            raise ValueError("bad plan")
        return [Call(self.agg, bytes.fromhex("42cbb15c"))]  # getBlockNumber()

    def parse(self, results: Sequence[tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        self.parsed += 1
        if self.fail_in == "parse":
            price = 0  # a feed answering zero
            self.parsed += block.number // price
        assert results[0][0] and int.from_bytes(results[0][1], "big") == block.number
        return []


@pytest.mark.parametrize("fail_in", ["parse", "calls"])
def test_an_unexpected_error_in_one_reader_leaves_it_unknown_and_the_others_read(chain: Web3, fail_in: str) -> None:
    agg = batch_reader(chain)
    client = ChainClient("local", chain.eth.chain_id, [("local", chain)], agg)
    broken, fine = StubReader("broken", "local", agg, fail_in), StubReader("fine", "local", agg)
    result = run_check({"local": client}, [broken, fine])  # raised ZeroDivisionError / ValueError before the fix
    assert fine.parsed == 1
    [u] = result.unreadable
    assert (u.protocol, u.accounts) == ("broken", (ALICE,))
    want = "ZeroDivisionError" if fail_in == "parse" else "ValueError: bad plan"
    assert f"unexpected {want}" in u.reason
    assert "local" in result.blocks  # the chain itself was read


class LogsClient:
    """A chain client whose eth_getLogs answers the given logs."""

    def __init__(self, logs: list[dict[str, Any]]) -> None:
        self.logs = logs

    def get_logs(self, address: str, topics: list[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
        return self.logs if topics[0] == SUPPLY_COLLATERAL_TOPIC else []


@pytest.mark.parametrize("bad_id", ["0x" + "zz" * 32, "0x" + "11" * 33, 7])
def test_a_malformed_morpho_event_is_a_read_error_and_does_not_poison_the_markets(bad_id: Any) -> None:
    good = "0x" + "ab" * 32
    reader = MorphoBlueReader("morpho_blue", "local", "0x" + "cc" * 20, [], [ALICE], 0, rescan_seconds=0)
    owner = "0x" + ALICE.address[2:].rjust(64, "0")
    bad = LogsClient([{"topics": [SUPPLY_COLLATERAL_TOPIC, good, owner, owner]}, {"topics": ["0x", bad_id, owner]}])
    with pytest.raises(ReadError, match="malformed Morpho event"):
        reader.discover(bad, 100)
    assert reader.scanned_to is None  # scanned again next time
    assert all(len(m) == 66 for m in reader.market_ids)
    reader.calls()  # raised ValueError on int("0xzz...", 16) before the fix: every later check crashed
    reader.discover(LogsClient([{"topics": [SUPPLY_COLLATERAL_TOPIC, good, owner, owner]}]), 100)
    assert reader.market_ids == [good] and reader.scanned_to == 100


class FailingVenue:
    """A venue reader whose read fails with an error naming its URL, as aiohttp's errors do."""

    protocol = "hyperliquid"
    chain = "hl"

    def __init__(self, exc: Exception) -> None:
        self.accounts = [ALICE]
        self.skipped: list[tuple[Account, str]] = []
        self.exc = exc

    async def read(self, session: Any) -> list[Position]:
        raise self.exc


URL = "https://hl.example.com/v1/SECRETKEY/info?apikey=SECRET2"


@pytest.mark.parametrize(
    "exc",
    [
        ReadError(f"hyperliquid: clearinghouseState: ClientConnectorError from {URL}: Cannot connect"),
        RuntimeError(f"boom at {URL}, retried"),
    ],
)
def test_a_venue_error_never_echoes_the_url_path_or_query(exc: Exception) -> None:
    result = asyncio.run(check_venues([FailingVenue(exc)], session=object()))
    [u] = result.unreadable
    assert u.accounts == (ALICE,) and not result.positions
    for text in (u.reason, result.degraded["hl"]):
        assert "SECRET" not in text, text
        assert "https://hl.example.com/..." in text  # the host stays: it says which venue failed
    assert "...: Cannot connect" in u.reason or "..., retried" in u.reason
