"""Liquity v1's liquidation decision replayed for one trove, under either Stability Pool rule.

liquidate(borrower) is batchLiquidateTroves([borrower]). It reads fetchPrice() and the LUSD it may offset against
the Stability Pool: mainnet's revision (liquity/dev at the 2021 deployment) reads getTotalLUSDDeposits() and may empty
the pool; the current liquity/dev source reads StabilityPool.getMaxAmountToOffset(), all deposits but MIN_LUSD_IN_SP
(1 LUSD; all of them below it, none when the pool's loss error would underflow), so the pool is never emptied.

Where that amount decides the outcome: only Recovery Mode's TCR route (_liquidateRecoveryMode, MCR <= ICR < TCR),
which liquidates only when the whole debt is <= that amount; otherwise the trove is skipped and liquidate() reverts
"TroveManager: nothing to liquidate". With a pool within 1 LUSD above a trove's debt, mainnet liquidates it and a
current-source fork reverts. Below MCR (either mode) the verdict is the same under both rules, but the path is not:
min(debt, amount) is offset and the rest redistributed to the other troves (mainnet may empty the pool, the current
source leaves 1 LUSD and redistributes the difference); at or below ICR 100 % in Recovery Mode all of it is
redistributed. The other reverts of the path do not depend on the rule: trove not active, the last trove (Normal
Mode: "Only one trove in the system"; Recovery Mode: skipped, so "nothing to liquidate"), fetchPrice reverting.
`_requireAmountGreaterThanZero` guards redemptions only, not liquidations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from watcher.adapters.liquity.common import ETH, V1_MIN_DEBT, ceil_div, compute_cr
from watcher.model import MAX_UINT256, WAD

#: the TroveManager offsets up to StabilityPool.getTotalLUSDDeposits() (mainnet's revision)
RULE_ALL_DEPOSITS = "all_deposits"
#: the TroveManager offsets up to StabilityPool.getMaxAmountToOffset() (the current liquity/dev source)
RULE_MAX_TO_OFFSET = "max_amount_to_offset"


class LiquidationPath(NamedTuple):
    """Where liquidate() sends a trove's debt."""

    route: str  #: normal, recovery_below_100pct, recovery_below_mcr or recovery_capped
    debt_offset: int  #: cancelled against Stability Pool deposits
    debt_redistributed: int  #: moved to the other troves (pending rewards)
    empties_pool: bool  #: the offset takes every deposit (mainnet's rule only)


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
    #: StabilityPool.getMaxAmountToOffset() where the pool has it (the current liquity/dev source: all deposits but
    #: 1 LUSD); None where it does not (mainnet's revision, whose TroveManager offsets up to all deposits)
    sp_max_offset: int | None = None

    def icr(self) -> int:
        """The trove's ICR at this price."""
        return compute_cr(self.coll, self.debt, self.price)

    def tcr(self) -> int:
        """The system's TCR at this price."""
        return compute_cr(self.system_coll, self.system_debt, self.price)

    def recovery_mode(self) -> bool:
        """_checkRecoveryMode: TCR < CCR."""
        return self.tcr() < self.ccr

    def sp_rule(self) -> str:
        """Which amount the TroveManager may offset: RULE_MAX_TO_OFFSET or RULE_ALL_DEPOSITS."""
        return RULE_ALL_DEPOSITS if self.sp_max_offset is None else RULE_MAX_TO_OFFSET

    def sp_offsetable(self) -> int:
        """The LUSD batchLiquidateTroves may offset against the pool (its LUSDInStabPool / LUSDInSPForOffsets)."""
        return self.sp_deposits if self.sp_max_offset is None else self.sp_max_offset

    def tcr_route_open(self) -> bool:
        """Recovery Mode liquidates MCR <= ICR < TCR only when the offsetable LUSD covers the whole debt."""
        return self.recovery_mode() and 0 < self.debt <= self.sp_offsetable()

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

    def path(self) -> LiquidationPath | None:
        """What liquidate() would do with the trove's debt (_liquidateNormalMode / _liquidateRecoveryMode); None where
        it reverts."""
        if not self.liquidatable():
            return None
        offsetable = self.sp_offsetable()
        if not self.recovery_mode():
            route = "normal"
        elif self.icr() <= WAD:
            return LiquidationPath("recovery_below_100pct", 0, self.debt, False)
        elif self.icr() < self.mcr:
            route = "recovery_below_mcr"
        else:
            # the capped offset: the whole debt against the pool, collateral at MCR, the rest claimable surplus
            return LiquidationPath("recovery_capped", self.debt, 0, self.debt == self.sp_deposits)
        offset = min(self.debt, offsetable)
        return LiquidationPath(route, offset, self.debt - offset, offset > 0 and offset == self.sp_deposits)

    def recovery_price(self) -> int:
        """The least ETH price at which the system is in Normal Mode: TCR >= CCR iff systemColl*price >= CCR*debt."""
        if self.system_coll == 0:
            return MAX_UINT256
        return ceil_div(self.ccr * self.system_debt, self.system_coll)

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
