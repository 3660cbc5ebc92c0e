"""The liquidation probability in a running `watcher run`: the API document carries it, a warn message states the
24 h figure, and `alerts.warn_probability_24h` raises and clears a warn through the usual rules, over real Aave v3.0
on anvil whose oracle reads round-keeping feeds.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests import run_harness
from tests.dom import parse
from tests.processes import check_json, wait_for
from tests.rpc_proxy import RpcProxy
from tests.run_harness import RunSetup, set_price
from tests.test_probability import walk
from watcher.devchain.aave import AaveMarket
from watcher.devchain.deploy import Calldata, Tx, send_txs
from watcher.devchain.feeds import deploy_round_feed, push_rounds
from watcher.messages import percent_text
from watcher.probability import CLOSED_FORM, first_passage, ratio_history, realised_volatility

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

SIGMA = 2.0  #: a volatile asset: at health 1.2 the 24 h probability is about 8 %
PRICE = 10**8


def _feeds(setup: RunSetup) -> tuple[Any, list[tuple[int, int]]]:
    """Point the market's oracle at round-keeping feeds (WETH a random walk ending at $2,000, USDC flat)."""
    m: AaveMarket = setup.market
    w3 = m.w3
    now = w3.eth.get_block("latest")["timestamp"]
    raw = walk(SIGMA, 600, seed=7)
    end_t, end_p = raw[-1]
    eth = [(now - 60 - (end_t - t), p * 2_000 * PRICE // end_p) for t, p in raw]
    weth, usdc = deploy_round_feed(w3, eth), deploy_round_feed(w3, [(t, PRICE) for t, _ in eth])
    calldata = Calldata(m.oracle.abi).encode(
        "setAssetSources", [m.assets["WETH"], m.assets["USDC"]], [weth.address, usdc.address]
    )
    send_txs(w3, [Tx(m.admin, m.oracle.address, calldata, 500_000, "setAssetSources")])
    return weth, eth


def _borrower(setup: RunSetup) -> str:
    """10 WETH at $2,000 (82.5 % threshold) against 13,750 USDC: health 1.2, ok under warn 1.15."""
    user = setup.market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 13_750 * 10**6})
    setup.accounts = [user]
    return user


def _first(proc: Any) -> dict[str, Any]:
    """The one watched position's document, or {} before the first check committed."""
    docs = proc.get("/positions")["positions"]
    return docs[0] if docs else {}


def _day(doc: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in doc["liquidation_probability"] if e["horizon_s"] == 86_400)


RULES = {"thresholds": {"warn": 1.15, "critical": 1.05, "target": 1.5}}


def test_the_24h_probability_warns_and_clears_through_the_rule(run_setup: RunSetup) -> None:
    setup = run_setup
    feed, eth = _feeds(setup)
    _borrower(setup)
    cfg = setup.write_config(RULES | {"alerts": {"confirm_warn": 1, "warn_probability_24h": 0.05}})
    proc = setup.start(cfg)

    def figures() -> dict[str, Any] | None:
        doc = _first(proc)
        probs = doc.get("liquidation_probability") or []
        return doc if probs and probs[0]["probability"] is not None else None

    doc = wait_for(figures, 30, what="a position document with its probability")
    vol = realised_volatility(eth[-500:])
    assert vol is not None and abs(vol.sigma_annual - SIGMA) < 3 * vol.standard_error
    day = _day(doc)
    health = doc["health_raw"] / 10**18
    assert day["model"] == CLOSED_FORM and day["samples"] == 499
    assert day["sigma_annual"] == pytest.approx(vol.sigma_annual)
    assert day["probability"] == pytest.approx(first_passage(math.log(health), vol.sigma_annual, 86_400))
    assert 0.05 <= day["probability"] < 0.2, day  # by probability a warn; by health (1.2 > 1.15) ok

    msg = wait_for(lambda: next((r.text for r in setup.telegram.received if "WARN" in r.text), None), 30, what="a warn")
    assert f"Liquidation probability within 24 h: {percent_text(day['probability'])}" in msg, msg
    assert f"from {day['samples']} price returns" in msg, msg
    [alert] = proc.get("/alerts?open=true")["alerts"]
    assert alert["level"] == "warn" and alert["kind"] == "fire", alert
    assert _first(proc)["level"] == "ok"  # the document's level is health's own

    # WETH's feed takes a new round at $2,600: health 1.56, the probability falls far below the rule's: recovered
    now = setup.market.w3.eth.get_block("latest")["timestamp"]
    push_rounds(setup.market.w3, feed, [(now, 2_600 * PRICE)])
    wait_for(lambda: any("RECOVERED" in r.text for r in setup.telegram.received), 30, what="a recovered message")
    after = wait_for(
        lambda: (d := figures()) and _day(d)["sigma_annual"] != day["sigma_annual"] and d,
        30,
        what="the new round in the estimate",
    )
    # read after the check, off its path: the window keeps 500 rounds, one of them the new $2,600
    assert after["health_raw"] > 15 * 10**17 and _day(after)["samples"] == 499
    vol_after = realised_volatility([*eth[-499:], (now, 2_600 * PRICE)])
    assert vol_after is not None and _day(after)["sigma_annual"] == pytest.approx(vol_after.sigma_annual)
    assert _day(after)["probability"] < 0.001


