"""Hyperliquid candleSnapshot history and the one-market liquidation probability, against the info-API stand-in.

The stand-in serves hourly closes of a seeded random walk of known volatility; the realised sigma must be within
sampling error of it. A venue answering garbage, too many candles, an undecimal close, 503, or nothing at all must
give a null probability with the reason, within the venue's timeout, through `watcher check --json` too.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import tomllib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import aiohttp
import pytest

from tests import run_harness
from tests.configs import write_toml
from tests.hyperliquid_server import HyperliquidStandIn
from tests.processes import check_json, wait_for
from tests.telegram_server import TelegramStandIn
from tests.test_faults_venue import SLACK, TIMEOUT, Venue, start, venue_keys, venues, write_config
from tests.test_hyperliquid import META, _position, _state, world
from tests.test_hyperliquid_simulator import MIXED, read_all
from watcher.adapters.base import ReadError
from watcher.adapters.hyperliquid.candles import fetch_candles
from watcher.adapters.hyperliquid.history import venue_estimates
from watcher.model import PerpLeg
from watcher.perp_boundary import perp_monte_carlo
from watcher.probability import YEAR, correlation, first_passage, realised_volatility

telegram_standin = run_harness.telegram_standin
__all__ = ["telegram_standin", "venues"]  # fixtures, found by pytest under these names

HOUR_MS = 3_600_000
SIGMA = 0.8  #: the walk's annualised volatility
HOURS = 600  #: candles the stand-in holds (the watcher reads back 500)


def walk(start: float, seed: int, hours: int = HOURS) -> list[tuple[int, str]]:
    """Hourly closes of a driftless GBM of volatility SIGMA, ending with the candle open now."""
    rng = random.Random(seed)
    step = SIGMA * math.sqrt(3600 / YEAR)
    now = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    price, out = start, []
    for k in range(hours):
        out.append((now - (hours - 1 - k) * HOUR_MS, f"{price:.6f}"))
        price *= math.exp(rng.gauss(0.0, step))
    return out


async def _fetch(server: HyperliquidStandIn, coin: str = "BTC", hours: int = 500, timeout: float = 5.0) -> list:
    now = int(time.time() * 1000)
    async with aiohttp.ClientSession() as session:
        return await fetch_candles(session, server.url, coin, now - hours * HOUR_MS, now, timeout=timeout)


async def _read_back(url: str, coin: str, hours: int = 500) -> list[tuple[int, Fraction]]:
    """A coin's hourly closes as the watcher reads them back from a venue at `url`."""
    now = int(time.time() * 1000)
    async with aiohttp.ClientSession() as session:
        return await fetch_candles(session, url, coin, now - hours * HOUR_MS, now, timeout=5.0)


def _serve(fault: str | None = None, timeout: float = 5.0) -> list | str:
    """Candles of BTC from a stand-in with `fault`; the ReadError text when the fetch fails."""
    mids, states = world(Fraction(95_000), Fraction(3_100))

    async def scenario() -> list | str:
        async with HyperliquidStandIn(META, mids, states) as server:
            server.candles["BTC"] = walk(95_000.0, 1)
            server.candle_fault = fault
            try:
                return await _fetch(server, timeout=timeout)
            except ReadError as exc:
                return str(exc)

    return asyncio.run(scenario())


def test_candles_are_time_close_pairs_with_the_walks_volatility() -> None:
    got = _serve()
    assert isinstance(got, list) and 500 <= len(got) <= 502
    times = [t for t, _ in got]
    steps = [b - a for a, b in itertools.pairwise(times)]
    # closes on the hour, and the candle still open at the time of the read (its close is the latest price)
    assert set(steps[:-1]) == {3600} and 0 < steps[-1] <= 3600 and times[-1] <= time.time() + 1, steps[-3:]
    vol = realised_volatility(got)
    assert vol is not None and vol.samples == len(got) - 1
    # the sampling error of a realised sigma from n returns is sigma / sqrt(2n): about 0.025 here
    assert abs(vol.sigma_annual - SIGMA) < 4 * vol.standard_error, (vol.sigma_annual, vol.standard_error)


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("garbage", "is not a list of candles"),
        ("many", "600 candles, more than the 502 the window holds"),
        ("badclose", "field 'c' is not a plain decimal"),
        ("down", "HTTP 503"),
        ("stall", "no whole answer within 1 s (timeout)"),
    ],
)
def test_a_broken_candle_answer_is_a_read_error_naming_it_quickly(fault: str, named: str) -> None:
    start = time.monotonic()
    got = _serve(fault, timeout=1.0)
    assert isinstance(got, str) and named in got, got
    assert time.monotonic() - start < 1.0 + 2.0  # the deadline, and a loaded machine


