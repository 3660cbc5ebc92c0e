"""New heads of one chain: `eth_subscribe("newHeads")` over a WebSocket when one is configured, else a cheap poll.

A chain's checks wait on `HeadFollower.wait()`: it returns as soon as a head newer than the last one handed out has
been seen (several heads seen during a check give one wake-up: checks coalesce), or when the fallback time is up. The
follower never decides health: a dead WebSocket or a failing poll only means the checks fall back to their interval,
where the check itself finds and reports what is wrong with the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp

from watcher.chain import ChainClient, ChainError

log = logging.getLogger("watcher")

#: seconds between WebSocket reconnection attempts: doubled from the first up to the last
WS_RETRY = (1.0, 30.0)


class HeadFollower:
    """Follows one chain's heads and wakes its checks; run() is its task, wait() what a check loop awaits."""

    def __init__(
        self,
        name: str,
        client: ChainClient,
        poll: float,
        ws_url: str | None = None,
        timeout: float = 10.0,
        ws_label: str = "",
    ) -> None:
        self.name = name
        self.client = client
        self.poll = poll
        self.ws_url = ws_url
        self.timeout = timeout
        self.ws_label = ws_label or f"chains.{name}.ws_url"
        self.latest: int | None = None  #: the newest head number seen
        self.heads_seen = 0  #: distinct new heads seen (for the benchmark: checks run against heads seen)
        self._handed: int | None = None
        self._new = asyncio.Event()

    def _saw(self, number: int) -> None:
        if self.latest is None or number > self.latest:
            self.latest = number
            self.heads_seen += 1
            if self._handed is None or number > self._handed:
                self._new.set()

    async def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` s for a head newer than the last one handed out; its number, or None if none came."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new.wait(), timeout=max(0.0, timeout))
        self._new.clear()
        if self.latest is not None and (self._handed is None or self.latest > self._handed):
            self._handed = self.latest
            return self.latest
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Follow heads until `stop`: the WebSocket when configured (polling while it is down), else the poll."""
        if self.ws_url is None:
            await self._poll_until(stop, None)
            return
        ws_down = asyncio.Event()
        ws_down.set()
        poller = asyncio.create_task(self._poll_until(stop, ws_down))
        try:
            await self._follow_ws(stop, ws_down)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _poll_until(self, stop: asyncio.Event, only_while: asyncio.Event | None) -> None:
        """eth_blockNumber every `poll` s (only while `only_while` is set, when given)."""
        while not stop.is_set():
            if only_while is not None and not only_while.is_set():
                await first_done(stop.wait(), only_while.wait())
                continue
            started = time.monotonic()
            try:
                self._saw(await self.client.latest_block())
            except ChainError:
                pass  # the check at the interval reads the node itself and reports what is wrong with it
            except Exception:
                log.exception("head poll failed", extra={"chain": self.name})
            await sleep_or_stop(stop, self.poll - (time.monotonic() - started))

    async def _follow_ws(self, stop: asyncio.Event, ws_down: asyncio.Event) -> None:
        delay = WS_RETRY[0]
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    await self._subscribe(session, stop, ws_down)
                    delay = WS_RETRY[0]  # it worked for a while: the next drop starts the backoff again
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError, ChainError) as exc:
                    # aiohttp's texts name the URL, whose path may hold a key: the type alone is logged
                    why = exc.args[0] if isinstance(exc, ChainError) else type(exc).__name__
                    log.warning(
                        "newHeads subscription down, polling",
                        extra={"chain": self.name, "url": self.ws_label, "error": why, "retry_in": delay},
                    )
                finally:
                    ws_down.set()
                await sleep_or_stop(stop, delay)
                delay = min(WS_RETRY[1], delay * 2)

    async def _subscribe(self, session: aiohttp.ClientSession, stop: asyncio.Event, ws_down: asyncio.Event) -> None:
        assert self.ws_url is not None
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.timeout)
        async with asyncio.timeout(self.timeout):
            ws = await session.ws_connect(
                self.ws_url, timeout=timeout, heartbeat=max(1.0, self.timeout), max_msg_size=1 << 20
            )
        async with ws:
            async with asyncio.timeout(self.timeout):
                await ws.send_str(
                    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
                )
                first = await ws.receive()
                answer = _json_message(first)
                if answer.get("id") != 1 or not isinstance(answer.get("result"), str):
                    raise ChainError(f"eth_subscribe refused: {str(answer.get('error'))[:200]}")
            ws_down.clear()
            log.info("following newHeads", extra={"chain": self.name, "url": self.ws_label})
            while not stop.is_set():
                msg = await _first_value(ws.receive(), stop.wait())
                if msg is None:
                    return
                head = _json_message(msg).get("params", {}).get("result", {})
                try:
                    self._saw(int(head["number"], 16))
                except (KeyError, TypeError, ValueError):
                    raise ChainError("a newHeads notification without a block number") from None


def _json_message(msg: aiohttp.WSMessage) -> dict[str, Any]:
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise ChainError(f"the WebSocket closed or sent {msg.type.name.lower()}")
    doc = json.loads(msg.data)
    if not isinstance(doc, dict):
        raise ChainError("a WebSocket message that is not a JSON object")
    return doc


async def first_done(*aws: Any) -> None:
    """Wait until the first of these awaitables is done; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def _first_value(receive: Any, stopped: Any) -> Any:
    """The message `receive` gives, or None if `stopped` ends first."""
    got = asyncio.ensure_future(receive)
    halt = asyncio.ensure_future(stopped)
    try:
        done, _ = await asyncio.wait({got, halt}, return_when=asyncio.FIRST_COMPLETED)
        return got.result() if got in done else None
    finally:
        got.cancel()
        halt.cancel()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
