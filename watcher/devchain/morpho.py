"""Morpho Blue 1.0.0 on a local chain: compiled from npm @morpho-org/morpho-blue with solc-js 0.8.19, one market."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

try:  # eth-tester raises its own error for a reverting eth_call
    from eth_tester.exceptions import TransactionFailed
except ImportError:  # pragma: no cover - eth-tester is a dev extra
    TransactionFailed = ContractLogicError  # type: ignore[misc,assignment]

from watcher.devchain.deploy import Calldata, Tx, deploy_bytecode, is_eth_tester, send_txs
from watcher.devchain.node import _npm_install, cache_dir, file_lock, node_modules
from watcher.devchain.solc import compile_standard_json

# Morpho.sol pins `pragma solidity 0.8.19;`, so the repo's solc 0.8.27 cannot compile it. An npm alias in
# NODE_PACKAGES would not be recognised as installed by node.py, so this compiler lives in its own prefix.
SOLC_SPEC = "solc@0.8.19"
_ROOT = "@morpho-org/morpho-blue/src/"
_SOURCES = {
    "morpho": ("Morpho.sol", "Morpho"),
    "oracle": ("mocks/OracleMock.sol", "OracleMock"),
    "irm": ("mocks/IrmMock.sol", "IrmMock"),
    "token": ("mocks/ERC20Mock.sol", "ERC20Mock"),
}
WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
MAX_UINT = 2**256 - 1
GAS = 1_000_000


@dataclass(frozen=True, slots=True)
class Artifact:
    """ABI and creation bytecode of one contract."""

    abi: list[dict[str, Any]]
    bytecode: str


def _solc_modules() -> Path:
    """node_modules holding solc-js 0.8.19, installed once into the cache."""
    prefix = cache_dir() / "node-solc-0.8.19"
    modules = prefix / "node_modules"
    if (modules / "solc" / "package.json").is_file():
        return modules
    with file_lock(cache_dir() / "node-solc-0.8.19.lock"):
        if not (modules / "solc" / "package.json").is_file():
            _npm_install(prefix, [SOLC_SPEC])
    return modules


@functools.cache
def morpho_artifacts() -> dict[str, Artifact]:
    """Morpho, OracleMock, IrmMock and ERC20Mock by role, compiled from the npm package's sources."""
    modules = node_modules()
    outputs = ["abi", "evm.bytecode.object"]
    input_json = {
        "language": "Solidity",
        "sources": {_ROOT + src: {"content": (modules / (_ROOT + src)).read_text()} for src, _ in _SOURCES.values()},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            # 0.8.19 predates shanghai; paris is its newest target and every local chain runs it.
            "evmVersion": "paris",
            "outputSelection": {_ROOT + src: {name: outputs} for src, name in _SOURCES.values()},
        },
    }
    output = compile_standard_json(input_json, compiler_dir=_solc_modules())
    out = {}
    for role, (src, name) in _SOURCES.items():
        entry = output["contracts"][_ROOT + src][name]
        out[role] = Artifact(entry["abi"], "0x" + entry["evm"]["bytecode"]["object"])
    return out


def market_id(params: tuple[str, str, str, str, int]) -> str:
    """Morpho's market id: keccak256(abi.encode(MarketParams)), as 0x-hex."""
    return "0x" + keccak(abi_encode(["(address,address,address,address,uint256)"], [params])).hex()


