"""Aave v3 health factor, replayed exactly for each Pool revision's integer rounding."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

from watcher.model import BPS, WAD

RAY = 10**27
HALF_RAY = RAY // 2
SECONDS_PER_YEAR = 365 * 24 * 3600

# POOL_REVISION numbers where the arithmetic changed (v3.2 = 5, v3.4 = 8, v3.5 = 9).
REV_EMODE_BITMAP = 5  # eMode by collateral bitmap, no eMode price source, no stable debt
REV_TAYLOR_COMPOUNDING = 8  # compounded interest as a Taylor series
REV_DIRECTED_ROUNDING = 9  # balances floor (collateral) / ceil (debt), HF = floor(wadDiv(sum C*LT, D) / 1e4)
REV_ZERO_LT_COUNTS = 10  # v3.6: collateral whose reserve LT is 0 still counts (at its eMode LT, if any)
#: Revisions whose replay the test suite checks against a real Pool; others are cross-checked on every read.
VERIFIED_REVISIONS = frozenset({1, 10})


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
        return _income_index(self.liquidity_index, self.liquidity_rate, self.last_update, now)

    def debt_index(self, now: int, revision: int) -> int:
        """ReserveLogic.getNormalizedDebt at timestamp `now`."""
        if now == self.last_update:
            return self.borrow_index
        return _debt_index(self.borrow_index, self.borrow_rate, self.last_update, now, revision)


# Advice replays the health factor dozens of times at one timestamp: the indexes are worth caching.
@lru_cache(maxsize=65_536)
def _income_index(index: int, rate: int, last: int, now: int) -> int:
    return ray_mul(linear_interest(rate, last, now), index)


@lru_cache(maxsize=65_536)
def _debt_index(index: int, rate: int, last: int, now: int, revision: int) -> int:
    return ray_mul(compounded_interest(rate, last, now, revision), index)


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
    _rows: dict[tuple[int, int], dict[int, _Row]] = field(default_factory=dict, compare=False, repr=False)

    def rows(self, now: int, emode: int, prices: dict[str, int]) -> dict[int, _Row]:
        """Per reserve id: unit, price, indexes and collateral LT for one user setting.

        The rows for a timestamp and eMode are computed once per check; price overrides (what-if questions
        from the risk module) are laid over them without being cached.
        """
        key = (now, emode)
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = self._make_rows(now, emode)
        if not prices:
            return rows
        out = dict(rows)
        for rid, row in rows.items():
            price = prices.get(row.reserve.asset)
            if price is not None:
                out[rid] = replace(row, price=price)
        return out

    def _make_rows(self, now: int, emode: int) -> dict[int, _Row]:
        rev = self.revision
        category = self.emode.get(emode) if emode else None
        out = {}
        for rid, r in self.reserves_by_id.items():
            price = r.price
            in_category = category is not None and (
                (category.collateral_bitmap >> rid) & 1 if rev >= REV_EMODE_BITMAP else r.emode_category == emode
            )
            # Before v3.2 an eMode category could price all its assets from one source.
            legacy_source = category is not None and rev < REV_EMODE_BITMAP and category.price_source_price
            if legacy_source and r.emode_category == emode:
                price = category.price_source_price
            lt = category.liquidation_threshold if (category is not None and in_category) else r.liquidation_threshold
            out[rid] = _Row(r, 10**r.decimals, price, r.income_index(now), r.debt_index(now, rev), lt)
        return out


@dataclass(frozen=True, slots=True)
class _Row:
    reserve: Reserve
    unit: int
    price: int
    income_index: int
    debt_index: int
    collateral_lt: int


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


@dataclass(frozen=True, slots=True)
class AaveSimulator:
    """A user's Aave account, replaying GenericLogic.calculateUserAccountData exactly."""

    market: Market
    config: int  #: the user configuration bitmap
    emode: int  #: the user's eMode category id
    scaled_collateral: dict[int, int]  #: reserve id -> aToken scaled balance
    scaled_debt: dict[int, int]  #: reserve id -> variable debt scaled balance
    stable_debt: dict[int, int]  #: reserve id -> stable debt (revisions < 5)
    now: int  #: the timestamp interest is accrued to
    prices: dict[str, int] = field(default_factory=dict)  #: price overrides by asset

    def valued(self) -> list[Valued]:
        """Each reserve the user uses, valued with the revision's rounding."""
        rows = self.market.rows(self.now, self.emode, self.prices)
        directed = self.market.revision >= REV_DIRECTED_ROUNDING
        out: list[Valued] = []
        cfg, i = self.config, 0
        while cfg:
            borrowing, collateral = cfg & 1, (cfg >> 1) & 1
            cfg >>= 2
            row = rows.get(i)
            i += 1
            # No row means no listed reserve at that id (a dropped one): the Pool skips it too.
            if row is None or not (borrowing or collateral):
                continue
            r, unit, price = row.reserve, row.unit, row.price
            a = c_val = lt = 0
            if collateral and (self.market.revision >= REV_ZERO_LT_COUNTS or r.liquidation_threshold != 0):
                scaled = self.scaled_collateral.get(r.id, 0)
                a = scaled * row.income_index // RAY if directed else (scaled * row.income_index + HALF_RAY) // RAY
                c_val = a * price // unit
                lt = row.collateral_lt
            d = d_val = 0
            if borrowing:
                scaled = self.scaled_debt.get(r.id, 0)
                if directed:
                    d = -(-scaled * row.debt_index // RAY)
                    d_val = -(-d * price // unit)
                else:
                    d = (scaled * row.debt_index + HALF_RAY) // RAY + self.stable_debt.get(r.id, 0)
                    d_val = d * price // unit
            out.append(Valued(r, price, a, c_val, lt, d, d_val))
        return out

    def account(self, vs: list[Valued] | None = None) -> tuple[int, int, int, int | None]:
        """(total collateral, total debt, average LT in bps, health factor or None) in base units."""
        if vs is None:
            vs = self.valued()
        sum_c = sum_clt = sum_d = 0
        for v in vs:
            sum_c += v.collateral_value
            sum_clt += v.collateral_value * v.liquidation_threshold
            sum_d += v.debt_value
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
