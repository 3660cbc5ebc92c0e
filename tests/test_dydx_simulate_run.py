"""dYdX v4 what-if, ladder and funding forecast through the user's path: a config file, `watcher simulate`,
`watcher check --json`, `watcher run`'s API and the message at the Telegram stand-in, against the indexer stand-in.

The stand-in runs in its own thread (another process's server, as the indexer is to the watcher); the numbers the
processes print are compared with a read of the stand-in at the shocked price or with the funding paid.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests import run_harness
from tests.configs import write_toml
from tests.dydx_server import DydxIndexerStandIn, num
from tests.loopback import free_port
from tests.processes import TOKEN_ENV, WatcherProcess, check_json, wait_for
from tests.telegram_server import TelegramStandIn
from tests.test_dydx_simulator import GRID, HOUR
from tests.test_dydx_v4 import A, B, _markets, _run, _subaccounts
from tests.test_simulate import simulate
from watcher.probability import first_passage, realised_volatility

telegram_standin = run_harness.telegram_standin

KEYS = {"alice0": f"dydx_v4:dydx:{A}:sub0", "alice128": f"dydx_v4:dydx:{A}:sub128", "bob0": f"dydx_v4:dydx:{B}:sub0"}


class Indexer:
    """A DydxIndexerStandIn served from its own thread and event loop."""

    def __init__(self) -> None:
        self.server = DydxIndexerStandIn(_markets(), _subaccounts())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dydx-stand-in", daemon=True)

    def start(self) -> Indexer:
        """Listen on a free port of 127.0.0.1."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self._loop).result(10)
        return self

    def change(self, fn: Callable[[DydxIndexerStandIn], None]) -> None:
        """Change the served state on the server's loop, between answers."""

        async def apply() -> None:
            fn(self.server)

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(10)

    def stop(self) -> None:
        """Stop the server and its thread."""
        asyncio.run_coroutine_threadsafe(self.server.__aexit__(None, None, None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def indexer() -> Iterator[Indexer]:
    """The dYdX indexer stand-in, stopped after the test."""
    ix = Indexer().start()
    yield ix
    ix.stop()


def write_config(tmp_path: Path, url: str, extra: dict[str, Any] | None = None, name: str = "dydx.toml") -> Path:
    """A config with only the dYdX venue: alice's subaccounts 0 and 128 and bob's 0."""
    data: dict[str, Any] = {
        "venues": {
            "dydx": {
                "protocol": "dydx_v4",
                "base_url": url,
                "interval": 1,
                "timeout": 5,
                "accounts": [
                    {"address": A, "label": "alice", "subaccounts": [0, 128]},
                    {"address": B, "label": "bob"},
                ],
            }
        },
        "storage": {"path": str(tmp_path / "watcher.db")},
        "api": {"port": free_port()},
    }
    return write_toml(tmp_path / name, data | (extra or {}))


def _reread(key: str, ticker: str, price_raw: int) -> tuple[int | None, bool]:
    """(health raw, liquidatable) of the position read from a stand-in at this oracle price (simulator units)."""
    positions, _, _ = _run(lambda s: s.set_price(ticker, Fraction(price_raw, GRID)))
    p = next(x for x in positions if x.key == key)
    return p.health, p.liquidatable


def test_watcher_simulate_shocks_dydx_positions_exactly(indexer: Indexer, tmp_path: Path) -> None:
    config = write_config(tmp_path, indexer.server.url)
    code, doc, err = simulate(config, "--shock", "TRUMP=-10%", "--shock", "SOL -20%", "--json")
    assert code == 1 and err == "", err  # TRUMP -10 % takes alice's isolated subaccount past liquidation
    by_id = {p["id"]: p for p in doc["positions"]}
    assert set(by_id) == set(KEYS.values()) and doc["unknown"] == []
    iso, cross, sol = by_id[KEYS["alice128"]], by_id[KEYS["alice0"]], by_id[KEYS["bob0"]]
    assert cross["status"] == "unaffected" and cross["health_after"] == cross["health_before"]
    for p, ticker in ((iso, "TRUMP-USD"), (sol, "SOL-USD")):
        [m] = p["moved"]
        assert p["status"] == "shocked" and m["asset"] == ticker.split("-")[0]
        assert (p["health_after"]["raw"], p["liquidatable_after"]) == _reread(p["id"], ticker, m["after_raw"])
    assert iso["liquidatable_after"] and iso["level_after"] == "liquidatable"
    [top] = iso["advice_after"]["top_ups"]
    assert top["symbol"] == "USDC" and int(top["health_after_raw"]) >= 15 * 10**17, top
    # the table names the fix for the user in USDC
    code, table, _ = simulate(config, "--shock", "TRUMP=-10%")
    assert code == 1 and "LIQUIDATABLE" in table and "USDC" in table
    # a bad shock names itself and exits 2, with no traceback
    code, _, err = simulate(config, "--shock", "DOGE=-10%")
    assert code == 2 and "'DOGE'" in err and "Traceback" not in err
    code, _, err = simulate(config, "--shock", "TRUMP=-120%")
    assert code == 2 and "TRUMP=-120%" in err and "Traceback" not in err
    # an indexer that fails is unknown (exit 3), never a shocked healthy reading
    indexer.change(lambda s: setattr(s, "fault", "http500"))
    code, doc, err = simulate(config, "--shock", "TRUMP=-10%", "--json")
    # nothing was read to name TRUMP: the user is told why, and the exit is unknown, not a usage error
    assert code == 3 and "no position has an asset 'TRUMP'" in err and "Traceback" not in err
    assert "dydx_v4 on dydx could not be read: dydx_v4: " in err and "HTTP 500" in err, err


def _q(*pairs: tuple[str, str]) -> str:
    return "?" + urllib.parse.urlencode(pairs)


def test_the_api_simulates_and_ladders_dydx_as_the_cli_does(
    indexer: Indexer, tmp_path: Path, telegram_standin: TelegramStandIn
) -> None:
    config = write_config(tmp_path, indexer.server.url)
    with WatcherProcess(config).start() as proc:
        for key in KEYS.values():
            wait_for(lambda k=key: proc.status(f"/positions/{k}/simulate{_q(('shock', 'BTC:-1'))}")[0] == 200, 30)
        for cli_args, query in [
            (("--shock", "BTC=-40%"), _q(("shock", "BTC:-40"))),
            (("--shock", "TRUMP=-6%", "--shock", "ETH=+30%"), _q(("shock", "TRUMP=-6%"), ("shock", "ETH=+30%"))),
        ]:
            code, cli, err = simulate(config, *cli_args, "--json")
            assert code in (0, 1) and err == "", err
            by_id = {p["id"]: p for p in cli["positions"]}
            for key in KEYS.values():
                [one] = proc.get(f"/positions/{key}/simulate{query}")["positions"]
                one.pop("at"), by_id[key].pop("at")  # each is its own read's time
                one.pop("block"), by_id[key].pop("block")
                assert one == by_id[key], (query, one, by_id[key])
        code, doc = proc.status(f"/positions/{KEYS['alice0']}/simulate{_q(('shock', 'DOGE:-5'))}")
        assert code == 400 and "'DOGE'" in doc["error"]["message"]

        # each document's ladder: rungs equal the endpoint at that move and a read of the stand-in at that price
        for key, ticker in ((KEYS["alice0"], "BTC-USD"), (KEYS["alice128"], "TRUMP-USD"), (KEYS["bob0"], "SOL-USD")):
            ladder = proc.get(f"/positions/{key}")["price_ladder"]
            assert ladder is not None and ladder["asset"] == ticker.split("-")[0] and ladder["direction"] == "down", (
                ladder
            )
            assert ladder["rungs"][-1]["liquidatable"], ladder
            for rung in ladder["rungs"][-2:]:
                shock = ("shock", f"{ticker.split('-')[0]}:{rung['move_pct']}")
                at_move = proc.get(f"/positions/{key}/simulate{_q(shock)}")
                [one] = at_move["positions"]
                assert (rung["health_raw"], rung["liquidatable"]) == (
                    one["health_after"]["raw"],
                    one["liquidatable_after"],
                )
                assert (rung["health_raw"], rung["liquidatable"]) == _reread(key, ticker, rung["price_raw"])

        # a perp account has no advice cadence: its ladder follows the next check after the price moves
        indexer.change(lambda s: s.set_price("BTC-USD", "50000"))
        ladder = wait_for(
            lambda: (d := proc.get(f"/positions/{KEYS['alice0']}")["price_ladder"])["price_raw"] == 50_000 * GRID and d,
            30,
            what="the ladder at BTC 50,000",
        )
        for rung in ladder["rungs"][-2:]:
            assert (rung["health_raw"], rung["liquidatable"]) == _reread(KEYS["alice0"], "BTC-USD", rung["price_raw"])


def test_watcher_check_json_gives_dydx_time_to_liquidation_with_funding(indexer: Indexer, tmp_path: Path) -> None:
    # TRUMP long 1,000 at 10 (NC 1,500, MMR 1,000) paying 0.15 %/h: 15 USDC a tick, tick 34 is the first under it
    indexer.change(lambda s: s.markets["TRUMP-USD"].update(nextFundingRate="0.0015"))
    run = check_json(write_config(tmp_path, indexer.server.url))
    assert run.code == 0, run.stderr
    docs = {p["id"]: p for p in run.doc["positions"]}
    iso = docs[KEYS["alice128"]]["time_to_liquidation"]
    assert iso["modelled"] and "hourly tick" in iso["basis"]
    assert iso["at"] % HOUR == 0 and iso["at"] // HOUR - iso["as_of"] // HOUR == 34, iso
    assert docs[KEYS["alice128"]]["interest_per_day"] == 360 * 10**6  # 24 ticks of 15 USDC
    # funding at rate 0 elsewhere: modelled, and no time
    assert docs[KEYS["bob0"]]["time_to_liquidation"]["at"] is None
    assert docs[KEYS["bob0"]]["time_to_liquidation"]["modelled"]

    def paid(ticks: int) -> Callable[[DydxIndexerStandIn], None]:
        def change(s: DydxIndexerStandIn) -> None:
            s.subaccounts[(A, 128)]["usdc"] = num(Fraction(-8500) - 15 * ticks)

        return change

    # the hour it names is the one at which the chain's rule, read after that much funding, says liquidatable
    for ticks, expect in ((33, False), (34, True)):
        indexer.change(paid(ticks))
        run = check_json(write_config(tmp_path, indexer.server.url, name=f"t{ticks}.toml"))
        [doc] = [p for p in run.doc["positions"] if p["id"] == KEYS["alice128"]]
        assert (doc["level"] == "liquidatable") is expect, doc["level"]


def test_warn_days_to_liquidation_warns_a_dydx_subaccount_paying_funding(
    indexer: Indexer, tmp_path: Path, telegram_standin: TelegramStandIn
) -> None:
    indexer.change(lambda s: s.markets["TRUMP-USD"].update(nextFundingRate="0.0015"))
    notify = {
        "telegram": {
            "token": {"env": TOKEN_ENV},
            "chat_id": "42",
            "base_url": telegram_standin.base_url,
            "min_interval": 0.0,
        }
    }
    extra = {"notify": notify, "alerts": {"confirm_warn": 1, "warn_days_to_liquidation": 2}}
    with WatcherProcess(write_config(tmp_path, indexer.server.url, extra)).start() as proc:
        texts = wait_for(
            lambda: [r.text for r in telegram_standin.received if r.text.startswith("⚠️ WARN")], 30, what="a warn"
        )
        # TRUMP at 9.5: NC 1,000 against MMR 950, health 1.05: critical, and the fix is said once, per margin group
        indexer.change(lambda s: s.set_price("TRUMP-USD", "9.5"))
        [critical] = wait_for(
            lambda: [r.text for r in telegram_standin.received if r.text.startswith("🔴 CRITICAL")], 30, what="critical"
        )
        # the dashboard page says the fix once as well
        key = urllib.parse.quote(KEYS["alice128"], safe=":")
        with urllib.request.urlopen(f"{proc.url}/ui/positions/{key}", timeout=5) as resp:
            html = resp.read().decode()
        assert html.count("add 425") == 1 and "margin (TRUMP-USD)" in html, html[-3000:]
    assert "Health 1.0526" in critical, critical
    assert [line for line in critical.splitlines() if line.startswith("To reach")] == [
        "To reach 1.5000: add 425 to the isolated TRUMP-USD position"
    ], critical
    [text] = texts
    # health 1.5 is ok by the thresholds: the warning is the funding's
    assert "alice" in text and "dydx_v4 on dydx" in text and "Health 1.5" in text, text
    # 33 to 34 hours from the read: 1.4 days either way
    assert "Liquidation in 1.4 days at constant prices (fees and funding)" in text, text
    assert [r.text for r in telegram_standin.received if "bob" in r.text.splitlines()[0]] == []


def _walk(start: float, seed: int, hours: int = 600) -> list[tuple[int, str]]:
    """Hourly closes of a driftless GBM at SIGMA a year, ending with the hour open now, as the indexer's decimals."""
    rng = random.Random(seed)
    now = int(time.time()) // HOUR * HOUR
    price, out = start, []
    for k in range(hours):
        out.append((now - (hours - 1 - k) * HOUR, num(Fraction(round(price * 10**6), 10**6))))
        price *= math.exp(rng.gauss(0.0, SIGMA * math.sqrt(HOUR / (365 * 86_400))))
    return out


SIGMA = 0.8


def test_check_json_and_watcher_run_estimate_from_the_indexers_candles(indexer: Indexer, tmp_path: Path) -> None:
    """One-market subaccounts take their probability from the indexer's hourly candles, the closed form at the
    distance to their liquidation price; the cross subaccount on several markets names the market it lacks candles
    for, then takes the nearest points of its boundary once the indexer serves them."""
    walks = {"TRUMP-USD": _walk(10.0, 1), "SOL-USD": _walk(150.0, 2), "BTC-USD": _walk(60_000.0, 3)}
    indexer.change(lambda s: s.candles.update(walks))
    config = write_config(tmp_path, indexer.server.url)
    run = check_json(config)
    assert run.doc is not None, run.stderr
    by_id = {p["id"]: p for p in run.doc["positions"]}
    for key, ticker in ((KEYS["alice128"], "TRUMP-USD"), (KEYS["bob0"], "SOL-USD")):
        p = by_id[key]
        [leg] = p["perps"]
        closes = [(t, Fraction(c)) for t, c in walks[ticker]][-500:]
        vol = realised_volatility(closes)
        assert vol is not None and abs(vol.sigma_annual - SIGMA) < 4 * vol.standard_error
        d = abs(math.log(Fraction(leg["liquidation_price"]["exact"]) / Fraction(leg["mark_price"]["exact"])))
        for e in p["liquidation_probability"]:
            assert e["sigma_annual"] == pytest.approx(vol.sigma_annual, rel=1e-4) and e["samples"] == vol.samples
            assert e["probability"] == pytest.approx(first_passage(d, e["sigma_annual"], e["horizon_s"]), rel=1e-6)
    cross = by_id[KEYS["alice0"]]
    assert len({leg["market"] for leg in cross["perps"]}) > 1
    # the cross subaccount (BTC long, ETH short) needs both markets' candles: the indexer serves none for ETH yet
    for e in cross["liquidation_probability"]:
        assert e["probability"] is None and "not enough price history for ETH-USD: 0 hourly closes" in e["note"], e
    walks["ETH-USD"] = _walk(3_000.0, 4)
    indexer.change(lambda s: s.candles.update(walks))
    both = check_json(config)
    assert both.doc is not None, both.stderr
    [cross] = [p for p in both.doc["positions"] if p["id"] == KEYS["alice0"]]
    vols = [realised_volatility([(t, Fraction(c)) for t, c in walks[m]][-500:]) for m in ("BTC-USD", "ETH-USD")]
    got = cross["liquidation_probability"]
    for e in got:  # the nearest points of its boundary in BTC and ETH, at the larger sigma of the two
        assert "nearest points" in e["model"] and e["samples"] == min(v.samples for v in vols if v), e
        assert e["sigma_annual"] == pytest.approx(max(v.sigma_annual for v in vols if v), rel=1e-4)
    assert 0 <= got[0]["probability"] <= got[1]["probability"] <= got[2]["probability"] <= 1

    # watcher run: read after the first check commits, the same figures in the API documents
    with WatcherProcess(config).start() as proc:

        def served() -> dict[str, Any] | None:
            docs = {d["id"]: d for d in proc.get("/positions")["positions"]}
            iso = docs.get(KEYS["alice128"], {}).get("liquidation_probability") or [{}]
            return docs if iso[0].get("probability") is not None else None

        docs = wait_for(served, 30, what="the candle figures in the API")
        for key in (KEYS["alice128"], KEYS["bob0"]):
            want = [e["probability"] for e in by_id[key]["liquidation_probability"]]
            got = [e["probability"] for e in docs[key]["liquidation_probability"]]
            assert got == pytest.approx(want, rel=1e-3), key
