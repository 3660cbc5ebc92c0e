"""The local HTTP API (aiohttp): health, positions, history, alerts, silences and Prometheus metrics over the store."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import math
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


class BadRequest(web.HTTPBadRequest):
    """A 400 whose message names the bad parameter."""

    def __init__(self, message: str) -> None:
        super().__init__(text=message)


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
        message = exc.text if isinstance(exc, BadRequest) else exc.reason
        return _error(
            request, exc.status, message or exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"}
        )
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


# --- parameters


def _query(request: web.Request, allowed: Iterable[str]) -> dict[str, str]:
    allowed = set(allowed)
    for name in request.query:
        if name not in allowed:
            raise BadRequest(f"unknown query parameter {name!r} (allowed: {', '.join(sorted(allowed))})")
    return {k: v for k, v in request.query.items()}


def parse_time(value: Any, name: str) -> float:
    """Unix seconds or ISO-8601 (UTC unless an offset is given); a 400 naming `name` otherwise."""
    if isinstance(value, bool):
        raise BadRequest(f"{name}: expected unix seconds or an ISO-8601 time")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                return _iso(value)
            except ValueError:
                pass
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    raise BadRequest(f"{name}: {str(value)[:40]!r} is not unix seconds nor an ISO-8601 time")


def _iso(value: str) -> float:
    dt = datetime.fromisoformat(value)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _account(value: str, name: str = "account") -> str:
    if not is_hex_address(value):
        raise BadRequest(f"{name}: {value[:60]!r} is not a 20-byte hex address")
    return to_checksum_address(value)


def _limit(q: dict[str, str], default: int = 100) -> int:
    raw = q.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit: {raw[:20]!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _iso_of(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _health(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {"health_raw": None, "health": None}
    return {"health_raw": int(raw), "health": str(Decimal(int(raw)).scaleb(-18).normalize())}


# --- handlers


async def health(request: web.Request) -> web.Response:
    """The watcher's own liveness and, per chain, its last good read and lag."""
    store = request.app[STORE]
    now = time.time()
    chains = {}
    for name, row in sorted(store.chain_status().items()):
        last_ok = row.get("last_ok")
        chains[name] = {
            "degraded": bool(row.get("degraded")),
            "reason": row.get("reason") or "",
            "since": row.get("since"),
            "last_ok": last_ok,
            "last_ok_iso": _iso_of(last_ok),
            "last_block": row.get("last_block"),
            "lag_seconds": None if last_ok is None else round(now - last_ok, 3),
            "last_check_seconds": row.get("last_check_seconds"),
            "rpc_errors": int(row.get("rpc_errors") or 0),
        }
    oks = [c["last_ok"] for c in chains.values() if c["last_ok"] is not None]
    status = "degraded" if any(c["degraded"] for c in chains.values()) else ("ok" if chains else "starting")
    return _json(
        {
            "status": status,
            "now": now,
            "last_check": max(oks) if oks else None,
            "last_check_iso": _iso_of(max(oks)) if oks else None,
            "chains": chains,
            "outbox_depth": outbox.depth(store.db),
        },
        request,
    )


async def positions(request: web.Request) -> web.Response:
    """Current positions, filtered by account, protocol, chain and level."""
    q = _query(request, ("account", "protocol", "chain", "level"))
    where, args = [], []
    if "account" in q:
        where.append("account = ?")
        args.append(_account(q["account"]))
    for name in ("protocol", "chain"):
        if name in q:
            where.append(f"{name} = ?")
            args.append(q[name])
    if "level" in q:
        if q["level"] not in LEVELS:
            raise BadRequest(f"level: {q['level'][:40]!r} is not one of {', '.join(LEVELS)}")
        where.append("level = ?")
        args.append(q["level"])
    sql = "select doc from positions" + (" where " + " and ".join(where) if where else "") + " order by position"
    docs = [d for (d,) in request.app[STORE].db.execute(sql, args).fetchall()]
    # The stored documents are already JSON: splice them rather than parse and re-encode a thousand of them.
    return _raw_json('{"positions": [' + ", ".join(docs) + "]}", request)


def _position_doc(request: web.Request) -> tuple[str, dict[str, Any]]:
    key = request.match_info["id"]
    row = request.app[STORE].db.execute("select doc from positions where position = ?", [key]).fetchone()
    if row is None:
        raise web.HTTPNotFound(reason=f"no position {key[:120]!r}")
    return key, json.loads(row[0])


