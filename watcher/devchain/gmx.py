"""GMX v2 STAND-IN contracts on a local chain: our own GmxStandIn.sol (DataStore, Reader, feeds), not GMX's code.

GMX's contracts need its whole role/oracle/keeper machinery to hold a position, so the stand-in keeps positions and
DataStore values set directly by an admin, under the same keys as Keys.sol, and serves them through the Reader view
ABI (v2.2 struct shapes) with GMX's integer math, including the pool cap on positive pnl (MAX_PNL_FACTOR_FOR_TRADERS)
and pending borrowing and funding priced by the prices passed in (accrual starts once a test sets the *_UPDATED_AT
keys). Three markets: ETH/USD [WETH-USDC], BTC/USD [USDC-USDC] with a synthetic BTC index token (a bare address, as on
Arbitrum) and DOGE/USD [WETH-USDC] with a synthetic DOGE index token, whose index and pool tokens have different
feeds (as GMX's DOGE, LTC and XRP markets); Chainlink-style feeds with 8 decimals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from watcher.adapters.gmx_v2 import (
    FLOAT,
    key_min_collateral_usd,
    market_key,
    max_pnl_factor_key,
    open_interest_in_tokens_key,
    open_interest_key,
    pool_amount_key,
    position_key,
    token_key,
)
from watcher.devchain.deploy import Calldata, Tx, deploy_bytecode, send_txs
from watcher.devchain.solc import compile_standard_json, contract_output

_SOURCE = Path(__file__).resolve().parent / "sol" / "GmxStandIn.sol"
GAS = 1_000_000
FEED_DECIMALS = 8
HEARTBEAT = 25 * 3600  #: PRICE_FEED_HEARTBEAT_DURATION of every stand-in feed, seconds


def _address(name: str) -> str:
    """A deterministic placeholder address (tokens are never called by the stand-in, only keyed by address)."""
    return to_checksum_address(keccak(f"margin-watcher:gmx-stand-in:{name}".encode())[12:])


@dataclass(frozen=True, slots=True)
class StandInToken:
    """A token of the stand-in: placeholder address, decimals and its feed's starting answer (8 decimals)."""

    symbol: str
    decimals: int
    answer: int

    @property
    def address(self) -> str:
        """The placeholder token address."""
        return _address(f"token:{self.symbol}")

    @property
    def multiplier(self) -> int:
        """PRICE_FEED_MULTIPLIER as GMX configures it: 10**(60 - token decimals - feed decimals)."""
        return 10 ** (60 - self.decimals - FEED_DECIMALS)


TOKENS = (
    StandInToken("WETH", 18, 3_000 * 10**8),
    StandInToken("USDC", 6, 10**8),
    StandInToken("BTC", 8, 60_000 * 10**8),
    StandInToken("DOGE", 8, 15_000_000),  #: 0.15 USD
)


@dataclass(frozen=True, slots=True)
class StandInMarket:
    """A stand-in market: its market token address and index/long/short symbols."""

    name: str
    index: str
    long: str
    short: str

    @property
    def address(self) -> str:
        """The market token's placeholder address."""
        return _address(f"market:{self.name}")


MARKETS = (
    StandInMarket("ETH/USD", "WETH", "WETH", "USDC"),
    StandInMarket("BTC/USD", "BTC", "USDC", "USDC"),
    StandInMarket("DOGE/USD", "DOGE", "WETH", "USDC"),
)


def gmx_price(answer: int, token: StandInToken) -> int:
    """The GMX price (USD*1e30 per base unit) of a feed answer: answer * multiplier / 1e30, floored."""
    return answer * token.multiplier // FLOAT


