"""A Compound v3 (Comet) STAND-IN market on a local chain: our own CometStandIn.sol, not Compound's code.

No registry package ships Comet, so the stand-in exposes Comet's view ABI subset with Comet's integer math and admin
setters; tests place positions and prices directly instead of going through supply/withdraw.
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

_SOURCE = Path(__file__).resolve().parent / "sol" / "CometStandIn.sol"
GAS = 500_000
WAD = 10**18
PRICE_SCALE = 10**8  #: Comet's getPrice answers with 8 decimals


def _address(name: str) -> str:
    """A deterministic placeholder address: the stand-in never calls tokens or feeds, it only keys by address."""
    return to_checksum_address(keccak(f"margin-watcher:comet-stand-in:{name}".encode())[12:])


@dataclass(frozen=True, slots=True)
class StandInAsset:
    """One asset of the stand-in market: placeholder token and feed addresses, decimals and factors."""

    symbol: str
    decimals: int
    price: int  #: 8 decimals
    borrow_cf: int = 0  #: 1e18 scale
    liquidate_cf: int = 0  #: 1e18 scale
    liquidation_factor: int = 0  #: 1e18 scale

    @property
    def token(self) -> str:
        """The asset's placeholder token address."""
        return _address(f"token:{self.symbol}")

    @property
    def feed(self) -> str:
        """The asset's placeholder price feed address."""
        return _address(f"feed:{self.symbol}")


BASE = StandInAsset("USDC", 6, 1 * PRICE_SCALE)
COLLATERALS = (
    StandInAsset("WETH", 18, 2000 * PRICE_SCALE, 80 * WAD // 100, 83 * WAD // 100, 90 * WAD // 100),
    StandInAsset("WBTC", 8, 60_000 * PRICE_SCALE, 70 * WAD // 100, 75 * WAD // 100, 90 * WAD // 100),
)


@functools.cache
def comet_stand_in_artifact() -> tuple[list[dict[str, Any]], str]:
    """Compile watcher/devchain/sol/CometStandIn.sol with solc-js and return (abi, creation bytecode hex)."""
    source = "CometStandIn.sol"
    input_json = {
        "language": "Solidity",
        "sources": {source: {"content": _SOURCE.read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            # Same target as BatchReader: every supported local chain executes shanghai.
            "evmVersion": "shanghai",
            "outputSelection": {source: {"CometStandIn": ["abi", "evm.bytecode.object"]}},
        },
    }
    entry = contract_output(compile_standard_json(input_json), source, "CometStandIn")
    return entry["abi"], "0x" + entry["evm"]["bytecode"]["object"]


@dataclass
class CometStandInMarket:
    """A deployed CometStandIn with USDC base and WETH/WBTC collaterals, and helpers to set positions and prices."""

    w3: Web3
    admin: str
    comet: Contract
    base: StandInAsset
    collaterals: dict[str, StandInAsset]
    abi: list[dict[str, Any]] = field(repr=False)

    @functools.cached_property
    def _cd(self) -> Calldata:
        return Calldata(self.abi)

    def _send(self, fn: str, *args: Any) -> int:
        [r] = send_txs(
            self.w3, [Tx(self.admin, self.comet.address, self._cd.encode(fn, *args), GAS, fn)], errors_abi=self.abi
        )
        return int(r["blockNumber"])

    def asset(self, symbol: str) -> StandInAsset:
        """The base or a collateral asset by symbol."""
        return self.base if symbol == self.base.symbol else self.collaterals[symbol]

    def set_price(self, symbol: str, price: int) -> int:
        """Set the 8-decimal price of `symbol`'s feed; returns the block it was mined in."""
        return self._send("setPrice", self.asset(symbol).feed, price)

    def set_position(self, user: str, borrow: int, collateral: dict[str, int]) -> int:
        """Give `user` these collateral balances and a debt of about `borrow` base units (principal at the index)."""
        block = 0
        for symbol, amount in collateral.items():
            block = self._send("setCollateral", user, self.collaterals[symbol].token, amount)
        index = self.totals()[1]
        # principal rounds up like Comet's principalValueBorrow, so the present debt is at least `borrow`.
        principal = -((borrow * 10**15 + index - 1) // index)
        return self._send("setUser", user, principal) or block

    def set_base_borrow_index(self, index: int) -> int:
        """Overwrite the stored baseBorrowIndex (1e15 scale)."""
        return self._send("setBaseBorrowIndex", index)

    def totals(self, block: int | str = "latest") -> tuple[int, ...]:
        """totalsBasic() as a tuple."""
        return tuple(self.comet.functions.totalsBasic().call(block_identifier=block))

    def is_liquidatable(self, user: str, block: int | str = "latest") -> bool:
        """The stand-in's isLiquidatable(user) at `block`."""
        return bool(self.comet.functions.isLiquidatable(user).call(block_identifier=block))

    def price(self, symbol: str, block: int | str = "latest") -> int:
        """getPrice of `symbol`'s feed at `block`."""
        return int(self.comet.functions.getPrice(self.asset(symbol).feed).call(block_identifier=block))


def new_addresses(count: int, salt: str = "user") -> list[str]:
    """Placeholder user addresses: the stand-in's positions are set by the admin, users never send transactions."""
    return [_address(f"{salt}:{i}") for i in range(count)]


def deploy_comet_stand_in(w3: Web3) -> CometStandInMarket:
    """Deploy the stand-in with USDC base (1e8) and WETH (LCF 0.83) and WBTC (LCF 0.75) collaterals."""
    abi, bytecode = comet_stand_in_artifact()
    admin = to_checksum_address(w3.eth.accounts[0])
    base = BASE
    comet = deploy_bytecode(
        w3,
        abi,
        bytecode,
        [base.token, base.feed, 10**base.decimals, base.price],
        admin,
        gas=3_000_000,
        label="deploy CometStandIn",
    )
    cd = Calldata(abi)
    txs = []
    for a in COLLATERALS:
        args = (a.token, a.feed, 10**a.decimals, a.borrow_cf, a.liquidate_cf, a.liquidation_factor, 10**30)
        txs.append(Tx(admin, comet.address, cd.encode("addAsset", *args), GAS, "addAsset"))
        txs.append(Tx(admin, comet.address, cd.encode("setPrice", a.feed, a.price), GAS, "setPrice"))
    send_txs(w3, txs, errors_abi=abi)
    return CometStandInMarket(w3, admin, comet, base, {a.symbol: a for a in COLLATERALS}, abi)
