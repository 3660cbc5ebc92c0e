"""One registry: a protocol added by one module and one protocols file, outside the package, through the config.

The toy module below is written to a temporary directory and named in MARGIN_WATCHER_PLUGINS; nothing in watcher/
knows it. `watcher run --config` then reads it on anvil (Aave's Pool, asked through getUserAccountData) and alerts.
"""

from __future__ import annotations

import subprocess
import sys

from tests import run_harness
from tests.configs import write_toml
from tests.processes import REPO_ROOT, WatcherProcess, child_env, wait_for
from tests.run_harness import RunSetup, set_price

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

TOY = '''"""A toy lending protocol, outside the package: Aave's Pool read through getUserAccountData alone.

It leaves out everything the real adapter replays (legs, eMode, the revision's rounding): its health is the Pool's
own healthFactor, and its verdict is healthFactor < 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from watcher.adapters.base import Account, Call, ReadError
from watcher.config import ProtocolOptions
from watcher.model import WAD, BlockRef, Position
from watcher.registry import ChainProtocol, register

SELECTOR = bytes.fromhex("bf92857c")  # getUserAccountData(address)


class ToyReader:
    """One getUserAccountData per account."""

    def __init__(self, protocol: str, chain: str, pool: str, accounts: Sequence[Account]) -> None:
        self.protocol, self.chain, self.pool, self.accounts = protocol, chain, pool, list(accounts)
        self.skipped: list[tuple[Account, str]] = []

    def calls(self) -> list[Call]:
        """A call per account."""
        return [Call(self.pool, SELECTOR + bytes(12) + bytes.fromhex(a.address[2:]), 150_000) for a in self.accounts]

    def parse(self, results: Sequence[tuple[bool, bytes]], block: BlockRef) -> list[Position]:
        """The Pool's health factor per account."""
        out = []
        for account, (ok, data) in zip(self.accounts, results, strict=True):
            if not ok or len(data) < 192:
                raise ReadError(f"{self.protocol}/{self.chain}: getUserAccountData failed")
            debt, hf = int.from_bytes(data[32:64], "big"), int.from_bytes(data[160:192], "big")
            health = hf if debt else None
            out.append(
                Position(
                    self.protocol, self.chain, account.address, account.label, (), (), health,
                    debt > 0 and hf < WAD, 10**8, "USD", block,
                )
            )
        return out


class ToyOptions(ProtocolOptions):
    """The toy's own [[deployments]] key: a label for every account it reads."""

    account_label: str = ""


def make_reader(dep: Any, accounts: Sequence[Account]) -> ToyReader:
    """The toy's reader for a resolved deployment."""
    if dep.account_label:
        accounts = [Account(a.address, dep.account_label) for a in accounts]
    return ToyReader(dep.name, dep.chain, dep.address, accounts)


register(
    ChainProtocol(
        "toy_lend", "pool", make_reader, protocol_file=Path(__file__).with_name("toy_lend.toml"), options=ToyOptions
    )
)
'''


def _plugin(s: RunSetup) -> dict[str, str]:
    """The toy module and its protocols file in a directory of their own; the environment that loads them."""
    where = s.tmp_path / "plugins"
    where.mkdir()
    (where / "toy_lend.py").write_text(TOY)
    (where / "toy_lend.toml").write_text(
        f'adapter = "toy_lend"\ntitle = "Toy lending"\n\n[deployments.local]\nchain_id = {s.anvil.chain_id}\n'
        f'pool = "{s.market.pool.address}"\n'
    )
    return {"PYTHONPATH": str(where), "MARGIN_WATCHER_PLUGINS": "toy_lend"}


def test_a_protocol_added_by_one_module_and_one_file_is_configured_read_and_alerted(run_setup: RunSetup) -> None:
    """[[deployments]] protocol = "toy_lend" resolves from the plugin's file; its position reads ok, then alerts
    liquidatable when the price falls."""
    s = run_setup
    env = _plugin(s)
    parts = s.parts()
    parts["deployments"] = [{"protocol": "toy_lend", "name": "toy", "chains": ["local"], "account_lable": "x"}]
    typo = write_toml(s.tmp_path / "typo.toml", parts)
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(typo)],
        cwd=REPO_ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # the toy's own keys are its options model's: a typo in one is named like any other key's
    assert done.returncode == 2 and "deployments[0].account_lable: unknown key (a typo?)" in done.stderr, done.stderr
    parts["deployments"] = [{"protocol": "toy_lend", "name": "toy", "chains": ["local"], "account_label": "treasury"}]
    cfg = write_toml(s.tmp_path / "toy.toml", parts)
    w = WatcherProcess(cfg, env=env)
    s._procs.append(w)
    w.start()
    wait_for(lambda: [p["level"] for p in w.get("/positions")["positions"]] == ["ok"], 30, what="the toy read")
    [doc] = w.get("/positions")["positions"]
    assert (doc["protocol"], doc["deployment"]) == ("toy_lend", "toy") and doc["id"].startswith("toy:")
    assert doc["account"] == s.borrower
    set_price(s.market, "WETH", 1_400)
    got = wait_for(lambda: [r for r in s.telegram.received if "LIQUIDATABLE" in r.text], 10, what="the alert")
    assert " · treasury · toy on local" in got[0].text.splitlines()[0], got[0].text


def test_a_plugin_that_cannot_be_imported_is_one_line_and_exit_2(run_setup: RunSetup) -> None:
    """MARGIN_WATCHER_PLUGINS naming a missing module: exit 2, one line naming the setting and the module."""
    s = run_setup
    cfg = s.write_config()
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(cfg)],
        cwd=REPO_ROOT,
        env=child_env({"MARGIN_WATCHER_PLUGINS": "no_such_protocol_module"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, lines)
    assert "MARGIN_WATCHER_PLUGINS" in lines[0] and "no_such_protocol_module" in lines[0]
