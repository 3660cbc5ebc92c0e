"""JSON over HTTP for the off-chain venues: every transport, status or JSON problem becomes a ReadError."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp

from watcher.adapters.base import ReadError
from watcher.io.http import BadJson, TooLarge, loads, read_capped

#: Default cap on one venue answer, in bytes.
DEFAULT_MAX_BYTES = 8_000_000


async def all_answers(*requests: Any) -> list[Any]:
    """Await the requests together; on the first failure cancel the others and raise it.

    One failed answer already makes the read unknown, so the rest are not left to run to their own deadline and cap
    (a venue flooding every request would otherwise cost their sum in memory).
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(r) for r in requests]
    except BaseExceptionGroup as grouped:
        raise grouped.exceptions[0] from None
    return [t.result() for t in tasks]


def parse_json(text: str, where: str) -> Any:
    """The JSON value of an answer, or a ReadError naming `where` (venue, request and URL)."""
    try:
        return loads(text.encode())
    except BadJson as exc:
        raise ReadError(f"{where}: {exc}") from exc


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    venue: str,
    what: str,
    timeout: float,
    body: Mapping[str, Any] | None = None,
    missing_ok: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Any:
    """One request answered with JSON; None for a 404 when `missing_ok` (e.g. a subaccount never used)."""
    where = f"{venue}: {what} from {url}"
    try:
        # one deadline for all of it: a venue that trickles its answer fails like one that never answers
        async with asyncio.timeout(timeout), session.request(method, url, json=body) as resp:
            raw = await read_capped(resp, max_bytes)
            if resp.status == 404 and missing_ok:
                return None
            if resp.status == 429:
                retry = resp.headers.get("Retry-After", "not given")
                raise ReadError(f"{venue}: {what}: HTTP 429 rate limited (Retry-After: {retry}) from {url}")
            if resp.status != 200:
                text = raw[:200].decode("utf-8", "replace")
                raise ReadError(f"{venue}: {what}: HTTP {resp.status} from {url}: {text}")
    except TimeoutError:
        raise ReadError(f"{venue}: {what}: no whole answer within {timeout:g} s (timeout) from {url}") from None
    except TooLarge as exc:
        raise ReadError(f"{venue}: {what}: {exc} from {url}") from None
    except aiohttp.ClientError as exc:
        raise ReadError(f"{venue}: {what}: {type(exc).__name__} from {url}: {exc}") from exc
    try:
        return loads(raw)
    except BadJson as exc:
        raise ReadError(f"{where}: {exc}") from None
