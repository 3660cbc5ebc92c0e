"""Maker's OSM next price through `watcher run`: a config file, our dss stand-in on anvil, the Telegram stand-in.

The OSM queues a price that would make a vault critical while the Vat still holds the old spot: the message that
arrives names the next price, the time it takes effect (the OSM's zzz + hop) and the next health, before anyone
pokes; after the OSM's poke and Spotter.poke the Vat's health is the one announced. `alerts.maker_next_price =
false` keeps the alert until a keeper can act.
"""

from __future__ import annotations

import html
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests import run_harness
from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from tests.loopback import free_port
from tests.processes import REPO_ROOT, TOKEN_ENV, WatcherProcess, check_json, child_env, wait_for
from tests.telegram_server import TelegramStandIn
from watcher.adapters.maker import spot_of
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import advance_time, revert_snapshot, take_snapshot
from watcher.devchain.maker import RAY, WAD, MakerStandInSystem, deploy_maker_stand_in, new_owners

telegram_standin = run_harness.telegram_standin

#: 10 ETH against 9,000 DAI at 150%: health 1.4815 at $2,000, 1.0370 at the queued $1,400 (critical under 1.1)
INK, ART, NOW_PRICE, NEXT_PRICE = 10 * WAD, 9_000 * WAD, 2000 * WAD, 1400 * WAD


@pytest.fixture
def maker(anvil: Anvil) -> Iterator[MakerStandInSystem]:
    """The dss stand-in on the session anvil, rolled back after the test."""
    snap = take_snapshot(anvil.w3)
    yield deploy_maker_stand_in(anvil.w3)
    revert_snapshot(anvil.w3, snap)


def _vault(maker: MakerStandInSystem) -> tuple[str, int]:
    [owner] = new_owners(1, "osm-run")
    cdp = maker.open("ETH-A", owner)
    maker.set_vault(cdp, INK, ART)
    maker.set_duty("ETH-A", RAY)  # no fee: the healths are the Vat's at rate 1, worked by hand
    return owner, cdp


def _config(
    path: Path, anvil: Anvil, maker: MakerStandInSystem, owner: str, tg: TelegramStandIn, **alerts: Any
) -> Path:
    deployment = {"protocol": "maker", "name": "maker_local", "address": maker.manager.address}
    deployment["contracts"] = maker.contracts()
    return check_config(
        path,
        local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3), interval=0.5, timeout=3.0),
        deployment,
        accounts([owner]),
        alerts={"confirm_warn": 1, **alerts},
        notify={
            "retry_initial": 0.5,
            "telegram": {"token": {"env": TOKEN_ENV}, "chat_id": "42", "base_url": tg.base_url, "min_interval": 0},
        },
        storage={"path": str(path.with_suffix(".db"))},
        api={"port": free_port()},
    )


def _texts(tg: TelegramStandIn) -> list[str]:
    return [r.text for r in tg.received]


def _doc(proc: WatcherProcess, since_block: int = 0) -> dict[str, Any]:
    """The vault's API document once the daemon has read a block at or after `since_block`."""

    def read() -> dict[str, Any] | None:
        docs = proc.get("/positions")["positions"]
        return docs[0] if docs and docs[0]["block"]["number"] >= since_block else None

    return wait_for(read, 30, what=f"a document of block {since_block} or later")


