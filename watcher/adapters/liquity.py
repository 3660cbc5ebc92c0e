"""Liquity v1 (LUSD) and v2 (BOLD) adapters: troves read in one batch, the liquidation decision replayed exactly.

v1 (one TroveManager, troves keyed by owner). A check reads, at one pinned block: TroveManager MCR/CCR (public
constants), priceFeed, stabilityPool, lusdToken, getEntireSystemColl/Debt, getTroveOwnersCount; PriceFeed.fetchPrice()
and lastGoodPrice(); StabilityPool.getTotalLUSDDeposits(); per account getEntireDebtAndColl and getTroveStatus.

The price is fetchPrice(), not lastGoodPrice(): liquidate() calls fetchPrice() itself, and lastGoodPrice only moves
when some transaction calls fetchPrice, so it can lag the oracle by hours. fetchPrice is non-view, but the batch runs
inside eth_call (the aggregator uses CALL, not STATICCALL), where it returns what a liquidation at that state would
see; its write is discarded. lastGoodPrice is reported beside it.

v1 decision (TroveManager.liquidate = batchLiquidateTroves([borrower]), deployed revision): with ICR =
floor(coll*price/debt) (LiquityMath._computeCR, coll and debt including pending redistribution rewards) and
TCR = floor(systemColl*price/systemDebt): Normal Mode (TCR >= CCR): liquidatable iff ICR < MCR. Recovery Mode
(TCR < CCR): liquidatable iff ICR < MCR, or MCR <= ICR < TCR and the trove's debt <= the Stability Pool's LUSD
(_liquidateRecoveryMode's capped offset). Either way the last trove is never liquidated, and the trove must be active.

Health is ICR / threshold in WAD (floor, so health < 1 iff ICR < threshold): the threshold is MCR, or in Recovery Mode
max(MCR, TCR) when the Stability Pool covers the trove's debt (the TCR route is then open). Outside Recovery Mode,
a trove with ICR < TCR is "recovery_exposed": if the system enters Recovery Mode (at `recovery_price`) it becomes
liquidatable while still above MCR; details carry `recovery_health` = TCR/CCR (WAD), how far the system is from that.
The simulator moves the trove's ICR and the system's TCR together, so the liquidation price it yields includes the
mode switch.

v2 (BOLD; a CollateralRegistry over collateral branches, troves are ERC-721 ids). A check reads the registry
(totalCollaterals, getToken, getTroveManager, boldToken); per branch the TroveManager (borrowerOperations, troveNFT,
shutdownTime, getEntireBranchColl/Debt, getTroveIdsCount, getUnbackedPortionPriceAndRedeemability) and the
BorrowerOperations (MCR, CCR, SCR, hasBeenShutDown: the TroveManager keeps MCR internal, BorrowerOperations and the
AddressesRegistry expose it; the AddressesRegistry is not reachable from the registry on chain); per configured trove
id getTroveStatus on every branch, then getLatestTroveData and TroveNFT.ownerOf where it lives; per account
TroveNFT.balanceOf on every branch.

The v2 price: the branch PriceFeed is internal in v2's LiquityBase (no view on the TroveManager or BorrowerOperations
gives its address), but getUnbackedPortionPriceAndRedeemability() returns the branch PriceFeed's fetchPrice() (the
very call batchLiquidateTroves makes) and whether the branch TCR >= SCR and it is not shut down; run in eth_call.

v2 decision (batchLiquidateTroves): status active or zombie, ICR = floor(entireColl*price/entireDebt) < MCR of the
branch, and not the last trove. There are no Recovery Mode liquidations; a branch whose TCR is below SCR can be shut
down (reported in details). TroveNFT is a plain ERC-721 without enumeration and trove ids are
keccak256(sender, owner, index) with the sender often a zapper, so an owner's troves cannot be listed cheaply: ids come
from the config, and an account whose balanceOf exceeds the configured troves it owns on a branch is reported as
skipped (unknown), never as fully read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import Contract, address_word, symbol_or_prefix
from watcher.adapters.base import Account, Call, ReadError, TaggedReader
from watcher.model import BPS, MAX_UINT256, WAD, BlockRef, Leg, Position
from watcher.registry import ChainProtocol, register

V1_TM = Contract("ILiquityV1TroveManager")
V1_FEED = Contract("ILiquityV1PriceFeed")
V1_SP = Contract("ILiquityV1StabilityPool")
ERC20 = Contract("IERC20Metadata")
V2_CR = Contract("ILiquityV2CollateralRegistry")
V2_TM = Contract("ILiquityV2TroveManager")
V2_BO = Contract("ILiquityV2BorrowerOperations")
V2_NFT = Contract("ILiquityV2TroveNFT")

#: the usual stand-in address for native ETH (v1's collateral is ether itself, not a token)
ETH = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"
ONE_YEAR = 365 * 24 * 3600
V1_STATUS = ("nonExistent", "active", "closedByOwner", "closedByLiquidation", "closedByRedemption")
V2_STATUS = ("nonExistent", "active", "closedByOwner", "closedByLiquidation", "zombie")
V2_LIVE = (1, 4)  #: active, zombie: the statuses batchLiquidateTroves considers
_CHEAP, _TROVE, _PRICE = 10_000, 40_000, 250_000
#: v1 LiquityBase constants (immutable contracts): MIN_NET_DEBT 1800 LUSD + LUSD_GAS_COMPENSATION 200 LUSD, the least
#: debt a repayment may leave (BorrowerOperations._requireAtLeastMinNetDebt)
V1_MIN_DEBT = 1_800 * WAD + 200 * WAD
#: v2 Constants.MIN_DEBT (every branch): repayBold caps a repayment at entireDebt - MIN_DEBT
V2_MIN_DEBT = 2_000 * WAD


def compute_cr(coll: int, debt: int, price: int) -> int:
    """LiquityMath._computeCR: floor(coll * price / debt); 2**256-1 ("infinite") without debt."""
    return coll * price // debt if debt > 0 else MAX_UINT256


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _bool(w: int) -> bool:
    if w > 1:
        raise ValueError(f"word {w} is not a bool")
    return bool(w)


# ---------------------------------------------------------------------------------------------------------------- v1


@dataclass(frozen=True, slots=True)
class LiquityV1Simulator:
    """Exact replay of v1's liquidation decision for one trove, with the ETH price or the trove changed.

    The system totals move with the trove: a price change moves ICR and TCR together, a top-up or repayment adds to
    (or takes from) the system's collateral or debt as well.
    """

    lusd: str
    coll: int  #: entire collateral, pending rewards included (wei)
    debt: int  #: entire debt, pending rewards included (LUSD wei)
    price: int  #: ETH/USD, 18 decimals (fetchPrice)
    system_coll: int
    system_debt: int
    mcr: int
    ccr: int
    sp_deposits: int  #: StabilityPool.getTotalLUSDDeposits()
    trove_count: int  #: getTroveOwnersCount()
    active: bool = True

    def icr(self) -> int:
        """The trove's ICR at this price."""
        return compute_cr(self.coll, self.debt, self.price)

    def tcr(self) -> int:
        """The system's TCR at this price."""
        return compute_cr(self.system_coll, self.system_debt, self.price)

    def recovery_mode(self) -> bool:
        """_checkRecoveryMode: TCR < CCR."""
        return self.tcr() < self.ccr

    def tcr_route_open(self) -> bool:
        """Recovery Mode liquidates MCR <= ICR < TCR only when the Stability Pool covers the whole debt."""
        return self.recovery_mode() and 0 < self.debt <= self.sp_deposits

    def threshold(self) -> int:
        """The ICR below which liquidate() succeeds: MCR, or max(MCR, TCR) while the Recovery Mode route is open."""
        return max(self.mcr, self.tcr()) if self.tcr_route_open() else self.mcr

    def liquidatable(self) -> bool:
        """liquidate(borrower) would succeed: an active trove that is not the last one, with ICR below threshold."""
        return self.active and self.debt > 0 and self.trove_count > 1 and self.icr() < self.threshold()

    def health(self) -> int | None:
        """floor(ICR * 1e18 / threshold): below 1e18 exactly when ICR < threshold; None without debt."""
        if self.debt == 0:
            return None
        return self.icr() * WAD // self.threshold()

    def recovery_price(self) -> int:
        """The least ETH price at which the system is in Normal Mode: TCR >= CCR iff systemColl*price >= CCR*debt."""
        if self.system_coll == 0:
            return MAX_UINT256
        return _ceil_div(self.ccr * self.system_debt, self.system_coll)

    def at_time(self, timestamp: int) -> LiquityV1Simulator:
        """v1 charges no interest: the same trove."""
        return self

    def with_price(self, asset: str, price: int) -> LiquityV1Simulator:
        """A new ETH price; LUSD is valued at 1 USD by the protocol, so its market price changes nothing."""
        return replace(self, price=price) if asset.lower() == ETH.lower() else self

    def with_supply(self, asset: str, amount: int) -> LiquityV1Simulator:
        """After addColl(amount): the trove's and the system's collateral grow."""
        if asset.lower() != ETH.lower():
            raise ValueError(f"{asset} is not v1's collateral (ETH)")
        return replace(self, coll=self.coll + amount, system_coll=self.system_coll + amount)

    def can_close(self) -> bool:
        """closeTrove would pass its checks: Normal Mode, not the last trove, and the TCR without it >= CCR."""
        rest = compute_cr(self.system_coll - self.coll, self.system_debt - self.debt, self.price)
        return not self.recovery_mode() and self.trove_count > 1 and rest >= self.ccr

    def with_repay(self, asset: str, amount: int) -> LiquityV1Simulator:
        """After repaying `amount` LUSD: all of the debt closes the trove (closeTrove, where it is allowed; it takes
        the debt less the 200 LUSD gas compensation, the gas pool pays the rest); otherwise repayLUSD, which v1
        refuses when it would leave net debt below MIN_NET_DEBT, so the repayment stops at the least allowed debt
        instead: health is then monotone in the amount, and the least amount reaching a target is either all of
        the debt or one that leaves >= MIN_NET_DEBT + LUSD_GAS_COMPENSATION.
        """
        if asset.lower() != self.lusd.lower():
            raise ValueError(f"{asset} is not LUSD")
        if amount >= self.debt > 0 and self.can_close():
            return replace(
                self,
                coll=0,
                debt=0,
                system_coll=self.system_coll - self.coll,
                system_debt=self.system_debt - self.debt,
                active=False,
                trove_count=self.trove_count - 1,
            )
        left = max(self.debt - amount, min(self.debt, V1_MIN_DEBT))
        return replace(self, debt=left, system_debt=self.system_debt - (self.debt - left))


