"""The Aave v3 adapter against the real Pool: health to the wei, one eth_call per check, exact boundaries.

Every test runs on eth-tester and on anvil, against Aave v3.0 (npm artifacts, POOL_REVISION 1) and Aave v3.6
(compiled from aave-v3-origin, POOL_REVISION 10): the two health-factor rounding regimes.
"""

from __future__ import annotations

import random

import pytest

from tests.aave_helpers import Watcher, latest_timestamp, repay_at, set_price_at, supply_at
from watcher.devchain.aave import RESERVES, AaveMarket, PositionSpec
from watcher.devchain.deploy import advance_time, revert_snapshot, take_snapshot
from watcher.model import MAX_UINT256, WAD
from watcher.risk import advise, liquidation_price

SPECS = {r.symbol: r for r in RESERVES}
STABLES = ("USDC", "DAI")


def _value(symbol: str, amount: int) -> int:
    r = SPECS[symbol]
    return amount * r.price // 10**r.decimals


def _amount(symbol: str, value: int) -> int:
    r = SPECS[symbol]
    return value * 10**r.decimals // r.price


def random_specs(market: AaveMarket, rng: random.Random, n: int) -> list[PositionSpec]:
    """Random borrowers: one to three collaterals, one or two debts at 30-80% of borrowing power, some in eMode."""
    users = market.new_users(n)
    specs = []
    for i, user in enumerate(users):
        emode = 1 if i % 3 == 0 else 0
        pool = list(STABLES) if emode else list(SPECS)
        coll = rng.sample(pool, rng.randint(1, min(3, len(pool))))
        supplies = {s: _amount(s, rng.randint(1_000, 200_000) * 10**8) + rng.randrange(10**6) for s in coll}
        power = sum(_value(s, a) * (9300 if emode else SPECS[s].ltv) // 10_000 for s, a in supplies.items())
        debts = rng.sample(list(STABLES) if emode else list(SPECS), rng.randint(1, 2))
        share = power * rng.randint(30, 80) // 100 // len(debts)
        borrows = {s: _amount(s, share) + 1 for s in debts}
        specs.append(PositionSpec(user, supplies, borrows, emode))
    return specs


def assert_matches_pool(market: AaveMarket, watcher: Watcher) -> int:
    """Every position's health, collateral and debt equal getUserAccountData at the same block, to the wei."""
    positions = watcher.positions()
    for user, p in positions.items():
        coll, debt, _, _, _, hf = market.account_data(user, p.block.number)
        assert (p.health if p.health is not None else MAX_UINT256) == hf, (user, p.health, hf)
        assert p.total_collateral == coll and p.total_debt == debt, (user, p.total_collateral, coll, p.total_debt, debt)
        assert p.liquidatable == (hf < WAD)
    return len(positions)


def test_health_equals_pool_to_the_wei_randomized(aave_market: AaveMarket) -> None:
    rng = random.Random(f"hf-{aave_market.version}")
    specs = random_specs(aave_market, rng, 9)
    users = aave_market.open_positions_bulk(specs)
    switcher = _open(aave_market, {"USDC": 100_000 * 10**6}, {"DAI": 10_000 * 10**18}, emode=1)
    users.append(switcher)
    watcher = Watcher(aave_market, users)
    compared = assert_matches_pool(aave_market, watcher)
    for step in range(4):
        aave_market.set_user_emode(switcher, 0 if step % 2 == 0 else 1)  # eMode off, on, off, on
        advance_time(aave_market.w3, rng.randrange(3_600, 120 * 86_400))  # interest accrues
        symbol = rng.choice(list(SPECS))
        factor = rng.randint(80, 115)
        aave_market.set_price(symbol, aave_market.price(symbol) * factor // 100)
        # More debt in a new asset: the reader learns the new configuration at the same block.
        user = users[step]
        aave_market.borrow(user, "DAI", 10 * 10**18)
        compared += assert_matches_pool(aave_market, watcher)
    assert compared == 5 * len(users)


def test_one_eth_call_per_check(aave_market: AaveMarket) -> None:
    rng = random.Random(f"calls-{aave_market.version}")
    users = aave_market.open_positions_bulk(random_specs(aave_market, rng, 12))
    watcher = Watcher(aave_market, users)
    first = watcher.check()
    assert not first.unreadable and len(first.positions) == len(users)
    # Learning the market and each account's reserves takes a few rounds once; after that, one call per check.
    assert watcher.stats(first).rounds <= 4
    for _ in range(3):
        advance_time(aave_market.w3, 600)
        again = watcher.check()
        assert watcher.stats(again).eth_calls == 1 and watcher.stats(again).rounds == 1
        assert len(again.positions) == len(users)


def _open(market: AaveMarket, supplies: dict[str, int], borrows: dict[str, int], emode: int = 0) -> str:
    [user] = market.new_users(1)
    return market.open_positions_bulk([PositionSpec(user, supplies, borrows, emode)])[0]


@pytest.mark.parametrize(
    ("supplies", "borrows", "moving", "emode"),
    [
        ({"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6}, "WETH", 0),  # collateral price falls
        ({"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6}, "USDC", 0),  # debt price rises
        ({"WBTC": 10**8, "WETH": 5 * 10**18}, {"DAI": 40_000 * 10**18, "USDC": 5_000 * 10**6}, "WBTC", 0),
        ({"USDC": 50_000 * 10**6}, {"DAI": 40_000 * 10**18}, "USDC", 1),  # eMode threshold
    ],
)
def test_liquidation_price_is_the_pools_boundary(
    aave_market: AaveMarket, supplies: dict[str, int], borrows: dict[str, int], moving: str, emode: int
) -> None:
    user = _open(aave_market, supplies, borrows, emode)
    watcher = Watcher(aave_market, [user])
    position = watcher.positions()[user]
    at = latest_timestamp(aave_market.w3) + 50
    sim = position.simulator.at_time(at)  # the price change lands in a block at `at`
    leg = next(x for x in (*position.collateral, *position.debt) if x.symbol == moving)
    lp = liquidation_price(sim, leg)
    assert lp is not None and lp.falling == (moving in supplies)
    safe = lp.price + 1 if lp.falling else lp.price - 1
    w3 = aave_market.w3
    snap = take_snapshot(w3)
    block = set_price_at(aave_market, moving, lp.price, at)
    assert aave_market.health_factor(user, block) < WAD
    assert watcher.positions()[user].liquidatable
    revert_snapshot(w3, snap)
    block = set_price_at(aave_market, moving, safe, at)
    assert aave_market.health_factor(user, block) >= WAD
    assert not watcher.positions()[user].liquidatable


@pytest.mark.parametrize("action", ["supply", "repay"])
def test_advice_restores_target_on_chain(aave_market: AaveMarket, action: str) -> None:
    target = 150 * WAD // 100
    user = _open(aave_market, {"WETH": 10 * 10**18, "WBTC": 10**7}, {"USDC": 13_000 * 10**6, "DAI": 2_000 * 10**18})
    advance_time(aave_market.w3, 30 * 86_400)
    watcher = Watcher(aave_market, [user])
    position = watcher.positions()[user]
    assert position.health < target
    at = latest_timestamp(aave_market.w3) + 1_000
    advice = advise(position, target, at=at)
    acts = advice.top_ups if action == "supply" else advice.repayments
    assert acts, advice
    for act in acts:
        snap = take_snapshot(aave_market.w3)
        sim = position.simulator.at_time(at)
        apply = sim.with_supply if action == "supply" else sim.with_repay
        # Exact and least: the advised amount reaches the target, one base unit less does not.
        assert apply(act.asset, act.amount).health() >= target
        if act.feasible:
            assert apply(act.asset, act.amount - 1).health() < target
        send = supply_at if action == "supply" else repay_at
        block = send(aave_market, user, act.symbol, act.amount, at)
        pool_hf = aave_market.health_factor(user, block)
        assert pool_hf == act.health_after, (act, pool_hf)
        if act.feasible:
            assert pool_hf >= target
        revert_snapshot(aave_market.w3, snap)
