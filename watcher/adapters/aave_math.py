"""Aave v3 health factor, replayed exactly for each Pool revision's integer rounding."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from watcher.model import BPS, WAD

RAY = 10**27
HALF_RAY = RAY // 2
SECONDS_PER_YEAR = 365 * 24 * 3600

# POOL_REVISION numbers where the arithmetic changed (v3.2 = 5, v3.4 = 8, v3.5 = 9).
REV_EMODE_BITMAP = 5  # eMode by collateral bitmap, no eMode price source, no stable debt
REV_TAYLOR_COMPOUNDING = 8  # compounded interest as a Taylor series
REV_DIRECTED_ROUNDING = 9  # balances floor (collateral) / ceil (debt), HF = floor(wadDiv(sum C*LT, D) / 1e4)


def ray_mul(a: int, b: int) -> int:
    """WadRayMath.rayMul: half-up."""
    return (a * b + HALF_RAY) // RAY


def ray_div(a: int, b: int) -> int:
    """WadRayMath.rayDiv: half-up."""
    return (a * RAY + b // 2) // b


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def linear_interest(rate: int, last: int, now: int) -> int:
    """MathUtils.calculateLinearInterest."""
    return RAY + rate * (now - last) // SECONDS_PER_YEAR


def compounded_interest(rate: int, last: int, now: int, revision: int) -> int:
    """MathUtils.calculateCompoundedInterest, in the form the revision uses."""
    exp = now - last
    if exp == 0:
        return RAY
    if revision >= REV_TAYLOR_COMPOUNDING:
        x = rate * exp // SECONDS_PER_YEAR
        return RAY + x + ray_mul(x, x // 2 + ray_mul(x, x // 6))
    exp1 = exp - 1
    exp2 = exp - 2 if exp > 2 else 0
    base2 = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base3 = ray_mul(base2, rate) // SECONDS_PER_YEAR
    second = exp * exp1 * base2 // 2
    third = exp * exp1 * exp2 * base3 // 6
    return RAY + rate * exp // SECONDS_PER_YEAR + second + third


@dataclass(frozen=True, slots=True)
class Reserve:
    """One reserve's state at the read block (Pool.getReserveData plus the oracle price)."""

    asset: str
    symbol: str
    id: int
    decimals: int
    liquidation_threshold: int  #: bps, from the configuration bitmap
    emode_category: int  #: the reserve's eMode category (revisions before 5)
    liquidity_index: int
    liquidity_rate: int
    borrow_index: int
    borrow_rate: int
    last_update: int
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    price: int

    def income_index(self, now: int) -> int:
        """ReserveLogic.getNormalizedIncome at timestamp `now`."""
        if now == self.last_update:
            return self.liquidity_index
        return ray_mul(linear_interest(self.liquidity_rate, self.last_update, now), self.liquidity_index)

    def debt_index(self, now: int, revision: int) -> int:
        """ReserveLogic.getNormalizedDebt at timestamp `now`."""
        if now == self.last_update:
            return self.borrow_index
        factor = compounded_interest(self.borrow_rate, self.last_update, now, revision)
        return ray_mul(factor, self.borrow_index)


@dataclass(frozen=True, slots=True)
class EModeCategory:
    """An eMode category: its liquidation threshold and which reserves it covers."""

    liquidation_threshold: int
    price_source_price: int = 0  #: oracle price of the category's price source (revisions before 5), 0 if none
    collateral_bitmap: int = 0  #: reserve ids whose collateral takes the eMode LT (revision 5 and later)


@dataclass(frozen=True)
class Market:
    """Everything about a Pool at one block that a health factor needs."""

    revision: int
    timestamp: int
    base_unit: int
    reserves_by_id: dict[int, Reserve]
    emode: dict[int, EModeCategory]


@dataclass(frozen=True, slots=True)
class Valued:
    """One reserve of a user's account as the Pool values it."""

    reserve: Reserve
    price: int
    collateral: int  #: token units counted as collateral (0 if not collateral)
    collateral_value: int
    liquidation_threshold: int
    debt: int  #: token units owed
    debt_value: int


