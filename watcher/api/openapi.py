"""The OpenAPI 3 description of the API."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from watcher.api.base import LEVELS, MAX_BODY, MAX_LIMIT, MAX_SILENCE_DAYS, _json

log = logging.getLogger("watcher.api")


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of this API."""
    return _json(OPENAPI, request)


_PARAMS: dict[str, dict[str, Any]] = {
    "id": {
        "in": "path",
        "schema": {"type": "string"},
        "description": "deployment:chain:account[:market] as the API gave it; a hex account may be in any case",
    },
    "account": {"in": "query", "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}},
    "protocol": {
        "in": "query",
        "schema": {"type": "string"},
        "description": "a protocol (aave_v3) or a deployment's name: the positions of either",
    },
    "deployment": {
        "in": "query",
        "schema": {"type": "string"},
        "description": "a deployment's name (its protocol where the config names none); ids start with it",
    },
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
    "format": {
        "in": "query",
        "schema": {"type": "string", "enum": ["json", "csv"]},
        "description": "csv: text/csv with a header row, amounts as raw integers, times ISO-8601 UTC",
    },
    "shock": {
        "in": "query",
        "schema": {"type": "string"},
        "description": "ASSET:-20 (or ASSET=-20%): a symbol or token address and a move above -100 %; repeatable",
    },
    "at": {
        "in": "query",
        "schema": {"type": "string"},
        "description": "+30d (s, m, h, d, w after the position's read block), unix seconds or ISO-8601",
    },
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


def _simulate_op() -> dict[str, Any]:
    op = _op("Health, verdict and advice after what-if price shocks (`watcher run` only)", ("id", "shock", "at"))
    op["parameters"][1]["required"] = True
    op["responses"]["503"]["description"] = (
        "served by `watcher api` (no simulators in memory), or the position has no current reading"
    )
    return op


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
                ("account", "protocol", "deployment", "chain", "level"),
            )
        },
        "/positions/{id}": {"get": _op("One position: legs, liquidation prices, advice", ("id",))},
        "/positions/{id}/history": {"get": _op("Stored readings since a time", ("id", "since", "format", "limit"))},
        "/positions/{id}/simulate": {"get": _simulate_op()},
        "/alerts": {
            "get": _op("Recent alerts with delivery status per channel", ("open", "position", "format", "limit"))
        },
        "/alerts/{id}/ack": {"post": _op("Acknowledge an alert", ("id",), write=True)},
        "/silences": {
            "get": _op("Silences in force"),
            "post": _op("Mute an account or a position until a time", write=True, body=_SILENCE_BODY, ok="201"),
        },
        "/silences/{id}": {"delete": _op("End a silence now; answers it", ("id",), write=True, integer_id=True)},
        "/metrics": {"get": _op("Prometheus metrics", content="text/plain")},
        "/openapi.json": {"get": _op("This description")},
        "/": {
            "get": _op("The dashboard (HTML): positions grouped by level, a banner when degraded", content="text/html")
        },
        "/ui/positions/{id}": {
            "get": _op(
                "The dashboard page of one position (HTML): history charts, alerts, silences",
                ("id",),
                content="text/html",
            )
        },
    },
}
for _path in ("/positions/{id}/history", "/alerts"):  # ?format=csv answers these as CSV
    OPENAPI["paths"][_path]["get"]["responses"]["200"]["content"]["text/csv"] = {}
