"""Time to liquidation at constant prices for GMX v2 and Synthetix perps v3, judged by our stand-ins' own checks.

On anvil, against GmxStandIn.sol's isPositionLiquidatable (pending borrowing and funding accrued by block.timestamp)
and SynthetixPerpsStandIn.sol's canLiquidate (funding at constant velocity, interest), at the predicted second and
one second before it. Synthetix's margin over time has one turning point: a dip below the requirement that recovers
is found although the horizon is safe (a one-way search misses it), an account whose dip stays above gets none, and
one that funding favours first and costs later gets the later stretch. `watcher check --json` as a process carries
the time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.aave_helpers import batch_reader, latest_timestamp, next_block_at
from tests.configs import accounts, check_config, local_chain, write_toml
from tests.loopback import free_port
from tests.processes import TOKEN, TOKEN_ENV, WatcherProcess, check_json, wait_for
from tests.telegram_server import TelegramStandIn
from tests.test_gmx_between_checks import KeptReader
from tests.test_synthetix_perps_standin import StandInWatcher, _liquidatable_at
from watcher.adapters.gmx_v2 import FLOAT, market_key, open_interest_in_tokens_key, open_interest_key, pool_amount_key
from watcher.adapters.gmx_v2 import positions as positions_module
from watcher.adapters.gmx_v2.accrual import GmxAccrual
from watcher.devchain.anvil import Anvil
from watcher.devchain.comet import new_addresses
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.gmx import GmxStandIn, deploy_gmx_stand_in
from watcher.devchain.synthetix import ETH, SynthetixStandInMarket, deploy_synthetix_stand_in, owner_addresses
from watcher.forecast import DAY, forecast
from watcher.forecast_doc import ForecastCache
from watcher.forecast_perps import synthetix_turning_point
from watcher.model import Position
from watcher.risk import least_true

D18 = 10**18
USD = FLOAT
ACCOUNT = 1


@pytest.fixture
def gmx(anvil: Anvil) -> Iterator[GmxStandIn]:
    snap = take_snapshot(anvil.w3)
    yield deploy_gmx_stand_in(anvil.w3)
    revert_snapshot(anvil.w3, snap)


@pytest.fixture
def snx(anvil: Anvil) -> Iterator[SynthetixStandInMarket]:
    snap = take_snapshot(anvil.w3)
    yield deploy_synthetix_stand_in(anvil.w3)
    revert_snapshot(anvil.w3, snap)


def gmx_accrual(gmx: GmxStandIn, since: int) -> dict[bytes, int]:
    """ETH/USD [WETH-USDC]: 2.5M USD long against 1M short, so longs pay funding (7e-9 * 1.5/3.5 per second) and
    borrowing (2e-8 per second * 1.5M reserved / 3M pool); shorts pay nothing (no short BORROWING_FACTOR)."""
    eth, weth, usdc = gmx.market("ETH/USD").address, gmx.token("WETH").address, gmx.token("USDC").address
    return {
        open_interest_key(eth, weth, True): 1_500_000 * USD,
        open_interest_key(eth, usdc, True): 1_000_000 * USD,
        open_interest_in_tokens_key(eth, weth, True): 300 * D18,
        open_interest_in_tokens_key(eth, usdc, True): 200 * D18,
        open_interest_key(eth, usdc, False): 1_000_000 * USD,
        pool_amount_key(eth, weth): 1_000 * D18,
        pool_amount_key(eth, usdc): 3_000_000 * 10**6,
        market_key("BORROWING_FACTOR", eth, True): 2 * FLOAT // 10**8,
        market_key("CUMULATIVE_BORROWING_FACTOR_UPDATED_AT", eth, True): since,
        market_key("CUMULATIVE_BORROWING_FACTOR", eth, True): FLOAT // 10**4,
        market_key("FUNDING_FACTOR", eth): 7 * FLOAT // 10**9,
        market_key("FUNDING_UPDATED_AT", eth): since,
    }


def _feeds_refreshed_at(gmx: GmxStandIn, at: int) -> None:
    """USDC's feed answered again at `at` - 1 and WETH's at `at`, the same prices: the reader's heartbeat is met."""
    for symbol, ts in (("USDC", at - 1), ("WETH", at)):
        next_block_at(gmx.w3, ts)
        block = gmx.set_answer(symbol, gmx.answer(symbol))
        assert gmx.w3.eth.get_block(block)["timestamp"] == ts


