"""Deploys a real Aave v3.0 or v3.6 market (npm artifacts / sources) on a local chain and opens positions."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from watcher.devchain.anvil import rpc
from watcher.devchain.deploy import (
    Calldata,
    Tx,
    TxResult,
    advance_time,
    batch_rpc,
    create_address,
    deploy_batch_reader,
    is_eth_tester,
    link_bytecode,
    send_txs,
)
from watcher.devchain.node import DevchainError, node_modules
from watcher.devchain.solc import compile_standard_json, contract_output

__all__ = [
    "EMODE_STABLECOINS",
    "RESERVES",
    "VERSIONS",
    "AaveMarket",
    "EModeSpec",
    "PositionSpec",
    "ReserveSpec",
    "aave_artifacts",
    "advance_time",
    "deploy_aave",
    "deploy_batch_reader",
]

VERSIONS = ("3.0", "3.6")
ZERO = "0x0000000000000000000000000000000000000000"
MAX_UINT = 2**256 - 1
RAY = 10**27
BASE_CURRENCY_UNIT = 10**8
VARIABLE_RATE = 2

# Gas limits are explicit so bulk sends skip eth_estimateGas; each is ~2-3x what the call uses here.
GAS_DEPLOY = 8_000_000
GAS_ADMIN = 3_000_000
GAS_INIT_RESERVE = 6_000_000
GAS_ERC20 = 150_000
GAS_POOL = 1_500_000
_USER_ETH = 1_000 * 10**18


@dataclass(frozen=True, slots=True)
class ReserveSpec:
    """A listed asset: mock token decimals, USD price (8 decimals) and risk parameters in bps."""

    symbol: str
    decimals: int
    price: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int


@dataclass(frozen=True, slots=True)
class EModeSpec:
    """An eMode category and the assets that are collateral and borrowable in it."""

    category_id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str
    assets: tuple[str, ...]


RESERVES: tuple[ReserveSpec, ...] = (
    ReserveSpec("WETH", 18, 2_000 * 10**8, 8000, 8250, 10500),
    ReserveSpec("WBTC", 8, 60_000 * 10**8, 7000, 7500, 10650),
    ReserveSpec("USDC", 6, 1 * 10**8, 7700, 8000, 10450),
    ReserveSpec("DAI", 18, 1 * 10**8, 7500, 7800, 10500),
)
EMODE_STABLECOINS = EModeSpec(1, 9300, 9500, 10100, "stablecoins", ("USDC", "DAI"))
RESERVE_FACTOR_BPS = 1000
# Same curve for both versions: optimal usage 90%, base 0, slope1 4%, slope2 60% (v3.6 takes bps).
RATE_BPS = (9000, 0, 400, 6000)


@dataclass(frozen=True, slots=True)
class PositionSpec:
    """A position to open: amounts in token base units per symbol, and an optional eMode category."""

    user: str
    supplies: dict[str, int]
    borrows: dict[str, int] = field(default_factory=dict)
    emode: int = 0


@dataclass(frozen=True, slots=True)
class Artifact:
    """ABI, creation bytecode and library link references of one contract."""

    abi: list[dict[str, Any]]
    bytecode: str
    link_references: dict[str, dict[str, list[dict[str, int]]]]


_V30_NAMES = {
    "provider": "PoolAddressesProvider",
    "acl": "ACLManager",
    "pool": "Pool",
    "configurator": "PoolConfigurator",
    "atoken": "AToken",
    "stable_debt": "StableDebtToken",
    "variable_debt": "VariableDebtToken",
    "strategy": "DefaultReserveInterestRateStrategy",
    "oracle": "AaveOracle",
    "data_provider": "AaveProtocolDataProvider",
    "token": "MintableERC20",
    "aggregator": "MockAggregator",
}
_V36_SOURCES = {
    "provider": ("protocol/configuration/PoolAddressesProvider.sol", "PoolAddressesProvider"),
    "acl": ("protocol/configuration/ACLManager.sol", "ACLManager"),
    "pool": ("instances/PoolInstance.sol", "PoolInstance"),
    "configurator": ("instances/PoolConfiguratorInstance.sol", "PoolConfiguratorInstance"),
    "atoken": ("instances/ATokenInstance.sol", "ATokenInstance"),
    "variable_debt": ("instances/VariableDebtTokenInstance.sol", "VariableDebtTokenInstance"),
    "strategy": ("misc/DefaultReserveInterestRateStrategyV2.sol", "DefaultReserveInterestRateStrategyV2"),
    "oracle": ("misc/AaveOracle.sol", "AaveOracle"),
    "data_provider": ("helpers/AaveProtocolDataProvider.sol", "AaveProtocolDataProvider"),
    "token": ("mocks/tokens/MintableERC20.sol", "MintableERC20"),
    "aggregator": ("mocks/oracle/CLAggregators/MockAggregator.sol", "MockAggregator"),
}
# Libraries in deploy order: FlashLoanLogic links BorrowLogic, so it comes after it.
_POOL_LIBS = {
    "3.0": (
        "SupplyLogic",
        "BorrowLogic",
        "LiquidationLogic",
        "EModeLogic",
        "BridgeLogic",
        "PoolLogic",
        "FlashLoanLogic",
    ),
    "3.6": ("SupplyLogic", "BorrowLogic", "LiquidationLogic", "PoolLogic", "FlashLoanLogic"),
}
_V36_ROOT = "@aave-dao/aave-v3-origin/src/contracts/"
_V36_REMAPPINGS = (
    "openzeppelin-contracts/contracts/=@openzeppelin/contracts/",
    "solidity-utils/contracts/=@bgd-labs/solidity-utils/src/contracts/",
)


def _v30_artifacts() -> dict[str, Artifact]:
    root = node_modules() / "@aave" / "core-v3" / "artifacts" / "contracts"
    index: dict[str, Path] = {}
    for path in root.rglob("*.json"):
        if not path.name.endswith(".dbg.json"):
            index.setdefault(path.stem, path)
    wanted = {**_V30_NAMES, **{lib: lib for lib in (*_POOL_LIBS["3.0"], "ConfiguratorLogic")}}
    out = {}
    for role, name in wanted.items():
        data = json.loads(index[name].read_text())
        out[role] = Artifact(data["abi"], data["bytecode"], data.get("linkReferences") or {})
    return out


def _v36_artifacts() -> dict[str, Artifact]:
    modules = node_modules()
    wanted = {**_V36_SOURCES}
    for lib in (*_POOL_LIBS["3.6"], "ConfiguratorLogic"):
        wanted[lib] = (f"protocol/libraries/logic/{lib}.sol", lib)
    outputs = ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences"]
    input_json = {
        "language": "Solidity",
        "sources": {
            _V36_ROOT + src: {"content": (modules / (_V36_ROOT + src)).read_text()} for src, _ in wanted.values()
        },
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "shanghai",
            "outputSelection": {_V36_ROOT + src: {name: outputs} for src, name in wanted.values()},
        },
    }
    output = compile_standard_json(input_json, remappings=_V36_REMAPPINGS)
    out = {}
    for role, (src, name) in wanted.items():
        entry = contract_output(output, _V36_ROOT + src, name)
        bytecode = entry["evm"]["bytecode"]
        out[role] = Artifact(entry["abi"], "0x" + bytecode["object"], bytecode.get("linkReferences") or {})
    return out


@functools.cache
def aave_artifacts(version: str) -> dict[str, Artifact]:
    """Return the contracts of an Aave version by role (pool, configurator, ..., library names)."""
    if version == "3.0":
        return _v30_artifacts()
    if version == "3.6":
        return _v36_artifacts()
    raise DevchainError(f"unknown Aave version {version!r}; expected one of {VERSIONS}")


class _Plan:
    """Collects one sender's transactions with precomputed CREATE addresses, so a stage is one batch."""

    def __init__(self, w3: Web3, sender: str, errors_abi: list[dict[str, Any]]) -> None:
        self.w3 = w3
        self.sender = sender
        self.errors_abi = errors_abi
        self.nonce = w3.eth.get_transaction_count(sender, "pending")  # type: ignore[arg-type]
        self.txs: list[Tx] = []

    def deploy(self, art: Artifact, args: Sequence[Any] = (), libs: dict[str, str] | None = None) -> str:
        bytecode = link_bytecode(art.bytecode, art.link_references, libs or {}) if art.link_references else art.bytecode
        data = self.w3.eth.contract(abi=art.abi, bytecode=bytecode).constructor(*args).data_in_transaction
        address = create_address(self.sender, self.nonce)
        self._add(Tx(self.sender, None, data, GAS_DEPLOY, f"deploy {address}"))
        return address

    def call(self, to: str, encoder: Calldata, fn: str, *args: Any, gas: int = GAS_ADMIN) -> None:
        self._add(Tx(self.sender, to, encoder.encode(fn, *args), gas, f"{fn}{args!r}"[:200]))

    def _add(self, tx: Tx) -> None:
        self.txs.append(tx)
        self.nonce += 1

    def send(self) -> None:
        txs, self.txs = self.txs, []
        if not txs:
            return
        first = self.nonce - len(txs)
        pending = self.w3.eth.get_transaction_count(self.sender, "pending")  # type: ignore[arg-type]
        if pending != first:
            # The precomputed CREATE addresses would be wrong: someone else sent from this account meanwhile.
            raise DevchainError(f"{self.sender} nonce moved from {first} to {pending} while planning a deployment")
        send_txs(self.w3, txs, errors_abi=self.errors_abi)


