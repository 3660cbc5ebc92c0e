"""Batching: the gas and size budgets split a read into few calls, a refused batch is split, answers stay in order."""

from __future__ import annotations

import random
from typing import Any

import pytest
from web3 import Web3

from tests.aave_helpers import Watcher, batch_reader
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

    def request(self, method: str, params: list[Any]) -> Any:
        if method == "eth_call":
            n = int(params[0]["data"][2 + 8 + 64 : 2 + 8 + 128], 16)
            if n > self.limit:
                self.refused += 1
                raise ChainError("eth_call: gas required exceeds allowance (50000000)")
        return self.inner.request(method, params)


def test_refused_batch_is_split_and_nothing_is_lost(aave_market: AaveMarket) -> None:
    users = _borrowers(aave_market, 20)
    ref = Watcher(aave_market, users).positions()
    w = Watcher(aave_market, users)
    label, transport = w.client.endpoints[0]
    refusing = Refusing(transport, limit=16)
    w.client.endpoints = [(label, refusing)]
    result = w.check()
    assert not result.unreadable
    stats = w.stats(result)
    assert refusing.refused > 0 and stats.splits > 0 and max(stats.chunk_sizes) <= 16
    assert {p.account: p.health for p in result.positions} == {a: p.health for a, p in ref.items()}


def test_a_reverting_call_falls_back_to_aggregate3_and_is_named(chain: Web3) -> None:
    agg = batch_reader(chain)
    client = ChainClient("local", chain.eth.chain_id, [("local", chain)], agg)
    pool = Contract("IPool")
    calls = [
        Call(agg, MULTICALL3.getBlockNumber.encode()),
        Call(agg, pool.getReservesList.encode()),  # BatchReader has no such function: it reverts
    ]
    stats = ReadStats()
    block = chain.eth.block_number
    _, answers = client.read(calls, block, stats)
    assert answers[0][0] and int.from_bytes(answers[0][1], "big") == block
    assert answers[1] == (False, b"")
    assert stats.eth_calls == 2  # the compact call, then aggregate3 to learn which call failed


def test_no_aggregator_is_a_clear_error(chain: Web3) -> None:
    client = ChainClient("local", chain.eth.chain_id, [("local", chain)], "0x" + "42" * 20)
    with pytest.raises(ChainError, match="no aggregate contract answers at 0x4242"):
        client.read([], chain.eth.block_number)
