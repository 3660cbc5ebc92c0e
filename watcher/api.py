"""The local HTTP API (aiohttp): health, positions, history, alerts, silences and Prometheus metrics over the store."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from eth_utils import is_hex_address, to_checksum_address
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from watcher.api_guard import GUARD, connections, install
from watcher.config import Config, ConfigError
from watcher.model import Level
from watcher.notify import outbox
from watcher.store import Store

log = logging.getLogger("watcher.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE: web.AppKey[Store] = web.AppKey("store", Store)
SETTINGS: web.AppKey[dict[str, Any]] = web.AppKey("settings", dict)
LEVELS = tuple(level.value for level in Level)
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


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind address other than loopback without a token: anyone on the network could read the positions."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"api.host: {host} is not a loopback address; set api.token to serve the API there")


def secrets_of(cfg: Config, token: str | None) -> list[str]:
    """Every secret value the config can reach, to scrub from responses whatever path they took."""
    out = [token] if token else []
    for name, chain in cfg.chains.items():
        with contextlib.suppress(ConfigError):  # an unset variable holds no secret to leak
            out.extend(chain.urls(name))
    refs = []
    if cfg.notify.telegram is not None:
        refs.append(cfg.notify.telegram.token)
    if cfg.notify.email is not None and cfg.notify.email.password is not None:
        refs.append(cfg.notify.email.password)
    for ref in refs:
        with contextlib.suppress(ConfigError):
            out.append(ref.resolve("notify"))
    return [s for s in out if len(s) >= 6]


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


# --- middlewares


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a JSON body; an unexpected exception is a bare 500, logged by type only (no traceback)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if isinstance(exc, _OWN_MESSAGES) else exc.reason
        return _error(
            request, exc.status, message or exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"}
        )
    except sqlite3.OperationalError as exc:
        # Locked, unreadable, disk I/O: the state cannot be read now, which is not a bug in the request.
        log.error("api storage failed", extra={"path": request.path, "error": str(exc)[:200]})
        return _error(request, 503, f"storage unavailable ({str(exc)[:200]})")
    except Exception as exc:
        log.error("api handler failed", extra={"path": request.path, "error": type(exc).__name__})
        return _error(request, 500, "internal error")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """DNS rebinding (Host must name the bind address) and the bearer token for writes and non-loopback binds."""
    settings = request.app[SETTINGS]
    if settings["hosts"] is not None and request.headers.get("Host", "").lower() not in settings["hosts"]:
        return _error(request, 421, "Host header does not match the API's address")
    token = settings["token"]
    if request.method not in ("GET", "HEAD") or settings["token_for_reads"]:
        if token is None:
            return _error(request, 403, "writes need api.token to be configured")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _error(request, 401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
    return await handler(request)


@web.middleware
async def bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read any request body whole, at most MAX_BODY bytes within api.body_timeout, before a handler sees it."""
    if request.can_read_body:
        limit = request.client_max_size
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"body: {request.content_length} bytes is more than the {limit} allowed")
        timeout = request.app[SETTINGS]["limits"]["body_timeout"]
        try:
            async with asyncio.timeout(timeout):
                await request.read()  # kept by aiohttp: request.json() parses these bytes
        except TimeoutError:
            raise BodyTimeout(f"body: not received within {timeout:g} s (api.body_timeout)") from None
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(f"body: more than the {limit} bytes allowed") from None
    return await handler(request)


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


# --- freshness: a dead or hung daemon must never read as healthy


def _bounds(cfg: Config) -> dict[str, float]:
    """Seconds without a good read after which each watched chain and venue counts as degraded.

    Only chains the daemon reads (some account has a position to read there): a configured chain no account uses is
    never checked, and must not read as stale forever.
    """
    from watcher.check import build

    watched = {r.chain for r in build(cfg)}
    out = {name: chain.watchdog_after() for name, chain in cfg.chains.items() if name in watched}
    out.update({name: venue.watchdog_after() for name, venue in cfg.venues.items()})
    return out


def _stale_reason(age: float, bound: float) -> str:
    return f"no good read for {int(age)} s (stale_after {bound:g} s)"