def test_without_the_rule_the_same_position_is_ok_and_carries_the_figures(run_setup: RunSetup) -> None:
    setup = run_setup
    _feeds(setup)
    _borrower(setup)
    proc = setup.start(setup.write_config(RULES))
    doc = wait_for(
        lambda: (
            (d := _first(proc)).get("liquidation_probability")
            and d["liquidation_probability"][0]["probability"] is not None
            and d
        ),
        30,
        what="the figures",
    )
    assert _day(doc)["probability"] >= 0.05 and doc["level"] == "ok"
    assert not setup.telegram.received  # ok by health, and no rule on the probability


@pytest.mark.parametrize(
    ("sections", "says"),
    [
        ({"alerts": {"warn_probability_24h": 1.5}}, "alerts.warn_probability_24h"),
        ({"alerts": {"warn_probability_24h": 0.05}, "probability": {"enabled": False}}, "probability.enabled"),
        ({"alerts": {"warn_probability_24h": 0.05}, "probability": {"horizons": [3600]}}, "probability.horizons"),
    ],
)
def test_a_rule_the_config_cannot_serve_is_refused_by_name(
    run_setup: RunSetup, sections: dict[str, Any], says: str
) -> None:
    run = check_json(run_setup.write_config(sections))
    assert run.code == 2 and "alerts.warn_probability_24h" in run.stderr and says in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


LATEST_ROUND = "feaf968c"  #: latestRoundData(): the history read's first call; the check itself never sends it


def test_a_stalled_history_read_never_holds_a_check_or_its_alert(run_setup: RunSetup) -> None:
    """The node hangs on every request that reads a feed's rounds: checks go on, the critical alert arrives within
    a check of the move, and the document says the history is unreadable, until the node answers again."""
    setup = run_setup
    feed, _ = _feeds(setup)
    _borrower(setup)
    with RpcProxy(setup.anvil.url) as proxy:
        proxy.set_mode("stall", carrying=LATEST_ROUND)
        proc = setup.start(setup.write_config(RULES, rpc_urls=[proxy.url]))
        unreadable = wait_for(
            lambda: (
                (d := _first(proc)).get("liquidation_probability")
                and "price history unreadable" in d["liquidation_probability"][0].get("note", "")
                and d
            ),
            30,
            what="the history named unreadable",
        )
        assert all(e["probability"] is None for e in unreadable["liquidation_probability"])
        # WETH to $1,850: health 1.11, a warn; the check does not wait on the hanging history reads
        now = setup.market.w3.eth.get_block("latest")["timestamp"]
        moved = time.monotonic()
        push_rounds(setup.market.w3, feed, [(now, 1_850 * PRICE)])
        wait_for(lambda: any("WARN" in r.text for r in setup.telegram.received), 10, what="the warn")
        took = time.monotonic() - moved
        print(f"warn {took:.2f} s after the move, history reads hanging")
        assert took < 2.5  # checks every 0.5 s; a history read hangs for the client's 3 s timeout
        assert proc.get("/health")["status"] == "ok"  # the chain itself reads: a history is not the watcher's health
        proxy.clear()
        back = wait_for(
            lambda: (d := _first(proc))["liquidation_probability"][0]["probability"] is not None and d,
            30,
            what="the figures once the node answers",
        )
        assert back["liquidation_probability"][0]["samples"] == 499


