"""getUpdates for the Telegram stand-in: queued chat messages handed out with offset semantics and a long poll.

`TelegramStandIn.updates` is an UpdateQueue. A test pushes what a user types (`push(chat_id, text)`); the daemon's
long poll gets every update with `update_id >= offset`, waiting up to `timeout` seconds for one, and an offset
confirms (forgets) every update below it, as Telegram does. Faults for the listener's tests, until `clear()`:
- `fault("down")`: every poll gets HTTP 502 with Telegram's error JSON;
- `fault("hang")`: every poll is read and never answered (the connection stays open);
- `fault("garbage")`: every poll gets a 200 whose body is not JSON (a proxy's page);
- `fault("wrong")`: every poll gets a 200 with `ok: true` and a `result` that is not a list;
- `fault("flood")`: every poll gets a 429 with `parameters.retry_after` = FLOOD_WAIT.
Every poll is recorded in `polls` (arrival time, offset, timeout, status answered; 0 for none).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

FAULTS = ("down", "hang", "garbage", "wrong", "flood")
#: the retry_after of the "flood" fault's 429, in seconds
FLOOD_WAIT = 3


@dataclass(frozen=True)
class Poll:
    """One getUpdates request the stand-in saw."""

    at: float
    offset: int | None
    timeout: float
    status: int


class UpdateQueue:
    """The stand-in's getUpdates: a queue of updates, the long poll, the faults."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.polls: list[Poll] = []
        self.fault_kind: str | None = None
        self._updates: list[dict[str, Any]] = []
        self._next_id = 1000
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._release: asyncio.Event | None = None
        self._closing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the stand-in's event loop (called there, before serving)."""
        self._loop = loop
        self._changed = asyncio.Event()
        self._release = asyncio.Event()

    def push(self, chat_id: str | int, text: str, *, date: float | None = None) -> int:
        """Queue a text message from `chat_id` as the next update; returns its update_id."""
        with self._lock:
            update_id = self._next_id
            self._next_id += 1
            chat = int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id
            message = {
                "message_id": update_id,
                "date": int(time.time() if date is None else date),
                "chat": {"id": chat, "type": "private"},
                "from": {"id": chat, "is_bot": False, "first_name": "test"},
                "text": text,
            }
            self._updates.append({"update_id": update_id, "message": message})
        self._wake()
        return update_id

    def reserve_id(self) -> int:
        """The next update_id, taken (for a hand-made update given to push_raw)."""
        with self._lock:
            self._next_id += 1
            return self._next_id - 1

    def push_raw(self, update: Any) -> None:
        """Queue any JSON value as an update, as a broken Telegram might hand one out."""
        with self._lock:
            self._updates.append(update)
        self._wake()

    def fault(self, kind: str) -> None:
        """Answer every poll with this fault (see the module doc) until clear()."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self.fault_kind = kind

    def clear(self) -> None:
        """End the fault; polls held by "hang" are cut without an answer."""
        with self._lock:
            self.fault_kind = None
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def release(self) -> None:
        """End every poll now, held or waiting (the stand-in is stopping)."""
        self._closing = True
        self.clear()
        self._wake()

    def polls_since(self, at: float) -> list[Poll]:
        """The polls that arrived at or after monotonic time `at`."""
        with self._lock:
            return [p for p in self.polls if p.at >= at]

    def _wake(self) -> None:
        if self._loop is not None and self._changed is not None:
            self._loop.call_soon_threadsafe(self._changed.set)

    def _record(self, at: float, offset: int | None, timeout: float, status: int) -> None:
        with self._lock:
            self.polls.append(Poll(at, offset, timeout, status))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET or POST /bot{token}/getUpdates, parameters in the query string or a JSON body."""
        at = time.monotonic()
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
        try:
            offset = int(params["offset"]) if "offset" in params else None
            timeout = float(params.get("timeout", 0))
            limit = int(params.get("limit", 100))
        except (TypeError, ValueError):
            self._record(at, None, 0.0, 400)
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request"}, status=400)
        if request.match_info["token"] != self.token:
            self._record(at, offset, timeout, 401)
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        with self._lock:
            kind = self.fault_kind
        if kind == "down":
            self._record(at, offset, timeout, 502)
            return web.json_response({"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502)
        if kind == "flood":
            self._record(at, offset, timeout, 429)
            body = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {FLOOD_WAIT}",
                "parameters": {"retry_after": FLOOD_WAIT},
            }
            return web.json_response(body, status=429)
        if kind == "garbage":
            self._record(at, offset, timeout, 200)
            return web.Response(text="<html><body>502 upstream sad</body></html>", content_type="text/html")
        if kind == "wrong":
            self._record(at, offset, timeout, 200)
            return web.json_response({"ok": True, "result": {"update_id": "not a list"}})
        if kind == "hang":
            self._record(at, offset, timeout, 0)
            assert self._release is not None
            await self._release.wait()
            self._release.clear()
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        deadline = at + max(0.0, min(timeout, 50.0))
        while True:
            with self._lock:
                if offset is not None:
                    # an offset confirms every update below it: Telegram forgets them
                    self._updates = [u for u in self._updates if not _below(u, offset)]
                ready = self._updates[:limit]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or self._closing:
                break
            assert self._changed is not None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        self._record(at, offset, timeout, 200)
        return web.json_response({"ok": True, "result": ready})


def _below(update: Any, offset: int) -> bool:
    uid = update.get("update_id") if isinstance(update, dict) else None
    return isinstance(uid, int) and uid < offset
