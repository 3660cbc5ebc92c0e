"""The Maker adapter against our dss STAND-INs (not MakerDAO's contracts): verdicts equal the Vat's own safety test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest
from web3 import Web3

from tests.aave_helpers import local_client
from watcher.adapters.base import Account, ReadError
from watcher.adapters.maker import MakerReader, MakerSimulator, drip, rpow, spot_of
from watcher.check import CheckResult, run_check
from watcher.devchain.deploy import advance_time, revert_snapshot, take_snapshot
from watcher.devchain.maker import RAD, RAY, WAD, MakerStandInSystem, deploy_maker_stand_in, new_owners
from watcher.model import Level, Position
from watcher.risk import Thresholds, level_of, liquidation_price, repayment, top_up

GEM, DAI = "0x" + "11" * 20, "0x" + "22" * 20
THRESHOLDS = Thresholds(warn=125 * WAD // 100, critical=110 * WAD // 100, target=150 * WAD // 100)


class MakerStandInWatcher:
    """The watcher's real read path (ChainClient + run_check) over the stand-in system."""

    def __init__(
        self, system: MakerStandInSystem, owners: list[str], vaults: tuple[int, ...] = (), *, get_cdps: bool = True
    ) -> None:
        w3 = system.w3
        self.client = local_client(w3)
        accounts = [Account(o, f"owner{i}") for i, o in enumerate(owners)]
        s = system
        self.reader = MakerReader(
            "maker",
            "local",
            s.manager.address,
            s.vat.address,
            s.spotter.address,
            s.jug.address,
            accounts,
            vaults,
            dog=s.dog.address,
            get_cdps=s.get_cdps.address if get_cdps else None,
            ilk_registry=s.ilk_registry.address,
        )

    def check(self) -> CheckResult:
        """One check, as `watcher check` runs it."""
        result = run_check({"local": self.client}, [self.reader])
        assert not result.unreadable, result.unreadable
        return result

    def positions(self) -> dict[int, Position]:
        """Positions by vault id from one check."""
        return {p.details["cdp"]: p for p in self.check().positions}


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


