"""Drive the real daemon as a user would: a config file, `watcher run`/`watcher check` subprocesses, HTTP, Telegram.

Fixtures (import them into a test module: `from tests.run_harness import run_setup, run_market, telegram_standin`):
- `run_market`: real Aave v3.0 deployed on the session anvil, rolled back after the test.
- `telegram_standin`: a TelegramStandIn answering token TOKEN (the env var MW_TEST_TG_TOKEN is set to it).
- `run_setup`: a RunSetup with one borrower open (health 1.375 at WETH $2,000) that writes configs from parts.

The processes live in tests/processes.py (`WatcherProcess`, `check_json`, `wait_for`, `child_env`) and the node that
breaks in tests/switchable_node.py; both are re-exported here, so `from tests.run_harness import ...` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from tests.aave_helpers import batch_reader
from tests.configs import DELETE, merge, write_toml
from tests.loopback import free_port
from tests.processes import (
    REPO_ROOT,
    TOKEN,
    TOKEN_ENV,
    CheckRun,
    WatcherProcess,
    check_json,
    child_env,
    config_port,
    wait_for,
)
from tests.switchable_node import SwitchableNode
from tests.telegram_server import TelegramStandIn
from watcher.devchain.aave import AaveMarket, PositionSpec, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import mine, revert_snapshot, take_snapshot

# --- chain helpers -----------------------------------------------------------------------------------------------


def set_price(market: AaveMarket, symbol: str, usd: int) -> None:
    """Point the oracle's `symbol` feed at a whole-dollar price (mines the blocks that do it)."""
    market.set_price(symbol, usd * 10**8)


def mine_block(w3: Web3, blocks: int = 1) -> int:
    """Mine empty blocks; returns the new head number."""
    mine(w3, blocks)
    return int(w3.eth.block_number)


def open_borrowers(market: AaveMarket, count: int, weth: int = 10, usdc: int = 12_000) -> list[str]:
    """`count` fresh accounts, each supplying `weth` WETH and borrowing `usdc` USDC (health 1.375 at $2,000)."""
    users = market.new_users(count)
    specs = [PositionSpec(u, {"WETH": weth * 10**18}, {"USDC": usdc * 10**6}) for u in users]
    return market.open_positions_bulk(specs)


@dataclass
class RunSetup:
    """A deployed market, a borrower, a Telegram stand-in and a place for files: writes configs from parts."""

    anvil: Anvil
    market: AaveMarket
    telegram: TelegramStandIn
    tmp_path: Path
    borrower: str
    accounts: list[str] = field(default_factory=list)
    api_port: int = 0
    _procs: list[WatcherProcess] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        """The default [storage] path."""
        return self.tmp_path / "watcher.db"

    def parts(self, rpc_urls: list[str] | None = None, **chain_keys: Any) -> dict[str, Any]:
        """The default config as a dict: override any key with merge(), or pass chain keys here."""
        accounts = [{"address": a, "label": f"user{i}"} for i, a in enumerate(self.accounts or [self.borrower])]
        chain = {
            "chain_id": self.anvil.chain_id,
            "rpc_urls": rpc_urls or [self.anvil.url],
            "multicall": batch_reader(self.anvil.w3),
            "interval": 0.5,
            "timeout": 3.0,
            # anvil mines only on transactions: its head ages, and must not read as stale unless a test says so
            "max_block_age": 86_400.0,
        } | chain_keys
        return {
            "thresholds": {"warn": 1.25, "critical": 1.1, "target": 1.5},
            "chains": {"local": chain},
            "deployments": [
                {
                    "protocol": "aave_v3",
                    "name": "aave_local",
                    "chains": ["local"],
                    "pool_addresses_provider": self.market.addresses_provider,
                }
            ],
            "accounts": accounts,
            "alerts": {"confirm_warn": 1, "repeat_liquidatable": 3600.0},
            "notify": {
                "retry_initial": 0.5,
                "retry_max": 2.0,
                "telegram": {
                    "token": {"env": TOKEN_ENV},
                    "chat_id": "42",
                    "base_url": self.telegram.base_url,
                    "min_interval": 0.0,
                },
            },
            "storage": {"path": str(self.db_path)},
            "api": {"port": self.api_port},
        }

    def write_config(
        self, overrides: dict[str, Any] | None = None, name: str = "config.toml", **chain_keys: Any
    ) -> Path:
        """Write the default config with `overrides` merged (see merge()) and `chain_keys` set on chains.local."""
        return write_toml(self.tmp_path / name, merge(self.parts(**chain_keys), overrides or {}))

    def start(self, config: Path, *, ready: float = 60.0) -> WatcherProcess:
        """Start `watcher run --config config` and wait until GET /health answers; stopped at teardown."""
        proc = WatcherProcess(config)
        self._procs.append(proc)
        proc.start(ready=ready)
        return proc

    def cleanup(self) -> None:
        """Stop every process this setup started."""
        for proc in self._procs:
            proc.stop()


# --- Telegram --------------------------------------------------------------------------------------------------


def first_lines(telegram: TelegramStandIn) -> list[str]:
    """The first line of every message the stand-in accepted, in order."""
    return [r.text.splitlines()[0] for r in telegram.received]


def ref_of(text: str) -> str | None:
    """The alert id a message carries on its `ref:` line."""
    for line in reversed(text.splitlines()):
        if line.startswith("ref: "):
            return line[5:].strip()
    return None


def refs(telegram: TelegramStandIn) -> list[str | None]:
    """The alert id of every accepted message, in order."""
    return [ref_of(r.text) for r in telegram.received]


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture
def run_market(anvil: Anvil) -> Iterator[AaveMarket]:
    """Real Aave v3.0 on the session anvil, the chain rolled back after the test."""
    snap = take_snapshot(anvil.w3)
    yield deploy_aave(anvil.w3, "3.0")
    revert_snapshot(anvil.w3, snap)


@pytest.fixture
def telegram_standin() -> Iterator[TelegramStandIn]:
    """A Telegram Bot API stand-in for TOKEN, chat "42"."""
    server = TelegramStandIn(TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def run_setup(
    anvil: Anvil,
    run_market: AaveMarket,
    telegram_standin: TelegramStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[RunSetup]:
    """A RunSetup with one borrower at health 1.375; every process it started is stopped afterwards."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    borrower = run_market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    setup = RunSetup(anvil, run_market, telegram_standin, tmp_path, borrower, api_port=free_port())
    try:
        yield setup
    finally:
        setup.cleanup()


__all__ = [
    "DELETE",
    "REPO_ROOT",
    "TOKEN",
    "TOKEN_ENV",
    "CheckRun",
    "RunSetup",
    "SwitchableNode",
    "WatcherProcess",
    "check_json",
    "child_env",
    "config_port",
    "first_lines",
    "free_port",
    "merge",
    "mine_block",
    "open_borrowers",
    "ref_of",
    "refs",
    "run_market",
    "run_setup",
    "set_price",
    "telegram_standin",
    "wait_for",
    "write_toml",
]
