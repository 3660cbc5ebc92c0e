"""sd_notify through `watcher run` as systemd runs it: a datagram socket as $NOTIFY_SOCKET, $WATCHDOG_USEC set.

READY=1 comes once the first check committed and the API listens; WATCHDOG=1 at half of $WATCHDOG_USEC while the
daemon runs, none while it cannot (SIGSTOP), again after SIGCONT; STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sqlite3
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.processes import WatcherProcess, wait_for
from tests.run_harness import RunSetup, run_market, run_setup, telegram_standin
from watcher.sdnotify import Liveness, Notifier, socket_address, status_line, watchdog_interval

__all__ = ["run_market", "run_setup", "telegram_standin"]  # fixtures, imported for pytest


@dataclass
class Received:
    """One datagram: when it arrived (monotonic) and its KEY=value fields."""

    at: float
    fields: dict[str, str]


@dataclass
class NotifySocket:
    """What systemd listens on: a unix datagram socket, its messages recorded with their arrival times."""

    address: str  #: as $NOTIFY_SOCKET names it ('@' for the abstract namespace)
    messages: list[Received] = field(default_factory=list)
    on_ready: list[object] = field(default_factory=list)  #: callables run in the receiving thread at READY=1

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(self.address))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            msg = Received(time.monotonic(), fields)
            if fields.get("READY") == "1":
                for hook in self.on_ready:
                    hook()  # type: ignore[operator]
            with self._lock:
                self.messages.append(msg)

    def having(self, key: str, value: str | None = None) -> list[Received]:
        """Messages with `key` (equal to `value` if given), in order."""
        with self._lock:
            msgs = list(self.messages)
        return [m for m in msgs if key in m.fields and (value is None or m.fields[key] == value)]

    def close(self) -> None:
        """Stop receiving."""
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


def start(setup: RunSetup, config: Path, env: dict[str, str]) -> WatcherProcess:
    """`watcher run` with systemd's variables; stopped at teardown."""
    proc = WatcherProcess(config, env=env)
    setup._procs.append(proc)
    return proc


def test_ready_after_first_check_pings_at_the_asked_rate_none_while_stopped_stopping_on_sigterm(
    run_setup: RunSetup,
) -> None:
    sd = NotifySocket(f"@mw-test-{uuid.uuid4().hex}")
    config = run_setup.write_config()
    proc = start(run_setup, config, {"NOTIFY_SOCKET": sd.address, "WATCHDOG_USEC": "1000000"})
    at_ready: dict[str, object] = {}

    def freeze_and_look() -> None:
        # Frozen the moment READY=1 arrives, the process cannot commit anything more: what the database holds and
        # whether the API's port accepts is what was true when it said READY.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with sqlite3.connect(f"file:{run_setup.db_path}?mode=ro", uri=True) as db:
                at_ready["positions"] = db.execute("SELECT count(*) FROM positions").fetchone()[0]
            with socket.create_connection(("127.0.0.1", proc.port), timeout=2):
                at_ready["api"] = True
        except OSError as exc:
            at_ready["error"] = repr(exc)
        finally:
            os.kill(proc.pid, signal.SIGCONT)

    sd.on_ready.append(freeze_and_look)
    try:
        proc.start()
        ready = wait_for(lambda: sd.having("READY", "1"), 30, what="READY=1")[0]
        assert at_ready == {"positions": 1, "api": True}
        assert len(sd.having("READY")) == 1
        status = sd.having("STATUS")
        assert status[0].fields["STATUS"].startswith("starting: first check of local")
        assert any(m.fields["STATUS"] == "watching 1 source: local" for m in status)

        # WATCHDOG_USEC = 1 s: a ping every 0.5 s
        wait_for(lambda: len([m for m in sd.having("WATCHDOG", "1") if m.at > ready.at]) >= 8, 15, what="8 pings")
        pings = [m.at for m in sd.having("WATCHDOG", "1") if m.at > ready.at]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert 0.4 <= statistics.median(gaps) <= 0.7, gaps

        # Stopped for 2.5 s, more than the 1 s watchdog period: systemd would see no ping and restart it.
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        time.sleep(2.5)
        resumed = time.monotonic()
        os.kill(proc.pid, signal.SIGCONT)
        silent = [m for m in sd.messages if stopped + 0.1 < m.at < resumed]
        assert silent == []
        wait_for(lambda: [m for m in sd.having("WATCHDOG", "1") if m.at > resumed], 5, what="pings after SIGCONT")
        wait_for(lambda: len([m for m in sd.having("WATCHDOG", "1") if m.at > resumed]) >= 3, 5, what="3 more pings")

        assert proc.stop() == 0
        stopping = sd.having("STOPPING", "1")
        assert len(stopping) == 1
        assert stopping[0].fields.get("STATUS") == "stopping"
        assert not [m for m in sd.having("WATCHDOG") if m.at > stopping[0].at]
    finally:
        sd.close()


