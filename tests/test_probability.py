"""Liquidation probability: the realised sigma of a known random walk, the closed form against a Monte Carlo of the
same model, and the ratio and multi-asset cases."""

from __future__ import annotations

import math
import random

import pytest

from watcher.model import WAD, BlockRef, Leg, Position
from watcher.probability import (
    CLOSED_FORM,
    HEALTH_CLOSED_FORM,
    MIN_RETURNS,
    YEAR,
    first_passage,
    liquidation_probability,
    monte_carlo,
    realised_volatility,
)

WETH, WBTC, USDC, LINK = ("0x" + c * 40 for c in "abcd")
PRICE = 10**8  #: feed units: 8 decimals, as Chainlink's USD feeds


def walk(sigma: float, n: int, seed: int, start: int = 2_000 * PRICE, t0: int = 1_700_000_000) -> list[tuple[int, int]]:
    """A feed's round history: a driftless log random walk with annual `sigma`, rounds 30 to 90 minutes apart."""
    rng = random.Random(seed)
    t, x = t0, math.log(start)
    out = [(t, start)]
    for _ in range(n):
        dt = rng.randint(1800, 5400)
        t += dt
        x += sigma * math.sqrt(dt / YEAR) * rng.gauss(0.0, 1.0)
        out.append((t, round(math.exp(x))))
    return out


def flat(history: list[tuple[int, int]], price: int = PRICE) -> list[tuple[int, int]]:
    """A stablecoin's feed over the same rounds: it never moves."""
    return [(t, price) for t, _ in history]


def leg(asset: str, symbol: str, value: int, weight_bps: int = 0) -> Leg:
    return Leg(asset, symbol, 18, value, PRICE, value, weight_bps)


def position(health: float, collateral: list[Leg], debt: list[Leg], liquidatable: bool = False) -> Position:
    return Position(
        "aave_v3",
        "local",
        "0x" + "11" * 20,
        "alice",
        tuple(collateral),
        tuple(debt),
        round(health * WAD) if debt else None,
        liquidatable,
        PRICE,
        "USD",
        BlockRef(1, 1_700_000_000),
    )


def bridge_mc(distance: float, sigma: float, horizon: float, paths: int, steps: int, seed: int) -> tuple[float, float]:
    """An independent Monte Carlo of the first passage of a driftless Brownian motion, exact between steps."""
    rng = random.Random(seed)
    dt = horizon / YEAR / steps
    s = sigma * math.sqrt(dt)
    hits = 0.0
    for _ in range(paths):
        x, survive = distance, 1.0
        for _ in range(steps):
            y = x + s * rng.gauss(0.0, 1.0)
            if y <= 0:
                survive = 0.0
                break
            survive *= 1.0 - math.exp(-2.0 * x * y / (s * s))
            x = y
        hits += 1.0 - survive
    p = hits / paths
    return p, math.sqrt(p * (1 - p) / paths)


@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.5])
def test_realised_sigma_of_a_known_walk_is_within_its_sampling_error(sigma: float) -> None:
    history = walk(sigma, 3000, seed=int(sigma * 10))
    vol = realised_volatility(history)
    assert vol is not None and vol.samples == 3000
    print(f"sigma {sigma}: estimated {vol.sigma_annual:.4f} +- {vol.standard_error:.4f} from {vol.samples} returns")
    assert abs(vol.sigma_annual - sigma) < 3 * vol.standard_error


def test_too_short_a_history_gives_no_sigma() -> None:
    assert realised_volatility(walk(0.8, MIN_RETURNS - 1, seed=1)) is None
    assert realised_volatility(walk(0.8, MIN_RETURNS, seed=1)) is not None


@pytest.mark.parametrize(("distance", "horizon"), [(math.log(1.05), 86400), (math.log(1.3), 7 * 86400)])
def test_closed_form_matches_a_monte_carlo_of_the_same_model(distance: float, horizon: int) -> None:
    sigma = 0.8
    closed = first_passage(distance, sigma, horizon)
    mc, err = bridge_mc(distance, sigma, horizon, paths=20_000, steps=20, seed=7)
    print(f"d={distance:.4f} T={horizon}s: closed form {closed:.4f}, Monte Carlo {mc:.4f} +- {err:.4f}")
    assert abs(closed - mc) < 4 * err


