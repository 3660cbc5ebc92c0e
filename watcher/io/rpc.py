"""JSON-RPC transports: async HTTP with a total deadline, a body cap and checked ids; an in-process chain for tests."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Sequence
from typing import Any

import aiohttp
from web3 import Web3

from watcher.io.http import BadJson, TooLarge, loads, read_capped

#: Default cap on one JSON-RPC answer (bytes): a 50M-gas eth_call returns at most ~5 MB (memory gas), ~10 MB as hex.
DEFAULT_MAX_RESPONSE_BYTES = 16_000_000


class ChainError(Exception):
    """A chain could not be read: unreachable RPC, wrong chain id, or an answer that makes no sense."""


class RpcError(ChainError):
    """A JSON-RPC node answered with an error object."""


class RateLimited(ChainError):
    """The node asked us to slow down (HTTP 429 or a JSON-RPC rate-limit error)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AnswerTooLarge(ChainError):
    """The node's answer passed max_response_bytes: refused unread (a log query may be split; a batch never is)."""


#: JSON-RPC error codes and words providers use for "too many requests".
_RATE_LIMIT_CODES = {-32005, -32029, 429}
_RATE_LIMIT_WORDS = re.compile(r"rate.?limit|too many requests|exceeded .*(quota|capacity|requests)", re.IGNORECASE)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare from RPC providers; the default cooldown applies


def _result(method: str, answer: Any) -> Any:
    """The result of one JSON-RPC answer object, or the error it carries."""
    if not isinstance(answer, dict):
        raise ChainError("answer is not a JSON-RPC object")
    if "error" in answer:
        err = answer["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        code = err.get("code") if isinstance(err, dict) else None
        if code in _RATE_LIMIT_CODES or _RATE_LIMIT_WORDS.search(str(msg)):
            raise RateLimited(f"{method}: rate limited: {str(msg)[:200]}", None)
        raise RpcError(f"{method}: {str(msg)[:300]}")
    if "result" not in answer:
        raise ChainError("answer has no result")
    return answer["result"]


class HttpTransport:
    """JSON-RPC over HTTP (aiohttp, kept-alive) where each request has one deadline for all of it.

    The deadline covers connecting, sending, the headers and the whole body, so a node that trickles its answer a
    byte at a time fails in `timeout` seconds like one that never answers. Answers over `max_response_bytes` are
    refused as they arrive, and an answer whose id is not the request's is refused as a lie.
    """

    def __init__(self, url: str, timeout: float = 10.0, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.url = url
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # a session belongs to one event loop: `watcher check` and the tests run one loop per check
            self._session = aiohttp.ClientSession(headers={"Content-Type": "application/json"})
            self._loop = loop
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (its connections) if it belongs to the running loop."""
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()

    async def _post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().post(self.url, data=body) as resp:
                    if resp.status == 429:
                        after = _retry_after(resp.headers.get("Retry-After"))
                        shown = after if after is not None else "-"
                        raise RateLimited(f"rate limited (HTTP 429, Retry-After {shown})", after)
                    if resp.status != 200:
                        raise ChainError(f"HTTP {resp.status}")
                    raw = await read_capped(resp, self.max_response_bytes)
        except TimeoutError:
            raise ChainError(f"no whole answer within {self.timeout:g} s (timeout)") from None
        except TooLarge as exc:
            raise AnswerTooLarge(str(exc)) from None
        except aiohttp.ClientError as exc:
            # aiohttp's texts name the URL, whose path may hold an API key: the type alone is reported
            raise ChainError(f"connection failed ({type(exc).__name__})") from None
        try:
            return loads(raw)
        except BadJson as exc:
            raise ChainError(f"answer is not JSON ({exc})") from None

    async def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; RpcError for an error answer, ChainError for a bad, late or foreign answer."""
        rid = next(self._ids)
        answer = await self._post({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if isinstance(answer, dict) and answer.get("id") != rid and "error" not in answer:
            raise ChainError(f"{method}: the answer carries id {str(answer.get('id'))[:20]}, not the request's {rid}")
        return _result(method, answer)

    async def request_many(self, requests: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one HTTP request (a JSON-RPC batch); answers in request order, matched by id."""
        first = next(self._ids)
        ids = list(range(first, first + len(requests)))
        self._ids = itertools.count(first + len(requests))
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, requests, strict=True)
        ]
        answer = await self._post(payload)
        if isinstance(answer, dict):
            # a node that refuses batches (some public RPCs) answers with one error object: ask one by one rather
            # than leave every chain with a storage read unreadable behind it
            return [await self.request(m, p) for m, p in requests]
        if not isinstance(answer, list) or len(answer) != len(requests):
            raise ChainError("a JSON-RPC batch answer has the wrong shape")
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        if set(by_id) != set(ids):
            raise ChainError("a JSON-RPC batch answer has missing or foreign ids")
        return [_result(m, by_id[i]) for i, (m, _) in zip(ids, requests, strict=True)]


class Web3Transport:
    """An in-process chain (eth-tester) behind the same interface; its calls run on the loop (tests only)."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    async def close(self) -> None:
        """Nothing to release."""

    async def request(self, method: str, params: list[Any]) -> Any:
        """The few methods a check needs."""
        return self._request(method, params)

    def _request(self, method: str, params: list[Any]) -> Any:
        w3 = self.w3
        if method == "eth_chainId":
            return hex(w3.eth.chain_id)
        if method == "eth_blockNumber":
            return hex(w3.eth.block_number)
        if method == "eth_getBlockByNumber":
            b = w3.eth.get_block(params[0])
            return {"number": hex(b["number"]), "hash": "0x" + bytes(b["hash"]).hex(), "timestamp": hex(b["timestamp"])}
        if method == "eth_getLogs":
            raw = w3.eth.get_logs(params[0])
            return [
                {
                    "topics": ["0x" + bytes(t).hex() for t in log["topics"]],
                    "data": "0x" + bytes(log["data"]).hex(),
                    "blockNumber": hex(log["blockNumber"]),
                }
                for log in raw
            ]
        if method == "eth_getStorageAt":
            address, slot, block = params
            tester = getattr(w3.provider, "ethereum_tester", None)
            if tester is not None:  # web3 hands eth-tester a hex block number, which it refuses
                value = tester.get_storage_at(address, slot, int(block, 16))
            else:
                value = w3.eth.get_storage_at(address, int(slot, 16), block_identifier=int(block, 16))
            return (
                "0x" + bytes.fromhex(value[2:] if isinstance(value, str) else bytes(value).hex()).rjust(32, b"\0").hex()
            )
        if method == "eth_call":
            tx, block = params
            try:
                return "0x" + bytes(w3.eth.call(tx, block_identifier=int(block, 16))).hex()
            except Exception as exc:
                raise RpcError(f"eth_call: execution reverted: {exc}") from None
        raise ChainError(f"unsupported method {method}")

    async def request_many(self, requests: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """The calls one after another (in process, there is no round trip to save)."""
        return [self._request(m, p) for m, p in requests]


Transport = HttpTransport | Web3Transport