def test_without_watchdog_usec_ready_and_status_but_no_pings_on_a_path_socket(
    run_setup: RunSetup, tmp_path: Path
) -> None:
    sd = NotifySocket(str(Path("/tmp") / f"mw-sd-{uuid.uuid4().hex[:12]}.sock"))  # short: sun_path is 108 bytes
    try:
        proc = start(run_setup, run_setup.write_config(), {"NOTIFY_SOCKET": sd.address})
        proc.start()
        wait_for(lambda: sd.having("READY", "1"), 30, what="READY=1")
        time.sleep(1.5)
        assert sd.having("WATCHDOG") == []
        assert proc.stop() == 0
        assert len(sd.having("STOPPING", "1")) == 1
        assert proc.logs("ready", sd_notify="READY=1")
    finally:
        sd.close()


def test_no_notify_socket_sends_nothing_and_runs_as_before(run_setup: RunSetup) -> None:
    proc = start(run_setup, run_setup.write_config(), {"WATCHDOG_USEC": "1000000"})
    proc.start()
    wait_for(lambda: proc.get("/health").get("chains", {}).get("local", {}).get("last_ok"), 30, what="a good check")
    assert proc.logs("ready") == []
    assert proc.stop() == 0


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_our_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_a_source_with_no_finished_check_past_stale_after_is_stuck_and_one_that_moves_is_not() -> None:
    fast = SimpleNamespace(name="fast", stale_after=10.0, checks=0, stalled=False)
    hung = SimpleNamespace(name="hung", stale_after=10.0, checks=0, stalled=False)
    live = Liveness({"fast": fast, "hung": hung}, now=100.0)
    fast.checks = 1
    assert live.stuck(now=105.0) is None
    fast.checks = 2
    assert live.stuck(now=109.0) is None
    fast.checks = 3
    reason = live.stuck(now=111.0)
    assert reason == "hung: no check finished for 11 s (stale_after 10 s)"
    daemon = SimpleNamespace(sources={"fast": fast, "hung": hung}, committed={"fast", "hung"})
    assert status_line(daemon, reason) == f"stuck: {reason}"  # type: ignore[arg-type]
    hung.checks = 1  # it finished one: alive again
    assert live.stuck(now=112.0) is None
    fast.stalled = True  # the daemon's watchdog reported it: degraded, not stuck
    assert status_line(daemon, None) == "degraded: no good read of fast"  # type: ignore[arg-type]


def test_a_send_to_a_missing_socket_is_logged_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier(f"/tmp/mw-none-{uuid.uuid4().hex[:12]}.sock")
    try:
        assert n.send("WATCHDOG=1") is False
        assert n.send("WATCHDOG=1") is False
    finally:
        n.close()
    assert [r.getMessage() for r in caplog.records] == ["sd_notify failed"]


