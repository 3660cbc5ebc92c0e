"""The API's handlers: health, positions, history, alerts, acknowledgements and silences over the store."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from watcher.api.base import (
    _DIGITS,
    LEVELS,
    MAX_LIMIT,
    SETTINGS,
    STORE,
    BadRequest,
    _account,
    _finite,
    _health,
    _iso_of,
    _json,
    _limit,
    _query,
    _raw_json,
    _show,
    _text,
    check_silence_until,
    parse_time,
    position_id,
)
from watcher.api.export import alerts_csv, history_csv, wants_csv
from watcher.api.freshness import _freshness, _stale_doc, _storage
from watcher.store import Store

log = logging.getLogger("watcher.api")


async def health(request: web.Request) -> web.Response:
    """The watcher's own liveness and, per chain, its last good read and lag."""
    doc, status = health_doc(request)
    return _json(doc, request, status)


def health_doc(request: web.Request) -> tuple[dict[str, Any], int]:
    """The /health document and its HTTP status (the dashboard's banner reads the same)."""
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    now = settings["clock"]()
    storage = _storage(settings["live"])
    try:
        status = store.chain_status()
        depth = store.outbox_depth()
    except sqlite3.Error as exc:
        # The one answer that must still come when the database cannot be read: not ok.
        doc = {
            "status": "degraded",
            "now": now,
            "storage": {**(storage or {}), "ok": False, "error": f"cannot read the database: {str(exc)[:200]}"},
        }
        return doc, 503
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
    # an ENS name that stopped resolving (or moved) is watched at its old address: the user must hear of it
    ens = {name: state.doc() for name, state in (live.get("ens") or {}).items()}
    if (
        any(c["degraded"] for c in chains.values())
        or (storage is not None and not storage["ok"])
        or any(not h["ok"] for h in notify.values())
        or any(not e["ok"] for e in ens.values())
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
    if ens:
        doc["ens"] = ens
    return doc, 200


async def positions(request: web.Request) -> web.Response:
    """Current positions, filtered by account, protocol, chain and level; a stale source's are unknown."""
    q = _query(request, ("account", "protocol", "deployment", "chain", "level"))
    store = request.app[STORE]
    stale = _freshness(request.app[SETTINGS], store.chain_status(), request.app[SETTINGS]["clock"]())
    filters: dict[str, Any] = {}
    if "account" in q:
        filters["account"] = _account(q["account"])
    for name in ("protocol", "deployment", "chain"):
        if name in q:
            filters[name] = _text(q[name], name)
    if "level" in q and q["level"] not in LEVELS:
        raise BadRequest(f"level: {q['level'][:40]!r} is not one of {', '.join(LEVELS)}")
    cutoffs = {name: cutoff for name, (cutoff, _) in stale.items()}
    rows = store.position_docs(filters, cutoffs, q.get("level"))
    # The stored documents are already JSON: splice them rather than parse and re-encode a thousand of them.
    docs = [_stale_doc(d, chain, stale) if old else d for d, chain, old in rows]
    return _raw_json('{"positions": [' + ", ".join(docs) + "]}", request)


def _position_doc(request: web.Request) -> tuple[str, dict[str, Any]]:
    key = position_id(request.match_info["id"])
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
    q = _query(request, ("since", "limit", "format"))
    since = parse_time(q["since"], "since") if "since" in q else 0.0
    limit = _limit(q, MAX_LIMIT)
    as_csv = wants_csv(q)
    key, _ = _position_doc(request)
    rows = request.app[STORE].position_history(key, since, limit)
    if as_csv:
        return history_csv(request, key, rows)
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
    q = _query(request, ("open", "limit", "position", "format"))
    if q.get("open", "false") not in ("true", "false"):
        raise BadRequest("open: expected true or false")
    as_csv = wants_csv(q)
    where, args = ("position = ?", [position_id(q["position"], "position")]) if "position" in q else ("", [])
    found = _alerts(request.app[STORE], where, args, _limit(q))
    if q.get("open") == "true":
        found = [a for a in found if a["open"]]
    if as_csv:
        return alerts_csv(request, found)
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
        position_ = position_id(position_, "position")
    if "until" not in body:
        raise BadRequest("until: required (unix seconds or ISO-8601)")
    until, now = parse_time(body["until"], "until"), request.app[SETTINGS]["clock"]()
    check_silence_until(until, now, _show(body["until"]))
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
