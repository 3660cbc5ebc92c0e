"""Liquity v1 (LUSD) adapter: troves read in one batch, the liquidation decision replayed exactly.

One TroveManager, troves keyed by owner. A check reads, at one pinned block: TroveManager MCR/CCR (public
constants), priceFeed, stabilityPool, lusdToken, getEntireSystemColl/Debt, getTroveOwnersCount; PriceFeed.fetchPrice()
and lastGoodPrice(); StabilityPool.getTotalLUSDDeposits() and getMaxAmountToOffset(); per account getEntireDebtAndColl
and getTroveStatus.

The price is fetchPrice(), not lastGoodPrice(): liquidate() calls fetchPrice() itself, and lastGoodPrice only moves
when some transaction calls fetchPrice, so it can lag the oracle by hours. fetchPrice is non-view, but the batch runs
inside eth_call (the aggregator uses CALL, not STATICCALL), where it returns what a liquidation at that state would
see; its write is discarded. lastGoodPrice is reported beside it.

The decision (TroveManager.liquidate = batchLiquidateTroves([borrower]); v1_math has both Stability Pool rules): with
ICR = floor(coll*price/debt) (LiquityMath._computeCR, coll and debt including pending redistribution rewards) and
TCR = floor(systemColl*price/systemDebt): Normal Mode (TCR >= CCR): liquidatable iff ICR < MCR. Recovery Mode
(TCR < CCR): liquidatable iff ICR < MCR, or MCR <= ICR < TCR and the trove's debt <= the LUSD the TroveManager may
offset (_liquidateRecoveryMode's capped offset): all deposits on mainnet, getMaxAmountToOffset() where the pool has it.
Either way the last trove is never liquidated, and the trove must be active.

The Stability Pool's rule is told by asking getMaxAmountToOffset(): 32 bytes mean the current source's rule (its value,
read on every check, is what the TroveManager offsets), a revert or an empty answer mean mainnet's (all deposits). A
revert makes the chain layer ask the batch again (aggregate3, one more eth_call), so a pool without it is asked once
(again when the TroveManager names another pool, or a reader starts), and later checks stay one eth_call. Details
carry the rule, the offsetable amount and, for a liquidatable trove, its route and the debt offset and redistributed.

Health is ICR / threshold in WAD (floor, so health < 1 iff ICR < threshold): the threshold is MCR, or in Recovery Mode
max(MCR, TCR) when the offsetable LUSD covers the trove's debt (the TCR route is then open). Outside Recovery Mode,
a trove with ICR < TCR is "recovery_exposed": if the system enters Recovery Mode (at `recovery_price`) it becomes
liquidatable while still above MCR; details carry `recovery_health` = TCR/CCR (WAD), how far the system is from that.
The simulator moves the trove's ICR and the system's TCR together, so the liquidation price it yields includes the
mode switch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import address_word
from watcher.adapters.base import Account, Call, ReadError, TaggedReader
from watcher.adapters.liquity.common import CHEAP, ETH, PRICE, TROVE, V1_FEED, V1_SP, V1_STATUS, V1_TM
from watcher.adapters.liquity.v1_math import LiquityV1Simulator
from watcher.model import BPS, WAD, BlockRef, Leg, Position
from watcher.registry import ChainProtocol, register

#: getMaxAmountToOffset reads two cold slots; ample gas, so that only a missing function (not a short allowance) can
#: make it fail and select mainnet's rule
SP_MAX_GAS = 60_000


class LiquityV1Reader(TaggedReader):
    """Reads Liquity v1 troves of a set of accounts, in one batch per check after the first."""

    _gas = CHEAP

    def __init__(self, protocol: str, chain: str, trove_manager: str, accounts: Sequence[Account]) -> None:
        self.protocol = protocol
        self.chain = chain
        self.trove_manager = to_checksum_address(trove_manager)
        self.accounts = list(accounts)
        self.skipped: list[tuple[Account, str]] = []
        #: priceFeed, stabilityPool, lusdToken as the TroveManager names them; re-read every check
        self.learned: tuple[str, str, str] | None = None
        #: whether that Stability Pool answers getMaxAmountToOffset (the current source's rule); None until asked
        self.sp_has_max: bool | None = None

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        if not self._replan((self.learned, self.sp_has_max)):
            return self._calls
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
            self._add(("trove", acct.address), tm, V1_TM.getEntireDebtAndColl.encode(acct.address), TROVE)
            self._add(("status", acct.address), tm, V1_TM.getTroveStatus.encode(acct.address))
        if self.learned is not None:
            feed, sp, _ = self.learned
            # lastGoodPrice first: fetchPrice stores its answer there, and the batch shares one state.
            self._add(("lastGoodPrice",), feed, V1_FEED.lastGoodPrice.encode())
            self._add(("fetchPrice",), feed, V1_FEED.fetchPrice.encode(), PRICE)
            self._add(("sp",), sp, V1_SP.getTotalLUSDDeposits.encode())
            if self.sp_has_max is not False:
                # Mainnet's pool has no such function: the call reverts there, which tells its rule apart. Asked once
                # per pool there: any revert makes the chain layer ask the whole batch again, one more eth_call.
                self._add(("spMax",), sp, V1_SP.getMaxAmountToOffset.encode(), SP_MAX_GAS)
        return self._calls

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        one = {name: self._required(got, (name,), 1)[0] for name in ("MCR", "CCR", "priceFeed", "stabilityPool")}
        learned = (
            address_word(one["priceFeed"]),
            address_word(one["stabilityPool"]),
            address_word(self._word(got, "lusdToken")),
        )
        if learned != self.learned:
            self.learned, self.sp_has_max = learned, None
            return None
        mcr, ccr = one["MCR"], one["CCR"]
        if not WAD < mcr < ccr < 10 * WAD:
            raise ReadError(f"{self.protocol}/{self.chain}: implausible MCR {mcr} / CCR {ccr}")
        system_coll = self._word(got, "getEntireSystemColl")
        system_debt = self._word(got, "getEntireSystemDebt")
        count = self._word(got, "getTroveOwnersCount")
        sp_deposits = self._word(got, "sp")
        sp_max_offset = self._max_to_offset(got, sp_deposits)
        if sp_max_offset is None and self.sp_has_max:
            # It answered before and not now: ask again in another round rather than switch rules on one answer.
            self.sp_has_max = None
            return None
        self.sp_has_max = sp_max_offset is not None
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
                sp_max_offset=sp_max_offset,
            )
            extra = {"status": V1_STATUS[status], "pending_debt": pending_debt, "pending_coll": pending_coll}
            out.append(self._position(acct, sim, block, last_good, extra))
        return out

    def _word(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], name: str) -> int:
        return self._required(got, (name,), 1)[0]

    def _max_to_offset(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], deposits: int) -> int | None:
        """getMaxAmountToOffset() where the pool answers it, None (mainnet's rule) where it reverts or is silent."""
        if ("spMax",) not in got:
            return None  # asked before: mainnet's pool
        ok, data = got[("spMax",)]
        if not ok or len(data) < 32:
            return None
        value = int.from_bytes(data[:32], "big")
        if value > deposits:
            raise ReadError(f"{self.protocol}/{self.chain}: getMaxAmountToOffset {value} exceeds deposits {deposits}")
        return value

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
            "stability_pool_rule": sim.sp_rule(),
            "stability_pool_offsetable": sim.sp_offsetable(),
            "trove_count": sim.trove_count,
            "price": sim.price,
            "last_good_price": last_good,
            "price_source": "fetchPrice",
        }
        if not rm and details["recovery_exposed"]:
            details["recovery_health"] = tcr * WAD // sim.ccr
        path = sim.path()
        if path is not None:
            details["liquidation_route"] = path.route
            details["debt_offset"] = path.debt_offset
            details["debt_redistributed"] = path.debt_redistributed
            details["empties_stability_pool"] = path.empties_pool
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


register(ChainProtocol("liquity_v1", "trove_manager", make_reader_v1))
