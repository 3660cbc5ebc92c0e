"""`watcher config check` as a process: a summary and exit 0, or every bad key named and exit 2; never a connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli_options import watcher

ACCOUNT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SECRET = "SECRETKEY-c0ffee"


class Listener:
    """A TCP socket on 127.0.0.1 that accepts and records every connection (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    node = Listener()
    yield node
    node.close()


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def good_config(tmp_path: Path, port: int) -> Path:
    secret = tmp_path / "tg-token"
    secret.write_text(SECRET)
    return write(
        tmp_path,
        f"""
[chains.local]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:{port}/", {{ env = "MW_CC_RPC" }}]
ws_url = "ws://127.0.0.1:{port}/"

[chains.ethereum]
chain_id = 1
rpc_urls = [{{ env = "MW_CC_ETH" }}]

[[deployments]]
protocol = "aave_v3"
name = "local_aave"
chains = ["local"]
pool_addresses_provider = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"

[[deployments]]
protocol = "spark"
chains = ["ethereum"]

[venues.hl]
protocol = "hyperliquid"
base_url = "http://127.0.0.1:{port}"

[[accounts]]
address = "{ACCOUNT}"
label = "main"

[notify.telegram]
token = {{ file = "{secret}" }}
chat_id = "42"
base_url = "http://127.0.0.1:{port}"
""",
    )


def test_a_good_config_is_summarised_without_any_connection(tmp_path: Path, listener: Listener) -> None:
    cfg = good_config(tmp_path, listener.port)
    got = watcher(
        "config",
        "check",
        "-c",
        str(cfg),
        MW_CC_RPC=f"http://127.0.0.1:{listener.port}/{SECRET}",
        MW_CC_ETH=f"http://127.0.0.1:{listener.port}/x",
    )
    assert got.returncode == 0, got.stderr
    out = got.stdout
    assert out.startswith(f"{cfg}: valid")
    assert "local (chain id 31337, 2 RPC URLs)" in out and "ethereum (chain id 1, 1 RPC URL)" in out
    assert "local_aave on local at 0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e" in out
    assert "spark on ethereum at 0x02C3eA4e34C0cBd694D2adFa2c690EECbC1793eE" in out  # resolved from protocols/
    assert "hl (hyperliquid, 1 accounts)" in out and "accounts:     1 (main)" in out and "channels:     telegram" in out
    assert (
        "MW_CC_RPC (chains.local.rpc_urls[1]): set" in out
        and f"{tmp_path / 'tg-token'} (notify.telegram.token): set" in out
    )
    assert SECRET not in out + got.stderr  # whether a secret is set, never what it is
    assert listener.connections == 0


def test_missing_secrets_are_named_and_exit_2(tmp_path: Path, listener: Listener) -> None:
    cfg = good_config(tmp_path, listener.port)
    (tmp_path / "tg-token").unlink()
    got = watcher("config", "check", "-c", str(cfg))
    assert got.returncode == 2 and got.stdout == ""
    err = got.stderr
    assert (
        "environment variables not set: MW_CC_ETH (chains.ethereum.rpc_urls[0]), MW_CC_RPC (chains.local.rpc_urls[1])"
        in err
    )
    assert "notify.telegram.token: cannot read secret file" in err
    assert "Traceback" not in err and listener.connections == 0


def test_every_bad_key_is_named_one_per_line(tmp_path: Path, listener: Listener) -> None:
    cfg = write(
        tmp_path,
        f"""
[thresholds]
warm = 1.3

[chains.local]
chain_id = 0
rpc_urls = ["http://127.0.0.1:{listener.port}"]

[[deployments]]
protocol = "aave_v3"
chains = ["local"]

[[accounts]]
address = "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
""",
    )
    got = watcher("config", "check", "-c", str(cfg))
    assert got.returncode == 2 and got.stdout == ""
    lines = got.stderr.strip().splitlines()
    assert all(line.startswith(f"watcher: error: {cfg}: ") for line in lines), lines
    text = got.stderr
    assert "thresholds.warm: unknown key" in text and "chains.local.chain_id" in text and "accounts[0].address" in text
    assert len(lines) >= 3 and listener.connections == 0


def test_a_deployment_not_on_the_chain_and_an_unknown_protocol(tmp_path: Path, listener: Listener) -> None:
    base = f"""
[chains.local]
chain_id = 31337
rpc_urls = ["http://127.0.0.1:{listener.port}"]

[[accounts]]
address = "{ACCOUNT}"
"""
    cfg = write(tmp_path, base + '[[deployments]]\nprotocol = "aave_v3"\nchains = ["local"]\n')
    got = watcher("config", "check", "-c", str(cfg))
    assert got.returncode == 2 and "protocols/aave_v3.toml has no deployment on chain id 31337" in got.stderr
    cfg = write(tmp_path, base + '[[deployments]]\nprotocol = "aave_v9"\nchains = ["local"]\n')
    got = watcher("config", "check", "-c", str(cfg))
    assert got.returncode == 2 and "deployments[0].protocol: unknown protocol 'aave_v9'" in got.stderr
    assert listener.connections == 0


def test_the_shipped_config_passes_with_its_one_variable(tmp_path: Path) -> None:
    got = watcher("config", "check", "-c", "config.toml", ETH_RPC_URL="http://127.0.0.1:9")
    assert (
        got.returncode == 0
        and "aave_v3 on ethereum" in got.stdout
        and "ETH_RPC_URL (chains.ethereum.rpc_urls[0]): set" in got.stdout
    )
    got = watcher("config", "check")  # MARGIN_WATCHER_CONFIG unset: config.toml in the working directory
    assert got.returncode == 2 and "ETH_RPC_URL" in got.stderr


def test_config_check_help_and_a_missing_file(tmp_path: Path) -> None:
    got = watcher("config", "check", "--help")
    assert got.returncode == 0 and "examples:" in got.stdout and "exit codes:" in got.stdout
    got = watcher("config", "check", MARGIN_WATCHER_CONFIG=str(tmp_path / "nope.toml"))
    assert got.returncode == 2 and f"{tmp_path / 'nope.toml'}: cannot read" in got.stderr
    got = watcher(
        "config", "-c", str(tmp_path / "other.toml"), "check", MARGIN_WATCHER_CONFIG=str(tmp_path / "nope.toml")
    )
    assert got.returncode == 2 and f"{tmp_path / 'other.toml'}: cannot read" in got.stderr
    got = watcher("config")
    assert got.returncode == 2 and "\n" not in got.stderr.strip() and "SUBCOMMAND" in got.stderr