async def position(request: web.Request) -> web.Response:
    """One position: legs, liquidation prices and advice."""
    return _json(_position_doc(request)[1], request)


async def history(request: web.Request) -> web.Response:
    """A position's stored readings since a time (unix seconds or ISO-8601), oldest first."""
    q = _query(request, ("since", "limit"))
    since = parse_time(q["since"], "since") if "since" in q else 0.0
    limit = _limit(q, MAX_LIMIT)
    key, _ = _position_doc(request)
    rows = request.app[STORE].db.execute(
        "select at, block, block_hash, health, level, collateral, debt from history"
        " where position = ? and at >= ? order by at limit ?",
        [key, since, limit],
    )
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
        for at, block, block_hash, h, level, coll, debt in rows.fetchall()
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
    db = store.db
    rows = list(db["alerts"].rows_where(where or None, list(args), order_by="created_at desc, id desc", limit=limit))
    ids = [r["id"] for r in rows]
    deliveries: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        marks = ", ".join("?" * len(ids))
        for alert_id, channel, status, attempts, last_error, delivered_at in db.execute(
            "select alert_id, channel, status, attempts, last_error, delivered_at from outbox"
            f" where alert_id in ({marks}) order by id",
            ids,
        ).fetchall():
            deliveries[alert_id].append(
                {
                    "channel": channel,
                    "status": status,
                    "attempts": attempts,
                    "last_error": last_error,  # redacted by notify when it was stored
                    "delivered_at": delivered_at,
                }
            )
    # Open: the newest alert of its position, neither a recovery nor acknowledged.
    latest = dict(db.execute("select position, max(created_at) from alerts group by position").fetchall())
    return [
        _alert_json(
            r,
            deliveries[r["id"]],
            r["acked_at"] is None
            and r["kind"] not in ("recover", "recovered")
            and r["created_at"] == latest.get(r["position"]),
        )
        for r in rows
    ]


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
    store, alert_id = request.app[STORE], request.match_info["id"]
    with store.db.atomic():
        cur = store.db.execute(
            "update alerts set acked_at = coalesce(acked_at, ?) where id = ?", [time.time(), alert_id]
        )
    if not cur.rowcount:
        raise web.HTTPNotFound(reason=f"no alert {alert_id[:120]!r}")
    return _json(_alerts(store, "id = ?", [alert_id], 1)[0], request)