class LiquityV1Reader(TaggedReader):
    """Reads Liquity v1 troves of a set of accounts, in one batch per check after the first."""

    def __init__(self, protocol: str, chain: str, trove_manager: str, accounts: Sequence[Account]) -> None:
        self.protocol = protocol
        self.chain = chain
        self.trove_manager = to_checksum_address(trove_manager)
        self.accounts = list(accounts)
        self.skipped: list[tuple[Account, str]] = []
        #: priceFeed, stabilityPool, lusdToken as the TroveManager names them; re-read every check
        self.learned: tuple[str, str, str] | None = None
        self._plan: list[tuple[Any, ...]] = []
        self._calls: list[Call] = []
        self._planned_for: object = ()

    def _add(self, tag: tuple[Any, ...], target: str, data: bytes, gas: int = _CHEAP) -> None:
        self._plan.append(tag)
        self._calls.append(Call(target, data, gas))

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        if self._planned_for == self.learned:
            return self._calls
        self._planned_for = self.learned
        self._plan, self._calls = [], []
        tm = self.trove_manager
        for name in (
            "MCR",
            "CCR",
            "priceFeed",
            "stabilityPool",
            "lusdToken",
            "getEntireSystemColl",
            "getEntireSystemDebt",
            "getTroveOwnersCount",
        ):
            self._add((name,), tm, getattr(V1_TM, name).encode())
        for acct in self.accounts:
            self._add(("trove", acct.address), tm, V1_TM.getEntireDebtAndColl.encode(acct.address), _TROVE)
            self._add(("status", acct.address), tm, V1_TM.getTroveStatus.encode(acct.address))
        if self.learned is not None:
            feed, sp, _ = self.learned
            # lastGoodPrice first: fetchPrice stores its answer there, and the batch shares one state.
            self._add(("lastGoodPrice",), feed, V1_FEED.lastGoodPrice.encode())
            self._add(("fetchPrice",), feed, V1_FEED.fetchPrice.encode(), _PRICE)
            self._add(("sp",), sp, V1_SP.getTotalLUSDDeposits.encode())
        return self._calls

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        one = {name: self._required(got, (name,), 1)[0] for name in ("MCR", "CCR", "priceFeed", "stabilityPool")}
        learned = (
            address_word(one["priceFeed"]),
            address_word(one["stabilityPool"]),
            address_word(self._word(got, "lusdToken")),
        )
        if learned != self.learned:
            self.learned = learned
            return None
        mcr, ccr = one["MCR"], one["CCR"]
        if not WAD < mcr < ccr < 10 * WAD:
            raise ReadError(f"{self.protocol}/{self.chain}: implausible MCR {mcr} / CCR {ccr}")
        system_coll = self._word(got, "getEntireSystemColl")
        system_debt = self._word(got, "getEntireSystemDebt")
        count = self._word(got, "getTroveOwnersCount")
        sp_deposits = self._word(got, "sp")
        self.skipped = []
        ok, data = got[("fetchPrice",)]
        if not ok or len(data) < 32:
            # liquidate() reverts too while fetchPrice does: the troves are unknown, not healthy.
            for acct in self.accounts:
                self.skipped.append((acct, f"{self.protocol}/{self.chain}: PriceFeed.fetchPrice reverted"))
            return []
        price = int.from_bytes(data[:32], "big")
        if price == 0:
            raise ReadError(f"{self.protocol}/{self.chain}: PriceFeed.fetchPrice answered 0")
        ok, data = got[("lastGoodPrice",)]
        last_good = int.from_bytes(data[:32], "big") if ok and len(data) >= 32 else None
        out = []
        for acct in self.accounts:
            debt, coll, pending_debt, pending_coll = self._required(got, ("trove", acct.address), 4)
            [status] = self._required(got, ("status", acct.address), 1)
            if status >= len(V1_STATUS):
                raise ValueError(f"trove status {status} is not one of v1's")
            if pending_debt > debt or pending_coll > coll or debt > system_debt or coll > system_coll:
                raise ValueError(f"trove of {acct.address} exceeds the system totals")
            sim = LiquityV1Simulator(
                lusd=self.learned[2],
                coll=coll,
                debt=debt,
                price=price,
                system_coll=system_coll,
                system_debt=system_debt,
                mcr=mcr,
                ccr=ccr,
                sp_deposits=sp_deposits,
                trove_count=count,
                active=status == 1,
            )
            extra = {"status": V1_STATUS[status], "pending_debt": pending_debt, "pending_coll": pending_coll}
            out.append(self._position(acct, sim, block, last_good, extra))
        return out

    def _word(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], name: str) -> int:
        return self._required(got, (name,), 1)[0]

    def _position(
        self, acct: Account, sim: LiquityV1Simulator, block: BlockRef, last_good: int | None, extra: Mapping[str, Any]
    ) -> Position:
        icr, tcr, rm = sim.icr(), sim.tcr(), sim.recovery_mode()
        threshold = sim.threshold()
        details: dict[str, Any] = {
            "trove_manager": self.trove_manager,
            **extra,
            "icr": icr,
            "tcr": tcr,
            "mcr": sim.mcr,
            "ccr": sim.ccr,
            "recovery_mode": rm,
            "recovery_exposed": sim.debt > 0 and icr < tcr,
            "recovery_price": sim.recovery_price(),
            "threshold": "tcr" if threshold != sim.mcr else "mcr",
            "stability_pool_lusd": sim.sp_deposits,
            "trove_count": sim.trove_count,
            "price": sim.price,
            "last_good_price": last_good,
            "price_source": "fetchPrice",
        }
        if not rm and details["recovery_exposed"]:
            details["recovery_health"] = tcr * WAD // sim.ccr
        coll = Leg(ETH, "ETH", 18, sim.coll, sim.price, sim.coll * sim.price // WAD, BPS * WAD // threshold)
        debt = Leg(sim.lusd, "LUSD", 18, sim.debt, WAD, sim.debt)
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=acct.address,
            label=acct.label,
            collateral=(coll,),
            debt=(debt,),
            health=sim.health(),
            liquidatable=sim.liquidatable(),
            base_unit=WAD,
            base_currency="USD",
            block=block,
            details=details,
            simulator=sim,
        )