def _freshness(settings: dict[str, Any], status: dict[str, dict[str, Any]], now: float) -> dict[str, tuple[float, str]]:
    """Per source whose last good read (else its first failure, else the API's start) is older than its bound:
    (the time before which a position's reading is too old, why)."""
    out = {}
    for name, bound in settings["bounds"].items():
        row = status.get(name)
        if row is None:
            ref = settings["started"]
        else:
            ref = _finite(row.get("last_ok"))
            if ref is None:
                ref = _finite(row.get("since"))
        # A good read "in the future" means the wall clock was stepped back since: its age is unknown, so stale.
        if ref is not None and (now - ref > bound or ref - now > bound):
            out[name] = (now - bound, _stale_reason(now - ref, bound))
    return out


def _stale_doc(text: str, chain: str, stale: dict[str, tuple[float, str]]) -> str:
    doc = json.loads(text)
    doc |= {"level": "unknown", "stale": True, "stale_reason": stale[chain][1]}
    return json.dumps(doc)


# --- handlers


def _storage(live: dict[str, Any] | None) -> dict[str, Any] | None:
    """The daemon's own report on its database writes, when it runs in this process."""
    if live is None:
        return None
    s = live.get("storage")
    s = s if isinstance(s, dict) else {}
    since = _finite(s.get("since"))
    return {
        "ok": s.get("ok", True) is not False,
        "error": str(s.get("error") or ""),
        "since": since,
        "since_iso": _iso_of(since),
    }


async def health(request: web.Request) -> web.Response:
    """The watcher's own liveness and, per chain, its last good read and lag."""
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    now = settings["clock"]()
    storage = _storage(settings["live"])
    try:
        status = store.chain_status()
        depth = outbox.depth(store.db)
    except sqlite3.Error as exc:
        # The one answer that must still come when the database cannot be read: not ok.
        doc = {
            "status": "degraded",
            "now": now,
            "storage": {**(storage or {}), "ok": False, "error": f"cannot read the database: {str(exc)[:200]}"},
        }
        return _json(doc, request, 503)
    stale = _freshness(settings, status, now)
    chains = {}
    for name in sorted(set(status) | set(settings["bounds"])):
        row = status.get(name, {})
        last_ok = _finite(row.get("last_ok"))
        degraded, reason = bool(row.get("degraded")), str(row.get("reason") or "")
        if name in stale:
            reason = f"{reason}; {stale[name][1]}" if degraded and reason else stale[name][1]
            degraded = True
        elif not row:
            reason = "no read yet"
        chains[name] = {
            "degraded": degraded,
            "stale": name in stale,
            "reason": reason,
            "since": _finite(row.get("since")),
            "last_ok": last_ok,
            "last_ok_iso": _iso_of(last_ok),
            "last_block": row.get("last_block"),
            "lag_seconds": None if last_ok is None else round(now - last_ok, 3),
            "last_check_seconds": _finite(row.get("last_check_seconds")),
            "rpc_errors": int(row.get("rpc_errors") or 0),
            "stale_after": settings["bounds"].get(name),
        }
    oks = [c["last_ok"] for c in chains.values() if c["last_ok"] is not None]
    live = settings["live"] or {}
    # A channel that fails (or gave a message up) means alerts may not reach the user: the watcher is not ok.
    notify = {name: dict(h) for name, h in (live.get("notify") or {}).items()}
    if (
        any(c["degraded"] for c in chains.values())
        or (storage is not None and not storage["ok"])
        or any(not h["ok"] for h in notify.values())
    ):
        overall = "degraded"
    elif not chains or any(name not in status for name in chains):
        overall = "starting"
    else:
        overall = "ok"
    doc = {
        "status": overall,
        "now": now,
        "last_check": max(oks) if oks else None,
        "last_check_iso": _iso_of(max(oks)) if oks else None,
        "chains": chains,
        "outbox_depth": depth,
    }
    if storage is not None:
        doc["storage"] = storage
    if notify:
        doc["notify"] = notify
    return _json(doc, request)


