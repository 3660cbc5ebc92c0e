"""A Synthetix perps v3 STAND-IN market on a local chain: our own SynthetixPerpsStandIn.sol, not Synthetix's code.

The stand-in exposes the PerpsMarketProxy views the watcher reads, keeps the state read by storage slot at the real
namespaced slots, and answers processWithRuntime as a stand-in keeper-cost node. Tests place accounts, collateral,
positions, funding and prices with admin setters instead of orders and settlements.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from watcher.devchain.deploy import Calldata, Tx, deploy_bytecode, send_txs
from watcher.devchain.solc import compile_standard_json, contract_output

_SOURCE = Path(__file__).resolve().parent / "sol" / "SynthetixPerpsStandIn.sol"
GAS = 1_000_000
D18 = 10**18
NODE_ID = keccak(b"margin-watcher:synthetix-stand-in:keeper-cost-node")


@dataclass(frozen=True, slots=True)
class StandInMarketConfig:
    """One perps market's configuration (all D18 except sizes/prices, which are D18 too: Synthetix is all 1e18)."""

    market_id: int
    symbol: str
    price: int
    skew_scale: int
    max_funding_velocity: int = 9 * D18
    initial_margin_ratio: int = 2 * D18 // 100  #: times |size| / skewScale
    minimum_initial_margin_ratio: int = D18 // 100
    maintenance_margin_scalar: int = D18 // 2
    flag_reward_ratio: int = D18 // 1000
    minimum_position_margin: int = 50 * D18
    locked_oi_ratio: int = D18 // 2
    maker_fee: int = D18 // 10_000
    taker_fee: int = 5 * D18 // 10_000
    max_liquidation_multiplier: int = D18
    max_seconds_in_liquidation_window: int = 30

    def words(self) -> list[int]:
        """The uint256[12] config array setMarket takes."""
        return [
            self.skew_scale,
            self.max_funding_velocity,
            self.initial_margin_ratio,
            self.minimum_initial_margin_ratio,
            self.maintenance_margin_scalar,
            self.flag_reward_ratio,
            self.minimum_position_margin,
            self.locked_oi_ratio,
            self.maker_fee,
            self.taker_fee,
            self.max_liquidation_multiplier,
            self.max_seconds_in_liquidation_window,
        ]