@dataclass
class MorphoMarket:
    """A deployed Morpho Blue with one market (USDC-like loan, WETH-like collateral) and helpers."""

    w3: Web3
    owner: str
    supplier: str
    morpho: Contract
    oracle: Contract
    irm: str
    loan_token: Contract
    collateral_token: Contract
    params: tuple[str, str, str, str, int]
    artifacts: dict[str, Artifact] = field(repr=False)
    _counter: int = field(default=0, repr=False)

    @property
    def market_id(self) -> str:
        """The market's id (bytes32 hex)."""
        return market_id(self.params)

    @property
    def lltv(self) -> int:
        """The market's LLTV (WAD)."""
        return self.params[4]

    @functools.cached_property
    def _morpho_cd(self) -> Calldata:
        return Calldata(self.artifacts["morpho"].abi)

    @functools.cached_property
    def _token_cd(self) -> Calldata:
        return Calldata(self.artifacts["token"].abi)

    def new_users(self, count: int) -> list[str]:
        """Fresh accounts that can send transactions (eth-tester keys, or anvil impersonation), with ETH."""
        keys = []
        for _ in range(count):
            keys.append(keccak(f"margin-watcher:morpho:{self.morpho.address}:{self._counter}".encode()))
            self._counter += 1
        if is_eth_tester(self.w3):
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            known = set(tester.get_accounts())
            users = []
            for k in keys:
                # A snapshot revert redeploys Morpho at the same address, so the same keys come back.
                addr = to_checksum_address(Account.from_key(k).address)
                users.append(addr if addr in known else to_checksum_address(tester.add_account("0x" + k.hex())))
            send_txs(self.w3, [Tx(self.owner, u, "0x", 21_000, "fund", 10**20) for u in users])
            return users
        users = [to_checksum_address(keccak(k)[12:]) for k in keys]
        self.w3.provider.make_request("anvil_autoImpersonateAccount", [True])  # type: ignore[arg-type]
        for u in users:
            self.w3.provider.make_request("anvil_setBalance", [u, hex(10**20)])  # type: ignore[arg-type]
        return users

    def _fund_txs(self, user: str, token: Contract, amount: int) -> list[Tx]:
        # ERC20Mock.setBalance overwrites, so add to what the user already holds.
        held = int(token.functions.balanceOf(user).call())
        return [
            Tx(user, token.address, self._token_cd.encode("setBalance", user, held + amount), GAS, "setBalance"),
            Tx(user, token.address, self._token_cd.encode("approve", self.morpho.address, MAX_UINT), GAS, "approve"),
        ]

    def supply(self, user: str, assets: int) -> None:
        """`user` supplies `assets` loan tokens as lending liquidity."""
        data = self._morpho_cd.encode("supply", self.params, assets, 0, user, b"")
        txs = [*self._fund_txs(user, self.loan_token, assets), Tx(user, self.morpho.address, data, GAS, "supply")]
        send_txs(self.w3, txs, errors_abi=self.artifacts["morpho"].abi)

    def open_position(self, user: str, collateral: int, borrow: int) -> None:
        """`user` posts `collateral` (18 decimals) and borrows `borrow` loan tokens (6 decimals)."""
        txs = self._fund_txs(user, self.collateral_token, collateral)
        cd = self._morpho_cd
        txs.append(
            Tx(user, self.morpho.address, cd.encode("supplyCollateral", self.params, collateral, user, b""), GAS)
        )
        if borrow:
            txs.append(Tx(user, self.morpho.address, cd.encode("borrow", self.params, borrow, 0, user, user), GAS))
        send_txs(self.w3, txs, errors_abi=self.artifacts["morpho"].abi)

    def set_price(self, price36: int, sender: str | None = None) -> int:
        """OracleMock.setPrice (loan units per collateral unit, scaled 1e36); returns the block it was mined in."""
        data = self.oracle.encode_abi("setPrice", args=[price36])
        [r] = send_txs(self.w3, [Tx(sender or self.owner, self.oracle.address, data, GAS, "setPrice")])
        return int(r["blockNumber"])

    def price(self, block: int | str = "latest") -> int:
        """The oracle price at `block`."""
        return int(self.oracle.functions.price().call(block_identifier=block))

    def position(self, user: str, block: int | str = "latest") -> tuple[int, int, int]:
        """Morpho's position(id, user): (supplyShares, borrowShares, collateral)."""
        out = self.morpho.functions.position(self.market_id, user).call(block_identifier=block)
        return int(out[0]), int(out[1]), int(out[2])

    def liquidator(self) -> str:
        """A funded account holding loan tokens and Morpho's allowance, for liquidate() eth_calls."""
        [user] = self.new_users(1)
        send_txs(self.w3, self._fund_txs(user, self.loan_token, 10**30))
        return user

    def liquidate_data(self, borrower: str, seized_assets: int = 1, repaid_shares: int = 0) -> str:
        """Calldata of liquidate(params, borrower, seizedAssets, repaidShares, "")."""
        return self._morpho_cd.encode("liquidate", self.params, borrower, seized_assets, repaid_shares, b"")

    def can_liquidate(self, liquidator: str, borrower: str, block: int | str = "latest", seized: int = 1) -> bool:
        """Whether liquidate() of `seized` collateral units succeeds in an eth_call at `block` (False on revert)."""
        tx = {"from": liquidator, "to": self.morpho.address, "data": self.liquidate_data(borrower, seized)}
        try:
            self.w3.eth.call(tx, block_identifier=block)  # type: ignore[arg-type]
        except (ContractLogicError, TransactionFailed):
            return False
        return True


def deploy_morpho(
    w3: Web3,
    *,
    lltv: int = 860_000_000_000_000_000,
    price36: int = 2000 * 10**6 * ORACLE_PRICE_SCALE // 10**18,
    liquidity: int = 10_000_000 * 10**6,
    oracle_address: str = "",
) -> MorphoMarket:
    """Deploy Morpho Blue, its mocks and one market (LLTV `lltv`, oracle at `price36`), with `liquidity` supplied.

    With `oracle_address` the market reads that oracle instead of an OracleMock (whose price `price36` still sets,
    unread): set_price then moves nothing the market sees."""
    arts = morpho_artifacts()
    owner = to_checksum_address(w3.eth.accounts[0])
    supplier = to_checksum_address(w3.eth.accounts[1])

    def dep(role: str, *args: Any) -> Contract:
        a = arts[role]
        return deploy_bytecode(w3, a.abi, a.bytecode, args, owner, gas=8_000_000, label=f"deploy {role}")

    morpho = dep("morpho", owner)
    oracle = dep("oracle")
    irm = dep("irm")
    loan, coll = dep("token"), dep("token")
    params = (loan.address, coll.address, oracle_address or oracle.address, irm.address, lltv)
    cd = Calldata(arts["morpho"].abi)
    txs = [
        Tx(owner, morpho.address, cd.encode("enableIrm", irm.address), GAS, "enableIrm"),
        Tx(owner, morpho.address, cd.encode("enableLltv", lltv), GAS, "enableLltv"),
        Tx(owner, morpho.address, cd.encode("createMarket", params), GAS, "createMarket"),
        Tx(owner, oracle.address, oracle.encode_abi("setPrice", args=[price36]), GAS, "setPrice"),
    ]
    send_txs(w3, txs, errors_abi=arts["morpho"].abi)
    market = MorphoMarket(w3, owner, supplier, morpho, oracle, irm.address, loan, coll, params, arts)
    if liquidity:
        market.supply(supplier, liquidity)
    return market
