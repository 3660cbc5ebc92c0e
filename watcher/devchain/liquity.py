"""Liquity v1 and v2 STAND-IN systems on a local chain: our own LiquityV1StandIn.sol / LiquityV2StandIn.sol.

Not Liquity's code: the stand-ins expose the view ABI subset the watcher reads, with Liquity's integer math and
liquidation decisions, and admin setters; tests place troves, prices and system totals directly.
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

_SOL = Path(__file__).resolve().parent / "sol"
GAS = 1_000_000
WAD = 10**18
V1_CONTRACTS = ("LiquityV1PriceFeedStandIn", "LiquityV1StabilityPoolStandIn", "LiquityV1TroveManagerStandIn")
V2_CONTRACTS = (
    "LiquityV2PriceFeedStandIn",
    "LiquityV2AddressesRegistryStandIn",
    "LiquityV2BorrowerOperationsStandIn",
    "LiquityV2TroveManagerStandIn",
    "LiquityV2TroveNFTStandIn",
    "LiquityV2CollateralRegistryStandIn",
)


def placeholder(name: str) -> str:
    """A deterministic placeholder address (tokens, users): the stand-ins only key by address."""
    return to_checksum_address(keccak(f"margin-watcher:liquity-stand-in:{name}".encode())[12:])


@functools.cache
def liquity_stand_in_artifacts() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Compile both stand-in sources with solc-js; {contract name: (abi, creation bytecode hex)}."""
    sources = {"LiquityV1StandIn.sol": V1_CONTRACTS, "LiquityV2StandIn.sol": V2_CONTRACTS}
    input_json = {
        "language": "Solidity",
        "sources": {name: {"content": (_SOL / name).read_text()} for name in sources},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "shanghai",
            "outputSelection": {name: {c: ["abi", "evm.bytecode.object"] for c in cs} for name, cs in sources.items()},
        },
    }
    output = compile_standard_json(input_json)
    out = {}
    for source, names in sources.items():
        for name in names:
            entry = contract_output(output, source, name)
            out[name] = (entry["abi"], "0x" + entry["evm"]["bytecode"]["object"])
    return out


def _deploy(w3: Web3, admin: str, name: str, *args: Any) -> Contract:
    abi, bytecode = liquity_stand_in_artifacts()[name]
    return deploy_bytecode(w3, abi, bytecode, list(args), admin, gas=6_000_000, label=f"deploy {name}")


def _send(w3: Web3, admin: str, contract: Contract, fn: str, *args: Any) -> int:
    """One admin transaction; returns its block number."""
    data = Calldata(contract.abi).encode(fn, *args)
    [r] = send_txs(w3, [Tx(admin, contract.address, data, GAS, fn)], errors_abi=contract.abi)
    return int(r["blockNumber"])


def _reverts(w3: Web3, contract: Contract, fn: str, args: list[Any], block: int | str) -> bool:
    """Whether `fn(args)` reverts when eth_call'ed at `block` (state changes of the call are discarded)."""
    data = Calldata(contract.abi).encode(fn, *args)
    try:
        w3.eth.call({"to": contract.address, "data": data, "from": contract.w3.eth.accounts[0]}, block)
    except Exception:  # web3 raises ContractLogicError or a provider-specific error on revert
        return True
    return False