@dataclass(frozen=True)
class AaveSimulator:
    """A user's Aave account, replaying GenericLogic.calculateUserAccountData exactly."""

    market: Market
    config: int  #: the user configuration bitmap
    emode: int  #: the user's eMode category id
    scaled_collateral: dict[int, int]  #: reserve id -> aToken scaled balance
    scaled_debt: dict[int, int]  #: reserve id -> variable debt scaled balance
    stable_debt: dict[int, int] = field(default_factory=dict)  #: reserve id -> stable debt (revisions < 5)
    now: int = 0
    prices: dict[str, int] = field(default_factory=dict)  #: price overrides by asset

    def __post_init__(self) -> None:
        if not self.now:
            object.__setattr__(self, "now", self.market.timestamp)

    def _price(self, r: Reserve, category: EModeCategory | None) -> int:
        if r.asset in self.prices:
            return self.prices[r.asset]
        if (
            category is not None
            and self.market.revision < REV_EMODE_BITMAP
            and category.price_source_price
            and r.emode_category == self.emode
        ):
            return category.price_source_price
        return r.price

    def valued(self) -> list[Valued]:
        """Each reserve the user uses, valued with the revision's rounding."""
        m, rev = self.market, self.market.revision
        category = m.emode.get(self.emode) if self.emode else None
        directed = rev >= REV_DIRECTED_ROUNDING
        out: list[Valued] = []
        cfg, i = self.config, 0
        while cfg:
            borrowing, collateral = cfg & 1, (cfg >> 1) & 1
            cfg >>= 2
            r = m.reserves_by_id.get(i)
            i += 1
            if r is None or not (borrowing or collateral):
                continue
            unit = 10**r.decimals
            price = self._price(r, category)
            a = c_val = lt = 0
            if collateral and (directed or r.liquidation_threshold != 0):
                scaled = self.scaled_collateral.get(r.id, 0)
                idx = r.income_index(self.now)
                a = scaled * idx // RAY if directed else ray_mul(scaled, idx)
                c_val = a * price // unit
                lt = r.liquidation_threshold
                if category is not None:
                    if rev >= REV_EMODE_BITMAP:
                        if (category.collateral_bitmap >> r.id) & 1:
                            lt = category.liquidation_threshold
                    elif r.emode_category == self.emode:
                        lt = category.liquidation_threshold
            d = d_val = 0
            if borrowing:
                scaled = self.scaled_debt.get(r.id, 0)
                idx = r.debt_index(self.now, rev)
                if directed:
                    d = _ceil_div(scaled * idx, RAY)
                    d_val = _ceil_div(d * price, unit)
                else:
                    d = ray_mul(scaled, idx) + self.stable_debt.get(r.id, 0)
                    d_val = d * price // unit
            out.append(Valued(r, price, a, c_val, lt, d, d_val))
        return out

    def account(self) -> tuple[int, int, int, int | None]:
        """(total collateral, total debt, average LT in bps, health factor or None) in base units."""
        vs = self.valued()
        sum_c = sum(v.collateral_value for v in vs)
        sum_clt = sum(v.collateral_value * v.liquidation_threshold for v in vs)
        sum_d = sum(v.debt_value for v in vs)
        avg_lt = sum_clt // sum_c if sum_c else 0
        if sum_d == 0:
            return sum_c, sum_d, avg_lt, None
        if self.market.revision >= REV_DIRECTED_ROUNDING:
            hf = (sum_clt * WAD + sum_d // 2) // sum_d // BPS
        else:
            hf = (((sum_c * avg_lt + BPS // 2) // BPS) * WAD + sum_d // 2) // sum_d
        return sum_c, sum_d, avg_lt, hf

    def health(self) -> int | None:
        """The Pool's health factor (WAD), None when there is no debt."""
        return self.account()[3]

    def at_time(self, timestamp: int) -> AaveSimulator:
        """Accrue interest to `timestamp`, as the Pool would in a block at that time."""
        return replace(self, now=timestamp)

    def with_price(self, asset: str, price: int) -> AaveSimulator:
        """Replace one asset's oracle price."""
        return replace(self, prices={**self.prices, asset: price})

    def _reserve(self, asset: str) -> Reserve:
        for r in self.market.reserves_by_id.values():
            if r.asset == asset:
                return r
        raise KeyError(asset)

    def with_supply(self, asset: str, amount: int) -> AaveSimulator:
        """Supply `amount` of `asset` as collateral: mint scaled aTokens as AToken.mint rounds them."""
        r = self._reserve(asset)
        idx = r.income_index(self.now)
        minted = amount * RAY // idx if self.market.revision >= REV_DIRECTED_ROUNDING else ray_div(amount, idx)
        scaled = {**self.scaled_collateral, r.id: self.scaled_collateral.get(r.id, 0) + minted}
        return replace(self, scaled_collateral=scaled, config=self.config | (2 << (2 * r.id)))

    def with_repay(self, asset: str, amount: int) -> AaveSimulator:
        """Repay `amount` of variable debt in `asset`: burn scaled debt as VariableDebtToken.burn rounds it."""
        r = self._reserve(asset)
        idx = r.debt_index(self.now, self.market.revision)
        held = self.scaled_debt.get(r.id, 0)
        burned = amount * RAY // idx if self.market.revision >= REV_DIRECTED_ROUNDING else ray_div(amount, idx)
        left = max(held - burned, 0)
        config = self.config if left else self.config & ~(1 << (2 * r.id))
        if not left and self.stable_debt.get(r.id):
            config |= 1 << (2 * r.id)
        return replace(self, scaled_debt={**self.scaled_debt, r.id: left}, config=config)
