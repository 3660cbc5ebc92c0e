"""A Compound v3 (Comet) STAND-IN market on a local chain: our own CometStandIn.sol, not Compound's code.

No registry package ships Comet, so the stand-in exposes Comet's view ABI subset with Comet's integer math (the kinked
rate model and accrual included), absorb's accrue-then-check, and admin setters; tests place positions, totals and
prices directly instead of going through supply/withdraw. Tokens are tiny StandInToken contracts answering symbol().
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from watcher.devchain.deploy import Calldata, Tx, TxResult, deploy_bytecode, send_txs
from watcher.devchain.solc import compile_standard_json, contract_output

_SOURCE = Path(__file__).resolve().parent / "sol" / "CometStandIn.sol"
GAS = 500_000
WAD = 10**18
PRICE_SCALE = 10**8  #: Comet's getPrice answers with 8 decimals
SECONDS_PER_YEAR = 31_536_000
#: Ethereum cUSDCv3's rates (deployments/mainnet/usdc/configuration.json), per year at 1e18, in setRates order:
#: supply kink, slope low, slope high, base; borrow kink, slope low, slope high, base.
USDC_RATES_PER_YEAR = (
    80 * WAD // 100,
    325 * WAD // 10_000,
    40 * WAD // 100,
    0,
    80 * WAD // 100,
    35 * WAD // 1_000,
    25 * WAD // 100,
    15 * WAD // 1_000,
)


def per_second(rates_per_year: Sequence[int]) -> tuple[int, ...]:
    """Comet's constructor: kinks as given, slopes and bases divided (floored) by SECONDS_PER_YEAR."""
    return tuple(r if i in (0, 4) else r // SECONDS_PER_YEAR for i, r in enumerate(rates_per_year))


def _address(name: str) -> str:
    """A deterministic placeholder address with no code: the stand-in never calls feeds, it only keys by address."""
    return to_checksum_address(keccak(f"margin-watcher:comet-stand-in:{name}".encode())[12:])


@dataclass(frozen=True, slots=True)
class StandInAsset:
    """One asset of the stand-in market: its token (deployed), placeholder feed address, decimals and factors."""

    symbol: str
    decimals: int
    price: int  #: 8 decimals
    borrow_cf: int = 0  #: 1e18 scale
    liquidate_cf: int = 0  #: 1e18 scale
    liquidation_factor: int = 0  #: 1e18 scale
    #: what the token contract does: "erc20" answers symbol(), "reverting" reverts it, "none" has no code at all
    metadata: str = "erc20"
    token: str = ""  #: the token's address, set when deployed
    #: a deployed feed to name instead of the placeholder (the stand-in still answers `price`, which should match it)
    feed_address: str = ""

    @property
    def feed(self) -> str:
        """The asset's price feed address: the one given, else a placeholder."""
        return self.feed_address or _address(f"feed:{self.symbol}")


BASE = StandInAsset("USDC", 6, 1 * PRICE_SCALE)
COLLATERALS = (
    StandInAsset("WETH", 18, 2000 * PRICE_SCALE, 80 * WAD // 100, 83 * WAD // 100, 90 * WAD // 100),
    StandInAsset("WBTC", 8, 60_000 * PRICE_SCALE, 70 * WAD // 100, 75 * WAD // 100, 90 * WAD // 100),
)


@functools.cache
def comet_stand_in_artifact() -> tuple[list[dict[str, Any]], str]:
    """Compile watcher/devchain/sol/CometStandIn.sol with solc-js and return (abi, creation bytecode hex)."""
    abis, bins = _artifacts()
    return abis["CometStandIn"], bins["CometStandIn"]


@functools.cache
def _artifacts() -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """ABIs and creation bytecodes of CometStandIn and StandInToken."""
    source = "CometStandIn.sol"
    names = ("CometStandIn", "StandInToken")
    input_json = {
        "language": "Solidity",
        "sources": {source: {"content": _SOURCE.read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            # Same target as BatchReader: every supported local chain executes shanghai.
            "evmVersion": "shanghai",
            "outputSelection": {source: {n: ["abi", "evm.bytecode.object"] for n in names}},
        },
    }
    out = compile_standard_json(input_json)
    entries = {n: contract_output(out, source, n) for n in names}
    return (
        {n: e["abi"] for n, e in entries.items()},
        {n: "0x" + e["evm"]["bytecode"]["object"] for n, e in entries.items()},
    )


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

    def absorb_tx(self, users: Sequence[str]) -> Tx:
        """absorb(admin, users) as a transaction from the admin (absorb is permissionless in Comet too)."""
        return Tx(self.admin, self.comet.address, self._cd.encode("absorb", self.admin, list(users)), GAS, "absorb")

    def absorb(self, users: Sequence[str]) -> TxResult:
        """Send absorb(admin, users) without raising on a revert; the result's status says whether it succeeded."""
        [r] = send_txs(self.w3, [self.absorb_tx(users)], errors_abi=self.abi, check=False)
        return r

    def set_rates(self, rates_per_second: Sequence[int]) -> int:
        """Set the rate model (setRates order: supply kink, low, high, base; borrow kink, low, high, base)."""
        return self._send("setRates", list(rates_per_second))

    def set_totals(self, supply_index: int, borrow_index: int, supply_base: int, borrow_base: int) -> int:
        """Set both indexes and the principal totals, as if the market had just accrued in the mined block."""
        return self._send("setTotals", supply_index, borrow_index, supply_base, borrow_base)

    def set_pause_flags(self, flags: int) -> int:
        """Set Comet's pauseFlags (bit 3 pauses absorb)."""
        return self._send("setPauseFlags", flags)

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


def _deploy_token(w3: Web3, admin: str, asset: StandInAsset, salt: str) -> StandInAsset:
    """The asset with its token: a StandInToken (symbol answered, or reverting) or a code-less address."""
    if asset.metadata == "none":
        return replace(asset, token=_address(f"{salt}:token:{asset.symbol}"))
    abis, bins = _artifacts()
    symbol = asset.symbol if asset.metadata == "erc20" else ""
    token = deploy_bytecode(
        w3, abis["StandInToken"], bins["StandInToken"], [symbol, asset.decimals], admin, gas=1_000_000, label="token"
    )
    return replace(asset, token=to_checksum_address(token.address))


def deploy_comet_stand_in(
    w3: Web3,
    base: StandInAsset = BASE,
    collaterals: Sequence[StandInAsset] = COLLATERALS,
    rates_per_year: Sequence[int] = USDC_RATES_PER_YEAR,
    salt: str = "market",
) -> CometStandInMarket:
    """Deploy the stand-in (by default USDC base (1e8), WETH (LCF 0.83) and WBTC (LCF 0.75), cUSDCv3's rates)."""
    abi, bytecode = comet_stand_in_artifact()
    admin = to_checksum_address(w3.eth.accounts[0])
    base = _deploy_token(w3, admin, base, salt)
    collaterals = [_deploy_token(w3, admin, a, salt) for a in collaterals]
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
    txs = [Tx(admin, comet.address, cd.encode("setRates", list(per_second(rates_per_year))), GAS, "setRates")]
    for a in collaterals:
        args = (a.token, a.feed, 10**a.decimals, a.borrow_cf, a.liquidate_cf, a.liquidation_factor, 10**30)
        txs.append(Tx(admin, comet.address, cd.encode("addAsset", *args), GAS, "addAsset"))
        txs.append(Tx(admin, comet.address, cd.encode("setPrice", a.feed, a.price), GAS, "setPrice"))
    send_txs(w3, txs, errors_abi=abi)
    return CometStandInMarket(w3, admin, comet, base, {a.symbol: a for a in collaterals}, abi)
