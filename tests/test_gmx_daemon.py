"""GMX v2 under the daemon: a config file, the in-process daemon keeping its readers, a price move, the alert.

Against our GMX stand-in contracts (not GMX's code) on anvil. The daemon builds its readers once and keeps them, so the
first check after a price move is made by a reader that read the old prices: it must alert at once, on that check.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from tests.telegram_server import TelegramStandIn
from tests.test_daemon import TOKEN, Clock, close, make_daemon, step, texts
from tests.test_gmx_between_checks import open_legs
from watcher.chain import ChainClient
from watcher.config import parse_config
from watcher.devchain.anvil import Anvil
from watcher.devchain.comet import new_addresses
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.gmx import GmxStandIn, deploy_gmx_stand_in


@pytest.fixture
def gmx(anvil: Anvil) -> Iterator[GmxStandIn]:
    snap = take_snapshot(anvil.w3)
    yield deploy_gmx_stand_in(anvil.w3)
    revert_snapshot(anvil.w3, snap)


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    server = TelegramStandIn(TOKEN).start()
    yield server
    server.stop()


def gmx_config(
    anvil: Anvil, gmx: GmxStandIn, users: list[str], telegram: TelegramStandIn, db: Path, path: Path
) -> Path:
    """A config file watching `users` on the stand-in's Reader and DataStore, alerting by Telegram."""
    deployment = {
        "protocol": "gmx_v2",
        "name": "gmx_local",
        "address": gmx.reader.address,
        "contracts": {"data_store": gmx.data_store.address},
    }
    telegram_table = {
        "token": {"env": "MW_TEST_TG_TOKEN"},
        "chat_id": "42",
        "base_url": telegram.base_url,
        "min_interval": 0,
    }
    return check_config(
        path,
        local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3)),
        deployment,
        accounts(users),
        alerts={"confirm_warn": 1},
        notify={"telegram": telegram_table},
        storage={"path": str(db)},
    )


def test_daemon_alerts_a_gmx_liquidation_on_the_first_check_after_the_move(
    anvil: Anvil, gmx: GmxStandIn, telegram: TelegramStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_TG_TOKEN", TOKEN)
    users = new_addresses(4, "gmx-daemon")
    open_legs(gmx, users)
    db = tmp_path / "watcher.db"
    path = gmx_config(anvil, gmx, users, telegram, db, tmp_path / "config.toml")
    cfg = parse_config(tomllib.loads(path.read_text()))
    clock = Clock()

    async def scenario() -> None:
        client = ChainClient.from_config("local", cfg.chains["local"])
        d = make_daemon(cfg, db, clock, {"local": client})
        for _ in range(2):  # learn markets and feeds, then a steady check: every account healthy
            await step(d, clock)
        assert telegram.received == []
        # ETH falls: user0's DOGE long on WETH collateral is liquidatable at once (pending borrowing rises as the
        # WETH pool shrinks in USD), and the daemon's kept reader must see it on its first check at the new price.
        gmx.set_answer("WETH", 2_650 * 10**8)
        await step(d, clock)
        liquidatable = [r.text for r in telegram.received if "LIQUIDATABLE" in r.text.splitlines()[0]]
        assert len(liquidatable) == 1, texts(telegram)
        [text] = liquidatable
        assert text.startswith("🚨 LIQUIDATABLE · user0 · gmx_local on local"), text
        assert f"ref: gmx_local:local:{users[0]}" in text and "Health 0.86" in text, text
        # The others only fell (their 'falling fast' alerts ride along); none of them is liquidatable.
        assert all("user0" in t or "FALLING FAST" in t for t in texts(telegram)), texts(telegram)
        # And back: user0 recovers on the first check after the move back too.
        sent = len(telegram.received)
        gmx.set_answer("WETH", 3_000 * 10**8)
        await step(d, clock)
        await close(d)
        await client.close()
        assert [t for t in texts(telegram)[sent:] if "user0" in t] == ["✅ RECOVERED · user0 · gmx_local on local"]

    asyncio.run(scenario())