def _silence_json(row: tuple[Any, ...]) -> dict[str, Any]:
    sid, account, position_, until, created = row
    return {
        "id": sid,
        "account": account,
        "position": position_,
        "until": until,
        "until_iso": _iso_of(until),
        "created_at": created,
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
    if "until" not in body:
        raise BadRequest("until: required (unix seconds or ISO-8601)")
    until, now = parse_time(body["until"], "until"), time.time()
    if until <= now:
        raise BadRequest("until: must be in the future")
    db = request.app[STORE].db
    with db.atomic():
        cur = db.execute(
            "insert into silences (account, position, until, created_at) values (?, ?, ?, ?)",
            [account, position_, until, now],
        )
    return _json(_silence_json((cur.lastrowid, account, position_, until, now)), request, 201)


async def list_silences(request: web.Request) -> web.Response:
    """The silences in force now."""
    rows = request.app[STORE].db.execute(
        "select id, account, position, until, created_at from silences where until > ? order by until", [time.time()]
    )
    return _json({"silences": [_silence_json(r) for r in rows.fetchall()]}, request)


class StoreCollector(Collector):
    """Metrics computed from the store at each scrape, so `watcher api` alone serves the same figures."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterable[Any]:
        """Position health, check duration and RPC errors per chain, outbox depth."""
        db = self.store.db
        health = GaugeMetricFamily(
            "margin_watcher_position_health",
            "Health factor of a position (+Inf without debt); unknown positions are left out",
            labels=["position", "protocol", "chain", "account"],
        )
        for key, protocol, chain, account, level, h in db.execute(
            "select position, protocol, chain, account, level, health from positions order by position"
        ).fetchall():
            if level != "unknown":
                value = float("inf") if h is None else float(Decimal(int(h)).scaleb(-18))
                health.add_metric([key, protocol, chain, account], value)
        yield health
        duration = GaugeMetricFamily(
            "margin_watcher_check_duration_seconds", "Duration of the last check of a chain", labels=["chain"]
        )
        errors = CounterMetricFamily(
            "margin_watcher_rpc_errors", "Reads that failed (RPC errors, bad answers), per chain", labels=["chain"]
        )
        degraded = GaugeMetricFamily("margin_watcher_chain_degraded", "1 when a chain cannot be read", labels=["chain"])
        last_ok = GaugeMetricFamily(
            "margin_watcher_last_ok_timestamp_seconds", "Time of the last good read of a chain", labels=["chain"]
        )
        for chain, row in sorted(self.store.chain_status().items()):
            if row.get("last_check_seconds") is not None:
                duration.add_metric([chain], row["last_check_seconds"])
            errors.add_metric([chain], float(row.get("rpc_errors") or 0))
            degraded.add_metric([chain], float(row.get("degraded") or 0))
            if row.get("last_ok") is not None:
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


def _op(summary: str, params: Iterable[str] = (), *, write: bool = False, body: bool = False) -> dict[str, Any]:
    where = {"id": "path", "account": "query", "protocol": "query", "chain": "query", "level": "query"}
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [
            {"name": p, "in": where.get(p, "query"), "required": where.get(p) == "path", "schema": {"type": "string"}}
            for p in params
        ],
        "responses": {"200": {"description": "OK", "content": {"application/json": {}}}},
    }
    if write:
        op["security"] = [{"bearer": []}]
        op["responses"] |= {"401": {"description": "missing or wrong token"}}
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "account": {"type": "string"},
                            "position": {"type": "string"},
                            "until": {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]},
                        },
                        "required": ["until"],
                    }
                }
            },
        }
        op["responses"] = {"201": {"description": "created"}, "400": {"description": "bad body"}}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Margin Watcher local API", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/health": {"get": _op("Watcher liveness, last good check and lag per chain")},
        "/positions": {"get": _op("Current positions", ("account", "protocol", "chain", "level"))},
        "/positions/{id}": {"get": _op("One position: legs, liquidation prices, advice", ("id",))},
        "/positions/{id}/history": {"get": _op("Stored readings since a time", ("id", "since", "limit"))},
        "/alerts": {"get": _op("Recent alerts with delivery status per channel", ("open", "position", "limit"))},
        "/alerts/{id}/ack": {"post": _op("Acknowledge an alert", ("id",), write=True)},
        "/silences": {
            "get": _op("Silences in force"),
            "post": _op("Mute an account or a position until a time", write=True, body=True),
        },
        "/metrics": {"get": _op("Prometheus metrics (text format)")},
        "/openapi.json": {"get": _op("This description")},
    },
}


def make_app(store: Store, cfg: Config, *, token: str | None, host: str, port: int) -> web.Application:
    """The aiohttp application over a store; `port` is the bound port (what Host headers must name)."""
    check_bind(host, token)
    app = web.Application(middlewares=[errors, guard])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    app[STORE] = store
    app[SETTINGS] = {
        "token": token,
        "token_for_reads": not is_loopback(host),
        "hosts": None,
        "secrets": secrets_of(cfg, token),
        "registry": registry,
    }
    set_port(app, host, port)
    app.router.add_get("/health", health)
    app.router.add_get("/positions", positions)
    app.router.add_get("/positions/{id}", position)
    app.router.add_get("/positions/{id}/history", history)
    app.router.add_get("/alerts", alerts)
    app.router.add_post("/alerts/{id}/ack", ack)
    app.router.add_get("/silences", list_silences)
    app.router.add_post("/silences", add_silence)
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
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    set_port(app, host, bound)
    log.info("api listening", extra={"host": host, "port": bound})
    return runner, bound


async def start_api(store: Store, cfg: Config) -> tuple[web.AppRunner, int]:
    """Build and start the API from [api]; a ConfigError for a non-loopback bind without a token."""
    token = cfg.api.token.resolve("api.token") if cfg.api.token is not None else None
    app = make_app(store, cfg, token=token, host=cfg.api.host, port=cfg.api.port)
    return await serve(app, cfg.api.host, cfg.api.port)


__all__ = ["OPENAPI", "check_bind", "make_app", "parse_time", "serve", "start_api"]