def _gmx_liquidatable_at(gmx: GmxStandIn, user: str, collateral: str, is_long: bool, at: int) -> bool:
    """The stand-in's isPositionLiquidatable in a block mined at `at`, the feeds' prices unchanged. Rolled back."""
    snap = take_snapshot(gmx.w3)
    try:
        next_block_at(gmx.w3, at)
        block = gmx.set_answer("WETH", gmx.answer("WETH"))
        assert gmx.w3.eth.get_block(block)["timestamp"] == at
        return gmx.is_liquidatable(user, "ETH/USD", collateral, is_long, block)[0]
    finally:
        revert_snapshot(gmx.w3, snap)


def test_gmx_fees_accrue_to_the_stand_ins_liquidation_second(gmx: GmxStandIn) -> None:
    payer, receiver = new_addresses(2, "gmx-ttl")
    gmx.set_uints(gmx_accrual(gmx, latest_timestamp(gmx.w3) - 3_600))
    # 20,000 USD long on 0.12 WETH (360 USD, 100 USD required): about 23 USD of fees a day, liquidatable in days.
    # A position opened at the stored cumulative factor owes only what accrues after it.
    gmx.set_position(payer, "ETH/USD", "WETH", True, 20_000 * USD, 20 * D18 // 3, 12 * D18 // 100, 0, FLOAT // 10**4)
    # The short side receives funding and has no borrowing factor: its costs do not grow.
    gmx.set_position(receiver, "ETH/USD", "USDC", False, 20_000 * USD, 20 * D18 // 3, 300 * 10**6)
    kept = KeptReader(gmx, [payer, receiver])
    by_user = {p.account: p for p in kept.check().positions}
    p = by_user[payer]
    assert p.simulator.accrues, "the replayed rate model reproduces the Reader's fees at the read block"
    [now], [day] = p.simulator.positions, p.simulator.at_time(p.block.timestamp + DAY).positions
    assert day.borrowing_fee_usd > now.borrowing_fee_usd and day.funding_fee_amount > now.funding_fee_amount
    # at_time(t) owes what the stand-in's Reader answers in a block at t, to the unit
    for dt in (1, 3_600, DAY, 9 * DAY):
        at = p.block.timestamp + dt
        snap = take_snapshot(gmx.w3)
        try:
            _feeds_refreshed_at(gmx, at)
            later = {q.account: q for q in kept.check().positions}
        finally:
            revert_snapshot(gmx.w3, snap)
        for user in (payer, receiver):
            [leg] = later[user].perps
            [sim] = by_user[user].simulator.at_time(at).positions
            got = (sim.borrowing_fee_usd, sim.funding_fee_amount)
            assert got == (leg.details["pending_borrowing_fee_usd"], leg.details["pending_funding_fee_amount"]), dt
    f = forecast(p)
    assert f.modelled and f.at is not None and DAY < f.at - p.block.timestamp < 30 * DAY, f
    assert f.interest_per_day is not None and 15 * USD < f.interest_per_day < 35 * USD, f.interest_per_day
    assert not _gmx_liquidatable_at(gmx, payer, "WETH", True, f.at - 1)
    assert _gmx_liquidatable_at(gmx, payer, "WETH", True, f.at)

    q = by_user[receiver]
    g = forecast(q)
    assert g.modelled and g.at is None and g.interest_per_day == 0, g
    # why: at the horizon its fees are what they were at the read block, and the stand-in agrees it is safe there
    later = q.simulator.at_time(g.start + g.horizon_s)
    assert later.positions[0].funding_fee_amount == q.simulator.positions[0].funding_fee_amount
    assert not _gmx_liquidatable_at(gmx, receiver, "USDC", False, g.start + 400 * DAY)


# --- Synthetix: one long of 10 ETH at 2,000 (20,000 USD) in the ETH market, whose funding we place


def _snx_account(snx: SynthetixStandInMarket, rate: int, skew: int, surplus: int) -> Position:
    """The long, as the watcher reads it, under funding rate `rate` (D18 per day) moving with `skew`, its margin
    `surplus` over the requirement."""
    now = latest_timestamp(snx.w3)  # not later than the next block: elapsed time is unsigned in the stand-in
    value = 7 * D18 // 10
    snx.send("setFunding", ETH.market_id, skew, rate, value, now)
    [owner] = owner_addresses(1)
    snx.open_account(ACCOUNT, owner, 2_000 * D18)
    snx.set_position(ACCOUNT, ETH.market_id, 10 * D18, ETH.price, value, 12 * 10**14)
    watcher = StandInWatcher(snx, [ACCOUNT])
    for _ in range(2):  # the keeper reward moves a little with the collateral: a second step settles it
        p = watcher.positions()[ACCOUNT]
        sim = p.simulator
        have = sim.available() - sim.requirement()
        usd = sim.collateral_value + surplus - have
        snx.send("setCollateral", ACCOUNT, 0, usd)
    p = watcher.positions()[ACCOUNT]
    assert abs(p.simulator.available() - p.simulator.requirement() - surplus) < D18 // 10
    return p


# funding 1% a day for longs, falling by 1% a day per day (a short skew): longs pay ~100 USD over the first day,
# then receive; interest on 10,000 USD locked at 8% adds ~2.2 USD a day
FALLING = (D18 // 100, -1_111_111 * D18 // 1_000)


def test_synthetix_dip_that_recovers_is_found_where_a_one_way_search_finds_none(snx: SynthetixStandInMarket) -> None:
    p = _snx_account(snx, *FALLING, surplus=50 * D18)
    f = forecast(p)
    assert f.modelled and f.at is not None and 0 < f.at - p.block.timestamp < DAY, f
    assert not _liquidatable_at(snx, ACCOUNT, ETH.market_id, ETH.price, f.at - 1)
    assert _liquidatable_at(snx, ACCOUNT, ETH.market_id, ETH.price, f.at)
    # why the split matters: funding turns in the account's favour after the turning point, the margin recovers and
    # the horizon is safe, so a search for one boundary from a safe start to a safe end finds nothing
    t_star = synthetix_turning_point(p.simulator)
    assert t_star is not None and f.at < t_star < f.at + 2 * DAY
    assert not _liquidatable_at(snx, ACCOUNT, ETH.market_id, ETH.price, f.at + 3 * DAY)
    start, end = p.block.timestamp, p.block.timestamp + f.horizon_s

    def liq(t: int) -> bool:
        return p.simulator.at_time(t).liquidatable()

    assert not liq(end)
    # a search for one boundary of a ray, started from the safe horizon, finds nothing (it bisects [start, end])
    assert least_true(liq, end, start, end) is None


def test_synthetix_dip_that_stays_above_gives_none(snx: SynthetixStandInMarket) -> None:
    p = _snx_account(snx, *FALLING, surplus=150 * D18)
    f = forecast(p)
    assert f.modelled and f.at is None, f
    # why: its lowest margin, at the turning point, still covers the requirement, as the stand-in says there
    t_star = synthetix_turning_point(p.simulator)
    assert t_star is not None and p.block.timestamp < t_star < p.block.timestamp + 2 * DAY

    def surplus(t: int) -> int:
        at = p.simulator.at_time(t)
        return at.available() - at.requirement()

    low = surplus(int(t_star))
    assert 0 < low < 60 * D18 and low < surplus(int(t_star) - 3_600) and low < surplus(int(t_star) + 3_600)
    assert not _liquidatable_at(snx, ACCOUNT, ETH.market_id, ETH.price, int(t_star))


def test_synthetix_funding_in_favour_then_against_gives_the_later_stretch(snx: SynthetixStandInMarket) -> None:
    # longs receive 1% a day now, the rate rising 1% a day per day (a long skew): the margin rises for a day, then
    # falls for good
    p = _snx_account(snx, -D18 // 100, 1_111_111 * D18 // 1_000, surplus=20 * D18)
    f = forecast(p)
    t_star = synthetix_turning_point(p.simulator)
    assert t_star is not None and f.at is not None and t_star < f.at < p.block.timestamp + 10 * DAY, (f, t_star)
    assert not _liquidatable_at(snx, ACCOUNT, ETH.market_id, ETH.price, int(t_star))
    assert not _liquidatable_at(snx, ACCOUNT, ETH.market_id, ETH.price, f.at - 1)
    assert _liquidatable_at(snx, ACCOUNT, ETH.market_id, ETH.price, f.at)


def test_check_json_carries_the_synthetix_time(snx: SynthetixStandInMarket, anvil: Anvil, tmp_path: Path) -> None:
    p = _snx_account(snx, *FALLING, surplus=50 * D18)
    [owner] = owner_addresses(1)
    deployment = {
        "protocol": "synthetix_perps_v3",
        "name": "snx_local",
        "address": snx.proxy.address,
        "account_ids": [ACCOUNT],
    }
    cfg = check_config(
        tmp_path / "config.toml",
        local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3)),
        deployment,
        accounts([owner]),
    )
    run = check_json(cfg)
    assert run.doc is not None, run.stderr
    [doc] = run.doc["positions"]
    ttl = doc["time_to_liquidation"]
    assert ttl["modelled"] and "turning point" in ttl["basis"], ttl
    assert ttl["at"] == forecast(p).at and ttl["seconds"] == ttl["at"] - doc["block"]["timestamp"]


def _gmx_config(gmx: GmxStandIn, anvil: Anvil, users: list[str], path: Path) -> Path:
    deployment = {
        "protocol": "gmx_v2",
        "name": "gmx_local",
        "address": gmx.reader.address,
        "contracts": {"data_store": gmx.data_store.address},
    }
    return check_config(
        path, local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3)), deployment, accounts(users)
    )