@dataclass
class LiquityV1StandIn:
    """A deployed v1 stand-in: TroveManager, PriceFeed and StabilityPool, with helpers to set state and ask it."""

    w3: Web3
    admin: str
    trove_manager: Contract
    price_feed: Contract
    stability_pool: Contract
    lusd: str = field(default_factory=lambda: placeholder("LUSD"))

    def set_price(self, price: int) -> int:
        """The ETH/USD price (18 decimals) fetchPrice answers from now on; returns the block."""
        return _send(self.w3, self.admin, self.price_feed, "setPrice", price)

    def set_price_aggregator(self, aggregator: str) -> int:
        """fetchPrice reads this Chainlink-style feed from now on, as v1's PriceFeed reads its priceAggregator."""
        return _send(self.w3, self.admin, self.price_feed, "setPriceAggregator", aggregator)

    def set_trove(self, borrower: str, debt: int, coll: int, stake: int | None = None) -> int:
        """Open or overwrite an active trove (stake = coll unless given)."""
        return _send(
            self.w3, self.admin, self.trove_manager, "setTrove", borrower, debt, coll, coll if stake is None else stake
        )

    def set_redistribution(self, l_eth: int, l_debt: int, default_eth: int, default_debt: int) -> int:
        """Set L_ETH / L_LUSDDebt and the default pool that backs the pending rewards."""
        return _send(
            self.w3, self.admin, self.trove_manager, "setRedistribution", l_eth, l_debt, default_eth, default_debt
        )

    def set_stability_pool(self, deposits: int) -> int:
        """Total LUSD deposits in the stability pool."""
        return _send(self.w3, self.admin, self.stability_pool, "setTotalLUSDDeposits", deposits)

    def set_current_source_rule(self, on: bool) -> int:
        """Both contracts follow the current liquity/dev source (offset at most getMaxAmountToOffset()) when on,
        mainnet's revision (offset up to all deposits, no getMaxAmountToOffset) when off."""
        _send(self.w3, self.admin, self.stability_pool, "setCurrentSourceRule", on)
        return _send(self.w3, self.admin, self.trove_manager, "setCurrentSourceRule", on)

    def set_loss_error(self, error: int) -> int:
        """The pool's lastLUSDLossError_Offset (what getMaxAmountToOffset guards against underflowing)."""
        return _send(self.w3, self.admin, self.stability_pool, "setLastLUSDLossErrorOffset", error)

    def deposits(self, block: int | str = "latest") -> int:
        """StabilityPool.getTotalLUSDDeposits() at `block`."""
        return int(self.stability_pool.functions.getTotalLUSDDeposits().call(block_identifier=block))

    def liquidate(self, borrower: str) -> tuple[int, int, int]:
        """Send liquidate(borrower) (it must succeed); (route, debt offset, debt redistributed) as the stand-in
        recorded them (route: 1 normal, 2 recovery at or below 100 %, 3 recovery below MCR, 4 recovery capped)."""
        block = _send(self.w3, self.admin, self.trove_manager, "liquidate", borrower)
        return (
            int(self.view("lastRoute", block=block)),
            int(self.view("lastDebtToOffset", block=block)),
            int(self.view("lastDebtToRedistribute", block=block)),
        )

    def view(self, fn: str, *args: Any, block: int | str = "latest") -> Any:
        """Any TroveManager view at `block`."""
        return getattr(self.trove_manager.functions, fn)(*args).call(block_identifier=block)

    def oracle_price(self, block: int | str = "latest") -> int:
        """What fetchPrice would return at `block` (eth_call, no state change)."""
        return int(self.price_feed.functions.fetchPrice().call(block_identifier=block))

    def can_liquidate(self, borrower: str, block: int | str = "latest") -> bool:
        """Whether the stand-in's liquidate(borrower) succeeds at `block`."""
        return not _reverts(self.w3, self.trove_manager, "liquidate", [borrower], block)


def deploy_liquity_v1_stand_in(
    w3: Web3, price: int = 2_000 * WAD, current_source_rule: bool = False
) -> LiquityV1StandIn:
    """Deploy the v1 stand-in: PriceFeed at `price`, an empty StabilityPool, the TroveManager; mainnet's Stability
    Pool rule unless `current_source_rule`."""
    admin = to_checksum_address(w3.eth.accounts[0])
    feed = _deploy(w3, admin, "LiquityV1PriceFeedStandIn", price)
    sp = _deploy(w3, admin, "LiquityV1StabilityPoolStandIn")
    lusd = placeholder("LUSD")
    tm = _deploy(w3, admin, "LiquityV1TroveManagerStandIn", feed.address, sp.address, lusd)
    _send(w3, admin, sp, "setTroveManager", tm.address)
    system = LiquityV1StandIn(w3, admin, tm, feed, sp, lusd)
    if current_source_rule:
        system.set_current_source_rule(True)
    return system


@dataclass
class V2Branch:
    """One deployed v2 stand-in branch."""

    symbol: str
    token: str
    registry: Contract
    borrower_operations: Contract
    trove_manager: Contract
    price_feed: Contract
    trove_nft: Contract