def test_where_the_feed_keeps_no_rounds_the_watchers_own_readings_become_the_history(run_setup: RunSetup) -> None:
    """Aave's own MockAggregator keeps no rounds: `probability.readings_every` samples the prices the checks read,
    they are stored, and after a restart the first check's estimate is exactly that stored history's."""
    setup = run_setup
    _borrower(setup)
    proc = setup.start(setup.write_config(RULES | {"probability": {"readings_every": 0.3}}))
    early = wait_for(lambda: (_first(proc).get("liquidation_probability") or [None])[0], 30, what="a first estimate")
    assert early["probability"] is None and "the watcher's own price readings: " in early["note"], early
    rng = random.Random(5)
    usd = 2_000.0
    for _ in range(40):  # WETH wanders about 1 % a step, one step a reading or so
        usd *= math.exp(0.01 * rng.gauss(0.0, 1.0))
        set_price(setup.market, "WETH", round(usd))
        time.sleep(0.35)
    live = wait_for(lambda: _day(_first(proc))["probability"] is not None and _first(proc), 30, what="figures")
    assert "from the watcher's own price readings, one every 0.3 s" in _day(live)["note"], _day(live)
    proc.stop()

    db = sqlite3.connect(setup.db_path)
    rows = db.execute("select asset, at, price from price_readings order by at").fetchall()
    db.close()
    series: dict[str, list[tuple[int, int]]] = {}
    for asset, at, price in rows:
        series.setdefault(asset.lower(), []).append((int(at), int(price)))
    weth, usdc = (series[setup.market.assets[s].lower()] for s in ("WETH", "USDC"))
    assert len(weth) > 21 and len({p for _, p in weth}) > 10  # the moves were read, a reading apart

    # A restart that samples no more for an hour: its first estimate is the stored readings' own
    restarted = time.time()
    again = setup.start(setup.write_config(RULES | {"probability": {"readings_every": 3600}}, name="again.toml"))
    # the stored document first; then the new run's first check, already with the figures
    doc = wait_for(lambda: (d := _first(again)).get("updated_at", 0) > restarted and d, 30, what="a new check")
    assert _day(doc)["probability"] is not None, doc
    vol = realised_volatility(ratio_history(weth, usdc))
    assert vol is not None
    day = _day(doc)
    assert day["samples"] == vol.samples and day["sigma_annual"] == pytest.approx(vol.sigma_annual)
    health = doc["health_raw"] / 10**18
    assert day["probability"] == pytest.approx(first_passage(math.log(health), vol.sigma_annual, 86_400))
    assert "one every 3600 s" in day["note"]


def test_telegram_position_and_the_dashboard_say_the_probability(run_setup: RunSetup) -> None:
    """/position answers with the 24 h figure the API document carries, in an alert message's words; the dashboard
    lists every horizon."""
    setup = run_setup
    _feeds(setup)
    _borrower(setup)
    commands = {"notify": {"telegram": {"commands": True, "poll_timeout": 1, "timeout": 2.0}}}
    proc = setup.start(setup.write_config(RULES | commands))
    doc = wait_for(
        lambda: (d := _first(proc)).get("liquidation_probability") and _day(d)["probability"] is not None and d,
        30,
        what="the figures",
    )
    before = len(setup.telegram.sent_to("42"))
    setup.telegram.updates.push("42", "/position user0")
    [answer] = wait_for(lambda: setup.telegram.sent_to("42")[before:], 20, what="the /position answer")
    day = _day(doc)
    assert f"Liquidation probability within 24 h: {percent_text(day['probability'])}" in answer, answer
    assert f"from {day['samples']} price returns" in answer

    # the dashboard's position page lists every horizon's figure, sigma and sample
    page = urllib.request.urlopen(f"{proc.url}/ui/positions/{urllib.parse.quote(doc['id'], safe=':')}", timeout=5)
    rows = parse(page.read().decode()).find("table", id="chances").find_all("tr", class_="chance")
    assert len(rows) == 3
    cells = [[c.text for c in row.find_all("td")] for row in rows]
    assert cells[1][:4] == ["24 h", percent_text(day["probability"]), f"{day['sigma_annual'] * 100:.0f} %", "499"]