def make_reader_v1(dep: Any, accounts: Sequence[Account]) -> LiquityV1Reader:
    """A v1 reader for a resolved deployment (its address is the TroveManager)."""
    return LiquityV1Reader(dep.name, dep.chain, dep.address, accounts)


# ---------------------------------------------------------------------------------------------------------------- v2


@dataclass(frozen=True, slots=True)
class LiquityV2Simulator:
    """Exact replay of v2's batchLiquidateTroves decision for one trove, with the price or the trove changed."""

    token: str  #: the branch's collateral token
    bold: str
    coll: int  #: entireColl
    debt: int  #: entireDebt (recorded + redistribution + accrued interest and batch fee)
    price: int  #: branch fetchPrice, 18 decimals
    mcr: int
    live: bool  #: status active or zombie
    trove_count: int
    weighted_debt: int  #: recordedDebt * annualInterestRate, what accrues per year (x1e18)
    now: int
    shutdown_time: int = 0

    def icr(self) -> int:
        """getCurrentICR at this price."""
        return compute_cr(self.coll, self.debt, self.price)

    def liquidatable(self) -> bool:
        """batchLiquidateTroves([id]) would succeed."""
        return self.live and self.debt > 0 and self.trove_count > 1 and self.icr() < self.mcr

    def health(self) -> int | None:
        """floor(ICR * 1e18 / MCR): below 1e18 exactly when ICR < MCR; None without debt."""
        return None if self.debt == 0 else self.icr() * WAD // self.mcr

    def at_time(self, timestamp: int) -> LiquityV2Simulator:
        """Interest accrued to `timestamp` on the recorded debt (none past a shutdown).

        The contract floors the whole period's interest at once, this adds the floored increment: the debt can read one
        wei low. A batch's management fee is not projected (LatestTroveData does not carry its rate).
        """
        if timestamp <= self.now or self.shutdown_time:
            return self
        extra = self.weighted_debt * (timestamp - self.now) // ONE_YEAR // WAD
        return replace(self, debt=self.debt + extra, now=timestamp)

    def with_price(self, asset: str, price: int) -> LiquityV2Simulator:
        """A new price of the branch's collateral; BOLD is valued at 1 USD by the protocol."""
        return replace(self, price=price) if asset.lower() == self.token.lower() else self

    def with_supply(self, asset: str, amount: int) -> LiquityV2Simulator:
        """After addColl(amount); a shut-down branch refuses it (IsShutDown), the collateral then stays."""
        if asset.lower() != self.token.lower():
            raise ValueError(f"{asset} is not this branch's collateral")
        if self.shutdown_time:
            return self
        return replace(self, coll=self.coll + amount)

    def with_repay(self, asset: str, amount: int) -> LiquityV2Simulator:
        """After repaying `amount` BOLD: all of the debt closes the trove (closeTrove; its TCR >= CCR check is not
        replayed); less is repayBold, which itself caps the repayment at entireDebt - MIN_DEBT, and which a
        shut-down branch refuses (IsShutDown).
        """
        if asset.lower() != self.bold.lower():
            raise ValueError(f"{asset} is not BOLD")
        if amount >= self.debt:
            return replace(self, debt=0)
        if self.shutdown_time:
            return self
        return replace(self, debt=max(self.debt - amount, min(self.debt, V2_MIN_DEBT)))


