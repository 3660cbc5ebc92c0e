"""The daemon end to end: real Aave on anvil, a falling oracle price, a Telegram stand-in and a real SMTP server.

Checks are driven one at a time with a controlled clock, exactly as the scheduler would run them, so that the
assertions are about what the user receives: each level once, repeats at the interval, one recovery, nothing on
restart, and one "degraded" / one "recovered" for a chain that cannot be read.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aave_helpers import batch_reader
from tests.configs import accounts, config_toml, inline_env, local_chain
from tests.smtp_servers import RecordingHandler
from tests.telegram_server import TelegramStandIn
from watcher.chain import ChainClient
from watcher.check import build
from watcher.cli import channels_for
from watcher.config import Config, parse_config
from watcher.daemon import Daemon
from watcher.devchain.aave import AaveMarket, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.store import Store

TOKEN = "123456:SECRET-BOT-TOKEN"


@pytest.fixture
def market(anvil: Anvil) -> Iterator[AaveMarket]:
    snap = take_snapshot(anvil.w3)
    yield deploy_aave(anvil.w3, "3.0")
    revert_snapshot(anvil.w3, snap)


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    server = TelegramStandIn(TOKEN).start()
    yield server
    server.stop()


def config_text(
    anvil: Anvil,
    market: AaveMarket,
    users: list[str],
    telegram: TelegramStandIn,
    smtp_port: int,
    db: Path | None = None,
) -> str:
    """A complete config for the local chain, the Telegram stand-in and the SMTP server, as TOML text."""
    notify = {
        "telegram": {
            "token": inline_env("MW_TEST_TG_TOKEN"),
            "chat_id": "42",
            "base_url": telegram.base_url,
            "min_interval": 0,
        },
        "email": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "sender": "watcher@localhost",
            "recipients": ["me@localhost"],
        },
    }
    return config_toml(
        local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3)),
        {"protocol": "aave_v3", "name": "aave_local", "pool_addresses_provider": market.addresses_provider},
        accounts(users),
        alerts={"repeat_liquidatable": 300},
        notify=notify,
        **({"storage": {"path": str(db)}} if db else {}),
    )


def make_config(
    anvil: Anvil, market: AaveMarket, users: list[str], telegram: TelegramStandIn, smtp_port: int
) -> Config:
    """The config, parsed."""
    return parse_config(tomllib.loads(config_text(anvil, market, users, telegram, smtp_port)))


class Clock:
    """A controllable clock for the daemon and its relay."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def make_daemon(cfg: Config, db: Path, clock: Clock, clients: dict[str, ChainClient] | None = None) -> Daemon:
    readers = build(cfg)
    if clients is None:
        c = cfg.chains["local"]
        clients = {"local": ChainClient.from_config("local", c)}
    return Daemon(cfg, clients, readers, Store(db), channels_for(cfg), clock=clock)


async def step(d: Daemon, clock: Clock, seconds: float = 60.0) -> None:
    """One scheduled run (what the scheduler's job does) and a relay pass, then time moves on."""
    await d.run_chain("local")
    await d.relay_now()
    clock.t += seconds


async def close(d: Daemon) -> None:
    for ch in d.channels.values():
        await ch.close()


def texts(telegram: TelegramStandIn) -> list[str]:
    return [r.text.splitlines()[0] for r in telegram.received]