async def positions(request: web.Request) -> web.Response:
    """Current positions, filtered by account, protocol, chain and level; a stale source's are unknown."""
    q = _query(request, ("account", "protocol", "chain", "level"))
    store = request.app[STORE]
    stale = _freshness(request.app[SETTINGS], store.chain_status(), request.app[SETTINGS]["clock"]())
    filters: dict[str, Any] = {}
    if "account" in q:
        filters["account"] = _account(q["account"])
    for name in ("protocol", "chain"):
        if name in q:
            filters[name] = q[name]
    if "level" in q and q["level"] not in LEVELS:
        raise BadRequest(f"level: {q['level'][:40]!r} is not one of {', '.join(LEVELS)}")
    cutoffs = {name: cutoff for name, (cutoff, _) in stale.items()}
    rows = store.position_docs(filters, cutoffs, q.get("level"))
    # The stored documents are already JSON: splice them rather than parse and re-encode a thousand of them.
    docs = [_stale_doc(d, chain, stale) if old else d for d, chain, old in rows]
    return _raw_json('{"positions": [' + ", ".join(docs) + "]}", request)


def _position_doc(request: web.Request) -> tuple[str, dict[str, Any]]:
    key = _text(request.match_info["id"], "id")
    store = request.app[STORE]
    row = store.position_doc(key)
    if row is None:
        raise web.HTTPNotFound(reason=f"no position {key[:120]!r}")
    doc, chain, updated_at = row
    stale = _freshness(request.app[SETTINGS], store.chain_status(), request.app[SETTINGS]["clock"]())
    if chain in stale and (_finite(updated_at) or 0.0) < stale[chain][0]:
        doc = _stale_doc(doc, chain, stale)
    return key, json.loads(doc)


async def position(request: web.Request) -> web.Response:
    """One position: legs, liquidation prices and advice."""
    return _json(_position_doc(request)[1], request)


async def history(request: web.Request) -> web.Response:
    """A position's stored readings since a time (unix seconds or ISO-8601), oldest first."""
    q = _query(request, ("since", "limit"))
    since = parse_time(q["since"], "since") if "since" in q else 0.0
    limit = _limit(q, MAX_LIMIT)
    key, _ = _position_doc(request)
    rows = request.app[STORE].position_history(key, since, limit)
    out = [
        {
            "at": at,
            "at_iso": _iso_of(at),
            "block": block,
            "block_hash": block_hash,
            **_health(h),
            "level": level,
            "total_collateral_raw": int(coll),
            "total_debt_raw": int(debt),
        }
        for at, block, block_hash, h, level, coll, debt in rows
    ]
    return _json({"position": key, "since": since, "history": out}, request)


def _alert_json(row: dict[str, Any], deliveries: list[dict[str, Any]], open_: bool) -> dict[str, Any]:
    return {
        "id": row["id"],
        "position": row["position"],
        "kind": row["kind"],
        "level": row["level"],
        **_health(row["health"]),
        "created_at": row["created_at"],
        "created_at_iso": _iso_of(row["created_at"]),
        "subject": row["subject"],
        "text": row["text"],
        "acked_at": row["acked_at"],
        "silenced": bool(row.get("silenced")),
        "open": open_,
        "deliveries": deliveries,
    }


def _alerts(store: Store, where: str = "", args: Iterable[Any] = (), limit: int = 100) -> list[dict[str, Any]]:
    return [_alert_json(r, r["deliveries"], r["open"]) for r in store.alert_rows(where, args, limit)]


async def alerts(request: web.Request) -> web.Response:
    """Recent alerts, newest first, with their delivery status per channel; ?open=true keeps the open ones."""
    q = _query(request, ("open", "limit", "position"))
    if q.get("open", "false") not in ("true", "false"):
        raise BadRequest("open: expected true or false")
    where, args = ("position = ?", [q["position"]]) if "position" in q else ("", [])
    found = _alerts(request.app[STORE], where, args, _limit(q))
    if q.get("open") == "true":
        found = [a for a in found if a["open"]]
    return _json({"alerts": found}, request)


async def ack(request: web.Request) -> web.Response:
    """Acknowledge an alert (the first acknowledgement's time is kept)."""
    store, alert_id = request.app[STORE], _text(request.match_info["id"], "id")
    if not store.ack_alert(alert_id, request.app[SETTINGS]["clock"]()):
        raise web.HTTPNotFound(reason=f"no alert {alert_id[:120]!r}")
    return _json(_alerts(store, "id = ?", [alert_id], 1)[0], request)


