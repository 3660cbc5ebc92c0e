"""Drive the real daemon as a user would: a config file, `watcher run`/`watcher check` subprocesses, HTTP, Telegram.

Fixtures (import them into a test module: `from tests.run_harness import run_setup, run_market, telegram_standin`):
- `run_market`: real Aave v3.0 deployed on the session anvil, rolled back after the test.
- `telegram_standin`: a TelegramStandIn answering token TOKEN (the env var MW_TEST_TG_TOKEN is set to it).
- `run_setup`: a RunSetup with one borrower open (health 1.375 at WETH $2,000) that writes configs from parts.

Processes: `WatcherProcess` (`watcher run`, its JSON log lines parsed, the API polled) and `check_json`
(`watcher check --json`). Both run `[sys.executable, "-m", "watcher.cli", ...]` with cwd and PYTHONPATH set to the
repository this file lives in, so the same tests run against any checkout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
from web3 import Web3

from tests.aave_helpers import batch_reader
from tests.configs import DELETE, merge, write_toml
from tests.loopback import free_port
from tests.telegram_server import TelegramStandIn
from watcher.devchain.aave import AaveMarket, PositionSpec, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import mine, revert_snapshot, take_snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "123456:RUN-HARNESS-SECRET-TOKEN"
TOKEN_ENV = "MW_TEST_TG_TOKEN"

T = TypeVar("T")


# --- configs -----------------------------------------------------------------------------------------------------


def config_port(config: Path) -> int:
    """The [api] port a config file names."""
    return int(tomllib.loads(config.read_text())["api"]["port"])


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


# --- processes ---------------------------------------------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a watcher subprocess: this repository first on the path, the Telegram token set."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), TOKEN_ENV: TOKEN}
    env.pop("MARGIN_WATCHER_CONFIG", None)
    return env | (extra or {})


def wait_for(predicate: Callable[[], T], timeout: float, *, every: float = 0.05, what: str = "condition") -> T:
    """Poll until `predicate()` is truthy and return it; fail the test after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(every)


class WatcherProcess:
    """`watcher run --config F` as a subprocess: JSON log lines from stderr, the API over HTTP, SIGTERM to stop."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = child_env(env)
        self.port = config_port(config)
        self.lines: list[dict[str, Any]] = []  #: parsed JSON log lines, in order
        self.other: list[str] = []  #: stderr lines that are not JSON (warnings, tracebacks)
        self.stdout: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, *, ready: float = 60.0) -> WatcherProcess:
        """Start the process and wait until GET /health answers (fails the test if it exits or never answers)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "run", "--config", str(self.config)],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, sink in ((self.proc.stderr, self._on_stderr), (self.proc.stdout, self.stdout.append)):
            t = threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"watcher run exited with {self.proc.returncode}: {self.other[-5:]}")
            return self.status("/health")[0] == 200

        wait_for(up, ready, every=0.1, what="GET /health to answer")
        return self

    @staticmethod
    def _pump(stream: Any, sink: Callable[[str], None]) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def _on_stderr(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        with self._lock:
            if isinstance(entry, dict) and "msg" in entry:
                entry["_at"] = time.monotonic()  # when the test saw it, to compare with the stand-in's times
                self.lines.append(entry)
            else:
                self.other.append(line)

    @property
    def url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def status(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or None) of GET path; (0, None) when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def get(self, path: str, timeout: float = 5.0) -> Any:
        """GET path as JSON; fails the test unless it answers 200."""
        code, doc = self.status(path, timeout)
        assert code == 200, (path, code, doc)
        return doc

    def logs(self, msg: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Log lines so far whose "msg" is `msg` (any if None) and whose fields equal `fields`."""
        with self._lock:
            lines = list(self.lines)
        return [
            e for e in lines if (msg is None or e.get("msg") == msg) and all(e.get(k) == v for k, v in fields.items())
        ]

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._join()

    def stop(self, deadline: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after `deadline` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(deadline)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._join()
        return self.proc.returncode

    def _join(self) -> None:
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> WatcherProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CheckRun(NamedTuple):
    """The outcome of one `watcher check --json`: exit code (None if it had to be killed), JSON, wall time."""

    code: int | None
    doc: Any
    seconds: float
    stderr: str


def check_json(config: Path, timeout: float = 60.0, env: dict[str, str] | None = None) -> CheckRun:
    """Run `watcher check --config F --json`; a run longer than `timeout` is killed and reported with code None."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(config), "--json"],
        cwd=REPO_ROOT,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        code = None
    seconds = time.monotonic() - start
    try:
        doc = json.loads(out) if out.strip() else None
    except ValueError:
        doc = None
    return CheckRun(code, doc, seconds, err)


# --- a node that can be switched off -----------------------------------------------------------------------------


class SwitchableNode:
    """A JSON-RPC forwarder to anvil on 127.0.0.1 that answers HTTP 503 while `down` is set: a node that breaks."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.down = False
        self.requests = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                node.requests += 1
                if node.down:
                    status, answer = 503, b'{"error": "down"}'
                else:
                    req = urllib.request.Request(node.upstream, data=body, headers={"Content-Type": "application/json"})
                    try:
                        with urllib.request.urlopen(req, timeout=30) as resp:
                            status, answer = resp.status, resp.read()
                    except OSError:
                        status, answer = 502, b'{"error": "upstream"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The URL to put in rpc_urls."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SwitchableNode:
        """Serve in a thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


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