def test_falling_price_each_level_once_repeats_recovery_and_restart(
    anvil: Anvil,
    market: AaveMarket,
    telegram: TelegramStandIn,
    smtp: RecordingHandler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MW_TEST_TG_TOKEN", TOKEN)
    user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})  # health 1.375
    cfg = make_config(anvil, market, [user], telegram, smtp.port)  # type: ignore[attr-defined]
    clock, db = Clock(), tmp_path / "watcher.db"

    async def scenario() -> None:
        d = make_daemon(cfg, db, clock)
        for price in (2_000, 1_780, 1_780, 1_600, 1_400):  # ok, warn (pending), warn, critical, liquidatable
            market.set_price("WETH", price * 10**8)
            await step(d, clock)
        await close(d)
        assert [t.split(" · ")[0] for t in texts(telegram)] == [
            "📉 FALLING FAST",  # 1.375 -> 1.224 within a minute
            "⚠️ WARN",  # confirmed on the second check at warn
            "🔴 CRITICAL (worse)",
            "🚨 LIQUIDATABLE (worse)",
        ]
        assert all("ref: aave_local:local:" in r.text for r in telegram.received)
        warn, liq = telegram.received[1].text, telegram.received[-1].text
        assert "WETH liquidates at $" in warn and "safe again" not in warn  # still ahead: a future event
        assert "WETH safe again above $" in liq and "liquidates at" not in liq  # already past: where it is safe again
        assert "To reach 1.5000: add" in liq and "user0 · aave_local on local" in liq

        # A restart while firing: the new process neither re-sends nor forgets.
        d = make_daemon(cfg, db, clock)
        await step(d, clock, 60)
        assert len(telegram.received) == 4
        # Repeats come at the interval (5 min for liquidatable): not before, then once.
        for _ in range(3):
            await step(d, clock, 60)
        assert len(telegram.received) == 4
        await step(d, clock, 60)
        assert len(telegram.received) == 5 and "LIQUIDATABLE (still)" in texts(telegram)[-1]

        market.set_price("WETH", 2_000 * 10**8)
        await step(d, clock)
        await step(d, clock)
        await close(d)
        assert "RECOVERED" in texts(telegram)[-1] and len(telegram.received) == 6

    asyncio.run(scenario())
    # Email carries the same six alerts, each once.
    assert [m.message["Subject"].split(":")[0] for m in smtp.mails] == [
        "FALLING FAST", "WARN", "CRITICAL (worse)", "LIQUIDATABLE (worse)", "LIQUIDATABLE (still)", "RECOVERED",
    ]  # fmt: skip
    # History was stored with block numbers and hashes.
    rows = list(Store(db).db["history"].rows)
    assert rows and all(r["block_hash"].startswith("0x") and r["block"] > 0 for r in rows)
    # The secret token is nowhere in the database.
    dump = "\n".join(Store(db).db.iterdump())
    assert "SECRET-BOT-TOKEN" not in dump


