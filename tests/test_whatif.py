"""What-if shocks (watcher/whatif.py) on hand-made simulators whose answers are known exactly."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from watcher.model import WAD, BlockRef, Leg, Level, PerpLeg, Position
from watcher.risk import Thresholds
from watcher.whatif import At, Shock, ShockError, parse_at, parse_shock, simulate

TH = Thresholds(warn=125 * WAD // 100, critical=110 * WAD // 100, target=150 * WAD // 100)
WETH, USDC, DAI = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20


@dataclass(frozen=True)
class Lending:
    """Health = coll * price * 0.8 / debt, rounded down; 1 debt unit of interest per 1000 s; DAI priced by rule."""

    coll: int
    debt: int
    p_coll: int
    now: int = 1000
    born: int = 1000

    def owed(self) -> int:
        return self.debt + (self.now - self.born) // 1000

    def health(self) -> int | None:
        return None if self.owed() == 0 else self.coll * self.p_coll * 8 * WAD // (10 * self.owed())

    def liquidatable(self) -> bool:
        return self.coll * self.p_coll * 8 < 10 * self.owed()

    def at_time(self, timestamp: int) -> Lending:
        return replace(self, now=timestamp)

    def with_price(self, asset: str, price: int) -> Lending:
        return replace(self, p_coll=price) if asset == WETH else self  # the debt token is valued at 1 by rule

    def with_supply(self, asset: str, amount: int) -> Lending:
        return replace(self, coll=self.coll + amount)

    def with_repay(self, asset: str, amount: int) -> Lending:
        return replace(self, debt=self.debt - amount)


def lending(sim: Lending, account: str = "0xA", chain: str = "c", debt_asset: str = DAI) -> Position:
    c = Leg(WETH, "WETH", 0, sim.coll, sim.p_coll, sim.coll * sim.p_coll, 8000)
    d = Leg(debt_asset, "DAI", 0, sim.debt, 1, sim.debt)
    h = sim.health()
    return Position(
        "lend", chain, account, "a", (c,), (d,), h, sim.liquidatable(), 1, "USD", BlockRef(1, 1000), {}, sim
    )


def perp_without_simulator() -> Position:
    leg = PerpLeg("ETH", 10, 0, 3000, 3000, 30000, 1500, 1 / 20)  # type: ignore[arg-type]
    usd = Leg("USD", "USD", 6, 10**9, 10**6, 10**9, 10_000)
    return Position(
        "venue", "hl", "0xB", "b", (usd,), (), 2 * WAD, False, 10**6, "USD", BlockRef(0, 1000), perps=(leg,)
    )


@pytest.mark.parametrize(
    ("text", "target", "bps"),
    [
        ("WETH=-20%", "WETH", -2000),
        ("WETH:-20", "WETH", -2000),
        ("WETH -20%", "WETH", -2000),
        ("wbtc=+12.5%", "wbtc", 1250),
        ("WETH=5", "WETH", 500),
        (f"{WETH}=-99.99%", WETH, -9999),
    ],
)
def test_parse_shock_accepts_the_three_spellings(text: str, target: str, bps: int) -> None:
    assert parse_shock(text) == Shock(target, bps)


@pytest.mark.parametrize("text", ["WETH=-100%", "WETH=-120%", "WETH", "=-20%", "WETH=-2.555%", "0x12=-5%", "WETH=abc"])
def test_parse_shock_names_the_bad_text(text: str) -> None:
    with pytest.raises(ShockError, match="shock"):
        parse_shock(text)


def test_parse_at() -> None:
    assert parse_at(None) == At()
    assert parse_at("+30d") == At(ahead=30 * 86400)
    assert parse_at("+2h") == At(ahead=7200)
    assert parse_at("1700000000") == At(timestamp=1_700_000_000)
    assert parse_at("2026-01-01T00:00:00Z") == At(timestamp=1_767_225_600)
    for bad in ("30d", "+30y", "tomorrow", "+99999999w"):
        with pytest.raises(ShockError, match="at "):
            parse_at(bad)


def test_a_shock_is_exact_and_gives_verdict_level_and_advice() -> None:
    sim = Lending(coll=10, debt=20_000, p_coll=3000)  # health 1.2
    [out] = simulate([lending(sim)], [parse_shock("WETH=-20%")], None, TH)
    assert out.status == "shocked" and out.notes == ()
    assert out.moved[0].before == 3000 and out.moved[0].after == 2400  # 3000 * 8000 // 10000
    assert out.health_before == sim.health() == 12 * WAD // 10
    assert out.health_after == sim.with_price(WETH, 2400).health() == 96 * WAD // 100
    assert out.liquidatable_after and out.level_after is Level.LIQUIDATABLE
    adv = out.advice_after
    assert adv is not None
    # The least top-up restoring 1.5 on the shocked price: 10 + x with (10 + x) * 2400 * 0.8 >= 1.5 * 20000
    [up] = adv.top_ups
    assert up.amount == 6 and Lending(16, 20_000, 2400).health() >= TH.target > Lending(15, 20_000, 2400).health()
    assert adv.repayments[0].amount == 20_000 - 12_800  # 24000 * 0.8 / 1.5 = 12800 left
    # The liquidation price after the shock is the shocked simulator's boundary: 2500 * 0.8 * 10 = 20000
    assert [lp.price for lp in adv.liquidation_prices] == [2499]


def test_rounding_is_down_and_a_rise_helps() -> None:
    [out] = simulate([lending(Lending(10, 20_000, 3001))], [parse_shock("WETH=+0.01%")], None, TH)
    assert out.moved[0].after == 3001 * 10_001 // 10_000 == 3001
    [out] = simulate([lending(Lending(10, 20_000, 3000))], [parse_shock("WETH:+50")], None, TH)
    assert out.health_after == 18 * WAD // 10 and out.level_after is Level.OK and out.advice_after.top_ups == ()


def test_at_accrues_interest_through_the_simulator() -> None:
    sim = Lending(coll=10, debt=19_990, p_coll=3000)
    [out] = simulate([lending(sim)], [], parse_at("+10000s"), TH)
    assert out.at == 11_000 and out.health_after == sim.at_time(11_000).health() < out.health_before
    [late] = simulate([lending(sim)], [parse_shock("WETH=-1%")], At(timestamp=500), TH)
    assert late.status == "not shockable" and "before the read block" in late.notes[0]


def test_an_asset_priced_by_rule_is_named_not_silently_unchanged() -> None:
    [out] = simulate([lending(Lending(10, 20_000, 3000))], [parse_shock("DAI=+10%")], None, TH)
    assert out.status == "not shockable" and out.moved == ()
    assert "DAI" in out.notes[0] and "not applied" in out.notes[0]
    assert out.health_after == out.health_before


def test_a_position_without_simulator_says_so() -> None:
    outs = simulate([perp_without_simulator(), lending(Lending(10, 20_000, 3000))], [parse_shock("ETH=-10%")], None, TH)
    assert outs[0].status == "not shockable" and "no simulator" in outs[0].notes[0]
    assert outs[1].status == "unaffected" and outs[1].health_after == outs[1].health_before


def test_unknown_ambiguous_and_twice() -> None:
    one = lending(Lending(10, 20_000, 3000))
    with pytest.raises(ShockError, match="'WBTC'"):
        simulate([one], [parse_shock("WBTC=-10%")], None, TH)
    other = lending(Lending(10, 20_000, 3000), account="0xC", debt_asset=USDC)  # a second "DAI" on the same chain
    with pytest.raises(ShockError, match="ambiguous on c"):
        simulate([one, other], [parse_shock("DAI=-10%")], None, TH)
    elsewhere = lending(Lending(10, 20_000, 3000), account="0xC", chain="d", debt_asset=USDC)
    assert len(simulate([one, elsewhere], [parse_shock("DAI=-10%")], None, TH)) == 2  # one per chain: fine
    with pytest.raises(ShockError, match="twice"):
        simulate([one], [parse_shock("WETH=-10%"), parse_shock(f"{WETH}=-20%")], None, TH)


def test_by_address_and_per_position_thresholds() -> None:
    ps = [lending(Lending(10, 20_000, 3000)), lending(Lending(10, 10_000, 3000), account="0xD")]
    outs = simulate(ps, [parse_shock(f"{WETH.upper().replace('0X', '0x')}=-10%")], None, lambda p: TH)
    assert [o.moved[0].after for o in outs] == [2700, 2700]
    assert [o.level_after for o in outs] == [Level.CRITICAL, Level.OK]  # 1.08, 2.16


def test_exit_codes_follow_the_worst_level_after_then_what_could_not_be_shocked() -> None:
    from watcher.check import CheckResult
    from watcher.simulate import exit_code, outcome_json

    ok = lending(Lending(10, 10_000, 3000))  # 2.4
    shocked = simulate([ok], [parse_shock("WETH=-20%")], None, TH)  # 1.92: ok
    assert exit_code(shocked, CheckResult()) == 0
    assert exit_code(simulate([ok], [parse_shock("WETH=-50%")], None, TH), CheckResult()) == 1  # 1.2: warn
    # A shock of the rule-priced DAI cannot be applied: nothing is worse than ok, but the answer is incomplete.
    assert exit_code(simulate([ok], [parse_shock("DAI=+5%")], None, TH), CheckResult()) == 3
    doc = outcome_json(shocked[0])
    assert doc["health_after"] == {"raw": 192 * WAD // 100, "value": "1.92"} and doc["level_after"] == "ok"
    assert doc["moved"] == [{"asset": WETH, "symbol": "WETH", "before_raw": 3000, "after_raw": 2400}]
