"""Maker against our dss STAND-INs (Dog, Clipper, OSM, Spotter, Jug: not MakerDAO's contracts): what a keeper can do
in one transaction (poke or drip, then bark), the system reasons bark refuses an unsafe vault for, and top-ups in
the GemJoin's token units. Each verdict is checked against the stand-in's own Dog.bark.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from tests.processes import check_json
from tests.test_maker_standin import THRESHOLDS, MakerStandInWatcher
from watcher.adapters.maker import JUG_DRIP, OSM_POKE, SPOTTER_POKE, DogState, MakerSimulator, spot_of
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.maker import HOLE, ILK_HOLE, RAD, RAY, WAD, MakerStandInSystem, deploy_maker_stand_in, new_owners
from watcher.model import Level, Position
from watcher.risk import advise, level_of

_SYSTEMS: dict[str, MakerStandInSystem] = {}


@pytest.fixture(scope="module", params=("eth-tester", "anvil"))
def deployed(request: pytest.FixtureRequest) -> MakerStandInSystem:
    """One stand-in system per chain for this module."""
    if request.param not in _SYSTEMS:
        w3 = (
            request.getfixturevalue("anvil").w3
            if request.param == "anvil"
            else request.getfixturevalue("eth_tester_chain")
        )
        _SYSTEMS[request.param] = deploy_maker_stand_in(w3)
    return _SYSTEMS[request.param]


@pytest.fixture
def system(deployed: MakerStandInSystem) -> Iterator[MakerStandInSystem]:
    """The module's stand-in system, rolled back after each test."""
    snap = take_snapshot(deployed.w3)
    yield deployed
    revert_snapshot(deployed.w3, snap)


def _one(system: MakerStandInSystem, owner: str) -> Position:
    [p] = MakerStandInWatcher(system, [owner]).check().positions
    return p