#: A plugin module (MARGIN_WATCHER_PLUGINS imports it in the daemon's process) that hangs the daemon on a signal:
#: SIGUSR1 blocks the event loop for 3 s, as sync code spinning on it would; after SIGUSR2 every chain read awaits
#: for ever while the loop itself runs on, as a check hung in code would.
HANG = '''"""Test-only: hangs the daemon on a signal."""
import asyncio
import signal
import time

from watcher.engine import sources

HUNG = []


def _block(signum, frame):
    time.sleep(3.0)


def _hang(signum, frame):
    HUNG.append(True)


signal.signal(signal.SIGUSR1, _block)
signal.signal(signal.SIGUSR2, _hang)
_read = sources.ChainSource.read


async def read(self):
    if HUNG:
        await asyncio.Event().wait()
    return await _read(self)


sources.ChainSource.read = read
'''


def hanging_env(tmp_path: Path, sd: NotifySocket) -> dict[str, str]:
    """systemd's variables (1 s watchdog) and the hanging plugin on the path."""
    (tmp_path / "mw_hang.py").write_text(HANG)
    from tests.processes import REPO_ROOT

    return {
        "NOTIFY_SOCKET": sd.address,
        "WATCHDOG_USEC": "1000000",
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{tmp_path}",
        "MARGIN_WATCHER_PLUGINS": "mw_hang",
    }


def pings_after(sd: NotifySocket, t: float) -> list[float]:
    """Arrival times of the WATCHDOG=1 pings after t."""
    return [m.at for m in sd.having("WATCHDOG", "1") if m.at > t]


def test_a_blocked_event_loop_sends_no_pings_while_the_process_runs(run_setup: RunSetup, tmp_path: Path) -> None:
    sd = NotifySocket(f"@mw-test-{uuid.uuid4().hex}")
    try:
        proc = start(run_setup, run_setup.write_config(), hanging_env(tmp_path, sd))
        proc.start()
        ready = wait_for(lambda: sd.having("READY", "1"), 30, what="READY=1")[0]
        wait_for(lambda: len(pings_after(sd, ready.at)) >= 3, 10, what="pings")
        os.kill(proc.pid, signal.SIGUSR1)
        blocked = time.monotonic()
        time.sleep(0.5)
        assert Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] != "T"  # running, not stopped
        time.sleep(2.3)
        assert [m for m in pings_after(sd, blocked + 0.1) if m < blocked + 2.8] == []
        wait_for(lambda: len(pings_after(sd, blocked + 3.0)) >= 2, 6, what="pings once the loop runs again")
    finally:
        sd.close()


def test_a_source_stuck_past_stale_after_stops_the_pings_while_the_loop_and_api_run(
    run_setup: RunSetup, tmp_path: Path
) -> None:
    sd = NotifySocket(f"@mw-test-{uuid.uuid4().hex}")
    try:
        # stale_after 3 s: the harness's chain checks every 0.5 s
        proc = start(run_setup, run_setup.write_config(stale_after=3.0), hanging_env(tmp_path, sd))
        proc.start()
        ready = wait_for(lambda: sd.having("READY", "1"), 30, what="READY=1")[0]
        wait_for(lambda: len(pings_after(sd, ready.at)) >= 3, 10, what="pings")
        os.kill(proc.pid, signal.SIGUSR2)
        hung = time.monotonic()
        stuck = wait_for(
            lambda: [m for m in sd.having("STATUS") if m.fields["STATUS"].startswith("stuck: local")], 10, what="stuck"
        )[0]
        # the last check finished at most an interval before the signal: stuck between 2.5 and 3.5 s later
        assert 2.0 < stuck.at - hung < 5.0, stuck.at - hung
        assert stuck.fields["STATUS"].endswith("(stale_after 3 s)")
        assert "WATCHDOG" not in stuck.fields
        time.sleep(2.0)
        assert pings_after(sd, stuck.at) == []
        # the loop runs: the API answers, and the daemon's own watchdog has reported the chain degraded
        health = proc.get("/health")
        assert health["status"] == "degraded" and health["chains"]["local"]["degraded"] is True, health
        # a check hung in code never returns, so SIGTERM cannot finish it: systemd's TimeoutStopSec kills it
        proc.kill()
    finally:
        sd.close()
