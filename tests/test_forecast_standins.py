"""Time to liquidation at constant prices on our stand-in contracts (not the protocols' own), judged by their checks:
Comet's absorb (accrue, then NotLiquidatable or not), Maker's Jug.drip then Dog.bark and Liquity v2's
batchLiquidateTroves, at the predicted second and one second earlier. Not-modelled simulators say so and give no time.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import pytest
from web3 import Web3

from tests.aave_helpers import next_block_at
from tests.test_compound_v3_standin import USDC, WETH, CometStandInWatcher, _absorb_at, _only
from tests.test_liquity_standin import StandInWatcher, _v2_deployed, v2
from tests.test_maker_standin import MakerStandInWatcher
from watcher.adapters.base import Account
from watcher.adapters.liquity import LiquityV2Reader, LiquityV2Simulator
from watcher.devchain.comet import deploy_comet_stand_in, new_addresses
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.liquity import LiquityV2StandIn, placeholder
from watcher.devchain.maker import MakerStandInSystem, deploy_maker_stand_in, new_owners
from watcher.forecast import DAY, forecast
from watcher.model import WAD, BlockRef, Leg, PerpLeg, Position


def test_comet_absorb_succeeds_at_the_predicted_second(chain: Web3) -> None:
    market = deploy_comet_stand_in(chain)
    [user] = new_addresses(1, "ttl")
    market.set_totals(105 * 10**13, 11 * 10**14, 10**12, 8 * 10**11)  # utilization 0.838, ~5.25% a year
    # 1 WETH carries 1660 USD at LCF 0.83; 1659.99 USDC of debt is 0.01 USD short: about an hour of interest
    market.set_position(user, 165_999 * USDC // 100, {"WETH": WETH})
    p = _only(CometStandInWatcher(market, [user]).check(), user)
    assert not p.liquidatable and not p.details["absorbable_now"]
    f = forecast(p)
    assert f.modelled and f.at is not None and 3 <= f.at - p.block.timestamp < DAY, f
    assert f.interest_per_day is not None and f.interest_per_day > 0
    assert 0.04 < float(f.apy[("debt", p.debt[0].asset)]) < 0.06
    snap = take_snapshot(chain)
    try:
        assert "NotLiquidatable" in _absorb_at(market, user, f.at - 1)
    finally:
        revert_snapshot(chain, snap)
    snap = take_snapshot(chain)
    try:
        assert _absorb_at(market, user, f.at) == ""
    finally:
        revert_snapshot(chain, snap)


@pytest.fixture(params=("eth-tester", "anvil"))
def maker(request: pytest.FixtureRequest) -> Iterator[MakerStandInSystem]:
    """A Maker stand-in system on each chain, rolled back afterwards."""
    w3 = (
        request.getfixturevalue("anvil").w3 if request.param == "anvil" else request.getfixturevalue("eth_tester_chain")
    )
    snap = take_snapshot(w3)
    yield deploy_maker_stand_in(w3)
    revert_snapshot(w3, snap)


def _bark_after_drip_at(system: MakerStandInSystem, cdp: int, timestamp: int) -> str | None:
    """A keeper's Jug.drip mined at `timestamp`, then Dog.bark on top of it: the revert reason or None."""
    snap = take_snapshot(system.w3)
    try:
        next_block_at(system.w3, timestamp)
        block = system.drip("ETH-A")
        assert system.w3.eth.get_block(block)["timestamp"] == timestamp
        return system.bark_call(cdp, "latest")
    finally:
        revert_snapshot(system.w3, snap)


def test_maker_bark_succeeds_at_the_predicted_second(maker: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "ttl")
    # 1 ETH at 2000, mat 1.5 carries 1333.33 DAI; 1333 DAI is safe until the stability fee adds 0.33 DAI: days
    cdp = maker.open("ETH-A", owner)
    maker.set_vault(cdp, WAD, 1333 * WAD)
    maker.drip("ETH-A")
    [p] = MakerStandInWatcher(maker, [owner]).check().positions
    assert not p.liquidatable
    f = forecast(p)
    assert f.modelled and f.at is not None and DAY // 24 < f.at - p.block.timestamp < 365 * DAY, f
    assert f.interest_per_day is not None and f.interest_per_day > 0
    assert 0 < float(f.apy[("debt", p.debt[0].asset)]) < 1
    assert "Dog/not-unsafe" in (_bark_after_drip_at(maker, cdp, f.at - 1) or "")
    assert _bark_after_drip_at(maker, cdp, f.at) is None


