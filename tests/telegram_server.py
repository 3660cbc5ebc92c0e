"""A Telegram Bot API stand-in (aiohttp) on 127.0.0.1 for the notify tests and the daemon suites, with faults."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback import HOST
from tests.telegram_updates import UpdateQueue


@dataclass(frozen=True)
class Received:
    """A message the stand-in accepted, with its monotonic arrival time."""

    chat_id: str
    text: str
    at: float


@dataclass(frozen=True)
class Request:
    """Any sendMessage request the stand-in saw (accepted or not), with its arrival time and the status answered."""

    at: float
    status: int


@dataclass(frozen=True)
class _Planned:
    kind: str  #: "answer", "stall", "trickle" or "oversize"
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    every: float = 0.0  #: trickle: seconds between bytes
    size: int = 0  #: oversize: bytes in the answer


#: Status recorded in `requests` for a request the stand-in never answered (stall) or cut (refuse).
NO_ANSWER = 0


class TelegramStandIn:
    """POST /bot{token}/sendMessage on 127.0.0.1, in its own thread and event loop, recording what arrives.

    Faults, for the notify tests and the fault suites (each applies to the requests that arrive while it holds):
    - `delay`: seconds to wait before answering anything (a slow but working Telegram).
    - `answer_next(status, count)`: the next `count` requests get that error status (429 with retry_after, ...).
    - `down(seconds, status=502)`: an outage; every request in the next `seconds` gets `status` (a proxy's 502 page).
    - `refuse(seconds)`: an outage at the TCP level; the port stops listening for `seconds` (connection refused)
      and requests on already open connections are cut without an answer; then it listens on the same port again.
    - `stall(count)`: the next `count` requests are read and never answered (the connection stays open), until
      `release()` or `stop()`.
    - `trickle(count, every)`: the next `count` requests get a 200 and then a body one byte every `every` seconds,
      never complete, until the client gives up, `release()` or `stop()`.
    - `oversize(count, size)`: the next `count` requests get a 200 with a JSON answer of `size` bytes (Telegram's
      answers are a few kB). The message is not recorded as received.
    - `clear()`: end every fault above (planned answers, outages, stalls and trickles).
    Every request is recorded in `requests` (arrival time, status answered or NO_ANSWER); accepted messages in
    `received` (`sent_to(chat)` gives one chat's). `updates` serves getUpdates (tests/telegram_updates.py).
    """

    def __init__(self, token: str, chats: tuple[str, ...] = ("42",)) -> None:
        self.token = token
        self.chats = set(chats)
        self.received: list[Received] = []
        self.requests: list[Request] = []
        #: getUpdates: what users type to the bot, and the long poll that hands it out
        self.updates = UpdateQueue(token)
        #: Seconds to wait before answering, to make clients time out.
        self.delay = 0.0
        self._planned: deque[_Planned] = deque()
        self._down_until = float("-inf")
        self._down_status = 502
        self._refuse_until = float("-inf")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._release: asyncio.Event | None = None
        self.port = 0

    def sent_to(self, chat_id: str) -> list[str]:
        """The texts accepted for one chat, in order."""
        with self._lock:
            return [r.text for r in self.received if r.chat_id == str(chat_id)]

    @property
    def base_url(self) -> str:
        """The URL to give TelegramChannel as base_url."""
        return f"http://{HOST}:{self.port}"

    def answer_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: int | None = None,
        header_only: bool = False,
        description: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` (429 carries retry_after in JSON, or only in the header)."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description or f"Error {status}"}
        headers: dict[str, str] = {}
        if retry_after is not None:
            if header_only:
                headers["Retry-After"] = str(retry_after)
            else:
                body["parameters"] = {"retry_after": retry_after}
                body["description"] = f"Too Many Requests: retry after {retry_after}"
        self._plan(count, _Planned("answer", status, body, headers))

    def down(self, seconds: float, status: int = 502) -> None:
        """From now, answer every request with `status` for `seconds`."""
        with self._lock:
            self._down_until, self._down_status = time.monotonic() + seconds, status

    def refuse(self, seconds: float) -> None:
        """From now, refuse connections (and cut open ones) for `seconds`, then listen on the same port again."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
        self._call(self._close_port, seconds)

    def stall(self, count: int = 1) -> None:
        """Read the next `count` requests and never answer them (until release() or stop())."""
        self._plan(count, _Planned("stall"))

    def trickle(self, count: int = 1, every: float = 0.5) -> None:
        """Answer the next `count` requests with a 200 whose body comes one byte every `every` seconds, forever."""
        self._plan(count, _Planned("trickle", every=every))

    def oversize(self, count: int = 1, size: int = 2_000_000) -> None:
        """Answer the next `count` requests with a 200 and a JSON body of `size` bytes."""
        self._plan(count, _Planned("oversize", size=size))

    def release(self) -> None:
        """End the requests held by stall or trickle now (they are closed without a complete answer)."""
        self._call(self._release_held)

    def clear(self) -> None:
        """End every fault: planned answers, an outage, a refusal, stalls and trickles."""
        with self._lock:
            self._planned.clear()
            self._down_until = self._refuse_until = float("-inf")
        self.release()

    def _plan(self, count: int, planned: _Planned) -> None:
        with self._lock:
            self._planned.extend(planned for _ in range(count))

    def _call(self, fn: Any, *args: Any) -> None:
        """Run `fn(*args)` (a coroutine function) in the stand-in's loop and wait for it."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(10)

    async def _release_held(self) -> None:
        assert self._release is not None
        self._release.set()
        # The next stall waits again.
        self._release = asyncio.Event()

    async def _close_port(self, seconds: float) -> None:
        assert self._site is not None and self._runner is not None
        await self._site.stop()
        self._site = None
        assert self._loop is not None
        self._loop.create_task(self._reopen(seconds))

    async def _reopen(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await self._site.start()

    async def _send_message(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        with self._lock:
            refusing, down = at < self._refuse_until, at < self._down_until
        if refusing:
            self._record(at, NO_ANSWER)
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()  # never reaches the client: its connection is gone
        if request.match_info["token"] != self.token:
            return self._answer(at, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        try:
            payload = await request.json()
        except ValueError:
            return self._answer(at, 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid JSON"})
        if down:
            status = self._down_status
            return self._answer(at, status, {"ok": False, "error_code": status, "description": f"Error {status}"})
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            planned = self._planned.popleft() if self._planned else None
        if planned is not None and planned.kind == "answer":
            return self._answer(at, planned.status, planned.body, planned.headers)
        if planned is not None and planned.kind == "stall":
            self._record(at, NO_ANSWER)
            assert self._release is not None
            await self._release.wait()
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        if planned is not None and planned.kind == "trickle":
            return await self._trickle(request, at, planned.every)
        if planned is not None and planned.kind == "oversize":
            pad = "x" * max(0, planned.size - 60)
            return self._answer(at, 200, {"ok": True, "result": {"message_id": 0, "text": pad}})
        chat_id, text = str(payload.get("chat_id")), payload.get("text")
        if chat_id not in self.chats:
            return self._answer(at, 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
        if (
            not isinstance(text, str)
            or not text
            or len(text) > 4096
            or payload.get("disable_web_page_preview") is not True
        ):
            return self._answer(at, 400, {"ok": False, "error_code": 400, "description": "Bad Request: bad message"})
        with self._lock:
            self.received.append(Received(chat_id, text, at))
            message_id = len(self.received)
        return self._answer(at, 200, {"ok": True, "result": {"message_id": message_id, "text": text}})

    async def _trickle(self, request: web.Request, at: float, every: float) -> web.StreamResponse:
        self._record(at, 200)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        release = self._release
        assert release is not None
        try:
            await response.write(b'{"ok": true, "result": {"text": "')
            while not release.is_set():
                await response.write(b"x")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), every)
        except (ConnectionError, RuntimeError):
            pass  # the client gave up: what the trickle is for
        if request.transport is not None:
            request.transport.close()
        return response

    def _record(self, at: float, status: int) -> None:
        with self._lock:
            self.requests.append(Request(at, status))

    def _answer(
        self, at: float, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        self._record(at, status)
        return web.json_response(body, status=status, headers=headers)

    def start(self) -> TelegramStandIn:
        """Start serving; returns self."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._release = asyncio.Event()
            app = web.Application()
            app.router.add_post("/bot{token}/sendMessage", self._send_message)
            self.updates.bind(asyncio.get_running_loop())
            app.router.add_route("*", "/bot{token}/getUpdates", self.updates.handle)
            # The access log would print each request path, token included (the real Telegram logs are not ours).
            # A short shutdown: stalled and trickling requests are released by stop(), not waited for a minute.
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await self._runner.setup()
            self._site = web.TCPSite(self._runner, HOST, 0, reuse_address=True)
            await self._site.start()
            self.port = self._runner.addresses[0][1]

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            ready.set()
            self._loop.run_forever()
            assert self._runner is not None
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="telegram-stand-in", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Telegram stand-in did not start")
        return self

    def stop(self) -> None:
        """Release held requests, stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            if self._release is not None:
                self._loop.call_soon_threadsafe(self._release.set)
            self.updates.release()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