def test_osm_next_price_alerts_before_the_vat_and_the_poke_matches(
    anvil: Anvil, maker: MakerStandInSystem, telegram_standin: TelegramStandIn, tmp_path: Path
) -> None:
    owner, cdp = _vault(maker)
    ts = int(anvil.w3.eth.get_block("latest")["timestamp"])
    # zzz as if the OSM was poked at this block (osm.sol stamps the hour; any zzz reads the same, and this keeps
    # zzz + hop a whole hour ahead of the checks below)
    zzz = ts
    queued = maker.set_osm("ETH-A", NOW_PRICE, NEXT_PRICE, zzz)
    at = zzz + 3600  # hop
    announced = INK * spot_of(NEXT_PRICE, RAY, 3 * RAY // 2) * WAD // (ART * RAY)  # the Vat's own rule, at rate 1
    spot_before = maker.vat_ilk("ETH-A")[2]

    # alerts.maker_next_price = false: the Vat's health (1.48) is ok, so several checks send nothing ...
    quiet_cfg = _config(tmp_path / "quiet.toml", anvil, maker, owner, telegram_standin, maker_next_price=False)
    quiet = WatcherProcess(quiet_cfg).start()
    try:
        wait_for(lambda: len(quiet.logs("check")) >= 3, 30, what="three checks")
        doc = _doc(quiet, queued)
        # ... while the document still shows what is coming
        assert doc["next_oracle"]["level"] == "critical" and doc["next_oracle"]["health_raw"] == announced
    finally:
        quiet.stop()
    assert _texts(telegram_standin) == []

    # The default: the queued price alerts now, before the OSM or the Spotter is poked.
    cfg = _config(tmp_path / "config.toml", anvil, maker, owner, telegram_standin)
    proc = WatcherProcess(cfg).start()
    try:
        [text] = wait_for(lambda: _texts(telegram_standin), 30, what="the critical alert")
        hhmm = time.strftime("%H:%M", time.gmtime(at))
        assert text.splitlines()[0].startswith("🔴 CRITICAL") and "Health 1.0370" in text, text
        line = f"Maker's oracle moves to $1,400 at {hhmm} UTC: health will be 1.0370: critical (until then 1.4815)"
        assert line in text.splitlines(), text
        assert maker.vat_ilk("ETH-A")[2] == spot_before and not maker.unsafe(cdp)  # the Vat has not seen it
        doc = _doc(proc, queued)
        nxt = doc["next_oracle"]
        assert (nxt["price_raw"], nxt["price"], nxt["at"], nxt["due"]) == (NEXT_PRICE, "1400", at, False)
        assert (nxt["health_raw"], nxt["level"], nxt["text"]) == (announced, "critical", line)
        assert doc["level"] == "critical" and doc["details"]["current_health"] > announced
        page_url = f"{proc.url}/ui/positions/{quote(doc['id'], safe=':')}"
        with urllib.request.urlopen(page_url, timeout=5) as resp:
            page = html.unescape(resp.read().decode())
        assert f'<p id="next-oracle" class="lv-critical">{line}</p>' in page

        # The hop passes: the value can be poked in now, and the document says so.
        moved = advance_time(anvil.w3, 3600)
        due = wait_for(lambda: _doc(proc)["next_oracle"]["due"] and _doc(proc), 30, what="due")
        assert moved >= at and "can be poked in now, health will be 1.0370: critical" in due["next_oracle"]["text"]

        # The OSM's own poke (cur <- nxt once the hop passed) and Spotter.poke: the Vat holds what was announced.
        maker._send(maker.osms["ETH-A"], "OsmStandIn", "push", NEXT_PRICE)
        poked = maker.poke("ETH-A")
        ink, art = maker.vat_urn(cdp)
        _, rate, spot, *_ = maker.vat_ilk("ETH-A")
        assert ink * spot * WAD // (art * rate) == announced
        after = _doc(proc, poked)
        assert after["details"]["current_health"] == announced == after["health_raw"]
        assert after["next_oracle"] is None  # the oracle queues the same price again: nothing to announce
        time.sleep(1.5)  # a few more checks: the level is unchanged, so nothing more is sent
        assert len(_texts(telegram_standin)) == 1
    finally:
        proc.stop()


def test_watcher_check_shows_the_next_oracle_price(
    anvil: Anvil, maker: MakerStandInSystem, telegram_standin: TelegramStandIn, tmp_path: Path
) -> None:
    owner, _ = _vault(maker)
    ts = int(anvil.w3.eth.get_block("latest")["timestamp"])
    maker.set_osm("ETH-A", NOW_PRICE, NEXT_PRICE, ts)
    cfg = _config(tmp_path / "config.toml", anvil, maker, owner, telegram_standin)
    hhmm = time.strftime("%H:%M", time.gmtime(ts + 3600))
    table = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(cfg)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 1, table.stderr  # critical by the next price
    cells = [line.split("│")[5].strip() for line in table.stdout.splitlines() if line.count("│") == 8]
    assert cells[:3] == ["1.0370 critical", f"OSM next $1,400 at {hhmm} UTC", "→ 1.0370 critical"], table.stdout
    run = check_json(cfg)
    [doc] = run.doc["positions"]
    assert doc["next_oracle"]["level"] == "critical" and doc["next_oracle"]["at"] == ts + 3600
    # A stopped OSM does not move at its time: the line says it waits for the restart.
    maker.osm_call("ETH-A", "stop")
    [doc] = check_json(cfg).doc["positions"]
    assert doc["next_oracle"]["stopped"] and doc["next_oracle"]["text"] == (
        "Maker's oracle moves to $1,400 once the stopped OSM is restarted: health will be 1.0370: critical"
        " (until then 1.4815)"
    )
    # A next value equal to the current one is no move: nothing to announce, and the vault is ok again.
    maker.osm_call("ETH-A", "start")
    maker.set_osm("ETH-A", NOW_PRICE, NOW_PRICE)
    run = check_json(cfg)
    [doc] = run.doc["positions"]
    assert run.code == 0 and doc["next_oracle"] is None and doc["level"] == "ok"


def test_maker_next_price_must_be_a_boolean(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[alerts]\nmaker_next_price = "sometimes"\n')
    out = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(cfg)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "maker_next_price" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
