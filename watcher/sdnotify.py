"""systemd's sd_notify protocol for `watcher run`: READY=1, WATCHDOG=1 pings while alive, STATUS= lines, STOPPING=1.

The protocol is one datagram per message to the unix socket named by $NOTIFY_SOCKET (a leading '@' is the abstract
namespace), so it is written here rather than pulled in as a dependency. Without $NOTIFY_SOCKET nothing is sent.

The pings come from a task on the daemon's own event loop, so a blocked loop (or a stopped process) sends none and
systemd's `WatchdogSec=` restarts it. They also stop while any source is stuck: no check of it has finished for
longer than its `stale_after`, the bound the daemon's own watchdog uses. A source whose checks finish but fail (a
node down, a locked database) is not stuck: it is reported degraded (STATUS=, /health, the "degraded" alert), and a
restart would not bring the node back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger("watcher")

#: seconds between looks for readiness before READY=1 is sent (the first checks usually take well under a second)
READY_POLL = 0.1
#: seconds between STATUS= refreshes when systemd asks for no watchdog pings
STATUS_EVERY = 5.0


class _Source(Protocol):
    name: str
    stale_after: float
    checks: int
    stalled: bool


class _Daemon(Protocol):
    sources: Mapping[str, Any]
    committed: set[str]


def socket_address(value: str) -> str | bytes:
    """The address to send to: a filesystem path, or an abstract-namespace name when $NOTIFY_SOCKET starts with '@'."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, or None when systemd asks for none (or not of us)."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    # systemd sets WATCHDOG_PID to the main process; a child that inherited the variables must not ping for it
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """Sends sd_notify messages to one socket; a failed send is logged once and never stops the daemon."""

    def __init__(self, address: str) -> None:
        self.address = socket_address(address)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)  # a full socket buffer must not block the loop: that message is dropped
        self._failed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier | None:
        """A notifier for $NOTIFY_SOCKET, or None when it is not set (not started by systemd with Type=notify)."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        return cls(address) if address else None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one message; whether it went out."""
        try:
            self.sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("sd_notify failed", extra={"error": exc.strerror or str(exc)})
            self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class Liveness:
    """Whether every source's loop still finishes checks: a source is stuck when none finished for `stale_after`."""

    def __init__(self, sources: Mapping[str, _Source], now: float | None = None) -> None:
        start = time.monotonic() if now is None else now
        self.sources = sources
        #: per source, its check count when last seen to move, and when (monotonic)
        self.seen: dict[str, tuple[int, float]] = {n: (s.checks, start) for n, s in sources.items()}

    def stuck(self, now: float | None = None) -> str | None:
        """Why the daemon is not alive (a stuck source), or None."""
        now = time.monotonic() if now is None else now
        reasons = []
        for name, source in self.sources.items():
            count, since = self.seen.get(name, (-1, now))
            if source.checks != count:
                self.seen[name] = (source.checks, now)
                continue
            if now - since > source.stale_after:
                age = now - since
                reasons.append(f"{name}: no check finished for {age:.0f} s (stale_after {source.stale_after:g} s)")
        return "; ".join(reasons) or None


def status_line(daemon: _Daemon, stuck: str | None) -> str:
    """The STATUS= text: starting, watching, degraded sources (the daemon watchdog's state), or stuck."""
    sources = daemon.sources
    if stuck:
        return f"stuck: {stuck}"
    waiting = sorted(set(sources) - daemon.committed)
    if waiting:
        return f"starting: first check of {', '.join(waiting)}"
    stalled = sorted(n for n, s in sources.items() if s.stalled)
    if stalled:
        return f"degraded: no good read of {', '.join(stalled)}"
    return f"watching {len(sources)} source{'s' if len(sources) != 1 else ''}: {', '.join(sorted(sources))}"


async def supervise(daemon: _Daemon, stop: asyncio.Event, env: Mapping[str, str] | None = None) -> None:
    """Tell systemd about the daemon until `stop`: READY once every source's first check committed, then pings."""
    notifier = Notifier.from_env(env)
    if notifier is None:
        return
    ping = watchdog_interval(env)
    liveness = Liveness(daemon.sources)
    ready = False
    status = ""
    last_ping = -float("inf")
    try:
        while not stop.is_set():
            now = time.monotonic()
            stuck = liveness.stuck(now)
            line = status_line(daemon, stuck)
            fields = []
            if not ready and set(daemon.sources) <= daemon.committed:
                ready = True
                fields.append("READY=1")
                log.info("ready", extra={"sd_notify": "READY=1"})
            if line != status:
                status = line
                fields.append(f"STATUS={line}")
            # at the asked rate, also while readiness is polled more often
            if ping is not None and stuck is None and now - last_ping >= ping * 0.95:
                last_ping = now
                fields.append("WATCHDOG=1")
            if fields:
                notifier.send(*fields)
            tick = ping if ping is not None else STATUS_EVERY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick if ready else min(tick, READY_POLL))
        notifier.send("STOPPING=1", "STATUS=stopping")
    finally:
        notifier.close()


__all__ = ["Liveness", "Notifier", "socket_address", "status_line", "supervise", "watchdog_interval"]
