"""The Liquity v1/v2 adapters against our own stand-in contracts (not Liquity's): verdicts equal their liquidations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from tests.aave_helpers import latest_timestamp, local_client, next_block_at
from watcher.abi import Contract
from watcher.adapters.base import Account, ReadError
from watcher.adapters.liquity import (
    ETH,
    LiquityV1Reader,
    LiquityV1Simulator,
    LiquityV2Reader,
    LiquityV2Simulator,
    compute_cr,
    make_reader_v1,
    make_reader_v2,
)
from watcher.check import CheckResult, run_check
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.liquity import (
    LiquityV1StandIn,
    LiquityV2StandIn,
    deploy_liquity_v1_stand_in,
    deploy_liquity_v2_stand_in,
    placeholder,
)
from watcher.model import BPS, MAX_UINT256, WAD, BlockRef, Leg, Position
from watcher.risk import liquidation_price, repayment, top_up

CHAINS = ("eth-tester", "anvil")
LUSD = placeholder("LUSD")


def _w3(request: pytest.FixtureRequest) -> Web3:
    if request.param == "anvil":
        return request.getfixturevalue("anvil").w3
    return request.getfixturevalue("eth_tester_chain")


@pytest.fixture(scope="module", params=CHAINS)
def _v1_deployed(request: pytest.FixtureRequest) -> LiquityV1StandIn:
    return deploy_liquity_v1_stand_in(_w3(request))


@pytest.fixture
def v1(_v1_deployed: LiquityV1StandIn) -> Iterator[LiquityV1StandIn]:
    """The module's v1 stand-in on each chain, rolled back after each test."""
    snap = take_snapshot(_v1_deployed.w3)
    yield _v1_deployed
    revert_snapshot(_v1_deployed.w3, snap)


@pytest.fixture(scope="module", params=CHAINS)
def _v2_deployed(request: pytest.FixtureRequest) -> LiquityV2StandIn:
    return deploy_liquity_v2_stand_in(_w3(request))


@pytest.fixture
def v2(_v2_deployed: LiquityV2StandIn) -> Iterator[LiquityV2StandIn]:
    """The module's v2 stand-in (WETH MCR 110%, wstETH MCR 120%) on each chain, rolled back after each test."""
    snap = take_snapshot(_v2_deployed.w3)
    yield _v2_deployed
    revert_snapshot(_v2_deployed.w3, snap)


class StandInWatcher:
    """The watcher's real read path (ChainClient + run_check) over one reader."""

    def __init__(self, w3: Web3, reader: Any) -> None:
        self.client = local_client(w3)
        self.reader = reader

    def check(self) -> CheckResult:
        """One check, as `watcher check` runs it."""
        return run_check({"local": self.client}, [self.reader])

    def positions(self) -> dict[str, Position]:
        """Positions by key from one check that read everything."""
        result = self.check()
        assert not result.unreadable, result.unreadable
        return {p.key: p for p in result.positions}


class _Dep:
    """The fields of watcher.config.Deployment that the factories read."""

    def __init__(self, name: str, address: str, troves: list[int] | None = None) -> None:
        self.name, self.chain, self.address, self.troves, self.extra = name, "local", address, troves or [], {}


# ------------------------------------------------------------------------------------------------ v1 by hand


def _v1_sim(price: int, sp: int = 20_000 * WAD) -> LiquityV1Simulator:
    # A trove of 10 ETH / 12,000 LUSD in a system of 1,000 ETH / 1,000,000 LUSD (v1: MCR 1.1, CCR 1.5).
    return LiquityV1Simulator(
        LUSD, 10 * WAD, 12_000 * WAD, price, 1_000 * WAD, 1_000_000 * WAD, 11 * WAD // 10, 15 * WAD // 10, sp, 5
    )


