"""dYdX v4 margin math as the chain does it (x/clob, x/subaccounts), in USDC quantums."""

from __future__ import annotations

from fractions import Fraction

USDC = 10**6  #: quote quantums per USDC (the chain's QuoteCurrencyAtomicResolution is -6)
PPM = 10**6


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _trunc(x: Fraction) -> int:
    """Toward zero, as Go's big.Int Quo."""
    return x.numerator // x.denominator if x >= 0 else -((-x.numerator) // x.denominator)


def notional_quantums(quantums: int, atomic_resolution: int, price: Fraction) -> int:
    """BaseToQuoteQuantums: quantums * price * 10**(atomicResolution + 6), signed, truncated toward zero.

    `price` is the oracle price in USDC per whole coin (= price * 10**exponent on chain), so the product is exact.
    """
    return _trunc(quantums * price * Fraction(10) ** (atomic_resolution + 6))


def adjusted_imf_ppm(imf_ppm: int, lower_cap: int, upper_cap: int, oi_notional: int) -> int:
    """GetAdjustedInitialMarginPpm: the open-interest-scaled initial margin fraction, in ppm (caps in quantums)."""
    if upper_cap == 0 or oi_notional <= lower_cap:
        return imf_ppm
    if oi_notional >= upper_cap:
        return PPM
    return imf_ppm + (PPM - imf_ppm) * (oi_notional - lower_cap) // (upper_cap - lower_cap)


def initial_requirement(notional: int, imf_ppm: int) -> int:
    """Initial margin of an absolute notional at an IMF in ppm, rounded up (BigMulPpm(roundUp=true))."""
    return _ceil_div(abs(notional) * imf_ppm, PPM)


def maintenance_requirement(notional: int, imf_ppm: int, fraction_ppm: int) -> int:
    """MMR = ceil(ceil(|notional| * base imf / 1e6) * maintenance fraction / 1e6): two ceilings, as the chain does."""
    return _ceil_div(initial_requirement(notional, imf_ppm) * fraction_ppm, PPM)


def is_liquidatable(net_collateral: int, mmr: int) -> bool:
    """margin.Risk.IsLiquidatable: a non-zero maintenance requirement above net collateral."""
    return mmr > 0 and mmr > net_collateral
