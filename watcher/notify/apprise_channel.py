"""Apprise channel: one apprise URL (ntfy, Pushover, Discord, a JSON webhook, ... ~100 services) per channel.

apprise's `notify()` is blocking and answers only True or False. Its plugins log why a send failed, with the HTTP
status as `error=NNN`; those records are caught per worker thread (never printed: they may carry the URL's host or
topic), and a 4xx other than 408 and 429 becomes a PermanentFailure. Anything else that fails is temporary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import apprise

from watcher.config.delivery import apprise_names
from watcher.config.errors import ConfigError
from watcher.config.models import NotifyConfig
from watcher.notify.base import Message, PermanentFailure, TemporaryFailure, redact, render_text

#: `error=404.` in apprise's warning when a service answered with an HTTP error status; ntfy's plugin logs ntfy's
#: own five-digit code instead (40301, 42901), whose first three digits are the HTTP status.
_STATUS = re.compile(r"error=(\d{3})(?:\d{2})?\b")
#: 4xx that a retry may get past: a timeout on the service's side, and rate limiting.
_RETRYABLE_4XX = {408, 429}


class _ThreadRecords(logging.Handler):
    """Collects apprise's log records of the threads that asked for them, each thread its own list."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._lock = threading.Lock()
        self._by_thread: dict[int, list[str]] = {}

    def start(self) -> None:
        """Collect the calling thread's records from now on."""
        with self._lock:
            self._by_thread[threading.get_ident()] = []

    def stop(self) -> list[str]:
        """Stop collecting for the calling thread and return its messages."""
        with self._lock:
            return self._by_thread.pop(threading.get_ident(), [])

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the message if its thread is collecting."""
        with self._lock:
            sink = self._by_thread.get(record.thread or 0)
        if sink is not None:
            with contextlib.suppress(Exception):  # a malformed record must not break a send
                sink.append(record.getMessage())


_records = _ThreadRecords()
_logger = logging.getLogger("apprise")
# apprise's own records stay here: they name hosts, topics and, on debug, whole URLs, never fit for our log.
_logger.propagate = False
_logger.setLevel(logging.INFO)
_logger.addHandler(_records)


#: Seconds apprise's own socket timeouts run past the channel's deadline.
SOCKET_MARGIN = 1.0


def load_url(url: str, where: str, timeout: float) -> Any:
    """The apprise plugin for `url`; a ValueError names `where` and at most the scheme, never the URL."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    asset = apprise.AppriseAsset(storage_mode="memory")
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        known = f"the scheme {scheme!r}" if scheme.isalnum() and len(scheme) <= 20 else "its scheme"
        raise ValueError(f"{where}: not a URL apprise can use ({known}, or a part of it, is not valid)")
    # Our own deadline bounds the send and names it; apprise's sockets give up a little later, so that on a loaded
    # machine their vaguer "no answer" never beats it. A timed-out worker thread ends at most SOCKET_MARGIN after the
    # deadline on each socket operation it was in.
    plugin.socket_connect_timeout = timeout + SOCKET_MARGIN
    plugin.socket_read_timeout = timeout + SOCKET_MARGIN
    # The relay paces and backs off (429 included); apprise's sleep between sends would only eat into the deadline.
    plugin.request_rate_per_sec = 0
    return plugin


class AppriseChannel:
    """Sends each message through one apprise URL, in a worker thread of its own, within `timeout` seconds."""

    def __init__(self, name: str, url: str, *, timeout: float = 10.0, plugin: Any = None) -> None:
        self.name = name
        self.timeout = timeout
        self._url = url
        self._plugin = plugin if plugin is not None else load_url(url, name, timeout)
        # Its own threads: a hanging service never takes the workers e-mail or another apprise channel needs.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"notify-{name}")

    def __repr__(self) -> str:
        # The URL carries the service's token or password: never shown.
        return f"AppriseChannel(name={self.name!r}, service={type(self._plugin).__name__})"

    async def send(self, msg: Message) -> None:
        """Deliver `msg`; TemporaryFailure on timeout or an outage, PermanentFailure on a refusal (4xx)."""
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._pool, self._send_blocking, msg)
        try:
            ok, lines = await asyncio.wait_for(work, self.timeout)
        except TimeoutError:
            raise TemporaryFailure(f"{self.name}: timed out after {self.timeout:g} s") from None
        if ok:
            return
        statuses = [int(m.group(1)) for line in lines if (m := _STATUS.search(line))]
        if not statuses:
            raise TemporaryFailure(f"{self.name}: not delivered (connection failed or no answer)")
        status = statuses[-1]
        if 400 <= status < 500 and status not in _RETRYABLE_4XX:
            raise PermanentFailure(f"{self.name}: refused with HTTP {status}")
        raise TemporaryFailure(f"{self.name}: HTTP {status}")

    def _send_blocking(self, msg: Message) -> tuple[bool, list[str]]:
        limit = getattr(self._plugin, "body_maxlen", 0) or None
        if limit is not None and getattr(self._plugin, "overflow_amalgamate_title", False):
            limit -= len(msg.subject) + 1
        body = render_text(msg, max(limit, 200) if limit is not None else None)
        _records.start()
        try:
            ok = bool(self._plugin.notify(body=body, title=msg.subject))
        except Exception as exc:  # a plugin bug: reported by type only, its text may hold the URL
            return False, [f"exception {type(exc).__name__}"]
        finally:
            lines = _records.stop()
        return ok, [redact(line, self._url) for line in lines]

    async def close(self) -> None:
        """Let go of the worker threads (a send still hanging ends at its socket timeout)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def apprise_channels(notify: NotifyConfig) -> dict[str, AppriseChannel]:
    """A channel per [[notify.apprise]] entry; each URL is read now, from the environment or its file."""
    out: dict[str, AppriseChannel] = {}
    for i, (name, entry) in enumerate(zip(apprise_names(notify.apprise), notify.apprise, strict=True)):
        where = f"notify.apprise[{i}].url"
        url = entry.url.resolve(where)
        try:
            plugin = load_url(url, where, entry.timeout)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        out[name] = AppriseChannel(name, url, timeout=entry.timeout, plugin=plugin)
    return out