def test_a_weth_usdc_borrower_reads_the_closed_form_with_its_sigma_and_samples() -> None:
    eth = walk(0.8, 2000, seed=3)
    p = position(1.2, [leg(WETH, "WETH", 10_000 * PRICE, 8_250)], [leg(USDC, "USDC", 6_875 * PRICE)])
    estimates = liquidation_probability(p, {WETH: eth, USDC: flat(eth)})
    vol = realised_volatility(eth)
    assert vol is not None
    assert [e.horizon_s for e in estimates] == [3600, 86400, 7 * 86400]
    for e in estimates:
        assert e.model == CLOSED_FORM and e.samples == vol.samples
        assert e.sigma_annual == pytest.approx(vol.sigma_annual)  # a flat debt price: the ratio is the ETH price
        assert e.probability == pytest.approx(first_passage(math.log(1.2), vol.sigma_annual, e.horizon_s))
    probs = [e.probability for e in estimates]
    assert probs == sorted(probs) and 0 < probs[0] < probs[-1] < 1  # longer horizons, likelier
    doc = estimates[1].as_json()
    assert set(doc) == {"horizon_s", "probability", "sigma_annual", "samples", "model"}


def test_past_the_boundary_reads_one_and_no_debt_reads_zero() -> None:
    eth = walk(0.8, 200, seed=4)
    gone = position(0.97, [leg(WETH, "WETH", 100, 8_000)], [leg(USDC, "USDC", 82)], liquidatable=True)
    assert {e.probability for e in liquidation_probability(gone, {WETH: eth, USDC: flat(eth)})} == {1.0}
    free = position(0.0, [leg(WETH, "WETH", 100, 8_000)], [])
    assert {e.probability for e in liquidation_probability(free, {WETH: eth})} == {0.0}


def test_missing_history_gives_no_probability_and_names_the_asset() -> None:
    eth = walk(0.8, 200, seed=5)
    p = position(1.3, [leg(WETH, "WETH", 100, 8_000)], [leg(LINK, "LINK", 60)])
    for e in liquidation_probability(p, {WETH: eth}):
        assert e.probability is None and "LINK" in e.note


def test_ratio_case_collateral_and_debt_both_move() -> None:
    """WETH against WBTC, independent walks: the driver is their ratio, whose variance is the sum of theirs."""
    eth, btc = walk(0.8, 3000, seed=11), walk(0.6, 3000, seed=12, start=40_000 * PRICE)
    p = position(1.15, [leg(WETH, "WETH", 10_000 * PRICE, 8_250)], [leg(WBTC, "WBTC", 7_174 * PRICE)])
    [day] = liquidation_probability(p, {WETH: eth, WBTC: btc}, horizons=[86400])
    assert day.model == CLOSED_FORM
    expected = math.sqrt(0.8**2 + 0.6**2)
    print(f"ratio sigma: {day.sigma_annual:.4f} (model {expected:.4f}) from {day.samples} returns")
    # the two feeds tick at different times, so the ratio has about twice the returns of either
    assert day.samples > 3000 and abs(day.sigma_annual - expected) < 4 * expected / math.sqrt(2 * 3000)
    mc, err = bridge_mc(math.log(1.15), expected, 86400, paths=20_000, steps=20, seed=13)
    assert abs(first_passage(math.log(1.15), expected, 86400) - mc) < 4 * err
    same = position(1.15, [leg(WETH, "WETH", 100, 8_000)], [leg(WETH, "WETH", 60)])
    assert {e.probability for e in liquidation_probability(same, {WETH: eth})} == {0.0}  # prices cancel out