def _sim(ink: int, art: int, rate: int, price: int, mat: int = 3 * RAY // 2, dust: int = 100 * RAD) -> MakerSimulator:
    return MakerSimulator(
        gem=GEM,
        dai=DAI,
        ink=ink,
        art=art,
        stored_rate=rate,
        spot=spot_of(price, RAY, mat),
        dust=dust,
        mat=mat,
        par=RAY,
        val=price,
        val_next=price,
        base=0,
        duty=RAY,
        rho=0,
    )


def test_standin_health_by_hand() -> None:
    # 10 ETH locked, art 10,000, rate 1.05 RAY, OSM 2000 USD (WAD), mat 1.5 RAY, par 1 RAY:
    #   spot = rdiv(rdiv(2000e18 * 1e9, 1e27), 1.5e27) = floor(2000e27 * 1e27 / 1.5e27)
    #        = 1333333333333333333333333333333
    #   tab = art * rate = 10,000e18 * 1.05e27 = 10,500e45 (debt 10,500 DAI)
    #   health = floor(10e18 * spot * 1e18 / 10,500e45) = 1269841269841269841 (13,333.33 / 10,500)
    sim = _sim(10 * WAD, 10_000 * WAD, 105 * RAY // 100, 2000 * WAD)
    assert sim.spot == 1333333333333333333333333333333
    assert sim.debt() == 10_500 * WAD and sim.health() == 1269841269841269841 and not sim.liquidatable()
    # Liquidation price: safe iff 10e18 * floor(val * 2e9 / 3) >= 10,500e45 iff val >= 1575e18 (= tab * mat / ink),
    # so the highest value the Dog would bark at is 1575e18 - 1.
    [gem_leg] = _legs(sim)
    lp = liquidation_price(sim, gem_leg)
    assert lp is not None and lp.falling and lp.price == 1575 * WAD - 1
    assert sim.with_price(GEM, 1575 * WAD - 1).liquidatable() and not sim.with_price(GEM, 1575 * WAD).liquidatable()
    # Top-up to health 1.5: ink * spot >= 1.5 * 10,500e45 = 15,750e45 -> ink >= 11.8125e18 plus 1 wei (spot floors):
    # ink = ceil(15,750e45 / spot) = 11812500000000000001, so the top-up is 1812500000000000001 wei.
    pos = _position(sim)
    up = top_up(pos, sim, gem_leg, THRESHOLDS.target)
    assert up is not None and up.amount == 1812500000000000001 and up.health_after == 15 * WAD // 10
    # Repay to 1.5: art * rate * 1.5 <= ink * spot -> art <= floor(10e18 * spot / 1.575e27) = 8465608465608465608465
    # (8465.6 DAI of art), so floor(y * 1e27 / 1.05e27) >= 10,000e18 - that = 1534391534391534391535
    # -> y >= 1534391534391534391535 * 1.05 = 1611111111111111111111.75 -> 1611111111111111111112 wei (1611.1 DAI).
    [debt_leg] = pos.debt
    rep = repayment(pos, sim, debt_leg, THRESHOLDS.target)
    assert rep is not None and rep.feasible and rep.amount == 1611111111111111111112
    assert sim.with_repay(DAI, rep.amount).art == 8465608465608465608465


def test_standin_dust_by_hand() -> None:
    # art 150, rate 1.05: debt 157.5 DAI; dust 100 DAI (100e45 RAD) -> least non-zero art = ceil(100e45 / 1.05e27)
    #   = 95238095238095238096. Repaying 100 DAI would leave art 150e18 - 95238095238095238095 (tab 57.5 DAI < dust),
    #   which the Vat refuses (Vat/dust): the simulator stops at the dust floor instead.
    sim = _sim(WAD // 10, 150 * WAD, 105 * RAY // 100, 2000 * WAD)
    assert sim.min_art() == 95238095238095238096
    assert sim.with_repay(DAI, 100 * WAD).art == 95238095238095238096
    assert sim.with_repay(DAI, sim.debt()).art == 0
    # The most that may be repaid while keeping >= dust: art may fall by 150e18 - 95238095238095238096
    # = 54761904761904761904, i.e. floor(y / 1.05) <= that -> y < 54761904761904761905 * 1.05 = 57.5e18 + 0.25,
    # so y = 57.5e18 exactly; one wei more pays off one more unit of art and leaves the vault dusty.
    pos = _position(sim)
    assert pos.details["max_partial_repay"] == 575 * WAD // 10
    assert 150 * WAD - 575 * WAD // 10 * RAY // sim.rate == sim.min_art()
    assert 150 * WAD - (575 * WAD // 10 + 1) * RAY // sim.rate == sim.min_art() - 1
    assert pos.details["dust"] == 100 * RAD and pos.details["dust_dai"] == 100 * WAD and not pos.details["below_dust"]
    # 0.1 ETH at 2000 carries only 133.3 / 1.5 DAI: health 1.5 needs art * 1.05 <= 88.9 DAI -> art 84.66 < the dust
    # floor 95.24, so the only repayment that reaches the target is all of it.
    rep = repayment(pos, sim, pos.debt[0], THRESHOLDS.target)
    assert rep is not None and rep.feasible and rep.amount == sim.debt() and rep.health_after is None
    # Dust raised above a vault's debt: any partial repayment is refused, so health does not move until the full one.
    dusty = replace(sim, dust=200 * RAD)
    assert dusty.with_repay(DAI, 50 * WAD).art == dusty.art and _position(dusty).details["below_dust"]


def test_standin_rpow_and_drip_by_hand() -> None:
    # rpow squares with half-up rounding: 1.1^2 = 1.21 exactly in RAY; 1.5^3 = 3.375.
    assert rpow(11 * RAY // 10, 2, RAY) == 121 * RAY // 100 and rpow(3 * RAY // 2, 3, RAY) == 3375 * RAY // 1000
    assert rpow(0, 0, RAY) == RAY and rpow(0, 5, RAY) == 0
    # duty 1.000000001 RAY for 2 s: rpow = 1.000000002000000001 RAY; rate 1.05 RAY -> floor(1.05 * that) RAY.
    duty = RAY + 10**18
    assert drip(105 * RAY // 100, 0, duty, 100, 102) == 105 * rpow(duty, 2, RAY) // 100
    assert rpow(duty, 2, RAY) == RAY + 2 * 10**18 + 10**9


def _legs(sim: MakerSimulator) -> list:
    return list(_position(sim).collateral)


def _position(sim: MakerSimulator) -> Position:
    """A position built by the reader's own code path from a simulator (no chain)."""
    from watcher.adapters.maker import Vault, build_position
    from watcher.model import BlockRef

    vault = Vault("0x" + "33" * 20, b"ETH-A".ljust(32, b"\0"))
    return build_position("maker", "local", 1, vault, "0x" + "44" * 20, "me #1", sim, BlockRef(1, 0), {})


_PATHS = ((), ("Jug.drip",), ("Spotter.poke",), ("Spotter.poke", "Jug.drip"))


def _assert_verdicts(system: MakerStandInSystem, watcher: MakerStandInWatcher) -> list[bool]:
    """The watcher's verdict per vault equals the stand-in's: the Vat's `spot > 0 and ink*spot < art*rate` at that
    block, and Dog.bark succeeding after the keeper steps the watcher names (or after none of them, when it says not
    liquidatable).
    """
    verdicts = []
    for cdp, p in sorted(watcher.positions().items()):
        contract = system.unsafe(cdp, p.block.number)
        assert p.details["unsafe_now"] == contract, (cdp, p.details)
        cur = p.details["current_health"]
        assert contract == (p.details["spot"] > 0 and cur is not None and cur < WAD)
        # The health shown is the worst a keeper reaches or the next price brings: never above the current one.
        assert cur is None or (p.health is not None and p.health <= cur)
        if p.liquidatable:
            steps = tuple(p.details["keeper_steps"])
            assert p.details["bark_reverts"] is None and system.bark_call(cdp, steps=steps) is None, p.details
            assert "a keeper can liquidate this now" in p.details["note"]
        else:
            for steps in _PATHS:
                assert "Dog/not-unsafe" in (system.bark_call(cdp, steps=steps) or ""), (cdp, steps)
        verdicts.append(p.liquidatable)
    return verdicts


def test_standin_verdicts_equal_vat(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "verdicts")
    # ETH at 2000, mat 1.5: 1 ETH carries 1333.33 DAI; WBTC at 60,000, mat 1.7: 1 WBTC carries 35,294.1 DAI.
    plan = [
        ("ETH-A", WAD, 1000 * WAD),
        ("ETH-A", WAD, 1333 * WAD),
        ("ETH-A", 3 * WAD, 3999 * WAD),
        ("ETH-A", 3 * WAD, 4000 * WAD),  # ink*spot = 3 * 1333.33...e27 * 1e18 < 4000e45 by the floor of spot
        ("WBTC-A", WAD, 35_000 * WAD),
        ("WBTC-A", WAD // 2, 0),
    ]
    cdps = []
    for ilk, ink, art in plan:
        cdp = system.open(ilk, owner)
        system.set_vault(cdp, ink, art)
        cdps.append(cdp)
    watcher = MakerStandInWatcher(system, [owner])
    seen = [_assert_verdicts(system, watcher)]
    assert seen[0] == [False, False, False, True, False, False]
    # Interest: the Jug drips after time passes (rate grows), then prices fall and par moves; every step compared.
    advance_time(system.w3, 30 * 86400)
    system.drip("ETH-A")
    system.drip("WBTC-A")
    seen.append(_assert_verdicts(system, watcher))
    for eth, btc in ((1990, 59_700), (1700, 52_000), (1500, 41_000), (900, 20_000)):
        system.set_price("ETH-A", eth * WAD)
        system.set_price("WBTC-A", btc * WAD)
        seen.append(_assert_verdicts(system, watcher))
    system.set_price("ETH-A", 2500 * WAD)
    system.set_par(11 * RAY // 10)  # par moves spot only once poked, as in dss
    seen.append(_assert_verdicts(system, watcher))
    system.poke("ETH-A")
    seen.append(_assert_verdicts(system, watcher))
    system.set_rate("ETH-A", 2 * RAY)
    seen.append(_assert_verdicts(system, watcher))
    print(f"maker stand-in verdicts per step ({sum(map(len, seen))} comparisons): {seen}")
    # 30 days at ~4%/yr (+0.32%) tip the ETH vaults at 1333 and 3999 DAI over; WBTC's 2%/yr leaves 35,000 safe.
    assert seen[1] == [False, True, True, True, False, False]
    assert seen[5] == [True, True, True, True, True, False]


def _unsafe_at(
    system: MakerStandInSystem, cdp: int, ilk: str, price: int | None = None, par: int | None = None
) -> bool:
    """Set the OSM value or par, poke, and return the stand-in Vat's verdict there; state rolled back."""
    snap = take_snapshot(system.w3)
    try:
        if par is not None:
            system.set_par(par)
        if price is not None:
            system.set_osm(ilk, price, price)
        block = system.poke(ilk)
        return system.unsafe(cdp, block)
    finally:
        revert_snapshot(system.w3, snap)


def test_standin_liquidation_price_is_the_boundary(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "boundary")
    eth, btc = system.open("ETH-A", owner), system.open("WBTC-A", owner)
    system.set_vault(eth, 3 * WAD + 12345, 3210 * WAD + 987)
    system.set_vault(btc, WAD // 3, 8_000 * WAD)
    system.set_rate("ETH-A", 1_034_567_891_234_567_891_234_567_891)  # a non-round rate exercises the floors
    for ilk in ("ETH-A", "WBTC-A"):
        system.set_duty(ilk, RAY)  # no fee accrues between the read and the pokes below: the boundary to the wei
    watcher = MakerStandInWatcher(system, [owner])
    for cdp, p in watcher.positions().items():
        ilk = p.details["ilk"]
        assert p.health is not None and p.health > WAD and not p.liquidatable
        sim = p.simulator
        assert isinstance(sim, MakerSimulator)
        [gem] = p.collateral
        lp = liquidation_price(sim, gem)
        assert lp is not None and lp.falling and lp.current == p.details["current_price"]
        assert _unsafe_at(system, cdp, ilk, price=lp.price)
        assert not _unsafe_at(system, cdp, ilk, price=lp.price + 1)
        # The closed form val* = art * rate * mat * par / ink (protocol-math.md) agrees with the search to a unit.
        exact = sim.tab() * sim.mat * sim.par // (sim.ink * RAY * RAY * 10**9)
        assert abs(lp.price - exact) <= 1
        # The debt side: par rising (in WAD per DAI here) makes spot fall on the next poke.
        [dai] = p.debt
        up = liquidation_price(sim, dai)
        assert up is not None and not up.falling
        assert _unsafe_at(system, cdp, ilk, par=up.price * 10**9)
        assert not _unsafe_at(system, cdp, ilk, par=(up.price - 1) * 10**9)


def test_standin_osm_next_price_warns_before_the_vat(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "osm")
    cdp = system.open("ETH-A", owner)
    system.set_vault(cdp, 10 * WAD, 9_000 * WAD)  # health 13,333.3 / 9,000 = 1.48 at 2000
    system.set_duty("ETH-A", RAY)  # no fee: the healths below are worked by hand at rate 1
    watcher = MakerStandInWatcher(system, [owner])
    p = watcher.positions()[cdp]
    assert p.details["health_source"] == "current" and level_of(p, THRESHOLDS) == Level.OK
    # The OSM queues 1650 for the next hour: 10 * 1650 / 1.5 / 9000 = 1.222 < warn 1.25, while the Vat still
    # holds the spot of 2000. The health shown is the next one; the verdict stays the Vat's.
    ts = int(system.w3.eth.get_block("latest")["timestamp"])
    zzz = ts - ts % 3600
    system.set_osm("ETH-A", 2000 * WAD, 1650 * WAD, zzz)
    p = watcher.positions()[cdp]
    nh = p.details["next_health"]
    assert nh == 10 * WAD * spot_of(1650 * WAD, RAY, 3 * RAY // 2) * WAD // (9_000 * WAD * RAY)
    assert p.health == nh < THRESHOLDS.warn < p.details["current_health"]
    assert p.details["health_source"] == "next" and not p.liquidatable
    assert p.details["next_price"] == 1650 * WAD and p.details["next_price_at"] == zzz + 3600
    assert level_of(p, THRESHOLDS) == Level.WARN
    # An hour later the OSM moves (its own poke rule: cur <- nxt), the Spotter pokes: the Vat's health is now
    # exactly what the watcher announced.
    advance_time(system.w3, 3600)
    system._send(system.osms["ETH-A"], "OsmStandIn", "push", 1650 * WAD)
    system.poke("ETH-A")
    p2 = watcher.positions()[cdp]
    assert p2.details["current_health"] == nh and not p2.liquidatable
    # A next price under the liquidation price: health below 1 while the protocol's verdict is still "not yet".
    system.set_osm("ETH-A", 1650 * WAD, 1300 * WAD)
    p3 = watcher.positions()[cdp]
    assert p3.health is not None and p3.health < WAD and not p3.liquidatable and not system.unsafe(cdp)
    # A Vat spot lagging the OSM's current value (no poke yet) shows as "poked", and Spotter.poke is
    # permissionless: a keeper pokes and barks in one transaction, so the verdict is liquidatable, step named.
    system.set_osm("ETH-A", 1300 * WAD, 1700 * WAD)
    p4 = watcher.positions()[cdp]
    assert p4.details["health_source"] == "poked" and p4.health == p4.details["poked_health"] < WAD
    assert p4.liquidatable and not system.unsafe(cdp) and p4.details["keeper_steps"] == ["Spotter.poke"]
    assert "Dog/not-unsafe" in system.bark_call(cdp) and system.bark_call(cdp, steps=("Spotter.poke",)) is None


def test_standin_rate_projection_matches_jug_drip(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "drip")
    cdp = system.open("WBTC-A", owner)
    system.set_vault(cdp, WAD, 30_000 * WAD)
    watcher = MakerStandInWatcher(system, [owner])
    sim = watcher.positions()[cdp].simulator
    assert isinstance(sim, MakerSimulator)
    for days in (1, 45, 400):
        advance_time(system.w3, days * 86400)
        block = system.drip("WBTC-A")
        ts = int(system.w3.eth.get_block(block)["timestamp"])
        _, rate, _, _, _ = system.vat_ilk("WBTC-A", block)
        # One drip from rho replays exactly; drips in between change rho, so re-read before the next projection.
        assert sim.at_time(ts).rate == rate, days
        sim = watcher.positions()[cdp].simulator
        assert isinstance(sim, MakerSimulator) and sim.rate == rate


def test_standin_discovery_by_owner_then_one_call(system: MakerStandInSystem) -> None:
    owner, other = new_owners(2, "discovery")
    mine = [system.open("ETH-A" if i % 2 else "WBTC-A", owner) for i in range(5)]
    theirs = system.open("ETH-A", other)
    for i, cdp in enumerate([*mine, theirs]):
        system.set_vault(cdp, (i + 1) * WAD, (i + 1) * 500 * WAD)
    # One owner walked through the manager, one vault by id (owned by someone not watched).
    watcher = MakerStandInWatcher(system, [owner], vaults=(theirs,))
    first = watcher.check()
    assert sorted(p.details["cdp"] for p in first.positions) == sorted([*mine, theirs])
    assert {p.account for p in first.positions} == {owner, other}
    assert first.stats["local"].rounds <= 6
    rounds = [first.stats["local"].rounds]
    for k in range(3):
        system.set_price("ETH-A", (1999 - k) * WAD)
        again = watcher.check()
        st = again.stats["local"]
        assert st.eth_calls == 1 and st.rounds == 1, st
        assert len(again.positions) == 6
        rounds.append(st.rounds)
    # A vault given away leaves the owner's list (first/last/count change): noticed at once, then one round again.
    system.give(mine[2], other)
    moved = watcher.check()
    assert sorted(p.details["cdp"] for p in moved.positions) == sorted([*mine[:2], *mine[3:], theirs])
    new = system.open("ETH-A", owner)
    system.set_vault(new, WAD, 100 * WAD)
    grown = watcher.check()
    assert new in {p.details["cdp"] for p in grown.positions}
    steady = watcher.check()
    assert steady.stats["local"].eth_calls == 1 and steady.stats["local"].rounds == 1
    print(
        f"maker discovery rounds: first {rounds[0]}, then {rounds[1:]}, after give/open {moved.stats['local'].rounds}"
        f"/{grown.stats['local'].rounds}, calls per steady check {steady.stats['local'].calls}"
    )


def test_standin_a_swapped_vault_under_an_unchanged_fingerprint_is_noticed(system: MakerStandInSystem) -> None:
    owner, other = new_owners(2, "swap")
    a, b, c = (system.open("ETH-A", owner) for _ in range(3))
    for cdp in (a, b, c):
        system.set_vault(cdp, WAD, 100 * WAD)
    watcher = MakerStandInWatcher(system, [owner])
    assert sorted(p.details["cdp"] for p in watcher.check().positions) == [a, b, c]
    # [a, b, c] -> give b away -> [a, c] -> open d -> [a, c, d] -> give c away and back -> [a, d, c]:
    # first a, last c, count 3 as before, but b is gone and d is new
    system.give(b, other)
    d = system.open("ETH-A", owner)
    system.set_vault(d, WAD, 100 * WAD)
    system.give(c, other)
    system._send(system.manager, "DssCdpManagerStandIn", "give", c, owner)
    result = watcher.check()
    assert sorted(p.details["cdp"] for p in result.positions) == sorted([a, c, d])
    assert {p.account for p in result.positions} == {owner}
    assert watcher.check().stats["local"].rounds == 1


def test_standin_drip_then_bark(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "drip")
    # 1 ETH at 2000, mat 1.5 carries 1333.33 DAI; 1333 DAI at rate 1 is safe until ~4%/yr accrues for a month
    cdp = system.open("ETH-A", owner)
    system.set_vault(cdp, WAD, 1333 * WAD)
    system.drip("ETH-A")
    watcher = MakerStandInWatcher(system, [owner])
    advance_time(system.w3, 30 * 86400)
    [p] = watcher.check().positions
    # The Vat's stored rate is still safe, so bark alone reverts; Jug.drip is permissionless, and after it bark
    # succeeds: the verdict the user sees is liquidatable, with the step named.
    assert not p.details["unsafe_now"] and not system.unsafe(cdp, p.block.number)
    assert p.liquidatable and p.details["keeper_steps"] == ["Jug.drip"] and p.details["bark_reverts"] is None
    assert "after Jug.drip" in p.details["note"] and p.details["dripped_health"] < WAD <= p.details["current_health"]
    assert p.details["health_source"] == "dripped"
    assert "Dog/not-unsafe" in system.bark_call(cdp, p.block.number)
    system.drip("ETH-A")
    receipt = system.bark(cdp)
    assert receipt["status"] == 1 and system.vat_urn(cdp) == (0, 0)  # the whole vault went to auction
    assert system.clips["ETH-A"].functions.kicks().call() == 1


def test_standin_garbage_answer_is_a_read_error(system: MakerStandInSystem) -> None:
    [owner] = new_owners(1, "garbage")
    cdp = system.open("ETH-A", owner)
    system.set_vault(cdp, WAD, 1000 * WAD)
    watcher = MakerStandInWatcher(system, [owner])
    watcher.check()
    reader, client = watcher.reader, watcher.client
    calls = reader.calls()

    async def read() -> tuple[int, list[tuple[bool, bytes]]]:
        try:
            block = await client.latest_block()
            return block, (await client.read(calls, block))[1]
        finally:
            await client.close()

    block, answers = asyncio.run(read())
    from watcher.model import BlockRef

    ref = BlockRef(block, 0)
    assert reader.parse(answers, ref)  # the honest answers value the vault

    def corrupt(tag: tuple, data: bytes, ok: bool = True) -> list[tuple[bool, bytes]]:
        i = reader._plan.index(tag)
        return [*answers[:i], (ok, data), *answers[i + 1 :]]

    pip = system.osms["ETH-A"].address
    ilk = b"ETH-A".ljust(32, b"\0")
    bad = [
        corrupt(("cur", pip), ((2 << 128) | 5).to_bytes(32, "big")),  # has = 2: not an OSM Feed
        corrupt(("vurn", cdp), b"\x01" * 40),  # short: Vat.urns answers two words
        corrupt(("vilk", ilk), b"", ok=False),  # reverted
        corrupt(("silk", ilk), (1 << 200).to_bytes(32, "big") + (RAY).to_bytes(32, "big")),  # pip not an address
        corrupt(("vilk", ilk), bytes(32 * 5)),  # rate 0: ilk not initialised
        corrupt(("zzz", pip), (1 << 70).to_bytes(32, "big")),  # zzz beyond uint64
        answers[:-1],  # an answer missing
    ]
    for results in bad:
        with pytest.raises(ReadError):
            reader.parse(results, ref)
    assert reader.parse(answers, ref)  # and nothing learned from garbage spoils the next honest answer


def test_standin_osm_storage_layout(system: MakerStandInSystem) -> None:
    # The watcher reads cur and nxt at slots 3 and 4 as the real osm.sol lays them out; src|hop|zzz share slot 2.
    osm = system.osms["ETH-A"]
    system.set_osm("ETH-A", 1234 * WAD, 1300 * WAD, 7_200)
    w3: Web3 = system.w3
    cur, nxt, packed = (int.from_bytes(w3.eth.get_storage_at(osm.address, s), "big") for s in (3, 4, 2))
    assert cur == (1 << 128) | 1234 * WAD and nxt == (1 << 128) | 1300 * WAD
    assert packed >> 160 & 0xFFFF == osm.functions.hop().call() == 3600 and packed >> 176 == 7_200


def test_standin_make_reader_from_the_protocols_file() -> None:
    from watcher.adapters.maker import make_reader
    from watcher.config import Deployment
    from watcher.resources import protocol_files

    spec = protocol_files()["maker"]
    assert spec["adapter"] == "maker"
    entry = spec["deployments"]["ethereum"]
    extra = {k: v for k, v in entry.items() if k not in ("chain_id", "cdp_manager")}
    dep = Deployment(
        name="maker",
        adapter="maker",
        chain="ethereum",
        chain_id=1,
        address=entry["cdp_manager"],
        vaults=[7, 7, 9],
        extra=extra,
    )
    reader = make_reader(dep, [Account(GEM, "me")])
    assert reader.manager == entry["cdp_manager"] and reader.vat == entry["vat"] and reader.jug == entry["jug"]
    assert reader.spotter == entry["spot"] and reader.dai == entry["dai"] and reader.vault_ids == [7, 9]
    with pytest.raises(ValueError, match="jug"):
        make_reader(dep.model_copy(update={"extra": {k: v for k, v in extra.items() if k != "jug"}}), [])


def test_standin_dusty_vault_cannot_take_a_pure_top_up() -> None:
    # Vat.frob checks `urn.art == 0 or tab >= dust` after EVERY frob, a pure collateral lock (dink > 0, dart = 0)
    # included: a vault left below a raised dust (art 150 at rate 1.05: tab 157.5 DAI < dust 200 DAI) reverts
    # Vat/dust on any top-up, so no top-up may be advised; only a full repayment (or a draw above dust) helps.
    dusty = _sim(WAD // 10, 150 * WAD, 105 * RAY // 100, 2000 * WAD, dust=200 * RAD)
    assert (
        dusty.with_supply(GEM, 10 * WAD).ink == dusty.ink
        and dusty.with_supply(GEM, 10 * WAD).health() == dusty.health()
    )
    pos = _position(dusty)
    assert pos.details["below_dust"] and top_up(pos, dusty, pos.collateral[0], THRESHOLDS.target) is None
    rep = repayment(pos, dusty, pos.debt[0], THRESHOLDS.target)
    assert rep is not None and rep.feasible and rep.amount == dusty.debt()
    # At or above dust a top-up locks as usual: tab 157.5 DAI >= dust 100 DAI.
    assert _sim(WAD // 10, 150 * WAD, 105 * RAY // 100, 2000 * WAD).with_supply(GEM, WAD).ink == WAD // 10 + WAD
