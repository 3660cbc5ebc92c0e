"""JSON over HTTP for the off-chain venues: every transport, status or JSON problem becomes a ReadError."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from watcher.adapters.base import ReadError

#: JSON nesting allowed in an answer: real ones nest a few levels; a deeply nested body would overflow the C stack in
#: json.loads (a segfault, not an exception, once eth-tester/py_ecc raise the recursion limit to 100,000)
MAX_JSON_DEPTH = 64
_BRACKETS = re.compile(r"[\[\]{}]")


def parse_json(text: str, where: str) -> Any:
    """The JSON value of an answer, or a ReadError naming `where` (venue, request and URL)."""
    depth = 0
    for bracket in _BRACKETS.findall(text):  # brackets inside strings count too: that only makes the bound stricter
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise ReadError(f"{where}: malformed JSON: nested deeper than {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ReadError(f"{where}: malformed JSON: {exc}") from exc


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
) -> Any:
    """One request answered with JSON; None for a 404 when `missing_ok` (e.g. a subaccount never used)."""
    where = f"{venue}: {what} from {url}"
    try:
        async with session.request(method, url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            text = await resp.text()
            if resp.status == 404 and missing_ok:
                return None
            if resp.status == 429:
                retry = resp.headers.get("Retry-After", "not given")
                raise ReadError(f"{venue}: {what}: HTTP 429 rate limited (Retry-After: {retry}) from {url}")
            if resp.status != 200:
                raise ReadError(f"{venue}: {what}: HTTP {resp.status} from {url}: {text[:200]}")
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ReadError(f"{venue}: {what}: {type(exc).__name__} from {url}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ReadError(f"{where}: malformed JSON: not UTF-8: {exc}") from exc
    return parse_json(text, where)