def test_a_slow_answer_within_the_deadline_is_read_and_a_venue_not_listening_is_a_read_error() -> None:
    got = _serve("slow", timeout=2.0)  # half a second late, inside a 2 s deadline
    assert isinstance(got, list) and len(got) >= 500

    async def closed_port() -> str:
        now = int(time.time() * 1000)
        async with aiohttp.ClientSession() as session:
            try:
                await fetch_candles(session, "http://127.0.0.1:9", "BTC", now - HOUR_MS, now, timeout=2.0)
            except ReadError as exc:
                return str(exc)
        raise AssertionError("a closed port answered")

    start = time.monotonic()
    assert "ClientConnectorError" in asyncio.run(closed_port()) and time.monotonic() - start < 2.0


def test_the_one_market_probability_is_the_first_passage_to_the_liquidation_price() -> None:
    got = read_all(Fraction(95_000), Fraction(3_100))
    history = [(t // 1000, Fraction(c)) for t, c in walk(95_000.0, 2)]
    vol = realised_volatility(history)
    eth = [(t // 1000, Fraction(c)) for t, c in walk(3_100.0, 7)]
    for p in got.values():
        if p.account == MIXED:  # BTC cross and ETH isolated: two pools, each its own leg's first passage, joined
            est = venue_estimates(p, {"BTC": history, "ETH": eth}, {}, [86_400])
            vol_eth = realised_volatility(eth)
            parts = [
                first_passage(abs(math.log(leg.liquidation_price / leg.mark_price)), v.sigma_annual, 86_400)
                for leg, v in zip(p.perps, (vol, vol_eth), strict=True)
            ]
            # the walks are drawn apart, so the two hardly overlap: at least the likelier, at most (nearly) their sum
            assert max(parts) < est[0].probability <= sum(parts) and "nearest point" in est[0].model
            assert est[0].probability == pytest.approx(sum(parts), rel=1e-3)
            assert "from hourly closes" in est[0].note
            continue
        est = venue_estimates(p, {p.perps[0].market: history}, {}, [3600, 86_400, 7 * 86_400])
        (leg,) = p.perps
        d = abs(math.log(leg.liquidation_price / leg.mark_price))
        assert [e.probability for e in est] == [first_passage(d, vol.sigma_annual, h) for h in (3600, 86_400, 604_800)]
        assert est[0].probability <= est[1].probability <= est[2].probability
    # no history reason passes through; too few candles say so
    p = got[next(iter(got))]
    unreadable = {p.perps[0].market: "price history unreadable: x"}
    assert venue_estimates(p, {}, unreadable, [3600])[0].note == "price history unreadable: x"
    assert "not enough price history" in (
        note := venue_estimates(p, {p.perps[0].market: history[:5]}, {}, [3600])[0].note
    )
    assert "5 hourly closes" in note


def _probabilities(doc: dict) -> dict[str, list[dict]]:
    return {p["label"]: p["liquidation_probability"] for p in doc["positions"]}


def test_check_json_estimates_from_candles_and_a_broken_venue_gives_null_with_the_reason_quickly(
    tmp_path: Path, telegram_standin: TelegramStandIn, venues: Callable[[], Venue]
) -> None:
    venue = venues()
    venue._apply(lambda s: s.candles.update({"BTC": walk(95_000.0, 3), "ETH": walk(3_100.0, 4)}))
    config = write_config(tmp_path, telegram_standin, {"hl": venue_keys(venue)})
    run = check_json(config)
    assert run.code == 0 and run.doc is not None, run.stderr
    baseline = run.seconds
    by_label = {p["label"]: p for p in run.doc["positions"]}
    for label, est in _probabilities(run.doc).items():
        assert [e["horizon_s"] for e in est] == [3600, 86_400, 604_800]
        sigma, n = est[0]["sigma_annual"], est[0]["samples"]
        assert abs(sigma - SIGMA) < 4 * sigma / math.sqrt(2 * n), (label, sigma)
        (leg,) = by_label[label]["perps"]
        d = abs(math.log(Fraction(leg["liquidation_price"]["exact"]) / Fraction(leg["mark_price"]["exact"])))
        for e in est:
            assert e["probability"] == pytest.approx(first_passage(d, sigma, e["horizon_s"]), rel=1e-6), e
            assert "liquidation price" in e["model"]
    for fault, named in (
        ("garbage", "is not a list of candles"),
        ("many", "more than the"),
        ("down", "HTTP 503"),
        ("stall", f"no whole answer within {TIMEOUT:g} s"),
    ):
        venue.server.candle_fault = fault
        run = check_json(config)
        # the interpreter's start is the healthy run's; a broken history adds at most the venue's deadline
        assert run.code == 0 and run.seconds < baseline + TIMEOUT + SLACK, (fault, run.seconds, baseline, run.stderr)
        for label, est in _probabilities(run.doc).items():
            assert {e["probability"] for e in est} == {None}, (fault, label, est)
            assert named in est[0]["note"] and est[0]["note"].startswith("price history unreadable"), est[0]
        venue.server.candle_fault = None


#: a cross account long 1 BTC and 10 ETH on 20,000 USD: BTC alone liquidates it near 76,000, ETH alone near 1,210
TWO_COINS = "0x" + "e" * 40


def test_check_json_estimates_a_cross_account_on_two_coins_at_the_nearest_point_of_its_boundary(
    tmp_path: Path, telegram_standin: TelegramStandIn, venues: Callable[[], Venue]
) -> None:
    """Both coins' candles are read, and the estimate is the nearest point of the account's boundary in BTC and ETH:
    held against a Monte Carlo of the same model run from the same candles and the document's own legs."""
    venue = venues()
    btc, eth = walk(95_000.0, 11), walk(3_100.0, 12)
    cross_lev = {"type": "cross", "value": 20}
    legs = [
        _position("BTC", Fraction(1), Fraction(95_000), Fraction(95_000), Fraction(1), cross_lev),
        _position("ETH", Fraction(10), Fraction(3_100), Fraction(3_100), Fraction(1), cross_lev),
    ]
    two = _state(Fraction(20_000), Fraction(20_000), legs)

    def serve(s: HyperliquidStandIn) -> None:
        s.candles.update({"BTC": btc, "ETH": eth})
        s.states[TWO_COINS] = two

    venue._apply(serve)
    config = write_config(tmp_path, telegram_standin, {"hl": venue_keys(venue)})
    doc = tomllib.loads(config.read_text())
    doc["accounts"].append({"address": TWO_COINS, "label": "two-coins"})
    write_toml(config, doc)
    before = {coin: asyncio.run(_read_back(venue.url, coin)) for coin in ("BTC", "ETH")}
    run = check_json(config)
    assert run.code == 0 and run.doc is not None, run.stderr
    [pos] = [p for p in run.doc["positions"] if p["label"] == "two-coins"]
    est = pos["liquidation_probability"]
    assert [e["horizon_s"] for e in est] == [3600, 86_400, 604_800] and "nearest point" in est[0]["model"], est[0].get(
        "note"
    )
    # the same window the watcher read, from the same stand-in (read again if an hour turned since)
    closes = {coin: asyncio.run(_read_back(venue.url, coin)) for coin in ("BTC", "ETH")}
    if min(len(h) for h in closes.values()) - 1 != est[0]["samples"]:
        closes = before
    vols = {coin: realised_volatility(h) for coin, h in closes.items()}
    assert est[0]["samples"] == min(v.samples for v in vols.values() if v is not None)
    # the candle still open moves with the clock between the two reads: the same history to 1e-4
    assert est[0]["sigma_annual"] == pytest.approx(max(v.sigma_annual for v in vols.values()), rel=1e-4)
    perps = [
        PerpLeg(
            leg["market"], 1, 0, Fraction(1), Fraction(leg["mark_price"]["exact"]), 0, 0, Fraction(0),
            liquidation_price=Fraction(leg["liquidation_price"]["exact"]),
        )
        for leg in pos["perps"]
    ]  # fmt: skip
    corr = correlation([closes["BTC"], closes["ETH"]])
    sigmas = {"BTC": vols["BTC"].sigma_annual, "ETH": vols["ETH"].sigma_annual}
    drivers = {i: leg.market for i, leg in enumerate(perps)}
    mc, err = perp_monte_carlo(perps, drivers, sigmas, corr, 604_800, paths=6_000, seed=5)
    week = est[2]["probability"]
    print(f"two coins over 7 d: closed form {week:.4f}, Monte Carlo {mc:.4f} +- {err:.4f}; rho {corr[0][1]:+.3f}")
    assert 0.005 < week < 0.5 and abs(week - mc) < 4 * err
    # each coin alone reaches the boundary later than both together: the account is likelier gone than either says
    alone = max(
        first_passage(abs(math.log(leg.liquidation_price / leg.mark_price)), sigmas[leg.market], 604_800)
        for leg in perps
    )
    assert week > alone


def test_probability_rounds_in_the_config_sets_the_candles_read_back(
    tmp_path: Path, telegram_standin: TelegramStandIn, venues: Callable[[], Venue]
) -> None:
    venue = venues()
    venue._apply(lambda s: s.candles.update({"BTC": walk(95_000.0, 5), "ETH": walk(3_100.0, 6)}))
    config = write_config(tmp_path, telegram_standin, {"hl": venue_keys(venue)})
    doc = tomllib.loads(config.read_text())
    write_toml(config, doc | {"probability": {"rounds": 100}})
    run = check_json(config)
    assert run.code == 0 and run.doc is not None, run.stderr
    # 100 hours back: the 100 candles opened since (the last one still open), so 99 returns (the default: 499)
    assert {e["samples"] for est in _probabilities(run.doc).values() for e in est} == {99}


def test_watcher_run_serves_the_candle_probability_in_the_api_document(
    tmp_path: Path, telegram_standin: TelegramStandIn, venues: Callable[[], Venue]
) -> None:
    """In `watcher run` the candles are read after a check commits: the next check's documents carry the figures,
    the same as `watcher check --json` gives, and a venue whose candles break says so without stopping the checks."""
    venue = venues()
    venue._apply(lambda s: s.candles.update({"BTC": walk(95_000.0, 3), "ETH": walk(3_100.0, 4)}))
    config = write_config(tmp_path, telegram_standin, {"hl": venue_keys(venue)})
    once = _probabilities(check_json(config).doc)
    w = start(config, "hl")
    try:

        def served() -> dict[str, list[dict]] | None:
            docs = w.get("/positions")["positions"]
            got = {d["label"]: d.get("liquidation_probability") for d in docs}
            return got if got and all(e and e[0]["probability"] is not None for e in got.values()) else None

        got = wait_for(served, 30, what="candle figures in the API documents")
        assert got.keys() == once.keys()
        for label, est in got.items():
            # the candle still open moves with the clock between the two reads: the same history to 1e-4
            assert [e["sigma_annual"] for e in est] == pytest.approx([e["sigma_annual"] for e in once[label]], rel=1e-4)
            assert [e["samples"] for e in est] == [e["samples"] for e in once[label]]
        checks = w.get("/health")
        venue.server.candle_fault = "garbage"
        # the candles are kept within their hour, so a broken venue shows only when they are read again: a restart
        w.stop()
        w = start(config, "hl")
        broken = wait_for(
            lambda: (
                (docs := w.get("/positions")["positions"])
                and all("price history unreadable" in (d["liquidation_probability"][0].get("note") or "") for d in docs)
                and docs
            ),
            30,
            what="the broken candles named",
        )
        assert all(d["level"] for d in broken) and w.get("/health")["status"] == checks["status"]
    finally:
        w.stop()
