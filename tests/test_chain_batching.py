"""Batching: the gas and size budgets split a read into few calls, a refused batch is split, answers stay in order."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from web3 import Web3

from tests.aave_helpers import Watcher, batch_reader, local_client
from watcher.abi import MULTICALL3, Contract
from watcher.adapters.base import Call
from watcher.chain import ChainClient, ChainError, ReadStats
from watcher.devchain.aave import AaveMarket, PositionSpec


def _borrowers(market: AaveMarket, n: int) -> list[str]:
    rng = random.Random(n)
    users = market.new_users(n)
    specs = [
        PositionSpec(u, {"WETH": rng.randint(1, 20) * 10**18}, {"USDC": rng.randint(100, 1_000) * 10**6}) for u in users
    ]
    return market.open_positions_bulk(specs)


def test_gas_budget_chunks_and_results_agree(aave_market: AaveMarket) -> None:
    users = _borrowers(aave_market, 30)
    one = Watcher(aave_market, users)
    baseline = one.positions()
    small = Watcher(aave_market, users)
    small.client.gas_budget = 200_000  # ~25 calls per batch
    small.positions()  # learn
    result = small.check()
    stats = small.stats(result)
    calls = len(small.reader.calls())
    assert stats.eth_calls == len(stats.chunk_sizes) >= calls * 8_000 // 200_000
    assert sum(stats.chunk_sizes) == calls + 1  # plus the block-timestamp read
    assert {p.account: p.health for p in result.positions} == {a: p.health for a, p in baseline.items()}


class Refusing:
    """A transport in front of a real one that refuses batches bigger than `limit` calls, like a node's gas cap."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.refused = 0

    async def close(self) -> None:
        await self.inner.close()

    async def request(self, method: str, params: list[Any]) -> Any:
        if method == "eth_call":
            n = int(params[0]["data"][2 + 8 + 64 : 2 + 8 + 128], 16)
            if n > self.limit:
                self.refused += 1
                raise ChainError("eth_call: gas required exceeds allowance (50000000)")
        return await self.inner.request(method, params)

    async def request_many(self, requests: list[tuple[str, list[Any]]]) -> list[Any]:
        return [await self.request(m, p) for m, p in requests]


def test_refused_batch_is_split_and_nothing_is_lost(aave_market: AaveMarket) -> None:
    users = _borrowers(aave_market, 20)
    ref = Watcher(aave_market, users).positions()
    w = Watcher(aave_market, users)
    refusing = Refusing(w.client.endpoints[0].transport, limit=16)
    w.client.endpoints[0].transport = refusing
    result = w.check()
    assert not result.unreadable
    stats = w.stats(result)
    assert refusing.refused > 0 and stats.splits > 0 and max(stats.chunk_sizes) <= 16
    assert {p.account: p.health for p in result.positions} == {a: p.health for a, p in ref.items()}


def test_a_reverting_call_falls_back_to_aggregate3_and_is_named(chain: Web3) -> None:
    agg = batch_reader(chain)
    client = local_client(chain, agg)
    pool = Contract("IPool")
    calls = [
        Call(agg, MULTICALL3.getBlockNumber.encode()),
        Call(agg, pool.getReservesList.encode()),  # BatchReader has no such function: it reverts
    ]
    stats = ReadStats()
    block = chain.eth.block_number
    _, answers = asyncio.run(client.read(calls, block, stats))
    assert answers[0][0] and int.from_bytes(answers[0][1], "big") == block
    assert answers[1] == (False, b"")
    assert stats.eth_calls == 2  # the compact call, then aggregate3 to learn which call failed


def test_no_aggregator_is_a_clear_error(chain: Web3) -> None:
    client = ChainClient("local", chain.eth.chain_id, [("local", chain)], "0x" + "42" * 20)
    with pytest.raises(ChainError, match="no aggregate contract answers at 0x4242"):
        asyncio.run(client.read([], chain.eth.block_number))


class Counting:
    """A transport in front of a real one that counts HTTP requests (a JSON-RPC batch is one request)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[list[str]] = []

    async def close(self) -> None:
        await self.inner.close()

    async def request(self, method: str, params: list[Any]) -> Any:
        self.requests.append([method])
        return await self.inner.request(method, params)

    async def request_many(self, requests: list[tuple[str, list[Any]]]) -> list[Any]:
        self.requests.append([m for m, _ in requests])
        return await self.inner.request_many(requests)


def _storage(w3: Web3, address: str, slot: int, block: int) -> bytes:
    """The word at a slot, straight from the node (eth-tester's own API: web3 passes it a block it refuses)."""
    tester = getattr(w3.provider, "ethereum_tester", None)
    raw = tester.get_storage_at(address, hex(slot), block) if tester else w3.eth.get_storage_at(address, slot, block)
    return (bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)).rjust(32, b"\0")


def test_storage_reads_ride_in_the_eth_call_request_and_keep_their_place(aave_market: AaveMarket) -> None:
    w3 = aave_market.w3
    agg = batch_reader(w3)
    client = local_client(w3, agg)
    counting = Counting(client.endpoints[0].transport)
    client.endpoints[0].transport = counting
    provider = aave_market.addresses_provider
    block = w3.eth.block_number
    # Slot 0 of the PoolAddressesProvider is Ownable's owner: a word we can check against the node directly.
    want = _storage(w3, provider, 0, block)
    calls = [
        Call(provider, b"", slot=0),
        Call(agg, MULTICALL3.getBlockNumber.encode()),
        Call(provider, b"", slot=1),
        Call(agg, MULTICALL3.getBlockNumber.encode()),
    ]
    stats = ReadStats()
    _, answers = asyncio.run(client.read(calls, block, stats))
    assert answers[0] == (True, want) and int.from_bytes(want, "big") != 0
    assert answers[2] == (True, _storage(w3, provider, 1, block))
    assert int.from_bytes(answers[1][1], "big") == block == int.from_bytes(answers[3][1], "big")
    assert stats.eth_calls == 1 and stats.storage_reads == 2
    assert counting.requests == [["eth_call", "eth_getStorageAt", "eth_getStorageAt"]]  # one HTTP request
