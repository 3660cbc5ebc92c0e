"""Hyperliquid what-if, ladder and time to liquidation through the user's path: a config file, `watcher simulate`,
`watcher run`'s HTTP API and `watcher check --json`, against the info-API stand-in on 127.0.0.1 in its own thread.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from tests import run_harness
from tests.processes import check_json
from tests.telegram_server import TelegramStandIn
from tests.test_faults_venue import Venue, start, venue_keys, venues, write_config
from tests.test_hyperliquid_simulator import read_all
from tests.test_simulate import simulate

telegram_standin = run_harness.telegram_standin
__all__ = ["telegram_standin", "venues"]  # fixtures, found by pytest under these names

HOUR = 3600
USD = 10**6


def _q(*pairs: tuple[str, str]) -> str:
    return "?" + urllib.parse.urlencode(pairs)


def _same(one: dict[str, Any]) -> dict[str, Any]:
    """An outcome without the read's time: the CLI and the daemon read the venue at different seconds."""
    return {k: v for k, v in one.items() if k not in ("block", "at")}


def test_simulate_cli_and_api_shock_hyperliquid_accounts_as_the_venue_reads_them(
    tmp_path: Path, telegram_standin: TelegramStandIn, venues: Callable[[], Venue]
) -> None:
    venue = venues()
    config = write_config(tmp_path, telegram_standin, {"hl": venue_keys(venue)})
    code, cli, err = simulate(config, "--shock", "BTC=-16%", "--shock", "ETH=+7%", "--json")
    assert code == 1 and err == "", err  # cross-btc and iso-eth are liquidatable after the shocks
    by_label = {p["label"]: p for p in cli["positions"]}
    truth = read_all(Fraction(95_000 * 84, 100), Fraction(3_100 * 107, 100))
    for p in cli["positions"]:
        assert p["status"] == "shocked" and p["notes"] == [], p
        want = truth[p["account"].lower()]
        assert (p["health_after"]["raw"], p["liquidatable_after"]) == (want.health, want.liquidatable), p["label"]
    assert by_label["cross-btc"]["liquidatable_after"] and by_label["iso-eth"]["liquidatable_after"]
    assert not by_label["tiered-btc"]["liquidatable_after"]
    assert by_label["cross-btc"]["advice_after"]["top_ups"][0]["symbol"] == "USD"

    # a shock naming nothing is exit 2 with the name, never a traceback
    code, _, err = simulate(config, "--shock", "DOGE=-5%", "--json")
    assert code == 2 and "'DOGE'" in err and "Traceback" not in err

    w = start(config, "hl")
    try:
        query = _q(("shock", "BTC:-16"), ("shock", "ETH:+7"))
        for p in cli["positions"]:
            [one] = w.get(f"/positions/{p['id']}/simulate{query}")["positions"]
            assert _same(one) == _same(p), (one, p)
        # each rung of the document's ladder is the endpoint's answer at that move
        for label, direction in (("cross-btc", "down"), ("iso-eth", "up"), ("tiered-btc", "down")):
            key = by_label[label]["id"]
            ladder = w.get(f"/positions/{key}")["price_ladder"]
            assert ladder["direction"] == direction and ladder["rungs"][-1]["liquidatable"], ladder
            for rung in ladder["rungs"]:
                shock = ("shock", f"{ladder['symbol']}:{rung['move_pct']:+d}")
                [at] = w.get(f"/positions/{key}/simulate{_q(shock)}")["positions"]
                assert (rung["health_raw"], rung["liquidatable"]) == (
                    at["health_after"]["raw"],
                    at["liquidatable_after"],
                )
        code, doc = w.status(f"/positions/{by_label['cross-btc']['id']}/simulate{_q(('shock', 'BTC:-120'))}")
        assert code == 400 and "BTC:-120" in doc["error"]["message"]
    finally:
        w.stop()


def test_check_json_gives_the_funding_hour_of_liquidation(
    tmp_path: Path, telegram_standin: TelegramStandIn, venues: Callable[[], Venue]
) -> None:
    venue = venues()
    # 0.01 %/h on BTC (longs pay) and on ETH (the ETH short is paid): by hand, at constant marks,
    #   cross-btc:  (15,800 - 950) / (1 * 95,000 * 0.0001 = 9.5 per hour) = 1,563.2  -> the 1,564th hour
    #   tiered-btc: (2,037,500 - 132,500) / (40 * 95,000 * 0.0001 = 380) = 5,013.2   -> the 5,014th hour
    #   iso-eth:    receives 3.1 per hour: never
    venue._apply(lambda s: s.funding.update({"BTC": "0.0001", "ETH": "0.0001"}))
    config = write_config(tmp_path, telegram_standin, {"hl": venue_keys(venue)})
    run = check_json(config)
    assert run.code == 0 and run.doc is not None, run.stderr
    got = {p["label"]: p for p in run.doc["positions"]}
    for label, hours in (("cross-btc", 1_564), ("tiered-btc", 5_014), ("iso-eth", None)):
        p = got[label]
        ttl = p["time_to_liquidation"]
        assert ttl["modelled"] and "funding" in ttl["basis"], ttl
        start = p["block"]["timestamp"]
        assert ttl["at"] == (None if hours is None else (start // HOUR + hours) * HOUR), (label, ttl)
        assert p["perps"][0]["details"]["funding_hourly"] == "0.000100000000"

    # a venue serving no funding rate: no time, and the reason names the coin
    venue._apply(lambda s: s.funding.update({"BTC": None}))
    run = check_json(config)
    got = {p["label"]: p for p in run.doc["positions"]}
    ttl = got["cross-btc"]["time_to_liquidation"]
    assert not ttl["modelled"] and ttl["at"] is None and "BTC" in ttl["basis"], ttl
    assert got["iso-eth"]["time_to_liquidation"]["modelled"]  # ETH's rate is still served