def test_liquity_v2_trove_liquidates_at_the_predicted_second(v2: LiquityV2StandIn) -> None:
    v2.set_trove(0, 1_000, placeholder("ttl:whale"), 100_000 * WAD, 200 * WAD)  # not the last trove
    owner = Account(placeholder("ttl:trove"), "t")
    # 1 WETH at 2000 carries 1818.18 BOLD at MCR 110%; 1818 BOLD at 50% a year crosses in about two hours
    v2.set_trove(0, 41, owner.address, 1_818 * WAD, WAD, rate=5 * 10**17)
    reader = LiquityV2Reader("liquity_v2", "local", v2.collateral_registry.address, [owner], [41])
    [p] = StandInWatcher(v2.w3, reader).positions().values()
    assert not p.liquidatable
    f = forecast(p)
    assert f.modelled and f.at is not None and 60 < f.at - p.block.timestamp < DAY, f
    assert f.apy[("debt", p.debt[0].asset)] == "0.5"
    for at, expected in ((f.at - 1, False), (f.at, True)):
        snap = take_snapshot(v2.w3)
        try:
            next_block_at(v2.w3, at)
            block = v2.set_price(0, v2.oracle_price(0))  # the same price, in a block at `at`
            assert v2.w3.eth.get_block(block)["timestamp"] == at
            assert v2.can_liquidate(0, 41, block) is expected, (at, f.at)
        finally:
            revert_snapshot(v2.w3, snap)


__all__ = ["_v2_deployed", "v2"]  # the Liquity v2 stand-in fixtures, found by pytest under these names


def test_liquity_v2_batch_fee_is_refused_not_projected_late() -> None:
    sim = LiquityV2Simulator(
        "0x" + "01" * 20,
        "0x" + "02" * 20,
        WAD,
        1_818 * WAD,
        2_000 * WAD,
        110 * 10**16,
        True,
        2,
        1_818 * WAD * 5 * 10**17,
        1_000,
    )
    legs = (Leg(sim.token, "WETH", 18, WAD, 2_000 * WAD, 2_000 * WAD, 9090),)
    debt = (Leg(sim.bold, "BOLD", 18, sim.debt, WAD, sim.debt),)

    def position(details: dict) -> Position:
        block = BlockRef(1, 1_000)
        return Position(
            "liquity_v2", "l", "0x" + "ef" * 20, "b", legs, debt, sim.health(), False, WAD, "USD", block, details, sim
        )

    plain = forecast(position({"accrued_batch_fee": 0, "annual_interest_rate": 5 * 10**17}))
    assert plain.modelled and plain.at is not None and plain.at > 1_000
    batched = forecast(position({"accrued_batch_fee": 3, "annual_interest_rate": 5 * 10**17}))
    assert not batched.modelled and batched.at is None and "batch management fee" in batched.basis


def test_not_modelled_simulators_give_no_time() -> None:
    class Frozen:
        """A simulator named as GMX's without positions that accrue (fees held as read): no time is given."""

    Frozen.__name__ = "GmxAccountSim"
    leg = PerpLeg("ETH", 10**6, 6, Fraction(3000), Fraction(3000), 3_000 * 10**6, 30 * 10**6, Fraction(1, 100))
    p = Position(
        "gmx_v2",
        "local",
        "0x" + "ab" * 20,
        "x",
        (),
        (),
        WAD,
        False,
        10**6,
        "USD",
        BlockRef(1, 1_000),
        {},
        Frozen(),
        (leg,),
    )
    f = forecast(p)
    assert not f.modelled and f.at is None and f.interest_per_day is None and "GMX" in f.basis
    venue = forecast(
        Position("hyperliquid", "hl", "0x" + "cd" * 20, "y", (), (), WAD, False, 10**6, "USD", BlockRef(0, 5))
    )
    assert not venue.modelled and venue.at is None and "not modelled" in venue.basis
