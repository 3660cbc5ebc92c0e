"""Liquity v2 troves in an interest batch, on our stand-in (not Liquity's contracts; its header says what it leaves
out of batches): the debt is the trove's share of the batch's recorded debt, interest and management fee, each
floored as v2's _getLatestTroveDataFromBatch floors it. The watcher reads the batch (Troves, getLatestBatchData) and
replays time to the wei, so the time to liquidation is the stand-in's own verdict at that second and not one second
earlier, also after another trove's joining compounds the batch, read by the same reader; and `watcher check
--json` carries it, with the fee in the debt's apy.
"""

from __future__ import annotations

from pathlib import Path

from tests.aave_helpers import next_block_at
from tests.processes import check_json
from tests.test_liquity_standin import StandInWatcher, _v2_deployed, v2
from tests.test_probability_sources import config
from watcher.adapters.base import Account
from watcher.adapters.liquity import LiquityV2Reader
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.liquity import LiquityV2StandIn, deploy_liquity_v2_stand_in, placeholder
from watcher.forecast import DAY, forecast
from watcher.model import WAD, Position

__all__ = ["_v2_deployed", "v2"]  # the Liquity v2 stand-in fixtures, found by pytest under these names

MANAGER = placeholder("batch:manager")
RATE, FEE = 30 * 10**16, 8 * 10**16  #: 30 % a year of interest and an 8 % management fee


def _read(watcher: StandInWatcher, trove: int) -> Position:
    [p] = [p for p in watcher.positions().values() if p.details["trove_id"] == trove]
    return p


def _verdict_at(v2: LiquityV2StandIn, trove: int, at: int) -> tuple[bool, int]:
    """Whether the stand-in liquidates the trove in a block at `at`, and its entireDebt there (rolled back)."""
    snap = take_snapshot(v2.w3)
    try:
        next_block_at(v2.w3, at)
        block = v2.set_price(0, v2.oracle_price(0))  # the same price, in a block at `at`
        assert v2.w3.eth.get_block(block)["timestamp"] == at
        return v2.can_liquidate(0, trove, block), v2.tm_view(0, "getLatestTroveData", trove, block=block)[0]
    finally:
        revert_snapshot(v2.w3, snap)


def _open(v2: LiquityV2StandIn) -> tuple[Account, StandInWatcher]:
    v2.set_trove(0, 1_000, placeholder("batch:whale"), 100_000 * WAD, 200 * WAD)  # not the last trove
    v2.set_batch(0, MANAGER, RATE, FEE)
    owner = Account(placeholder("batch:trove"), "t")
    # 1 WETH at 2000 carries 1818.18 BOLD at MCR 110 %; 1,790 BOLD at 38 % a year crosses in about two weeks
    v2.set_batch_trove(0, 41, owner.address, MANAGER, 1_790 * WAD, WAD)
    v2.set_batch_trove(0, 42, placeholder("batch:other"), MANAGER, 3_333 * WAD, 3 * WAD)
    reader = LiquityV2Reader("liquity_v2", "local", v2.collateral_registry.address, [owner], [41])
    return owner, StandInWatcher(v2.w3, reader)


def test_a_batch_troves_debt_is_replayed_to_the_wei_and_it_liquidates_at_the_predicted_second(
    v2: LiquityV2StandIn,
) -> None:
    _, watcher = _open(v2)
    next_block_at(v2.w3, v2.w3.eth.get_block("latest")["timestamp"] + 3 * 3600)
    v2.set_price(0, v2.oracle_price(0))  # three hours later: interest and fee have accrued
    p = _read(watcher, 41)
    assert p.details["interest_batch_manager"].lower() == MANAGER.lower()
    assert p.details["annual_management_fee"] == FEE and p.details["accrued_batch_fee"] > 0
    sim = p.simulator
    for later in (1, 3_601, 5 * DAY + 17, 400 * DAY):
        at = p.block.timestamp + later
        assert sim.at_time(at).debt == _verdict_at(v2, 41, at)[1], later  # the wei the contract reads
    f = forecast(p)
    assert f.modelled and f.at is not None and DAY < f.at - p.block.timestamp < 60 * DAY, f
    assert f.apy[("debt", p.debt[0].asset)] == "0.38"  # interest and fee together
    assert f.interest_per_day == sim.at_time(p.block.timestamp + DAY).debt - p.debt[0].amount
    assert _verdict_at(v2, 41, f.at - 1)[0] is False
    assert _verdict_at(v2, 41, f.at)[0] is True