@functools.cache
def gmx_stand_in_artifacts() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Compile GmxStandIn.sol (via IR: the Reader's nested structs need it); {contract: (abi, bytecode hex)}."""
    source = "GmxStandIn.sol"
    names = ("GmxDataStoreStandIn", "GmxReaderStandIn", "GmxPriceFeedStandIn")
    input_json = {
        "language": "Solidity",
        "sources": {source: {"content": _SOURCE.read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "viaIR": True,
            "evmVersion": "shanghai",
            "outputSelection": {source: {n: ["abi", "evm.bytecode.object"] for n in names}},
        },
    }
    output = compile_standard_json(input_json)
    out = {}
    for n in names:
        entry = contract_output(output, source, n)
        out[n] = (entry["abi"], "0x" + entry["evm"]["bytecode"]["object"])
    return out


@dataclass
class GmxStandIn:
    """The deployed stand-ins, with helpers to set positions, factors and prices and to ask the stand-in's check."""

    w3: Web3
    admin: str
    data_store: Contract
    reader: Contract
    feeds: dict[str, Contract]
    abis: dict[str, list[dict[str, Any]]] = field(repr=False)

    @functools.cached_property
    def _cd(self) -> dict[str, Calldata]:
        return {n: Calldata(a) for n, a in self.abis.items()}

    def token(self, symbol: str) -> StandInToken:
        """A token by symbol."""
        return next(t for t in TOKENS if t.symbol == symbol)

    def market(self, name: str) -> StandInMarket:
        """A market by name."""
        return next(m for m in MARKETS if m.name == name)

    def symbols(self) -> dict[str, str]:
        """Token address -> symbol, for the reader's display names."""
        return {t.address: t.symbol for t in TOKENS}

    def _send(self, txs: list[tuple[str, str, str, tuple[Any, ...]]]) -> int:
        batch = [Tx(self.admin, to, self._cd[abi].encode(fn, *args), GAS, fn) for abi, to, fn, args in txs]
        results = send_txs(self.w3, batch, errors_abi=[x for a in self.abis.values() for x in a])
        return int(results[-1]["blockNumber"])

    def set_uints(self, values: dict[bytes, int]) -> int:
        """Set DataStore uint values by key; returns the last block."""
        ds = self.data_store.address
        return self._send([("GmxDataStoreStandIn", ds, "setUint", (k, v)) for k, v in values.items()])

    def set_answer(self, symbol: str, answer: int) -> int:
        """Set a feed's answer (8 decimals); returns the block."""
        return self._send([("GmxPriceFeedStandIn", self.feeds[symbol].address, "setAnswer", (answer,))])

    def set_feed_broken(self, symbol: str, broken: bool) -> int:
        """Make a feed's latestRoundData revert (or answer again)."""
        return self._send([("GmxPriceFeedStandIn", self.feeds[symbol].address, "setBroken", (broken,))])

    def set_position(
        self,
        account: str,
        market: str,
        collateral: str,
        is_long: bool,
        size_usd: int,
        size_tokens: int,
        collateral_amount: int,
        pending_impact: int = 0,
        borrowing_factor: int = 0,
        funding_per_size: int = 0,
    ) -> int:
        """Store a position (Position.Props) for `account`; returns the block."""
        props = (
            (account, self.market(market).address, self.token(collateral).address),
            (size_usd, size_tokens, collateral_amount, pending_impact, borrowing_factor, funding_per_size, 0, 0, 0, 0),
            (is_long,),
        )
        return self._send([("GmxDataStoreStandIn", self.data_store.address, "setPosition", (props,))])

    def answer(self, symbol: str, block: int | str = "latest") -> int:
        """A feed's answer at `block`."""
        return int(self.feeds[symbol].functions.latestRoundData().call(block_identifier=block)[1])

    def price(self, symbol: str, block: int | str = "latest") -> int:
        """The GMX price of `symbol` at `block`, from its feed as the watcher derives it."""
        return gmx_price(self.answer(symbol, block), self.token(symbol))

    def prices_for(self, market: str, block: int | str = "latest") -> tuple[tuple[int, int], ...]:
        """MarketPrices (index, long, short) with min = max = each feed's price at `block`."""
        m = self.market(market)
        return tuple((self.price(s, block), self.price(s, block)) for s in (m.index, m.long, m.short))

    def is_liquidatable(
        self, account: str, market: str, collateral: str, is_long: bool, block: int | str = "latest"
    ) -> tuple[bool, str, tuple[int, int, int]]:
        """The stand-in's isPositionLiquidatable(..., true, true) at `block` with the feeds' prices of that block."""
        m = self.market(market)
        key = position_key(account, m.address, self.token(collateral).address, is_long)
        props = (m.address, self.token(m.index).address, self.token(m.long).address, self.token(m.short).address)
        liq, reason, info = self.reader.functions.isPositionLiquidatable(
            self.data_store.address, "0x" + "00" * 20, key, props, self.prices_for(market, block), True, True
        ).call(block_identifier=block)
        return bool(liq), str(reason), tuple(info)


def default_market_values(market: StandInMarket) -> dict[bytes, int]:
    """Factors for a market (1e30 scale): min collateral 1% (0.5% for liquidation), 0.05%/0.07% position fee."""
    m = market.address
    return {
        market_key("MIN_COLLATERAL_FACTOR", m): FLOAT // 100,
        market_key("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION", m): FLOAT // 200,
        market_key("MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS", m): FLOAT // 100,
        market_key("MAX_POSITION_IMPACT_FACTOR", m, True): FLOAT // 200,
        market_key("MAX_POSITION_IMPACT_FACTOR", m, False): FLOAT // 200,
        market_key("POSITION_IMPACT_FACTOR", m, True): 5 * FLOAT // 10**11,
        market_key("POSITION_IMPACT_FACTOR", m, False): 10 * FLOAT // 10**11,
        market_key("POSITION_FEE_FACTOR", m, True): 5 * FLOAT // 10_000,
        market_key("POSITION_FEE_FACTOR", m, False): 7 * FLOAT // 10_000,
        market_key("MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER", m, True): 0,
        market_key("MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER", m, False): 0,
    }


def deploy_gmx_stand_in(w3: Web3) -> GmxStandIn:
    """Deploy the DataStore, Reader and one feed per token; register feeds, markets and default factors."""
    arts = gmx_stand_in_artifacts()
    admin = to_checksum_address(w3.eth.accounts[0])
    ds_abi, ds_code = arts["GmxDataStoreStandIn"]
    rd_abi, rd_code = arts["GmxReaderStandIn"]
    fd_abi, fd_code = arts["GmxPriceFeedStandIn"]
    data_store = deploy_bytecode(w3, ds_abi, ds_code, [], admin, gas=5_000_000, label="deploy GmxDataStoreStandIn")
    reader = deploy_bytecode(w3, rd_abi, rd_code, [], admin, gas=8_000_000, label="deploy GmxReaderStandIn")
    feeds = {
        t.symbol: deploy_bytecode(w3, fd_abi, fd_code, [FEED_DECIMALS, t.answer], admin, gas=1_000_000, label="feed")
        for t in TOKENS
    }
    gmx = GmxStandIn(w3, admin, data_store, reader, feeds, {n: a for n, (a, _) in arts.items()})
    ds = data_store.address
    txs: list[tuple[str, str, str, tuple[Any, ...]]] = []
    for t in TOKENS:
        txs.append(
            ("GmxDataStoreStandIn", ds, "setAddress", (token_key("PRICE_FEED", t.address), feeds[t.symbol].address))
        )
        txs.append(
            ("GmxDataStoreStandIn", ds, "setUint", (token_key("PRICE_FEED_MULTIPLIER", t.address), t.multiplier))
        )
        # GMX configures a heartbeat per feed (e.g. 25 hours for ETH on Arbitrum); without one any age is stale.
        txs.append(
            ("GmxDataStoreStandIn", ds, "setUint", (token_key("PRICE_FEED_HEARTBEAT_DURATION", t.address), HEARTBEAT))
        )
    for m in MARKETS:
        props = (m.address, gmx.token(m.index).address, gmx.token(m.long).address, gmx.token(m.short).address)
        txs.append(("GmxDataStoreStandIn", ds, "setMarket", (props,)))
        for k, v in default_market_values(m).items():
            txs.append(("GmxDataStoreStandIn", ds, "setUint", (k, v)))
    txs.append(("GmxDataStoreStandIn", ds, "setUint", (key_min_collateral_usd(), 1 * FLOAT)))
    gmx._send(txs)
    return gmx


__all__ = [
    "MARKETS",
    "TOKENS",
    "GmxStandIn",
    "StandInMarket",
    "StandInToken",
    "default_market_values",
    "deploy_gmx_stand_in",
    "gmx_price",
    "max_pnl_factor_key",
    "open_interest_in_tokens_key",
    "open_interest_key",
    "pool_amount_key",
]
