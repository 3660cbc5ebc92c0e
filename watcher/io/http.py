"""Reading an HTTP answer within a size cap, and parsing JSON whose nesting is bounded."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

#: JSON nesting allowed in an answer: real ones nest a few levels; a deeply nested body would overflow the C stack in
#: json.loads (a segfault, not an exception, once eth-tester/py_ecc raise the recursion limit to 100,000)
MAX_JSON_DEPTH = 64
#: every byte but the brackets, which become ( and ): what is left of a body is its nesting, in C-speed bytes ops
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_TO_PARENS = bytes.maketrans(b"[]{}", b"()()")


class TooLarge(Exception):
    """An answer longer than the cap: refused before it fills memory."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer passed {limit:,} bytes (the configured max_response_bytes)")
        self.limit = limit


class BadJson(ValueError):
    """An answer that is not JSON, not UTF-8, or nested too deep."""


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or TooLarge as soon as it passes `limit` bytes (a declared length over it is refused unread)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise TooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(min(1 << 20, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)


def loads(body: bytes) -> Any:
    """Parse a JSON body; BadJson for anything that is not UTF-8 JSON of bounded depth."""
    # Brackets inside strings count too: that only makes the bound stricter. Each pass drops every innermost pair,
    # so the nesting falls by at least one a pass: anything left after MAX_JSON_DEPTH passes is deeper (or
    # unbalanced, which json.loads would refuse anyway). A flat body of 16 MB takes two passes, not a Python loop.
    nest = body.translate(_TO_PARENS, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        if not nest:
            break
        shorter = nest.replace(b"()", b"")
        if len(shorter) == len(nest):
            break
        nest = shorter
    else:
        if nest:
            raise BadJson(f"malformed JSON: nested deeper than {MAX_JSON_DEPTH}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"malformed JSON: not UTF-8: {exc}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadJson(f"malformed JSON: {exc}") from None