def test_another_trove_joining_compounds_the_batch_and_the_same_reader_follows_it(v2: LiquityV2StandIn) -> None:
    """A join writes the batch's accrued interest and fee into its recorded debt and moves its update time: the
    reader that read it before reads the new batch state, and its time is the stand-in's verdict again."""
    _, watcher = _open(v2)
    before = forecast(_read(watcher, 41))
    next_block_at(v2.w3, v2.w3.eth.get_block("latest")["timestamp"] + 2 * DAY)
    v2.set_batch_trove(0, 43, placeholder("batch:late"), MANAGER, 5_000 * WAD, 5 * WAD)
    v2.set_batch(0, MANAGER, RATE, 2 * FEE)  # and the fee doubles from now: the trove's time comes sooner
    p = _read(watcher, 41)
    f = forecast(p)
    assert before.at is not None and f.at is not None and f.at < before.at, (f.at, before.at)
    assert p.simulator.batch.updated == p.block.timestamp
    assert f.apy[("debt", p.debt[0].asset)] == "0.46"
    assert (_verdict_at(v2, 41, f.at - 1)[0], _verdict_at(v2, 41, f.at)[0]) == (False, True)


def test_check_json_carries_a_batch_troves_time_and_the_fee_in_its_apy(anvil: Anvil, tmp_path: Path) -> None:
    snap = take_snapshot(anvil.w3)
    try:
        v2 = deploy_liquity_v2_stand_in(anvil.w3)
        owner, _ = _open(v2)
        deployment = {
            "protocol": "liquity_v2",
            "name": "liquity_v2_local",
            "address": v2.collateral_registry.address,
            "troves": [41],
        }
        run = check_json(config(anvil, deployment, [owner.address], tmp_path / "batch.toml"))
        assert run.doc is not None, run.stderr
        [doc] = [p for p in run.doc["positions"] if p["account"].lower() == owner.address.lower()]
        ttl = doc["time_to_liquidation"]
        assert ttl["modelled"] and isinstance(ttl["at"], int), ttl
        [bold] = doc["debt"]
        assert bold["apy"] == "0.38" and doc["interest_per_day"] > 0
        assert (_verdict_at(v2, 41, ttl["at"] - 1)[0], _verdict_at(v2, 41, ttl["at"])[0]) == (False, True)
    finally:
        revert_snapshot(anvil.w3, snap)


def test_a_repayment_leaves_the_whole_remaining_debt_accruing_at_the_batch_rate_and_fee(v2: LiquityV2StandIn) -> None:
    """v2's adjustment applies the pending redistribution into the batch's recorded debt: after repaying, all of what
    is left earns interest and fee (a projection on less of it would come late)."""
    _, watcher = _open(v2)
    sim = _read(watcher, 41).simulator
    repaid = sim.with_repay(sim.bold, 500 * WAD)
    later = repaid.at_time(repaid.now + 365 * DAY)
    assert later.debt - repaid.debt == repaid.debt * (RATE + FEE) // WAD


def test_an_unreadable_batch_costs_the_trove_its_time_not_the_deployment_its_check() -> None:
    """A batch whose getLatestBatchData reverts (or a fork laying out Troves otherwise): the trove is still read and
    valued from its own getLatestTroveData, and its time says why it is not projected."""
    from tests.test_liquity_standin import _answers, _plan
    from watcher.model import BlockRef

    owner = placeholder("batch:unread")
    reader = LiquityV2Reader("liquity_v2", "local", "0x" + "ee" * 20, [Account(owner, "o")], [5])
    values = {
        "count": 1, "bold": "0x" + "b0" * 20, "token": "0x" + "a4" * 20, "tm": "0x" + "a1" * 20,
        "borrowerOperations": "0x" + "a2" * 20, "troveNFT": "0x" + "a3" * 20, "shutdownTime": 0,
        "getEntireBranchColl": 100 * WAD, "getEntireBranchDebt": 50_000 * WAD, "getTroveIdsCount": 3,
        "price": (0, 2_000 * WAD, 1), "status": 1, "MCR": 11 * WAD // 10, "CCR": 15 * WAD // 10,
        "SCR": 11 * WAD // 10, "hasBeenShutDown": 0, "symbol": int.from_bytes(b"WETH".ljust(32, b"\0"), "big"),
        "balance": 1, "owner": owner,
        # a batch trove: its LatestTroveData carries an accrued batch fee, Troves names its manager
        "trove": (1_500 * WAD, WAD, 0, 0, 10**18, 1_499 * WAD, 30 * 10**16, 0, 10**17, 0),
        "troves": (0, WAD, WAD, 1, 0, 0, 1, 0, MANAGER, 1_499 * WAD),
        "batch": tuple(range(12)),
    }  # fmt: skip
    for _ in range(5):
        plan = _plan(reader)
        answers = _answers(plan, values)
        for k, tag in enumerate(plan):
            if tag[0] == "batch":
                answers[k] = (False, b"")  # getLatestBatchData reverted
        got = reader.parse(answers, BlockRef(1, 1_000))
        if got is not None:
            break
    assert got is not None and any(tag[0] == "batch" for tag in plan), plan  # the batch was asked for, and failed
    [p] = got
    assert p.details["interest_batch_manager"].lower() == MANAGER.lower() and p.debt[0].amount == 1_500 * WAD
    f = forecast(p)
    assert not f.modelled and f.at is None and "batch's data does not give its debt" in f.basis, f
