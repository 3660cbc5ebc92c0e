"""Liquity v1's two Stability Pool rules on our own stand-in contracts (not Liquity's), pool within 1 LUSD of a debt.

Mainnet's revision offsets up to getTotalLUSDDeposits(); the current liquity/dev source up to getMaxAmountToOffset()
(deposits less 1 LUSD). The stand-in switches between them (setCurrentSourceRule); the watcher tells them apart by
whether getMaxAmountToOffset() answers, and its verdict must equal what the stand-in's liquidate() does under each.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from tests.processes import check_json
from tests.test_liquity_standin import StandInWatcher, _answers, _plan, _v1_reader_ready
from watcher.adapters.base import Account, ReadError
from watcher.adapters.liquity import (
    ETH,
    RULE_ALL_DEPOSITS,
    RULE_MAX_TO_OFFSET,
    LiquidationPath,
    LiquityV1Reader,
    LiquityV1Simulator,
)
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.liquity import LiquityV1StandIn, deploy_liquity_v1_stand_in, placeholder
from watcher.model import BPS, WAD, BlockRef, Leg
from watcher.risk import liquidation_price

CHAINS = ("eth-tester", "anvil")
LUSD = placeholder("LUSD")
MCR, CCR = 11 * WAD // 10, 15 * WAD // 10
DEBT = 12_000 * WAD  #: the watched trove's debt (10 ETH), in a system of 1,000 ETH / 1,000,000 LUSD
#: pools around the debt: one wei short, exactly, half a LUSD over, one wei short of 1 LUSD over, 1 LUSD over, 2 over
POOLS = (DEBT - 1, DEBT, DEBT + WAD // 2, DEBT + WAD - 1, DEBT + WAD, DEBT + 2 * WAD)
#: the stand-in's lastRoute values
ROUTES = {1: "normal", 2: "recovery_below_100pct", 3: "recovery_below_mcr", 4: "recovery_capped"}


@pytest.fixture(scope="module", params=CHAINS)
def _deployed(request: pytest.FixtureRequest) -> LiquityV1StandIn:
    w3: Web3 = (
        request.getfixturevalue("anvil").w3 if request.param == "anvil" else request.getfixturevalue("eth_tester_chain")
    )
    return deploy_liquity_v1_stand_in(w3)


@pytest.fixture
def v1(_deployed: LiquityV1StandIn) -> Iterator[LiquityV1StandIn]:
    """The module's v1 stand-in (mainnet's rule until a test switches it), rolled back after each test."""
    snap = take_snapshot(_deployed.w3)
    yield _deployed
    revert_snapshot(_deployed.w3, snap)


def _sim(debt: int, price: int, pool: int, current: bool) -> LiquityV1Simulator:
    """10 ETH and `debt` LUSD in a system of 1,000 ETH / 1,000,000 LUSD, 5 troves; the pool under either rule."""
    keep = min(WAD, pool)
    return LiquityV1Simulator(
        LUSD,
        10 * WAD,
        debt,
        price,
        1_000 * WAD,
        1_000_000 * WAD,
        MCR,
        CCR,
        pool,
        5,
        True,
        pool - keep if current else None,
    )


# ------------------------------------------------------------------------------------------------ by hand


def test_offset_rule_by_hand() -> None:
    # At 1,400 USD/ETH: TCR = 1000e18*1400e18/1e24 = 1.4e18 < CCR 1.5: Recovery Mode. The trove's
    # ICR = 10e18*1400e18/12000e18 = 1166666666666666666: >= MCR and < TCR, so only the capped route can take it, and
    # only when its whole 12,000 LUSD debt is <= what may be offset: the pool (mainnet) or the pool - 1 LUSD (current).
    #   route open: threshold TCR, health = 1166666666666666666e18 / 1.4e18 -> 833333333333333332 (liquidatable)
    #   route shut: threshold MCR, health = 1166666666666666666e18 / 1.1e18 -> 1060606060606060605 (not)
    mainnet = [_sim(DEBT, 1_400 * WAD, pool, False).liquidatable() for pool in POOLS]
    current = [_sim(DEBT, 1_400 * WAD, pool, True).liquidatable() for pool in POOLS]
    assert mainnet == [False, True, True, True, True, True]
    assert current == [False, False, False, False, True, True]
    at_debt = _sim(DEBT, 1_400 * WAD, DEBT, False), _sim(DEBT, 1_400 * WAD, DEBT, True)
    assert [s.health() for s in at_debt] == [833333333333333332, 1060606060606060605]
    assert [s.sp_rule() for s in at_debt] == [RULE_ALL_DEPOSITS, RULE_MAX_TO_OFFSET]
    assert [s.sp_offsetable() for s in at_debt] == [DEBT, DEBT - WAD]
    # Mainnet's capped offset of exactly the pool empties it; the current source cannot get there.
    assert at_debt[0].path() == LiquidationPath("recovery_capped", DEBT, 0, True)
    assert at_debt[1].path() is None
    # Normal Mode (2,000: TCR 2.0), 19,000 LUSD: ICR = 20000e18*1e18/19000e18 = 1052631578947368421 < MCR under
    # either rule; the split differs. Pool of exactly 19,000: mainnet offsets it all and empties the pool, the current
    # source offsets 18,999 and redistributes 1 LUSD. Pool of 19,000.5: mainnet offsets the whole debt (0.5 stays),
    # the current source 18,999.5 and redistributes 0.5.
    d = 19_000 * WAD
    assert _sim(d, 2_000 * WAD, d, False).path() == LiquidationPath("normal", d, 0, True)
    assert _sim(d, 2_000 * WAD, d, True).path() == LiquidationPath("normal", d - WAD, WAD, False)
    assert _sim(d, 2_000 * WAD, d + WAD // 2, False).path() == LiquidationPath("normal", d, 0, False)
    assert _sim(d, 2_000 * WAD, d + WAD // 2, True).path() == LiquidationPath("normal", d - WAD // 2, WAD // 2, False)
    # Recovery Mode below MCR (13,000 LUSD at 1,400: ICR 1076923076923076923) and at or below 100 % (15,000 LUSD:
    # ICR 933333333333333333): liquidatable under both; the latter redistributes everything.
    assert _sim(13_000 * WAD, 1_400 * WAD, 13_000 * WAD, True).path() == LiquidationPath(
        "recovery_below_mcr", 12_999 * WAD, WAD, False
    )
    assert _sim(15_000 * WAD, 1_400 * WAD, 15_000 * WAD, False).path() == LiquidationPath(
        "recovery_below_100pct", 0, 15_000 * WAD, False
    )
    # The liquidation price moves with the rule: with the pool at exactly the debt, mainnet liquidates the trove as
    # soon as the system enters Recovery Mode (1500e18 - 1); the current rule only below MCR (1320e18 - 1).
    leg = Leg(ETH, "ETH", 18, 10 * WAD, 2_000 * WAD, 20_000 * WAD, BPS * 10 // 11)
    prices = [liquidation_price(_sim(DEBT, 2_000 * WAD, DEBT, c), leg) for c in (False, True)]
    assert [p.price if p else None for p in prices] == [1_500 * WAD - 1, 1_320 * WAD - 1]


# ------------------------------------------------------------------------------------------------ on the stand-in


def _place(v1: LiquityV1StandIn, debt: int) -> Account:
    """The watched trove (10 ETH, `debt`) beside a whale so that the system holds 1,000 ETH / 1,000,000 LUSD."""
    acct = Account(placeholder("rule:trove"), "trove")
    v1.set_trove(placeholder("rule:whale"), 1_000_000 * WAD - debt, 990 * WAD)
    v1.set_trove(acct.address, debt, 10 * WAD)
    return acct


@pytest.mark.parametrize("current", [False, True], ids=["mainnet-rule", "current-source-rule"])
def test_verdict_equals_liquidate_with_the_pool_within_1_lusd(v1: LiquityV1StandIn, current: bool) -> None:
    if current:
        v1.set_current_source_rule(True)
    acct = _place(v1, DEBT)
    v1.set_price(1_400 * WAD)
    watcher = StandInWatcher(v1.w3, LiquityV1Reader("liquity_v1", "local", v1.trove_manager.address, [acct]))
    rows = []
    for pool in POOLS:
        block = v1.set_stability_pool(pool)
        [p] = watcher.positions().values()
        assert p.block.number == block
        contract = v1.can_liquidate(acct.address, block)
        assert p.liquidatable == contract, (pool, dict(p.details))
        assert p.liquidatable == (p.health is not None and p.health < WAD)
        assert p.details["recovery_mode"] and p.details["stability_pool_lusd"] == pool
        assert p.details["stability_pool_rule"] == (RULE_MAX_TO_OFFSET if current else RULE_ALL_DEPOSITS)
        assert p.details["stability_pool_offsetable"] == (pool - WAD if current else pool)
        rows.append((pool - DEBT, p.health, p.liquidatable, contract))
    name = "current" if current else "mainnet"
    print(f"{v1.w3.provider.__class__.__name__} {name} rule (pool - debt, health, watcher, liquidate ok): {rows}")
    expected = [False, False, False, False, True, True] if current else [False, True, True, True, True, True]
    assert [r[2] for r in rows] == expected


@pytest.mark.parametrize("current", [False, True], ids=["mainnet-rule", "current-source-rule"])
@pytest.mark.parametrize(
    ("debt", "price", "pool"),
    [
        (19_000 * WAD, 2_000 * WAD, 19_000 * WAD),  # Normal Mode, pool = debt
        (19_000 * WAD, 2_000 * WAD, 19_000 * WAD + WAD // 2),  # Normal Mode, pool = debt + 0.5
        (13_000 * WAD, 1_400 * WAD, 13_000 * WAD),  # Recovery Mode below MCR
        (DEBT, 1_400 * WAD, DEBT + WAD),  # Recovery Mode capped route, covered under both rules
        (DEBT, 1_400 * WAD, DEBT),  # the capped route, mainnet only: empties the pool
    ],
    ids=["normal-at-debt", "normal-half-over", "recovery-below-mcr", "capped-1-over", "capped-at-debt"],
)
def test_path_equals_the_liquidation(v1: LiquityV1StandIn, current: bool, debt: int, price: int, pool: int) -> None:
    # The watcher's route and split of the debt equal what the stand-in's liquidate transaction then does, and the pool
    # keeps what was not offset (the current source: never less than 1 LUSD of it).
    if current:
        v1.set_current_source_rule(True)
    acct = _place(v1, debt)
    v1.set_price(price)
    v1.set_stability_pool(pool)
    reader = LiquityV1Reader("liquity_v1", "local", v1.trove_manager.address, [acct])
    [p] = StandInWatcher(v1.w3, reader).positions().values()
    if not p.liquidatable:
        assert current and pool == DEBT and not v1.can_liquidate(acct.address)
        return
    route, offset, redistributed = v1.liquidate(acct.address)
    assert (ROUTES[route], offset, redistributed) == (
        p.details["liquidation_route"],
        p.details["debt_offset"],
        p.details["debt_redistributed"],
    )
    left = v1.deposits()
    assert left == pool - offset and p.details["empties_stability_pool"] == (left == 0)
    if current:
        assert left >= WAD
    rule = "current" if current else "mainnet"
    print(f"{rule}: {ROUTES[route]} offset {offset} redistributed {redistributed} left in the pool {left}")


def test_current_rule_loss_error_guard(v1: LiquityV1StandIn) -> None:
    # getMaxAmountToOffset answers 0 when (deposits - 1 LUSD) * 1e18 <= lastLUSDLossError_Offset: the watcher reads
    # the answer, so a covered trove becomes uncovered exactly when the pool says so.
    v1.set_current_source_rule(True)
    acct = _place(v1, DEBT)
    v1.set_price(1_400 * WAD)
    v1.set_stability_pool(DEBT + WAD)
    watcher = StandInWatcher(v1.w3, LiquityV1Reader("liquity_v1", "local", v1.trove_manager.address, [acct]))
    for error, covered in ((DEBT * WAD - 1, True), (DEBT * WAD, False)):
        block = v1.set_loss_error(error)
        [p] = watcher.positions().values()
        assert p.details["stability_pool_offsetable"] == (DEBT if covered else 0)
        assert p.liquidatable is covered is v1.can_liquidate(acct.address, block)


# ------------------------------------------------------------------------------------------------ reader


def test_reader_tells_the_rules_apart() -> None:
    reader, values = _v1_reader_ready()  # its pool answered getMaxAmountToOffset: the current source's rule
    block = BlockRef(2, 2)
    values = {**values, "sp": 20_000 * WAD, "spMax": 19_999 * WAD}
    plan = _plan(reader)
    [p] = reader.parse(_answers(plan, values), block) or []
    assert p.details["stability_pool_rule"] == RULE_MAX_TO_OFFSET
    assert p.details["stability_pool_offsetable"] == 19_999 * WAD
    with pytest.raises(ReadError):  # more than the deposits: not a pool to trust
        reader.parse(_answers(plan, {**values, "spMax": 20_000 * WAD + 1}), block)
    # Mainnet's pool: no such function (a revert), or a fallback answering nothing. A pool that answered before and
    # does not now is asked again in another round; answering the same, it is mainnet's, and is not asked any more.
    for missing in ((False, b""), (True, b"")):
        reader, _ = _v1_reader_ready()
        for expect_positions in (False, True):
            plan = _plan(reader)
            answers = _answers(plan, values)
            answers[plan.index(("spMax",))] = missing
            got = reader.parse(answers, block)
            assert (got is not None) is expect_positions
        [q] = got or []
        assert q.details["stability_pool_rule"] == RULE_ALL_DEPOSITS
        assert q.details["stability_pool_offsetable"] == 20_000 * WAD
        plan = _plan(reader)
        assert ("spMax",) not in plan and ("sp",) in plan
        [r] = reader.parse(_answers(plan, values), block) or []
        assert r.details["stability_pool_rule"] == RULE_ALL_DEPOSITS


def test_one_eth_call_per_check_under_both_rules(v1: LiquityV1StandIn) -> None:
    # Mainnet's pool reverts getMaxAmountToOffset, which costs one aggregate3 retry: on the first check only.
    acct = _place(v1, DEBT)
    calls = {}
    for current in (False, True):
        v1.set_current_source_rule(current)
        watcher = StandInWatcher(v1.w3, LiquityV1Reader("liquity_v1", "local", v1.trove_manager.address, [acct]))
        first = watcher.check()
        assert first.stats["local"].rounds == 2 and len(first.positions) == 1
        later = []
        for usd in (1_900, 1_450):
            v1.set_price(usd * WAD)
            again = watcher.check()
            later.append(again.stats["local"].eth_calls)
            assert again.stats["local"].rounds == 1 and not again.unreadable
        calls[current] = (first.stats["local"].eth_calls, later)
    print(f"eth_calls (first check, later checks): mainnet rule {calls[False]}, current rule {calls[True]}")
    assert calls == {False: (3, [1, 1]), True: (2, [1, 1])}


# ------------------------------------------------------------------------------------------------ as a user runs it


def test_watcher_check_json_under_both_rules(anvil: Anvil, tmp_path: Path) -> None:
    # A fork on anvil, pool = debt + 0.5 LUSD, Recovery Mode: `watcher check --json` (a process, from a config file)
    # says liquidatable under mainnet's rule and not under the current source's, as liquidate() does.
    w3 = anvil.w3
    snap = take_snapshot(w3)
    try:
        seen = []
        for current in (False, True):
            v1 = deploy_liquity_v1_stand_in(w3, current_source_rule=current)
            multicall = batch_reader(w3)  # before the last transaction, so that the check reads its block
            acct = _place(v1, DEBT)
            v1.set_price(1_400 * WAD)
            block = v1.set_stability_pool(DEBT + WAD // 2)
            deployment = {"protocol": "liquity_v1", "name": "fork", "address": v1.trove_manager.address}
            chain = local_chain(anvil.chain_id, anvil.url, multicall)
            cfg = check_config(
                tmp_path / f"rule-{current}.toml", chain, deployment, accounts([acct.address], ["trove"])
            )
            run = check_json(cfg)
            assert run.code == 1, run.stderr  # critical or liquidatable either way
            [pos] = run.doc["positions"]
            assert pos["block"]["number"] == block
            contract = v1.can_liquidate(acct.address, block)
            assert pos["liquidatable"] is contract is (not current)
            assert pos["details"]["stability_pool_rule"] == (RULE_MAX_TO_OFFSET if current else RULE_ALL_DEPOSITS)
            assert pos["level"] == ("liquidatable" if contract else "critical")
            seen.append((pos["details"]["stability_pool_rule"], pos["health_raw"], pos["liquidatable"], contract))
        print(f"watcher check --json, pool = debt + 0.5 LUSD (rule, health, watcher, liquidate ok): {seen}")
    finally:
        revert_snapshot(w3, snap)
