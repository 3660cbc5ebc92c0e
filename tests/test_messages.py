"""Alert texts: perp positions show tier, rate, liquidation price and the collateral to add; degraded says how much."""

from __future__ import annotations

from fractions import Fraction

from watcher.alerts import Event
from watcher.messages import chain_message, position_message
from watcher.model import WAD, BlockRef, Leg, Level, PerpLeg, Position
from watcher.render import perp_json

USD = 10**6


def _perp_position() -> Position:
    # A tiered BTC long of 40 BTC at mark 51,000 (notional 2.04M, tier 2 at 5%, deduction 57,500: requirement
    # 44,500) that liquidates at 45,000 in tier 1; and an isolated ETH short with equity 400 over requirement 310.
    btc = PerpLeg(
        market="BTC",
        size=40 * 10**5,
        size_decimals=5,
        entry_price=Fraction(52_000),
        mark_price=Fraction(51_000),
        notional=2_040_000 * USD,
        requirement=44_500 * USD,
        rate=Fraction(1, 20),
        tier=2,
        liquidation_price=Fraction(45_000),
        liquidation_tier=1,
    )
    eth = PerpLeg(
        market="ETH",
        size=-10 * 10**4,
        size_decimals=4,
        entry_price=Fraction(3_000),
        mark_price=Fraction(3_100),
        notional=31_000 * USD,
        requirement=310 * USD,
        rate=Fraction(1, 100),
        margin_mode="isolated",
        tier=0,
        equity=400 * USD,
        liquidation_price=Fraction(3_300),
    )
    equity = 53_400 * USD  # cross: health 53,400 / 44,500 = 1.2
    return Position(
        protocol="hyperliquid",
        chain="hl",
        account="0x" + "a" * 40,
        label="trader",
        collateral=(Leg("USD", "USD", 6, equity, USD, equity, 10_000),),
        debt=(),
        health=equity * WAD // (44_500 * USD),
        liquidatable=False,
        base_unit=USD,
        base_currency="USD",
        block=BlockRef(0, 1_700_000_000),
        perps=(btc, eth),
        cross_equity=equity,
    )


def test_perp_alert_names_tier_rate_liquidation_and_the_collateral_to_add() -> None:
    p = _perp_position()
    subject, text = position_message(p, Event("fire", Level.WARN, p.health, 0.0), None, None, 3 * WAD // 2)
    assert "health 1.2000" in subject
    lines = text.splitlines()
    assert lines[1] == "Health 1.2000 · read 22:13:20 UTC"  # a venue has no block: the time it was read
    assert "BTC long 40 @ 51,000 · tier 2 MMR 5% · liq 45,000 (-11.8%, in tier 1)" in lines
    assert "ETH short 10 @ 3,100 · tier 0 MMR 1% · liq 3,300 (6.5%)" in lines
    # cross: 1.5 * 44,500 - 53,400 = 13,350; isolated ETH: 1.5 * 310 - 400 = 65
    assert lines[-1] == "To reach 1.5000: add $13,350 to cross margin and add $65 to the isolated ETH position"


def test_perp_json_carries_ratio_and_exact_prices() -> None:
    p = _perp_position()
    btc, eth = (perp_json(p, leg) for leg in p.perps)
    assert btc["margin_ratio"] == "1.2" and eth["margin_ratio"] == "1.29032258064516129"
    assert btc["liquidation_price"] == {"value": "45000", "exact": "45000"}
    assert (btc["tier"], btc["liquidation_tier"], btc["maintenance_rate"]) == (2, 1, "0.05")
    assert eth["side"] == "short" and eth["size"] == "-10" and eth["requirement_raw"] == 310 * USD


def test_degraded_message_says_how_much_is_unknown() -> None:
    subject, text = chain_message("ethereum", True, "aave_v3/ethereum: WETH feed reverted", unknown=2, read=5)
    assert subject == "WATCHER DEGRADED: 2 account(s) on ethereum cannot be read"
    assert "positions of 2 account(s) there are UNKNOWN, not healthy; 5 others were read as usual." in text
    subject, text = chain_message("ethereum", True, "every RPC failed", unknown=7, read=0)
    assert subject == "WATCHER DEGRADED: cannot read ethereum" and "positions there are UNKNOWN, not healthy." in text