@dataclass(frozen=True, slots=True)
class V2Branch:
    """One collateral branch as the registry and its TroveManager name it."""

    token: str
    trove_manager: str
    borrower_operations: str | None = None
    trove_nft: str | None = None


class LiquityV2Reader(TaggedReader):
    """Reads Liquity v2 troves (configured ids, on every branch) in one batch per check after the first."""

    def __init__(
        self,
        protocol: str,
        chain: str,
        collateral_registry: str,
        accounts: Sequence[Account],
        troves: Sequence[int] = (),
        symbols: Mapping[str, str] | None = None,
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.registry = to_checksum_address(collateral_registry)
        self.accounts = list(accounts)
        self.troves = list(dict.fromkeys(int(t) for t in troves))
        self.skipped: list[tuple[Account, str]] = []
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self.count: int | None = None
        self.branches: tuple[V2Branch, ...] = ()
        #: (branch index, trove id) -> status last seen; data is read only where the trove is live
        self.status: dict[tuple[int, int], int] = {}
        self._plan: list[tuple[Any, ...]] = []
        self._calls: list[Call] = []
        self._planned_for: object = None

    def _add(self, tag: tuple[Any, ...], target: str, data: bytes, gas: int = _CHEAP) -> None:
        self._plan.append(tag)
        self._calls.append(Call(target, data, gas))

    def _key(self) -> object:
        return (self.count, self.branches, tuple(sorted(self.status.items())))

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        key = (self._key(), tuple(sorted(self.symbols)))
        if key == self._planned_for:
            return self._calls
        self._planned_for = key
        self._plan, self._calls = [], []
        self._add(("count",), self.registry, V2_CR.totalCollaterals.encode())
        self._add(("bold",), self.registry, V2_CR.boldToken.encode())
        for i in range(self.count or 0):
            self._add(("token", i), self.registry, V2_CR.getToken.encode(i))
            self._add(("tm", i), self.registry, V2_CR.getTroveManager.encode(i))
        for i, b in enumerate(self.branches):
            tm = b.trove_manager
            for name in (
                "borrowerOperations",
                "troveNFT",
                "shutdownTime",
                "getEntireBranchColl",
                "getEntireBranchDebt",
                "getTroveIdsCount",
            ):
                self._add((name, i), tm, getattr(V2_TM, name).encode())
            self._add(("price", i), tm, V2_TM.getUnbackedPortionPriceAndRedeemability.encode(), _PRICE)
            for t in self.troves:
                self._add(("status", i, t), tm, V2_TM.getTroveStatus.encode(t))
            if b.borrower_operations is None or b.trove_nft is None:
                continue
            for name in ("MCR", "CCR", "SCR", "hasBeenShutDown"):
                self._add((name, i), b.borrower_operations, getattr(V2_BO, name).encode())
            if b.token.lower() not in self.symbols:
                self._add(("symbol", i), b.token, ERC20.symbol.encode())  # once: for display only
            for acct in self.accounts:
                self._add(("balance", i, acct.address), b.trove_nft, V2_NFT.balanceOf.encode(acct.address))
            for t in self.troves:
                if self.status.get((i, t)) in V2_LIVE:
                    self._add(("trove", i, t), tm, V2_TM.getLatestTroveData.encode(t), _TROVE)
                    self._add(("owner", i, t), b.trove_nft, V2_NFT.ownerOf.encode(t))
        return self._calls

    def _word(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], *tag: Any) -> int:
        return self._required(got, tag, 1)[0]

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        count = self._word(got, "count")
        if not 0 < count <= 10:
            raise ValueError(f"totalCollaterals {count} is outside v2's 1..10")
        known = min(count, self.count or 0)
        pairs = [
            (address_word(self._word(got, "token", i)), address_word(self._word(got, "tm", i))) for i in range(known)
        ]
        branches = []
        for i, (token, tm) in enumerate(pairs):
            old = self.branches[i] if i < len(self.branches) and self.branches[i].trove_manager == tm else None
            if old is None:
                branches.append(V2Branch(token, tm))
                continue
            bo = address_word(self._word(got, "borrowerOperations", i))
            nft = address_word(self._word(got, "troveNFT", i))
            branches.append(V2Branch(token, tm, bo, nft))
        status = dict(self.status)
        for i, b in enumerate(self.branches[: len(branches)]):
            if b.trove_manager != branches[i].trove_manager:
                continue
            for t in self.troves:
                [s] = self._required(got, ("status", i, t), 1)
                if s >= len(V2_STATUS):
                    raise ValueError(f"trove status {s} is not one of v2's")
                status[(i, t)] = s
        learned = (count, tuple(branches), tuple(sorted(status.items())))
        if learned != self._key():
            self.count, self.branches, self.status = count, tuple(branches), status
            return None
        bold = address_word(self._word(got, "bold"))
        for i, b in enumerate(self.branches):
            if ("symbol", i) in got:
                self.symbols[b.token.lower()] = symbol_or_prefix(*got[("symbol", i)], b.token)
        return self._positions(got, block, bold)

    def _positions(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef, bold: str) -> list[Position]:
        self.skipped = []
        labels = {a.address.lower(): a for a in self.accounts}
        out: list[Position] = []
        for i, b in enumerate(self.branches):
            mcr, ccr, scr = (self._word(got, name, i) for name in ("MCR", "CCR", "SCR"))
            if not (WAD < mcr < 2 * WAD and WAD < ccr < 2 * WAD and WAD < scr < 2 * WAD):
                raise ReadError(f"{self.protocol}/{self.chain}: branch {i} ratios MCR {mcr} CCR {ccr} SCR {scr}")
            shut_flag = _bool(self._word(got, "hasBeenShutDown", i))
            shutdown_time = self._word(got, "shutdownTime", i)
            branch_coll = self._word(got, "getEntireBranchColl", i)
            branch_debt = self._word(got, "getEntireBranchDebt", i)
            trove_count = self._word(got, "getTroveIdsCount", i)
            live = [t for t in self.troves if self.status.get((i, t)) in V2_LIVE]
            owners: dict[int, str] = {t: address_word(self._word(got, "owner", i, t)) for t in live}
            for acct in self.accounts:
                held = self._word(got, "balance", i, acct.address)
                listed = sum(1 for o in owners.values() if o.lower() == acct.address.lower())
                if held > listed:
                    self.skipped.append(
                        (
                            acct,
                            f"{self.protocol}/{self.chain}: {acct.address} holds {held} trove NFTs on branch {i} "
                            f"({self._symbol(b.token)}), the config lists {listed}: add their ids to `troves`",
                        )
                    )
            if not live:
                continue
            ok, data = got[("price", i)]
            if not ok or len(data) < 96:
                # batchLiquidateTroves reverts as well while the branch's fetchPrice does: unknown, not healthy.
                for t in live:
                    acct = labels.get(owners[t].lower()) or Account(owners[t], owners[t][:10])
                    self.skipped.append((acct, f"{self.protocol}/{self.chain}: branch {i} fetchPrice reverted"))
                continue
            unbacked, price, redeemable = int.from_bytes(data[:32], "big"), *self._price_words(data)
            if price == 0:
                raise ReadError(f"{self.protocol}/{self.chain}: branch {i} fetchPrice answered 0")
            tcr = compute_cr(branch_coll, branch_debt, price)
            branch_details = {
                "branch": i,
                "collateral_token": b.token,
                "trove_manager": b.trove_manager,
                "mcr": mcr,
                "ccr": ccr,
                "scr": scr,
                "tcr": tcr,
                "below_ccr": tcr < ccr,  # borrowing restricted (no Recovery Mode liquidations in v2)
                "below_scr": tcr < scr,  # anyone may shut the branch down
                "shut_down": shut_flag or shutdown_time != 0,
                "shutdown_time": shutdown_time,
                "redeemable": redeemable,
                "unbacked": unbacked,
                "trove_count": trove_count,
                "price": price,
                "price_source": "fetchPrice",
            }
            for t in live:
                w = self._required(got, ("trove", i, t), 10)
                entire_debt, entire_coll = w[0], w[1]
                sim = LiquityV2Simulator(
                    token=b.token,
                    bold=bold,
                    coll=entire_coll,
                    debt=entire_debt,
                    price=price,
                    mcr=mcr,
                    live=True,
                    trove_count=trove_count,
                    weighted_debt=w[7],
                    now=block.timestamp,
                    shutdown_time=shutdown_time,
                )
                owner = owners[t]
                acct = labels.get(owner.lower()) or Account(owner, owner[:10])
                details = {
                    **branch_details,
                    "market_id": f"branch{i}:{t}",
                    "trove_id": t,
                    "status": V2_STATUS[self.status[(i, t)]],
                    "icr": sim.icr(),
                    "annual_interest_rate": w[6],
                    "accrued_interest": w[4],
                    "accrued_batch_fee": w[8],
                    "redist_debt_gain": w[2],
                    "redist_coll_gain": w[3],
                }
                out.append(self._position(acct, sim, block, details))
        return out

    @staticmethod
    def _price_words(data: bytes) -> tuple[int, bool]:
        price = int.from_bytes(data[32:64], "big")
        return price, _bool(int.from_bytes(data[64:96], "big"))

    def _symbol(self, token: str) -> str:
        return self.symbols.get(token.lower(), token[:8])

    def _position(self, acct: Account, sim: LiquityV2Simulator, block: BlockRef, details: dict[str, Any]) -> Position:
        coll = Leg(
            sim.token,
            self._symbol(sim.token),
            18,  # v2 accepts 18-decimal collaterals only (WETH and LSTs)
            sim.coll,
            sim.price,
            sim.coll * sim.price // WAD,
            BPS * WAD // sim.mcr,
        )
        debt = Leg(sim.bold, "BOLD", 18, sim.debt, WAD, sim.debt)
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=acct.address,
            label=acct.label,
            collateral=(coll,),
            debt=(debt,),
            health=sim.health(),
            liquidatable=sim.liquidatable(),
            base_unit=WAD,
            base_currency="USD",
            block=block,
            details=details,
            simulator=sim,
        )


def make_reader_v2(dep: Any, accounts: Sequence[Account]) -> LiquityV2Reader:
    """A v2 reader for a resolved deployment (its address is the CollateralRegistry; trove ids from `troves`)."""
    return LiquityV2Reader(dep.name, dep.chain, dep.address, accounts, getattr(dep, "troves", ()))


register(ChainProtocol("liquity_v1", "trove_manager", make_reader_v1))
register(ChainProtocol("liquity_v2", "collateral_registry", make_reader_v2))