def test_two_collaterals_monte_carlo_matches_a_fine_reference() -> None:
    """WETH and LINK as collateral against USDC: no one driver, so a Monte Carlo over correlated paths."""
    eth, link = walk(0.8, 2000, seed=21), walk(1.2, 2000, seed=22, start=15 * PRICE)
    p = position(
        1.25,
        [leg(WETH, "WETH", 6_000 * PRICE, 8_250), leg(LINK, "LINK", 4_000 * PRICE, 7_000)],
        [leg(USDC, "USDC", 6_200 * PRICE)],
    )
    histories = {WETH: eth, LINK: link, USDC: flat(eth)}
    [week] = liquidation_probability(p, histories, horizons=[7 * 86400], paths=4000, model="monte_carlo")
    assert week.model.startswith("driftless correlated GBM") and week.probability is not None
    vols = {a: realised_volatility(h).sigma_annual for a, h in histories.items()}  # type: ignore[union-attr]
    assert week.sigma_annual == pytest.approx(max(vols.values()))
    # the reference: the same model, fine steps, no bridge, another seed; health from the same leg weights
    ref, ref_err = _fine_reference(p, vols, 7 * 86400, paths=3000, steps=300, seed=99)
    mc_err = math.sqrt(week.probability * (1 - week.probability) / 4000)
    # what a user gets by default: the closed form at health's own volatility
    [closed] = liquidation_probability(p, histories, horizons=[7 * 86400])
    assert closed.model == HEALTH_CLOSED_FORM and closed.probability is not None
    print(
        f"two collaterals, 7 d: Monte Carlo {week.probability:.4f} +- {mc_err:.4f}; fine reference {ref:.4f} +- "
        f"{ref_err:.4f}; health closed form {closed.probability:.4f} at sigma {closed.sigma_annual:.4f}"
    )
    # a 300-step watch misses a little of the continuous crossings: the reference may sit slightly low
    assert ref - 4 * (ref_err + mc_err) < week.probability < ref + 4 * (ref_err + mc_err) + 0.01
    # fixed shares ignore that a falling collateral weighs less and less: the closed form errs high, never low
    assert week.probability - 2 * mc_err <= closed.probability < week.probability + 4 * mc_err + 0.01
    # one perfectly correlated pair is one factor: the Monte Carlo meets the closed form
    twin = {WETH: eth, LINK: [(t, price * 3) for t, price in eth], USDC: flat(eth)}
    mc, err = monte_carlo(p, {WETH: vols[WETH], LINK: vols[WETH], USDC: 0.0}, _ones(3), 7 * 86400, paths=4000)
    closed = first_passage(math.log(1.25), vols[WETH], 7 * 86400)
    assert abs(mc - closed) < 4 * err + 0.005, (mc, closed)
    assert liquidation_probability(p, twin, horizons=[3600])[0].probability is not None


def _ones(n: int) -> list[list[float]]:
    return [[1.0] * n for _ in range(n)]


def _fine_reference(
    p: Position, vols: dict[str, float], horizon: int, paths: int, steps: int, seed: int
) -> tuple[float, float]:
    """Independent assets (the walks are independent), fine steps, health from the legs' weighted values."""
    rng = random.Random(seed)
    dt = horizon / YEAR / steps
    coll = [(leg.asset, leg.value * leg.weight_bps / 10_000) for leg in p.collateral]
    debt = [(leg.asset, float(leg.value)) for leg in p.debt]
    c0, d0 = sum(v for _, v in coll), sum(v for _, v in debt)
    h0 = (p.health or 0) / WAD
    hits = 0
    for _ in range(paths):
        x = dict.fromkeys(vols, 0.0)
        for _ in range(steps):
            for a in x:
                x[a] += vols[a] * math.sqrt(dt) * rng.gauss(0.0, 1.0)
            c = sum(v * math.exp(x[a]) for a, v in coll) / c0
            d = sum(v * math.exp(x[a]) for a, v in debt) / d0
            if h0 * c / d <= 1:
                hits += 1
                break
    prob = hits / paths
    return prob, math.sqrt(prob * (1 - prob) / paths)