@dataclass
class LiquityV2StandIn:
    """A deployed v2 stand-in: a CollateralRegistry over branches, with helpers to set state and ask it."""

    w3: Web3
    admin: str
    collateral_registry: Contract
    branches: list[V2Branch]

    def set_price(self, branch: int, price: int) -> int:
        """The branch collateral's USD price (18 decimals) that fetchPrice answers from now on."""
        return _send(self.w3, self.admin, self.branches[branch].price_feed, "setPrice", price)

    def set_eth_usd_oracle(self, branch: int, aggregator: str, staleness: int = 86_400, answered: bool = True) -> int:
        """The branch's ethUsdOracle() names this Chainlink-style feed, and its fetchPrice answers it from now on, as
        v2's WETHPriceFeed does; `answered` False: named only, as an LST branch's feed names ETH-USD too."""
        feed = self.branches[branch].price_feed
        return _send(self.w3, self.admin, feed, "setEthUsdOracle", aggregator, staleness, answered)

    def set_trove(
        self, branch: int, trove_id: int, owner: str, debt: int, coll: int, rate: int = 5 * 10**16, stake: int = -1
    ) -> int:
        """Open or overwrite a trove (recorded debt now, `rate` a year in WAD; stake = coll unless given)."""
        tm = self.branches[branch].trove_manager
        return _send(
            self.w3, self.admin, tm, "setTrove", trove_id, owner, debt, coll, coll if stake < 0 else stake, rate
        )

    def set_batch(self, branch: int, manager: str, rate: int, fee: int) -> int:
        """An interest batch's annual rate and management fee (WAD) from now on, its debt compounded to now."""
        return _send(self.w3, self.admin, self.branches[branch].trove_manager, "setBatch", manager, rate, fee)

    def set_batch_trove(
        self, branch: int, trove_id: int, owner: str, manager: str, debt: int, coll: int, stake: int = -1
    ) -> int:
        """Open a trove in `manager`'s batch holding `debt` now (stake = coll unless given)."""
        tm = self.branches[branch].trove_manager
        stake = coll if stake < 0 else stake
        return _send(self.w3, self.admin, tm, "setBatchTrove", trove_id, owner, manager, debt, coll, stake)

    def set_status(self, branch: int, trove_id: int, status: int) -> int:
        """Overwrite a trove's status (4 = zombie)."""
        return _send(self.w3, self.admin, self.branches[branch].trove_manager, "setStatus", trove_id, status)

    def shutdown(self, branch: int) -> int:
        """BorrowerOperations.shutdown(): succeeds only while the branch TCR is below SCR."""
        return _send(self.w3, self.admin, self.branches[branch].borrower_operations, "shutdown")

    def tm_view(self, branch: int, fn: str, *args: Any, block: int | str = "latest") -> Any:
        """Any TroveManager view of a branch at `block`."""
        return getattr(self.branches[branch].trove_manager.functions, fn)(*args).call(block_identifier=block)

    def mcr(self, branch: int) -> int:
        """The branch MCR as its BorrowerOperations answers it."""
        return int(self.branches[branch].borrower_operations.functions.MCR().call())

    def oracle_price(self, branch: int, block: int | str = "latest") -> int:
        """What the branch fetchPrice would return at `block`."""
        return int(self.branches[branch].price_feed.functions.fetchPrice().call(block_identifier=block)[0])

    def can_liquidate(self, branch: int, trove_id: int, block: int | str = "latest") -> bool:
        """Whether the stand-in's batchLiquidateTroves([trove_id]) succeeds at `block`."""
        return not _reverts(self.w3, self.branches[branch].trove_manager, "batchLiquidateTroves", [[trove_id]], block)


#: (symbol, CCR, MCR, SCR, price): v2's WETH and LST parameters (Constants.sol), e.g. MCR 110% and 120%.
V2_BRANCHES = (
    ("WETH", 150 * 10**16, 110 * 10**16, 110 * 10**16, 2_000 * WAD),
    ("wstETH", 160 * 10**16, 120 * 10**16, 120 * 10**16, 2_400 * WAD),
)


def deploy_liquity_v2_stand_in(
    w3: Web3, branches: tuple[tuple[str, int, int, int, int], ...] = V2_BRANCHES
) -> LiquityV2StandIn:
    """Deploy a CollateralRegistry over one stand-in branch per (symbol, CCR, MCR, SCR, price)."""
    admin = to_checksum_address(w3.eth.accounts[0])
    out = []
    for symbol, ccr, mcr, scr, price in branches:
        token = placeholder(f"token:{symbol}")
        registry = _deploy(w3, admin, "LiquityV2AddressesRegistryStandIn", ccr, mcr, 10 * 10**16, scr)
        feed = _deploy(w3, admin, "LiquityV2PriceFeedStandIn", price)
        tm = _deploy(w3, admin, "LiquityV2TroveManagerStandIn", registry.address)
        bo = _deploy(w3, admin, "LiquityV2BorrowerOperationsStandIn", registry.address)
        nft = _deploy(w3, admin, "LiquityV2TroveNFTStandIn", tm.address)
        _send(w3, admin, registry, "setAddresses", token, bo.address, tm.address, nft.address, feed.address)
        out.append(V2Branch(symbol, token, registry, bo, tm, feed, nft))
    tokens, managers = [b.token for b in out], [b.trove_manager.address for b in out]
    cr = _deploy(w3, admin, "LiquityV2CollateralRegistryStandIn", placeholder("BOLD"), tokens, managers)
    return LiquityV2StandIn(w3, admin, cr, out)
