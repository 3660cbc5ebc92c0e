"""Tiered maintenance margins for perpetuals: requirements by notional, continuity at tier edges, liquidation price.

Exact arithmetic: notionals are integers in the venue's quote units (e.g. USD scaled by 1e6) and rates are rationals
(Hyperliquid's tier rate is 1 / (2 * max leverage)), so nothing here rounds until display; `fixed_decimal` is that
display, for the perp venues' details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True, slots=True)
class Tier:
    """A margin tier: from `lower_bound` notional up, maintenance rate `rate`."""

    lower_bound: int  #: notional where the tier starts (quote units)
    rate: Fraction  #: maintenance margin rate within the tier
    deduction: Fraction = Fraction(0)  #: keeps the requirement continuous at the tier's lower bound


def with_deductions(tiers: Sequence[tuple[int, Fraction]]) -> tuple[Tier, ...]:
    """Tiers with the deductions that make requirement(notional) continuous: d_n = d_{n-1} + lb_n * (r_n - r_{n-1})."""
    ordered = sorted(tiers)
    if not ordered or ordered[0][0] != 0:
        raise ValueError("the first tier must start at notional 0")
    out: list[Tier] = []
    deduction, prev_rate = Fraction(0), None
    for lower, rate in ordered:
        if prev_rate is not None:
            if rate < prev_rate:
                raise ValueError(f"tier at {lower} lowers the rate ({rate} < {prev_rate})")
            deduction += lower * (rate - prev_rate)
        out.append(Tier(lower, Fraction(rate), deduction))
        prev_rate = rate
    return tuple(out)


def tier_for(notional: int, tiers: Sequence[Tier]) -> Tier:
    """The tier a position of this notional is in."""
    chosen = tiers[0]
    for t in tiers:
        if notional >= t.lower_bound:
            chosen = t
    return chosen


def requirement(notional: int, tiers: Sequence[Tier]) -> Fraction:
    """Maintenance margin for a notional: notional * rate_n - deduction_n in its tier."""
    t = tier_for(abs(notional), tiers)
    return abs(notional) * t.rate - t.deduction


def hyperliquid_tiers(margin_table: Mapping[str, Any], unit: int = 10**6) -> tuple[Tier, ...]:
    """Tiers from a Hyperliquid marginTables entry: {"marginTiers": [{"lowerBound": "0.0", "maxLeverage": 50}, ...]}."""
    rows = []
    for tier in margin_table["marginTiers"]:
        lower = Fraction(str(tier["lowerBound"])) * unit
        if lower.denominator != 1:
            raise ValueError(f"tier lower bound {tier['lowerBound']} is finer than the unit")
        lev = tier["maxLeverage"]
        # 0 would divide by zero and a negative one gives a negative requirement (never liquidatable): malformed
        if isinstance(lev, bool) or not isinstance(lev, int) or lev <= 0:
            raise ValueError(f"tier maxLeverage {lev!r} is not a positive integer")
        rows.append((int(lower), Fraction(1, 2 * lev)))
    return with_deductions(rows)


def isolated_liquidation_price(size: int, entry: Fraction, margin: Fraction, tiers: Sequence[Tier]) -> Fraction | None:
    """Mark price at which margin + PnL equals the tiered requirement, for one isolated position.

    `size` is signed (base units, positive long), prices are quote units per base unit, and the requirement is on the
    notional |size| * price. The requirement is linear within a tier, so each tier gives one candidate price; the
    answer is the candidate whose notional lies in its own tier. None when no positive price liquidates.
    """
    if size == 0:
        return None
    s = abs(size)
    sign = 1 if size > 0 else -1
    best: Fraction | None = None
    for i, t in enumerate(tiers):
        # margin + sign*s*(p - entry) = s*p*rate - deduction
        #   ->  p * (sign*s - s*rate) = sign*s*entry - margin - deduction
        coeff = sign * s - s * t.rate
        if coeff == 0:
            continue
        p = (sign * s * entry - margin - t.deduction) / coeff
        if p <= 0:
            continue
        upper = tiers[i + 1].lower_bound if i + 1 < len(tiers) else None
        notional = s * p
        in_tier = notional >= t.lower_bound and (upper is None or notional < upper)
        # A long is liquidated below its price, a short above: keep the one met first as price moves against it.
        if in_tier and (best is None or (sign > 0 and p > best) or (sign < 0 and p < best)):
            best = p
    return best


def fixed_decimal(x: Fraction | None, places: int = 8) -> str | None:
    """A Fraction as a rounded decimal string, for JSON-safe display details only (decisions use the Fractions)."""
    if x is None:
        return None
    scaled = round(x * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"
