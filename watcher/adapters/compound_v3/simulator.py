"""Comet account simulator: `isLiquidatable` replayed exactly, with prices, balances or time changed."""

from __future__ import annotations

from dataclasses import dataclass, replace

from watcher.adapters.compound_v3.math import BASE_INDEX_SCALE, FACTOR_SCALE, CometRates, accrued_indices
from watcher.model import WAD


@dataclass(frozen=True, slots=True)
class CometAsset:
    """One collateral asset as getAssetInfo answers it (factors at 1e18 scale)."""

    offset: int
    asset: str
    price_feed: str
    scale: int
    borrow_cf: int
    liquidate_cf: int
    liquidation_factor: int


@dataclass(frozen=True, slots=True)
class CometSimulator:
    """Exact replay of Comet's `isLiquidatable` for one account, with prices, balances or time changed.

    The indexes are those of the market's state: as stored at the read (isLiquidatable's), or accrued by `at_time`
    (what absorb, or any transaction that accrues first, sees at that time).
    """

    base_token: str
    base_scale: int
    base_price: int
    base_supply_index: int
    base_borrow_index: int
    assets: tuple[CometAsset, ...]
    prices: tuple[int, ...]  #: getPrice of each asset's feed, aligned with `assets`
    principal: int
    balances: tuple[int, ...]  #: userCollateral balance of each asset, aligned with `assets`
    assets_in: int  #: userBasic.assetsIn, with bits 16-23 from _reserved (CometWithExtendedAssetList)
    now: int
    rates: CometRates = CometRates()  # noqa: RUF009 (a frozen dataclass: one shared default is safe)
    total_supply_base: int = 0
    total_borrow_base: int = 0
    #: the time the indexes are accrued to (totalsBasic.lastAccrualTime as read; later after at_time)
    last_accrual: int = 0

    def debt(self) -> int:
        """presentValueBorrow: floor(|principal| * baseBorrowIndex / 1e15); 0 for a supplier."""
        return -self.principal * self.base_borrow_index // BASE_INDEX_SCALE if self.principal < 0 else 0

    def debt_value(self) -> int:
        """The debt in USD (8 decimals): floor(debt * basePrice / baseScale), as signedMulPrice truncates."""
        return self.debt() * self.base_price // self.base_scale

    def collateral_value(self, i: int) -> int:
        """mulPrice: floor(balance * price / scale) of asset i."""
        return self.balances[i] * self.prices[i] // self.assets[i].scale

    def weighted(self) -> int:
        """Sum over assetsIn of mulFactor(value, liquidateCollateralFactor), each floored as Comet does."""
        total = 0
        for i, a in enumerate(self.assets):
            if self.assets_in >> a.offset & 1:
                total += self.collateral_value(i) * a.liquidate_cf // FACTOR_SCALE
        return total

    def borrow_weighted(self) -> int:
        """The same sum with borrowCollateralFactor: isBorrowCollateralized's side (the initial weight)."""
        total = 0
        for i, a in enumerate(self.assets):
            if self.assets_in >> a.offset & 1:
                total += self.collateral_value(i) * a.borrow_cf // FACTOR_SCALE
        return total

    def liquidatable(self) -> bool:
        """Comet's verdict: principal < 0 and liquidity < 0, i.e. weighted collateral strictly below debt value."""
        return self.principal < 0 and self.weighted() < self.debt_value()

    def health(self) -> int | None:
        """floor(weighted * 1e18 / debtValue); None without debt (or with a debt worth 0, which is never liquidatable).

        Rounding down keeps the verdict exact: health < 1e18 iff weighted < debtValue iff isLiquidatable.
        """
        dv = self.debt_value()
        if self.principal >= 0 or dv == 0:
            return None
        return self.weighted() * WAD // dv

    def at_time(self, timestamp: int) -> CometSimulator:
        """The market accrued to `timestamp` as accrueInternal would: one step from `last_accrual`.

        With no transaction on the market in between, the contract accrues in one step from lastAccrualTime, so this
        is what absorb (or any accruing call) sees at `timestamp`. An earlier time leaves the indexes as they are.
        """
        if timestamp <= self.last_accrual:
            return replace(self, now=timestamp)
        supply, borrow = accrued_indices(
            self.rates,
            self.base_supply_index,
            self.base_borrow_index,
            self.total_supply_base,
            self.total_borrow_base,
            timestamp - self.last_accrual,
        )
        return replace(self, base_supply_index=supply, base_borrow_index=borrow, last_accrual=timestamp, now=timestamp)

    def with_price(self, asset: str, price: int) -> CometSimulator:
        """Replace the oracle price of a collateral asset or of the base token."""
        out = self
        if asset.lower() == self.base_token.lower():
            out = replace(out, base_price=price)
        for i, a in enumerate(self.assets):
            if a.asset.lower() == asset.lower():
                out = replace(out, prices=(*out.prices[:i], price, *out.prices[i + 1 :]))
        return out

    def with_supply(self, asset: str, amount: int) -> CometSimulator:
        """After supply(asset, amount): collateral adds to the balance and assetsIn; base supply repays debt."""
        if asset.lower() == self.base_token.lower():
            return self.with_repay(asset, amount)
        for i, a in enumerate(self.assets):
            if a.asset.lower() == asset.lower():
                balances = (*self.balances[:i], self.balances[i] + amount, *self.balances[i + 1 :])
                assets_in = self.assets_in | (1 << a.offset) if balances[i] else self.assets_in
                return replace(self, balances=balances, assets_in=assets_in)
        raise ValueError(f"{asset} is not an asset of this market")

    def with_repay(self, asset: str, amount: int) -> CometSimulator:
        """After supplying `amount` base: principal = principalValue(presentValue + amount), with Comet's rounding."""
        if asset.lower() != self.base_token.lower():
            raise ValueError(f"{asset} is not this market's base token")
        if self.principal >= 0:
            present = self.principal * self.base_supply_index // BASE_INDEX_SCALE + amount
        else:
            present = -self.debt() + amount
        if present >= 0:
            principal = present * BASE_INDEX_SCALE // self.base_supply_index  # principalValueSupply rounds down
        else:
            # principalValueBorrow rounds up, so the remaining debt never shrinks by rounding.
            principal = -((-present * BASE_INDEX_SCALE + self.base_borrow_index - 1) // self.base_borrow_index)
        # repayAndSupplyAmount: the totals move too, so a later accrual sees the new utilization.
        old = self.principal
        if principal <= 0:
            repaid, supplied = principal - old, 0
        elif old >= 0:
            repaid, supplied = 0, principal - old
        else:
            repaid, supplied = -old, principal
        return replace(
            self,
            principal=principal,
            total_supply_base=self.total_supply_base + supplied,
            # Never below 0: only a hand-built simulator without market totals gets there.
            total_borrow_base=max(0, self.total_borrow_base - repaid),
        )


def comet_decides(sim: CometSimulator, broken: set[str]) -> bool:
    """Whether Comet's isLiquidatable returns without reading any of the `broken` feeds for this account.

    Its loop goes through the assets in index order and, before reading an asset's price, returns false as soon
    as the liquidity so far (minus the debt's value) is non-negative; a principal >= 0 returns false at once.
    """
    if sim.principal >= 0:
        return True
    liquidity = -sim.debt_value()
    for i, a in sorted(enumerate(sim.assets), key=lambda item: item[1].offset):
        if not sim.assets_in >> a.offset & 1:
            continue
        if liquidity >= 0:
            return True
        if a.price_feed in broken:
            return False
        liquidity += sim.collateral_value(i) * a.liquidate_cf // FACTOR_SCALE
    return True
