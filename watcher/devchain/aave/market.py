"""A deployed local Aave market: reads, prices, users, and opening or changing positions."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from watcher.devchain.aave.artifacts import Artifact
from watcher.devchain.aave.plan import _errors_abi, _Plan
from watcher.devchain.aave.specs import _USER_ETH, GAS_ERC20, GAS_POOL, MAX_UINT, VARIABLE_RATE, PositionSpec
from watcher.devchain.anvil import rpc
from watcher.devchain.deploy import Calldata, Tx, TxResult, batch_rpc, is_eth_tester, send_txs


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