def _silence_json(row: tuple[Any, ...]) -> dict[str, Any]:
    # Rows may come from an older version that stored any `until` (an infinite or millisecond one): never fail on
    # them, or the silence could be neither listed nor removed.
    sid, account, position_, until, created = row
    return {
        "id": sid,
        "account": account,
        "position": position_,
        "until": _finite(until),
        "until_iso": _iso_of(until),
        "created_at": _finite(created),
    }


async def add_silence(request: web.Request) -> web.Response:
    """Mute an account or a position until a time: alerts are still stored, but not sent."""
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    unknown = set(body) - {"account", "position", "until"}
    if unknown:
        raise BadRequest(f"body: unknown key {sorted(unknown)[0]!r}")
    if ("account" in body) == ("position" in body):
        raise BadRequest("body: give exactly one of account or position")
    account = position_ = None
    if "account" in body:
        if not isinstance(body["account"], str):
            raise BadRequest("account: expected a hex address string")
        account = _account(body["account"])
    else:
        position_ = body["position"]
        if not isinstance(position_, str) or not position_:
            raise BadRequest("position: expected a position id string")
        _text(position_, "position")
    if "until" not in body:
        raise BadRequest("until: required (unix seconds or ISO-8601)")
    until, now = parse_time(body["until"], "until"), request.app[SETTINGS]["clock"]()
    if until <= now:
        raise BadRequest("until: must be in the future")
    if until - now > MAX_SILENCE_DAYS * 86400:
        raise BadRequest(
            f"until: {_show(body['until'])} is more than {MAX_SILENCE_DAYS} days ahead;"
            " send unix seconds, not milliseconds"
        )
    sid = request.app[STORE].add_silence(account, position_, until, now)
    return _json(_silence_json((sid, account, position_, until, now)), request, 201)


async def list_silences(request: web.Request) -> web.Response:
    """The silences in force now."""
    rows = request.app[STORE].silences_in_force(request.app[SETTINGS]["clock"]())
    return _json({"silences": [_silence_json(r) for r in rows]}, request)


async def delete_silence(request: web.Request) -> web.Response:
    """End a silence now (whatever its `until`); answers the silence removed."""
    raw = request.match_info["id"]
    row = request.app[STORE].delete_silence(int(raw)) if _DIGITS.fullmatch(raw) else None
    if row is None:
        raise web.HTTPNotFound(reason=f"no silence {raw[:40]!r}")
    return _json(_silence_json(row), request)


