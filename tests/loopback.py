"""The loopback address the test servers listen on, and a free port there."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

HOST = "127.0.0.1"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Handed out below the kernel's ephemeral range: a stand-in listening on port 0 (or a client's source port) is
#: never given a port a test chose for a process that binds it later, which is what once left a `watcher run`
#: without its API (the port taken between the probe and its bind) and a test waiting 60 s for /health.
_LOW = _ephemeral_low()
_RANGE = range(_LOW - 10_000, _LOW) if _LOW > 11_024 else None
_next = itertools.count(os.getpid() % 5_000)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that no port-0 bind will be given."""
    if _RANGE is not None:
        for _ in range(len(_RANGE)):
            port = _RANGE[next(_next) % len(_RANGE)]
            if _bindable(port):
                return port
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