def test_poke_then_bark(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "poke")
    cdp = system.open("ETH-A", owner)
    system.set_vault(cdp, 10 * WAD, 10_000 * WAD)  # 10 ETH at 2000 / 1.5 carry 13,333 DAI: health 1.33
    system.set_osm("ETH-A", 1400 * WAD, 1400 * WAD)  # the OSM moved to 1400, the Spotter not poked yet
    p = _one(system, owner)
    # At the Vat's spot the vault is safe and bark alone reverts; after Spotter.poke (9,333 DAI of room against
    # 10,000) it is unsafe: a keeper pokes and barks in one transaction, so the user sees liquidatable now.
    assert not p.details["unsafe_now"] and p.liquidatable and level_of(p, THRESHOLDS) == Level.LIQUIDATABLE
    assert p.details["keeper_steps"] == [SPOTTER_POKE] and p.details["bark_reverts"] is None
    assert "a keeper can liquidate this now after Spotter.poke" in p.details["note"]
    assert p.details["poked_health"] == 10 * WAD * spot_of(1400 * WAD, RAY, 3 * RAY // 2) * WAD // (10_000 * WAD * RAY)
    assert "Dog/not-unsafe" in system.bark_call(cdp, p.block.number)
    system.poke("ETH-A")
    assert system.bark(cdp)["status"] == 1 and system.clips["ETH-A"].functions.kicks().call() == 1
    assert system.vat_urn(cdp) == (0, 0)


def _unsafe(system: MakerStandInSystem, salt: str) -> tuple[int, str]:
    """An ETH-A vault that the Vat calls unsafe now (10 ETH, 10,000 DAI, the OSM and spot at 1400)."""
    [owner] = new_owners(1, salt)
    cdp = system.open("ETH-A", owner)
    system.set_vault(cdp, 10 * WAD, 10_000 * WAD)
    system.set_price("ETH-A", 1400 * WAD)
    return cdp, owner


@pytest.mark.parametrize(
    ("case", "revert", "said"),
    [
        ("Hole", "Dog/liquidation-limit-hit", "liquidatable, but Dog.Hole is full (Dirt >= Hole): bark waits"),
        ("hole", "Dog/liquidation-limit-hit", "liquidatable, but the ETH-A hole is full (dirt >= hole): bark waits"),
        ("breaker", "Clipper/stopped-incorrect", "liquidatable, but the ETH-A Clipper's breaker is on (stopped = 1)"),
        ("void", "Clipper/invalid-price", "liquidatable, but the OSM has no current price (voided)"),
    ],
)
def test_unsafe_but_paused(system: MakerStandInSystem, case: str, revert: str, said: str) -> None:
    cdp, owner = _unsafe(system, f"paused-{case}")
    assert system.bark_call(cdp) is None  # bark would go through before the pause
    if case == "Hole":
        system.set_dirt("ETH-A", HOLE, 0)  # running auctions fill the global Hole
    elif case == "hole":
        system.set_dirt("ETH-A", ILK_HOLE, ILK_HOLE)  # ... or ETH-A's own hole
    elif case == "breaker":
        system.set_breaker("ETH-A", 1)  # governance's breaker: no new kick
    else:
        system.osm_call("ETH-A", "void")  # the OSM voided: no current price, stopped
    p = _one(system, owner)
    assert p.details["unsafe_now"] and p.liquidatable and level_of(p, THRESHOLDS) == Level.LIQUIDATABLE
    assert p.details["bark_reverts"] == revert and p.details["keeper_steps"] == [], p.details
    assert p.details["note"].startswith(said), p.details["note"]
    assert revert in (system.bark_call(cdp, p.block.number) or "")
    if case == "void":
        # A keeper's poke cannot help: with no current value the Spotter files spot 0, and bark is then not unsafe
        assert "Dog/not-unsafe" in (system.bark_call(cdp, steps=(SPOTTER_POKE,)) or "")


def test_partial_liquidation_when_the_room_is_short(system: MakerStandInSystem) -> None:
    cdp, owner = _unsafe(system, "partial")
    # 5,000 DAI of room under Hole: bark takes floor(5,000e45 * 1e18 / rate / chop 1.13) of the 10,000 art, the
    # remainder (above dust) stays in the vault; bark succeeds, partially.
    system.set_hole(hole_all=5_000 * RAD)
    p = _one(system, owner)
    rate = p.details["rate"]
    dart = 5_000 * RAD * WAD // rate // (113 * WAD // 100)
    assert p.liquidatable and p.details["bark_reverts"] is None and p.details["bark_takes_art"] == dart
    assert f"bark take {dart} of {10_000 * WAD} art" in p.details["note"]
    assert system.bark(cdp)["status"] == 1
    assert system.vat_urn(cdp)[1] == 10_000 * WAD - dart


def test_stopped_osm_still_lets_bark_through(system: MakerStandInSystem) -> None:
    cdp, owner = _unsafe(system, "osm-stop")
    system.osm_call("ETH-A", "stop")  # stopped, not voided: its current value still prices the auction
    p = _one(system, owner)
    assert p.liquidatable and p.details["bark_reverts"] is None and p.details["osm_stopped"]
    assert "the OSM is stopped" in p.details["note"] and system.bark_call(cdp, p.block.number) is None


def test_osm_poke_is_a_keeper_step_once_its_hop_passed() -> None:
    # By hand: 10 ETH, 10,000 DAI at rate 1; the Vat and cur at 2000 (safe), nxt 1400 due at 3600, now 3600:
    # anyone can OSM.poke (cur <- nxt) then Spotter.poke, then bark. One second earlier the hop has not passed.
    spot = spot_of(2000 * WAD, RAY, 3 * RAY // 2)
    sim = MakerSimulator(
        gem="0x" + "11" * 20, dai="0x" + "22" * 20, ink=10 * WAD, art=10_000 * WAD, stored_rate=RAY, spot=spot,
        dust=100 * RAD, mat=3 * RAY // 2, par=RAY, val=2000 * WAD, val_next=1400 * WAD, base=0, duty=RAY, rho=0,
        now=3600, osm=True, next_at=3600,
        dog=DogState(1, HOLE, 0, ILK_HOLE, 0, 113 * WAD // 100, "0x" + "33" * 20, 0, RAY),
    )  # fmt: skip
    kv = sim.keeper()
    assert sim.liquidatable() and kv.steps == (OSM_POKE, SPOTTER_POKE) and kv.bark.revert is None
    early = MakerSimulator(**{**{f: getattr(sim, f) for f in sim.__dataclass_fields__}, "now": 3599, "keeper_rate": 0})
    assert not early.liquidatable() and early.keeper().steps is None
    # Drip joins the path where the fee decides it: 1% a second for 10 s on the stored rate (base + duty).
    fee = MakerSimulator(**{**{f: getattr(sim, f) for f in sim.__dataclass_fields__}, "val_next": 2000 * WAD,
                            "duty": RAY + RAY // 10, "rho": 3590, "keeper_rate": 0})  # fmt: skip
    assert fee.keeper().steps == (JUG_DRIP,)


def test_top_up_in_gem_join_units(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "wbtc")
    cdp = system.open("WBTC-A", owner)
    system.set_vault(cdp, WAD, 30_000 * WAD)  # 1 WBTC at 60,000 / 1.7 carries 35,294 DAI: health 1.176
    system.set_duty("WBTC-A", RAY)  # no fee: the figures below are worked by hand at rate 1
    p = _one(system, owner)
    [gem] = p.collateral
    assert gem.decimals == 8 and gem.amount == 10**8 and p.details["gem_decimals"] == 8
    # Health 1.5 needs ink * spot >= 1.5 * 30,000e45 with spot = floor(60,000e27 / 1.7) = 35294...882 (RAY), so
    # ink >= 1275000000000000001 wad: 275000000000000001 wad more, which WBTC's join (wad = amt * 1e10) can only
    # credit as ceil(275000000000000001 / 1e10) = 27,500,001 sats. An 18-decimal answer could not be sent at all.
    [up] = advise(p, THRESHOLDS.target).top_ups
    assert up.decimals == 8 and up.amount == 27_500_001 and up.health_after is not None
    assert up.health_after >= THRESHOLDS.target
    snap = take_snapshot(system.w3)
    system.join_and_lock(cdp, up.amount - 1)  # one sat less stays below the target
    assert _one(system, owner).health < THRESHOLDS.target  # type: ignore[operator]
    revert_snapshot(system.w3, snap)
    system.join_and_lock(cdp, up.amount)
    after = _one(system, owner)
    assert after.details["ink"] == WAD + 27_500_001 * 10**10 and after.health == up.health_after >= THRESHOLDS.target


def test_watcher_check_json_names_steps_pauses_and_token_units(anvil: Anvil, tmp_path: Path) -> None:
    # As a user runs it: a config file and `watcher check --json` as a process, against the stand-in on anvil.
    snap = take_snapshot(anvil.w3)
    try:
        _check_json_case(anvil, tmp_path)
    finally:
        revert_snapshot(anvil.w3, snap)


def _check_json_case(anvil: Anvil, tmp_path: Path) -> None:
    system = deploy_maker_stand_in(anvil.w3)
    multicall = batch_reader(anvil.w3)
    [owner] = new_owners(1, "cli")
    poke, paused, wbtc = system.open("ETH-A", owner), system.open("ETH-A", owner), system.open("WBTC-A", owner)
    system.set_duty("WBTC-A", RAY)
    for cdp, ink, art in ((poke, 10 * WAD, 10_000 * WAD), (paused, 10 * WAD, 10_000 * WAD), (wbtc, WAD, 30_000 * WAD)):
        system.set_vault(cdp, ink, art)
    system.set_price("ETH-A", 1400 * WAD)
    system.set_breaker("ETH-A", 1)  # ETH-A's Clipper breaker on: both ETH-A vaults wait
    deployment = {
        "protocol": "maker",
        "name": "stand-in",
        "address": system.manager.address,
        "contracts": system.contracts(),
    }
    chain = local_chain(anvil.chain_id, anvil.url, multicall)
    cfg = check_config(tmp_path / "maker.toml", chain, deployment, accounts([owner], ["vaults"]))
    run = check_json(cfg)
    assert run.code == 1 and run.doc is not None, run.stderr
    by_cdp = {p["details"]["cdp"]: p for p in run.doc["positions"]}
    assert set(by_cdp) == {poke, paused, wbtc} and not run.doc["unknown"]
    for cdp in (poke, paused):
        doc = by_cdp[cdp]
        assert doc["level"] == "liquidatable" and doc["details"]["bark_reverts"] == "Clipper/stopped-incorrect"
        assert doc["details"]["note"].startswith("liquidatable, but the ETH-A Clipper's breaker is on")
        assert "Clipper/stopped-incorrect" in (system.bark_call(cdp, doc["block"]["number"]) or "")
    [up] = by_cdp[wbtc]["advice"]["top_ups"]
    assert (up["amount_raw"], up["amount"], by_cdp[wbtc]["collateral"][0]["decimals"]) == (27_500_001, "0.27500001", 8)
    print(f"watcher check --json: {run.seconds:.2f} s, reads {run.doc['reads']}")