class StoreCollector(Collector):
    """Metrics computed from the store at each scrape, so `watcher api` alone serves the same figures."""

    def __init__(self, store: Store, settings: dict[str, Any]) -> None:
        self.store = store
        self.settings = settings

    def collect(self) -> Iterable[Any]:
        """Position health, check duration and RPC errors per chain, outbox depth."""
        db = self.store.db
        status = self.store.chain_status()
        stale = _freshness(self.settings, status, self.settings["clock"]())
        health = GaugeMetricFamily(
            "margin_watcher_position_health",
            "Health factor of a position (+Inf without debt); unknown and stale positions are left out",
            labels=["position", "protocol", "chain", "account"],
        )
        for key, protocol, chain, account, level, h, updated_at in self.store.position_healths():
            too_old = chain in stale and (_finite(updated_at) or 0.0) < stale[chain][0]
            if level != "unknown" and not too_old:
                value = float("inf") if h is None else float(Decimal(int(h)).scaleb(-18))
                health.add_metric([key, protocol, chain, account], value)
        yield health
        duration = GaugeMetricFamily(
            "margin_watcher_check_duration_seconds", "Duration of the last check of a chain", labels=["chain"]
        )
        errors = CounterMetricFamily(
            "margin_watcher_rpc_errors", "Reads that failed (RPC errors, bad answers), per chain", labels=["chain"]
        )
        degraded = GaugeMetricFamily(
            "margin_watcher_chain_degraded",
            "1 when a chain cannot be read, or was not read for too long",
            labels=["chain"],
        )
        last_ok = GaugeMetricFamily(
            "margin_watcher_last_ok_timestamp_seconds", "Time of the last good read of a chain", labels=["chain"]
        )
        for chain in sorted(set(status) | set(stale)):
            row = status.get(chain, {})
            if _finite(row.get("last_check_seconds")) is not None:
                duration.add_metric([chain], row["last_check_seconds"])
            errors.add_metric([chain], float(row.get("rpc_errors") or 0))
            degraded.add_metric([chain], 1.0 if row.get("degraded") or chain in stale else 0.0)
            if _finite(row.get("last_ok")) is not None:
                last_ok.add_metric([chain], row["last_ok"])
        yield from (duration, errors, degraded, last_ok)
        yield GaugeMetricFamily("margin_watcher_outbox_depth", "Messages waiting for delivery", value=outbox.depth(db))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = generate_latest(request.app[SETTINGS]["registry"]).decode()
    resp = _raw_json(body, request)
    resp.content_type = "text/plain"
    resp.charset = "utf-8"
    return resp


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of this API."""
    return _json(OPENAPI, request)


_PARAMS: dict[str, dict[str, Any]] = {
    "id": {"in": "path", "schema": {"type": "string"}, "description": "an id as the API or a message's ref: gave it"},
    "account": {"in": "query", "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}},
    "protocol": {"in": "query", "schema": {"type": "string"}},
    "chain": {"in": "query", "schema": {"type": "string"}, "description": "a chain or venue name from the config"},
    "level": {
        "in": "query",
        "schema": {"type": "string", "enum": list(LEVELS)},
        "description": "unknown includes the positions of a chain not read for longer than its stale_after",
    },
    "since": {
        "in": "query",
        "schema": {"type": "string"},
        "description": "unix seconds (ASCII digits, optional fraction) or an ISO-8601 time (UTC unless given)",
    },
    "limit": {"in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
    "open": {"in": "query", "schema": {"type": "string", "enum": ["true", "false"]}},
    "position": {"in": "query", "schema": {"type": "string"}},
}
_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
                }
            },
        }
    }
}


def _op(
    summary: str,
    params: Iterable[str] = (),
    *,
    write: bool = False,
    body: dict[str, Any] | None = None,
    ok: str = "200",
    content: str = "application/json",
    integer_id: bool = False,
) -> dict[str, Any]:
    """One operation: its parameters, and every status it can answer besides 500."""
    parameters = []
    for p in params:
        spec = {"name": p, "required": _PARAMS[p]["in"] == "path", **_PARAMS[p]}
        if p == "id" and integer_id:
            spec["schema"] = {"type": "integer", "minimum": 1}
        parameters.append(spec)
    responses: dict[str, Any] = {ok: {"description": "OK", "content": {content: {}}}}
    errors_ = {"421": "the Host header does not name the API's address", "503": "the database cannot be read now"}
    if params:
        errors_["400"] = "a bad parameter (the message names it)"
    if any(_PARAMS[p]["in"] == "path" for p in params):
        errors_["404"] = "no such id"
    if write:
        errors_ |= {"401": "missing or wrong bearer token", "403": "writes need api.token to be configured"}
    if body is not None:
        errors_ |= {
            "400": "a bad body (the message names the key)",
            "408": "the body did not arrive within api.body_timeout",
            "413": f"a body over {MAX_BODY} bytes",
        }
    responses |= {code: {"description": text, "content": _ERROR} for code, text in sorted(errors_.items())}
    op: dict[str, Any] = {"summary": summary, "parameters": parameters, "responses": responses}
    if write:
        op["security"] = [{"bearer": []}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


_SILENCE_BODY = {
    "type": "object",
    "properties": {
        "account": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
        "position": {"type": "string"},
        "until": {
            "oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}],
            "description": f"unix seconds (not milliseconds) or ISO-8601; in the future, at most {MAX_SILENCE_DAYS}"
            " days ahead",
        },
    },
    "required": ["until"],
    "additionalProperties": False,
    "description": "exactly one of account or position",
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Margin Watcher local API", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/health": {
            "get": _op(
                "Watcher liveness, last good check and lag per chain and venue; degraded when one was not read for"
                " longer than its stale_after, or (under `watcher run`) when the database cannot be written"
            )
        },
        "/positions": {
            "get": _op(
                "Current positions; on a chain not read for too long, level unknown and stale true",
                ("account", "protocol", "chain", "level"),
            )
        },
        "/positions/{id}": {"get": _op("One position: legs, liquidation prices, advice", ("id",))},
        "/positions/{id}/history": {"get": _op("Stored readings since a time", ("id", "since", "limit"))},
        "/alerts": {"get": _op("Recent alerts with delivery status per channel", ("open", "position", "limit"))},
        "/alerts/{id}/ack": {"post": _op("Acknowledge an alert", ("id",), write=True)},
        "/silences": {
            "get": _op("Silences in force"),
            "post": _op("Mute an account or a position until a time", write=True, body=_SILENCE_BODY, ok="201"),
        },
        "/silences/{id}": {"delete": _op("End a silence now; answers it", ("id",), write=True, integer_id=True)},
        "/metrics": {"get": _op("Prometheus metrics", content="text/plain")},
        "/openapi.json": {"get": _op("This description")},
    },
}


def make_app(
    store: Store,
    cfg: Config,
    *,
    token: str | None,
    host: str,
    port: int,
    live: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The aiohttp application over a store; `port` is the bound port (what Host headers must name)."""
    # `live`: a dict the daemon in this process keeps up to date, {"storage": {"ok", "error", "since"}}.
    check_bind(host, token)
    # Outermost first: connection bookkeeping sees the final response; bodies are read before any handler.
    app = web.Application(middlewares=[connections, errors, bodies, guard], client_max_size=MAX_BODY)
    registry = CollectorRegistry(auto_describe=False)
    settings: dict[str, Any] = {
        "token": token,
        "token_for_reads": not is_loopback(host),
        "hosts": None,
        "secrets": secrets_of(cfg, token),
        "registry": registry,
        "live": live,
        "clock": clock,
        "started": clock(),
        "bounds": _bounds(cfg),
        "limits": {
            "header_timeout": cfg.api.header_timeout,
            "body_timeout": cfg.api.body_timeout,
            "max_connections": cfg.api.max_connections,
        },
    }
    registry.register(StoreCollector(store, settings))
    app[STORE] = store
    app[SETTINGS] = settings
    app[GUARD] = {}
    set_port(app, host, port)
    app.router.add_get("/health", health)
    app.router.add_get("/positions", positions)
    app.router.add_get("/positions/{id}", position)
    app.router.add_get("/positions/{id}/history", history)
    app.router.add_get("/alerts", alerts)
    app.router.add_post("/alerts/{id}/ack", ack)
    app.router.add_get("/silences", list_silences)
    app.router.add_post("/silences", add_silence)
    app.router.add_delete("/silences/{id}", delete_silence)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    return app


