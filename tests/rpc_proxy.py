"""A hostile JSON-RPC proxy on 127.0.0.1 in front of anvil: the faults public nodes produce, switched at run time.

Modes (`RpcProxy.set_mode`): pass; trickle (the answer one byte every `every` seconds); stall (read the request,
never answer); oversize (a `size`-byte answer); pad (the real answer padded with JSON whitespace to `size` bytes, so
it stays valid); wrong_id (the real answer with other ids, single and batch); chain_switch (everything, eth_chainId
too, goes to the second upstream); stuck_head (the head frozen as it was when the mode was set); lag (the head
`blocks` behind the upstream's); delay (the real answer after `every` seconds: a healthy, distant node);
wrong_block (eth_call answered from the block before the one asked, for the next `times` calls or for ever); down
(connections refused, or HTTP 503 with how="503"). `only` limits a fault to requests carrying one of those methods,
`spare` exempts methods, and `carrying` limits it to bodies holding a text (a call's selector); the others pass. Every
request's methods are counted. Nothing runs unbounded: a long answer (trickle, stall, oversize) ends when the mode
changes or the proxy stops.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
Mode = Literal[
    "pass",
    "delay",
    "wrong_block",
    "trickle",
    "stall",
    "oversize",
    "pad",
    "wrong_id",
    "chain_switch",
    "stuck_head",
    "lag",
    "down",
]
#: block tags that mean "your head"; a stuck or lagging node answers them with its own (old) head
_HEAD_TAGS = {"latest", "pending", "safe", "finalized"}
#: methods whose last parameter is a block (number, tag or EIP-1898 object)
_AT_BLOCK = {"eth_call", "eth_getStorageAt", "eth_getBalance", "eth_getCode", "eth_getTransactionCount"}
#: the offset added to ids in wrong_id mode: never an id a client sent in the same batch
_ID_SHIFT = 1_000_003


@dataclass(frozen=True)
class Setting:
    """One mode with its parameters; `generation` tells answers still running under an older one to end."""

    mode: Mode = "pass"
    every: float = 2.0  #: trickle: seconds between bytes
    size: int = 50_000_000  #: oversize and pad: bytes in the answer
    chunked: bool = True  #: oversize: no Content-Length, so only counting the bytes read finds the size
    blocks: int = 0  #: lag: blocks behind the upstream head
    how: str = "refuse"  #: down: "refuse" (listening socket closed), "503", "429" (Retry-After a day) or "reset"
    only: frozenset[str] | None = None  #: the fault applies only to requests with one of these methods
    spare: frozenset[str] = frozenset()  #: ... and never to requests made of these methods alone
    carrying: str | None = None  #: ... and only to requests whose body holds this text (a selector's hex, say)
    frozen: int | None = None  #: stuck_head: the head block number when the mode was set
    times: int | None = None  #: wrong_block: how many eth_call requests it applies to (None: all)
    generation: int = 0
    since: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Seen:
    """One JSON-RPC method seen (a batch counts each item), with its monotonic arrival time and the mode then."""

    at: float
    method: str
    mode: str


class RpcProxy:
    """The proxy: an aiohttp server in its own thread and event loop; use as a context manager."""

    def __init__(self, upstream: str, alt_upstream: str | None = None, path: str = "/") -> None:
        self.upstream = upstream
        self.alt_upstream = alt_upstream
        self.path = path  #: the URL's path (a provider puts its API key there); the proxy answers on any path
        self.setting = Setting()
        self.seen: list[Seen] = []
        self.sent_bytes: list[int] = []  #: oversize: bytes actually written per answer before it ended
        #: wrong_block: per setting, eth_call requests still to answer from the wrong block
        self._wrong_left: dict[int, int | None] = {}
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._changed: asyncio.Event | None = None  #: set (and replaced) at every mode change and at stop

    # --- the test's side (any thread)

    @property
    def url(self) -> str:
        """The URL to put in chains.<name>.rpc_urls."""
        return f"http://{HOST}:{self.port}{self.path}"

    def set_mode(self, mode: Mode, **params: Any) -> Setting:
        """Switch to `mode` now; answers still running under the previous mode end. Returns the new setting."""
        for key in ("only", "spare"):
            if key in params and params[key] is not None:
                params[key] = frozenset(params[key])
        if mode == "chain_switch" and self.alt_upstream is None:
            raise ValueError("chain_switch needs an alt_upstream")
        if mode == "stuck_head":
            params.setdefault("frozen", self._call(self._upstream_head(self.upstream)))
        with self._lock:
            previous = self.setting
            self.setting = Setting(mode, generation=previous.generation + 1, **params)
        down_before = previous.mode == "down" and previous.how == "refuse"
        down_now = mode == "down" and self.setting.how == "refuse"
        if down_now and not down_before:
            self._call(self._close_site())
        elif down_before and not down_now:
            self._call(self._open_site(self.port))
        self._call(self._bump())
        return self.setting

    def clear(self) -> Setting:
        """Back to pass."""
        return self.set_mode("pass")

    def count(self, method: str, since: float | None = None) -> int:
        """How many times `method` was asked (batch items included), optionally since a monotonic time."""
        with self._lock:
            return sum(1 for s in self.seen if s.method == method and (since is None or s.at >= since))

    def counts(self, since: float | None = None) -> Counter[str]:
        """Requests per method, optionally since a monotonic time."""
        with self._lock:
            return Counter(s.method for s in self.seen if since is None or s.at >= since)

    def start(self) -> RpcProxy:
        """Start serving on a free port; returns self."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._changed = asyncio.Event()
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            # a short shutdown: answers still trickling or stalled are cut, not waited for a minute
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            await self._open_site(0)

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="rpc-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the RPC proxy did not start")
        return self

    def stop(self) -> None:
        """Stop serving (every running answer ends) and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> RpcProxy:
        """Start the proxy."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the proxy."""
        self.stop()

    # --- the loop's side

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    async def _bump(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    async def _open_site(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, HOST, port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1] if port == 0 else port

    async def _close_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _shutdown(self) -> None:
        await self._bump()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _wait_change(self, event: asyncio.Event, seconds: float | None) -> bool:
        """Wait up to `seconds` (None: for ever); True when the mode changed or the proxy is stopping."""
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _post(self, url: str, body: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        async with self._session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, await resp.read()

    async def _upstream_head(self, url: str) -> int:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
        return int(json.loads((await self._post(url, body))[1])["result"], 16)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        s = self.setting
        event = self._changed
        assert event is not None
        try:
            doc: Any = json.loads(body)
        except ValueError:
            doc = None
        items = doc if isinstance(doc, list) else [doc]
        methods = [str(i.get("method")) if isinstance(i, dict) else "?" for i in items]
        now = time.monotonic()
        with self._lock:
            self.seen.extend(Seen(now, m, s.mode) for m in methods)
        applies = (s.only is None or any(m in s.only for m in methods)) and not all(m in s.spare for m in methods)
        applies = applies and (s.carrying is None or s.carrying.encode() in body)
        mode = s.mode if applies else "pass"
        if mode == "down":
            if s.how == "503":
                return web.Response(status=503, text="Service Unavailable")
            if s.how == "429":  # a provider's rate limit asking for a day's rest
                return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "86400"})
            return self._abort(request)  # a kept-alive connection of a refusing node: reset
        if mode == "stall":
            await self._wait_change(event, None)
            return self._abort(request)
        if mode == "oversize":
            return await self._oversize(request, items, isinstance(doc, list), s, event)
        if mode == "delay":
            await self._wait_change(event, s.every)
        if mode == "wrong_block" and "eth_call" in methods:
            with self._lock:
                left = self._wrong_left.get(s.generation, s.times)
                if left is not None:
                    self._wrong_left[s.generation] = left - 1
            if left is None or left > 0:
                body = json.dumps(_earlier_calls(doc)).encode()
        if mode in ("stuck_head", "lag") and doc is not None:
            head = s.frozen if mode == "stuck_head" else await self._upstream_head(self.upstream) - s.blocks
            assert head is not None
            status, answer = 200, json.dumps(await self._at_head(doc, max(head, 0))).encode()
        else:
            target = self.alt_upstream if mode == "chain_switch" and self.alt_upstream else self.upstream
            status, answer = await self._post(target, body)
        if mode == "wrong_id":
            answer = _shift_ids(answer)
        elif mode == "pad":
            answer = answer + b" " * max(0, s.size - len(answer))
        elif mode == "trickle":
            return await self._trickle(request, status, answer, s, event)
        return web.Response(status=status, body=answer, content_type="application/json")

    def _abort(self, request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)  # never reaches the client: its connection is gone

    async def _trickle(
        self, request: web.Request, status: int, answer: bytes, s: Setting, event: asyncio.Event
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        resp.content_length = len(answer)
        await resp.prepare(request)
        try:
            for k in range(len(answer)):
                await resp.write(answer[k : k + 1])
                if k + 1 < len(answer) and await self._wait_change(event, s.every):
                    return self._abort(request)
            await resp.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client gave up: that is what its deadline is for
        return resp

    async def _oversize(
        self, request: web.Request, items: list[Any], batch: bool, s: Setting, event: asyncio.Event
    ) -> web.StreamResponse:
        first = items[0] if items and isinstance(items[0], dict) else {}
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(first.get("id", 1)).encode() + b',"result":"0x'
        tail = b'"}'
        if batch:
            head, tail = b"[" + head, tail + b"]"
        digits = max(0, s.size - len(head) - len(tail))
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        if not s.chunked:
            resp.content_length = len(head) + digits + len(tail)
        await resp.prepare(request)
        sent = 0
        chunk = b"0" * (1 << 20)
        try:
            await resp.write(head)
            sent += len(head)
            left = digits
            while left > 0:
                if event.is_set():
                    return self._abort(request)
                piece = chunk if left >= len(chunk) else chunk[:left]
                await resp.write(piece)
                sent += len(piece)
                left -= len(piece)
            await resp.write(tail)
            sent += len(tail)
            await resp.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client refused the rest: the behaviour under test
        finally:
            with self._lock:
                self.sent_bytes.append(sent)
        return resp

    async def _at_head(self, doc: Any, head: int) -> Any:
        """The answer of a node whose head is `head`: head tags read as it, later blocks are unknown to it."""
        items = doc if isinstance(doc, list) else [doc]
        answers: list[Any] = [None] * len(items)
        forward: list[tuple[int, dict[str, Any]]] = []
        for k, item in enumerate(items):
            if not isinstance(item, dict):
                answers[k] = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
                continue
            rid, method, params = item.get("id"), item.get("method"), list(item.get("params") or [])
            if method == "eth_blockNumber":
                answers[k] = {"jsonrpc": "2.0", "id": rid, "result": hex(head)}
                continue
            if method == "eth_getBlockByNumber" and params:
                number = _block_of(params[0], head)
                if number is None or number > head:
                    answers[k] = {"jsonrpc": "2.0", "id": rid, "result": None}
                    continue
                params[0] = hex(number)
            elif method in _AT_BLOCK and params:
                number = _block_of(params[-1], head)
                if number is not None and number > head:
                    answers[k] = {"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": "header not found"}}
                    continue
                if number is not None:
                    params[-1] = hex(number)
            elif method == "eth_getLogs" and params and isinstance(params[0], dict):
                query = dict(params[0])
                lo = _block_of(query.get("fromBlock", "earliest"), head)
                hi = _block_of(query.get("toBlock", "latest"), head)
                if lo is not None and lo > head:
                    answers[k] = {"jsonrpc": "2.0", "id": rid, "result": []}
                    continue
                if hi is not None:
                    query["toBlock"] = hex(min(hi, head))
                params[0] = query
            forward.append((k, {**item, "params": params}))
        if forward:
            status, raw = await self._post(self.upstream, json.dumps([f for _, f in forward]).encode())
            got = json.loads(raw) if status == 200 else None
            by_id = {a.get("id"): a for a in got if isinstance(a, dict)} if isinstance(got, list) else {}
            for k, f in forward:
                answers[k] = by_id.get(
                    f.get("id"), {"jsonrpc": "2.0", "id": f.get("id"), "error": {"code": -32603, "message": "upstream"}}
                )
        return answers if isinstance(doc, list) else answers[0]


