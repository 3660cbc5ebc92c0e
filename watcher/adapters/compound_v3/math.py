"""Comet's integer math: scales, safe64, the kinked rate model, utilization and index accrual."""

from __future__ import annotations

from dataclasses import dataclass

FACTOR_SCALE = 10**18
BASE_INDEX_SCALE = 10**15
_UINT64_MAX = 2**64 - 1


def _signed(w: int) -> int:
    """A 32-byte ABI word as a two's complement integer (int104 arrives sign-extended)."""
    return w - (1 << 256) if w >> 255 else w


def _decimals(scale: int) -> int:
    """Token decimals from Comet's scale (10**decimals)."""
    d = len(str(scale)) - 1
    if scale <= 0 or 10**d != scale:
        raise ValueError(f"scale {scale} is not a power of ten")
    return d


def _safe64(n: int) -> int:
    """CometMath.safe64: Comet reverts (InvalidUInt64) past uint64; so do we, as a malformed state."""
    if n > _UINT64_MAX:
        raise ValueError(f"{n} overflows uint64, Comet's safe64 would revert")
    return n


@dataclass(frozen=True, slots=True)
class CometRates:
    """Comet's kinked rate model, per second at 1e18 (the values its rate views answer)."""

    supply_kink: int = 0
    supply_slope_low: int = 0
    supply_slope_high: int = 0
    supply_base: int = 0
    borrow_kink: int = 0
    borrow_slope_low: int = 0
    borrow_slope_high: int = 0
    borrow_base: int = 0

    @staticmethod
    def _rate(u: int, kink: int, low: int, high: int, base: int) -> int:
        if u <= kink:
            return _safe64(base + low * u // FACTOR_SCALE)
        return _safe64(base + low * kink // FACTOR_SCALE + high * (u - kink) // FACTOR_SCALE)

    def supply_rate(self, u: int) -> int:
        """getSupplyRate(utilization): base + mulFactor(slopeLow, u), plus mulFactor(slopeHigh, u - kink) above it."""
        return self._rate(u, self.supply_kink, self.supply_slope_low, self.supply_slope_high, self.supply_base)

    def borrow_rate(self, u: int) -> int:
        """getBorrowRate(utilization), the same shape with the borrow parameters."""
        return self._rate(u, self.borrow_kink, self.borrow_slope_low, self.borrow_slope_high, self.borrow_base)


def utilization(supply_index: int, borrow_index: int, total_supply_base: int, total_borrow_base: int) -> int:
    """getUtilization: floor(presentValueBorrow * 1e18 / presentValueSupply), 0 when nothing is supplied."""
    supply = total_supply_base * supply_index // BASE_INDEX_SCALE
    borrow = total_borrow_base * borrow_index // BASE_INDEX_SCALE
    return borrow * FACTOR_SCALE // supply if supply else 0


def accrued_indices(
    rates: CometRates, supply_index: int, borrow_index: int, total_supply_base: int, total_borrow_base: int, dt: int
) -> tuple[int, int]:
    """accruedInterestIndices(dt): both indexes grown by floor(index * rate * dt / 1e18), one utilization for all dt."""
    if dt <= 0:
        return supply_index, borrow_index
    u = utilization(supply_index, borrow_index, total_supply_base, total_borrow_base)
    supply = supply_index + _safe64(supply_index * (rates.supply_rate(u) * dt) // FACTOR_SCALE)
    borrow = borrow_index + _safe64(borrow_index * (rates.borrow_rate(u) * dt) // FACTOR_SCALE)
    return _safe64(supply), _safe64(borrow)