def set_port(app: web.Application, host: str, port: int) -> None:
    """The Host values accepted: the bind address (and localhost names on loopback) with this port."""
    if host in ("0.0.0.0", "::", ""):
        # Any name may reach a wildcard bind; the token every request needs there is what protects it.
        app[SETTINGS]["hosts"] = None
        return
    names = {host, f"[{host}]" if ":" in host else host}
    if is_loopback(host):
        names |= {"localhost", "127.0.0.1", "[::1]"}
    app[SETTINGS]["hosts"] = {f"{n}:{port}".lower() for n in names}


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the app on host:port; returns the runner (call `cleanup()` to stop) and the bound port."""
    runner = web.AppRunner(app, access_log=None)  # request lines are not needed, and keep logs to JSON lines
    await runner.setup()
    install(app, runner, app[SETTINGS]["limits"])
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    set_port(app, host, bound)
    log.info("api listening", extra={"host": host, "port": bound})
    return runner, bound


async def start_api(store: Store, cfg: Config, live: dict[str, Any] | None = None) -> tuple[web.AppRunner, int]:
    """Build and start the API from [api]; a ConfigError for a non-loopback bind without a token."""
    # `live`: what the daemon in this process reports about itself (see make_app); None under `watcher api`.
    token = cfg.api.token.resolve("api.token") if cfg.api.token is not None else None
    app = make_app(store, cfg, token=token, host=cfg.api.host, port=cfg.api.port, live=live)
    return await serve(app, cfg.api.host, cfg.api.port)


__all__ = ["OPENAPI", "check_bind", "make_app", "parse_time", "serve", "start_api", "whole_number"]