def test_every_rpc_down_is_one_degraded_alert_then_one_recovered(
    anvil: Anvil,
    market: AaveMarket,
    telegram: TelegramStandIn,
    smtp: RecordingHandler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MW_TEST_TG_TOKEN", TOKEN)
    user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    cfg = make_config(anvil, market, [user], telegram, smtp.port)  # type: ignore[attr-defined]
    clock, db = Clock(), tmp_path / "watcher.db"
    c = cfg.chains["local"]
    live = ChainClient.from_urls("local", c.chain_id, [anvil.url], c.multicall, c.call_gas_budget)
    dead = ChainClient.from_urls("local", c.chain_id, ["http://127.0.0.1:9"], c.multicall, c.call_gas_budget)

    async def scenario() -> None:
        d = make_daemon(cfg, db, clock, {"local": live})
        await step(d, clock)
        assert telegram.received == []
        d.sources["local"].client = dead  # type: ignore[attr-defined]
        for _ in range(4):
            await step(d, clock)
        assert texts(telegram) == ["❓ Watcher degraded on local: positions there are UNKNOWN, not healthy."]
        assert Store(db).chain_status()["local"]["degraded"] == 1
        # The price crashes while the watcher is blind; when it reads again it says so, and warns.
        market.set_price("WETH", 1_400 * 10**8)
        d.sources["local"].client = live  # type: ignore[attr-defined]
        await step(d, clock)
        await step(d, clock)
        await close(d)

    asyncio.run(scenario())
    firsts = texts(telegram)
    assert sum("Watcher degraded" in t for t in firsts) == 1
    assert sum("Watcher reads local again" in t for t in firsts) == 1
    assert any("LIQUIDATABLE" in t for t in firsts)


def test_watcher_run_process_alerts_and_stops_on_sigterm(
    anvil: Anvil, market: AaveMarket, telegram: TelegramStandIn, smtp: RecordingHandler, tmp_path: Path
) -> None:
    """`watcher run` as a real process: it checks on its schedule, alerts, logs JSON lines, and SIGTERM stops it."""
    user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    market.set_price("WETH", 1_400 * 10**8)  # liquidatable from the first check
    config_path = tmp_path / "config.toml"
    text = config_text(anvil, market, [user], telegram, smtp.port, tmp_path / "w.db")  # type: ignore[attr-defined]
    config_path.write_text(text + "\n[api]\nport = 0\n")  # a free port: never fight over the default one
    env = {**os.environ, "MW_TEST_TG_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(config_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while not telegram.received and time.monotonic() < end:
            time.sleep(0.05)
        assert telegram.received and "LIQUIDATABLE" in telegram.received[0].text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"started", "check", "stopped"} <= {entry["msg"] for entry in logs}
    assert TOKEN not in err and TOKEN not in out


def test_test_notify_reports_each_channel(
    anvil: Anvil,
    market: AaveMarket,
    telegram: TelegramStandIn,
    smtp: RecordingHandler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from watcher.cli import main

    monkeypatch.setenv("MW_TEST_TG_TOKEN", TOKEN)
    path = tmp_path / "config.toml"
    path.write_text(config_text(anvil, market, [market.admin], telegram, smtp.port))  # type: ignore[attr-defined]
    assert main(["test-notify", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "telegram: ok" in out and "email: ok" in out
    assert len(telegram.received) == 1 and len(smtp.mails) == 1
    telegram.answer_next(400, description="Bad Request: chat not found")
    assert main(["test-notify", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "telegram: FAILED" in out and "chat not found" in out and "email: ok" in out and TOKEN not in out


def test_overrides_pick_the_most_specific(
    anvil: Anvil,
    market: AaveMarket,
    telegram: TelegramStandIn,
    smtp: RecordingHandler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace as dc_replace

    from watcher.config import Override
    from watcher.model import WAD

    monkeypatch.setenv("MW_TEST_TG_TOKEN", TOKEN)
    user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    cfg = make_config(anvil, market, [user], telegram, smtp.port)  # type: ignore[attr-defined]
    overrides = [
        Override(account=user, warn="1.4"),  # as written in config.toml
        Override(account=user, protocol="aave_local", chain="local", warn="1.6", critical="1.2"),
        Override(account=market.admin, warn="3"),
    ]
    cfg = cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update={"overrides": overrides})})
    d = make_daemon(cfg, tmp_path / "w.db", Clock())
    [p] = asyncio.run(d.read("local")).positions
    rules = d.rules_for(p)
    assert (rules.warn, rules.critical) == (16 * WAD // 10, 12 * WAD // 10)
    other = dc_replace(p, protocol="spark")
    assert d.rules_for(other).warn == 14 * WAD // 10 and d.rules_for(other).critical == d.rules.critical


def test_a_stale_head_marks_the_chain_degraded(anvil: Anvil, market: AaveMarket) -> None:
    from tests.aave_helpers import Watcher
    from watcher.check import CheckResult, check_chain

    user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 1_000 * 10**6})
    w = Watcher(market, [user])
    w.client.max_block_age = 120
    head = anvil.w3.eth.get_block("latest")["timestamp"]
    fresh, stale = CheckResult(), CheckResult()
    asyncio.run(check_chain(w.client, [w.reader], fresh, now=head + 5))
    asyncio.run(check_chain(w.client, [w.reader], stale, now=head + 600))
    assert [p.account for p in fresh.positions] == [user] and not fresh.degraded
    assert stale.positions == [] and "is 600 s old (max 120 s)" in stale.degraded["local"]
    assert stale.unreadable[0].accounts[0].address == user
