"""Tier math worked by hand: continuity at tier edges, the top tier, and isolated liquidation prices across tiers."""

from __future__ import annotations

from fractions import Fraction

import pytest

from watcher.margin import hyperliquid_tiers, isolated_liquidation_price, requirement, tier_for, with_deductions

USD = 10**6  # quote units: micro-dollars
# A table shaped like Hyperliquid's: 50x (1%) to $500k, 20x (2.5%) to $2M, 10x (5%) above.
TABLE = {
    "marginTiers": [
        {"lowerBound": "0.0", "maxLeverage": 50},
        {"lowerBound": "500000.0", "maxLeverage": 20},
        {"lowerBound": "2000000.0", "maxLeverage": 10},
    ]
}
TIERS = hyperliquid_tiers(TABLE)


def test_deductions_worked_by_hand() -> None:
    # d1 = 500k * (2.5% - 1%) = 7,500; d2 = 7,500 + 2M * (5% - 2.5%) = 57,500
    assert [t.deduction / USD for t in TIERS] == [0, 7_500, 57_500]
    assert [t.rate for t in TIERS] == [Fraction(1, 100), Fraction(1, 40), Fraction(1, 20)]


@pytest.mark.parametrize(("notional", "expected"), [(100_000, 1_000), (1_000_000, 17_500), (3_000_000, 92_500)])
def test_requirement_worked_by_hand(notional: int, expected: int) -> None:
    # 1M: 1M * 2.5% - 7,500 = 17,500; 3M (top tier): 3M * 5% - 57,500 = 92,500
    assert requirement(notional * USD, TIERS) == expected * USD


@pytest.mark.parametrize("edge", [500_000 * USD, 2_000_000 * USD])
def test_continuous_at_tier_edges(edge: int) -> None:
    below, at = tier_for(edge - 1, TIERS), tier_for(edge, TIERS)
    assert below != at
    assert (edge * below.rate - below.deduction) == (edge * at.rate - at.deduction) == requirement(edge, TIERS)
    assert requirement(edge - 1, TIERS) < requirement(edge, TIERS) < requirement(edge + 1, TIERS)


def test_tiers_must_start_at_zero_and_not_lower_the_rate() -> None:
    with pytest.raises(ValueError, match="start at notional 0"):
        with_deductions([(10, Fraction(1, 100))])
    with pytest.raises(ValueError, match="lowers the rate"):
        with_deductions([(0, Fraction(1, 20)), (10, Fraction(1, 100))])


def _equity_minus_requirement(size: int, entry: Fraction, margin: Fraction, p: Fraction) -> Fraction:
    return margin + size * (p - entry) - requirement(int(abs(size) * p), TIERS)


@pytest.mark.parametrize(
    ("size", "entry", "margin"),
    [
        (10, Fraction(50_000 * USD), Fraction(50_000 * USD)),  # long 10 BTC ($500k) at 10x: stays in tier 1/2
        (40, Fraction(50_000 * USD), Fraction(200_000 * USD)),  # long $2M: liquidation crosses from tier 3 into 2
        (-40, Fraction(50_000 * USD), Fraction(200_000 * USD)),  # short $2M: liquidation above, in the top tier
        (2, Fraction(50_000 * USD), Fraction(10_000 * USD)),  # small long, first tier only
    ],
)
def test_isolated_liquidation_price_is_where_equity_meets_requirement(
    size: int, entry: Fraction, margin: Fraction
) -> None:
    p = isolated_liquidation_price(size, entry, margin, TIERS)
    assert p is not None
    # At the price, equity equals the requirement (within one quote unit of integer notional rounding).
    assert abs(_equity_minus_requirement(size, entry, margin, p)) <= abs(size)
    # A little further against the position, it is under water; a little in its favour, it is safe.
    step = Fraction(USD)  # $1
    worse, better = (p - step, p + step) if size > 0 else (p + step, p - step)
    assert (
        _equity_minus_requirement(size, entry, margin, worse)
        < 0
        < _equity_minus_requirement(size, entry, margin, better)
    )


def test_worked_example_long_crossing_a_tier() -> None:
    # Long 40 at $50,000 ($2M notional, top tier at entry) with $200k isolated margin.
    # Tier 2 (2.5%, d = 7,500): 200k + 40(p - 50k) = 40p/40 - 7.5k  ->  p(40 - 1) = 2M - 200k - 7.5k  ->  p = 45,961.54
    p = isolated_liquidation_price(40, Fraction(50_000 * USD), Fraction(200_000 * USD), TIERS)
    assert p == Fraction(1_792_500 * USD, 39)
    assert 500_000 * USD <= 40 * p < 2_000_000 * USD  # the notional at liquidation is in the middle tier


@pytest.mark.parametrize("lev", [0, -50, 2.5, True, "50", None])
def test_hyperliquid_max_leverage_must_be_a_positive_integer(lev: object) -> None:
    # 0 used to escape as ZeroDivisionError and -50 gave a negative rate (a requirement below zero: never
    # liquidatable); a float or bool is not what the API documents. All are malformed tables: ValueError.
    with pytest.raises(ValueError, match="maxLeverage"):
        hyperliquid_tiers({"marginTiers": [{"lowerBound": "0.0", "maxLeverage": lev}]})
