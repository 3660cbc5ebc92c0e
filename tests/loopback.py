"""The loopback address the test servers listen on, and a free port there."""

from __future__ import annotations

import itertools
import random
import socket
from pathlib import Path

HOST = "127.0.0.1"


def _ephemeral() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


#: Handed out outside the kernel's ephemeral range: a stand-in listening on port 0 (or a client's source port) is
#: never given a port a test chose for a process that binds it later, which is what once left a `watcher run`
#: without its API (the port taken between the probe and its bind) and a test waiting 60 s for /health.
_LOW, _HIGH = _ephemeral()
_PORTS = [p for p in range(10_000, 65_536) if not _LOW <= p <= _HIGH]
#: a random start: two test runs at once walk the list from different places
_next = itertools.count(random.randrange(len(_PORTS))) if _PORTS else None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the kernel's ephemeral range where it can."""
    if _next is not None:
        for _ in range(len(_PORTS)):
            port = _PORTS[next(_next) % len(_PORTS)]
            if _bindable(port):
                return port
    # every port is ephemeral (ip_local_port_range 1024 65535, say): the kernel's pick, with its small race
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