def test_v1_standin_math_by_hand() -> None:
    # At 2000 USD/ETH (LiquityMath._computeCR floors):
    #   ICR = 10e18 * 2000e18 / 12000e18 = 1.666...e18 -> 1666666666666666666
    #   TCR = 1000e18 * 2000e18 / 1e24 = 2e18 >= CCR: Normal Mode, threshold MCR
    #   health = 1666666666666666666 * 1e18 / 1.1e18 = 1515151515151515150.9... -> 1515151515151515150
    #   ICR < TCR: recovery-exposed; recovery_health = 2e18 * 1e18 / 1.5e18 = 1333333333333333333
    #   Recovery Mode below ceil(1.5e18 * 1e24 / 1e21) = 1500e18
    s = _v1_sim(2_000 * WAD)
    assert s.icr() == 1666666666666666666 and s.tcr() == 2 * WAD and not s.recovery_mode()
    assert s.health() == 1515151515151515150 and not s.liquidatable()
    assert s.recovery_price() == 1_500 * WAD
    assert not s.with_price(ETH, 1_500 * WAD).recovery_mode() and s.with_price(ETH, 1_500 * WAD - 1).recovery_mode()
    # At 1400 (Recovery Mode, the Stability Pool's 20,000 LUSD covers the 12,000 debt):
    #   ICR = 10e18*1400e18/12000e18 = 1166666666666666666 >= MCR, TCR = 1e21*1400e18/1e24 = 1.4e18 > ICR
    #   threshold = max(MCR, TCR) = 1.4e18; health = 1166666666666666666e18 / 1.4e18 = 833333333333333332.8 -> ...332
    r = s.with_price(ETH, 1_400 * WAD)
    assert r.recovery_mode() and r.icr() == 1166666666666666666 and r.tcr() == 14 * WAD // 10
    assert r.health() == 833333333333333332 and r.liquidatable()
    # Without Stability Pool cover the TCR route is shut: threshold MCR, health = 1166666666666666666e18/1.1e18.
    dry = _v1_sim(1_400 * WAD, sp=11_999 * WAD)
    assert dry.health() == 1060606060606060605 and not dry.liquidatable()
    # The last trove is never liquidated, whatever its ICR.
    assert not LiquityV1Simulator(
        LUSD, WAD, 12_000 * WAD, 1_000 * WAD, WAD, 12_000 * WAD, 11 * WAD // 10, 15 * WAD // 10, 0, 1
    ).liquidatable()
    # No debt: ICR is "infinite" (2**256-1) and health None.
    assert compute_cr(5, 0, 7) == MAX_UINT256
    # Liquidation price: with cover, Recovery Mode liquidates it as soon as the system enters it: 1500e18 - 1.
    # Without cover only MCR counts: floor(10e18*P/12000e18) >= 1.1e18 iff P >= 1320e18, so 1320e18 - 1.
    leg = Leg(ETH, "ETH", 18, 10 * WAD, 2_000 * WAD, 20_000 * WAD, BPS * 10 // 11)
    lp = liquidation_price(s, leg)
    assert lp is not None and lp.price == 1_500 * WAD - 1 and lp.falling
    lp_dry = liquidation_price(_v1_sim(2_000 * WAD, sp=0), leg)
    assert lp_dry is not None and lp_dry.price == 1_320 * WAD - 1
    # A top-up to health 2.0 needs ICR >= 2.2e18: c * 2000e18 >= 2.2e18 * 12000e18 iff c >= 13.2e18: 3.2 ETH.
    # A repayment to 2.0 needs 10e18*2000e18 >= 2.2e18 * d iff d <= 9090909090909090909090: repay 12000e18 - that.
    pos = _position_of(s, leg)
    up = top_up(pos, s, leg, 2 * WAD)
    assert up is not None and up.amount == 32 * WAD // 10
    down = repayment(pos, s, pos.debt[0], 2 * WAD)
    assert down is not None and down.amount == 12_000 * WAD - 9090909090909090909090


def _position_of(s: LiquityV1Simulator, leg: Leg) -> Position:
    debt = Leg(LUSD, "LUSD", 18, s.debt, WAD, s.debt)
    return Position(
        "liquity_v1",
        "x",
        "0x" + "11" * 20,
        "",
        (leg,),
        (debt,),
        s.health(),
        s.liquidatable(),
        WAD,
        "USD",
        BlockRef(1, 1),
        simulator=s,
    )


def test_v2_standin_math_by_hand() -> None:
    # 1 wstETH at 2300 USD, entire debt 2000 BOLD: ICR = 1e18*2300e18/2000e18 = 1.15e18.
    #   WETH-like branch, MCR 1.1: health = 1.15e18*1e18/1.1e18 = 1045454545454545454 (safe)
    #   LST branch, MCR 1.2: health = 1.15e18*1e18/1.2e18 = 958333333333333333 (liquidatable)
    def sim(mcr: int) -> LiquityV2Simulator:
        return LiquityV2Simulator(
            "0x" + "22" * 20, "0x" + "33" * 20, WAD, 2_000 * WAD, 2_300 * WAD, mcr, True, 3, 2_000 * WAD * 5 * 10**16, 0
        )

    a, b = sim(110 * 10**16), sim(120 * 10**16)
    assert a.icr() == b.icr() == 115 * 10**16
    assert a.health() == 1045454545454545454 and not a.liquidatable()
    assert b.health() == 958333333333333333 and b.liquidatable()
    # One year of 5% simple interest on 2000 BOLD: 2000e18*5e16 * 31536000 / 31536000 / 1e18 = 100e18.
    assert a.at_time(365 * 24 * 3600).debt == 2_100 * WAD
    # Liquidation price on the 110% branch: floor(1e18*P/2000e18) >= 1.1e18 iff P >= 2200e18.
    lp = liquidation_price(a, Leg(a.token, "X", 18, WAD, 2_300 * WAD, 2_300 * WAD, 9090))
    assert lp is not None and lp.price == 2_200 * WAD - 1


# ------------------------------------------------------------------------------------------------ v1 on chain


def _v1_accounts(n: int) -> list[Account]:
    return [Account(placeholder(f"v1:{i}"), f"v1-{i}") for i in range(n)]


def _v1_contract_verdict(v1: LiquityV1StandIn, p: Position) -> None:
    """The watcher's figures equal the stand-in's own views, and its verdict equals liquidate(), at p's block."""
    b = p.block.number
    price = v1.oracle_price(b)
    assert p.details["price"] == price
    if p.details["status"] == "active":
        assert p.details["icr"] == v1.view("getCurrentICR", p.account, price, block=b)
    assert p.details["tcr"] == v1.view("getTCR", price, block=b)
    assert p.details["recovery_mode"] == v1.view("checkRecoveryMode", price, block=b)
    contract = v1.can_liquidate(p.account, b)
    assert p.liquidatable == contract, (p.label, p.health, dict(p.details), contract)
    if p.details["status"] == "active":
        assert p.liquidatable == (p.health is not None and p.health < WAD)


def test_v1_standin_verdicts_over_price_moves(v1: LiquityV1StandIn) -> None:
    accts = _v1_accounts(5)
    whale = placeholder("v1:whale")
    v1.set_trove(whale, 880_000 * WAD, 900 * WAD)
    troves = [(12_000, 10), (17_000, 10), (5_000, 10), (12_000, 10)]  # LUSD, ETH; accts[4] has no trove
    for a, (debt, coll) in zip(accts, troves, strict=False):
        v1.set_trove(a.address, debt * WAD, coll * WAD)
    # A redistribution: 0.01 ETH and 20 LUSD per ETH staked pending on every trove (stake = coll), held by the
    # default pool (940 ETH staked in all).
    v1.set_redistribution(WAD // 100, 20 * WAD, 94 * WAD // 10, 18_800 * WAD)
    v1.set_stability_pool(15_000 * WAD)  # covers a 12,000 debt, not a 17,000 one
    watcher = StandInWatcher(v1.w3, LiquityV1Reader("liquity_v1", "local", v1.trove_manager.address, accts))
    seen = []
    for usd in (2_000, 1_800, 1_600, 1_500, 1_477, 1_400, 1_300, 1_200, 1_000):
        v1.set_price(usd * WAD)
        got = watcher.positions()
        for p in got.values():
            _v1_contract_verdict(v1, p)
        ps = [got[f"liquity_v1:local:{a.address}"] for a in accts]
        seen.append((usd, ps[0].details["recovery_mode"], [p.liquidatable for p in ps]))
        # lastGoodPrice stays where the last fetchPrice *transaction* left it; liquidations use fetchPrice.
        assert ps[0].details["last_good_price"] == 2_000 * WAD
    print(f"{v1.w3.provider.__class__.__name__} v1 stand-in (price, recovery mode, verdicts): {seen}")
    pending = got[f"liquity_v1:local:{accts[3].address}"]
    assert pending.details["pending_coll"] == WAD // 10 and pending.details["pending_debt"] == 200 * WAD
    assert pending.collateral[0].amount == 101 * WAD // 10 and pending.debt[0].amount == 12_200 * WAD
    modes = {usd: rm for usd, rm, _ in seen}
    assert not modes[2_000] and modes[1_400]
    verdicts = {usd: v for usd, _, v in seen}
    assert verdicts[2_000] == [False] * 5
    # 1400: Recovery Mode (TCR = 949.4e18*1400e18/944800e18 = 1.4068e18). accts[0] at ICR 1.1667 >= MCR goes through
    # the TCR route (the pool's 15,000 covers its 12,000), accts[1] is below MCR, accts[2] (ICR 2.77) is above the TCR,
    # accts[3] with its pending rewards (10.1 ETH / 12,200 LUSD, ICR 1.159) is covered too; accts[4] has no trove.
    assert verdicts[1_400] == [True, True, False, True, False]
    assert pending.details["recovery_exposed"]


def test_v1_standin_liquidation_price_is_the_boundary(v1: LiquityV1StandIn) -> None:
    # The hand-worked system: 1,000 ETH / 1,000,000 LUSD with the trove of 10 ETH / 12,000 LUSD in it.
    [acct] = _v1_accounts(1)
    v1.set_trove(placeholder("v1:whale"), 988_000 * WAD, 990 * WAD)
    v1.set_trove(acct.address, 12_000 * WAD, 10 * WAD)
    for sp, expected in ((20_000 * WAD, 1_500 * WAD - 1), (0, 1_320 * WAD - 1)):
        v1.set_stability_pool(sp)
        watcher = StandInWatcher(v1.w3, make_reader_v1(_Dep("liquity_v1", v1.trove_manager.address), [acct]))
        [p] = watcher.positions().values()
        assert p.health == 1515151515151515150 and p.details["recovery_health"] == 1333333333333333333
        assert p.details["recovery_price"] == 1_500 * WAD
        assert isinstance(p.simulator, LiquityV1Simulator)
        lp = liquidation_price(p.simulator, p.collateral[0])
        assert lp is not None and lp.price == expected
        for price, liquidatable in ((lp.price, True), (lp.price + 1, False)):
            snap = take_snapshot(v1.w3)
            block = v1.set_price(price)
            assert v1.can_liquidate(acct.address, block) is liquidatable, (sp, price)
            [q] = watcher.positions().values()
            assert q.liquidatable is liquidatable
            revert_snapshot(v1.w3, snap)


def test_v1_standin_advice_reaches_the_target(v1: LiquityV1StandIn) -> None:
    [acct] = _v1_accounts(1)
    v1.set_trove(placeholder("v1:whale"), 988_000 * WAD, 990 * WAD)
    v1.set_trove(acct.address, 12_000 * WAD, 10 * WAD)
    watcher = StandInWatcher(v1.w3, LiquityV1Reader("liquity_v1", "local", v1.trove_manager.address, [acct]))
    [p] = watcher.positions().values()
    assert p.simulator is not None
    up = top_up(p, p.simulator, p.collateral[0], 2 * WAD)
    down = repayment(p, p.simulator, p.debt[0], 2 * WAD)
    assert up is not None and up.amount == 32 * WAD // 10  # by hand above
    assert down is not None and down.amount == 12_000 * WAD - 9090909090909090909090
    mcr = v1.view("MCR")
    for debt, coll, reaches in (
        (12_000 * WAD, 10 * WAD + up.amount, True),
        (12_000 * WAD, 10 * WAD + up.amount - 1, False),
        (12_000 * WAD - down.amount, 10 * WAD, True),
        (12_000 * WAD - down.amount + 1, 10 * WAD, False),
    ):
        snap = take_snapshot(v1.w3)
        block = v1.set_trove(acct.address, debt, coll)
        icr = v1.view("getCurrentICR", acct.address, 2_000 * WAD, block=block)
        assert (icr * WAD // mcr >= 2 * WAD) is reaches
        revert_snapshot(v1.w3, snap)


def test_v1_standin_one_eth_call_per_check(v1: LiquityV1StandIn) -> None:
    accts = _v1_accounts(3)
    v1.set_trove(placeholder("v1:whale"), 988_000 * WAD, 990 * WAD)
    for a in accts:
        v1.set_trove(a.address, 12_000 * WAD, 10 * WAD)
    watcher = StandInWatcher(v1.w3, LiquityV1Reader("liquity_v1", "local", v1.trove_manager.address, accts))
    first = watcher.check()
    assert first.stats["local"].rounds == 2 and len(first.positions) == 3  # round 1 learns the feed and pool
    for usd in (1_900, 1_450, 1_100):
        v1.set_price(usd * WAD)
        again = watcher.check()
        stats = again.stats["local"]
        assert stats.eth_calls == 1 and stats.rounds == 1, stats
        assert len(again.positions) == 3 and not again.unreadable


# ------------------------------------------------------------------------------------------------ v2 on chain


def _v2_check(v2: LiquityV2StandIn, watcher: StandInWatcher) -> dict[str, Position]:
    """One check; every position's verdict equals batchLiquidateTroves and its ICR getCurrentICR, at its block."""
    got = watcher.positions()
    for p in got.values():
        i, t, b = p.details["branch"], p.details["trove_id"], p.block.number
        price = v2.oracle_price(i, b)
        assert p.details["price"] == price and p.details["mcr"] == v2.mcr(i)
        assert p.details["icr"] == v2.tm_view(i, "getCurrentICR", t, price, block=b)
        contract = v2.can_liquidate(i, t, b)
        assert p.liquidatable == contract, (p.key, p.health, dict(p.details), contract)
        assert p.liquidatable == (p.health is not None and p.health < WAD)
    return got


def test_v2_standin_verdicts_per_branch_mcr(v2: LiquityV2StandIn) -> None:
    alice, bob, carol = (Account(placeholder(f"v2:{n}"), n) for n in ("alice", "bob", "carol"))
    whale = placeholder("v2:whale")
    for i in (0, 1):
        v2.set_trove(i, 1_000 + i, whale, 100_000 * WAD, 200 * WAD)
    v2.set_trove(0, 1, alice.address, 2_000 * WAD, WAD)
    v2.set_trove(1, 2, alice.address, 2_000 * WAD, WAD)
    # The same id on both branches (ids are hashes of sender, owner and index, so this can happen on mainnet).
    v2.set_trove(0, 7, bob.address, 1_500 * WAD, WAD)
    v2.set_trove(1, 7, carol.address, 1_500 * WAD, WAD, rate=0)
    reader = make_reader_v2(_Dep("liquity_v2", v2.collateral_registry.address, [1, 2, 7]), [alice, bob])
    watcher = StandInWatcher(v2.w3, reader)
    first = watcher.check()
    assert first.stats["local"].rounds == 4 and not first.unreadable  # registry, branches, statuses, troves
    seen = []
    for usd in (2_400, 2_300, 2_250, 2_000, 1_700):
        v2.set_price(0, usd * WAD)
        v2.set_price(1, usd * WAD)
        got = _v2_check(v2, watcher)
        assert len(got) == 4
        seen.append((usd, {k.split(":", 3)[3]: p.liquidatable for k, p in got.items()}))
        if usd == 2_300:
            # ICR = 1e18 * 2300e18 / (2000e18 + a little interest) just under 1.15e18: the 110% branch is safe,
            # the 120% one liquidates the same trove.
            assert not got[f"liquity_v2:local:{alice.address}:branch0:1"].liquidatable
            assert got[f"liquity_v2:local:{alice.address}:branch1:2"].liquidatable
            carol_pos = got[f"liquity_v2:local:{carol.address}:branch1:7"]
            assert carol_pos.label == carol.address[:10] and carol_pos.details["mcr"] == 120 * 10**16
    print(f"{v2.w3.provider.__class__.__name__} v2 stand-in verdicts: {seen}")
    # Interest accrues between blocks; a later check still agrees with the contract.
    from watcher.devchain.deploy import advance_time

    advance_time(v2.w3, 180 * 24 * 3600)
    got = _v2_check(v2, watcher)
    assert got[f"liquity_v2:local:{alice.address}:branch0:1"].details["accrued_interest"] > 0


def test_v2_standin_liquidation_price_is_the_boundary(v2: LiquityV2StandIn) -> None:
    # Zero-rate troves: the price alone moves between the check and the price change, so the boundary is exact.
    dave = Account(placeholder("v2:dave"), "dave")
    for i in (0, 1):
        v2.set_trove(i, 1_000 + i, placeholder("v2:whale"), 100_000 * WAD, 200 * WAD)
        v2.set_trove(i, 11 + i, dave.address, 1_999 * WAD + 123_456_789, WAD + 987_654_321, rate=0)
    watcher = StandInWatcher(
        v2.w3, LiquityV2Reader("liquity_v2", "local", v2.collateral_registry.address, [dave], [11, 12])
    )
    for p in watcher.positions().values():
        i = p.details["branch"]
        assert isinstance(p.simulator, LiquityV2Simulator)
        lp = liquidation_price(p.simulator, p.collateral[0])
        assert lp is not None and lp.falling
        for price, liquidatable in ((lp.price, True), (lp.price + 1, False)):
            snap = take_snapshot(v2.w3)
            block = v2.set_price(i, price)
            assert v2.can_liquidate(i, p.details["trove_id"], block) is liquidatable, (i, price)
            revert_snapshot(v2.w3, snap)


def test_v2_standin_interest_projection(v2: LiquityV2StandIn) -> None:
    erin = Account(placeholder("v2:erin"), "erin")
    v2.set_trove(0, 1_000, placeholder("v2:whale"), 100_000 * WAD, 200 * WAD)
    v2.set_trove(0, 21, erin.address, 3_333 * WAD + 17, 2 * WAD, rate=7 * 10**16 + 3)
    watcher = StandInWatcher(
        v2.w3, LiquityV2Reader("liquity_v2", "local", v2.collateral_registry.address, [erin], [21])
    )
    [p] = watcher.positions().values()
    assert p.simulator is not None
    later = latest_timestamp(v2.w3) + 40 * 24 * 3600 + 7
    next_block_at(v2.w3, later)
    block = v2.set_price(0, 1_900 * WAD)
    contract_debt = v2.tm_view(0, "getLatestTroveData", 21, block=block)[0]
    projected = p.simulator.at_time(later).debt  # type: ignore[attr-defined]
    # at_time floors the increment, the contract the whole period: at most one wei apart, never above.
    assert 0 <= contract_debt - projected <= 1, (contract_debt, projected)


def test_v2_standin_shutdown_unlisted_troves_and_one_eth_call(v2: LiquityV2StandIn) -> None:
    frank = Account(placeholder("v2:frank"), "frank")
    v2.set_trove(0, 1_000, placeholder("v2:whale"), 100_000 * WAD, 80 * WAD)
    v2.set_trove(0, 31, frank.address, 2_000 * WAD, 2 * WAD)
    v2.set_trove(1, 32, frank.address, 2_000 * WAD, 2 * WAD)  # not in the config
    watcher = StandInWatcher(
        v2.w3, LiquityV2Reader("liquity_v2", "local", v2.collateral_registry.address, [frank], [31])
    )
    result = watcher.check()
    # Frank's branch-1 trove is not configured: unknown, never silently fine.
    assert [u.reason for u in result.unreadable if "holds 1 trove NFTs on branch 1" in u.reason]
    assert len(result.positions) == 1
    # The WETH branch: 82 ETH against 102,000 BOLD; TCR < SCR (110%) below 102000*1.1/82 = 1368.29 USD.
    v2.set_price(0, 1_300 * WAD)
    v2.shutdown(0)
    again = watcher.check()
    assert again.stats["local"].eth_calls == 1 and again.stats["local"].rounds == 1
    [p] = again.positions
    assert p.details["below_scr"] and p.details["shut_down"] and p.details["below_ccr"] and not p.details["redeemable"]
    assert p.liquidatable == v2.can_liquidate(0, 31, p.block.number)


# ------------------------------------------------------------------------------------------------ garbage


def _answers(plan: list[tuple[Any, ...]], values: dict[str, Any]) -> list[tuple[bool, bytes]]:
    """Well-formed answers for each planned tag, from `values` by the tag's first element."""
    out = []
    for tag in plan:
        v = values[tag[0]]
        words = v if isinstance(v, tuple) else (v,)
        out.append(
            (
                True,
                b"".join(
                    int(w, 16).to_bytes(32, "big") if isinstance(w, str) else w.to_bytes(32, "big") for w in words
                ),
            )
        )
    return out


def _v1_reader_ready() -> tuple[LiquityV1Reader, dict[str, Any]]:
    reader = LiquityV1Reader("liquity_v1", "local", "0x" + "aa" * 20, _v1_accounts(1))
    feed, sp, lusd = "0x" + "bb" * 20, "0x" + "cc" * 20, "0x" + "dd" * 20
    values: dict[str, Any] = {
        "MCR": 11 * WAD // 10,
        "CCR": 15 * WAD // 10,
        "priceFeed": feed,
        "stabilityPool": sp,
        "lusdToken": lusd,
        "getEntireSystemColl": 1_000 * WAD,
        "getEntireSystemDebt": 1_000_000 * WAD,
        "getTroveOwnersCount": 5,
        "trove": (12_000 * WAD, 10 * WAD, 0, 0),
        "status": 1,
        "fetchPrice": 2_000 * WAD,
        "lastGoodPrice": 1_990 * WAD,
        "sp": 0,
        "spMax": 0,  # the current source's pool (getMaxAmountToOffset answers); mainnet's reverts
    }
    block = BlockRef(1, 1)
    assert reader.parse(_answers(_plan(reader), values), block) is None  # learns the feed and the pool
    [p] = reader.parse(_answers(_plan(reader), values), block) or []
    assert p.health == 1515151515151515150
    return reader, values


def _plan(reader: Any) -> list[tuple[Any, ...]]:
    reader.calls()
    return list(reader._plan)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda a, plan: a.pop(),  # one answer missing
        lambda a, plan: a.__setitem__(plan.index(("MCR",)), (False, b"")),  # reverted
        lambda a, plan: a.__setitem__(
            plan.index(("priceFeed",)), (True, (2**200).to_bytes(32, "big"))
        ),  # not an address
        lambda a, plan: a.__setitem__(next(i for i, t in enumerate(plan) if t[0] == "trove"), (True, b"\x01" * 40)),
        lambda a, plan: a.__setitem__(
            next(i for i, t in enumerate(plan) if t[0] == "status"), (True, (9).to_bytes(32, "big"))
        ),
        lambda a, plan: a.__setitem__(plan.index(("MCR",)), (True, (0).to_bytes(32, "big"))),  # implausible MCR
        lambda a, plan: a.__setitem__(plan.index(("fetchPrice",)), (True, (0).to_bytes(32, "big"))),  # zero price
    ],
    ids=["short", "reverted", "non-address", "short-trove", "bad-status", "mcr-0", "price-0"],
)
def test_v1_garbage_is_read_error(corrupt: Any) -> None:
    reader, values = _v1_reader_ready()
    plan = _plan(reader)
    answers = _answers(plan, values)
    corrupt(answers, plan)
    with pytest.raises(ReadError):
        reader.parse(answers, BlockRef(2, 2))


def test_v2_garbage_is_read_error() -> None:
    tm, bo, nft, tok = ("0x" + c * 20 for c in ("a1", "a2", "a3", "a4"))
    owner = placeholder("v2:owner")
    reader = LiquityV2Reader("liquity_v2", "local", "0x" + "ee" * 20, [Account(owner, "o")], [5])
    values: dict[str, Any] = {
        "count": 1,
        "bold": "0x" + "b0" * 20,
        "token": tok,
        "tm": tm,
        "borrowerOperations": bo,
        "troveNFT": nft,
        "shutdownTime": 0,
        "getEntireBranchColl": 100 * WAD,
        "getEntireBranchDebt": 50_000 * WAD,
        "getTroveIdsCount": 3,
        "price": (0, 2_000 * WAD, 1),
        "status": 1,
        "MCR": 11 * WAD // 10,
        "CCR": 15 * WAD // 10,
        "SCR": 11 * WAD // 10,
        "hasBeenShutDown": 0,
        "symbol": int.from_bytes(b"WETH".ljust(32, b"\0"), "big"),  # a bytes32 symbol answer
        "balance": 1,
        "trove": (2_000 * WAD, WAD, 0, 0, 0, 2_000 * WAD, 5 * 10**16, 10**38, 0, 0),
        "troves": (2_000 * WAD, WAD, WAD, 1, 0, 1, 1, 5 * 10**16, 0, 0),  # Troves(id): in no interest batch
        "owner": owner,
    }
    for _ in range(3):
        assert reader.parse(_answers(_plan(reader), values), BlockRef(1, 1)) is None
    plan = _plan(reader)
    [p] = reader.parse(_answers(plan, values), BlockRef(1, 1)) or []
    assert p.health == 909090909090909090  # ICR 1e18 * 2000e18 / 2000e18 = 1e18; 1e36 / 1.1e18
    for tag, bad in (
        (("count",), (0).to_bytes(32, "big")),
        (("status", 0, 5), (9).to_bytes(32, "big")),
        (("trove", 0, 5), b"\x00" * 64),
        (("hasBeenShutDown", 0), (2).to_bytes(32, "big")),
        (("MCR", 0), (3 * WAD).to_bytes(32, "big")),
    ):
        answers = _answers(plan, values)
        answers[plan.index(tag)] = (True, bad)
        with pytest.raises(ReadError):
            reader.parse(answers, BlockRef(1, 1))
    answers = _answers(plan, values)
    answers[plan.index(("owner", 0, 5))] = (False, b"")
    with pytest.raises(ReadError):
        reader.parse(answers, BlockRef(1, 1))


def test_abi_files_match_the_stand_ins() -> None:
    # The watcher's hand-written ABI files must name functions the stand-ins really have (same selectors).
    from watcher.devchain.liquity import liquity_stand_in_artifacts

    arts = liquity_stand_in_artifacts()
    pairs = {
        "ILiquityV1TroveManager": "LiquityV1TroveManagerStandIn",
        "ILiquityV1PriceFeed": "LiquityV1PriceFeedStandIn",
        "ILiquityV1StabilityPool": "LiquityV1StabilityPoolStandIn",
        "ILiquityV2CollateralRegistry": "LiquityV2CollateralRegistryStandIn",
        "ILiquityV2TroveManager": "LiquityV2TroveManagerStandIn",
        "ILiquityV2BorrowerOperations": "LiquityV2BorrowerOperationsStandIn",
        "ILiquityV2TroveNFT": "LiquityV2TroveNFTStandIn",
        "ILiquityV2PriceFeed": "LiquityV2PriceFeedStandIn",
    }
    for abi_name, contract in pairs.items():
        ours = Contract(abi_name).fns
        theirs = {f["name"]: f for f in arts[contract][0] if f.get("type") == "function"}
        for name, fn in ours.items():
            outs = tuple(o["type"] if o["type"] != "tuple" else "tuple" for o in theirs[name]["outputs"])
            assert len(outs) == len(fn.outputs) or outs == ("tuple",), (abi_name, name)
            assert tuple(i["type"] for i in theirs[name]["inputs"]) == fn.inputs, (abi_name, name)


# ------------------------------------------------------------------------------------------------ minimum debt


def test_v1_standin_repayment_respects_min_net_debt() -> None:
    # BorrowerOperations (deployed v1) refuses a repayment leaving net debt (debt - 200 LUSD gas compensation) below
    # MIN_NET_DEBT = 1800 LUSD, i.e. a trove debt below 2000 LUSD; closeTrove (all of it) is refused in Recovery Mode.
    # A trove of 1 ETH / 2500 LUSD at 3000 in a system of 1000 ETH / 1,000,000 LUSD (TCR 3, Normal Mode):
    #   ICR = 1e18*3000e18/2500e18 = 1.2e18; health 1.5 needs ICR >= 1.65e18, debt <= 3000/1.65 = 1818.18 LUSD < 2000:
    #   no allowed partial repayment gets there (the least debt, 2000, gives ICR 1.5, health 1.3636), only closing.
    s = LiquityV1Simulator(
        LUSD, WAD, 2_500 * WAD, 3_000 * WAD, 1_000 * WAD, 1_000_000 * WAD, 11 * WAD // 10, 15 * WAD // 10, 0, 5
    )
    assert s.with_repay(LUSD, 500 * WAD).debt == 2_000 * WAD  # leaves exactly the minimum: allowed
    assert s.with_repay(LUSD, 600 * WAD).debt == 2_000 * WAD  # would leave 1900: refused, stops at the minimum
    closed = s.with_repay(LUSD, 2_500 * WAD)
    assert closed.debt == 0 and closed.health() is None and closed.system_debt == 997_500 * WAD
    leg = Leg(ETH, "ETH", 18, WAD, 3_000 * WAD, 3_000 * WAD, BPS * 10 // 11)
    rep = repayment(_position_of(s, leg), s, Leg(LUSD, "LUSD", 18, s.debt, WAD, s.debt), 15 * WAD // 10)
    assert rep is not None and rep.feasible and rep.amount == 2_500 * WAD and rep.health_after is None
    # Recovery Mode (TCR 1000e18*1400e18/1e24 = 1.4 < 1.5): closeTrove reverts, so even "all of it" stops at 2000.
    r = s.with_price(ETH, 1_400 * WAD)
    assert r.recovery_mode() and r.with_repay(LUSD, 2_500 * WAD).debt == 2_000 * WAD
    rep = repayment(_position_of(r, leg), r, Leg(LUSD, "LUSD", 18, r.debt, WAD, r.debt), 15 * WAD // 10)
    assert rep is not None and not rep.feasible


def test_v2_standin_repayment_respects_min_debt() -> None:
    # v2 repayBold caps a repayment at entireDebt - MIN_DEBT (2000 BOLD) itself; only closeTrove goes lower; a shut
    # down branch refuses every adjustment (IsShutDown) but closeTrove. Trove 1 ETH / 2500 BOLD at 3000, MCR 1.1:
    #   health 1.5 needs debt <= 1818.18 BOLD < 2000, so the advice is to close (repay all 2500).
    token, bold = "0x" + "22" * 20, "0x" + "33" * 20
    s = LiquityV2Simulator(token, bold, WAD, 2_500 * WAD, 3_000 * WAD, 11 * WAD // 10, True, 3, 0, 0)
    assert s.with_repay(bold, 600 * WAD).debt == 2_000 * WAD and s.with_repay(bold, 2_500 * WAD).debt == 0
    pos = Position(
        "liquity_v2",
        "x",
        "0x" + "11" * 20,
        "",
        (Leg(token, "X", 18, WAD, 3_000 * WAD, 3_000 * WAD, 9090),),
        (Leg(bold, "BOLD", 18, s.debt, WAD, s.debt),),
        s.health(),
        s.liquidatable(),
        WAD,
        "USD",
        BlockRef(1, 1),
    )
    rep = repayment(pos, s, pos.debt[0], 15 * WAD // 10)
    assert rep is not None and rep.feasible and rep.amount == 2_500 * WAD
    shut = LiquityV2Simulator(token, bold, WAD, 2_500 * WAD, 3_000 * WAD, 11 * WAD // 10, True, 3, 0, 0, 1)
    assert shut.with_repay(bold, 100 * WAD).debt == 2_500 * WAD and shut.with_supply(token, WAD).coll == WAD
    assert shut.with_repay(bold, 2_500 * WAD).debt == 0
