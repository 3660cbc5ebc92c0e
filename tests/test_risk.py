"""The risk module's search and levels, on a hand-made linear simulator where answers are known exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from watcher.model import WAD, BlockRef, Leg, Level, Position
from watcher.risk import Thresholds, advise, least_true, level_of, liquidation_price


@pytest.mark.parametrize("seed", range(20))
def test_least_true_finds_the_boundary(seed: int) -> None:
    rng = random.Random(seed)
    boundary = rng.randrange(0, 10**30)
    calls = []

    def pred(x: int) -> bool:
        calls.append(x)
        return x >= boundary

    guess = max(0, boundary + rng.randrange(-(10**6), 10**6))
    assert least_true(pred, guess, 0, 10**31) == boundary
    assert len(calls) < 50  # a close guess costs a few dozen evaluations at most
    assert least_true(lambda x: False, 5, 0, 100) is None


@dataclass(frozen=True)
class Linear:
    """Health = sum(collateral value * LT) / debt value, floor-rounded: one collateral, one debt, no interest."""

    coll: int
    debt: int
    p_coll: int
    p_debt: int

    def health(self) -> int | None:
        d = self.debt * self.p_debt
        return None if d == 0 else self.coll * self.p_coll * 8 * WAD // (10 * d)

    def at_time(self, timestamp: int) -> Linear:
        return self

    def with_price(self, asset: str, price: int) -> Linear:
        return replace(self, **({"p_coll": price} if asset == "C" else {"p_debt": price}))

    def with_supply(self, asset: str, amount: int) -> Linear:
        return replace(self, coll=self.coll + amount)

    def with_repay(self, asset: str, amount: int) -> Linear:
        return replace(self, debt=self.debt - amount)


def _position(sim: Linear) -> Position:
    c = Leg("C", "COLL", 0, sim.coll, sim.p_coll, sim.coll * sim.p_coll, 8000)
    d = Leg("D", "DEBT", 0, sim.debt, sim.p_debt, sim.debt * sim.p_debt)
    h = sim.health()
    return Position("p", "c", "0xA", "a", (c,), (d,), h, h is not None and h < WAD, 1, "USD", BlockRef(1, 1), {}, sim)


def test_liquidation_prices_and_advice_on_a_known_position() -> None:
    sim = Linear(coll=1000, debt=1000, p_coll=2000, p_debt=1000)  # health 1.6
    pos = _position(sim)
    lp_c = liquidation_price(sim, pos.collateral[0])
    assert lp_c is not None and lp_c.falling
    # health(p) = 1000 * p * 0.8 / 1e6 < 1  <=>  p < 1250: liquidatable at 1249, safe at 1250
    assert lp_c.price == 1249 and sim.with_price("C", 1250).health() == WAD
    lp_d = liquidation_price(sim, pos.debt[0])
    assert lp_d is not None and not lp_d.falling
    # health < 1  <=>  1000 * p_debt > 1.6e6  <=>  p_debt >= 1601
    assert lp_d.price == 1601 and sim.with_price("D", 1600).health() == WAD
    assert lp_c.move_ppm == (1249 - 2000) * 1_000_000 // 2000

    adv = advise(pos, 2 * WAD)
    [top] = adv.top_ups
    [rep] = adv.repayments
    # 2.0 needs 1000 * p... coll * 2000 * 0.8 >= 2 * 1e6  <=>  coll >= 1250: add 250
    assert top.amount == 250 and top.health_after == 2 * WAD
    # 1000 * 2000 * 0.8 >= 2 * debt * 1000  <=>  debt <= 800: repay 200
    assert rep.amount == 200 and rep.feasible and rep.health_after == 2 * WAD


def test_repaying_everything_is_the_answer_when_nothing_less_will_do() -> None:
    sim = Linear(coll=1, debt=1000, p_coll=1, p_debt=1000)
    adv = advise(_position(sim), 2 * WAD)
    [rep] = adv.repayments
    assert rep.feasible and rep.amount == 1000 and rep.health_after is None


@pytest.mark.parametrize(
    ("health", "liquidatable", "level"),
    [
        (None, False, Level.OK),
        (13 * WAD // 10, False, Level.OK),
        (125 * WAD // 100, False, Level.WARN),  # at the threshold counts
        (11 * WAD // 10, False, Level.CRITICAL),
        (WAD, False, Level.CRITICAL),
        (WAD - 1, True, Level.LIQUIDATABLE),
    ],
)
def test_levels(health: int | None, liquidatable: bool, level: Level) -> None:
    t = Thresholds(warn=125 * WAD // 100, critical=11 * WAD // 10, target=15 * WAD // 10)
    pos = replace(_position(Linear(1, 1, 1, 1)), health=health, liquidatable=liquidatable)
    assert level_of(pos, t) is level
