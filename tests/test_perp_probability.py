"""Liquidation probability of perp positions: the closed form at |ln(liquidation price / mark)| against a Monte Carlo
of the mark price itself, for a long and a short, and the cases it does not model (several assets:
tests/test_perp_boundary.py)."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from fractions import Fraction

import pytest

from tests.test_probability import walk
from watcher.model import WAD, BlockRef, PerpLeg, Position
from watcher.perp_probability import PERP_CLOSED_FORM, perp_distance, perp_driver
from watcher.probability import YEAR, first_passage, liquidation_probability, realised_volatility

ETH, BTC = "0x" + "e1" * 20, "0x" + "b1" * 20


def perp(size: int, mark: Fraction, liq: Fraction | None, index: str = ETH, market: str = "ETH/USD") -> PerpLeg:
    notional = abs(size) * int(mark)
    return PerpLeg(
        market,
        size,
        0,
        mark,
        mark,
        notional,
        notional // 100,
        Fraction(1, 100),
        margin_mode="isolated",
        liquidation_price=liq,
        details={"index_token": index},
    )


def cross(size: int, mark: int, liq: int | None, index: str, market: str) -> PerpLeg:
    """A cross-margined perp leg (`perp`'s 1 % requirement) on the asset `index`."""
    return replace(
        perp(size, Fraction(mark), None if liq is None else Fraction(liq), index, market), margin_mode="cross"
    )


def account(*legs: PerpLeg, liquidatable: bool = False) -> Position:
    return Position(
        "gmx_v2", "local", "0x" + "11" * 20, "trader", (), (), 2 * WAD, liquidatable, 10**30, "USD", BlockRef(1, 1),
        perps=legs,
    )  # fmt: skip


def mark_mc(
    mark: float, liq: float, sigma: float, horizon: float, paths: int, steps: int, seed: int
) -> tuple[float, float]:
    """An independent Monte Carlo of the mark price: P(it touches `liq` within the horizon), watched continuously
    through a Brownian bridge between steps, from above (a long) or below (a short)."""
    rng = random.Random(seed)
    s = sigma * math.sqrt(horizon / YEAR / steps)
    below = liq < mark
    hits = 0.0
    for _ in range(paths):
        price, survive = mark, 1.0
        for _ in range(steps):
            nxt = price * math.exp(s * rng.gauss(0.0, 1.0))
            if (nxt <= liq) if below else (nxt >= liq):
                survive = 0.0
                break
            a, b = abs(math.log(price / liq)), abs(math.log(nxt / liq))
            survive *= 1.0 - math.exp(-2.0 * a * b / (s * s))
            price = nxt
        hits += 1.0 - survive
    prob = hits / paths
    return prob, math.sqrt(prob * (1 - prob) / paths)


@pytest.mark.parametrize(
    ("size", "liq", "horizon"),
    [(10, Fraction(2_700), 86_400), (-10, Fraction(3_450), 7 * 86_400), (3, Fraction(2_950), 3_600)],
)
def test_perp_closed_form_matches_a_monte_carlo_of_the_mark_price(size: int, liq: Fraction, horizon: int) -> None:
    eth = walk(0.8, 2_000, seed=51, start=3_000 * 10**8)
    p = account(perp(size, Fraction(3_000), liq))
    [e] = liquidation_probability(p, {ETH: eth}, horizons=[horizon])
    vol = realised_volatility(eth)
    assert vol is not None and e.model == PERP_CLOSED_FORM and e.samples == vol.samples == 2_000
    assert e.sigma_annual == pytest.approx(vol.sigma_annual)
    assert e.probability == pytest.approx(first_passage(abs(math.log(liq / 3_000)), vol.sigma_annual, horizon))
    mc, err = mark_mc(3_000.0, float(liq), vol.sigma_annual, horizon, paths=20_000, steps=20, seed=size)
    print(
        f"{p.perps[0].side} to {liq} in {horizon}s: closed form {e.probability:.4f}, Monte Carlo {mc:.4f} +- {err:.4f}"
    )
    assert abs(e.probability - mc) < 4 * err + 1e-3


def test_two_legs_on_one_asset_are_one_driver_at_the_nearest_liquidation_price() -> None:
    eth = walk(0.6, 500, seed=52, start=3_000 * 10**8)
    near, far = perp(5, Fraction(3_000), Fraction(2_800)), perp(2, Fraction(3_000), Fraction(2_500), market="ETH/USD b")
    assert perp_driver(near) == perp_driver(far) == ETH
    assert perp_distance([near, far]) == pytest.approx(math.log(3_000 / 2_800))
    [both] = liquidation_probability(account(near, far), {ETH: eth}, horizons=[86_400])
    [alone] = liquidation_probability(account(near), {ETH: eth}, horizons=[86_400])
    assert both.probability == alone.probability and both.probability is not None and 0 < both.probability < 1


def test_perps_it_does_not_model_say_so() -> None:
    eth, btc = walk(0.6, 500, seed=53), walk(0.5, 500, seed=54)
    # a cross account where no leg has a liquidation price of its own: nothing to weigh the legs by
    two = account(cross(5, 3_000, None, ETH, "ETH/USD"), cross(1, 60_000, None, BTC, "BTC/USD"))
    for e in liquidation_probability(two, {ETH: eth, BTC: btc}):
        assert e.probability is None and e.model == "none" and "perps on several assets" in e.note
        assert "ETH/USD has no liquidation price" in e.note
    few = account(cross(5, 3_000, 2_800, ETH, "ETH/USD"), cross(1, 60_000, 50_000, BTC, "BTC/USD"))
    [short] = liquidation_probability(few, {ETH: eth, BTC: btc[:5]}, horizons=[3600])
    assert short.probability is None and "not enough price history for BTC/USD: 5 rounds" in short.note
    # a leg no price liquidates needs no history: the ETH leg alone decides, and BTC's missing candles change nothing
    iso = account(perp(5, Fraction(3_000), Fraction(2_800)), perp(1, Fraction(60_000), None, BTC, "BTC/USD"))
    [alone] = liquidation_probability(account(perp(5, Fraction(3_000), Fraction(2_800))), {ETH: eth}, horizons=[3600])
    [both] = liquidation_probability(iso, {ETH: eth}, horizons=[3600])
    assert both.probability == pytest.approx(alone.probability) and both.probability is not None
    # and one with no liquidation price on any leg reads 0 without any history at all
    assert liquidation_probability(account(perp(10, Fraction(3_000), None)), {}, horizons=[3600])[0].probability == 0
    unreachable = account(perp(5, Fraction(3_000), None))  # a fully backed long: no price liquidates it
    assert {(e.probability, e.model) for e in liquidation_probability(unreachable, {ETH: eth})} == {
        (0.0, "no price liquidates the perp legs")
    }
    gone = account(perp(5, Fraction(3_000), Fraction(3_100)), liquidatable=True)
    assert {e.probability for e in liquidation_probability(gone, {ETH: eth})} == {1.0}
    for e in liquidation_probability(account(perp(5, Fraction(3_000), Fraction(2_800))), {ETH: eth[:5]}):
        assert (
            e.probability is None
            and e.sigma_annual is None
            and "not enough price history for ETH/USD: 5 rounds" in e.note
        )


def test_a_perp_without_feed_history_takes_the_watchers_own_readings_of_its_mark() -> None:
    """A perp venue whose prices the outlook cannot read (dYdX, Synthetix, GMX without feeds): the marks the checks
    read, sampled by `Readings`, become the history under the leg's driver, and the estimate is the closed form of
    that history at the nearest leg's distance."""
    from watcher.outlook import Outlook
    from watcher.readings import Readings

    readings = Readings(every=60.0, keep=500)
    outlook = Outlook(horizons=[86_400], readings=readings)
    rng = random.Random(9)
    mark, t = 2_000.0, 1_700_000_000
    for _ in range(40):
        mark *= math.exp(0.01 * rng.gauss(0.0, 1.0))
        m = Fraction(round(mark * 100), 100)
        readings.sample([account(perp(10, m, m * Fraction(8, 10)))], t)
        t += 60
    p = account(perp(10, m, m * Fraction(8, 10)))
    [est] = outlook.cached([p], {})[p.key]
    history = readings.series[("local", "gmx_v2", ETH)]
    assert len(history) == 40 and history[-1][1] == int(m * WAD)
    vol = realised_volatility(history)
    assert vol is not None and est.sigma_annual == pytest.approx(vol.sigma_annual) and est.samples == 39
    assert est.probability == pytest.approx(first_passage(math.log(10 / 8), vol.sigma_annual, 86_400))
    assert "the watcher's own price readings, one every 60 s" in est.note, est.note
    # too few readings: null, counting them
    few = Readings(every=60.0, keep=500)
    few.sample([replace(p, label="other")], t)
    [none] = Outlook(horizons=[86_400], readings=few).cached([p], {})[p.key]
    assert none.probability is None and "1 of 21 so far" in none.note, none.note