def _errors_abi(arts: dict[str, Artifact]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for art in arts.values():
        for item in art.abi:
            if item.get("type") == "error":
                seen.setdefault(item["name"], item)
    return list(seen.values())


@dataclass
class AaveMarket:
    """A deployed Aave market and helpers to open and change positions in it."""

    w3: Web3
    version: str
    admin: str
    addresses_provider: str
    pool: Contract
    pool_configurator: Contract
    oracle: Contract
    data_provider: Contract
    acl_manager: str
    assets: dict[str, str]
    decimals: dict[str, int]
    tokens: dict[str, Contract]
    a_tokens: dict[str, str]
    variable_debt_tokens: dict[str, str]
    price_sources: dict[str, str]
    artifacts: dict[str, Artifact] = field(repr=False)
    _user_counter: int = field(default=0, repr=False)

    @property
    def pool_address(self) -> str:
        """Return the Pool proxy address."""
        return self.pool.address

    @functools.cached_property
    def _pool_cd(self) -> Calldata:
        return Calldata(self.artifacts["pool"].abi)

    @functools.cached_property
    def _token_cd(self) -> Calldata:
        return Calldata(self.artifacts["token"].abi)

    @functools.cached_property
    def _errors(self) -> list[dict[str, Any]]:
        return _errors_abi(self.artifacts)

    def revision(self) -> int:
        """Return the Pool's POOL_REVISION (1 for v3.0, 10 for v3.6)."""
        return int(self.pool.functions.POOL_REVISION().call())

    def account_data(self, user: str, block: int | None = None) -> tuple[int, int, int, int, int, int]:
        """Return Pool.getUserAccountData(user) pinned at block (default: the latest block number)."""
        pinned = self.w3.eth.block_number if block is None else block
        out = self.pool.functions.getUserAccountData(to_checksum_address(user)).call(block_identifier=pinned)
        return tuple(int(x) for x in out)  # type: ignore[return-value]

    def health_factor(self, user: str, block: int | None = None) -> int:
        """Return the user's health factor (1e18 = 1.0) from getUserAccountData."""
        return self.account_data(user, block)[5]

    def price(self, symbol: str, block: int | None = None) -> int:
        """Return AaveOracle.getAssetPrice for symbol (base currency units, 8 decimals)."""
        pinned = self.w3.eth.block_number if block is None else block
        return int(self.oracle.functions.getAssetPrice(self.assets[symbol]).call(block_identifier=pinned))

    def set_price(self, symbol: str, price: int) -> str:
        """Point the oracle at a new MockAggregator answering price (8 decimals); return the feed address."""
        plan = _Plan(self.w3, self.admin, self._errors)
        feed = plan.deploy(self.artifacts["aggregator"], [int(price)])
        plan.call(self.oracle.address, Calldata(self.oracle.abi), "setAssetSources", [self.assets[symbol]], [feed])
        plan.send()
        self.price_sources[symbol] = feed
        return feed

    # -- users -------------------------------------------------------------------------------------------

    def new_users(self, count: int) -> list[str]:
        """Create count fresh accounts that can send transactions on this chain, funded with ETH for gas."""
        keys = []
        for _ in range(count):
            seed = f"margin-watcher:{self.pool.address}:{self._user_counter}".encode()
            keys.append(keccak(seed))
            self._user_counter += 1
        if is_eth_tester(self.w3):
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            users = [to_checksum_address(tester.add_account("0x" + key.hex())) for key in keys]
        else:
            # anvil impersonation needs no key, so an address derived from the seed is enough.
            users = [to_checksum_address(keccak(key)[12:]) for key in keys]
        self.fund_users(users)
        return users

    def new_user(self) -> str:
        """Create one fresh funded account."""
        return self.new_users(1)[0]

    def fund_users(self, users: Sequence[str]) -> None:
        """Make users able to send: on anvil impersonate and set their ETH balance; on eth-tester send ETH."""
        users = list(dict.fromkeys(to_checksum_address(u) for u in users))
        if not users:
            return
        if is_eth_tester(self.w3):
            poor = [u for u in users if self.w3.eth.get_balance(u) < _USER_ETH // 10]
            send_txs(self.w3, [Tx(self.admin, u, "0x", 21_000, f"fund {u}", _USER_ETH) for u in poor])
            return
        # Auto-impersonation lets any address send eth_sendTransaction, with no key or signing in Python.
        rpc(self.w3, "anvil_autoImpersonateAccount", [True])
        balances = batch_rpc(self.w3, [("eth_getBalance", [u, "latest"]) for u in users])
        poor = [u for u, b in zip(users, balances, strict=True) if int(b, 16) < _USER_ETH // 10]
        if poor:
            batch_rpc(self.w3, [("anvil_setBalance", [u, hex(_USER_ETH)]) for u in poor])

    # -- positions ---------------------------------------------------------------------------------------

    def ensure_liquidity(self, needs: dict[str, int]) -> None:
        """Have the admin supply enough of each asset that needs[symbol] can be borrowed (keeps ~50% usage)."""
        plan = _Plan(self.w3, self.admin, self._errors)
        for symbol, need in needs.items():
            if need <= 0:
                continue
            asset = self.assets[symbol]
            available = int(self.tokens[symbol].functions.balanceOf(self.a_tokens[symbol]).call())
            if available >= 2 * need:
                continue
            top_up = 2 * need - available
            plan.call(asset, self._token_cd, "mint", self.admin, top_up, gas=GAS_ERC20)
            plan.call(self.pool.address, self._pool_cd, "supply", asset, top_up, self.admin, 0, gas=GAS_POOL)
        plan.send()

    def _position_txs(self, spec: PositionSpec) -> list[Tx]:
        user = to_checksum_address(spec.user)
        pool = self.pool.address
        txs = []
        for symbol, amount in spec.supplies.items():
            asset = self.assets[symbol]
            txs.append(Tx(user, asset, self._token_cd.encode("mint", user, amount), GAS_ERC20, f"{user} mint {symbol}"))
            txs.append(
                Tx(user, asset, self._token_cd.encode("approve", pool, MAX_UINT), GAS_ERC20, f"{user} approve {symbol}")
            )
            txs.append(
                Tx(
                    user,
                    pool,
                    self._pool_cd.encode("supply", asset, amount, user, 0),
                    GAS_POOL,
                    f"{user} supply {amount} {symbol}",
                )
            )
        if spec.emode:
            txs.append(
                Tx(user, pool, self._pool_cd.encode("setUserEMode", spec.emode), GAS_POOL, f"{user} eMode {spec.emode}")
            )
        for symbol, amount in spec.borrows.items():
            data = self._pool_cd.encode("borrow", self.assets[symbol], amount, VARIABLE_RATE, 0, user)
            txs.append(Tx(user, pool, data, GAS_POOL, f"{user} borrow {amount} {symbol}"))
        return txs

    def open_positions_bulk(self, specs: Iterable[PositionSpec]) -> list[str]:
        """Open many positions at once: all txs go out without per-tx waits, then every outcome is checked.

        On anvil the txs of a call share as few blocks as the gas limit allows. Returns the users in order.
        """
        specs = list(specs)
        needs: dict[str, int] = defaultdict(int)
        for spec in specs:
            for symbol, amount in spec.borrows.items():
                needs[symbol] += amount
        self.ensure_liquidity(needs)
        self.fund_users([s.user for s in specs])
        txs = [tx for spec in specs for tx in self._position_txs(spec)]
        send_txs(self.w3, txs, errors_abi=self._errors)
        return [to_checksum_address(s.user) for s in specs]

    def open_position(
        self,
        user: str | None,
        supplies: dict[str, int],
        borrows: dict[str, int] | None = None,
        emode: int = 0,
    ) -> str:
        """Mint, approve and supply, optionally enter eMode, then borrow at variable rate; return the user.

        Amounts are token base units. With user None a fresh funded account is created.
        """
        user = user or self.new_user()
        self.open_positions_bulk([PositionSpec(user, dict(supplies), dict(borrows or {}), emode)])
        return to_checksum_address(user)

    def _user_send(self, user: str, txs: Sequence[Tx | tuple[str, str, int, str]]) -> list[TxResult]:
        user = to_checksum_address(user)
        self.fund_users([user])
        built = [tx if isinstance(tx, Tx) else Tx(user, *tx) for tx in txs]
        return send_txs(self.w3, built, errors_abi=self._errors)

    def supply(self, user: str, symbol: str, amount: int) -> TxResult:
        """Mint amount of symbol to user and supply it; return the supply receipt."""
        return self._user_send(user, self._position_txs(PositionSpec(user, {symbol: amount})))[-1]

    def borrow(self, user: str, symbol: str, amount: int) -> TxResult:
        """Borrow amount of symbol at variable rate for user (topping up pool liquidity first)."""
        self.ensure_liquidity({symbol: amount})
        data = self._pool_cd.encode("borrow", self.assets[symbol], amount, VARIABLE_RATE, 0, to_checksum_address(user))
        return self._user_send(user, [(self.pool.address, data, GAS_POOL, f"borrow {amount} {symbol}")])[-1]

    def debt(self, user: str, symbol: str, block: int | None = None) -> int:
        """Return the user's variable debt in symbol (token base units) at block."""
        pinned = self.w3.eth.block_number if block is None else block
        token = self.w3.eth.contract(address=self.variable_debt_tokens[symbol], abi=self.artifacts["variable_debt"].abi)
        return int(token.functions.balanceOf(to_checksum_address(user)).call(block_identifier=pinned))

    def repay(self, user: str, symbol: str, amount: int) -> TxResult:
        """Repay amount (MAX_UINT for all) of the user's variable debt, minting the tokens needed first."""
        user = to_checksum_address(user)
        asset = self.assets[symbol]
        # Interest accrues until the repay block, so mint a margin over the current debt for a full repay.
        mint = amount if amount != MAX_UINT else self.debt(user, symbol) * 2 + 10 ** self.decimals[symbol]
        txs = [
            (asset, self._token_cd.encode("mint", user, mint), GAS_ERC20, f"mint {symbol}"),
            (asset, self._token_cd.encode("approve", self.pool.address, MAX_UINT), GAS_ERC20, f"approve {symbol}"),
            (
                self.pool.address,
                self._pool_cd.encode("repay", asset, amount, VARIABLE_RATE, user),
                GAS_POOL,
                f"repay {amount} {symbol}",
            ),
        ]
        return self._user_send(user, txs)[-1]

    def withdraw(self, user: str, symbol: str, amount: int) -> TxResult:
        """Withdraw amount (MAX_UINT for all) of the user's supplied symbol."""
        user = to_checksum_address(user)
        data = self._pool_cd.encode("withdraw", self.assets[symbol], amount, user)
        return self._user_send(user, [(self.pool.address, data, GAS_POOL, f"withdraw {amount} {symbol}")])[-1]

    def set_user_emode(self, user: str, category: int) -> TxResult:
        """Switch the user's eMode category (0 leaves eMode)."""
        data = self._pool_cd.encode("setUserEMode", category)
        return self._user_send(user, [(self.pool.address, data, GAS_POOL, f"setUserEMode {category}")])[-1]

    def user_emode(self, user: str, block: int | None = None) -> int:
        """Return the user's eMode category id."""
        pinned = self.w3.eth.block_number if block is None else block
        return int(self.pool.functions.getUserEMode(to_checksum_address(user)).call(block_identifier=pinned))


def deploy_aave(
    w3: Web3,
    version: str,
    admin: str | None = None,
    *,
    reserves: Sequence[ReserveSpec] = RESERVES,
    emode: EModeSpec | None = EMODE_STABLECOINS,
) -> AaveMarket:
    """Deploy a real Aave market of version "3.0" or "3.6" with mock tokens and feeds; admin is every admin."""
    arts = aave_artifacts(version)
    admin = to_checksum_address(admin or w3.eth.accounts[0])
    plan = _Plan(w3, admin, _errors_abi(arts))
    cd = {role: Calldata(art.abi) for role, art in arts.items()}

    # Stage 1: everything whose addresses are known from the admin's nonces alone.
    provider = plan.deploy(arts["provider"], ["Margin Watcher local market", admin])
    plan.call(provider, cd["provider"], "setACLAdmin", admin)
    acl = plan.deploy(arts["acl"], [provider])
    plan.call(provider, cd["provider"], "setACLManager", acl)
    plan.call(acl, cd["acl"], "addPoolAdmin", admin)
    libs: dict[str, str] = {}
    for lib in (*_POOL_LIBS[version], "ConfiguratorLogic"):
        libs[lib] = plan.deploy(arts[lib], libs=libs)
    if version == "3.6":
        # v3.6 has one pool-wide rate strategy, wired into the Pool implementation's constructor.
        strategy = plan.deploy(arts["strategy"], [provider])
        pool_impl = plan.deploy(arts["pool"], [provider, strategy], libs=libs)
    else:
        ray = RAY // 10_000
        rate_args = [provider, *(bps * ray for bps in RATE_BPS), 0, 0, 0, 0, 2000 * ray]
        strategy = plan.deploy(arts["strategy"], rate_args)
        pool_impl = plan.deploy(arts["pool"], [provider], libs=libs)
    # The implementations lock themselves (v3.6) or are never used directly; setPoolImpl inits the proxy.
    plan.call(provider, cd["provider"], "setPoolImpl", pool_impl)
    configurator_impl = plan.deploy(arts["configurator"], libs=libs)
    plan.call(provider, cd["provider"], "setPoolConfiguratorImpl", configurator_impl)
    assets: dict[str, str] = {}
    feeds: dict[str, str] = {}
    for r in reserves:
        assets[r.symbol] = plan.deploy(arts["token"], [f"Mock {r.symbol}", r.symbol, r.decimals])
    for r in reserves:
        feeds[r.symbol] = plan.deploy(arts["aggregator"], [r.price])
    # Base currency address(0) with unit 1e8 is how Aave's USD-denominated markets are configured.
    oracle = plan.deploy(
        arts["oracle"], [provider, list(assets.values()), list(feeds.values()), ZERO, ZERO, BASE_CURRENCY_UNIT]
    )
    plan.call(provider, cd["provider"], "setPriceOracle", oracle)
    plan.send()

    provider_c = w3.eth.contract(address=provider, abi=arts["provider"].abi)
    pool = to_checksum_address(provider_c.functions.getPool().call())
    configurator = to_checksum_address(provider_c.functions.getPoolConfigurator().call())

    # Stage 2: contracts that need the Pool proxy, then listing and risk configuration.
    data_provider = plan.deploy(arts["data_provider"], [provider])
    plan.call(provider, cd["provider"], "setPoolDataProvider", data_provider)
    if version == "3.6":
        # The treasury must be non-zero in v3.6; the admin stands in for the collector.
        atoken_impl = plan.deploy(arts["atoken"], [pool, ZERO, admin])
        vdebt_impl = plan.deploy(arts["variable_debt"], [pool, ZERO])
        rate_data = abi_encode(["uint16", "uint32", "uint32", "uint32"], list(RATE_BPS))
        inputs = [
            (
                atoken_impl,
                vdebt_impl,
                assets[r.symbol],
                f"Aave Local {r.symbol}",
                f"aLoc{r.symbol}",
                f"Aave Local Variable Debt {r.symbol}",
                f"variableDebtLoc{r.symbol}",
                b"",
                rate_data,
            )
            for r in reserves
        ]
    else:
        atoken_impl = plan.deploy(arts["atoken"], [pool])
        sdebt_impl = plan.deploy(arts["stable_debt"], [pool])
        vdebt_impl = plan.deploy(arts["variable_debt"], [pool])
        inputs = [
            (
                atoken_impl,
                sdebt_impl,
                vdebt_impl,
                r.decimals,
                strategy,
                assets[r.symbol],
                admin,
                ZERO,
                f"Aave Local {r.symbol}",
                f"aLoc{r.symbol}",
                f"Aave Local Variable Debt {r.symbol}",
                f"variableDebtLoc{r.symbol}",
                f"Aave Local Stable Debt {r.symbol}",
                f"stableDebtLoc{r.symbol}",
                b"",
            )
            for r in reserves
        ]
    for reserve_input in inputs:
        plan.call(configurator, cd["configurator"], "initReserves", [reserve_input], gas=GAS_INIT_RESERVE)
    for r in reserves:
        asset = assets[r.symbol]
        plan.call(
            configurator,
            cd["configurator"],
            "configureReserveAsCollateral",
            asset,
            r.ltv,
            r.liquidation_threshold,
            r.liquidation_bonus,
        )
        plan.call(configurator, cd["configurator"], "setReserveBorrowing", asset, True)
        plan.call(configurator, cd["configurator"], "setReserveFactor", asset, RESERVE_FACTOR_BPS)
    if emode is not None:
        e = emode
        if version == "3.6":
            plan.call(
                configurator,
                cd["configurator"],
                "setEModeCategory",
                e.category_id,
                e.ltv,
                e.liquidation_threshold,
                e.liquidation_bonus,
                e.label,
            )
            for symbol in e.assets:
                plan.call(
                    configurator, cd["configurator"], "setAssetCollateralInEMode", assets[symbol], e.category_id, True
                )
                plan.call(
                    configurator, cd["configurator"], "setAssetBorrowableInEMode", assets[symbol], e.category_id, True
                )
        else:
            # v3.0 categories may carry their own price source; address(0) keeps the reserves' own feeds.
            plan.call(
                configurator,
                cd["configurator"],
                "setEModeCategory",
                e.category_id,
                e.ltv,
                e.liquidation_threshold,
                e.liquidation_bonus,
                ZERO,
                e.label,
            )
            for symbol in e.assets:
                plan.call(configurator, cd["configurator"], "setAssetEModeCategory", assets[symbol], e.category_id)
    for r in reserves:
        # The admin tops up pool liquidity on demand; one standing approval saves a tx per top-up.
        plan.call(assets[r.symbol], cd["token"], "approve", pool, MAX_UINT, gas=GAS_ERC20)
    plan.send()

    pool_c = w3.eth.contract(address=pool, abi=arts["pool"].abi)
    data_provider_c = w3.eth.contract(address=data_provider, abi=arts["data_provider"].abi)
    a_tokens: dict[str, str] = {}
    vdebt_tokens: dict[str, str] = {}
    for symbol, asset in assets.items():
        a_token, _stable_debt, vdebt = data_provider_c.functions.getReserveTokensAddresses(asset).call()
        a_tokens[symbol] = to_checksum_address(a_token)
        vdebt_tokens[symbol] = to_checksum_address(vdebt)
    return AaveMarket(
        w3=w3,
        version=version,
        admin=admin,
        addresses_provider=provider,
        pool=pool_c,
        pool_configurator=w3.eth.contract(address=configurator, abi=arts["configurator"].abi),
        oracle=w3.eth.contract(address=oracle, abi=arts["oracle"].abi),
        data_provider=data_provider_c,
        acl_manager=acl,
        assets=assets,
        decimals={r.symbol: r.decimals for r in reserves},
        tokens={s: w3.eth.contract(address=a, abi=arts["token"].abi) for s, a in assets.items()},
        a_tokens=a_tokens,
        variable_debt_tokens=vdebt_tokens,
        price_sources=feeds,
        artifacts=arts,
    )
