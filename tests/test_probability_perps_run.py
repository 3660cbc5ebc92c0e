"""A perp's liquidation probability from the watcher's own readings, through `watcher run` on the Synthetix perps v3
stand-in, whose oracle keeps no rounds: the marks the checks read are sampled every `probability.readings_every`
seconds and stored, and after a restart the first estimate is exactly that stored series' closed form.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_forecast_perps
from tests.aave_helpers import batch_reader
from tests.configs import accounts, local_chain, write_toml
from tests.loopback import free_port
from tests.processes import TOKEN, TOKEN_ENV, WatcherProcess, wait_for
from tests.telegram_server import TelegramStandIn
from tests.test_synthetix_perps_standin import StandInWatcher
from watcher.devchain.anvil import Anvil
from watcher.devchain.synthetix import ETH, SynthetixStandInMarket, owner_addresses
from watcher.perp_probability import PERP_CLOSED_FORM, perp_distance, perp_driver
from watcher.probability import first_passage, realised_volatility

D18 = 10**18
DAY = 86_400
ACCOUNT = 1


snx = test_forecast_perps.snx  #: the Synthetix stand-in, deployed in a snapshot the test's end reverts


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramStandIn]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    server = TelegramStandIn(TOKEN).start()
    yield server
    server.stop()


def _config(snx: SynthetixStandInMarket, anvil: Anvil, tg: TelegramStandIn, path: Path, every: float) -> Path:
    [owner] = owner_addresses(1)
    deployment = {
        "protocol": "synthetix_perps_v3",
        "name": "snx_local",
        "chains": ["local"],
        "address": snx.proxy.address,
        "account_ids": [ACCOUNT],
    }
    parts = {
        "thresholds": {"warn": 1.15, "critical": 1.05, "target": 1.5},
        "chains": {"local": local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3), interval=0.2)},
        "deployments": [deployment],
        "accounts": accounts([owner]),
        "probability": {"readings_every": every},
        "notify": {"telegram": {"token": {"env": TOKEN_ENV}, "chat_id": "42", "base_url": tg.base_url}},
        "storage": {"path": str(path.parent / "watcher.db")},
        "api": {"port": free_port()},
    }
    return write_toml(path, parts)


def _day(proc: WatcherProcess) -> dict[str, Any]:
    """The one account's 24 h estimate, or {} before its first check committed."""
    docs = proc.get("/positions")["positions"]
    est = docs[0].get("liquidation_probability") if docs else None
    return next((e for e in est or () if e["horizon_s"] == DAY), {})


def test_a_synthetix_accounts_marks_sampled_by_watcher_run_become_its_price_history(
    snx: SynthetixStandInMarket, anvil: Anvil, tmp_path: Path, telegram: TelegramStandIn
) -> None:
    [owner] = owner_addresses(1)
    snx.open_account(ACCOUNT, owner, 3_000 * D18)
    snx.set_position(ACCOUNT, ETH.market_id, 10 * D18, ETH.price)  # a 10 ETH long on 3,000 USD of margin

    proc = WatcherProcess(_config(snx, anvil, telegram, tmp_path / "sample.toml", 0.3)).start()
    early = wait_for(lambda: _day(proc), 30, what="a first estimate")
    assert early["probability"] is None and "the watcher's own price readings: " in early["note"], early
    rng = random.Random(11)
    price = float(ETH.price)
    for _ in range(40):  # ETH wanders about 1 % a step, about a reading apart
        price *= math.exp(0.01 * rng.gauss(0.0, 1.0))
        snx.set_price(ETH.market_id, int(price))
        time.sleep(0.35)
    live = wait_for(lambda: (d := _day(proc)).get("probability") is not None and d, 30, what="figures")
    assert "from the watcher's own price readings, one every 0.3 s" in live["note"], live
    assert live["model"] == PERP_CLOSED_FORM
    proc.stop()

    db = sqlite3.connect(tmp_path / "watcher.db")
    rows = db.execute("select asset, at, price from price_readings order by at").fetchall()
    db.close()
    legs = StandInWatcher(snx, [ACCOUNT]).positions()[ACCOUNT].perps
    driver = perp_driver(legs[0])  # the mark's series is keyed as perp_probability looks it up
    marks = [(int(at), int(p)) for asset, at, p in rows if asset == driver]
    assert len(marks) > 21 and len({p for _, p in marks}) > 10  # the moves were read, a reading apart

    # A restart that samples no more for an hour: its first estimate is the stored marks' own
    restarted = time.time()
    again = WatcherProcess(_config(snx, anvil, telegram, tmp_path / "again.toml", 3600)).start()
    try:
        fresh = lambda: (docs := again.get("/positions")["positions"]) and docs[0]["updated_at"] > restarted  # noqa: E731
        wait_for(fresh, 30, what="a check of the new run")
        day = _day(again)
        vol = realised_volatility(marks)
        assert vol is not None and day["samples"] == vol.samples
        assert day["sigma_annual"] == pytest.approx(vol.sigma_annual)
        distance = perp_distance(legs)
        assert distance is not None and day["probability"] == pytest.approx(
            first_passage(distance, vol.sigma_annual, DAY)
        )
        assert "one every 3600 s" in day["note"], day
        print(
            f"synthetix from readings: {vol.samples} returns, sigma {vol.sigma_annual:.3g}/yr, distance {distance:.4f}"
        )
        print(f"  24 h probability {day['probability']:.4g}")
    finally:
        again.stop()
