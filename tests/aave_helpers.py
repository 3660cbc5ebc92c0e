"""Test helpers around a deployed Aave market: the watcher over it, and transactions mined at a chosen time."""

from __future__ import annotations

from eth_utils import to_checksum_address
from web3 import Web3

from watcher.adapters.aave_v3 import AaveV3Reader
from watcher.adapters.base import Account
from watcher.chain import ChainClient, ReadStats
from watcher.check import CheckResult, run_check
from watcher.devchain.aave import AaveMarket
from watcher.devchain.deploy import Tx, deploy_batch_reader, is_eth_tester, send_txs
from watcher.model import Position

MAX_UINT = 2**256 - 1
_READERS: dict[int, tuple[str, bytes]] = {}


def batch_reader(w3: Web3) -> str:
    """The BatchReader on this chain; deployed again when a snapshot revert took it away (or reused its address)."""
    known = _READERS.get(id(w3))
    if known is None or bytes(w3.eth.get_code(known[0])) != known[1]:
        address = deploy_batch_reader(w3)
        known = _READERS[id(w3)] = (address, bytes(w3.eth.get_code(address)))
    return known[0]


def local_client(w3: Web3, multicall: str | None = None, name: str = "local", **settings: object) -> ChainClient:
    """The watcher's chain client over a local node, batching through `multicall` (default: our BatchReader)."""
    agg = multicall if multicall is not None else batch_reader(w3)
    return ChainClient(name, w3.eth.chain_id, [(name, w3)], agg, **settings)  # type: ignore[arg-type]


class Watcher:
    """The watcher's real read path over one local market."""

    def __init__(self, market: AaveMarket, users: list[str]) -> None:
        self.market = market
        self.client = local_client(market.w3)
        self.reader = AaveV3Reader("aave_v3", "local", market.addresses_provider, [Account(u, u[:8]) for u in users])

    def check(self) -> CheckResult:
        """One check, as `watcher check` runs it."""
        return run_check({"local": self.client}, [self.reader])

    def positions(self) -> dict[str, Position]:
        """Positions by account from one check; fails the test if anything was unreadable."""
        result = self.check()
        assert not result.unreadable, result.unreadable
        return {p.account: p for p in result.positions}

    def stats(self, result: CheckResult) -> ReadStats:
        """Read statistics of a check on the local chain."""
        return result.stats["local"]


def next_block_at(w3: Web3, timestamp: int) -> None:
    """Make the next mined block carry `timestamp`, on eth-tester and on anvil."""
    if is_eth_tester(w3):
        # eth-tester mines a block at timestamp-1 and leaves the pending block at `timestamp`.
        w3.provider.ethereum_tester.time_travel(timestamp)  # type: ignore[attr-defined]
    else:
        w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]


def latest_timestamp(w3: Web3) -> int:
    """Timestamp of the latest block."""
    return int(w3.eth.get_block("latest")["timestamp"])


def send_at(market: AaveMarket, sender: str, to: str, data: str, timestamp: int) -> dict:
    """Send one transaction mined in a block at `timestamp`; returns its receipt."""
    next_block_at(market.w3, timestamp)
    [receipt] = send_txs(market.w3, [Tx(to_checksum_address(sender), to, data, 2_000_000, "timed tx")])
    block = market.w3.eth.get_block(receipt["blockNumber"])
    assert block["timestamp"] == timestamp, (block["timestamp"], timestamp)
    return receipt


def set_price_at(market: AaveMarket, symbol: str, price: int, timestamp: int) -> int:
    """Point the oracle at a new feed answering `price`, in a block at `timestamp`; returns that block."""
    agg = market.w3.eth.contract(
        abi=market.artifacts["aggregator"].abi, bytecode=market.artifacts["aggregator"].bytecode
    )
    data = agg.constructor(int(price)).data_in_transaction
    [rcpt] = send_txs(market.w3, [Tx(market.admin, None, data, 3_000_000, "feed")])
    feed = to_checksum_address(rcpt["contractAddress"])
    call = market.oracle.encode_abi("setAssetSources", args=[[market.assets[symbol]], [feed]])
    receipt = send_at(market, market.admin, market.oracle.address, call, timestamp)
    market.price_sources[symbol] = feed
    return int(receipt["blockNumber"])


def _fund_and_approve(market: AaveMarket, user: str, symbol: str, amount: int) -> None:
    token = market.tokens[symbol]
    txs = [
        Tx(user, token.address, token.encode_abi("mint", args=[user, amount]), 200_000, "mint"),
        Tx(user, token.address, token.encode_abi("approve", args=[market.pool.address, MAX_UINT]), 200_000, "approve"),
    ]
    send_txs(market.w3, txs)


def supply_at(market: AaveMarket, user: str, symbol: str, amount: int, timestamp: int) -> int:
    """Supply `amount` of `symbol` for `user` in a block at `timestamp`; returns that block."""
    _fund_and_approve(market, user, symbol, amount)
    data = market.pool.encode_abi("supply", args=[market.assets[symbol], amount, user, 0])
    return int(send_at(market, user, market.pool.address, data, timestamp)["blockNumber"])


def repay_at(market: AaveMarket, user: str, symbol: str, amount: int, timestamp: int) -> int:
    """Repay `amount` of `user`'s variable `symbol` debt in a block at `timestamp`; returns that block."""
    _fund_and_approve(market, user, symbol, amount)
    data = market.pool.encode_abi("repay", args=[market.assets[symbol], amount, 2, user])
    return int(send_at(market, user, market.pool.address, data, timestamp)["blockNumber"])