ETH = StandInMarketConfig(100, "ETH", 2_000 * D18, skew_scale=1_000_000 * D18)
BTC = StandInMarketConfig(200, "BTC", 60_000 * D18, skew_scale=35_000 * D18, minimum_position_margin=100 * D18)
#: keeper reward guards: minKeeperRewardUsd, minKeeperProfitRatioD18, maxKeeperRewardUsd, maxKeeperScalingRatioD18
GUARDS = (1 * D18, D18 // 2, 500 * D18, D18 // 2)
#: stand-in keeper-cost node: flag cost = base + perFeed * feeds, liquidate cost
COSTS = (D18 // 4, D18 // 10, D18 // 5)


@functools.cache
def synthetix_stand_in_artifact() -> tuple[list[dict[str, Any]], str]:
    """Compile watcher/devchain/sol/SynthetixPerpsStandIn.sol with solc-js and return (abi, creation bytecode hex)."""
    source = "SynthetixPerpsStandIn.sol"
    input_json = {
        "language": "Solidity",
        "sources": {source: {"content": _SOURCE.read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "viaIR": True,  # setMarket's tuple assignments need more stack than the legacy pipeline gives
            "evmVersion": "shanghai",
            "outputSelection": {source: {"SynthetixPerpsStandIn": ["abi", "evm.bytecode.object"]}},
        },
    }
    entry = contract_output(compile_standard_json(input_json), source, "SynthetixPerpsStandIn")
    return entry["abi"], "0x" + entry["evm"]["bytecode"]["object"]


@dataclass
class SynthetixStandInMarket:
    """A deployed SynthetixPerpsStandIn with helpers to place accounts, positions and prices."""

    w3: Web3
    admin: str
    proxy: Contract
    markets: dict[int, StandInMarketConfig]
    abi: list[dict[str, Any]] = field(repr=False)

    @functools.cached_property
    def _cd(self) -> Calldata:
        return Calldata(self.abi)

    def send(self, fn: str, *args: Any) -> int:
        """One admin transaction; returns the block it was mined in."""
        [r] = send_txs(
            self.w3, [Tx(self.admin, self.proxy.address, self._cd.encode(fn, *args), GAS, fn)], errors_abi=self.abi
        )
        return int(r["blockNumber"])

    def set_price(self, market_id: int, price: int) -> int:
        """Set a market's index price (D18 USD per coin); returns the block."""
        return self.send("setPrice", market_id, price)

    def open_account(self, account_id: int, owner: str, usd: int, debt: int = 0) -> int:
        """Create an account owned by `owner` with `usd` snxUSD collateral (D18) and an optional debt."""
        self.send("createAccount", account_id, owner)
        self.send("setCollateral", account_id, 0, usd)
        return self.send("setDebt", account_id, debt)

    def set_position(
        self, account_id: int, market_id: int, size: int, last_price: int, last_funding: int = 0, last_interest: int = 0
    ) -> int:
        """Place a position (size D18, signed) with its last interaction price, funding and interest index."""
        return self.send("setPosition", account_id, market_id, size, last_price, last_funding, last_interest)

    def call(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        """A view of the stand-in at `block`."""
        return getattr(self.proxy.functions, fn)(*args).call(block_identifier=block)

    def can_liquidate(self, account_id: int, block: int | str = "latest") -> bool:
        """The stand-in's canLiquidate(accountId)."""
        return bool(self.call("canLiquidate", account_id, block=block))


def deploy_synthetix_stand_in(
    w3: Web3, markets: tuple[StandInMarketConfig, ...] = (ETH, BTC)
) -> SynthetixStandInMarket:
    """Deploy the stand-in with `markets`, keeper guards and costs, and a non-zero funding and interest state."""
    abi, bytecode = synthetix_stand_in_artifact()
    admin = to_checksum_address(w3.eth.accounts[0])
    proxy = deploy_bytecode(w3, abi, bytecode, [], admin, gas=6_000_000, label="deploy SynthetixPerpsStandIn")
    cd = Calldata(abi)
    now = int(w3.eth.get_block("latest")["timestamp"])
    txs = [Tx(admin, proxy.address, cd.encode("setKeeper", list(GUARDS), D18 // 200, NODE_ID, list(COSTS)), GAS, "k")]
    for m in markets:
        txs.append(
            Tx(admin, proxy.address, cd.encode("setMarket", m.market_id, m.symbol, m.price, m.words()), GAS, "m")
        )
        # A skewed market funded for the last 12 hours: funding then moves with the price, as in the real market.
        skew, rate, value = m.skew_scale // 50, 3 * D18 // 10_000, 7 * D18 // 10
        args = (m.market_id, skew, rate, value, now - 43_200)
        txs.append(Tx(admin, proxy.address, cd.encode("setFunding", *args), GAS, "f"))
    # Interest: 1.2e15 per dollar accrued so far, 8% a year since a day ago.
    txs.append(Tx(admin, proxy.address, cd.encode("setInterest", 12 * 10**14, 8 * D18 // 100, now - 86_400), GAS, "i"))
    send_txs(w3, txs, errors_abi=abi)
    return SynthetixStandInMarket(w3, admin, proxy, {m.market_id: m for m in markets}, abi)


def owner_addresses(count: int, salt: str = "owner") -> list[str]:
    """Placeholder owner addresses: the stand-in's accounts are created by the admin."""
    return [
        to_checksum_address(keccak(f"margin-watcher:synthetix-stand-in:{salt}:{i}".encode())[12:]) for i in range(count)
    ]