def _earlier_calls(doc: Any) -> Any:
    """The request with every eth_call's block one earlier (a node answering from the block before)."""
    items = doc if isinstance(doc, list) else [doc]
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("method") == "eth_call" and item.get("params"):
            params = list(item["params"])
            number = _block_of(params[-1], 0)
            if number:
                params[-1] = hex(number - 1)
            item = {**item, "params": params}
        out.append(item)
    return out if isinstance(doc, list) else out[0]


def _block_of(value: Any, head: int) -> int | None:
    """A block parameter as a number (head tags are `head`); None for a block hash or something unknown."""
    if isinstance(value, dict):
        value = value.get("blockNumber")
    if isinstance(value, str):
        if value in _HEAD_TAGS:
            return head
        if value == "earliest":
            return 0
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


def _shift_ids(answer: bytes) -> bytes:
    """The same answer with every JSON-RPC id changed (numbers shifted, strings suffixed)."""
    try:
        doc = json.loads(answer)
    except ValueError:
        return answer

    def shifted(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        rid = item.get("id")
        new = rid + _ID_SHIFT if isinstance(rid, int) else f"{rid}-other" if isinstance(rid, str) else _ID_SHIFT
        return {**item, "id": new}

    return json.dumps([shifted(i) for i in doc] if isinstance(doc, list) else shifted(doc)).encode()


def mode_names() -> Iterable[str]:
    """Every mode the proxy knows."""
    return Mode.__args__  # type: ignore[attr-defined]


__all__ = ["RpcProxy", "Seen", "Setting", "mode_names"]
