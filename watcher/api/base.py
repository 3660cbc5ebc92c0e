"""Shared pieces of the API: app keys, limits, JSON answers, errors and parameter parsing."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from eth_utils import is_hex_address, to_checksum_address

from watcher.model import Level
from watcher.store import Store

log = logging.getLogger("watcher.api")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE: web.AppKey[Store] = web.AppKey("store", Store)
SETTINGS: web.AppKey[dict[str, Any]] = web.AppKey("settings", dict)
LEVELS = tuple(level.word for level in Level)
MAX_LIMIT = 1000
MAX_SILENCE_DAYS = 366  #: a silence ends within this many days: a later `until` is almost surely milliseconds
MAX_BODY = 64 * 1024  #: bytes a request body may have (a silence is a few hundred)
#: Whole numbers and unix seconds in parameters: ASCII digits only (str.isdigit and float() take '²', '١٢', '1_0').
_DIGITS = re.compile(r"[0-9]{1,9}")
_SECONDS = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,9})?")


class BadRequest(web.HTTPBadRequest):
    """A 400 whose message names the bad parameter."""

    def __init__(self, message: str) -> None:
        super().__init__(text=message)


class BodyTooLarge(web.HTTPException):
    """A 413 that says how large a body may be."""

    status_code = 413

    def __init__(self, message: str) -> None:
        super().__init__(text=message)


class BodyTimeout(web.HTTPException):
    """A 408: the body did not arrive within api.body_timeout."""

    status_code = 408

    def __init__(self, message: str) -> None:
        super().__init__(text=message)


_OWN_MESSAGES = (BadRequest, BodyTooLarge, BodyTimeout)


def _json(data: Any, request: web.Request, status: int = 200) -> web.Response:
    return _raw_json(json.dumps(data), request, status)


def _raw_json(text: str, request: web.Request, status: int = 200) -> web.Response:
    for secret in request.app[SETTINGS]["secrets"]:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return web.Response(text=text, status=status, content_type="application/json")


def _error(request: web.Request, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    resp = _json({"error": {"status": status, "message": message}}, request, status)
    resp.headers.update(headers or {})
    return resp


# --- parameters


def _query(request: web.Request, allowed: Iterable[str]) -> dict[str, str]:
    allowed = set(allowed)
    for name in request.query:
        if name not in allowed:
            raise BadRequest(f"unknown query parameter {name!r} (allowed: {', '.join(sorted(allowed))})")
    return {k: _text(v, k) for k, v in request.query.items()}


def _text(value: str, name: str) -> str:
    """A text parameter SQLite can bind: a JSON "\\ud800" escape gives a lone surrogate, which has no UTF-8."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadRequest(f"{name}: not valid UTF-8") from None
    return value


def _show(value: Any) -> str:
    """A bad value, short, for an error message (str() of a huge integer would be slow or fail)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit number"
    return repr(str(value)[:40]) if isinstance(value, str) else str(value)[:40]


def parse_time(value: Any, name: str) -> float:
    """Unix seconds or ISO-8601 (UTC unless an offset is given); a 400 naming `name` otherwise."""
    if isinstance(value, str):
        if _SECONDS.fullmatch(value):
            return float(value)
        if len(value) <= 64 and value.isascii():
            try:
                return _iso(value)
            except (ValueError, OverflowError):
                pass
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) <= 10**18:
            return float(value)
    elif isinstance(value, float) and math.isfinite(value):
        return value
    raise BadRequest(f"{name}: {_show(value)} is not unix seconds nor an ISO-8601 time")


def _iso(value: str) -> float:
    dt = datetime.fromisoformat(value)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _account(value: str, name: str = "account") -> str:
    if not is_hex_address(value):
        raise BadRequest(f"{name}: {value[:60]!r} is not a 20-byte hex address")
    return to_checksum_address(value)


def check_silence_until(
    until: float, now: float, shown: str, name: str = "until", hint: str = "; send unix seconds, not milliseconds"
) -> None:
    """A silence's end must be ahead and within MAX_SILENCE_DAYS (the API and Telegram's /mute share this rule)."""
    if until <= now:
        raise BadRequest(f"{name}: must be in the future")
    if until - now > MAX_SILENCE_DAYS * 86400:
        raise BadRequest(f"{name}: {shown} is more than {MAX_SILENCE_DAYS} days ahead{hint}")


def position_id(value: str, name: str = "id") -> str:
    """A position id as stored: `deployment:chain:account[:market]`, with a hex account in its checksum case."""
    parts = _text(value, name).split(":")
    # ids are stored with the EIP-55 address; a user pasting it lower case (as explorers print it) means the same one
    if len(parts) >= 3 and is_hex_address(parts[2]):
        parts[2] = to_checksum_address(parts[2])
    return ":".join(parts)


def whole_number(raw: str, name: str, lo: int, hi: int) -> int:
    """A parameter that must be a whole number from lo to hi, in ASCII digits; a 400 naming `name` otherwise."""
    if not _DIGITS.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name}: {raw[:20]!r} is not a whole number from {lo} to {hi}")
    return int(raw)


def _limit(q: dict[str, str], default: int = 100) -> int:
    return whole_number(q["limit"], "limit", 1, MAX_LIMIT) if "limit" in q else default


def _finite(t: Any) -> float | None:
    """A stored time as a float, or None for anything else (NULL, inf, a string from an older version)."""
    if isinstance(t, int | float) and not isinstance(t, bool):
        with contextlib.suppress(OverflowError):
            if math.isfinite(t):
                return float(t)
    return None


def _iso_of(t: Any) -> str | None:
    """ISO-8601 of a stored time; None when it is none, or beyond what a date can say (year 10000 on)."""
    t = _finite(t)
    if t is None:
        return None
    try:
        return datetime.fromtimestamp(t, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _health(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {"health_raw": None, "health": None}
    return {"health_raw": int(raw), "health": str(Decimal(int(raw)).scaleb(-18).normalize())}