def test_check_json_carries_the_gmx_time(gmx: GmxStandIn, anvil: Anvil, tmp_path: Path) -> None:
    [payer] = new_addresses(1, "gmx-ttl-json")
    gmx.set_uints(gmx_accrual(gmx, latest_timestamp(gmx.w3) - 3_600))
    gmx.set_position(payer, "ETH/USD", "WETH", True, 20_000 * USD, 20 * D18 // 3, 12 * D18 // 100, 0, FLOAT // 10**4)
    run = check_json(_gmx_config(gmx, anvil, [payer], tmp_path / "config.toml"))
    assert run.doc is not None, run.stderr
    [doc] = run.doc["positions"]
    ttl = doc["time_to_liquidation"]
    assert ttl["modelled"] and "GMX borrowing" in ttl["basis"] and isinstance(ttl["at"], int), ttl
    assert DAY < ttl["seconds"] < 30 * DAY and doc["interest_per_day"] > 0
    assert not _gmx_liquidatable_at(gmx, payer, "WETH", True, ttl["at"] - 1)
    assert _gmx_liquidatable_at(gmx, payer, "WETH", True, ttl["at"])


def test_gmx_rate_model_that_misses_the_readers_fees_gives_no_time(
    gmx: GmxStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A market whose rate model is not the one replayed (a kink, exponents, adaptive funding) shows as a replay
    that does not give the Reader's own fees at the read block: that position's fees are held and no time is given."""
    [payer] = new_addresses(1, "gmx-ttl-off")
    gmx.set_uints(gmx_accrual(gmx, latest_timestamp(gmx.w3) - 3_600))
    gmx.set_position(payer, "ETH/USD", "WETH", True, 20_000 * USD, 20 * D18 // 3, 12 * D18 // 100, 0, FLOAT // 10**4)
    real = positions_module.position_accrual

    def another_model(*args: Any) -> GmxAccrual | None:
        acc = real(*args)
        return None if acc is None else replace(acc, borrowing_per_second=acc.borrowing_per_second * 2)

    monkeypatch.setattr(positions_module, "position_accrual", another_model)
    [p] = KeptReader(gmx, [payer]).check().positions
    assert not p.simulator.accrues and p.simulator.positions[0].accrual is None
    f = forecast(p)
    assert not f.modelled and f.at is None and "held as read" in f.basis, f
    assert p.simulator.at_time(p.block.timestamp + DAY) == p.simulator


def test_warn_days_to_liquidation_warns_a_synthetix_account_healthy_by_its_margin(
    snx: SynthetixStandInMarket, anvil: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    p = _snx_account(snx, *FALLING, surplus=60 * D18)  # health about 1.27: ok at warn 1.25, liquidatable in hours
    assert p.health is not None and p.health > 125 * D18 // 100
    [owner] = owner_addresses(1)
    telegram = TelegramStandIn(TOKEN).start()
    try:
        parts = {
            "thresholds": {"warn": 1.25, "critical": 1.1, "target": 1.5},
            "chains": {"local": local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3), interval=0.5)},
            "deployments": [
                {
                    "protocol": "synthetix_perps_v3",
                    "name": "snx_local",
                    "chains": ["local"],
                    "address": snx.proxy.address,
                    "account_ids": [ACCOUNT],
                }
            ],
            "accounts": accounts([owner]),
            "alerts": {"confirm_warn": 1},
            "notify": {"telegram": {"token": {"env": TOKEN_ENV}, "chat_id": "42", "base_url": telegram.base_url}},
            "storage": {"path": str(tmp_path / "watcher.db")},
            "api": {"port": free_port()},
        }
        plain = WatcherProcess(write_toml(tmp_path / "plain.toml", parts)).start()
        wait_for(lambda: len(plain.logs("check")) >= 2, 30, what="two checks")
        plain.stop()
        assert telegram.received == []  # ok by its margin: nothing without the rule

        parts["alerts"] = {"confirm_warn": 1, "warn_days_to_liquidation": 1}
        parts["storage"] = {"path": str(tmp_path / "rule.db")}
        proc = WatcherProcess(write_toml(tmp_path / "rule.toml", parts)).start()
        try:
            [text] = wait_for(lambda: [r.text for r in telegram.received], 30, what="a warn")
            assert text.startswith("⚠️ WARN") and " hours at constant prices (fees and funding)" in text, text
            [doc] = proc.get("/positions")["positions"]
            assert doc["level"] == "ok" and doc["time_to_liquidation"]["at"] == forecast(p).at
        finally:
            proc.stop()
    finally:
        telegram.stop()


@pytest.mark.parametrize(
    ("name", "side", "value"),
    [
        ("OPTIMAL_USAGE_FACTOR", True, 75 * FLOAT // 100),
        ("BORROWING_EXPONENT_FACTOR", False, 15 * FLOAT // 10),
        ("FUNDING_EXPONENT_FACTOR", None, 12 * FLOAT // 10),
        ("FUNDING_INCREASE_FACTOR_PER_SECOND", None, 10**15),
    ],
)
def test_gmx_market_configuring_an_unreplayed_model_gives_no_time(
    gmx: GmxStandIn, name: str, side: bool | None, value: int
) -> None:
    """The stand-in ignores these keys (its Reader's fees do not change), but GMX's rate model would not be the one
    replayed: the watcher reads them and gives no time for the market's positions."""
    [payer] = new_addresses(1, "gmx-ttl-kink")
    values = gmx_accrual(gmx, latest_timestamp(gmx.w3) - 3_600)
    gmx.set_uints(values | {market_key(name, gmx.market("ETH/USD").address, side): value})
    gmx.set_position(payer, "ETH/USD", "WETH", True, 20_000 * USD, 20 * D18 // 3, 12 * D18 // 100, 0, FLOAT // 10**4)
    [p] = KeptReader(gmx, [payer]).check().positions
    f = forecast(p)
    assert not p.simulator.accrues and not f.modelled and f.at is None and "held as read" in f.basis, f


def test_gmx_ok_position_reuses_its_young_forecast_until_its_holdings_change(gmx: GmxStandIn) -> None:
    """Fees change every block, so the inputs never repeat; an ok position's forecast from a minute ago stands in
    while its sizes and collateral are the same (forecast_doc's STALE_OK), and a deposit is solved anew."""
    [payer] = new_addresses(1, "gmx-ttl-cache")
    gmx.set_uints(gmx_accrual(gmx, latest_timestamp(gmx.w3) - 3_600))
    opened = (payer, "ETH/USD", "WETH", True, 20_000 * USD, 20 * D18 // 3)
    gmx.set_position(*opened, 12 * D18 // 100, 0, FLOAT // 10**4)
    kept, cache = KeptReader(gmx, [payer]), ForecastCache()
    [first] = kept.check().positions
    f = cache.get(first, ok=True)
    _feeds_refreshed_at(gmx, first.block.timestamp + 60)
    [later] = kept.check().positions
    assert later.simulator != first.simulator  # the fees moved
    assert cache.get(later, ok=True) == f and (cache.hits, cache.misses) == (1, 1)
    gmx.set_position(*opened, 20 * D18 // 100, 0, FLOAT // 10**4)  # a deposit: 0.2 WETH
    [topped] = kept.check().positions
    g = cache.get(topped, ok=True)
    assert cache.misses == 2 and g.at is not None and f.at is not None and g.at > f.at
